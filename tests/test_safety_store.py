"""Issue 18, the store's share: names from data never leave the store, meta.json is checked field by
field, a full disk is an error (not a SIGBUS) that leaves nothing behind, everything a store holds is
in it before its rename, and nonsense (NaN statistics, NaN coreset samples, factorised --data) is
refused. Each test checks the message and that files that were there before are byte-identical."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from avdd.cli import main
from avdd.data.prepare import Clip, ClipList, prepare_clips, work_dir
from avdd.data.sources import csvfile, music21, reference_pt, vggsound
from avdd.data.store import StoreWriter, open_store, remove_stale_partials, write_store
from avdd.distill.api import distill
from avdd.distill.coreset import coreset_set
from avdd.distill.experts import ExpertConfig, train_experts
from avdd.distill.result import LOG_FILE, SyntheticSet, save_synthetic
from avdd.errors import AvddError
from avdd.formats import META_FILE
from conftest import TINY_SPECS, make_tiny_store


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``avdd argv``, check it fails with exit status 1 and one ``avdd: error:`` line; that line."""
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avdd: error: "), lines
    return lines[0]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def tiny_splits(num_classes: int = 2, n: int = 4, split: str = "train") -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return {split: {"labels": np.arange(n) % num_classes,
                    "audio": rng.standard_normal((n, *TINY_SPECS["audio"].shape)).astype(np.float16),
                    "frame": rng.integers(0, 256, (n, *TINY_SPECS["frame"].shape), dtype=np.uint8)}}


# --- 1. split and modality names are plain names ---------------------------------------------------

UNSAFE_SPLITS = ["../victim/train", "../../x/y", "a/b", ".hidden", "/abs", "tr ain", "train\\..\\x"]


@pytest.mark.parametrize("split", UNSAFE_SPLITS[:3])
def test_prepare_csv_refuses_a_split_that_would_write_outside_out(tmp_path, capsys, split):
    make_tiny_store(tmp_path / "victim")
    table = write_csv(tmp_path / "mine.csv", ["path", "label", "split"],
                      [["a.mp4", "dog", "test"], ["b.mp4", "cat", split]])
    before = snapshot(tmp_path)
    line = cli_error(capsys, ["prepare", "csv", "--csv", str(table), "--out", str(tmp_path / "new"), "-q"])
    assert line == (f"avdd: error: {table}:3: split {json.dumps(split)} is not a plain name (letters, digits, "
                    "_ and - only); it becomes a file name in the store")
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "new").exists() and not work_dir(tmp_path / "new").exists()


@pytest.mark.parametrize("split", UNSAFE_SPLITS[3:])
def test_csv_source_refuses_other_unsafe_splits(tmp_path, split):
    table = write_csv(tmp_path / "mine.csv", ["path", "label", "split"], [["a.mp4", "dog", split]])
    with pytest.raises(AvddError, match=rf"^{table}:2: split .* is not a plain name"):
        csvfile.list_csv(table)


def test_listed_sources_name_the_row_of_an_unsafe_split(tmp_path):
    (tmp_path / "videos").mkdir()
    table = write_csv(tmp_path / "vgg.csv", ["youtube_id", "start_seconds", "label", "split"],
                      [["abc", "30", "dog barking", "train"], ["def", "0", "cat", "../x"]])
    with pytest.raises(AvddError, match=rf"^{table}:3: split \"\.\./x\""):
        vggsound.list_vggsound(tmp_path / "videos", table)
    table = write_csv(tmp_path / "m21.csv", ["vid", "split", "label"], [["v1", "te/st", "flute"]])
    with pytest.raises(AvddError, match=rf"^{table}:2: split \"te/st\""):
        music21.list_music21(tmp_path / "videos", table)


