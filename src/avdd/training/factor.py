"""The "factor" parametrisation (IDC): each stored sample holds ``factor**2`` half-size samples.

Decoding splits a stored (C, H, W) sample into its ``factor x factor`` tiles and upsamples each
back to (H, W) bilinearly, so a set of N stored samples trains like ``N * factor**2`` samples with
the same labels. The output is tile-major, as in the reference decoder: all samples' first tile,
then all samples' second tile, ...; labels are tiled the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from avdd.data.store import Store
from avdd.errors import AvddError

FACTOR = 2


def expand_tiles(x: torch.Tensor, factor: int = FACTOR) -> torch.Tensor:
    """(N, C, H, W) -> (factor**2 * N, C, H, W): every tile of every sample, upsampled to (H, W)."""
    _, _, h, w = x.shape
    if h % factor or w % factor:
        raise AvddError(f"factor {factor} needs sides divisible by {factor}, got {h}x{w}")
    th, tw = h // factor, w // factor
    tiles = [x[:, :, i * th : (i + 1) * th, j * tw : (j + 1) * tw] for i in range(factor) for j in range(factor)]
    return F.interpolate(torch.cat(tiles), size=(h, w), mode="bilinear", align_corners=False)


def expand_factor(
    inputs: Mapping[str, torch.Tensor], labels: torch.Tensor, factor: int = FACTOR
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Decode a factorised set: every modality's samples tiled and upsampled, labels repeated."""
    return {m: expand_tiles(x, factor) for m, x in inputs.items()}, labels.repeat(factor * factor)


def factor_of(store: Store) -> int:
    """Tiles per side of a factorised set (``provenance.factor``: true -> 2, or an integer), else 1."""
    factor = store.provenance.get("factor", False)
    if factor is True:
        return FACTOR
    if factor is False or factor is None:
        return 1
    if isinstance(factor, int) and factor >= 1:
        return factor
    raise AvddError(f"{store.path}: provenance.factor must be true, false or a positive integer, got {factor!r}")
