"""Writing files so that a reader never sees half of one, renaming folders into place without
ever deleting what someone else put there, and reading torch files that may not be ours."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from avdd.errors import AvddError


def write_error(path: Path, err: OSError) -> AvddError:
    """One line naming ``path`` and why it could not be written (a full disk, a read-only folder…)."""
    return AvddError(f"{path}: cannot write ({err.strerror or err})")


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def temp_file(folder: Path, prefix: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``folder``, with the permissions of a file ``open`` would create: mkstemp
    makes it 0600, so results and stores renamed from it would be unreadable to the user's group."""
    fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, name


def temp_dir(folder: Path, prefix: str) -> Path:
    """``tempfile.mkdtemp`` in ``folder``, with the permissions of ``mkdir`` (see :func:`temp_file`)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    path.chmod(0o777 & ~_umask())
    return path


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` by ``write(file)`` into a temporary file in the same folder, then a rename: a
    reader never sees half of it, and if writing fails (a full disk: one AvddError naming ``path``)
    the previous file stays as it was."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(path.parent, f".{path.name}.")
    except OSError as err:
        raise write_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda f: f.write(text.encode()))


def rename_new(src: Path, dst: Path) -> None:
    """Rename the folder ``src`` to ``dst``, which must not exist; FileExistsError if it does.

    A plain rename would silently replace an empty folder that appeared at ``dst``, so ``dst`` is
    first created empty by us (failing if anything is there) and the rename replaces only that.
    Anything put into it meanwhile makes the rename fail instead (the folder is not empty)."""
    os.mkdir(dst)
    try:
        os.rename(src, dst)
    except OSError:
        appeared = FileExistsError(f"{dst} appeared while it was being written")
        try:
            os.rmdir(dst)  # only our own empty folder: rmdir refuses anything else
        except OSError:
            raise appeared from None
        raise


def swap_in(src: Path, dst: Path, aside_prefix: str | None = None) -> None:
    """Replace ``dst`` by the folder ``src``: move the old one aside (to a fresh hidden name beside it
    starting with ``aside_prefix``), rename the new one in, then delete the old one. If the new one
    cannot go in, the old one is put back."""
    old = Path(tempfile.mkdtemp(prefix=aside_prefix or f".{dst.name}.old-", dir=dst.parent))
    os.rmdir(old)  # only its fresh name is wanted: dst may be a link, which cannot replace a folder
    os.rename(dst, old)
    try:
        rename_new(src, dst)
    except BaseException:
        os.rename(old, dst)
        raise
    remove(old)


def remove(path: Path) -> None:
    """Delete a folder, file or link (a link, not what it points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_json(path: Path, data: object, indent: int = 2) -> None:
    """``data`` as indented JSON at ``path``, atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def load_untrusted(path: Path, *, mmap: bool = False) -> Any:
    """``torch.load`` of a file that may be damaged or planted: tensors and plain values only (no code
    runs), on the CPU. Torch's warnings about the bytes it reads (e.g. a "pickle protocol 247" in
    garbage) are silenced: the caller judges the file by what this returns or raises, in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
