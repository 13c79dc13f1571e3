"""The ConvNet encoder of the DC/DM/AVDD line of work, and its reference configuration per input.

Each layer is conv3x3 -> norm -> activation -> pool(2); a final adaptive average pool brings any
input to a fixed ``grid x grid`` map, so encoders of different modalities emit features of the
same size (``width * grid**2``), which the cross-modal distillation terms need to add them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from avdd.errors import AvddError
from avdd.registry import Registry

NORMS: dict[str, Callable[[int], nn.Module]] = {
    # instance norm as in the reference: GroupNorm with one group per channel, affine
    "instance": lambda c: nn.GroupNorm(c, c, affine=True),
    "batch": nn.BatchNorm2d,
    "layer": lambda c: nn.GroupNorm(1, c, affine=True),
    "none": lambda c: nn.Identity(),
}
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    # in place: each layer's activation is the largest tensor of a forward (hundreds of MB at 224x224);
    # the norms before them keep their inputs for backward, so overwriting their outputs is safe
    "relu": lambda: nn.ReLU(inplace=True),
    "leakyrelu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}
POOLINGS: dict[str, Callable[[], nn.Module]] = {
    "avg": lambda: nn.AvgPool2d(2, 2),
    "max": lambda: nn.MaxPool2d(2, 2),
    "none": nn.Identity,
}


def _choose(table: Mapping[str, Callable[..., nn.Module]], kind: str, name: str) -> Callable[..., nn.Module]:
    if name not in table:
        raise AvddError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


@dataclass(frozen=True)
class ConvNetConfig:
    in_channels: int
    width: int = 128
    depth: int = 3
    norm: str = "instance"
    activation: str = "relu"
    pooling: str = "avg"
    grid: int = 7
    # The authors' encoders (AVDD, nets/audio_net.py) differ in two places, kept as options here:
    stem_padding: int = 1  # their first conv pads by 3 on one-channel input (an MNIST code path)
    pool_last: bool = True  # False: the last layer feeds the grid pool directly (their AdaptiveAvgPool2d((7, 7)))

    @property
    def feature_dim(self) -> int:
        return self.width * self.grid * self.grid


class Encoder(nn.Module):
    """What ``ENCODERS`` build: a module mapping (N, C, H, W) to (N, feature_dim) features."""

    feature_dim: int


class ConvNet(Encoder):
    """Maps (N, C, H, W) to flattened (N, width * grid**2) features."""

    def __init__(self, config: ConvNetConfig) -> None:
        super().__init__()
        norm = _choose(NORMS, "normalisation", config.norm)
        act = _choose(ACTIVATIONS, "activation", config.activation)
        pool = _choose(POOLINGS, "pooling", config.pooling)
        layers: list[nn.Module] = []
        channels = config.in_channels
        for d in range(config.depth):
            padding = config.stem_padding if d == 0 else 1
            last = d == config.depth - 1
            # nn.Identity in place of the last pool keeps parameter names (and flat layouts) unchanged
            layers += [nn.Conv2d(channels, config.width, 3, padding=padding), norm(config.width), act(),
                       pool() if config.pool_last or not last else nn.Identity()]
            channels = config.width
        self.config = config
        self.features = nn.Sequential(*layers)
        self.grid_pool = nn.AdaptiveAvgPool2d(config.grid)
        self.feature_dim = config.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grid_pool(self.features(x)).flatten(1)


ENCODERS: Registry[Callable[[ConvNetConfig], Encoder]] = Registry("encoder")
ENCODERS.add("convnet", ConvNet)
DEFAULT_ENCODER = "convnet"  # the encoder of the DC/DM/AVDD line: what DM/AVDD embed with, what the protocol trains


def depth_for(spatial: Sequence[int], grid: int = 7) -> int:
    """Number of halvings before the smaller side would drop below ``grid`` (at least one layer).

    Gives the reference depths: 3 on 128x56 spectrograms, 5 on 224x224 frames, and 2 on 28x28.
    """
    side, depth = min(spatial), 0
    while side // 2 >= grid:
        side //= 2
        depth += 1
    return max(depth, 1)


ENCODER_LAYOUTS = ("clean", "reference")


def layout_overrides(shape: Sequence[int], layout: str) -> dict[str, object]:
    """ConvNetConfig fields of ``layout`` for per-sample ``shape``: "clean" (pad 1, a 2x2 pool in
    every layer) or "reference" (the authors' audio net: first conv padded by 3 on one-channel
    input, the last layer's pool replaced by the grid pool; on their frame sizes, 224 and 28, this
    is their frame net exactly, since an adaptive pool of an even-sided map is a 2x2 average pool)."""
    if layout == "clean":
        return {}
    if layout == "reference":
        return {"stem_padding": 3 if int(shape[0]) == 1 else 1, "pool_last": False}
    raise AvddError(f"unknown encoder layout {layout!r}; known: {', '.join(ENCODER_LAYOUTS)}")


def reference_config(shape: Sequence[int], layout: str = "clean", **overrides: Any) -> ConvNetConfig:
    """The reference encoder for per-sample ``shape`` (C, H, W) in ``layout`` (``layout_overrides``);
    ``overrides`` replace fields, the layout's too."""
    if len(shape) != 3:
        raise AvddError(f"the ConvNet encoder needs (C, H, W) inputs, got shape {tuple(shape)}")
    grid = int(overrides.get("grid", ConvNetConfig.grid))
    base = ConvNetConfig(in_channels=int(shape[0]), depth=depth_for(shape[1:], grid))
    return replace(base, **{**layout_overrides(shape, layout), **overrides})
