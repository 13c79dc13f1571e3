"""``avdd evaluate``: train fresh networks on a training set, report test accuracy mean ± std."""

from __future__ import annotations

import argparse
from pathlib import Path

from avdd.cli.common import LOG_DIR, add_device_option, add_log_options, setting
from avdd.data.store import open_store
from avdd.device import resolve_device
from avdd.distributed import joined
from avdd.evaluate.recognition import evaluate_recognition
from avdd.files import write_json
from avdd.outputs import JSON_FILE, claim_if
from avdd.ranges import parse_modalities
from avdd.tracking import open_tracker
from avdd.training.protocol import PROTOCOLS, EvalConfig


def cmd_evaluate(args: argparse.Namespace) -> int:
    config = EvalConfig(
        protocol=args.protocol,
        modalities=parse_modalities(args.modalities),
        fusion=args.fusion,
        num_eval=args.num_eval,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr_step=args.lr_step,
        dsa=not args.no_dsa,
        networks_together=args.networks_together,
        seed=args.seed,
    )
    device = resolve_device(args.device)
    with joined(device) as job, claim_if(job.is_main, args.json, kind=JSON_FILE, inputs=[args.train, args.test],
                                         flag="--json"):
        result = evaluate_recognition(args.train, args.test, config, device=device,
                                      progress=not args.quiet and job.is_main)
        if not job.is_main:
            return 0
        train = open_store(args.train)
        with open_tracker(args.log, args.log_dir or LOG_DIR, f"evaluate-{args.train.name}") as tracker:
            tracker.config({"train": str(args.train), "test": str(args.test), "train_provenance": train.provenance,
                            **config.to_json()})
            tracker.accuracy({"mean": result.mean, "std": result.std, "runs": result.runs})
        runs = ", ".join(f"{100 * r:.1f}" for r in result.runs)
        print(f"{'+'.join(config.modalities)} {config.fusion}: {100 * result.mean:.2f} ± {100 * result.std:.2f} % "
              f"over {config.num_eval} network(s) (population std; runs {runs})", flush=True)
        if args.json is not None:  # after printing: a failed write never loses the result
            write_json(args.json, result.to_json())
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    d = EvalConfig()
    p = verbs.add_parser(
        "evaluate", parents=[common], help="train fresh networks on a training set, test on real data",
        epilog="example: avdd evaluate --train data/avdigits --test data/avdigits --modalities audio,frame "
               "--fusion ensemble --num-eval 5 --epochs 30 --seed 0 --json results/whole.json",
    )
    p.add_argument("--train", required=True, type=Path, help="store whose train split trains the networks "
                   "(a dataset or a distilled set)")
    p.add_argument("--test", required=True, type=Path, help="real store whose test split tests them")
    p.add_argument("--modalities", default=",".join(d.modalities), help="comma-separated (default: %(default)s)")
    p.add_argument("--fusion", default=d.fusion, help="fusion head: ensemble, concat, sum, attention "
                   "(default: %(default)s)")
    p.add_argument("--num-eval", type=setting("num_eval"), default=d.num_eval,
                   help="networks to train (default: %(default)s)")
    p.add_argument("--epochs", type=setting("epochs"), default=d.epochs, help="default: %(default)s")
    p.add_argument("--batch-size", type=setting("batch_size"), default=d.batch_size, help="default: %(default)s")
    p.add_argument("--lr-step", type=setting("lr_step"), default=d.lr_step,
                   help=f"epochs between ×{d.lr_gamma} learning-rate decays (default: %(default)s)")
    p.add_argument("--no-dsa", action="store_true", help="train without differentiable augmentation")
    p.add_argument("--networks-together", type=setting("networks_together"), default=d.networks_together,
                   help="networks trained at once as one batched group, each with its own draws (equal to "
                        "one by one up to float rounding); 1: one by one; 0: per device, one by one on CPU "
                        "(a gain not established there, 5x the memory: benchmarks/RESULTS.md; default: %(default)s)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=d.protocol,
                   help="reference: the authors' evaluator's encoders, head init, schedule, raw audio and warps; "
                        "clean: without those quirks (default: %(default)s; README, Fidelity)")
    p.add_argument("--seed", type=setting("seed"), default=d.seed, help="default: %(default)s")
    add_device_option(p)
    add_log_options(p, LOG_DIR)
    p.add_argument("--json", type=Path, default=None, help="write the result (accuracy, runs, config) here")
    p.set_defaults(handler=cmd_evaluate, distributed=True)
