"""``avdd demo``: the main job on the embedded default dataset (avdigits)."""

from __future__ import annotations

import argparse
from pathlib import Path

from avdd.cli.common import add_device_option, setting
from avdd.demo import DemoSettings, run_demo
from avdd.device import resolve_device
from avdd.experiments.runner import TABLES
from avdd.outputs import claim_output
from avdd.training.protocol import PROTOCOLS


def cmd_demo(args: argparse.Namespace) -> int:
    settings = DemoSettings(ipc=args.ipc, iterations=args.iterations, num_eval=args.num_eval, seed=args.seed,
                            protocol=args.protocol)
    with claim_output(args.workdir, kind="run", flag="--workdir"):
        outcomes = run_demo(args.workdir, settings, progress=not args.quiet, device=resolve_device(args.device),
                            log=(lambda line: None) if args.quiet else print)
    print(f"avdigits, audio+frame, ensemble head; DM/AVDD {settings.iterations} iterations "
          f"(real batch {settings.batch_real}); protocol {settings.protocol}\n")
    print((args.workdir / TABLES).read_text().rstrip())
    print(f"\nsets and results: {args.workdir} (rerunning reuses them; figures: avdd report {args.workdir})")
    return 1 if any(o.status != "done" for o in outcomes) else 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    d = DemoSettings()
    p = verbs.add_parser(
        "demo", parents=[common], help="the main job: distill avdigits with random, herding, DM and AVDD and compare",
        description="Builds avdigits, distills it with random, herding, DM and AVDD at a short schedule, "
                    "evaluates each set with the recognition protocol and prints the table.",
        epilog="example: avdd demo --workdir avdd-demo")
    p.add_argument("--workdir", type=Path, default=Path("avdd-demo"), help="where data, sets and results go")
    p.add_argument("--ipc", type=setting("ipc"), default=d.ipc, help="default: %(default)s")
    p.add_argument("--iterations", type=setting("iterations"), default=d.iterations,
                   help="DM/AVDD iterations (default: %(default)s)")
    p.add_argument("--num-eval", type=setting("num_eval"), default=d.num_eval,
                   help="networks per set (default: %(default)s)")
    p.add_argument("--seed", type=setting("seed"), default=d.seed, help="default: %(default)s")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=d.protocol,
                   help="reference: DM and AVDD distil with the authors' loop and every set is evaluated with "
                        "the authors' evaluator's quirks; clean: without them (default: %(default)s; README, Fidelity)")
    add_device_option(p)
    p.set_defaults(handler=cmd_demo)
