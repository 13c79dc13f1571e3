"""Differentiable Siamese augmentation (DSA; Zhao & Bilen, 2021), driven by explicit generators.

As in the reference "single" mode, one augmentation of the strategy (color, crop, cutout, flip,
scale, rotate; color = brightness + saturation + contrast) is applied per draw, with the DC/DM
parameter values. Everything is built from differentiable torch ops (indexing, ``affine_grid`` /
``grid_sample``, masks), so gradients reach the input, e.g. synthetic data during distillation.

A :class:`Draw` holds the random numbers of ``G`` independent draws, stored as uniforms in
[0, 1) so that one draw applies to inputs of any size and channel count. Applying it:

* ``G == 1``: the same transform for the whole batch (the reference Siamese draw); apply the
  same draw to a real and a synthetic batch, whatever their sizes;
* ``G == len(x)``: one draw per sample (training batches);
* ``chunks=[n_0, ..., n_{G-1}]``: one draw per consecutive chunk, e.g. per class when several
  classes' batches are concatenated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avdd.errors import AvddError

# Columns of Draw.uniforms; each op reads only its own.
COLUMNS = ("brightness", "saturation", "contrast", "crop_x", "crop_y", "cutout_x", "cutout_y",
           "flip", "scale_x", "scale_y", "rotate")
COL = {name: i for i, name in enumerate(COLUMNS)}
REFERENCE_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DSAParams:
    """The DC/DM reference values (``ParamDiffAug``)."""

    brightness: float = 1.0  # x + (u - 0.5) * brightness
    saturation: float = 2.0  # channel deviation scaled by u * saturation
    contrast: float = 0.5  # deviation from the sample mean scaled by u + contrast
    crop: float = 0.125  # translation up to this fraction of each side, zero padded
    cutout: float = 0.5  # zeroed square of this fraction of each side
    flip: float = 0.5  # probability of a horizontal flip
    scale: float = 1.2  # per-axis scale in [1/scale, scale]
    rotate: float = 15.0  # degrees, uniform in [-rotate, rotate]
    # Warp convention of scale/rotate. About the centre both conventions scale alike; a rotation of a
    # non-square input differs (normalised axes of W - 1 vs W pixels). The reference: False.
    align_corners: bool = True


@dataclass(frozen=True)
class Draw:
    """``kinds``: (G,) index into the strategy's ops; ``uniforms``: (G, len(COLUMNS)) in [0, 1)."""

    kinds: torch.Tensor
    uniforms: torch.Tensor

    def __len__(self) -> int:
        return int(self.kinds.shape[0])


def _col(u: torch.Tensor, name: str) -> torch.Tensor:
    return u[:, COL[name]].view(-1, 1, 1, 1)


def _color(x: torch.Tensor, u: torch.Tensor, p: DSAParams) -> torch.Tensor:
    x = x + (_col(u, "brightness") - 0.5) * p.brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_col(u, "saturation") * p.saturation) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_col(u, "contrast") + p.contrast) + mean


def _offsets(u: torch.Tensor, count: int) -> torch.Tensor:
    """Uniforms -> integers in 0..count-1."""
    return (u * count).long().clamp_(max=count - 1)


