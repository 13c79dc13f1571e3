"""Shared fixtures. Tests that need the shared real data read it from $AVDD_DATA and fail without it.

Tiny stores are built from structured random arrays: each class has its own mean pattern, so a
small network can learn them in a few steps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from avdd.data.store import IMAGE, SPECTROGRAM, ModalitySpec, Split, Store, write_store
from avdd.distill.synthetic import DivergedError


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("AVDD_DATA")
    if not root or not (Path(root) / "fsdd" / "recordings").is_dir():
        pytest.fail("set AVDD_DATA to the shared data folder (holding fsdd/recordings and video/)")
    return Path(root).resolve()  # CI passes a relative path; tests link to it from elsewhere


@pytest.fixture(scope="session")
def avdigits(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The real avdigits store, built once per test session (a few seconds)."""
    from avdd.data.sources.avdigits import build_avdigits

    return build_avdigits(tmp_path_factory.mktemp("avdigits") / "store", progress=False, data_root=str(data_root))


TINY_SHAPES = {"audio": (1, 16, 12), "frame": (3, 8, 8)}
TINY_SPECS = {
    "audio": ModalitySpec(kind=SPECTROGRAM, shape=TINY_SHAPES["audio"], dtype="float16", mean=(0.0,), std=(1.0,)),
    "frame": ModalitySpec(kind=IMAGE, shape=TINY_SHAPES["frame"], dtype="uint8", mean=(0.5,), std=(0.25,),
                          scale=1 / 255),
}


def tiny_arrays(num_classes: int, per_class: int, rng: np.random.Generator,
                patterns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    labels = np.repeat(np.arange(num_classes), per_class)
    rng.shuffle(labels)
    audio = patterns["audio"][labels] + 0.5 * rng.standard_normal((len(labels), *TINY_SHAPES["audio"]))
    frame = patterns["frame"][labels] + 30 * rng.standard_normal((len(labels), *TINY_SHAPES["frame"]))
    return {"labels": labels, "audio": audio.astype(np.float16), "frame": np.clip(frame, 0, 255).astype(np.uint8)}


def make_tiny_store(
    path: Path,
    *,
    num_classes: int = 3,
    train_per_class: int = 12,
    test_per_class: int = 6,
    seed: int = 0,
    class_names: list[str] | None = None,
    specs: dict[str, ModalitySpec] | None = None,
    provenance: dict | None = None,
    splits: tuple[str, ...] = ("train", "test"),
) -> Store:
    rng = np.random.default_rng(seed)
    patterns = {
        "audio": 2.0 * rng.standard_normal((num_classes, *TINY_SHAPES["audio"])),
        "frame": rng.uniform(40, 215, (num_classes, *TINY_SHAPES["frame"])),
    }
    sizes = {"train": train_per_class, "test": test_per_class}
    return write_store(
        path,
        name="tiny",
        class_names=class_names or [f"c{i}" for i in range(num_classes)],
        modalities=specs or TINY_SPECS,
        splits={s: tiny_arrays(num_classes, sizes[s], rng, patterns) for s in splits},
        provenance=provenance,
    )


def rename_modalities(store: Store, names: dict[str, str], path: Path) -> Store:
    """A copy of ``store`` with its modalities renamed by ``names`` (old: new): same data, same kinds."""
    splits = {s: {"labels": np.asarray(store.split(s).labels),
                  **{new: np.asarray(store.split(s).arrays[old]) for old, new in names.items()}}
              for s in store.split_sizes}
    return write_store(path, name=f"{store.name}-renamed", class_names=store.class_names,
                       modalities={new: store.modalities[old] for old, new in names.items()}, splits=splits)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return make_tiny_store(tmp_path_factory.mktemp("stores") / "tiny")


TINY_EXPERTS = {"num_experts": 2, "epochs": 3, "batch_size": 8, "width": 8}


@pytest.fixture(scope="session")
def tiny_experts(tiny_store: Store, tmp_path_factory: pytest.TempPathFactory):
    """Two narrow audio-visual experts, 3 epochs each, on the tiny store."""
    from avdd.distill.experts import ExpertConfig, train_experts

    return train_experts(tiny_store, tmp_path_factory.mktemp("experts") / "experts", ExpertConfig(**TINY_EXPERTS),
                         progress=False)


def assert_nan_stops_the_run(make_run, checkpoint: Path, iterations: int, modality: str, message: str) -> None:
    """A run resumed after ``iterations`` whose synthetic ``modality`` holds a NaN stops with
    ``message`` (a regex) and leaves the checkpoint of the last good iteration untouched.
    ``make_run(total_iterations)`` builds a fresh run of the method under test."""
    make_run(iterations).run(checkpoint=checkpoint, progress=False)
    good = checkpoint.read_bytes()
    run = make_run(2 * iterations)
    run.load_state(checkpoint)
    with torch.no_grad():
        run.synthetic[modality][0, 0, 0, 0] = float("nan")
    with pytest.raises(DivergedError, match=message):
        run.run(checkpoint=checkpoint, progress=False)
    assert checkpoint.read_bytes() == good


def assert_one_networks_accuracy(accuracy: dict, test: Split) -> None:
    """``accuracy`` (a result's mean, std and runs) is that of one network: a whole number of
    ``test``'s samples classified correctly, out of all of them."""
    (run,) = accuracy["runs"]
    assert accuracy["mean"] == run and accuracy["std"] == 0.0
    correct = run * len(test)
    assert correct == pytest.approx(round(correct)) and 0 <= round(correct) <= len(test)


def assert_real_samples_of_their_class(split: Split, modality: str, samples, labels) -> None:
    """Each of ``samples`` (``modality``'s, any array type) is, within 1e-3 per element, a real sample
    of ``split`` whose label is the sample's."""
    real = np.asarray(split.arrays[modality], dtype=np.float32).reshape(len(split.labels), -1)
    for sample, label in zip(np.asarray(samples, dtype=np.float32), np.asarray(labels), strict=True):
        distances = np.abs(real - sample.reshape(1, -1)).max(1)
        match = int(distances.argmin())
        assert distances[match] < 1e-3 and int(split.labels[match]) == int(label)
