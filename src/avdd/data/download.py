"""Fetching public files into a local cache, atomically and checked against a digest."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from avdd.errors import AvddError
from avdd.files import temp_file


def cache_dir() -> Path:
    """``$AVDD_CACHE``, else ``$XDG_CACHE_HOME/avdd``, else ``~/.cache/avdd``."""
    if os.environ.get("AVDD_CACHE"):
        return Path(os.environ["AVDD_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "avdd"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (via a temporary file), verifying ``sha256`` when given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = temp_file(dest.parent, f".{dest.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        if sha256 is not None and (got := sha256_file(tmp)) != sha256:
            raise AvddError(f"{url}: checksum mismatch (expected {sha256}, got {got}); not using it")
        os.replace(tmp, dest)
    except OSError as err:  # URLError is an OSError
        raise AvddError(f"could not download {url}: {err}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest
