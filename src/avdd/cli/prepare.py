"""``avdd prepare SOURCE``: raw videos (or the authors' .pt files) the user fetched -> a store."""

from __future__ import annotations

import argparse

from avdd.cli.data import add_source_parsers
from avdd.data.sources.registry import PREPARE_SOURCES


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    prepare = verbs.add_parser(
        "prepare", help="prepare a raw audio-visual dataset (videos you fetched) into a store",
        description="Decode raw videos into a store: per second, the middle frame and a log-mel of its audio. "
                    "Resumable: rerun the same command after an interruption.",
        epilog="example: avdd prepare vggs10k --root ~/vggsound/videos --out data/vggs10k (see docs/datasets.md)")
    per_source = prepare.add_subparsers(dest="source", required=True, metavar="SOURCE")
    add_source_parsers(per_source, PREPARE_SOURCES, common)
