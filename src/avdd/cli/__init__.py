"""The ``avdd`` command line: parses, calls the library, prints. ``main(argv)`` returns the exit code.

Each verb lives in its own module exposing ``add_parser(verbs, common)``; a verb's parser sets
``handler`` (a function of the parsed arguments returning an exit code) and ``distributed=True``
when it runs as several processes under torchrun (the others refuse to: every process would do
the same work and write the same files).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from avdd.allocator import retain_freed_memory
from avdd.cli import data, demo, distill, evaluate, experts, listen, prepare, report, retrieve, run
from avdd.distill.checkpoint import sigterm_interrupts
from avdd.distributed import launched
from avdd.errors import AvddError, show_warning

VERB_MODULES = (data, prepare, experts, distill, evaluate, retrieve, run, report, listen, demo)


def build_parser() -> argparse.ArgumentParser:
    from avdd.version import __version__

    parser = argparse.ArgumentParser(
        prog="avdd",
        description="Audio-visual dataset distillation: prepare data, distill, evaluate, report.",
    )
    parser.add_argument("--version", action="version", version=f"avdd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or logs")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module in VERB_MODULES:
        module.add_parser(verbs, common)
    return parser


# how to continue after an interruption, per verb (distill: only once a checkpoint was kept)
CONTINUE = {
    "distill": "rerun the same command with --resume to continue from it",
    "run": "rerun the same command to continue (finished sets and cells are kept)",
    "demo": "rerun the same command to continue (finished sets and cells are kept)",
    "experts": "rerun the same command to continue (finished experts are kept)",
    "prepare": "rerun the same command to continue (decoded clips are kept)",
}


def interrupted_message(verb: str, kept: Path | None) -> str:
    """What an interruption (Ctrl-C, SIGTERM) left, and how to go on from it."""
    parts = ["interrupted"]
    if kept is not None:
        parts.append(f"the checkpoint {kept} was kept")
    if verb in CONTINUE and (kept is not None or verb != "distill"):
        parts.append(CONTINUE[verb])
    return "; ".join(parts)


def run_handler(args: argparse.Namespace) -> int:
    """The verb's handler, with SIGTERM stopping it as Ctrl-C does (a checkpoint is saved) and a file
    system error it did not foresee (a full disk, a read-only folder) as one line naming the path."""
    try:
        with sigterm_interrupts():
            return args.handler(args)
    except BrokenPipeError:
        raise  # stdout closed by a reader (`| head`): the entry point's own business
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        raise AvddError(f"{where}{err.strerror or err}") from None


DEBUG_ENV = "AVDD_DEBUG"  # set to 1: an unexpected error shows its traceback


def one_line(err: Exception) -> str:
    """``Type: message`` on one line."""
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def reader_gone() -> int:
    """stdout's reader has left (``avdd data info X | head -1``): stop quietly, as unix tools do."""
    # later writes, and Python's own flush at exit, go nowhere instead of failing again (unless
    # stdout is not a file, as when it is captured)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE  # what a shell reports for a tool that SIGPIPE stopped


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = show_warning
    retain_freed_memory()  # the tensors of one iteration reuse the last one's pages (avdd/allocator.py)
    where = f"[rank {os.environ.get('RANK', '?')}] " if launched() else ""
    try:
        if launched() and not getattr(args, "distributed", False):
            raise AvddError(f"avdd {args.verb} runs as one process; under torchrun run distill, evaluate or retrieve")
        status = run_handler(args)
        sys.stdout.flush()  # a reader that left (`| head`) shows here, not in Python's exit
        return status
    except AvddError as err:
        print(f"avdd: error: {where}{err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"avdd: {where}{interrupted_message(args.verb, getattr(err, 'kept', None))}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return reader_gone()
    except Exception as err:  # a case nobody foresaw: one line, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"avdd: error: {where}{one_line(err)} (run with {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
