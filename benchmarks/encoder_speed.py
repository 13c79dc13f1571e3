"""Training-step throughput of the reference encoders on CPU/GPU: fp32 vs channels-last vs bf16 autocast.

    PYTHONPATH=src python benchmarks/encoder_speed.py [--device cpu] [--shapes avdigits] [--batch 32] [--steps 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from avdd.models.fusion import build_classifier, fusion_loss
from common import CLASSES, SHAPES, synchronize


def time_steps(channels_last: bool, bf16: bool, args: argparse.Namespace) -> float:
    g = torch.Generator().manual_seed(0)
    shapes = SHAPES[args.shapes]
    model = build_classifier(shapes, CLASSES, generator=g).to(args.device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)  # type: ignore[call-overload]  # stubs lack memory_format
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = {m: torch.randn(args.batch, *s, generator=g).to(args.device, memory_format=fmt) for m, s in shapes.items()}
    y = torch.randint(CLASSES, (args.batch,), generator=g).to(args.device)
    device = torch.device(args.device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = fusion_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", choices=SHAPES, default="avdigits")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, shapes {args.shapes}, "
          f"batch {args.batch}")
    base = None
    for channels_last in (False, True):
        for bf16 in (False, True):
            t = time_steps(channels_last, bf16, args)
            base = base or t
            print(f"channels_last={channels_last!s:<5} bf16={bf16!s:<5} {t * 1000:8.1f} ms/step  "
                  f"{args.batch / t:7.1f} samples/s  (x{base / t:.2f})")


if __name__ == "__main__":
    main()
