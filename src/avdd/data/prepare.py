"""Raw videos -> store: decode every listed clip in worker processes, resumably, then assemble.

A run keeps its work in a hidden directory beside the output, ``.{out}.prepare/``:

    plan.json          a fingerprint of the clip list and the options that shape the samples
    results/{i}.npz    clip i's usable seconds (frames, spectrograms) and its skipped seconds

Each result is written atomically by the worker that decoded the clip, so an interrupted run
leaves only finished clips behind; a rerun with the same inputs decodes the rest. The store is
assembled from the results in clip-list order (never completion order), so an interrupted run plus
a rerun gives the same bytes as one uninterrupted run, whatever ``workers`` is. Assembly copies
clip by clip into the store's memory-mapped arrays, so the dataset never has to fit in RAM; the
work directory is removed once the store is committed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from avdd.data.audio import SPECTROGRAM_SHAPE
from avdd.data.store import IMAGE, SPECTROGRAM, ModalitySpec, Store, StoreWriter, check_name
from avdd.data.video import DECODE_ERROR, Seconds, Skipped, decode_clip
from avdd.errors import AvddError
from avdd.files import write_atomic, write_json, write_text_atomic
from avdd.outputs import check_store_output
from avdd.ranges import check_settings

FRAME_MEAN = (0.425, 0.396, 0.370)
FRAME_STD = (0.229, 0.224, 0.221)
PLAN_VERSION = 1
SKIPPED_FILE = "skipped.csv"
SILENT_FILE = "silent.csv"
SPLIT_ORDER = ("train", "val", "test")


@dataclass(frozen=True)
class Clip:
    """One video file to decode, its label and split, and which of its seconds are samples."""

    path: Path
    label: str
    split: str
    seconds: Seconds = "all"

    def to_json(self) -> dict[str, Any]:
        seconds = self.seconds if isinstance(self.seconds, str) else list(self.seconds)
        return {"path": str(self.path), "label": self.label, "split": self.split, "seconds": seconds}


@dataclass(frozen=True)
class ClipList:
    """What a video source lists: the clips, and the class names in label-id order."""

    clips: list[Clip]
    classes: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = set(self.classes)
        for clip in self.clips:
            if clip.label not in known:
                raise ValueError(f"{clip.path}: label {clip.label!r} is not among the classes")


@dataclass(frozen=True)
class _Task:
    index: int
    clip: Clip
    image_size: int
    allow_silent_audio: bool
    result: Path


def _result_path(results: Path, index: int) -> Path:
    return results / f"{index:08d}.npz"


def _process(task: _Task) -> int:
    """Decode one clip and write its result atomically. Never raises for a broken file."""
    try:
        decoded, skipped = decode_clip(task.clip.path, task.clip.seconds, task.image_size, task.allow_silent_audio)
    except Exception as err:  # a file that breaks the decoder in an unforeseen way must not stop the run
        decoded, skipped = [], [Skipped(None, DECODE_ERROR, f"{type(err).__name__}: {err}")]
    size = task.image_size
    frames = np.stack([d.frame for d in decoded]) if decoded else np.zeros((0, 3, size, size), np.uint8)
    audio = (np.stack([d.spectrogram for d in decoded]).astype(np.float16) if decoded
             else np.zeros((0, *SPECTROGRAM_SHAPE), np.float16))
    write_atomic(task.result, lambda f: np.savez(
        f,
        seconds=np.array([d.second for d in decoded], dtype=np.int64),
        silent=np.array([d.silent for d in decoded], dtype=bool),
        frame=frames,
        audio=audio,
        skipped=np.array(json.dumps([[s.second, s.reason, s.detail] for s in skipped])),
    ))
    return task.index


def _init_worker() -> None:
    torch.set_num_threads(1)  # parallelism comes from processes; threads would oversubscribe


def _fingerprint(clips: ClipList, image_size: int, allow_silent_audio: bool) -> str:
    plan = {
        "version": PLAN_VERSION,
        "classes": clips.classes,
        "clips": [c.to_json() for c in clips.clips],
        "image_size": image_size,
        "allow_silent_audio": allow_silent_audio,
    }
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def work_dir(out: Path) -> Path:
    """Where an unfinished prepare of ``out`` keeps its per-clip results."""
    return out.parent / f".{out.name}.prepare"


def _planned(plan: Path) -> object:
    """The fingerprint in ``plan``; None when it is unreadable (then it matches no run)."""
    try:
        data = json.loads(plan.read_text())
    except (OSError, ValueError):
        return None
    return data.get("fingerprint") if isinstance(data, dict) else None


def _open_work(out: Path, fingerprint: str) -> Path:
    work = work_dir(out)
    plan = work / "plan.json"
    if plan.is_file():
        if _planned(plan) != fingerprint:
            raise AvddError(
                f"{work}: holds an unfinished prepare of other clips or options; rerun with the same "
                "ones to resume it, or delete that directory to start over"
            )
    else:
        (work / "results").mkdir(parents=True, exist_ok=True)
        write_json(plan, {"fingerprint": fingerprint})
    return work


def _decode_all(tasks: list[_Task], workers: int, progress: bool) -> None:
    with tqdm(total=len(tasks), desc="prepare", unit="clip", disable=not progress) as bar:
        if workers <= 1 or len(tasks) <= 1:
            threads = torch.get_num_threads()
            _init_worker()  # measured: torch threads beside FFmpeg's made resizing 20x slower
            try:
                for task in tasks:
                    _process(task)
                    bar.update()
            finally:
                torch.set_num_threads(threads)
            return
        # spawn, not fork: forking a process that has used torch's thread pool can deadlock
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker) as pool:
            for _ in pool.imap_unordered(_process, tasks, chunksize=1):
                bar.update()


def _load(path: Path, *keys: str) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:  # npz members load lazily: read only these
        return {k: data[k] for k in keys}


def _ordered_splits(names: set[str]) -> list[str]:
    return [s for s in SPLIT_ORDER if s in names] + sorted(names - set(SPLIT_ORDER))


def _report(rows: list[list[Any]]) -> str:
    """The CSV text of a report of samples (skipped or silent), one row each."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "second", "label", "split", "reason", "detail"])
    writer.writerows(rows)
    return text.getvalue()


