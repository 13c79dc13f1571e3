"""vggsound: the full VGGSound list (``youtube_id,start_seconds,label,split``, 309 classes).

Each row is a 10-second clip cut from a YouTube video at ``start_seconds``; as in the paper, the
sample is second 4-5 of the clip. Videos are found under ``--root`` by name, ``{id}_{start:06d}``
(the usual name of downloaded clips) or ``{id}``, with any common video extension.
"""

from __future__ import annotations

from pathlib import Path

from avdd.data.prepare import Clip, ClipList
from avdd.data.sources.common import ROOT_OPTION, VideoIndex, parse_second, read_table, register_video_source
from avdd.data.sources.registry import Option
from avdd.data.store import check_name

SAMPLE_SECOND = 4
COLUMNS = ("youtube_id", "start_seconds", "label", "split")


def vggsound_clip(index: VideoIndex, video_id: str, start: int, label: str, split: str) -> Clip:
    """The clip of one VGGSound row: its video file and second 4."""
    return Clip(index.find(f"{video_id}_{start:06d}", video_id), label, split, (SAMPLE_SECOND,))


def list_vggsound(root: Path, csv: Path) -> ClipList:
    index = VideoIndex(root)
    clips = [
        vggsound_clip(index, row["youtube_id"], parse_second(row["start_seconds"], f"{csv}:{line}"),
                      row["label"], check_name(row["split"], "split", f"{csv}:{line}"))
        for line, row in read_table(csv, COLUMNS, headerless=True)  # the official file has no header
    ]
    return ClipList(clips, sorted({c.label for c in clips}))


register_video_source(
    "vggsound",
    "full VGGSound (309 classes) from its CSV and a folder of downloaded clips; second 4-5 of each",
    list_vggsound,
    (ROOT_OPTION, Option("csv", Path, None, "vggsound.csv (youtube_id,start_seconds,label,split)", required=True)),
)
