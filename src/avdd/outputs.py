"""Where avdd writes, and what it may replace: the one policy every verb's outputs go through.

- A store output (``data build``, ``prepare``, ``distill``) must not exist; with ``--overwrite`` it
  may be an avdd store or a folder avdd made, and is replaced only once the new one is complete
  (the old one moved aside, the new one renamed in, then the old one deleted).
- A folder output (``run``, ``demo``, ``experts``, ``report``, ``listen``) is new, empty, or a folder
  the same verb made (its marker file says so): avdd adds to it and never deletes it.
- A file output (``--json``) is a new file or one holding JSON, never a folder.
- No output is the current folder or one above it, and none is or contains an input.
- While a process writes an output it holds an exclusive lock, the file ``.NAME.lock`` beside it
  (released when the process ends, however it ends): a second process fails at once, naming it.
- Where an output goes is checked writable before any work is done.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from avdd.errors import AvddError
from avdd.files import rename_new, swap_in, write_error, write_text_atomic
from avdd.formats import EXPERTS_FORMAT, EXPERTS_MANIFEST, META_FILE, STORE_FORMAT

STORE, JSON_FILE = "store", "json"
FOLDER_KINDS = ("run", "experts", "report", "listen")  # folders a verb adds to, named after the verb
MARKER = ".avdd-output.json"  # in a folder avdd made: {"format": MARKER_FORMAT, "kind": KIND}
MARKER_FORMAT = "avdd-output"
UNCHANGED = "nothing was changed"

PathLike = str | os.PathLike[str]


# -- what is at a path -----------------------------------------------------------------------------
def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _has_format(path: Path, fmt: str) -> bool:
    data = _json_object(path)
    return data is not None and data.get("format") == fmt


def made_by(path: Path) -> str | None:
    """What avdd made at ``path``: ``"store"``, one of FOLDER_KINDS, or None (not avdd's, or nothing)."""
    if not path.is_dir():
        return None
    marker = _json_object(path / MARKER)
    if marker is not None and marker.get("format") == MARKER_FORMAT and marker.get("kind") in FOLDER_KINDS:
        return str(marker["kind"])
    if _has_format(path / META_FILE, STORE_FORMAT):
        return STORE
    if _has_format(path / EXPERTS_MANIFEST, EXPERTS_FORMAT):
        return "experts"
    return _made_before_markers(path)


OLD_CLIP = re.compile(r"[0-9]{3,}-[A-Za-z0-9_]+-[0-9]+\.wav")  # avdd listen's names (report/sonify.py)


def _made_before_markers(path: Path) -> str | None:
    """Folders avdd made before it marked them, recognised by what only avdd puts there (a user's
    folder that merely holds a report.html or some WAV files is not taken for one)."""
    results = _json_object(path / "results.json") or {}
    if (path / "config.yaml").is_file() and ({"title", "experiment", "cells"} <= set(results)
                                             or (path / "cells").is_dir() or (path / "sets").is_dir()):
        return "run"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if "<title>avdd report: " in (path / "report.html").read_text()[:2000]:
            return "report"
    entries = list(path.iterdir())
    if entries and all(p.is_file() and OLD_CLIP.fullmatch(p.name) for p in entries):
        return "listen"
    return None


def _is_empty_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()  # a dangling link is still something there


def replaceable(path: Path) -> bool:
    """Whether ``--overwrite`` may replace ``path``: an avdd store, a folder avdd made, or an empty folder."""
    return _is_empty_folder(path) or made_by(path) is not None


# -- the checks ------------------------------------------------------------------------------------
def check_place(out: Path, inputs: Iterable[PathLike | None] = (), flag: str = "--out", file: bool = False) -> None:
    """Refuse the current folder or one above it, and an output that is or contains an input
    (a ``file`` output: one inside an input too, which could be that input's own file)."""
    where = out.resolve()
    cwd = Path.cwd().resolve()
    if where == cwd or where in cwd.parents:
        raise AvddError(f"{out}: is the current folder or one above it; {flag} must name a new path ({UNCHANGED})")
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if where == source or where in source.parents:
            raise AvddError(f"{out}: is or contains the input {given}; choose another {flag} ({UNCHANGED})")
        if file and source in where.parents:
            raise AvddError(f"{out}: is inside the input {given}; choose a {flag} outside it ({UNCHANGED})")


def check_store_output(out: Path, overwrite: bool, flag: str = "--out") -> None:
    """A store may be written at ``out``: nothing is there, or ``overwrite`` and it may be replaced."""
    check_place(out, (), flag)
    if not _exists(out):
        return
    if not overwrite:
        raise AvddError(f"{out}: already exists; choose another {flag} or pass --overwrite")
    if not replaceable(out):
        what = "a file" if not out.is_dir() else "a folder avdd did not make"
        raise AvddError(f"{out}: is {what}; --overwrite replaces only an avdd store or a folder avdd made "
                        f"({UNCHANGED})")


def _check_folder(kind: str, flag: str) -> Callable[[Path, bool], None]:
    def check(out: Path, overwrite: bool) -> None:
        if not _exists(out):
            return
        if not out.is_dir():
            raise AvddError(f"{out}: is a file; {flag} names a folder ({UNCHANGED})")
        if any(out.iterdir()) and made_by(out) != kind:
            raise AvddError(f"{out}: holds files `avdd {kind}` did not write; choose another {flag} ({UNCHANGED})")
    return check


def _check_json_file(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        raise AvddError(f"{out}: is a folder; --json names a file ({UNCHANGED})")
    if _exists(out) and (not out.is_file() or _json_object(out) is None):
        raise AvddError(f"{out}: exists and is not an earlier JSON result; choose another --json ({UNCHANGED})")


def _checks(kind: str, flag: str) -> Callable[[Path, bool], None]:
    if kind == STORE:
        return lambda out, overwrite: check_store_output(out, overwrite, flag)
    if kind == JSON_FILE:
        return _check_json_file
    if kind in FOLDER_KINDS:
        return _check_folder(kind, flag)
    raise ValueError(f"unknown output kind {kind!r}")


# -- writability and the lock -----------------------------------------------------------------------
def _cannot_write(out: Path, where: Path, err: OSError) -> AvddError:
    return AvddError(f"{out}: cannot write in {where} ({err.strerror or err}); choose another place ({UNCHANGED})")


def _make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _cannot_write(out, out.parent, err) from None


def _probe(out: Path, folder: Path) -> None:
    """Create and remove a file in ``folder``: a read-only or full file system shows now, not after the work."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise _cannot_write(out, folder, err) from None


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"pid {text}" if text.isdigit() else "pid unknown"


def _acquire(out: Path, flag: str) -> int:
    path = lock_path(out)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _cannot_write(out, path.parent, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise AvddError(f"{out}: in use by another avdd process ({holder}); wait for it to end or choose "
                            f"another {flag}") from None
        # the previous holder deletes the file as it lets go: hold the lock of the file that is there now
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def output_lock(out: Path, flag: str = "--out") -> Iterator[None]:
    """Hold the exclusive lock of ``out`` (a lock file beside it) for the block; fail at once if taken."""
    fd = _acquire(out, flag)
    try:
        yield
    finally:
        lock_path(out).unlink(missing_ok=True)  # still holding it, so no one else has it now
        os.close(fd)


def _mark(out: Path, kind: str) -> None:
    """Create the folder (if new), check it is writable, and mark it as this verb's."""
    try:
        out.mkdir(exist_ok=True)
    except OSError as err:
        raise _cannot_write(out, out, err) from None
    _probe(out, out)
    if kind != "experts" and made_by(out) != kind:  # an expert folder's manifest is its marker
        write_text_atomic(out / MARKER, json.dumps({"format": MARKER_FORMAT, "kind": kind}) + "\n")


@contextlib.contextmanager
def claim_output(out: PathLike, *, kind: str, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                 flag: str = "--out") -> Iterator[Path]:
    """Check that ``out`` may be written as ``kind`` (STORE, JSON_FILE or one of FOLDER_KINDS) and
    hold its lock for the block. ``inputs``: paths the verb reads, which ``out`` must not be or hold."""
    out = Path(out)
    check = _checks(kind, flag)
    inputs = list(inputs)
    check_place(out, inputs, flag, file=kind == JSON_FILE)
    _make_parent(out)
    with output_lock(out, flag):
        check(out, overwrite)  # under the lock: what is there cannot change any more by another avdd
        if kind in FOLDER_KINDS:
            _mark(out, kind)
        yield out


def commit_folder(tmp: Path, out: Path, overwrite: bool, *, aside_prefix: str | None = None,
                  flag: str = "--out") -> None:
    """Rename the finished folder ``tmp`` to ``out``. Without ``overwrite`` nothing is ever replaced:
    if something appeared at ``out`` meanwhile this fails and leaves it as it is. With ``overwrite``,
    what is there now must still be replaceable, and is deleted only once ``tmp`` is in its place
    (meanwhile it waits beside it under a name starting with ``aside_prefix``)."""
    try:
        if overwrite and _exists(out):
            check_store_output(out, overwrite, flag)
            swap_in(tmp, out, aside_prefix)
        else:
            rename_new(tmp, out)
    except FileExistsError:
        more = "" if overwrite else " or pass --overwrite"
        raise AvddError(f"{out}: appeared while the output was being written and was left as it is; "
                        f"choose another {flag}{more}") from None
    except OSError as err:
        raise write_error(out, err) from None


def claim_if(condition: bool, out: PathLike | None, **how: Any) -> contextlib.AbstractContextManager[Path | None]:
    """``claim_output(out, **how)`` when ``condition`` holds and there is an ``out`` (an optional
    ``--json``, the main process of a job); otherwise nothing is claimed."""
    return claim_output(out, **how) if condition and out is not None else contextlib.nullcontext()
