"""A folder of per-iteration real class means, shared by every DM/AVDD run that would compute them.

The real side of a DM/AVDD iteration (each class's real batch through fresh random encoders)
depends only on what :meth:`MatchingRun.real_key` lists (data, seed, modality, encoder, augmentation,
real batch size, numerics) and on the iteration and class, not on the synthetic set, the IPC, the
init, the factor or the loss weights: a grid computes the same means in every cell. Here each
(key, class, iteration) mean is one small file, float32 so that a cached mean is the recomputed
one bit for bit::

    DIR/KEY16/key.json            the key's settings, for people
    DIR/KEY16/cC-iI.npz           the mean ("mean", float32 (d,)) and the full key ("key")

Files are written atomically (a temporary file and a rename), so concurrent writers (torchrun's
processes, parallel runs) never leave a torn file; a file that is unreadable or holds another key
is ignored with one warning and recomputed. The folder is kept within ``max_bytes`` by evicting
the least recently used means (a read marks a file used): all classes of an iteration are used
together, so these are the least recently used iterations. Each process counts the files it saw
when it opened the cache and those it wrote since; only files of this naming are ever deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avdd.files import write_atomic, write_text_atomic

KEY_DIR = re.compile(r"[0-9a-f]{16}")
ENTRY = re.compile(r"c(\d+)-i(\d+)\.npz")
KEY_FILE = "key.json"


def cache_key(settings: Mapping[str, Any]) -> str:
    """The full hex key of a real side's settings (JSON-able; key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


class RealMeanCache:
    """Per-iteration real class means in folder ``root``, at most ``max_bytes`` of them."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root, self.max_bytes = Path(root), max_bytes
        self.sizes: OrderedDict[Path, int] = OrderedDict()  # least recently used first
        self.total = 0
        self.warned = False
        self.keys_written: set[str] = set()
        found = []
        with contextlib.suppress(FileNotFoundError):
            for folder in self.root.iterdir():
                if KEY_DIR.fullmatch(folder.name) and folder.is_dir() and not folder.is_symlink():  # evict only our own
                    for entry in os.scandir(folder):
                        if ENTRY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                            stat = entry.stat(follow_symlinks=False)
                            found.append((stat.st_mtime_ns, Path(entry.path), stat.st_size))
        for _, path, size in sorted(found):
            self._used(path, size)

    def _path(self, key: str, c: int, iteration: int) -> Path:
        return self.root / key[:16] / f"c{c}-i{iteration}.npz"

    def _used(self, path: Path, size: int) -> None:
        self.total += size - self.sizes.pop(path, 0)
        self.sizes[path] = size

    def _warn(self, path: Path, why: str) -> None:
        if not self.warned:  # one line per run, not one per file of a damaged folder
            warnings.warn(f"{path}: {why}; the real-mean cache ignores it (and any other such file) and "
                          "recomputes", stacklevel=2)
            self.warned = True

    def get(self, key: str, c: int, iteration: int) -> torch.Tensor | None:
        """Class ``c``'s real mean at ``iteration`` under ``key``, or None where it is not cached."""
        path = self._path(key, c, iteration)
        try:
            # our own handle: np.load leaves the file open when it is not a zip
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as saved:
                found, mean = str(saved["key"]), saved["mean"]
        except FileNotFoundError:  # never written, or evicted (here or by another process)
            self.sizes.pop(path, None)
            return None
        except Exception as err:  # whatever a truncated, garbage or foreign file makes the loader raise
            self._warn(path, f"unreadable ({type(err).__name__})")
            return None
        if found != key or mean.dtype != np.float32 or mean.ndim != 1:
            self._warn(path, "holds another run's mean (its key or shape differs)")
            return None
        with contextlib.suppress(OSError):  # a read marks it used; gone meanwhile: still a good read
            os.utime(path)
            self._used(path, path.stat().st_size)
        return torch.from_numpy(mean)

    def put(self, key: str, settings: Mapping[str, Any], c: int, iteration: int, mean: torch.Tensor) -> None:
        """Store class ``c``'s real mean at ``iteration`` under ``key`` (``settings`` describes it),
        then evict the least recently used means beyond the bound."""
        path = self._path(key, c, iteration)
        if key not in self.keys_written:
            write_text_atomic(path.parent / KEY_FILE, json.dumps(settings, indent=1, sort_keys=True, default=str))
            self.keys_written.add(key)
        values = mean.detach().to("cpu", torch.float32).numpy()
        write_atomic(path, lambda f: np.savez(f, mean=values, key=np.array(key)))
        with contextlib.suppress(FileNotFoundError):  # another process evicted it already: only a lost mean
            self._used(path, path.stat().st_size)
        while self.total > self.max_bytes and self.sizes:
            old, size = self.sizes.popitem(last=False)
            self.total -= size
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
