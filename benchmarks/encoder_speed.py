"""Training-step throughput of the reference encoders on CPU/GPU: fp32 vs channels-last vs bf16 autocast.

    PYTHONPATH=src python benchmarks/encoder_speed.py [--device cpu] [--batch 32] [--steps 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from avdd.models.fusion import build_classifier, fusion_loss

SHAPES = {"audio": (1, 128, 56), "frame": (1, 28, 28)}


def time_steps(channels_last: bool, bf16: bool, args: argparse.Namespace) -> float:
    g = torch.Generator().manual_seed(0)
    model = build_classifier(SHAPES, 10, generator=g).to(args.device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = {m: torch.randn(args.batch, *s, generator=g).to(args.device, memory_format=fmt) for m, s in SHAPES.items()}
    y = torch.randint(10, (args.batch,), generator=g).to(args.device)
    device_type = torch.device(args.device).type

    def step() -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss = fusion_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    if device_type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, batch {args.batch}")
    base = None
    for channels_last in (False, True):
        for bf16 in (False, True):
            t = time_steps(channels_last, bf16, args)
            base = base or t
            print(f"channels_last={channels_last!s:<5} bf16={bf16!s:<5} {t * 1000:8.1f} ms/step  "
                  f"{args.batch / t:7.1f} samples/s  (x{base / t:.2f})")


if __name__ == "__main__":
    main()
