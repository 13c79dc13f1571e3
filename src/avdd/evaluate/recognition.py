"""The recognition protocol: train fresh networks on a training set, test them on real data.

The training set is the train split of a store: a real dataset (the "whole data" upper bound) or
a distilled set. It is small by construction, so it is loaded to the device once as normalised
float; the (possibly large) real test split is read in memory-mapped chunks. Accuracy is reported
per network and as mean ± population standard deviation (``numpy.std``, ddof=0, as in the DC/DM
reference code).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from avdd.data.store import Store, open_store
from avdd.device import resolve_device
from avdd.distributed import current
from avdd.errors import AvddError
from avdd.models.fusion import FUSION_HEADS
from avdd.training.inputs import load_training_set
from avdd.training.parallel import networks_together, spread_groups, train_fresh_networks
from avdd.training.protocol import EvalConfig, accuracy_on, train_fresh_network


def summarise(runs: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) of the per-network accuracies."""
    values = np.asarray(runs, dtype=np.float64)
    return float(values.mean()), float(values.std())


@dataclass
class RecognitionResult:
    config: EvalConfig
    train: str
    test: str
    train_samples: int  # after factor expansion
    runs: list[float]  # test accuracy of each network, in [0, 1]
    seconds: list[float]  # training + test time of each network

    @property
    def mean(self) -> float:
        return summarise(self.runs)[0]

    @property
    def std(self) -> float:
        return summarise(self.runs)[1]

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": {"mean": self.mean, "std": self.std, "std_kind": "population", "runs": list(self.runs)},
            "modalities": list(self.config.modalities),
            "fusion": self.config.fusion,
            "train": self.train,
            "test": self.test,
            "train_samples": self.train_samples,
            "seconds": list(self.seconds),
            "config": self.config.to_json(),
        }


def check_compatible(train: Store, test: Store, modalities: Sequence[str]) -> None:
    """Both stores have every modality, with the same kinds and per-sample shapes, and the same classes."""
    for store in (train, test):
        missing = [m for m in modalities if m not in store.modalities]
        if missing:
            raise AvddError(f"{store.path}: no modality {', '.join(map(repr, missing))} "
                            f"(it has: {', '.join(store.modalities)})")
    if train.class_names != test.class_names:
        raise AvddError(f"{train.path} and {test.path} have different classes "
                        f"({train.num_classes} vs {test.num_classes}, or in another order)")
    for m in modalities:
        a, b = train.modalities[m].shape, test.modalities[m].shape
        if a != b:
            raise AvddError(f"modality {m!r} has shape {list(a)} in {train.path} but {list(b)} in {test.path}")
        kinds = train.modalities[m].kind, test.modalities[m].kind
        if kinds[0] != kinds[1]:
            raise AvddError(f"modality {m!r} is of kind {kinds[0]} in {train.path} but {kinds[1]} in {test.path}")


def evaluate_recognition(
    train: str | Path | Store,
    test: str | Path | Store,
    config: EvalConfig = EvalConfig(),
    *,
    device: str | torch.device | None = "cpu",
    progress: bool = True,
) -> RecognitionResult:
    """Train ``config.num_eval`` fresh networks on ``train``'s train split; test each on ``test``'s
    test split.

    Under a process group every process must call this: the networks are dealt over the processes
    and every process gets the whole result, equal to the serial one (each network's random draws
    depend on its index alone, see ``network_generators``). ``device`` None: the best available.
    """
    FUSION_HEADS.get(config.fusion)  # fail on an unknown head before any loading
    device = resolve_device(device)
    train_store = train if isinstance(train, Store) else open_store(train)
    test_store = test if isinstance(test, Store) else open_store(test)
    check_compatible(train_store, test_store, config.modalities)
    test_split = test_store.split("test")
    raw = config.quirks.raw_modalities(train_store, config.modalities)
    inputs, labels = load_training_set(train_store, config.modalities, device, config.memory_format, raw)

    bar = tqdm(total=len(current().share(config.num_eval)) * config.epochs, disable=not progress, unit="epoch",
               desc=f"{'+'.join(config.modalities)} {config.fusion}")

    def networks(runs: Sequence[int]) -> list[tuple[float, float]]:
        """The networks' test accuracies and training + test times (a group's training time shared equally)."""
        start = time.perf_counter()
        models = (train_fresh_networks(train_store, inputs, labels, config, runs, device, bar) if len(runs) > 1
                  else [train_fresh_network(train_store, inputs, labels, config, runs[0], device, bar)])
        trained = time.perf_counter()
        results = []
        for run, model in zip(runs, models, strict=True):
            accuracy = accuracy_on(model, test_split, config.modalities, device, config.test_batch_size,
                                   config.memory_format, raw)
            bar.set_postfix(net=f"{run + 1}/{config.num_eval}", acc=f"{accuracy:.3f}")
            results.append((accuracy, (trained - start) / len(runs) + time.perf_counter() - trained))
            trained = time.perf_counter()
        return results

    with bar:
        results = spread_groups(config.num_eval, networks_together(config, device), networks)
    runs, seconds = [r for r, _ in results], [s for _, s in results]
    return RecognitionResult(config, str(train_store.path), str(test_store.path), len(labels), runs, seconds)
