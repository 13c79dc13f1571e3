"""folder: a user's own videos, one sub-folder per class (``ROOT/{class}/**/*.mp4``).

Every whole second of every video is a sample; videos are split into train and test per class,
seeded (all seconds of a video land in the same split).
"""

from __future__ import annotations

from pathlib import Path

from avdd.data.prepare import Clip, ClipList
from avdd.data.sources.common import (
    ROOT_OPTION,
    SPLIT_OPTIONS,
    VIDEO_EXTENSIONS,
    register_video_source,
    stratified_split,
)
from avdd.errors import AvddError


def list_folder(root: Path, test_fraction: float = 0.2, split_seed: int = 0) -> ClipList:
    if not root.is_dir():
        raise AvddError(f"{root}: no such folder; pass --root a folder with one sub-folder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    videos = [(path, label) for label in classes
              for path in sorted((root / label).rglob("*")) if path.suffix.lower() in VIDEO_EXTENSIONS]
    if not videos:
        raise AvddError(f"{root}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in class sub-folders")
    splits = stratified_split([label for _, label in videos], test_fraction, split_seed)
    clips = [Clip(path, label, split) for (path, label), split in zip(videos, splits, strict=True)]
    return ClipList(clips, sorted({label for _, label in videos}))


register_video_source(
    "folder",
    "your own videos, one sub-folder per class",
    list_folder,
    (ROOT_OPTION, *SPLIT_OPTIONS),
)
