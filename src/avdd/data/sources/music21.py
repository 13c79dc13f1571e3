"""music21: MUSIC-21 (21 instruments) from the authors' ``music_21.csv`` (``vid,split,label``).

Videos are found under ``--root`` (recursively) by id, any common extension. MUSIC videos run for
minutes, and the authors' code does not say which seconds the paper used (their file names say
"center"); by default the sample is each video's middle second, ``--seconds all`` takes every
whole second. Without ``--csv`` the list is downloaded from the authors' repository at a pinned
commit and checked against its sha256.
"""

from __future__ import annotations

from pathlib import Path

from avdd.data.prepare import Clip, ClipList
from avdd.data.sources.common import ROOT_OPTION, VideoIndex, pinned_file, read_table, register_video_source
from avdd.data.sources.registry import Option
from avdd.data.sources.vggs10k import AVDD_COMMIT
from avdd.data.store import check_name
from avdd.data.video import Seconds

CSV_URL = f"https://raw.githubusercontent.com/sakshamsingh1/AVDD/{AVDD_COMMIT}/preprocess/meta_data/music_21.csv"
CSV_SHA256 = "674070dc3c36333c63c82cc6bc3f31c1f3e0e7d158509aca8355083d0153e2a9"


def list_music21(root: Path, csv: Path | None = None, seconds: Seconds = "center") -> ClipList:
    csv = csv or pinned_file("music_21.csv", CSV_URL, CSV_SHA256)
    index = VideoIndex(root)
    clips = [Clip(index.find(r["vid"]), r["label"], check_name(r["split"], "split", f"{csv}:{line}"), seconds)
             for line, r in read_table(csv, ("vid", "split", "label"))]
    return ClipList(clips, sorted({c.label for c in clips}), {"csv": str(Path(csv).resolve())})


register_video_source(
    "music21",
    "MUSIC-21 (21 instruments) from its list and a folder of videos (its list is downloaded unless --csv)",
    list_music21,
    (
        ROOT_OPTION,
        Option("csv", Path, None, "music_21.csv (default: download the pinned copy)"),
        Option("seconds", str, "center", "which seconds of each video are samples", ("center", "all")),
    ),
)
