"""Training time per network of an evaluation: networks one after another vs trained together
(``avdd.training.parallel``), and ``torch.compile`` of the training step; all in one process, so
the variants see the same machine load (compare ratios, not absolute times, on a shared machine).

    PYTHONPATH=src python benchmarks/bench_parallel_eval.py --samples 40,400 --networks 5 --threads 1,2
    PYTHONPATH=src python benchmarks/bench_parallel_eval.py --device cuda --samples 40,400 --networks 5 --epochs 5

Training sets are random at avdigits shapes (audio 1×128×56, frames 1×28×28), 10 classes; 40 and
400 samples are the sizes of factorised IPC 1 and IPC 10 sets (4 tiles per stored sample). Each
row also gives the largest parameter difference between the two ways (float rounding; with
``--contiguous`` both run in the same memory format, so it is the batching's rounding alone).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import avdd.training.parallel as parallel
from avdd.allocator import retain_freed_memory
from avdd.data.store import Store
from avdd.models.fusion import AVClassifier
from avdd.training.inputs import load_training_set
from avdd.training.parallel import train_fresh_networks
from avdd.training.protocol import EvalConfig, network_generators, protocol_network, train_fresh_network, train_network
from common import CLASSES, SHAPES, peak_memory_gb, random_store, synchronize


def timed(device: torch.device, train: Callable[[], list[AVClassifier]]) -> tuple[float, list[AVClassifier]]:
    synchronize(device)
    start = time.perf_counter()
    models = train()
    synchronize(device)
    return time.perf_counter() - start, models


def largest_differences(a: list[AVClassifier], b: list[AVClassifier]) -> tuple[float, float]:
    """The largest parameter difference, and the largest without the convolutions' biases (instance
    norm removes them: their gradient is rounding alone, which Adam turns into steps of either sign)."""
    every, shaping = 0.0, 0.0
    for x, y in zip(a, b, strict=True):
        unseen = {f"{n}.bias" for n, module in x.named_modules() if isinstance(module, torch.nn.Conv2d)}
        for (name, p), q in zip(x.named_parameters(), y.parameters(), strict=True):
            difference = (p - q).abs().max().item()
            every = max(every, difference)
            shaping = shaping if name in unseen else max(shaping, difference)
    return every, shaping


def measure(samples: int, device: torch.device, args: argparse.Namespace) -> None:
    """One row per thread count: the networks one by one, then together, on one random training set."""
    config = EvalConfig(num_eval=args.networks, epochs=args.epochs, channels_last=not args.contiguous)
    runs, bar = list(range(args.networks)), tqdm(disable=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = random_store(Path(tmp) / "store", SHAPES[args.shapes], np.arange(samples) % CLASSES)
        inputs, labels = load_training_set(store, config.modalities, device, config.memory_format)

        def one_by_one(config: EvalConfig = config) -> list[AVClassifier]:
            return [train_fresh_network(store, inputs, labels, config, r, device, bar) for r in runs]

        for threads in map(int, args.threads.split(",")) if device.type == "cpu" else [0]:
            if threads:
                torch.set_num_threads(threads)
            one_by_one(replace(config, epochs=1, num_eval=1))  # warm-up: first-call allocations
            seq, seq_models = timed(device, one_by_one)
            seq_peak = peak_memory_gb(device)
            par, par_models = timed(device, lambda: train_fresh_networks(store, inputs, labels, config, runs,
                                                                         device, bar))
            every, shaping = largest_differences(seq_models, par_models)
            per = args.networks * args.epochs
            print(f"samples {samples:4d} threads {threads}: one by one {seq / per:7.2f} s, together "
                  f"{par / per:7.2f} s per network-epoch (x{seq / par:.2f}); largest parameter difference "
                  f"{every:.1e}, {shaping:.1e} without the convolutions' biases; peak so far {seq_peak:.2f} GB "
                  f"after one by one, {peak_memory_gb(device):.2f} GB after together", flush=True)
            if args.compile:
                compile_rows(store, inputs, labels, config, device, bar)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", choices=SHAPES, default="avdigits")
    parser.add_argument("--samples", default="40,400", help="training-set sizes, comma-separated")
    parser.add_argument("--networks", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", default="1,2", help="CPU thread counts, comma-separated")
    parser.add_argument("--contiguous", action="store_true",
                        help="one by one in contiguous format (as together always runs) instead of channels-last")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd training steps")
    args = parser.parse_args()
    retain_freed_memory()  # as the avdd command runs
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, shapes {args.shapes}, {args.networks} networks, "
          f"{args.epochs} epoch(s)")
    for samples in map(int, args.samples.split(",")):
        measure(samples, device, args)


def compile_rows(store: Store, inputs: dict[str, torch.Tensor], labels: torch.Tensor, config: EvalConfig,
                 device: torch.device, bar: tqdm) -> None:
    """Eager vs compiled training of one network (sequential: the model compiled) and of a group
    (parallel: the vmapped loss compiled); the first compiled run includes the compilation."""

    def one(run: int, compiled: bool) -> list[AVClassifier]:
        generators = network_generators(config.seed, run, device)
        model = protocol_network(store, config, generators["init"], device)
        # a compiled module hands attribute look-ups (encoders, modalities) to the model it wraps
        trained = torch.compile(model) if compiled else model
        return [train_network(trained, inputs, labels, config, generators)]  # type: ignore[arg-type]

    eager, _ = timed(device, lambda: one(0, False))
    first, _ = timed(device, lambda: one(0, True))
    again, _ = timed(device, lambda: one(1, True))
    print(f"  compile, one network: eager {eager:.2f} s, compiled {again:.2f} s (x{eager / again:.2f}), "
          f"first compiled run {first:.2f} s (compilation ≈ {first - again:.1f} s)", flush=True)

    runs = list(range(config.num_eval))
    eager, _ = timed(device, lambda: train_fresh_networks(store, inputs, labels, config, runs, device, bar))
    plain_vmap = parallel.vmap

    def compiled_vmap(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        return torch.compile(plain_vmap(function))

    parallel.vmap = compiled_vmap  # type: ignore[assignment]  # the batched loss that train_networks builds
    try:
        first, _ = timed(device, lambda: train_fresh_networks(store, inputs, labels, config, runs, device, bar))
        again, _ = timed(device, lambda: train_fresh_networks(store, inputs, labels, config, runs, device, bar))
    finally:
        parallel.vmap = plain_vmap
    print(f"  compile, {len(runs)} together: eager {eager:.2f} s, compiled {again:.2f} s (x{eager / again:.2f}), "
          f"first compiled run {first:.2f} s (compilation ≈ {first - again:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
