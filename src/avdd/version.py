"""avdd's version, and the code version recorded in every provenance."""

from __future__ import annotations

import functools
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("avdd")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"


@functools.cache
def code_version() -> str:
    """avdd's version, plus the git commit when running from a checkout: the commit when this module
    was first imported (below), i.e. the code the process loaded, even if the checkout moves on
    during a long run."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}"


code_version()  # now, while it is the code this process runs
