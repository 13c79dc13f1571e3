"""DM/AVDD seconds per iteration reading a full real-mean cache vs computing the real side, with
the split between the real side (the real class means: computed, or read) and the rest of the
step (the synthetic side: forward, backward, update) and each variant's peak memory. Without
``--data`` it measures on a store of random samples at ``--shapes`` (the speed is the data's shape's).

    PYTHONPATH=src python benchmarks/real_cache_speed.py --data /tmp/avdigits-rc --real-batch 64 --ipc 1
    PYTHONPATH=src python benchmarks/real_cache_speed.py --shapes reference --device cuda --real-batch 128

"cold" fills the cache (computes and writes every mean), then "uncached" and "warm" (every mean
read) run, each ``--repeats`` times, alternating, so that a change of the machine's load shows as
a spread between the repeats. Each variant runs in its own process: max RSS is its own. Audio-visual AVDD weights
(1, 10, 10), random init, the avdd command's allocator setting; ``--factor N`` decodes each stored
sample into N² (AVDD's default 2: 4× the synthetic side; 1: off).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from avdd.allocator import retain_freed_memory
from avdd.data.augment import Draw
from avdd.data.store import open_store
from avdd.distill.dm import MatchingConfig, MatchingRun
from avdd.distill.matching import MatchingWeights
from avdd.distill.real_cache import RealMeanCache
from common import SHAPES, matching_store, peak_memory_gb, synchronize

VARIANTS = ("cold", "uncached", "warm")


def measure(args: argparse.Namespace) -> dict:
    retain_freed_memory()
    device = torch.device(args.device)
    store = open_store(args.data)
    config = MatchingConfig(iterations=10**9, batch_real=args.real_batch, weights=MatchingWeights(1, 10, 10),
                            factor=args.factor)
    cache = RealMeanCache(Path(args.cache), 1 << 40) if args.variant != "uncached" else None
    run = MatchingRun(store.split("train"), ("audio", "frame"), args.ipc, 0, config, device, real_cache=cache)
    real_seconds = []
    real_means = run._real_means

    def timed_real_means(encoders: dict[str, torch.nn.Module], draws: dict[str, Draw]) -> dict[str, torch.Tensor]:
        synchronize(device)
        start = time.perf_counter()
        means = real_means(encoders, draws)
        synchronize(device)
        real_seconds.append(time.perf_counter() - start)
        return means

    run._real_means = timed_real_means  # type: ignore[method-assign]
    run.step()  # warm-up
    real_seconds.clear()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.iterations):
        run.step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / args.iterations
    real = sum(real_seconds) / args.iterations
    return {"variant": args.variant, "seconds_per_iteration": seconds, "real_side": real, "rest": seconds - real,
            "peak_memory_gb": peak_memory_gb(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a store (e.g. avdd data build avdigits --out DIR); default: random samples")
    parser.add_argument("--shapes", choices=SHAPES, default="avdigits", help="the random samples' shapes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-batch", type=int, default=64)
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--factor", type=int, default=1, help="tiles per side of a stored sample (default 1: none)")
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations, after one warm-up")
    parser.add_argument("--repeats", type=int, default=2, help="uncached/warm pairs")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process
        print(json.dumps(measure(args)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or str(Path(tmp) / "store")
        if not args.data:
            matching_store(Path(data), SHAPES[args.shapes], args.real_batch, args.ipc)
        cache = str(Path(tmp) / "cache")
        for variant in ["cold"] + ["uncached", "warm"] * args.repeats:
            cmd = [sys.executable, __file__, "--variant", variant, "--cache", cache, "--data", data,
                   "--device", args.device, "--real-batch", str(args.real_batch), "--ipc", str(args.ipc),
                   "--iterations", str(args.iterations), "--factor", str(args.factor)]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    print(f"data={args.data or 'random ' + args.shapes} device={args.device} real_batch={args.real_batch} "
          f"ipc={args.ipc} factor={args.factor} iterations={args.iterations} threads={torch.get_num_threads()}")
    print("  variant    s/it   real side   rest (synthetic side)   peak memory")
    for row in rows:
        print(f"  {row['variant']:<9} {row['seconds_per_iteration']:6.3f}   {row['real_side']:7.3f}   "
              f"{row['rest']:7.3f}                 {row['peak_memory_gb']:.2f} GB")
    uncached = [r["seconds_per_iteration"] for r in rows if r["variant"] == "uncached"]
    warm = [r["seconds_per_iteration"] for r in rows if r["variant"] == "warm"]
    print(f"  speed-up warm vs uncached: ×{sum(uncached) / sum(warm):.2f} "
          f"(pairs: {', '.join(f'×{u / w:.2f}' for u, w in zip(uncached, warm, strict=True))})")


if __name__ == "__main__":
    main()
