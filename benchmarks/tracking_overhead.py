"""Wall time of a distillation with and without experiment tracking, side by side in one process.

    PYTHONPATH=src AVDD_DATA=../shared/data python benchmarks/tracking_overhead.py --iterations 100 --rounds 2

Distills the avdigits store (built once into a temporary folder) with AVDD at IPC 1 (random
initialisation, so that herding's one-off embedding training does not dilute the overhead), alternating
runs without logging and with each backend at the default interval (losses every iteration, sample
grids and sounds every ``avdd.tracking.LOG_EVERY`` iterations and at the last), so that a machine
shared with other jobs slows both alike. Also checks that every logged run's set is bit-identical
to the unlogged one. Prints one JSON line per run and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from avdd.allocator import retain_freed_memory
from avdd.data.sources.avdigits import build_avdigits
from avdd.data.store import Store, open_store
from avdd.distill.api import distill
from avdd.tracking import LOG_EVERY, open_tracker


def run(store: Store, out: Path, backend: str, log_dir: Path, iterations: int, batch_real: int) -> tuple[float, float]:
    """Wall time of the whole run, and of it the time spent in the tracker (start, hook, close)."""
    start = time.perf_counter()
    tracker = open_tracker(backend, log_dir, out.name)
    logging = time.perf_counter() - start
    hook = tracker.distill_hook(store)

    def timed(run: Any, evaluation: Any) -> None:
        nonlocal logging
        began = time.perf_counter()
        hook(run, evaluation)
        logging += time.perf_counter() - began

    distill(store.path, out, "avdd", modalities=("audio", "frame"), ipc=1, progress=False,
            iterations=iterations, batch_real=batch_real, init="random",  # herding's embedding: a fixed cost
            on_iteration=timed if tracker.active else None)
    began = time.perf_counter()
    tracker.close()
    end = time.perf_counter()
    return end - start, logging + end - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=LOG_EVERY)
    parser.add_argument("--batch-real", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="tensorboard,wandb")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    retain_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = build_avdigits(root / "avdigits", progress=False, data_root=os.environ.get("AVDD_DATA"))
        times: dict[str, list[float]] = {}
        for r in range(args.rounds):
            for backend in ["none", *args.backends.split(",")]:
                out = root / f"{backend}-{r}"
                seconds, logging = run(store, out, backend, root / "logs", args.iterations, args.batch_real)
                times.setdefault(backend, []).append(seconds)
                print(json.dumps({"round": r, "log": backend, "seconds": round(seconds, 2),
                                  "in_tracker": round(logging, 2), "share": f"{100 * logging / seconds:.2f} %"}),
                      flush=True)
                same = open_store(root / "none-0").split("train").arrays, open_store(out).split("train").arrays
                assert all(np.array_equal(same[0][m], same[1][m]) for m in same[0]), f"{backend} changed the set"
        base = float(np.mean(times["none"]))
        for backend, runs in times.items():
            mean = float(np.mean(runs))
            print(f"{backend:<12} {mean:8.1f} s  ({100 * (mean / base - 1):+.1f} % against none; runs "
                  + ", ".join(f"{s:.1f}" for s in runs) + ")")


if __name__ == "__main__":
    main()
