"""Iterations per second and peak memory of the DM/AVDD loop vs a straightforward per-class loop.

    PYTHONPATH=src python benchmarks/distill_speed.py --shapes avdigits --real-batch 64 --iterations 3
    PYTHONPATH=src python benchmarks/distill_speed.py --shapes reference --device cuda --iterations 10

"ours": avdd's MatchingRun (stored uint8/float16 data converted on the device, all classes' real
batches in one no-grad pass, all synthetic samples in one batched pass, one optimizer step).
"per-class": what a direct port of the reference loop does: float32 data in memory, and per class
one forward of real (with graph, then detached) and synthetic, a backward and an optimizer step.
Both use the same encoders, augmentation and losses. Each variant runs in its own process so
that its peak memory (max RSS on CPU, max allocated on CUDA) is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from avdd.allocator import retain_freed_memory
from avdd.data.store import open_store
from avdd.distill.dm import MatchingConfig, MatchingRun
from avdd.distill.matching import MatchingWeights, matching_terms, weighted_total
from common import SHAPES, matching_store, peak_memory_gb, synchronize


def per_class_step(run: MatchingRun, real_f32: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
    encoders = run._encoders()
    for c in run.classes:
        pool = run.train.class_indices[c]
        pick = torch.randperm(len(pool))[: run.config.batch_real]
        real = {m: real_f32[m][torch.from_numpy(pool)[pick]].to(run.device) for m in run.modalities}
        syn = {m: x[c * run.ipc : (c + 1) * run.ipc] for m, x in run.synthetic.items()}
        r_means, s_means = {}, {}
        for m in run.modalities:
            draw = run.dsa.draw(1, torch.Generator().manual_seed(c))
            r_means[m] = encoders[m](run.dsa.apply(real[m], draw)).mean(0, keepdim=True).detach()
            s_means[m] = encoders[m](run.dsa.apply(syn[m], draw)).mean(0, keepdim=True)
        loss = weighted_total(matching_terms(r_means, s_means, run.modalities), run.config.weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def measure(args: argparse.Namespace) -> dict:
    if args.allocator == "retain":
        retain_freed_memory()  # what the avdd command does
    store = open_store(args.store)
    config = MatchingConfig(iterations=10**9, batch_real=args.real_batch, weights=MatchingWeights(1, 10, 10),
                            factor=1, autocast=args.autocast)
    run = MatchingRun(store.split("train"), ("audio", "frame"), args.ipc, 0, config, args.device)
    device = torch.device(args.device)
    step: Callable[[], object] = run.step
    if args.variant == "per-class":
        for x in run.synthetic.values():
            x.requires_grad_(True)
        # a direct port keeps float32 copies of the real data in memory
        real_f32 = {m: torch.from_numpy(np.asarray(store.split("train").arrays[m], dtype=np.float32))
                    for m in run.modalities}
        optimizer = torch.optim.SGD(list(run.synthetic.values()), lr=0.2, momentum=0.5)

        def one_step_per_class() -> None:
            per_class_step(run, real_f32, optimizer)
            run.iteration += 1

        step = one_step_per_class
    step()  # warm-up
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.iterations):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / args.iterations
    return {"variant": args.variant, "seconds_per_iteration": seconds, "iterations_per_second": 1 / seconds,
            "peak_memory_gb": peak_memory_gb(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", choices=SHAPES, default="avdigits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-batch", type=int, default=64)
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--autocast", default="auto", help="ours: real-side autocast (auto, off, bf16, fp16)")
    parser.add_argument("--allocator", choices=("retain", "system"), default="retain",
                        help="both variants: retain = glibc keeps freed memory, as the avdd command sets it "
                             "(avdd/allocator.py); system = glibc's defaults")
    parser.add_argument("--variant", choices=("ours", "per-class"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process
        print(json.dumps(measure(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        matching_store(store, SHAPES[args.shapes], args.real_batch, args.ipc)
        rows = []
        for variant in ("per-class", "ours"):
            cmd = [sys.executable, __file__, "--variant", variant, "--store", str(store),
                   *(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                     if k not in ("variant", "store", "shapes"))]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    base = rows[0]["iterations_per_second"]
    print(f"shapes={args.shapes} device={args.device} real_batch={args.real_batch} ipc={args.ipc} "
          f"autocast={args.autocast} allocator={args.allocator} iterations={args.iterations}")
    for row in rows:
        speed = row["iterations_per_second"]
        print(f"  {row['variant']:<10} {row['seconds_per_iteration']:8.3f} s/it  {speed:7.3f} it/s"
              f"  ×{speed / base:4.2f}  peak {row['peak_memory_gb']:.2f} GB")


if __name__ == "__main__":
    main()
