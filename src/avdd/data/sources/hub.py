"""The authors' prepared ``.pt`` files from the Hugging Face Hub, in one command.

``avdd data build vggs10k-hub|ave-hub|music21-hub`` downloads a dataset's train and test files from
the authors' dataset repository with ``huggingface_hub`` (extra ``avdd[hub]``; resumable, kept in
the Hub cache, so a second build downloads nothing) and imports them exactly as ``avdd prepare
reference-pt`` does. The store's provenance records the repository, the revision asked for and
the commit it resolved to, and each file's size and sha256.

The file names in :data:`HUB_FILES` are an assumption: they are the names the authors' own code
loads and downloads (their ``utils/data_utils.py`` and ``scripts/download_*.sh`` at commit
165d032), which we could not list from the Hub itself. MUSIC-21's train file is a guess by
analogy (the authors' scripts fetch only its per-class zip and ``test_data/music_21_test.pt``).
``--train-file``, ``--test-file`` and ``--revision`` override them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from avdd.data.sources.reference_pt import import_reference
from avdd.data.sources.registry import DATASETS, DatasetSource, Option
from avdd.data.store import Store
from avdd.errors import AvddError

HUB_REPO = "sakshamsingh1/AVDD_data"  # a dataset repository
# The branch the authors publish on; its commit could not be looked up from our machines, so the
# commit a build resolved it to is recorded in the store's provenance (pin one with --revision).
HUB_REVISION = "main"
HUB_FILES = {  # dataset -> (train file, test file, what it is), paths inside HUB_REPO
    "vggs10k-hub": ("train_data/vgg_subset_train.pt", "test_data/vgg_subset_test.pt",
                    "VGGS-10K, the paper's 10-class VGGSound subset"),
    "ave-hub": ("train_data/ave_train.pt", "test_data/ave_test.pt", "AVE, 28 event classes"),
    "music21-hub": ("train_data/music_21_train.pt", "test_data/music_21_test.pt", "MUSIC-21, 21 instruments"),
}
HASH_CHUNK = 1 << 24


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(filename: str, revision: str, cache_dir: Path | None) -> tuple[Path, str]:
    """One file of HUB_REPO at ``revision`` (from the cache when it is there) and the commit it came from."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise AvddError("downloading from the Hugging Face Hub needs huggingface_hub: "
                        "pip install 'avdd[hub]'") from None
    try:
        local = hf_hub_download(HUB_REPO, filename, repo_type="dataset", revision=revision,
                                cache_dir=None if cache_dir is None else str(cache_dir))
    except Exception as err:  # not found, offline without a cached copy, no network, ...
        raise AvddError(f"{HUB_REPO}@{revision}: cannot get {filename} ({type(err).__name__}: {err}); "
                        "name the file with --train-file/--test-file if the repository has it elsewhere") from None
    snapshot = Path(local[: -len(filename)])  # the cache keeps files under snapshots/COMMIT/FILENAME
    return Path(local), snapshot.name


def build_from_hub(name: str, out: str | Path, *, overwrite: bool = False, progress: bool = True,
                   revision: str = HUB_REVISION, train_file: str | None = None, test_file: str | None = None,
                   cache_dir: Path | None = None) -> Store:
    """Download dataset ``name``'s two files (``HUB_FILES``, or the files given) and import them."""
    default_train, default_test, _ = HUB_FILES[name]
    wanted = {"train": train_file or default_train, "test": test_file or default_test}
    local, record = {}, {}
    for split, filename in wanted.items():
        local[split], commit = download(filename, revision, cache_dir)
        record[split] = {"file": filename, "commit": commit, "size": local[split].stat().st_size,
                         "sha256": sha256_of(local[split])}
    hub: dict[str, Any] = {"repo": HUB_REPO, "repo_type": "dataset", "revision": revision, "files": record}
    return import_reference(out, train=local["train"], test=local["test"], overwrite=overwrite, progress=progress,
                            provenance={"dataset": name, "hub": hub})


def register(name: str) -> None:
    train, test, summary = HUB_FILES[name]

    def build(out: str | Path, **options: Any) -> Store:
        return build_from_hub(name, out, **options)

    DATASETS.add(name, DatasetSource(
        name, f"{summary}: the authors' prepared files from the Hugging Face Hub ({HUB_REPO})", build,
        (Option("revision", str, HUB_REVISION, "Hub revision: a branch, tag or commit"),
         Option("train_file", str, None, f"the train file in the repository (default: {train}, assumed)"),
         Option("test_file", str, None, f"the test file in the repository (default: {test}, assumed)"),
         Option("cache_dir", Path, None, "the Hub cache to use (default: huggingface_hub's, $HF_HUB_CACHE)")),
    ))


for dataset in HUB_FILES:
    register(dataset)
