"""Stored samples as network inputs: read in index order, moved to the device, normalised; and a
whole training set loaded at once, factor-decoded."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from avdd.data.store import Split, Store
from avdd.errors import AvddError
from avdd.training.factor import expand_factor, factor_of, is_factorised


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


def network_inputs(
    split: Split, index: np.ndarray, modalities: Sequence[str], device: torch.device, raw: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """``load_batch``, except that the ``raw`` modalities keep their stored units (times the store's
    scale) instead of being normalised by the store's mean and std."""
    inputs = load_batch(split, index, [m for m in modalities if m not in raw], device)
    for m in modalities:
        if m in raw:
            inputs[m] = read_stored(split, index, m).to(device).float() * split.store.modalities[m].scale
    return {m: inputs[m] for m in modalities}


def to_stored(store: Store, modality: str, x: torch.Tensor, raw: Sequence[str] = ()) -> torch.Tensor:
    """The inverse of ``network_inputs``: network inputs of ``modality`` back in ``store``'s units."""
    info = store.modalities[modality]
    return x.to(torch.float32) / info.scale if modality in raw else info.denormalise(x)


def load_training_set(
    store: Store, modalities: Sequence[str], device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format, raw: Sequence[str] = (),
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The whole train split on ``device`` as float (normalised unless ``raw``), factor-decoded, checked finite."""
    split = store.split("train")
    if len(split) == 0:
        raise AvddError(f"{store.path}: the train split is empty")
    index = np.arange(len(split))
    inputs = network_inputs(split, index, modalities, device, raw)
    for m, x in inputs.items():
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
            raise AvddError(f"{store.path}: {bad} training sample(s) of modality {m!r} contain NaN or Inf")
    labels = torch.from_numpy(np.asarray(split.labels[index])).to(device)
    factor = factor_of(store)
    if is_factorised(factor):
        inputs, labels = expand_factor(inputs, labels, factor)
    return {m: x.contiguous(memory_format=memory_format) for m, x in inputs.items()}, labels
