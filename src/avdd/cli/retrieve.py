"""``avdd retrieve``: cross-modal retrieval (A→V, V→A) of networks trained on a set."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from avdd.cli.common import add_device_option, setting
from avdd.data.store import open_store
from avdd.device import resolve_device
from avdd.distributed import joined
from avdd.evaluate.retrieval import SPACES, evaluate_retrieval, format_summary
from avdd.files import write_json
from avdd.outputs import JSON_FILE, claim_if
from avdd.ranges import parse_modalities
from avdd.training.protocol import EvalConfig


def cmd_retrieve(args: argparse.Namespace) -> int:
    modalities = parse_modalities(args.modalities) if args.modalities else tuple(open_store(args.train).modalities)
    config = replace(EvalConfig(), modalities=modalities, num_eval=args.num_eval, epochs=args.epochs, seed=args.seed)
    device = resolve_device(args.device)
    with joined(device) as job, claim_if(job.is_main, args.json, kind=JSON_FILE, inputs=[args.train, args.test],
                                         flag="--json"):
        result = evaluate_retrieval(args.train, args.test, config, subset=args.subset, subsets=args.subsets,
                                    space=args.space, device=device, progress=not args.quiet and job.is_main)
        if not job.is_main:
            return 0
        print("\n".join(format_summary(result)), flush=True)
        if args.json is not None:  # after printing: a failed write never loses the result
            write_json(args.json, result.to_json())
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    d = EvalConfig()
    p = verbs.add_parser(
        "retrieve", parents=[common], help="cross-modal retrieval A→V and V→A: R@1, R@5, median rank",
        epilog="example: avdd retrieve --train runs/avdd-ipc10 --test data/avdigits --subset 150 --num-eval 5 "
               "--json results/retrieval.json",
    )
    p.add_argument("--train", required=True, type=Path, help="store whose train split trains the networks")
    p.add_argument("--test", required=True, type=Path, help="real store whose test split holds the pairs")
    p.add_argument("--modalities", default=None, help="the two modalities, comma-separated: the first queries the "
                   "second and the second the first (default: the --train store's, if it has two)")
    p.add_argument("--subset", type=setting("subset"), default=150, help="pairs per retrieval pool, class-stratified "
                   "(default: %(default)s)")
    p.add_argument("--subsets", type=setting("subsets"), default=1,
                   help="pools drawn per network (default: %(default)s)")
    p.add_argument("--space", choices=SPACES, default="probabilities",
                   help="embedding: per-modality classifier softmax or logits (default: %(default)s)")
    p.add_argument("--num-eval", type=setting("num_eval"), default=d.num_eval,
                   help="networks to train (default: %(default)s)")
    p.add_argument("--epochs", type=setting("epochs"), default=d.epochs, help="default: %(default)s")
    p.add_argument("--seed", type=setting("seed"), default=d.seed, help="default: %(default)s")
    add_device_option(p)
    p.add_argument("--json", type=Path, default=None, help="write {a2v, v2a: {r1, r5, medr}} here (directions "
                   "named by kind, a2v: spectrogram queries, image targets; by name where the kinds agree)")
    p.set_defaults(handler=cmd_retrieve, distributed=True)
