"""Helpers the video sources share: metadata tables, finding videos by id, splits, registration."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avdd.data.download import cache_dir, download, sha256_file
from avdd.data.prepare import ClipList, prepare_clips
from avdd.data.sources.registry import PREPARE_SOURCES, DatasetSource, Option
from avdd.data.store import Store
from avdd.errors import AvddError
from avdd.ranges import check_settings

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")

VIDEO_OPTIONS = (
    Option("image_size", int, 224, "frame height and width in pixels"),
    Option("workers", int, os.cpu_count() or 1, "decoding processes"),
    Option("allow_silent_audio", bool, False,
           "keep samples whose audio is missing or all zeros, as silence (listed in silent.csv)"),
)
ROOT_OPTION = Option("root", Path, None, "folder holding the videos", required=True)


def read_table(path: Path, columns: Sequence[str], optional: Sequence[str] = (),
               headerless: bool = False) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV as (line number, {column: stripped value}).

    With a header, ``columns`` must all be present and ``optional`` may be. With ``headerless``,
    a first row that is not exactly ``columns`` is data, read positionally.
    """
    if not path.is_file():
        raise AvddError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f)]
    if not rows:
        raise AvddError(f"{path}: empty file; expected columns {','.join(columns)}")
    header = [h.strip() for h in rows[0]]
    if headerless and header != list(columns):
        header, start = list(columns), 0
    else:
        start = 1
        missing = [c for c in columns if c not in header]
        if missing:
            raise AvddError(f"{path}: missing column(s) {', '.join(missing)}; "
                            f"expected a header with {','.join([*columns, *optional])}")
    keep = [*columns, *(c for c in optional if c in header)]
    out = []
    for line, row in enumerate(rows[start:], start=start + 1):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise AvddError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
        values = dict(zip(header, (cell.strip() for cell in row), strict=False))
        out.append((line, {c: values[c] for c in keep}))
    return out


def parse_second(value: str, where: str) -> int:
    try:
        second = int(value)
    except ValueError:
        second = -1
    if second < 0:
        raise AvddError(f"{where}: second must be a whole number >= 0, got {value!r}")
    return second


class VideoIndex:
    """Video files under a root folder (recursively), found by file name without extension."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise AvddError(f"{root}: no such folder; pass --root the folder holding the videos")
        self.root = root
        self._by_stem: dict[str, Path] = {}
        for folder, dirs, files in os.walk(root):
            dirs.sort()  # deterministic choice when a name occurs twice
            for file in sorted(files):
                path = Path(folder) / file
                if path.suffix.lower() in VIDEO_EXTENSIONS:
                    self._by_stem.setdefault(path.stem, path)

    def find(self, *stems: str) -> Path:
        """The first of ``stems`` present; else the path the first would have (reported missing)."""
        for stem in stems:
            if stem in self._by_stem:
                return self._by_stem[stem]
        return self.root / f"{stems[0]}.mp4"


def stratified_split(labels: Sequence[str], test_fraction: float, seed: int) -> list[str]:
    """A seeded train/test split with each label's share of test as close to ``test_fraction`` as
    possible (at least one train and, with two or more items, one test item per label)."""
    check_settings("split", {"test_fraction": test_fraction, "split_seed": seed})
    rng = np.random.default_rng(seed)
    splits = ["train"] * len(labels)
    for label in sorted(set(labels)):
        members = [i for i, x in enumerate(labels) if x == label]
        n_test = min(max(round(len(members) * test_fraction), 1), len(members) - 1)
        for i in rng.permutation(members)[:n_test]:
            splits[int(i)] = "test"
    return splits


SPLIT_OPTIONS = (
    Option("test_fraction", float, 0.2, "share of each class's files put in test when no split is given"),
    Option("split_seed", int, 0, "seed of that split"),
)


def pinned_file(name: str, url: str, sha256: str) -> Path:
    """A public metadata file from the cache, downloaded and checked against ``sha256`` if absent."""
    path = cache_dir() / "meta" / name
    if path.is_file() and sha256_file(path) == sha256:
        return path
    return download(url, path, sha256=sha256)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: str(Path(v).resolve()) if isinstance(v, Path) else v for k, v in options.items()}


def register_video_source(name: str, summary: str, list_clips: Callable[..., ClipList],
                          options: tuple[Option, ...]) -> None:
    """Register ``list_clips(**options) -> ClipList`` as an ``avdd prepare`` source."""

    def build(out: str | Path, *, overwrite: bool = False, progress: bool = True, image_size: int = 224,
              workers: int = 1, allow_silent_audio: bool = False, **source_options: Any) -> Store:
        clips = list_clips(**source_options)
        provenance = {"source": name, "options": _jsonable(source_options), **clips.provenance}
        return prepare_clips(clips, out, name=name, image_size=image_size, workers=workers,
                             allow_silent_audio=allow_silent_audio, overwrite=overwrite, progress=progress,
                             provenance=provenance)

    PREPARE_SOURCES.add(name, DatasetSource(name, summary, build, options + VIDEO_OPTIONS))
