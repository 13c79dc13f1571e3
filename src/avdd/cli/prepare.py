"""``avdd prepare SOURCE``: raw videos (or the authors' .pt files) the user fetched -> a store."""

from __future__ import annotations

import argparse
from pathlib import Path

from avdd.cli.data import add_options, describe_store
from avdd.data.sources import PREPARE_SOURCES


def cmd_prepare(args: argparse.Namespace) -> int:
    source = PREPARE_SOURCES.get(args.source)
    options = {opt.name: getattr(args, opt.name) for opt in source.options}
    source.build(args.out, overwrite=args.overwrite, progress=not args.quiet, **options)
    print(describe_store(args.out))
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    prepare = verbs.add_parser(
        "prepare", help="prepare a raw audio-visual dataset (videos you fetched) into a store",
        description="Decode raw videos into a store: per second, the middle frame and a log-mel of its audio. "
                    "Resumable: rerun the same command after an interruption.",
        epilog="example: avdd prepare vggs10k --root ~/vggsound/videos --out data/vggs10k (see docs/datasets.md)")
    per_source = prepare.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name in PREPARE_SOURCES.names():
        source = PREPARE_SOURCES.get(name)
        p = per_source.add_parser(name, parents=[common], help=source.summary, description=source.summary)
        p.add_argument("--out", required=True, type=Path, help="store directory to create")
        p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
        add_options(p, source.options)
        p.set_defaults(handler=cmd_prepare)
