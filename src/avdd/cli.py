"""The ``avdd`` command line: parses, calls the library, prints. ``main(argv)`` returns the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from avdd.errors import AvddError

Handler = Callable[[argparse.Namespace], int]


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def describe_store(path: Path) -> str:
    """A human-readable summary of a store: classes, counts, shapes, sizes."""
    from avdd.data.store import array_file, open_store

    store = open_store(path)
    lines = [f"{store.name}  ({path})"]
    names = store.class_names
    shown = ", ".join(names[:12]) + (f", … ({len(names)} in all)" if len(names) > 12 else "")
    lines.append(f"  classes   {store.num_classes}: {shown}")
    for split, size in store.split_sizes.items():
        counts = store.split(split).class_counts()
        lines.append(f"  {split:<9} {size} samples (per class {min(counts)}–{max(counts)})")
    for m, spec in store.modalities.items():
        nbytes = sum((path / array_file(s, m)).stat().st_size for s in store.split_sizes)
        shape = "(" + ",".join(str(d) for d in spec.shape) + ")"
        lines.append(f"  {m:<9} {shape} {spec.dtype}, {_format_bytes(nbytes)} on disk")
    prov = store.provenance
    if prov:
        keys = [k for k in ("source", "method", "ipc", "seed", "code_version") if k in prov]
        lines.append("  provenance " + ", ".join(f"{k}={prov[k]}" for k in keys))
    return "\n".join(lines)


def cmd_data_list(args: argparse.Namespace) -> int:
    from avdd.data.sources import DATASETS

    for name in DATASETS.names():
        print(f"{name:<12} {DATASETS.get(name).summary}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from avdd.data.sources import DATASETS

    source = DATASETS.get(args.dataset)
    options = {opt.name: getattr(args, opt.name) for opt in source.options}
    source.build(args.out, overwrite=args.overwrite, progress=not args.quiet, **options)
    print(describe_store(Path(args.out)))
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    print(describe_store(Path(args.store)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from avdd.data.sources import DATASETS
    from avdd.data.store import open_store

    data_dir = Path(args.workdir) / "avdigits"
    try:
        open_store(data_dir)
    except AvddError:
        DATASETS.get("avdigits").build(data_dir, overwrite=True, progress=not args.quiet)
    print(describe_store(data_dir))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from avdd import __version__
    from avdd.data.sources import DATASETS

    parser = argparse.ArgumentParser(
        prog="avdd",
        description="Audio-visual dataset distillation: prepare data, distill, evaluate, report.",
    )
    parser.add_argument("--version", action="version", version=f"avdd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or logs")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    data = verbs.add_parser("data", help="build and inspect dataset stores")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    p = data_verbs.add_parser("list", parents=[common], help="list the datasets avdd can build")
    p.set_defaults(handler=cmd_data_list)

    build = data_verbs.add_parser("build", help="build a known dataset into a store")
    per_dataset = build.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name in DATASETS.names():
        source = DATASETS.get(name)
        p = per_dataset.add_parser(name, parents=[common], help=source.summary, description=source.summary)
        p.add_argument("--out", required=True, type=Path, help="store directory to create")
        p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
        for opt in source.options:
            flag = "--" + opt.name.replace("_", "-")
            p.add_argument(flag, dest=opt.name, type=opt.type, default=opt.default, choices=opt.choices,
                           help=opt.help if opt.default is None else f"{opt.help} (default: {opt.default})")
        p.set_defaults(handler=cmd_data_build)

    p = data_verbs.add_parser("info", parents=[common], help="show a store's classes, counts, shapes, sizes")
    p.add_argument("store", type=Path, help="store directory (a dataset or a distilled set)")
    p.set_defaults(handler=cmd_data_info)

    p = verbs.add_parser("demo", parents=[common], help="the main job on the embedded avdigits dataset")
    p.add_argument("--workdir", type=Path, default=Path("avdd-demo"), help="where to put data and results")
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except AvddError as err:
        print(f"avdd: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("avdd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
