"""Coreset selection on embeddings: herding and greedy k-center, per class.

Both return a selection *order*: the first k entries are the size-k coreset, so coresets are
nested across sizes (IPC 1 ⊂ IPC 10 ⊂ IPC 20) and an order can initialise other methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from avdd.data.store import Store
from avdd.distill.embedding import EmbeddingConfig, train_split_embeddings
from avdd.distill.registry import METHODS, MethodSpec, RunContext
from avdd.distill.result import SyntheticSet
from avdd.distill.spec import nested
from avdd.errors import AvddError
from avdd.seeding import generator
from avdd.training.inputs import read_stored


def herding_order(features: torch.Tensor, k: int) -> torch.Tensor:
    """Welling's herding: greedily add the sample that keeps the running mean closest to the mean.

    At step t, pick i (not yet picked) minimising ‖μ − (S + x_i)/t‖, with S the sum of the
    t − 1 samples picked so far. Ties go to the lowest index. Returns k indices into ``features``.
    """
    x = features.double()
    n = x.shape[0]
    k = min(k, n)
    mu = x.mean(dim=0)
    picked = torch.zeros(n, dtype=torch.bool)
    total = torch.zeros_like(mu)
    order = []
    for t in range(1, k + 1):
        dist = ((mu - (total + x) / t) ** 2).sum(dim=1)
        dist[picked] = float("inf")
        i = int(torch.argmin(dist))
        order.append(i)
        picked[i] = True
        total += x[i]
    return torch.tensor(order, dtype=torch.long)


def kcenter_order(features: torch.Tensor, k: int) -> torch.Tensor:
    """Greedy k-center: start at the sample nearest the mean, then add the farthest from the centres.

    Deterministic (ties go to the lowest index). The covering radius max_i min_c ‖x_i − c‖ of the
    first j picks never increases with j, because the picks are nested.
    """
    x = features.double()
    n = x.shape[0]
    k = min(k, n)
    if k == 0:
        return torch.zeros(0, dtype=torch.long)
    first = int(torch.argmin(((x - x.mean(dim=0)) ** 2).sum(dim=1)))
    order = [first]
    nearest = ((x - x[first]) ** 2).sum(dim=1)
    for _ in range(1, k):
        i = int(torch.argmax(nearest))
        order.append(i)
        nearest = torch.minimum(nearest, ((x - x[i]) ** 2).sum(dim=1))
    return torch.tensor(order, dtype=torch.long)


SELECTORS = {"herding": herding_order, "kcenter": kcenter_order}


def selection_orders(
    store: Store,
    modalities: Sequence[str],
    kind: str,
    length: int,
    embedding: EmbeddingConfig,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[np.ndarray]:
    """Per class, the first ``length`` training-split indices in ``kind`` (herding/kcenter) order."""
    features = train_split_embeddings(store, modalities, embedding, device=device, progress=progress)
    split = store.split("train")
    return [pool[SELECTORS[kind](features[torch.from_numpy(pool)], length).numpy()] for pool in split.class_indices]


def random_orders(store: Store, length: int, seed: int) -> list[np.ndarray]:
    """Per class, ``length`` training indices in a seeded random order (nested across lengths)."""
    split = store.split("train")
    return [pool[torch.randperm(len(pool), generator=generator(seed, "random", c)).numpy()[:length]]
            for c, pool in enumerate(split.class_indices)]


def coreset_set(store: Store, modalities: Sequence[str], orders: list[np.ndarray], ipc: int,
                details: dict[str, Any]) -> SyntheticSet:
    """The real samples at the first ``ipc`` positions of each class's order, in stored units."""
    for c, order in enumerate(orders):
        if len(order) < ipc:
            raise AvddError(f"class {store.class_names[c]!r} has {len(order)} training samples, fewer than "
                            f"IPC {ipc}; lower --ipc")
    index = np.concatenate([order[:ipc] for order in orders])
    split = store.split("train")
    data = {m: read_stored(split, index, m) for m in modalities}
    for m, samples in data.items():
        _refuse_non_finite(store, m, samples, index)
    labels = torch.from_numpy(np.asarray(split.labels[index]))
    order_json = {store.class_names[c]: o[:ipc].tolist() for c, o in enumerate(orders)}
    return SyntheticSet(data, labels, details={**details, "selection": order_json})


def _refuse_non_finite(store: Store, modality: str, samples: torch.Tensor, index: np.ndarray) -> None:
    """A coreset copies stored samples as they are: one holding NaN or inf would poison every
    network trained on the set, so refuse it here, naming how many and where."""
    if not samples.is_floating_point():
        return
    bad = ~torch.isfinite(samples).flatten(1).all(dim=1)
    if bad.any():
        first = int(index[bad.numpy()][0])
        raise AvddError(f"{store.path}: {int(bad.sum())} of the {len(index)} selected {modality} samples hold NaN "
                        f"or inf values (first: train sample {first}); the store is corrupt, rebuild it")


@dataclass(frozen=True)
class RandomSettings:
    """``random`` takes no settings of its own."""


@dataclass(frozen=True)
class SelectionSettings:
    """The settings of herding and k-center: the embedding network they select on."""

    embed: EmbeddingConfig = field(default_factory=EmbeddingConfig, metadata=nested("embed"))


def _random(context: RunContext, settings: RandomSettings) -> SyntheticSet:
    orders = random_orders(context.store, context.ipc, context.seed)
    return coreset_set(context.store, context.modalities, orders, context.ipc, {})


def _selector(kind: str) -> Callable[[RunContext, SelectionSettings], SyntheticSet]:
    def method(context: RunContext, settings: SelectionSettings) -> SyntheticSet:
        # the embedding network does not depend on the run's seed: herding is deterministic given
        # the data, and one cached network serves every seed
        orders = selection_orders(context.store, context.modalities, kind, context.ipc, settings.embed,
                                  device=context.device, progress=context.progress)
        return coreset_set(context.store, context.modalities, orders, context.ipc, {"embedding": vars(settings.embed)})

    return method


METHODS.add("random", MethodSpec(RandomSettings, _random, "IPC real samples per class, uniformly at random"))
METHODS.add("herding", MethodSpec(SelectionSettings, _selector("herding"),
                                  "real samples whose running mean stays closest to the class mean"))
METHODS.add("kcenter", MethodSpec(SelectionSettings, _selector("kcenter"),
                                  "real samples chosen by greedy k-center on embeddings"))