def test_prepare_refuses_an_unsafe_split_from_any_source_before_any_work(tmp_path):
    clips = ClipList([Clip(tmp_path / "a.mp4", "dog", "../x")], ["dog"])
    with pytest.raises(AvddError, match=rf"^{tmp_path / 'a.mp4'}: split \"\.\./x\" is not a plain name"):
        prepare_clips(clips, tmp_path / "out", name="mine", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("plan", ["{not json", "[1, 2]", "\xff\xfe"])
def test_a_garbled_plan_of_an_unfinished_prepare_is_one_line(tmp_path, plan):
    work = work_dir(tmp_path / "out")
    work.mkdir()
    (work / "plan.json").write_bytes(plan.encode("latin-1"))
    before = snapshot(tmp_path)
    clips = ClipList([Clip(tmp_path / "a.mp4", "dog", "train")], ["dog"])
    with pytest.raises(AvddError, match=rf"^{work}: holds an unfinished prepare of other clips or options; .* "
                                        "delete that directory to start over$"):
        prepare_clips(clips, tmp_path / "out", name="mine", progress=False)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("splits", "modalities", "message"), [
    ({"../victim/train": 4}, None, r"split \"\.\./victim/train\" is not a plain name"),
    ({"train": 4}, {"../a": "audio"}, r"modality \"\.\./a\" is not a plain name"),
    ({"train": 4}, {"labels": "audio"}, "labels of split 'train' and the modality 'labels' .* train_labels.npy"),
    ({"a": 4, "a_b": 4}, {"b_c": "audio", "c": "frame"}, "would both be stored as a_b_c.npy"),
])
def test_writer_refuses_unsafe_names_before_creating_anything(tmp_path, splits, modalities, message):
    make_tiny_store(tmp_path / "victim")
    before = snapshot(tmp_path)
    specs = {m: TINY_SPECS[spec] for m, spec in (modalities or {"audio": "audio"}).items()}
    with pytest.raises(AvddError, match=rf"^{tmp_path / 'out'}: .*{message}"):
        StoreWriter(tmp_path / "out", name="x", class_names=["a", "b"], modalities=specs, split_sizes=splits)
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


def edit_meta(store: Path, edit) -> Path:
    meta_path = store / META_FILE
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    return meta_path


def test_open_store_refuses_an_unsafe_split_in_meta(tmp_path, capsys):
    store = make_tiny_store(tmp_path / "s").path
    meta_path = edit_meta(store, lambda m: m["splits"].update({"../../etc/x": 3}))
    before = snapshot(tmp_path)
    with pytest.raises(AvddError, match=rf"^{meta_path}: split \"\.\./\.\./etc/x\" is not a plain name"):
        open_store(store)
    assert cli_error(capsys, ["data", "info", str(store)]).startswith(f"avdd: error: {meta_path}: split")
    assert snapshot(tmp_path) == before


# --- 9/12. meta.json fields of the wrong type or meaning -------------------------------------------

