"""``avdd run``: an experiment config's grid, distilled and evaluated cell by cell, with tables."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from avdd.cli.common import add_device_option, add_log_options, setting
from avdd.device import resolve_device
from avdd.experiments.config import load_experiment
from avdd.experiments.runner import TABLES, run_experiment
from avdd.outputs import claim_output
from avdd.tracking import open_tracker


def cmd_run(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.config, args.set or ())
    log = experiment.view["log"]  # the config's log: section; the flags win
    backend, every = args.log or log["backend"], args.log_every or log["every"]
    log_dir = args.log_dir or log["dir"] or args.out / "logs"
    tracker = None if backend == "none" else partial(open_tracker, backend, log_dir, every=every)
    with claim_output(args.out, kind="run"):
        outcomes = run_experiment(experiment, args.out, device=resolve_device(args.device), progress=not args.quiet,
                                  log=(lambda line: None) if args.quiet else print, tracker=tracker,
                                  jobs=args.jobs)
    print((args.out / TABLES).read_text().rstrip())
    print(f"\nresults: {args.out}/results.json, results.csv, tables.md; figures: avdd report {args.out}")
    return 1 if any(o.status != "done" for o in outcomes) else 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = verbs.add_parser(
        "run", parents=[common], help="run an experiment config: every cell distilled, evaluated, tabulated",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Expands the config's grid, distills and evaluates every cell (finished steps are cached in "
                    "--out, so rerunning resumes and a changed setting re-runs only its cells), and writes "
                    "results.json, results.csv and tables.md. A failing cell is reported and the others go on; "
                    "the exit status is 1 if any cell failed.",
        epilog="examples:\n  avdd run configs/recognition.yaml --out runs/recognition\n"
               "  avdd run configs/recognition.yaml --set dataset=avdigits --set grid.ipc=[1] "
               "--set evaluate.num_eval=1 --out runs/rec-quick\n"
               "  avdd run configs/recognition.yaml --device cpu --jobs 8 --out runs/recognition   # 8 cells at once\n"
               "  avdd run configs/fusion.yaml --set dataset=vggs10k --set data=/data/vggs10k --out runs/fusion")
    p.add_argument("config", type=Path, help="experiment config (configs/*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a key of the resolved config (dotted path, YAML value); repeatable")
    p.add_argument("--out", type=Path, required=True, help="run directory (sets, cell results, tables)")
    p.add_argument("--jobs", type=setting("jobs"), default=1, metavar="N",
                   help="run up to N cells at once in N worker processes, CPU only (each gets cores/N threads "
                        "unless OMP_NUM_THREADS is set; cells sharing a set or experts run in one worker)")
    add_device_option(p)
    add_log_options(p, "OUT/logs, or the config's log.dir", default=None)
    p.set_defaults(handler=cmd_run)
