"""Do avdd's DSA draws follow the authors' distribution? (issue #19; results in RESULTS.md)

Given the same draws, avdd's evaluation trains the authors' network bit for bit (RESULTS.md, the
replay); what is left is whether the draws themselves are alike. For each op and each avdigits
input shape this augments the same 8 inputs many times with the authors' ``DiffAugment`` (their
global RNG, per-sample parameters) and with avdd's ``DSA`` (reference warps), and compares
per-sample statistics of the outputs (mean, std, three fixed random projections) with two-sample
Kolmogorov-Smirnov tests; and the op a batch gets (one per batch on both sides) with a chi-square
test. The authors' code is imported from a checkout (``AVDD_REF``), never copied.

    AVDD_REF=/path/to/AVDD python benchmarks/parity_dsa_draws.py --draws 16000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import chi2_contingency, ks_2samp

from avdd.data.augment import DSA, DSAParams

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
SHAPES = {"audio": (1, 128, 56), "frame": (3, 28, 28)}  # avdigits in the authors' layout
INPUTS = 8


def authors_augment() -> types.ModuleType:
    """The authors' utils/data_utils.py, imported from the checkout (its unused imports stubbed)."""
    sys.path.insert(0, os.environ["AVDD_REF"])
    for name in ("wandb", "torchvision", "torchvision.utils"):
        sys.modules.setdefault(name, types.ModuleType(name))
    from utils import data_utils  # type: ignore[import-not-found]  # the authors' checkout, found at run time

    return data_utils


def statistics(y: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    flat = y.flatten(1)
    return torch.cat([flat.mean(1, keepdim=True), flat.std(1, keepdim=True), flat @ directions.T / flat.shape[1]], 1)


def compare_op(ref: types.ModuleType, op: str, shape: tuple[int, ...], draws: int, raw_db: bool) -> dict:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(INPUTS, *shape, generator=g)
    if raw_db:  # the authors' audio is raw dB: DSA's fills and shifts act on that scale
        base = base * 20 - 40
    directions = torch.randn(3, int(np.prod(shape)), generator=g)
    x = base.repeat(draws // INPUTS, 1, 1, 1)
    torch.manual_seed(123)
    theirs = statistics(ref.DiffAugment(x.clone(), op, seed=-1, param=ref.ParamDiffAug()), directions)
    ours = statistics(DSA(op, DSAParams(align_corners=False))(x.clone(), torch.Generator().manual_seed(7)), directions)
    p_values = [ks_2samp(theirs[i::INPUTS, k].numpy(), ours[i::INPUTS, k].numpy()).pvalue
                for i in range(INPUTS) for k in range(theirs.shape[1])]
    return {"op": op, "draws_per_input": draws // INPUTS, "ks_tests": len(p_values), "min_p": min(p_values),
            "bonferroni_p": min(1.0, min(p_values) * len(p_values))}


def compare_op_choice(ref: types.ModuleType, batches: int) -> dict:
    counts = dict.fromkeys(OPS, 0)
    for op in OPS:  # count which op runs by wrapping the first function of each
        first, rest = ref.AUGMENT_FNS[op][0], ref.AUGMENT_FNS[op][1:]

        def counted(x: torch.Tensor, param: object, _op: str = op,
                    _f: Callable[..., torch.Tensor] = first) -> torch.Tensor:
            counts[_op] += 1
            return _f(x, param)

        ref.AUGMENT_FNS[op] = [counted, *rest]
    torch.manual_seed(5)
    x = torch.randn(2, 3, 8, 8)
    for _ in range(batches):
        ref.DiffAugment(x, "_".join(OPS), seed=-1, param=ref.ParamDiffAug())
    dsa, g = DSA("_".join(OPS)), torch.Generator().manual_seed(9)
    kinds = [int(dsa.draw(2, g, shared_kind=True).kinds[0]) for _ in range(batches)]
    ours = {op: kinds.count(i) for i, op in enumerate(OPS)}
    table = [list(counts.values()), list(ours.values())]
    return {"authors": counts, "avdd": ours, "chi2_p": chi2_contingency(table)[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=16000, help="augmented samples per op and shape")
    parser.add_argument("--batches", type=int, default=6000, help="batches for the op-choice test")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ref = authors_augment()
    for modality, shape in SHAPES.items():
        for op in OPS:
            print(json.dumps({"modality": modality, **compare_op(ref, op, shape, args.draws, modality == "audio")}),
                  flush=True)
    print(json.dumps({"op_choice": compare_op_choice(ref, args.batches)}))


if __name__ == "__main__":
    main()
