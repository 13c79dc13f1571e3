"""The "factor" parametrisation (IDC): each stored sample holds ``factor**2`` smaller samples.

Decoding splits a stored (C, H, W) sample into its ``factor x factor`` tiles and upsamples each
back to (H, W) bilinearly, so a set of N stored samples trains like ``N * factor**2`` samples with
the same labels. The output is tile-major, as in the reference decoder: all samples' first tile,
then all samples' second tile, ...; labels are tiled the same way. ``factor`` 1 is no
parametrisation: a stored sample is one sample.

The factor may differ per modality (``{"audio": 4, "frame": 2}``): a stored sample then decodes into
the least common multiple of the modalities' tile counts, each modality's tiles repeated in turn
(decoded sample t holds tile t mod factor² of each modality), so that every decoded sample has one of
each modality, as a pair.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from avdd.data.store import Store
from avdd.errors import AvddError
from avdd.ranges import RANGES, unknown_modalities

# the paper's (AVDD, IDC): 2 x 2 tiles; what a set saved with ``provenance.factor: true`` holds
PAPER_FACTOR = 2
Factor = int | Mapping[str, int]  # tiles per side: one for every modality, or one per modality


def side_of(factor: Factor, modality: str) -> int:
    """Tiles per side of ``modality``'s stored samples."""
    return factor if isinstance(factor, int) else factor[modality]


def decoded_per_stored(factor: Factor, modalities: Iterable[str]) -> int:
    """How many samples one stored sample of ``modalities`` decodes into: the least common multiple
    of their tile counts (factor² each; one factor for all: factor²)."""
    return math.lcm(1, *(side_of(factor, m) ** 2 for m in modalities))


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


def expand_modality(x: torch.Tensor, factor: int, count: int) -> torch.Tensor:
    """(N, C, H, W) -> (count * N, C, H, W): ``expand_tiles``, its factor² tiles repeated in turn up
    to ``count`` per stored sample (a multiple of factor²), tile-major."""
    tiles = expand_tiles(x, factor) if factor > 1 else x
    return tiles.repeat(count // (factor * factor), *([1] * (x.dim() - 1)))


def expand_factor(
    inputs: Mapping[str, torch.Tensor], labels: torch.Tensor, factor: Factor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Decode a factorised set: every modality's samples tiled and upsampled, labels repeated."""
    count = decoded_per_stored(factor, inputs)
    return {m: expand_modality(x, side_of(factor, m), count) for m, x in inputs.items()}, labels.repeat(count)


def is_factorised(factor: Factor) -> bool:
    """Whether some modality's stored samples hold more than one tile."""
    return (factor if isinstance(factor, int) else max(factor.values(), default=1)) > 1


def describe_factor(factor: Factor) -> str:
    """``4`` or ``audio 4, frame 2``: the factor as a report or an error message says it."""
    return str(factor) if isinstance(factor, int) else ", ".join(f"{m} {f}" for m, f in factor.items())


def tiles_per_side(value: Any, where: str = "provenance.factor") -> Factor:
    """A saved set's ``factor``: an integer ≥ 1 or a mapping of modality names to them, or (sets saved
    before it was one) true -> 2, false -> 1."""
    if value is True:
        return PAPER_FACTOR
    if value is False or value is None:
        return 1
    if RANGES["factor"].accepts(value):
        return {str(m): int(f) for m, f in value.items()} if isinstance(value, Mapping) else int(value)
    raise AvddError(f"{where} must be a positive integer or one per modality (or true/false), got {value!r}")


def factor_of(store: Store) -> Factor:
    """Tiles per side of a distilled set's stored samples (1: not factorised)."""
    where = f"{store.path}: provenance.factor"
    factor = tiles_per_side(store.provenance.get("factor"), where)
    check_named(factor, store.modalities, where)
    return factor


def check_named(factor: Factor, modalities: Iterable[str], where: str = "--factor") -> None:
    """Refuse a factor per modality that leaves out one of ``modalities`` or names another."""
    if isinstance(factor, int):
        return
    modalities = list(modalities)
    missing = [m for m in modalities if m not in factor]
    if missing:
        raise AvddError(f"{where} gives no factor for {', '.join(missing)}; give one per modality "
                        f"({', '.join(modalities)}) or one for all")
    extra = unknown_modalities(factor, modalities)
    if extra:
        raise AvddError(f"{where} names {', '.join(extra)}, which this run does not have "
                        f"(its modalities: {', '.join(modalities)})")