def prepare_clips(
    clips: ClipList,
    out: str | Path,
    *,
    name: str,
    image_size: int = 224,
    workers: int = 1,
    allow_silent_audio: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
) -> Store:
    """Decode ``clips`` (resumably, with ``workers`` processes) and write the store at ``out``.

    Writes ``skipped.csv`` (every skipped sample and why) and, with ``allow_silent_audio``,
    ``silent.csv`` (samples kept with silence) into the store.
    """
    out = Path(out)
    check_store_output(out, overwrite)  # before the work, not only at the final rename
    check_settings("prepare", {"image_size": image_size, "workers": workers})
    if not clips.clips:
        raise AvddError(f"{name}: the source lists no clips; check --root and the metadata files")
    for clip in clips.clips:  # sources name the row; this catches any that did not, before any work
        check_name(clip.split, "split", f"{clip.path}")
    work = _open_work(out, _fingerprint(clips, image_size, allow_silent_audio))
    results = work / "results"
    tasks = [
        _Task(i, clip, image_size, allow_silent_audio, _result_path(results, i))
        for i, clip in enumerate(clips.clips)
        if not _result_path(results, i).is_file()
    ]
    _decode_all(tasks, workers, progress)
    store = _assemble(clips, out, results, name=name, image_size=image_size, overwrite=overwrite,
                      provenance={**(provenance or {}), "image_size": image_size,
                                  "allow_silent_audio": allow_silent_audio})
    shutil.rmtree(work)
    return store


def _assemble(
    clips: ClipList, out: Path, results: Path, *, name: str, image_size: int, overwrite: bool,
    provenance: dict[str, Any],
) -> Store:
    label_ids = {c: i for i, c in enumerate(clips.classes)}
    sizes: Counter[str] = Counter()
    skipped_rows: list[list[Any]] = []
    silent_rows: list[list[Any]] = []
    total, total_sq, count = 0.0, 0.0, 0
    # pass 1: sample counts per split, the report, and the train split's audio statistics
    for i, clip in enumerate(clips.clips):
        result = _load(_result_path(results, i), "seconds", "silent", "skipped", "audio")
        sizes[clip.split] += len(result["seconds"])
        for second, reason, detail in json.loads(str(result["skipped"])):
            skipped_rows.append([clip.path, "" if second is None else second, clip.label, clip.split, reason, detail])
        for second in result["seconds"][result["silent"]]:
            silent_rows.append([clip.path, int(second), clip.label, clip.split, "silent audio", "kept as silence"])
        if clip.split == "train":
            audio = result["audio"].astype(np.float64)
            total, total_sq, count = total + audio.sum(), total_sq + (audio**2).sum(), count + audio.size
    if sizes["train"] == 0:
        report = work_dir(out) / SKIPPED_FILE
        write_text_atomic(report, _report(skipped_rows))
        raise AvddError(f"{name}: no usable train sample (see {report} for why each was skipped)")
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean**2, 0.0))) or 1.0
    modalities = {
        "audio": ModalitySpec(SPECTROGRAM_SHAPE, "float16", (mean,), (std,), kind=SPECTROGRAM),
        "frame": ModalitySpec((3, image_size, image_size), "uint8", FRAME_MEAN, FRAME_STD, scale=1 / 255, kind=IMAGE),
    }
    # a split whose every sample was skipped is left out rather than stored empty
    splits = _ordered_splits({s for s, n in sizes.items() if n})
    provenance = {
        **provenance,
        "clips": len(clips.clips),
        "samples": {s: sizes[s] for s in splits},
        "skipped": len(skipped_rows),
        "silent": len(silent_rows),
    }
    with StoreWriter(out, name=name, class_names=clips.classes, modalities=modalities,
                     split_sizes={s: sizes[s] for s in splits}, provenance=provenance,
                     overwrite=overwrite) as writer:
        # pass 2: copy clip by clip into the memory-mapped arrays, in clip-list order
        filled: Counter[str] = Counter()
        for i, clip in enumerate(clips.clips):
            result = _load(_result_path(results, i), "seconds", "frame", "audio")
            n, at = len(result["seconds"]), filled[clip.split]
            if n == 0:
                continue
            writer.labels(clip.split)[at : at + n] = label_ids[clip.label]
            writer.array(clip.split, "frame")[at : at + n] = result["frame"]
            writer.array(clip.split, "audio")[at : at + n] = result["audio"]
            filled[clip.split] += n
        writer.add_file(SKIPPED_FILE, _report(skipped_rows))
        if silent_rows:
            writer.add_file(SILENT_FILE, _report(silent_rows))
        return writer.commit()