def _crop(x: torch.Tensor, u: torch.Tensor, p: DSAParams) -> torch.Tensor:
    # integer translation with zero padding, done by gathering from a 1-pixel zero-padded copy
    n, _, h, w = x.shape
    sh, sw = int(h * p.crop + 0.5), int(w * p.crop + 0.5)
    dy = _offsets(u[:, COL["crop_y"]], 2 * sh + 1) - sh
    dx = _offsets(u[:, COL["crop_x"]], 2 * sw + 1) - sw
    rows = (torch.arange(h, device=x.device) + dy[:, None] + 1).clamp(0, h + 1)  # (N, H)
    cols = (torch.arange(w, device=x.device) + dx[:, None] + 1).clamp(0, w + 1)  # (N, W)
    padded = F.pad(x, (1, 1, 1, 1))
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, u: torch.Tensor, p: DSAParams) -> torch.Tensor:
    _, _, h, w = x.shape
    ch, cw = int(h * p.cutout + 0.5), int(w * p.cutout + 0.5)
    cy = _offsets(u[:, COL["cutout_y"]], h + 1 - ch % 2)  # square centre, as in the reference
    cx = _offsets(u[:, COL["cutout_x"]], w + 1 - cw % 2)
    rows = torch.arange(h, device=x.device) - (cy[:, None] - ch // 2)  # offset into the square
    cols = torch.arange(w, device=x.device) - (cx[:, None] - cw // 2)
    inside = ((rows >= 0) & (rows < ch))[:, :, None] & ((cols >= 0) & (cols < cw))[:, None, :]
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _flip(x: torch.Tensor, u: torch.Tensor, p: DSAParams) -> torch.Tensor:
    return torch.where(_col(u, "flip") < p.flip, x.flip(3), x)


def _warp(x: torch.Tensor, theta: torch.Tensor, align_corners: bool) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=align_corners)
    return F.grid_sample(x, grid, align_corners=align_corners)


def _scale(x: torch.Tensor, u: torch.Tensor, p: DSAParams) -> torch.Tensor:
    low = 1.0 / p.scale
    sx = u[:, COL["scale_x"]] * (p.scale - low) + low
    sy = u[:, COL["scale_y"]] * (p.scale - low) + low
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _warp(x, theta, p.align_corners)


def _rotate(x: torch.Tensor, u: torch.Tensor, p: DSAParams) -> torch.Tensor:
    angle = (u[:, COL["rotate"]] - 0.5) * 2 * p.rotate * math.pi / 180
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _warp(x, theta, p.align_corners)


Op = Callable[[torch.Tensor, torch.Tensor, DSAParams], torch.Tensor]
OPS: dict[str, Op] = {
    "color": _color,
    "crop": _crop,
    "cutout": _cutout,
    "flip": _flip,
    "scale": _scale,
    "rotate": _rotate,
}


class DSA:
    """Differentiable augmentation for (N, C, H, W) batches of any C, H, W."""

    def __init__(self, strategy: str = REFERENCE_STRATEGY, params: DSAParams | None = None) -> None:
        names = [s for s in strategy.split("_") if s]
        unknown = [s for s in names if s not in OPS]
        if unknown or not names:
            raise AvddError(f"unknown DSA strategy {strategy!r}; ops are joined by '_' from: {', '.join(OPS)}")
        self.strategy = strategy
        self.ops = [OPS[s] for s in names]
        self.params = params or DSAParams()

    def draw(self, groups: int, generator: torch.Generator, *, shared_kind: bool = False) -> Draw:
        """``groups`` independent draws; ``shared_kind`` makes them all use the same op (with their
        own parameters), as the reference does for a per-sample training batch."""
        device = generator.device
        kinds = torch.randint(len(self.ops), (1 if shared_kind else groups,), generator=generator, device=device)
        uniforms = torch.rand(groups, len(COLUMNS), generator=generator, device=device)
        return Draw(kinds.expand(groups), uniforms)

    def apply(self, x: torch.Tensor, draw: Draw, chunks: Sequence[int] | None = None) -> torch.Tensor:
        """Apply ``draw`` to ``x`` (see the module docstring for how draws map to samples)."""
        kinds, uniforms = draw.kinds.to(x.device), draw.uniforms.to(x.device)
        if chunks is not None:
            if len(chunks) != len(draw) or sum(chunks) != len(x):
                raise ValueError(f"chunks {list(chunks)} do not split {len(x)} samples into {len(draw)} draws")
            counts = torch.as_tensor(list(chunks), device=x.device)
            kinds, uniforms = kinds.repeat_interleave(counts), uniforms.repeat_interleave(counts, dim=0)
        elif len(draw) == 1:
            kinds, uniforms = kinds.expand(len(x)), uniforms.expand(len(x), -1)
        elif len(draw) != len(x):
            raise ValueError(f"a draw of {len(draw)} cannot apply to {len(x)} samples without chunks")
        present = kinds.unique().tolist()
        # One op for the whole batch needs no regrouping. Per-chunk draws always regroup, even when all
        # chunks drew the same op: a chunk's gradients then flow through the same gather/scatter, in
        # the same memory layout, whichever chunks share its batch, so a class distilled in a shard of
        # the classes gets bit for bit the gradients it gets among all of them.
        if len(present) == 1 and chunks is None:
            return self.ops[present[0]](x, uniforms, self.params)
        pieces, order = [], []
        for k in present:
            index = (kinds == k).nonzero().squeeze(1)
            pieces.append(self.ops[k](x[index], uniforms[index], self.params))
            order.append(index)
        return torch.cat(pieces)[torch.cat(order).argsort()]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Training-batch augmentation: one op for the batch, parameters drawn per sample."""
        return self.apply(x, self.draw(len(x), generator, shared_kind=True))
