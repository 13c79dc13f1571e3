"""What the speed benchmarks share: the input shapes they measure at, a store of random samples at
those shapes (so that a benchmark needs no prepared data and runs on a bare GPU machine), and
timing and peak memory on a CPU or a CUDA device."""

from __future__ import annotations

import resource
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from avdd.data.store import IMAGE, SPECTROGRAM, ModalitySpec, Store, write_store

# per-sample shapes: avdigits' (the CPU measurements) and the paper's (224×224 RGB frames)
SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    "avdigits": {"audio": (1, 128, 56), "frame": (1, 28, 28)},
    "reference": {"audio": (1, 128, 56), "frame": (3, 224, 224)},
}
CLASSES = 10


def random_store(path: Path, shapes: Mapping[str, tuple[int, ...]], labels: np.ndarray) -> Store:
    """A train split of ``len(labels)`` samples: spectrograms drawn around avdigits' dB levels, uniform
    bytes for the frames."""
    rng = np.random.default_rng(0)
    n = len(labels)
    specs = {"audio": ModalitySpec(shapes["audio"], "float16", (-60.0,), (30.0,), kind=SPECTROGRAM),
             "frame": ModalitySpec(shapes["frame"], "uint8", (0.4,), (0.25,), scale=1 / 255, kind=IMAGE)}
    arrays = {"labels": labels,
              "audio": rng.normal(-60, 30, (n, *shapes["audio"])).astype(np.float16),
              "frame": rng.integers(0, 256, (n, *shapes["frame"]), dtype=np.uint8)}
    classes = int(labels.max()) + 1
    return write_store(path, name="bench", class_names=[str(c) for c in range(classes)], modalities=specs,
                       splits={"train": arrays})


def matching_store(path: Path, shapes: Mapping[str, tuple[int, ...]], real_batch: int, ipc: int) -> Store:
    """A random store with enough samples per class for a DM/AVDD run: one real batch, and the
    initial synthetic set drawn from the real samples."""
    return random_store(path, shapes, np.repeat(np.arange(CLASSES), max(real_batch, ipc)))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device) -> float:
    """The process's peak memory so far: on CUDA the most allocated since the last reset, else max RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
