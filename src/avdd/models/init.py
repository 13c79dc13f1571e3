"""Parameter initialisation from an explicit ``torch.Generator`` (PyTorch's defaults, reproduced).

Modules initialise themselves from the global RNG; to get reproducible networks without ever
seeding it, every parameter is re-drawn here from the caller's generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _fan_in_uniform(module: nn.Linear | nn.Conv2d, g: torch.Generator) -> None:
    # nn.Linear / nn.Conv2d default: kaiming_uniform(a=sqrt(5)) == U(±1/sqrt(fan_in)); bias the same
    weight = module.weight
    bound = 1.0 / math.sqrt(weight[0].numel())
    nn.init.uniform_(weight, -bound, bound, generator=g)
    if module.bias is not None:
        nn.init.uniform_(module.bias, -bound, bound, generator=g)


def _affine_norm(module: nn.GroupNorm | nn.BatchNorm2d | nn.LayerNorm, g: torch.Generator) -> None:
    if getattr(module, "weight", None) is not None:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _attention(module: nn.MultiheadAttention, g: torch.Generator) -> None:
    # nn.MultiheadAttention default: xavier-uniform packed input projection, zero biases
    nn.init.xavier_uniform_(module.in_proj_weight, generator=g)
    nn.init.zeros_(module.in_proj_bias)
    _fan_in_uniform(module.out_proj, g)
    nn.init.zeros_(module.out_proj.bias)


def _embedding(module: nn.Embedding, g: torch.Generator) -> None:
    nn.init.normal_(module.weight, generator=g)


# each initialiser takes the module type it is keyed by (init_parameters looks it up by exact type)
INITIALISERS: dict[type[nn.Module], Callable[[Any, torch.Generator], None]] = {
    nn.Linear: _fan_in_uniform,
    nn.Conv2d: _fan_in_uniform,
    nn.GroupNorm: _affine_norm,
    nn.BatchNorm2d: _affine_norm,
    nn.LayerNorm: _affine_norm,
    nn.MultiheadAttention: _attention,
    nn.Embedding: _embedding,
}


@torch.no_grad()
def init_linear_weights(module: nn.Module, std: float, generator: torch.Generator | None) -> nn.Module:
    """Weights of every nn.Linear in ``module`` from N(0, std), biases kept: the authors' classifier
    initialisation (AVDD ``nets/__init__.py``, applied to the classifier only)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std, generator=generator)
    return module


@torch.no_grad()
def init_parameters(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every parameter of ``model`` from ``generator``; returns ``model``.

    Raises TypeError for a module owning parameters of a type without an initialiser, so a new
    layer type cannot silently keep its global-RNG initialisation.
    """
    covered: set[int] = set()
    for module in model.modules():
        init = INITIALISERS.get(type(module))
        if init is not None:
            init(module, generator)
            covered.update(id(p) for p in module.parameters())
    for name, p in model.named_parameters():
        if id(p) not in covered:
            raise TypeError(f"no initialiser for parameter {name!r}; add its module type to INITIALISERS")
    return model
