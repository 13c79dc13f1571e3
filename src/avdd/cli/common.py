"""The ``--device`` option of the verbs that compute."""

from __future__ import annotations

import argparse


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu; under torchrun "
                             "cuda is each process's own GPU, cuda:LOCAL_RANK)")
