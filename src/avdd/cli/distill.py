"""``avdd distill``: a real store in, a distilled store out (coresets, DM, AVDD)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from avdd.cli.common import add_device_option, add_per_modality_option, check_modality_keys, setting
from avdd.cli.data import describe_store, parse_modalities
from avdd.device import resolve_device
from avdd.distill.api import distill
from avdd.distill.base import get_method, method_names
from avdd.distributed import joined
from avdd.evaluate.recognition import EvalConfig
from avdd.outputs import STORE, claim_if
from avdd.ranges import RANGES, Number

SETTING_FLAGS = (  # (name, help): numbers take their type and range from avdd/ranges.py, the rest are strings
    ("iterations", "optimisation iterations (default 5000)"),
    ("momentum", "SGD momentum on the synthetic data and mtt's step size (default 0.5)"),
    ("batch_real", "dm/avdd: real samples per class per iteration (default 128)"),
    ("lambda_base", "weight of the per-modality DM term (default 1; 0 switches it off)"),
    ("lambda_jm", "weight of joint matching (avdd default 10, dm 0)"),
    ("lambda_mgm", "weight of modality-gap matching (avdd default 10, dm 0)"),
    ("init", "initialisation: random or herding (avdd default herding, dm and mtt random)"),
    ("dsa_strategy", "augmentation ops joined by _ (default color_crop_cutout_flip_scale_rotate)"),
    ("width", "encoder width (default 128)"),
    ("autocast", "real-side autocast: auto, off, bf16, fp16 (default auto: bf16 on CUDA, off on CPU)"),
    ("checkpoint_every", "iterations between checkpoints (default 100)"),
    ("embed_source", "herding/k-center embeddings: trained or random encoders (default trained)"),
    ("embed_epochs", "epochs of the embedding network (default 5; cached next to the data store)"),
    ("experts", "mtt (required): expert trajectories from `avdd experts`"),
    ("syn_steps", "mtt: student SGD steps unrolled per iteration (default 20); memory grows linearly with it"),
    ("batch_syn", "mtt: synthetic samples per student step (default 0 = all); memory grows linearly with it"),
    ("expert_epochs", "mtt: expert epochs the student's steps must cover (default 2)"),
    ("max_start_epoch", "mtt: latest expert epoch a student starts from (default 2)"),
    ("step_size", "mtt: the student's initial SGD step size (default: the experts' learning rate)"),
    ("lr_step_size", "mtt: learning rate of log(step size) (default 0.1)"),
)


def cmd_distill(args: argparse.Namespace) -> int:
    modalities = parse_modalities(args.modalities)
    settings = {name: getattr(args, name) for name, _ in SETTING_FLAGS}
    check_modality_keys("--lr", args.lr, modalities)
    settings["lr"] = args.lr
    settings["factor"] = args.factor
    eval_config = replace(EvalConfig(), modalities=modalities, num_eval=args.eval_num, epochs=args.eval_epochs)
    device = resolve_device(args.device)
    with joined(device) as job, claim_if(job.is_main, args.out, kind=STORE, inputs=[args.data, args.experts],
                                         overwrite=args.overwrite):
        distill(args.data, args.out, args.method, modalities=modalities, ipc=args.ipc, seed=args.seed,
                device=device, progress=not args.quiet and job.is_main, resume=args.resume,
                overwrite=args.overwrite, eval_every=args.eval_every, eval_config=eval_config, **settings)
        if job.is_main:
            print(describe_store(args.out))
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    methods = "\n".join(f"  {name:<9} {get_method(name).summary}" for name in method_names())
    p = verbs.add_parser(
        "distill", parents=[common], help="distill a store into a few samples per class",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"methods:\n{methods}\n\nMethod settings left unset take the method's defaults; a setting "
                    "the method does not take is an error.\n\nmtt memory: every unrolled student step keeps its "
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
    p.add_argument("--method", required=True, choices=method_names(), metavar="METHOD",
                   help="one of: " + ", ".join(method_names()))
    p.add_argument("--ipc", type=setting("ipc"), required=True, help="stored samples per class")
    p.add_argument("--modalities", default="audio,frame", help="comma-separated (default: %(default)s)")
    p.add_argument("--seed", type=setting("seed"), default=0, help="default: %(default)s")
    p.add_argument("--out", required=True, type=Path, help="distilled store to create")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint(s)")
    add_device_option(p)
    p.add_argument("--factor", action=argparse.BooleanOptionalAction, default=None,
                   help="factor parametrisation: 4 tiles per stored sample (avdd default on, dm and mtt off)")
    add_per_modality_option(p, "--lr", "lr", "synthetic-data learning rate per modality (default 0.2 each; mtt "
                            "1000 each); repeat per modality")
    for name, text in SETTING_FLAGS:
        kind = setting(name) if isinstance(RANGES.get(name), Number) else str
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=text)
    p.add_argument("--eval-every", type=setting("eval_every"), default=0,
                   help="evaluate the synthetic set every K iterations (0: never); results go to distill_log.json")
    p.add_argument("--eval-num", type=setting("num_eval"), default=1,
                   help="networks per intermediate evaluation (default 1)")
    p.add_argument("--eval-epochs", type=setting("epochs"), default=30,
                   help="epochs per intermediate evaluation (default 30)")
    p.set_defaults(handler=cmd_distill, distributed=True)
