"""Fusion heads and the classifier that runs per-modality encoders into one of them.

Every head maps per-modality features ``{modality: (N, D_m)}`` to *named logits*
``{name: (N, classes)}``. The ensemble head names one set of logits per modality; the others
name a single fused set. Training loss is the sum of the cross-entropies of all named logits and
the prediction is the mean of their softmaxes, so the ensemble head's loss (sum of per-modality
CEs) and prediction (mean of per-modality probabilities) need no special case anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from avdd.errors import AvddError
from avdd.models.convnet import DEFAULT_ENCODER, ENCODERS, reference_config
from avdd.models.init import init_linear_weights, init_parameters
from avdd.registry import Registry

FUSED = "fused"  # the name of the single logits set of a fusing head

Features = Mapping[str, torch.Tensor]
Logits = dict[str, torch.Tensor]


class EnsembleHead(nn.Module):
    """One linear classifier per modality; probabilities are averaged at prediction."""

    def __init__(self, dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__()
        self.classifiers = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def forward(self, features: Features) -> Logits:
        return {m: layer(features[m]) for m, layer in self.classifiers.items()}


class ConcatHead(nn.Module):
    """Concatenated features -> linear."""

    def __init__(self, dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.classifier = nn.Linear(sum(dims.values()), num_classes)

    def forward(self, features: Features) -> Logits:
        return {FUSED: self.classifier(torch.cat([features[m] for m in self.modalities], dim=1))}


class SumHead(nn.Module):
    """Per-modality linear projections to a common width, summed -> linear."""

    def __init__(self, dims: Mapping[str, int], num_classes: int, width: int = 512) -> None:
        super().__init__()
        self.projections = nn.ModuleDict({m: nn.Linear(d, width) for m, d in dims.items()})
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, features: Features) -> Logits:
        fused = sum(proj(features[m]) for m, proj in self.projections.items())
        return {FUSED: self.classifier(fused)}


class AttentionHead(nn.Module):
    """Each modality's features become one token; a small self-attention layer lets the tokens
    attend to each other (cross-modal), then their mean goes to a linear classifier."""

    def __init__(self, dims: Mapping[str, int], num_classes: int, width: int = 128, heads: int = 4) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.tokens = nn.ModuleDict({m: nn.Linear(d, width) for m, d in dims.items()})
        self.modality_embedding = nn.Embedding(len(dims), width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, features: Features) -> Logits:
        tokens = torch.stack([self.tokens[m](features[m]) for m in self.modalities], dim=1)
        tokens = tokens + self.modality_embedding.weight
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        tokens = self.norm(tokens + attended)
        return {FUSED: self.classifier(tokens.mean(dim=1))}


class LinearHead(nn.Module):
    """What every head reduces to with a single modality: a plain linear classifier."""

    def __init__(self, dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__()
        (self.modality, dim), = dims.items()
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, features: Features) -> Logits:
        return {self.modality: self.classifier(features[self.modality])}


FUSION_HEADS: Registry[Callable[[Mapping[str, int], int], nn.Module]] = Registry("fusion head")
FUSION_HEADS.add("ensemble", EnsembleHead)
FUSION_HEADS.add("concat", ConcatHead)
FUSION_HEADS.add("sum", SumHead)
FUSION_HEADS.add("attention", AttentionHead)


def make_head(name: str, dims: Mapping[str, int], num_classes: int) -> nn.Module:
    """The registered head ``name``; with one modality any head is a plain linear classifier."""
    head = FUSION_HEADS.get(name)  # validates the name even when a single modality ignores it
    return LinearHead(dims, num_classes) if len(dims) == 1 else head(dims, num_classes)


def fusion_loss(logits: Logits, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the cross-entropies of all named logits (ensemble: one per modality)."""
    # a Tensor, not sum()'s start 0: every head names at least one set of logits (build_classifier
    # refuses a classifier without a modality)
    return cast(torch.Tensor, sum(F.cross_entropy(z, labels) for z in logits.values()))


def probabilities(logits: Logits) -> torch.Tensor:
    """Mean of the softmaxes of all named logits (ensemble: of the per-modality classifiers)."""
    return torch.stack([z.softmax(dim=1) for z in logits.values()]).mean(dim=0)


class AVClassifier(nn.Module):
    """Per-modality encoders plus a fusion head; takes ``{modality: batch}``, returns named logits.

    ``forward`` is a pure function of the parameters, so ``torch.func.functional_call`` over
    the whole model works. Per-modality outputs: ``features(x)`` (encoder embeddings) and, with
    the ensemble head, ``forward(x)[modality]`` (per-modality logits; softmax them for the
    retrieval embeddings).
    """

    def __init__(self, encoders: Mapping[str, nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.modalities = tuple(encoders)
        self.encoders = nn.ModuleDict(dict(encoders))
        self.head = head

    def features(self, inputs: Features) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](inputs[m]) for m in self.modalities}

    def forward(self, inputs: Features) -> Logits:
        return self.head(self.features(inputs))

    def predict_proba(self, inputs: Features) -> torch.Tensor:
        return probabilities(self(inputs))


def build_classifier(
    shapes: Mapping[str, Sequence[int]],
    num_classes: int,
    *,
    fusion: str = "ensemble",
    encoder: str = DEFAULT_ENCODER,
    generator: torch.Generator | None = None,
    layout: str = "clean",
    head_init_std: float | None = None,
    **encoder_overrides: object,
) -> AVClassifier:
    """A classifier over the modalities of ``shapes`` ({modality: (C, H, W)}), each with its
    reference encoder in ``layout`` (``layout_overrides``); parameters drawn from ``generator``
    when given; ``head_init_std``: the head's linear weights N(0, std), as the authors' code does."""
    if not shapes:
        raise AvddError("a classifier needs at least one modality")
    make_encoder = ENCODERS.get(encoder)
    encoders = {m: make_encoder(reference_config(s, layout, **encoder_overrides))
                for m, s in shapes.items()}
    dims = {m: enc.feature_dim for m, enc in encoders.items()}
    model = AVClassifier(encoders, make_head(fusion, dims, num_classes))
    if generator is not None:
        init_parameters(model, generator)
    if head_init_std is not None:  # after the encoders' draws, so those stay what they are without it
        init_linear_weights(model.head, head_init_std, generator)
    return model
