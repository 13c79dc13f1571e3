"""ave: the AVE dataset folder (Tian et al., ECCV 2018), 28 event classes.

``--root`` is the unpacked ``AVE_Dataset`` folder: ``Annotations.txt`` (all videos),
``trainSet.txt`` and ``testSet.txt``, all ``Category&VideoID&Quality&StartTime&EndTime``, and
the videos as ``AVE/{VideoID}.mp4``. Every second inside a video's annotated event,
[StartTime, EndTime), is one sample labelled with the event category. ``valSet.txt`` is not used,
as in the paper.
"""

from __future__ import annotations

from pathlib import Path

from avdd.data.prepare import Clip, ClipList
from avdd.data.sources.common import ROOT_OPTION, register_video_source
from avdd.errors import AvddError

SPLIT_FILES = {"train": "trainSet.txt", "test": "testSet.txt"}
FIELDS = ("Category", "VideoID", "Quality", "StartTime", "EndTime")


def read_annotations(path: Path) -> list[tuple[str, str, int, int]]:
    """(category, video id, start, end) per line; the header line, if present, is skipped."""
    if not path.is_file():
        raise AvddError(f"{path}: no such file; --root must be the AVE_Dataset folder")
    events = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = [f.strip() for f in line.split("&")]
        if not line.strip() or fields[0] == FIELDS[0]:
            continue
        if len(fields) != len(FIELDS):
            raise AvddError(f"{path}:{line_no}: expected {'&'.join(FIELDS)}, got {line!r}")
        try:
            start, end = int(fields[3]), int(fields[4])
        except ValueError:
            raise AvddError(f"{path}:{line_no}: StartTime and EndTime must be whole seconds") from None
        if not 0 <= start < end:
            raise AvddError(f"{path}:{line_no}: event [{start}, {end}) is empty or negative")
        events.append((fields[0], fields[1], start, end))
    return events


def list_ave(root: Path) -> ClipList:
    classes = sorted({category for category, *_ in read_annotations(root / "Annotations.txt")})
    clips = []
    for split, file in SPLIT_FILES.items():
        for category, video_id, start, end in read_annotations(root / file):
            if category not in classes:
                raise AvddError(f"{root / file}: category {category!r} is not in Annotations.txt")
            clips.append(Clip(root / "AVE" / f"{video_id}.mp4", category, split, tuple(range(start, end))))
    return ClipList(clips, classes)


register_video_source(
    "ave",
    "AVE (28 event classes): every second inside each video's annotated event",
    list_ave,
    (ROOT_OPTION,),
)
