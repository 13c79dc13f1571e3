"""``avdd demo``: the main job on the embedded default dataset (avdigits)."""

from __future__ import annotations

import argparse
from pathlib import Path

from avdd.cli.data import describe_store
from avdd.data.sources import DATASETS
from avdd.data.store import open_store
from avdd.errors import AvddError


def cmd_demo(args: argparse.Namespace) -> int:
    data_dir = args.workdir / "avdigits"
    try:
        open_store(data_dir)
    except AvddError:  # absent or broken: (re)build it
        DATASETS.get("avdigits").build(data_dir, overwrite=True, progress=not args.quiet)
    print(describe_store(data_dir))
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = verbs.add_parser("demo", parents=[common], help="run the main job on the embedded avdigits dataset",
                         epilog="example: avdd demo --workdir avdd-demo")
    p.add_argument("--workdir", type=Path, default=Path("avdd-demo"), help="where data and results go")
    p.set_defaults(handler=cmd_demo)
