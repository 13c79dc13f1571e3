"""The distribution-matching losses of DM and AVDD, for all classes at once.

Per class c, with mean embeddings r_m (real) and s_m (synthetic) of each modality m:

- base:  Σ_m ‖r_m − s_m‖²                                   (DM; in AV each modality separately)
- joint: ‖Σ_m r_m − Σ_m s_m‖²                               (AVDD joint matching, two modalities)
- gap:   ‖(r_a − r_v) − (s_a − s_v)‖² = ‖(r_a + s_v) − (r_v + s_a)‖²   (modality-gap matching)

The loss is Σ_c (w_base·base + w_joint·joint + w_gap·gap). Classes are independent, so summing
over classes and taking one step gives every class the gradient its own loss would give it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

TERMS = ("base", "joint", "gap")


@dataclass(frozen=True)
class MatchingWeights:
    """Weights of the three terms; DM is (1, 0, 0), the reference AVDD is (1, 10, 10)."""

    base: float = 1.0
    joint: float = 0.0
    gap: float = 0.0

    def active(self) -> tuple[str, ...]:
        return tuple(t for t in TERMS if getattr(self, t) != 0)


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, d) features, (N,) labels -> (num_classes, d) per-class means (0 for an empty class)."""
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(features.dtype)
    return sums / counts[:, None]


def matching_terms(
    real: Mapping[str, torch.Tensor], synthetic: Mapping[str, torch.Tensor], modalities: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Per-class values of each term: {"base": (C,), and with two modalities "joint", "gap": (C,)}.

    ``real[m]`` and ``synthetic[m]`` are (C, d) class-mean embeddings; the cross-modal terms need
    both modalities to embed into the same d.
    """
    def sq(x: torch.Tensor) -> torch.Tensor:
        return (x**2).sum(dim=1)

    first, *others = modalities  # the first term starts the sum (sum()'s own start, 0, is no Tensor)
    terms = {"base": sum((sq(real[m] - synthetic[m]) for m in others), sq(real[first] - synthetic[first]))}
    if len(modalities) == 2:
        first, second = modalities
        if real[first].shape[1] != real[second].shape[1]:
            raise ValueError(
                f"joint and gap matching add {first} and {second} embeddings, which have different sizes "
                f"({real[first].shape[1]} vs {real[second].shape[1]}); use encoders with the same width and grid"
            )
        terms["joint"] = sq((real[first] + real[second]) - (synthetic[first] + synthetic[second]))
        terms["gap"] = sq((real[first] - real[second]) - (synthetic[first] - synthetic[second]))
    return terms


def weighted_total(terms: Mapping[str, torch.Tensor], weights: MatchingWeights) -> torch.Tensor:
    """Σ over classes and active terms of weight · term."""
    missing = [t for t in weights.active() if t not in terms]
    if missing:
        raise ValueError(f"terms {missing} need two modalities")
    return sum(getattr(weights, t) * terms[t].sum() for t in weights.active())