def _set(path: str, value):
    def edit(meta: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            meta = meta[key]
        meta[last] = value
    return edit


META_DEFECTS = [
    ("splits.train", "ten", r"splits\.train must be a sample count .*, got \"ten\""),
    ("splits.train", -1, r"splits\.train must be a sample count"),
    ("splits.train", True, r"splits\.train must be a sample count"),
    ("splits", ["train"], r"splits must be an object"),
    ("modalities.audio.shape", "x", r"modalities\.audio: shape must be a list of integers, got \"x\""),
    ("modalities.audio.shape", "112", r"modalities\.audio: shape must be a list of integers"),
    ("modalities.audio.shape", [1, 0, 12], r"modalities\.audio: shape must be a list of positive integers"),
    ("modalities.audio.dtype", "object", r"modalities\.audio: dtype must be a numeric type"),
    ("modalities.audio.dtype", "float17", r"modalities\.audio: dtype must be a numeric type"),
    ("modalities.audio.dtype", 5, r"modalities\.audio: dtype must be a string"),
    ("modalities.audio.std", [float("nan")], r"modalities\.audio: std must be finite and positive, got \[NaN\]"),
    ("modalities.audio.std", [float("inf")], r"modalities\.audio: std must be finite and positive"),
    ("modalities.audio.std", [0.0], r"modalities\.audio: std must be finite and positive"),
    ("modalities.audio.std", ["1"], r"modalities\.audio: std must be a list of numbers"),
    ("modalities.audio.mean", [float("nan")], r"modalities\.audio: mean must be finite, got \[NaN\]"),
    ("modalities.frame.mean", [0.1, 0.2], r"modalities\.frame: mean needs 1 or 3 values"),
    ("modalities.frame.scale", 0, r"modalities\.frame: scale must be finite and positive"),
    ("modalities.audio", [], r"modalities\.audio: must be an object"),
    ("modalities", {}, r"modalities must be an object"),
    ("format_version", "1", r"format_version must be a whole number >= 1, got \"1\""),
    ("format_version", 0, r"format_version must be a whole number >= 1"),
    ("name", 5, r"name must be a string, got 5"),
    ("classes", "abc", r"classes must be a list of distinct class names, got \"abc\""),
    ("classes", [], r"classes must be a list of distinct class names"),
    ("classes", ["a", 1, "c"], r"classes must be a list of distinct class names"),
    ("classes", ["a", "a", "c"], r"classes must be a list of distinct class names"),
    ("provenance", "x", r"provenance must be an object"),
]


@pytest.mark.parametrize(("field", "value", "message"), META_DEFECTS, ids=[f"{f}={v!r}" for f, v, _ in META_DEFECTS])
def test_open_store_names_meta_json_and_the_field(tmp_path, field, value, message):
    store = make_tiny_store(tmp_path / "s").path
    meta_path = edit_meta(store, _set(field, value))
    before = snapshot(tmp_path)
    with pytest.raises(AvddError, match=rf"^{meta_path}: {message}") as caught:
        open_store(store)
    assert "\n" not in str(caught.value)
    assert snapshot(tmp_path) == before


def test_data_info_reports_a_wrong_typed_field_in_one_line(tmp_path, capsys):
    store = make_tiny_store(tmp_path / "s").path
    meta_path = edit_meta(store, _set("modalities.audio.shape", "x"))
    before = snapshot(tmp_path)
    line = cli_error(capsys, ["data", "info", str(store)])
    assert line == f'avdd: error: {meta_path}: modalities.audio: shape must be a list of integers, got "x"'
    assert snapshot(tmp_path) == before


def test_missing_meta_fields_are_named(tmp_path):
    store = make_tiny_store(tmp_path / "s").path
    meta_path = edit_meta(store, lambda m: m["modalities"]["audio"].pop("std"))
    with pytest.raises(AvddError, match=rf"^{meta_path}: modalities\.audio: std is missing$"):
        open_store(store)
    edit_meta(store, lambda m: m.pop("classes"))
    with pytest.raises(AvddError, match=rf"^{meta_path}: classes must be .*, got null$"):
        open_store(store)


def test_single_class_store_warns_and_two_classes_do_not(tmp_path):
    with pytest.warns(UserWarning, match=r"the store has a single class \('a'\)"):
        write_store(tmp_path / "one", name="x", class_names=["a"], modalities=TINY_SPECS,
                    splits=tiny_splits(num_classes=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_store(tmp_path / "two", name="x", class_names=["a", "b"], modalities=TINY_SPECS, splits=tiny_splits())


def test_the_cli_shows_the_single_class_warning_as_one_line(tmp_path, capsys):
    train, test = reference_files(tmp_path, num_classes=1)
    assert main(["prepare", "reference-pt", "--train", str(train), "--test", str(test),
                 "--out", str(tmp_path / "out"), "-q"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"avdd: warning: {tmp_path / 'out'}: the store has a single class")


# --- 5. a full disk is an error, and partial folders do not stay -----------------------------------

def failing(code: int):
    def fallocate(*args) -> None:
        raise OSError(code, os.strerror(code))
    return fallocate


@pytest.mark.parametrize("overwrite", [False, True])
def test_full_disk_is_an_error_and_leaves_no_partial(tmp_path, monkeypatch, overwrite):
    out = tmp_path / "out"
    if overwrite:  # the store --overwrite would replace is kept as it was
        make_tiny_store(out)
    make_tiny_store(tmp_path / "other")
    before = snapshot(tmp_path)
    monkeypatch.setattr(os, "posix_fallocate", failing(errno.ENOSPC))
    with pytest.raises(AvddError, match=rf"^{out}: cannot reserve 32 B for train_labels\.npy \(No space left "
                                        r"on device\); free disk space or choose another --out$"):
        write_store(out, name="x", class_names=["a", "b"], modalities=TINY_SPECS, splits=tiny_splits(),
                    overwrite=overwrite)
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == (["other", "out"] if overwrite else ["other"])


def reference_files(tmp_path: Path, num_classes: int = 2) -> tuple[Path, Path]:
    def split(name: str, n: int) -> dict[str, torch.Tensor]:
        return {f"audio_{name}": torch.zeros(n, 1, 128, 56), f"labels_{name}": torch.arange(n) % num_classes,
                f"images_{name}": torch.zeros(n, 3, 8, 8, dtype=torch.uint8)}
    torch.save(split("train", 4), tmp_path / "train.pt")
    torch.save(split("test", 2), tmp_path / "test.pt")
    return tmp_path / "train.pt", tmp_path / "test.pt"


def test_quota_exceeded_while_importing_is_one_cli_line(tmp_path, monkeypatch, capsys):
    train, test = reference_files(tmp_path)
    before = snapshot(tmp_path)
    calls = []

    def quota_after_two(*args) -> None:  # the first arrays fit, the third does not
        calls.append(args)
        if len(calls) > 2:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "posix_fallocate", quota_after_two)
    line = cli_error(capsys, ["prepare", "reference-pt", "--train", str(train), "--test", str(test),
                              "--out", str(tmp_path / "out"), "-q"])
    assert line.startswith(f"avdd: error: {tmp_path / 'out'}: cannot reserve ") and "quota exceeded" in line
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["test.pt", "train.pt"]


@pytest.mark.parametrize("unsupported", ["missing", "EOPNOTSUPP"])
def test_without_fallocate_the_store_has_the_same_bytes(tmp_path, monkeypatch, unsupported):
    write_store(tmp_path / "a", name="x", class_names=["a", "b"], modalities=TINY_SPECS, splits=tiny_splits())
    if unsupported == "missing":
        monkeypatch.delattr(os, "posix_fallocate")
    else:
        monkeypatch.setattr(os, "posix_fallocate", failing(errno.EOPNOTSUPP))
    write_store(tmp_path / "b", name="x", class_names=["a", "b"], modalities=TINY_SPECS, splits=tiny_splits())
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_partials_of_killed_builds_are_removed_at_the_next_build(tmp_path):
    out = tmp_path / "s"
    writer = StoreWriter(out, name="x", class_names=["a", "b"], modalities=TINY_SPECS, split_sizes={"train": 4})
    host = writer.tmp.name.split("@")[1][:-9]
    assert writer.tmp.name.startswith(f".s.partial-{os.getpid()}@")  # the builder's pid and host name its folder
    writer.labels("train")[:] = 0
    killed = tmp_path / f".s.partial-{dead_pid()}@{host}-abcd1234"
    killed.mkdir()
    (killed / "train_labels.npy").write_bytes(b"half")
    kept = [tmp_path / f".s.partial-{dead_pid()}@another-host-abcd1234",  # its pid is not ours to judge
            tmp_path / f".t.partial-{dead_pid()}@{host}-abcd1234",  # a partial of another --out
            tmp_path / ".s.partial-notes",  # not named as avdd names partials
            tmp_path / f".s.partial-{dead_pid()}@{host}-abcd1234-mine"]
    for path in kept:
        path.mkdir()
        (path / "file.txt").write_text("the user's")
    before = snapshot(tmp_path)
    write_store(tmp_path / "s", name="x", class_names=["a", "b"], modalities=TINY_SPECS, splits=tiny_splits())
    assert not killed.exists()
    assert writer.tmp.is_dir()  # a live build's folder (this process) stays
    after = snapshot(tmp_path)
    assert {k: v for k, v in before.items() if not k.startswith(killed.name)} == \
        {k: v for k, v in after.items() if not k.startswith("s/")}
    writer.abort()


def test_a_partial_whose_builder_lives_is_kept(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        probe = StoreWriter(tmp_path / "s", name="x", class_names=["a", "b"], modalities=TINY_SPECS,
                            split_sizes={"train": 1})
        host = probe.tmp.name.split("@")[1][:-9]
        probe.abort()
        live = tmp_path / f".s.partial-{child.pid}@{host}-abcd1234"
        live.mkdir()
        assert remove_stale_partials(tmp_path / "s") == []
        assert live.is_dir()
    finally:
        child.kill()
        child.wait()
    assert remove_stale_partials(tmp_path / "s") == [live] and not live.exists()


# --- 11. everything a store holds is written before its rename -------------------------------------

def test_distill_log_is_in_the_store_before_its_rename(tmp_path, monkeypatch):
    source = make_tiny_store(tmp_path / "src")
    out = tmp_path / "set"
    seen: dict[str, list[str]] = {}
    real = {"replace": os.replace, "rename": os.rename}

    def spy(kind: str):
        def move(src, dst, *args, **kwargs):
            if Path(dst) == out:
                seen[kind] = sorted(os.listdir(src))
            return real[kind](src, dst, *args, **kwargs)
        return move

    monkeypatch.setattr(os, "replace", spy("replace"))
    monkeypatch.setattr(os, "rename", spy("rename"))
    synthetic = SyntheticSet({"audio": torch.zeros(2, *TINY_SPECS["audio"].shape)}, torch.tensor([0, 1]),
                             log={"losses": [{"iteration": 1, "loss": 0.5}]})
    store = save_synthetic(synthetic, out, source, provenance={"method": "dm"})
    assert len(seen) == 1  # one move into place, and the log was in the folder moved
    assert {LOG_FILE, META_FILE, "train_audio.npy", "train_labels.npy"} <= set(next(iter(seen.values())))
    assert json.loads((store.path / LOG_FILE).read_text()) == synthetic.log


@pytest.mark.parametrize("name", ["../x.json", "sub/x.json", ".hidden", META_FILE, "train_audio.npy"])
def test_extra_files_of_a_store_are_plain_names_that_shadow_nothing(tmp_path, name):
    with pytest.raises(ValueError, match="not a name a store's extra file may have"), StoreWriter(
            tmp_path / "s", name="x", class_names=["a", "b"], modalities=TINY_SPECS, split_sizes={"train": 4}) as w:
        w.add_file(name, "text")
    assert list(tmp_path.iterdir()) == []


# --- 12. NaN samples into a coreset, a factorised set as --data ------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_coreset_refuses_to_copy_non_finite_samples(tmp_path, bad):
    store = make_tiny_store(tmp_path / "src")
    audio = np.load(store.path / "train_audio.npy")
    audio[5, 0, 3, 3] = bad
    np.save(store.path / "train_audio.npy", audio)
    before = snapshot(tmp_path)
    with pytest.raises(AvddError, match=rf"^{store.path}: 1 of the 36 selected audio samples hold NaN or inf "
                                        r"values \(first: train sample 5\); the store is corrupt, rebuild it$"):
        distill(store.path, tmp_path / "set", "random", modalities=["audio", "frame"], ipc=12, progress=False)
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    orders = [ix for ix in open_store(store.path).split("train").class_indices]  # as herding/kcenter pass them
    with pytest.raises(AvddError, match="1 of the 36 selected audio samples"):
        coreset_set(open_store(store.path), ["audio"], orders, 12, {})
    coreset_set(open_store(store.path), ["frame"], orders, 12, {})  # frames (uint8) are always finite


@pytest.mark.parametrize(("key", "message"), [
    ("audio_train", "train.pt: audio_train holds NaN or inf values; the file is corrupt"),
    ("audio_test", "test.pt: audio_test holds NaN or inf values; the file is corrupt"),
    ("images_train", r"train.pt: images hold values in \[nan, nan\], expected 0..255"),
])
def test_reference_pt_refuses_non_finite_values(tmp_path, key, message):
    files = dict(zip(("train", "test"), reference_files(tmp_path), strict=True))
    split = key.split("_")[1]
    data = torch.load(files[split])
    data[key] = data[key].float()
    data[key][1, 0, 0, 0] = float("nan")
    torch.save(data, files[split])
    before = snapshot(tmp_path)
    with pytest.raises(AvddError, match=f"^{tmp_path}/{message}"):
        reference_pt.import_reference(tmp_path / "out", **files, progress=False)
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["test.pt", "train.pt"]


@pytest.mark.parametrize(("factor", "tiles"), [(True, 4), (3, 9), ({"audio": 4, "frame": 1}, 16)])
def test_a_factorised_set_is_refused_as_data(tmp_path, capsys, factor, tiles):
    source = make_tiny_store(tmp_path / "src")
    factorised = make_tiny_store(tmp_path / "fact", splits=("train",), provenance={
        "method": "avdd", "factor": factor, "source_dataset": {"name": "tiny", "path": str(source.path)}})
    before = snapshot(tmp_path)
    message = (f"{factorised.path}: a factorised distilled set ({tiles} tiles per "
               f"stored sample) cannot be --data; evaluate it, or use its source store {source.path}")
    with pytest.raises(AvddError, match=f"^{re.escape(message)}$"):
        distill(factorised.path, tmp_path / "set", "random", modalities=["audio"], ipc=1, progress=False)
    line = cli_error(capsys, ["distill", "--data", str(factorised.path), "--method", "random", "--ipc", "1",
                              "--out", str(tmp_path / "set"), "-q"])
    assert line == f"avdd: error: {message}"
    with pytest.raises(AvddError, match=f"^{re.escape(message)}$"):  # experts train on --data too
        train_experts(factorised.path, tmp_path / "experts", ExpertConfig(num_experts=1, epochs=1), progress=False)
    assert snapshot(tmp_path) == before


def test_a_damaged_reference_file_is_one_cli_line(tmp_path, capsys):
    train, test = reference_files(tmp_path)
    train.write_bytes(b"\x80\xf7" + bytes(range(256)))  # torch warns about the protocol before it fails
    line = cli_error(capsys, ["prepare", "reference-pt", "--train", str(train), "--test", str(test),
                              "--out", str(tmp_path / "out"), "-q"])
    assert line.startswith(f"avdd: error: {train}: not a readable torch file (")
    assert not (tmp_path / "out").exists()
