"""Fetching public files into a local cache, atomically and checked against a digest."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from typing import BinaryIO

from avdd.errors import AvddError
from avdd.files import write_atomic

BLOCK = 1 << 20  # bytes read at a time


def cache_dir() -> Path:
    """``$AVDD_CACHE``, else ``$XDG_CACHE_HOME/avdd``, else ``~/.cache/avdd``."""
    if os.environ.get("AVDD_CACHE"):
        return Path(os.environ["AVDD_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "avdd"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``sha256`` when given: a file that does not
    match is never renamed into place."""

    def fetch(out: BinaryIO) -> None:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(BLOCK), b""):
                    digest.update(block)
                    out.write(block)
        except OSError as err:  # URLError is an OSError
            raise AvddError(f"could not download {url}: {err}") from None
        if sha256 is not None and (got := digest.hexdigest()) != sha256:
            raise AvddError(f"{url}: checksum mismatch (expected {sha256}, got {got}); not using it")

    write_atomic(dest, fetch)
    return dest
