"""The "factor" parametrisation (IDC): each stored sample holds ``factor**2`` smaller samples.

Decoding splits a stored (C, H, W) sample into its ``factor x factor`` tiles and upsamples each
back to (H, W) bilinearly, so a set of N stored samples trains like ``N * factor**2`` samples with
the same labels. The output is tile-major, as in the reference decoder: all samples' first tile,
then all samples' second tile, ...; labels are tiled the same way. ``factor`` 1 is no
parametrisation: a stored sample is one sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from avdd.data.store import Store
from avdd.errors import AvddError

# the paper's (AVDD, IDC): 2 x 2 tiles; what a set saved with ``provenance.factor: true`` holds
PAPER_FACTOR = 2


def tile_size(h: int, w: int, factor: int) -> tuple[int, int]:
    """The (height, width) of one of the ``factor x factor`` tiles of an (h, w) sample."""
    if h % factor or w % factor:
        raise AvddError(f"factor {factor} needs sides divisible by {factor}, got {h}x{w}")
    return h // factor, w // factor


def expand_tiles(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, C, H, W) -> (factor**2 * N, C, H, W): every tile of every sample, upsampled to (H, W)."""
    _, _, h, w = x.shape
    th, tw = tile_size(h, w, factor)
    tiles = [x[:, :, i * th : (i + 1) * th, j * tw : (j + 1) * tw] for i in range(factor) for j in range(factor)]
    return F.interpolate(torch.cat(tiles), size=(h, w), mode="bilinear", align_corners=False)


def pack_tiles(samples: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse of ``expand_tiles`` for initialisation: factor² samples (tile-major, as
    ``expand_tiles`` outputs them) shrunk into the tiles of one stored sample each."""
    n = samples.shape[0] // (factor * factor)
    _, c, h, w = samples.shape
    th, tw = tile_size(h, w, factor)
    small = F.interpolate(samples, size=(th, tw), mode="area")
    stored = torch.zeros(n, c, h, w, dtype=samples.dtype, device=samples.device)
    for k in range(factor * factor):
        i, j = divmod(k, factor)
        stored[:, :, i * th : (i + 1) * th, j * tw : (j + 1) * tw] = small[k * n : (k + 1) * n]
    return stored


def expand_factor(
    inputs: Mapping[str, torch.Tensor], labels: torch.Tensor, factor: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Decode a factorised set: every modality's samples tiled and upsampled, labels repeated."""
    return {m: expand_tiles(x, factor) for m, x in inputs.items()}, labels.repeat(factor * factor)


def tiles_per_side(value: Any, where: str = "provenance.factor") -> int:
    """A saved set's ``factor``: an integer ≥ 1, or (sets saved before it was one) true -> 2, false -> 1."""
    if value is True:
        return PAPER_FACTOR
    if value is False or value is None:
        return 1
    if isinstance(value, int) and value >= 1:
        return value
    raise AvddError(f"{where} must be a positive integer (or true/false), got {value!r}")


def factor_of(store: Store) -> int:
    """Tiles per side of a distilled set's stored samples (1: not factorised)."""
    return tiles_per_side(store.provenance.get("factor"), f"{store.path}: provenance.factor")
