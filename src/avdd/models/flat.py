"""A module's trainable parameters as one flat vector, and back (for ``torch.func.functional_call``).

Trajectory matching saves and compares whole networks as vectors. The layout — names and shapes
of the trainable parameters in ``named_parameters()`` order, which is fixed by the module's
construction — is saved with the vectors, so a mismatch between the network that wrote them and
the one that reads them is caught instead of silently mixing up parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from avdd.errors import AvddError

Layout = list[tuple[str, tuple[int, ...]]]


def parameter_layout(model: nn.Module) -> Layout:
    """Names and shapes of ``model``'s parameters (all of them: what an optimizer trains), in order.

    Buffers (e.g. batch-norm running statistics) would change during training without being part
    of the vector, so a model with buffers is refused.
    """
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        raise AvddError(f"flat parameter vectors need a model without buffers; this one has {', '.join(buffers)} "
                        "(use instance norm)")
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def flatten_parameters(model: nn.Module) -> torch.Tensor:
    """The parameters as one detached float32 vector (logical order, whatever the strides)."""
    return torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])


def unflatten(vector: torch.Tensor, layout: Sequence[tuple[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
    """Views of ``vector`` shaped as ``layout``: gradients through them reach ``vector``."""
    sizes = [int(torch.Size(shape).numel()) for _, shape in layout]
    if sum(sizes) != vector.numel():
        raise AvddError(f"a parameter vector of {vector.numel()} values does not fit a layout of {sum(sizes)}")
    pieces = vector.split(sizes)
    return {name: piece.view(shape) for (name, shape), piece in zip(layout, pieces, strict=True)}
