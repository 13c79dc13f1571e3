"""Coreset selection on embeddings: herding and greedy k-center, per class.

Both return a selection *order*: the first k entries are the size-k coreset, so coresets are
nested across sizes (IPC 1 ⊂ IPC 10 ⊂ IPC 20) and an order can initialise other methods.
"""

from __future__ import annotations

import torch


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


def covering_radius(features: torch.Tensor, centres: torch.Tensor) -> float:
    """max over samples of the distance to the nearest of ``features[centres]``."""
    d = torch.cdist(features.double(), features[centres].double())
    return float(d.min(dim=1).values.max())


def joint_embedding(per_modality: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-modality L2-normalised features, concatenated (in the given modality order)."""
    return torch.cat([torch.nn.functional.normalize(f.double(), dim=1) for f in per_modality.values()], dim=1)
