"""Moving stored samples to the device as normalised float tensors, and per-class batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from avdd.data.store import Split


def read_stored(split: Split, indices: np.ndarray, modality: str) -> torch.Tensor:
    """Samples ``indices`` of one modality in their stored dtype, in the requested order."""
    indices = np.asarray(indices)
    order = np.argsort(indices, kind="stable")  # sorted reads are sequential on a memory map
    restore = torch.from_numpy(np.argsort(order, kind="stable"))
    return torch.from_numpy(np.ascontiguousarray(split.arrays[modality][indices[order]]))[restore]


def load_batch(
    split: Split, indices: np.ndarray, modalities: Sequence[str], device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Read samples ``indices`` of ``split`` (in that order) and normalise them on ``device``.

    The stored dtype (uint8 frames, float16 spectrograms) travels to the device unchanged;
    conversion to float32 happens there.
    """
    return {
        m: split.store.modalities[m].normalise(read_stored(split, indices, m).to(device, non_blocking=True))
        for m in modalities
    }


class ClassSampler:
    """Draws random batches of one class from a (memory-mapped) split.

    ``sample(c, n)`` returns min(n, class size) distinct samples of class ``c``, drawn with the
    sampler's own ``torch.Generator`` so that runs are reproducible without touching global RNG.
    """

    def __init__(
        self,
        split: Split,
        modalities: Sequence[str],
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        self.split = split
        self.modalities = tuple(modalities)
        self.device = torch.device(device)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.class_indices = split.class_indices

    @property
    def num_classes(self) -> int:
        return len(self.class_indices)

    def indices(self, c: int, n: int) -> np.ndarray:
        pool = self.class_indices[c]
        pick = torch.randperm(len(pool), generator=self.generator)[:n].numpy()
        return pool[pick]

    def sample(self, c: int, n: int) -> dict[str, torch.Tensor]:
        return load_batch(self.split, self.indices(c, n), self.modalities, self.device)
