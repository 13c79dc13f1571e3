"""``avdd listen``: a distilled set's spectrograms back into WAV files (inverse mel + Griffin-Lim)."""

from __future__ import annotations

import argparse
from pathlib import Path

from avdd.cli.common import setting
from avdd.data.audio import SAMPLE_RATE
from avdd.data.store import open_store
from avdd.outputs import claim_output
from avdd.report.sonify import write_clips


def cmd_listen(args: argparse.Namespace) -> int:
    store = open_store(args.distilled)
    with claim_output(args.out, kind="listen", inputs=[args.distilled]):
        written = write_clips(store, args.out, max_per_class=args.max_per_class, iterations=args.iterations,
                              seed=args.seed)
    count = sum(len(paths) for paths in written)
    print(f"{count} clips ({SAMPLE_RATE} Hz, 16-bit mono, 1 s) for {len(written)} classes in {args.out}")
    return 0


def add_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = verbs.add_parser(
        "listen", parents=[common], help="turn a set's spectrograms back into WAV files",
        description="Inverts each training spectrogram of a set (a factorised set's tiles decoded into samples, "
                    "as networks train on them): dB -> mel power -> linear power (non-negative least squares "
                    "on the front end's filterbank) -> Griffin-Lim phase -> waveform. Files are named "
                    "CLASSINDEX-CLASS-SAMPLE.wav.",
        epilog="example: avdd listen runs/avdd-ipc1 --out runs/avdd-ipc1-audio")
    p.add_argument("distilled", type=Path, help="a distilled set (or any store with front-end spectrograms)")
    p.add_argument("--out", type=Path, required=True, help="folder for the WAV files")
    p.add_argument("--max-per-class", type=setting("max_per_class"), default=None,
                   help="at most this many clips per class")
    p.add_argument("--iterations", type=setting("griffin_lim_iterations"), default=100,
                   help="Griffin-Lim iterations (default: %(default)s)")
    p.add_argument("--seed", type=setting("seed"), default=0,
                   help="seed of Griffin-Lim's initial phase (default: %(default)s)")
    p.set_defaults(handler=cmd_listen)
