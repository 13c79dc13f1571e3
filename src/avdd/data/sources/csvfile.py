"""csv: a user's own videos listed in a CSV with columns ``path,label[,split][,second]``.

Paths are relative to the CSV's folder (or ``--root``). A row with a ``second`` makes that
second of the video a sample; without the column every whole second of the video is one. Rows
naming the same video are merged (a video has one label and one split). Without a ``split``
column, videos are split into train and test per label, seeded.
"""

from __future__ import annotations

from pathlib import Path

from avdd.data.prepare import Clip, ClipList
from avdd.data.sources.common import (
    SPLIT_OPTIONS,
    parse_second,
    read_table,
    register_video_source,
    stratified_split,
)
from avdd.data.sources.registry import Option
from avdd.data.store import check_name
from avdd.errors import AvddError


def list_csv(csv: Path, root: Path | None = None, test_fraction: float = 0.2, split_seed: int = 0) -> ClipList:
    rows = read_table(csv, ("path", "label"), optional=("split", "second"))
    base = root if root is not None else csv.parent
    videos: dict[Path, dict] = {}  # insertion-ordered: clips follow the CSV
    for line, row in rows:
        where = f"{csv}:{line}"
        if not row["path"] or not row["label"]:
            raise AvddError(f"{where}: path and label must not be empty")
        if "split" in row:
            if not row["split"]:
                raise AvddError(f"{where}: empty split; give every row a split or drop the column")
            check_name(row["split"], "split", where)  # a split names files: "../x" would write outside --out
        path = base / row["path"]
        video = videos.setdefault(path, {"label": row["label"], "split": row.get("split"), "seconds": set()})
        if (video["label"], video["split"]) != (row["label"], row.get("split")):
            raise AvddError(f"{where}: {row['path']} appears with another label or split earlier in the file")
        if "second" in row:
            video["seconds"].add(parse_second(row["second"], where))
    labels = [v["label"] for v in videos.values()]
    if rows and "split" not in rows[0][1]:
        for video, split in zip(videos.values(), stratified_split(labels, test_fraction, split_seed), strict=True):
            video["split"] = split
    clips = [Clip(path, v["label"], v["split"], tuple(sorted(v["seconds"])) if v["seconds"] else "all")
             for path, v in videos.items()]
    return ClipList(clips, sorted(set(labels)))


register_video_source(
    "csv",
    "your own videos listed in a CSV: path,label[,split][,second]",
    list_csv,
    (
        Option("csv", Path, None, "the CSV file", required=True),
        Option("root", Path, None, "folder the CSV's paths are relative to (default: the CSV's folder)"),
        *SPLIT_OPTIONS,
    ),
)
