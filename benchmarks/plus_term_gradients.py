"""How strongly each avdd-plus term pulls on the synthetic data: the norm of each term's gradient
(at weight 1, the others off) with respect to the synthetic audio and frames, at the first
iterations of a run, with DM's random encoders (α = 0) and with the pool's trained ones (α = 1)
(the cross-entropy term asks the drawn trained network either way, at the default --ce-network).
What the terms' default weights are chosen from (benchmarks/RESULTS.md).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/plus_term_gradients.py --data STORE --pool EXPERTS \\
        [--iterations 0,1] [--batch-real 32] [--ipc 1] [--init random|herding] [--alphas 0,1] \\
        [--factor 2 | --factor audio=4 --factor frame=2]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from avdd.cli.common import add_per_modality_option
from avdd.data.store import open_store
from avdd.distill.experts import ExpertSet
from avdd.distill.plus import PLUS_TERMS, PlusRun, PlusSettings
from avdd.distill.synthetic import init_order

MODALITIES = ("audio", "frame")
MEAN_TERMS = {"base": "lambda_base", "joint": "lambda_jm", "gap": "lambda_mgm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--pool", required=True, help="expert directory (avdd experts, or a store's cache/pool-*)")
    parser.add_argument("--iterations", default="0,1")
    parser.add_argument("--batch-real", type=int, default=32)
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--alphas", default="0,1", help="weights of the trained network in the encoders")
    parser.add_argument("--init", default="random", help="the synthetic set's initialisation (random, herding, ...)")
    add_per_modality_option(parser, "--factor", "factor", "tiles per side, or per modality (as avdd distill takes it)")
    args = parser.parse_args()
    store, pool = open_store(args.data), ExpertSet.open(args.pool)
    weights = {**MEAN_TERMS, **PLUS_TERMS}
    start = dataclasses.replace(PlusSettings(), init=args.init)
    if args.factor is not None:  # not given: avdd-plus's default
        start = dataclasses.replace(start, factor=args.factor)
    order = init_order(store, MODALITIES, args.ipc, start.config(), start.embed, torch.device("cpu"), progress=False)
    for alpha in (float(a) for a in args.alphas.split(",")):
        for iteration in (int(i) for i in args.iterations.split(",")):
            row = []
            for term, name in weights.items():
                alone = {other: 1.0 if other == name else 0.0 for other in weights.values()}
                settings = dataclasses.replace(start, batch_real=args.batch_real,
                                               mix_min=alpha, mix_max=alpha, **alone)
                run = PlusRun(store.split("train"), MODALITIES, args.ipc, 0, settings.config(), init_order=order,
                              pool=pool)  # also at α = 0: the cross-entropy asks a trained network
                run.iteration = iteration
                _, total = run.backward()
                norms = {m: float(torch.linalg.vector_norm(x.grad)) for m, x in run.synthetic.items()
                         if x.grad is not None}
                row.append(f"{term} {total:.3g} ({norms['audio']:.3g}, {norms['frame']:.3g})")
            print(f"alpha {alpha:g}, iteration {iteration}: " + "; ".join(row), flush=True)


if __name__ == "__main__":
    main()
