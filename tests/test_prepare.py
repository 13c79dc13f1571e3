"""`avdd prepare` over the real clips: the store, the skip report, resuming, parallel workers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from avdd.cli import main
from avdd.data import prepare
from avdd.data.sources.registry import PREPARE_SOURCES
from avdd.data.store import Store, open_store
from avdd.errors import AvddError

# (file, label, split): the good clips and every broken one
CLIPS = [
    ("big_buck_bunny_432_433.webm", "bunny", "train"),
    ("fire2.mp4", "fire", "train"),
    ("example3.mp4", "bunny", "test"),
    ("video_with_failing_audio.mp4", "fire", "test"),
    ("empty.webm", "fire", "train"),
    ("no_audio.mp4", "bunny", "train"),
    ("no_duration.webm", "fire", "test"),
    ("gone.mp4", "bunny", "train"),
]
# usable seconds per split: bunny 1 + fire2 2 (train); example3 2 + the failing clip's 5 with sound (test)
SIZES = {"train": 3, "test": 7}


@pytest.fixture
def clip_csv(data_root: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    folder.mkdir()
    for name, _, _ in CLIPS:
        if (data_root / "video" / name).exists():
            (folder / name).symlink_to(data_root / "video" / name)
    table = folder / "clips.csv"
    table.write_text("path,label,split\n" + "".join(f"{n},{label},{split}\n" for n, label, split in CLIPS))
    return table


def build(table: Path, out: Path, **options) -> Store:
    options = {"image_size": 16, "workers": 1, "progress": False, **options}
    return PREPARE_SOURCES.get("csv").build(out, csv=table, **options)


def same_store(a: Store, b: Store) -> None:
    assert a.meta == b.meta
    for split in a.split_sizes:
        np.testing.assert_array_equal(a.split(split).labels, b.split(split).labels)
        for m in a.modalities:
            np.testing.assert_array_equal(a.split(split).arrays[m], b.split(split).arrays[m])


def report(store: Store, name: str = prepare.SKIPPED_FILE) -> list[dict[str, str]]:
    with open(store.path / name, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_source_builds_a_store_that_data_info_reads(clip_csv: Path, tmp_path: Path, capsys) -> None:
    store = build(clip_csv, tmp_path / "store")
    assert store.split_sizes == SIZES
    assert store.class_names == ["bunny", "fire"]
    train = store.split("train")
    assert train.labels.tolist() == [0, 1, 1]  # bunny's second, then fire2's two, in CSV order
    assert train.arrays["frame"].shape == (3, 3, 16, 16) and train.arrays["frame"].dtype == np.uint8
    assert store.split("test").arrays["audio"].shape == (7, 1, 128, 56)
    # audio normalisation comes from the train split's spectrogram values
    train_audio = train.arrays["audio"].astype(np.float64)
    assert store.modalities["audio"].mean[0] == pytest.approx(train_audio.mean(), rel=1e-6)
    assert store.modalities["audio"].std[0] == pytest.approx(train_audio.std(), rel=1e-6)
    assert store.modalities["frame"].mean == prepare.FRAME_MEAN
    assert store.provenance["source"] == "csv" and store.provenance["skipped"] == 14
    assert not prepare.work_dir(store.path).exists()

    rows = report(store)
    reasons = {(Path(r["path"]).name, r["second"]): r["reason"] for r in rows}
    assert reasons == {
        ("empty.webm", ""): "unreadable",
        ("no_audio.mp4", ""): "no audio stream",
        ("gone.mp4", ""): "missing",
        **{("no_duration.webm", str(s)): "silent audio" for s in range(5)},
        **{("video_with_failing_audio.mp4", str(s)): "silent audio" for s in range(5, 11)},
    }
    assert len(rows) == 14  # one row per skipped sample; a whole-file failure of unknown length once

    assert main(["data", "info", str(store.path)]) == 0
    assert "train     3 samples" in capsys.readouterr().out


def test_allow_silent_audio_keeps_and_records_silence(clip_csv: Path, tmp_path: Path) -> None:
    store = build(clip_csv, tmp_path / "store", allow_silent_audio=True)
    # + no_audio's 2 seconds (train), no_duration's 5 and the failing clip's 6 silent ones (test)
    assert store.split_sizes == {"train": 5, "test": 18}
    silent = report(store, prepare.SILENT_FILE)
    assert len(silent) == 2 + 5 + 6 == store.provenance["silent"]
    assert {r["reason"] for r in report(store)} == {"unreadable", "missing"}


def test_interrupted_prepare_resumes_to_the_same_store(clip_csv: Path, tmp_path: Path, monkeypatch) -> None:
    reference = build(clip_csv, tmp_path / "once")
    real_decode = prepare.decode_clip
    calls = []

    def decode_then_die(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user presses ctrl-C during the fourth clip
        calls.append(args[0])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(prepare, "decode_clip", decode_then_die)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build(clip_csv, out)
    assert not out.exists()
    assert len(list((prepare.work_dir(out) / "results").glob("*.npz"))) == 3

    calls.clear()
    monkeypatch.setattr(prepare, "decode_clip", lambda *a, **k: calls.append(a[0]) or real_decode(*a, **k))
    resumed = build(clip_csv, out)
    assert [p.name for p in calls] == [name for name, _, _ in CLIPS[3:]]  # only the unfinished clips
    same_store(reference, resumed)
    assert report(reference) == report(resumed)


def test_parallel_workers_give_the_same_store(clip_csv: Path, tmp_path: Path) -> None:
    same_store(build(clip_csv, tmp_path / "one"), build(clip_csv, tmp_path / "two", workers=2))


def test_unfinished_work_with_other_options_is_not_mixed_in(clip_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    work = prepare.work_dir(out)
    (work / "results").mkdir(parents=True)
    (work / "plan.json").write_text(json.dumps({"fingerprint": "another run"}))
    with pytest.raises(AvddError, match="unfinished prepare"):
        build(clip_csv, out)


def test_existing_output_is_refused_before_any_work(clip_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    out.mkdir()
    with pytest.raises(AvddError, match="already exists"):
        build(clip_csv, out)
    assert not prepare.work_dir(out).exists()


def test_no_usable_train_sample_is_a_clear_error(data_root: Path, tmp_path: Path) -> None:
    table = tmp_path / "broken.csv"
    table.write_text(f"path,label,split\n{data_root / 'video' / 'empty.webm'},x,train\n")
    with pytest.raises(AvddError, match="no usable train sample"):
        build(table, tmp_path / "store")


def test_cli_prepare(clip_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "store"
    argv = ["prepare", "csv", "--csv", str(clip_csv), "--out", str(out), "--image-size", "8", "--workers", "1", "-q"]
    assert main(argv) == 0
    assert "classes   2: bunny, fire" in capsys.readouterr().out
    assert open_store(out).modalities["frame"].shape == (3, 8, 8)
    assert main(argv) == 1  # exists: refused with a one-line error
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("name", PREPARE_SOURCES.names())
def test_every_source_has_a_cli(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", name, "--help"])
    assert exit_.value.code == 0
    assert "--out" in capsys.readouterr().out
