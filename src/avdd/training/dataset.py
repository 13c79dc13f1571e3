"""Any store as a ``torch.utils.data.Dataset``, for a user's own training script (``avdd.load``).

Each item is a dict of the network inputs of one sample (every modality normalised by the store's
statistics, as avdd's own training sees them) and its ``label``; a ``DataLoader`` batches them.
Samples are read on access from the store's memory-mapped arrays, so a large real store costs no
memory up front. A factorised distilled set holds ``factor**2`` tiles per stored sample: the view
has ``factor**2`` times as many items (with a factor per modality, the least common multiple of their
tile counts), in the order avdd's evaluation decodes them (all stored samples' first tile, then all
second tiles, ...), each decoded when it is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from avdd.data.store import Store, open_store
from avdd.errors import AvddError
from avdd.training.factor import decoded_per_stored, expand_modality, factor_of, side_of
from avdd.training.inputs import load_batch

Item = dict[str, torch.Tensor | int]


class StoreDataset(Dataset[Item]):
    """The ``split`` of ``store`` as items ``{modality: tensor, ..., "label": int}``."""

    def __init__(self, store: Store, split: str = "train", modalities: Sequence[str] | None = None) -> None:
        self.store, self.split = store, store.split(split)
        self.modalities = tuple(modalities or store.modalities)
        missing = [m for m in self.modalities if m not in store.modalities]
        if missing:
            raise AvddError(f"{store.path}: no modality {missing[0]!r} (has: {', '.join(store.modalities)})")
        self.factor = factor_of(store)
        self.per_stored = decoded_per_stored(self.factor, self.modalities)
        self.stored = len(self.split)

    @property
    def class_names(self) -> list[str]:
        return self.store.class_names

    @property
    def labels(self) -> torch.Tensor:
        """Every item's label, in item order."""
        return torch.from_numpy(np.array(self.split.labels, dtype=np.int64)).repeat(self.per_stored)

    def __len__(self) -> int:
        return self.stored * self.per_stored

    def __getitem__(self, index: int) -> Item:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        tile, sample = divmod(index % len(self), self.stored)  # tile-major, as expand_factor decodes
        inputs = load_batch(self.split, np.array([sample]), self.modalities, "cpu")
        if self.per_stored > 1:
            inputs = {m: expand_modality(x, side_of(self.factor, m), self.per_stored)[tile : tile + 1]
                      for m, x in inputs.items()}
        return {**{m: x[0] for m, x in inputs.items()}, "label": int(self.split.labels[sample])}


def load(path: str | Path, split: str = "train", modalities: Sequence[str] | None = None) -> StoreDataset:
    """The store at ``path`` (a dataset or a distilled set) as a torch Dataset of its ``split``."""
    return StoreDataset(open_store(path), split, modalities)
