"""The Hub sources (avdd data build vggs10k-hub, ...) on a local Hugging Face cache laid out as
huggingface_hub keeps it, in offline mode: no network, the real client code path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import huggingface_hub.constants as hub_constants  # the dev extra installs it
import numpy as np
import pytest
import torch

from avdd.cli import main
from avdd.data.sources import hub
from avdd.data.store import open_store

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def authors_file(split: str, n: int, seed: int) -> dict[str, torch.Tensor]:
    """The layout of the authors' files (and of make_avdigits_ref.py): raw dB audio, uint8 frames."""
    g = torch.Generator().manual_seed(seed)
    return {f"audio_{split}": torch.randn(n, 1, 128, 56, generator=g) * 10 - 40,
            f"images_{split}": torch.randint(0, 256, (n, 3, 28, 28), generator=g, dtype=torch.uint8),
            f"labels_{split}": torch.arange(n) % 3}


def fake_hub(cache: Path, files: dict[str, Path]) -> None:
    """``files`` (path in the repository -> local file) as the Hub cache holds them: content-addressed
    blobs, a snapshot per commit of links to them, and refs/main naming the commit."""
    repo = cache / f"datasets--{hub.HUB_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for name, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # read once, at import


def test_hub_source_imports_the_files_as_prepare_reference_pt_does(tmp_path: Path, offline: None) -> None:
    train, test = tmp_path / "train.pt", tmp_path / "test.pt"
    torch.save(authors_file("train", 9, 0), train)
    torch.save(authors_file("test", 6, 1), test)
    train_name, test_name, _ = hub.HUB_FILES["ave-hub"]
    fake_hub(tmp_path / "cache", {train_name: train, test_name: test})

    assert main(["data", "build", "ave-hub", "-q", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "hub")]) == 0
    assert main(["prepare", "reference-pt", "-q", "--train", str(train), "--test", str(test),
                 "--out", str(tmp_path / "local")]) == 0
    a, b = open_store(tmp_path / "hub"), open_store(tmp_path / "local")
    where = ("train", "test", "hub", "dataset")  # what differs: where the files came from
    assert {k: v for k, v in a.meta.items() if k != "provenance"} == {k: v for k, v in b.meta.items()
                                                                       if k != "provenance"}
    assert {k: v for k, v in a.provenance.items() if k not in where} == {
        k: v for k, v in b.provenance.items() if k not in where}
    for split in ("train", "test"):
        np.testing.assert_array_equal(a.split(split).labels, b.split(split).labels)
        for m in ("audio", "frame"):
            np.testing.assert_array_equal(a.split(split).arrays[m], b.split(split).arrays[m])
    assert a.split_sizes == {"train": 9, "test": 6}
    record = a.provenance["hub"]
    assert record["repo"] == "sakshamsingh1/AVDD_data" and record["revision"] == hub.HUB_REVISION
    assert record["files"]["train"] == {"file": "train_data/ave_train.pt", "commit": COMMIT,
                                        "size": train.stat().st_size,
                                        "sha256": hashlib.sha256(train.read_bytes()).hexdigest()}
    assert record["files"]["test"]["sha256"] == hashlib.sha256(test.read_bytes()).hexdigest()


def test_a_file_the_hub_cache_lacks_is_one_error_naming_it(tmp_path: Path, offline: None, capsys) -> None:
    torch.save(authors_file("train", 3, 0), tmp_path / "train.pt")
    fake_hub(tmp_path / "cache", {"elsewhere/train.pt": tmp_path / "train.pt"})
    assert main(["data", "build", "music21-hub", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("avdd: error: sakshamsingh1/AVDD_data@main: cannot get train_data/music_21_train.pt")
    assert "--train-file" in err and not (tmp_path / "store").exists()


def test_the_three_hub_datasets_are_listed(capsys) -> None:
    assert main(["data", "list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"vggs10k-hub", "ave-hub", "music21-hub"} <= listed
