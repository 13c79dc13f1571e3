"""``avdd data list|build|info``: the datasets avdd knows and the stores it builds."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from avdd.cli.common import setting
from avdd.data.sources.registry import DATASETS, DatasetSource, Option
from avdd.data.store import array_file, open_store
from avdd.outputs import STORE, claim_output
from avdd.ranges import RANGES, Number
from avdd.registry import Registry


def format_bytes(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def describe_store(path: Path) -> str:
    """A human-readable summary of a store: classes, counts, shapes, sizes."""
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
        lines.append(f"  {m:<9} {shape} {spec.dtype} {spec.kind}, {format_bytes(nbytes)} on disk")
    prov = store.provenance
    keys = [k for k in ("source", "method", "ipc", "seed", "code_version") if k in prov]
    if keys:
        lines.append("  provenance " + ", ".join(f"{k}={prov[k]}" for k in keys))
    return "\n".join(lines)


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """One ``--flag`` per source option; booleans become switches."""
    for opt in options:
        flag = "--" + opt.name.replace("_", "-")
        if opt.type is bool:
            parser.add_argument(flag, dest=opt.name, action="store_true", help=opt.help)
            continue
        shown = opt.default is None or opt.required
        help_text = opt.help if shown else f"{opt.help} (default: {opt.default})"
        kind = setting(opt.name) if isinstance(RANGES.get(opt.name), Number) else opt.type  # numbers: checked
        parser.add_argument(flag, dest=opt.name, type=kind, default=opt.default, choices=opt.choices,
                            required=opt.required, help=help_text)


def cmd_list(args: argparse.Namespace) -> int:
    for name in DATASETS.names():
        print(f"{name:<12} {DATASETS.get(name).summary}")
    return 0


def source_paths(options: dict[str, object]) -> list[Path]:
    """The files and folders a build reads (its --root, --csv, …): the options naming existing paths."""
    return [Path(v) for v in options.values() if isinstance(v, str | Path) and v and Path(v).exists()]


def cmd_build(args: argparse.Namespace) -> int:
    """Build the source chosen on the command line (``avdd data build`` and ``avdd prepare``)."""
    source = args.registry.get(args.source_name)
    options = {opt.name: getattr(args, opt.name) for opt in source.options}
    with claim_output(args.out, kind=STORE, inputs=source_paths(options), overwrite=args.overwrite):
        source.build(args.out, overwrite=args.overwrite, progress=not args.quiet, **options)
    print(describe_store(args.out))
    return 0


def add_source_parsers(subparsers: argparse._SubParsersAction, registry: Registry[DatasetSource],
                       common: argparse.ArgumentParser) -> None:
    """One sub-command per registered source: ``--out``, ``--overwrite`` and the source's options."""
    for name in registry.names():
        source = registry.get(name)
        p = subparsers.add_parser(name, parents=[common], help=source.summary, description=source.summary)
        p.add_argument("--out", required=True, type=Path, help="store directory to create")
        p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
        add_options(p, source.options)
        p.set_defaults(handler=cmd_build, registry=registry, source_name=name)


def cmd_info(args: argparse.Namespace) -> int:
    print(describe_store(args.store))
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    data = verbs.add_parser("data", help="build and inspect dataset stores")
    actions = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    p = actions.add_parser("list", parents=[common], help="list the datasets avdd can build")
    p.set_defaults(handler=cmd_list)

    build = actions.add_parser("build", help="build a known dataset into a store",
                               epilog="example: avdd data build avdigits --out data/avdigits")
    add_source_parsers(build.add_subparsers(dest="dataset", required=True, metavar="DATASET"), DATASETS, common)

    p = actions.add_parser("info", parents=[common], help="show a store's classes, counts, shapes, sizes",
                           epilog="example: avdd data info data/avdigits")
    p.add_argument("store", type=Path, help="store directory (a dataset or a distilled set)")
    p.set_defaults(handler=cmd_info)
