"""Shared fixtures. Tests that need the shared real data read it from $AVDD_DATA and fail without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avdd.data.store import Store


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("AVDD_DATA")
    if not root or not (Path(root) / "fsdd" / "recordings").is_dir():
        pytest.fail("set AVDD_DATA to the shared data folder (holding fsdd/recordings and video/)")
    return Path(root)


@pytest.fixture(scope="session")
def avdigits(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The real avdigits store, built once per test session (a few seconds)."""
    from avdd.data.sources.avdigits import build_avdigits

    return build_avdigits(tmp_path_factory.mktemp("avdigits") / "store", progress=False, data_root=str(data_root))
