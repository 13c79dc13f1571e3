"""``avdd report``: figures, sounds and report.html for an experiment run or a distilled set."""

from __future__ import annotations

import argparse
from pathlib import Path

from avdd.cli.common import add_device_option, setting
from avdd.device import resolve_device
from avdd.errors import AvddError
from avdd.outputs import claim_output
from avdd.report.build import build_report
from avdd.report.projection import PROJECTIONS


def cmd_report(args: argparse.Namespace) -> int:
    if not args.path.is_dir():  # before a report folder is made inside it
        raise AvddError(f"{args.path}: no such directory (expected a run directory or a distilled set)")
    out = args.out or args.path / "report"
    with claim_output(out, kind="report", inputs=[args.path]):
        page = build_report(args.path, out, projection=args.projection, max_per_class=args.max_per_class,
                            device=resolve_device(args.device), log=(lambda line: None) if args.quiet else print)
    print(f"report: {page} (open it in a browser; its images and sounds are beside it)")
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = verbs.add_parser(
        "report", parents=[common], help="figures, sounds and an HTML page for a run or a distilled set",
        description="For a run directory (avdd run --out): its tables and, per distilled set of the first seed, "
                    "per-class grids of every modality, a 2-D projection of real vs synthetic embeddings, loss "
                    "curves, accuracy vs iteration and a player beside each spectrogram. For a distilled set: "
                    "that set's part.",
        epilog="examples:\n  avdd report runs/recognition\n  avdd report runs/avdd-ipc1 --out reports/avdd-ipc1 "
               "--projection tsne", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", type=Path, help="a run directory (with results.json) or a distilled set")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: PATH/report)")
    p.add_argument("--projection", choices=PROJECTIONS, default="pca",
                   help="2-D projection of the embeddings (default: %(default)s)")
    p.add_argument("--max-per-class", type=setting("max_per_class"), default=8,
                   help="samples shown per class (default: %(default)s)")
    add_device_option(p)
    p.set_defaults(handler=cmd_report)
