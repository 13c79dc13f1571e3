"""Peak memory and seconds per iteration of the MTT loop over a grid of --syn-steps x --batch-syn.

    PYTHONPATH=src python benchmarks/mtt_memory.py --data data/avdigits --experts runs/experts-av \
        --ipc 1 --syn-steps 10,20,40 --batch-syn 0 --iterations 2

Needs a real store and experts trained on it (`avdd experts`). Each setting runs in its own process
so that its peak memory is its own: max RSS on CPU, ``torch.cuda.max_memory_allocated`` on CUDA.
"base" is that figure after setting up (data, experts, student network) and before the first
iteration, so "peak - base" is what the unrolled student steps add; it grows with
syn_steps x batch_syn (every step's activations and parameter vector stay for the backward pass).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from avdd.data.store import open_store
from avdd.distill.experts import ExpertSet
from avdd.distill.mtt import MTTConfig, TrajectoryRun


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    store = open_store(args.data)
    experts = ExpertSet.open(args.experts)
    modalities = tuple(experts.config.modalities)
    config = MTTConfig(experts=args.experts, iterations=10**9, syn_steps=args.syn_steps, batch_syn=args.batch_syn,
                       expert_epochs=args.expert_epochs, max_start_epoch=args.max_start_epoch, factor=args.factor)
    run = TrajectoryRun(store.split("train"), modalities, args.ipc, 0, config, experts, device)
    base = peak_bytes(device)
    run.step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.iterations):
        run.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"syn_steps": args.syn_steps, "batch_syn": args.batch_syn,
            "seconds_per_iteration": (time.perf_counter() - start) / args.iterations,
            "base_gb": base / 1e9, "peak_gb": peak_bytes(device) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--experts", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--factor", type=int, default=1, help="tiles per side of a stored sample (default 1: none)")
    parser.add_argument("--syn-steps", default="10,20,40", help="comma-separated values to measure")
    parser.add_argument("--batch-syn", default="0", help="comma-separated values to measure (0 = all)")
    parser.add_argument("--expert-epochs", type=int, default=2)
    parser.add_argument("--max-start-epoch", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations after one warm-up")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.syn_steps, args.batch_syn = int(args.syn_steps), int(args.batch_syn)
        print(json.dumps(measure(args)))
        return
    shared = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
              if k not in ("syn_steps", "batch_syn", "child")]
    print(f"device={args.device} ipc={args.ipc} factor={args.factor} iterations={args.iterations}")
    print("| syn_steps | batch_syn | s/it | base GB | peak GB | peak - base GB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for batch_syn in args.batch_syn.split(","):
        for syn_steps in args.syn_steps.split(","):
            cmd = [sys.executable, __file__, "--child", f"--syn-steps={syn_steps}", f"--batch-syn={batch_syn}", *shared]
            row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            print(f"| {row['syn_steps']} | {row['batch_syn'] or 'all'} | {row['seconds_per_iteration']:.2f} | "
                  f"{row['base_gb']:.2f} | {row['peak_gb']:.2f} | {row['peak_gb'] - row['base_gb']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
