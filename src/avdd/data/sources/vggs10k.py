"""vggs10k: the paper's 10-class VGGSound subset, defined by the authors' ``vgg_subset.csv``.

Columns ``vid,num,label,split,label_id``: one 10-second VGGSound clip per row (``num`` is its
start in the YouTube video), label ids taken from the file. The sample is second 4-5, as in the
paper. Without ``--csv`` the file is downloaded once from the authors' repository at a pinned
commit and checked against its sha256.
"""

from __future__ import annotations

from pathlib import Path

from avdd.data.prepare import ClipList
from avdd.data.sources.common import (
    ROOT_OPTION,
    VideoIndex,
    parse_second,
    pinned_file,
    read_table,
    register_video_source,
)
from avdd.data.sources.registry import Option
from avdd.data.sources.vggsound import vggsound_clip
from avdd.data.store import check_name
from avdd.errors import AvddError

AVDD_COMMIT = "165d032f59cb6c9b15441a869af98df52acca5ea"
CSV_URL = f"https://raw.githubusercontent.com/sakshamsingh1/AVDD/{AVDD_COMMIT}/preprocess/meta_data/vgg_subset.csv"
CSV_SHA256 = "4989e8dc096e401ec2bb4d8c76b296475cddb7ce620e02b6644389c38a4e7fba"
COLUMNS = ("vid", "num", "label", "split", "label_id")


def class_names_from_ids(pairs: list[tuple[str, str]], where: Path) -> list[str]:
    """Class names indexed by the file's label ids, which must map one-to-one onto 0..K-1."""
    by_id: dict[int, str] = {}
    for label, label_id in pairs:
        try:
            i = int(label_id)
        except ValueError:
            raise AvddError(f"{where}: label_id {label_id!r} is not a whole number") from None
        if by_id.setdefault(i, label) != label:
            raise AvddError(f"{where}: label_id {i} names both {by_id[i]!r} and {label!r}")
    names = [by_id.get(i) for i in range(len(by_id))]
    if None in names or len(set(names)) != len(names):
        raise AvddError(f"{where}: label ids must number the classes 0..{len(by_id) - 1}, one id per label")
    return [str(n) for n in names]


def list_vggs10k(root: Path, csv: Path | None = None) -> ClipList:
    csv = csv or pinned_file("vgg_subset.csv", CSV_URL, CSV_SHA256)
    rows = read_table(csv, COLUMNS)
    classes = class_names_from_ids([(r["label"], r["label_id"]) for _, r in rows], csv)
    index = VideoIndex(root)
    clips = [
        vggsound_clip(index, r["vid"], parse_second(r["num"], f"{csv}:{line}"), r["label"],
                      check_name(r["split"], "split", f"{csv}:{line}"))
        for line, r in rows
    ]
    return ClipList(clips, classes, {"csv": str(Path(csv).resolve())})


register_video_source(
    "vggs10k",
    "VGGS-10K, the paper's 10-class VGGSound subset (its CSV is downloaded unless --csv is given)",
    list_vggs10k,
    (ROOT_OPTION, Option("csv", Path, None, "vgg_subset.csv (default: download the pinned copy)")),
)
