"""Moving stored samples to the device as normalised float tensors."""

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

