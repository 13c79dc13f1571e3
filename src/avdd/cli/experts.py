"""``avdd experts``: train expert trajectories on a real store, for ``avdd distill --method mtt``."""

from __future__ import annotations

import argparse
from pathlib import Path

from avdd.cli.common import add_device_option, setting
from avdd.distill.experts import ExpertConfig, train_experts
from avdd.outputs import claim_output
from avdd.ranges import parse_modalities


def cmd_experts(args: argparse.Namespace) -> int:
    config = ExpertConfig(modalities=parse_modalities(args.modalities), num_experts=args.num_experts,
                          epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, fusion=args.fusion,
                          width=args.width, float16=args.float16, seed=args.seed)
    with claim_output(args.out, kind="experts", inputs=[args.data]):
        experts = train_experts(args.data, args.out, config, device=args.device, progress=not args.quiet)
    dtype = "float16" if config.float16 else "float32"
    print(f"{len(experts.files)} expert(s) in {experts.path}: {'+'.join(config.modalities)}, {config.epochs} epochs "
          f"each, {experts.num_parameters:,} parameters saved per epoch as {dtype}")
    for index, path in enumerate(experts.files):
        accuracy = experts.test_accuracy(index)
        shown = "no test split" if accuracy is None else f"test accuracy {100 * accuracy:.1f} %"
        print(f"  {path.name}  {shown}")
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    d = ExpertConfig()
    p = verbs.add_parser(
        "experts", parents=[common], help="train expert trajectories for trajectory matching (--method mtt)",
        description="Trains networks (the evaluation protocol's encoders and fusion head, DSA on every batch, "
                    "constant-rate SGD) on the real train split and saves all their parameters after every "
                    "epoch (epoch 0 = initialisation). Finished experts are kept: rerunning the same command "
                    "resumes an interrupted run, and a larger --num-experts adds experts.",
        epilog="example: avdd experts --data data/avdigits --modalities audio,frame --num-experts 10 --epochs 20 "
               "--out runs/experts-av")
    p.add_argument("--data", required=True, type=Path, help="real dataset store (experts train on its train split)")
    p.add_argument("--out", required=True, type=Path, help="expert directory to create or complete")
    p.add_argument("--modalities", default=",".join(d.modalities), help="comma-separated (default: %(default)s)")
    p.add_argument("--num-experts", type=setting("num_experts"), default=d.num_experts, help="default: %(default)s")
    p.add_argument("--epochs", type=setting("epochs"), default=d.epochs,
                   help="epochs per expert (default: %(default)s)")
    p.add_argument("--lr", type=setting("expert_lr"), default=d.lr,
                   help="SGD learning rate, constant (default: %(default)s)")
    p.add_argument("--batch-size", type=setting("batch_size"), default=d.batch_size, help="default: %(default)s")
    p.add_argument("--fusion", default=d.fusion, help="fusion head: ensemble, concat, sum, attention "
                   "(default: %(default)s)")
    p.add_argument("--width", type=setting("width"), default=d.width, help="encoder width (default: %(default)s)")
    p.add_argument("--float16", action="store_true", help="save trajectories as float16 (half the disk space)")
    p.add_argument("--seed", type=setting("seed"), default=d.seed, help="default: %(default)s")
    add_device_option(p)
    p.set_defaults(handler=cmd_experts)
