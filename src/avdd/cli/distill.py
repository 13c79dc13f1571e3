"""``avdd distill``: a real store in, a distilled store out (coresets, DM, AVDD)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from avdd.cli.common import (
    LOG_DIR,
    add_device_option,
    add_log_options,
    add_per_modality_option,
    check_modality_keys,
    number,
    setting,
)
from avdd.cli.data import describe_store
from avdd.data.store import open_store
from avdd.device import resolve_device
from avdd.distill.api import distill
from avdd.distill.registry import METHODS
from avdd.distill.spec import Setting, flag_of, settings_of
from avdd.distributed import joined
from avdd.outputs import STORE, claim_if
from avdd.ranges import FLAG, Number, OneOrPerModality, PerModality, parse_modalities
from avdd.tracking import open_tracker, run_name
from avdd.training.protocol import EvalConfig


def method_settings() -> dict[str, list[tuple[str, Setting]]]:
    """Every method setting's name -> the (method, setting) pairs that declare it, in flag order."""
    found: dict[str, list[tuple[str, Setting]]] = {}
    for method in METHODS.names():
        for s in settings_of(METHODS.get(method).settings):
            found.setdefault(s.name, []).append((method, s))
    return found


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v:g}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return "unset" if value is None else "''" if value == "" else str(value)


def setting_help(declared: list[tuple[str, Setting]]) -> str:
    """The help of one setting flag: what it is (from its first method), its range, and each
    method's default (grouped where they agree)."""
    first = declared[0][1]
    defaults: dict[str, list[str]] = {}
    for method, s in declared:
        defaults.setdefault(_shown(s.default), []).append(method)
    if len(defaults) == 1:
        default = f"default {next(iter(defaults))}"
    else:
        default = "default " + ", ".join(f"{' and '.join(ms)} {value}" for value, ms in defaults.items())
    methods = ", ".join(m for m, _ in declared)
    text = f"[{methods}] {first.help}; {first.range.describe()}; {default}"
    return text.replace("%", "%%")  # argparse %-formats help texts


def cmd_distill(args: argparse.Namespace) -> int:
    modalities = parse_modalities(args.modalities)
    settings = {name: getattr(args, name) for name in method_settings()}
    for name, declared in method_settings().items():
        if isinstance(declared[0][1].range, PerModality | OneOrPerModality) and isinstance(settings[name], dict):
            check_modality_keys(flag_of(name), settings[name], modalities)
    eval_config = replace(EvalConfig(), modalities=modalities, num_eval=args.eval_num, epochs=args.eval_epochs)
    device = resolve_device(args.device)
    with joined(device) as job, claim_if(job.is_main, args.out, kind=STORE, inputs=[args.data, args.experts],
                                         overwrite=args.overwrite):
        name = run_name({"method": args.method, "ipc": args.ipc, "modalities": modalities, "seed": args.seed})
        # only the main process logs (under torchrun its samples are its own share of the classes)
        with open_tracker(args.log if job.is_main else "none", args.log_dir or LOG_DIR, name,
                          every=args.log_every) as tracker:
            saved = distill(args.data, args.out, args.method, modalities=modalities, ipc=args.ipc, seed=args.seed,
                            device=device, progress=not args.quiet and job.is_main, resume=args.resume,
                            overwrite=args.overwrite, eval_every=args.eval_every, eval_config=eval_config,
                            on_iteration=tracker.distill_hook(open_store(args.data)) if tracker.active else None,
                            **settings)
            if saved is not None:
                tracker.config({**saved.provenance, "data": str(args.data), "out": str(args.out)})
        if job.is_main:
            print(describe_store(args.out))
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    methods = "\n".join(f"  {name:<9} {METHODS.get(name).summary}" for name in METHODS.names())
    p = verbs.add_parser(
        "distill", parents=[common], help="distill a store into a few samples per class",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"methods:\n{methods}\n\nMethod settings ([the methods that take each]) left unset take the "
                    "method's defaults; a setting the method does not take is an error.\n\nmtt memory: every "
                    "unrolled student step keeps its "
                    "activations for the backward pass,\nso memory grows with --syn-steps x --batch-syn; lower them "
                    "if a run does not fit.",
        epilog="examples:\n  avdd distill --data data/avdigits --method avdd --ipc 1 --modalities audio,frame "
               "--iterations 200 --out runs/avdd-ipc1\n  avdd distill --data data/avdigits --method herding --ipc 10 "
               "--out runs/herding-ipc10\n  avdd distill --data data/avdigits --method mtt --experts runs/experts-av "
               "--ipc 1 --iterations 200 --syn-steps 20 --out runs/mtt-ipc1\n  torchrun --nproc-per-node 8 -m avdd "
               "distill --data data/vggsound --method avdd --ipc 10 --device cuda --resume --out runs/vggsound-avdd10"
               "   (classes split over 8 GPUs)",
    )
    p.add_argument("--data", required=True, type=Path, help="real dataset store (its train split is distilled)")
    p.add_argument("--method", required=True, choices=METHODS.names(), metavar="METHOD",
                   help="one of: " + ", ".join(METHODS.names()))
    p.add_argument("--ipc", type=setting("ipc"), required=True, help="stored samples per class")
    p.add_argument("--modalities", default="audio,frame", help="comma-separated (default: %(default)s)")
    p.add_argument("--seed", type=setting("seed"), default=0, help="default: %(default)s")
    p.add_argument("--out", required=True, type=Path, help="distilled store to create")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint(s)")
    add_device_option(p)
    add_log_options(p, LOG_DIR)
    for name, declared in method_settings().items():  # generated from the methods' settings dataclasses
        spec, text = declared[0][1].range, setting_help(declared)
        if isinstance(spec, PerModality | OneOrPerModality):
            add_per_modality_option(p, flag_of(name), name, text + "; repeat per modality")
        elif spec is FLAG:
            p.add_argument(flag_of(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            kind = number(spec, name) if isinstance(spec, Number) else str
            p.add_argument(flag_of(name), dest=name, type=kind, default=None, help=text)
    p.add_argument("--eval-every", type=setting("eval_every"), default=0,
                   help="evaluate the synthetic set every K iterations (0: never); results go to distill_log.json")
    p.add_argument("--eval-num", type=setting("num_eval"), default=1,
                   help="networks per intermediate evaluation (default 1)")
    p.add_argument("--eval-epochs", type=setting("epochs"), default=30,
                   help="epochs per intermediate evaluation (default 30)")
    p.set_defaults(handler=cmd_distill, distributed=True)
