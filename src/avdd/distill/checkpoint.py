"""Atomic checkpoints for long runs, and refusing to resume under a different configuration."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from avdd.errors import AvddError


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename: never a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise AvddError(f"{path}: unreadable checkpoint ({err}); delete it to start over") from None


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two (nested) configuration mappings."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        old, new = saved.get(key, "<unset>"), current.get(key, "<unset>")
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            diffs += config_differences(old, new, prefix=f"{name}.")
        elif old != new:
            diffs.append(f"{name}: checkpoint has {old!r}, now {new!r}")
    return diffs


def check_resumable(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    diffs = config_differences(saved, current)
    if diffs:
        raise AvddError(
            f"{path}: cannot resume with a different configuration ({'; '.join(diffs)}); "
            "rerun with the original settings or without --resume"
        )


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends, then raise it: a step is never left half done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
