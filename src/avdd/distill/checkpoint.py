"""Atomic checkpoints for long runs, and refusing to resume under a different configuration.

A checkpoint holds only tensors, numbers, strings, None and lists, tuples and dicts of them, and is
loaded with ``torch.load(weights_only=True)``: a file planted where a checkpoint goes cannot run
code, it is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import signal
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avdd.data.store import Store, array_file, labels_file
from avdd.errors import AvddError, first_line
from avdd.files import load_untrusted, write_atomic
from avdd.formats import META_FILE

PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def plain(value: Any) -> Any:
    """``value`` made of what a weights-only load reads back: numpy values become Python numbers or
    tensors, paths strings, dataclasses dicts; anything else is a TypeError (a bug, not a user's)."""
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(plain(v) for v in value)
    if isinstance(value, tuple):  # a named tuple or torch.Size: its values
        return tuple(plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    raise TypeError(f"a checkpoint holds tensors, numbers, strings, lists and dicts, not {type(value).__name__}")


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename: never a half-written checkpoint."""
    state = plain(dict(state))
    write_atomic(path, lambda f: torch.save(state, f))  # a full disk: the previous checkpoint stays


def load_checkpoint(path: Path, *, mmap: bool = False, remedy: str = "delete it to start over") -> dict[str, Any]:
    """The state saved at ``path``, loaded without running any code it might hold; one AvddError
    line (ending in ``remedy``) for anything that is not a checkpoint: truncated, garbage, foreign."""
    try:
        state = load_untrusted(path, mmap=mmap)
    except pickle.UnpicklingError:
        raise AvddError(f"{path}: not an avdd checkpoint (it holds objects other than tensors and plain values, "
                        f"which could run code, so it was not loaded); {remedy}") from None
    except Exception as err:  # whatever a damaged file makes the unpickler raise
        raise AvddError(f"{path}: unreadable checkpoint ({first_line(err)}); {remedy}") from None
    if not isinstance(state, dict):
        raise AvddError(f"{path}: not an avdd checkpoint (it holds a {type(state).__name__}); {remedy}")
    return state


def store_fingerprint(store: Store) -> str:
    """What identifies a store's data cheaply enough to check at every resume: its ``meta.json``
    (classes, shapes, normalisation statistics computed from the data, provenance), every split's
    labels (the samples' order and classes) and the size of every array file. Not the path (a
    moved or copied store still resumes) nor modification times; not the arrays' bytes (gigabytes)."""
    digest = hashlib.sha256((store.path / META_FILE).read_bytes())
    for split in store.split_sizes:
        digest.update(np.ascontiguousarray(store.split(split).labels).tobytes())
        for name in [labels_file(split)] + [array_file(split, m) for m in store.modalities]:
            digest.update(f"{name}:{(store.path / name).stat().st_size};".encode())
    return digest.hexdigest()


def store_cache_path(store: Store, name: str, key: Mapping[str, Any]) -> Path:
    """Where what was computed from ``store`` under settings ``key`` is cached: ``cache/NAME-HASH``
    in the store, the hash covering the store's fingerprint too, so a cache copied along with files
    of another store is not used for it."""
    text = json.dumps({**key, "data": store_fingerprint(store)}, sort_keys=True, default=str)
    return store.path / "cache" / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


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


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and a scheduler or `kill` stopping the job


class Interrupted(KeyboardInterrupt):
    """An interruption on the way out of which the checkpoint ``kept`` was saved."""

    def __init__(self, kept: Path) -> None:
        super().__init__(str(kept))
        self.kept = kept


@contextlib.contextmanager
def _handlers(signals: tuple[int, ...], handler: Any) -> Iterator[None]:
    """``handler`` for ``signals`` during the block (in the main thread; elsewhere none can be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C or SIGTERM until the block ends, then raise KeyboardInterrupt: a step is never
    left half done."""
    caught: list[int] = []
    with _handlers(INTERRUPTS, lambda signum, frame: caught.append(signum)):
        yield
    if caught:
        raise KeyboardInterrupt


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt during the block, as Ctrl-C does: a job that is killed saves
    its checkpoint on the way out instead of dying with the work since the last one."""
    with _handlers((signal.SIGTERM,), _interrupt):
        yield
