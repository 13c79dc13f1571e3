"""What avdd may write and replace (issue 18): --overwrite replaces only what avdd made, never an
input or the current folder; the final rename never deletes what appeared meanwhile; one process
per output; outputs checked writable before the work; file-system errors as one line."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from avdd.cli import main
from avdd.data.store import StoreWriter, open_store
from avdd.errors import AvddError
from avdd.outputs import MARKER, lock_path, made_by
from conftest import TINY_SPECS, make_tiny_store

RANDOM = ["--method", "random", "--ipc", "1", "-q"]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (or ``root`` itself), by relative path, with its bytes."""
    if root.is_file():
        return {".": root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str, status: int = 1) -> str:
    """``avdd argv`` exits with ``status`` and one ``avdd: error:`` line holding every fragment."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("avdd: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store of its own in a folder of its own (tests may point outputs at it or its parent)."""
    return make_tiny_store(tmp_path / "data" / "tiny").path


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("my thesis\n")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return folder


# -- item 2: what --overwrite may replace -----------------------------------------------------------
def test_overwrite_refuses_a_folder_of_user_files(store, user_folder, capsys):
    before = snapshot(user_folder)
    fails(["distill", "--data", str(store), *RANDOM, "--out", str(user_folder), "--overwrite"], capsys,
          str(user_folder), "a folder avdd did not make", "nothing was changed")
    fails(["data", "build", "avdigits", "--out", str(user_folder), "--overwrite", "-q"], capsys,
          "--overwrite replaces only an avdd store")
    assert snapshot(user_folder) == before


LOOKALIKES = {  # a user's folder that holds a file or two with the names avdd uses
    "a page": {"report.html": "<html><title>my page</title></html>"},
    "songs": {"song.wav": "RIFF", "other.wav": "RIFF"},
    "a config": {"config.yaml": "a: 1\n", "results.json": "{}"},
}


@pytest.mark.parametrize("files", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_overwrite_refuses_a_user_folder_that_merely_looks_like_an_avdd_output(store, tmp_path, files, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    before = snapshot(folder)
    fails(["distill", "--data", str(store), *RANDOM, "--out", str(folder), "--overwrite"], capsys,
          "a folder avdd did not make")
    assert snapshot(folder) == before and made_by(folder) is None


def test_folders_avdd_made_before_it_marked_them_are_still_recognised(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "000-zero-0.wav").write_bytes(b"RIFF")
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.html").write_text("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
                                        "<title>avdd report: t</title></head></html>")
    run = tmp_path / "run"
    (run / "sets").mkdir(parents=True)
    (run / "config.yaml").write_text("experiment: t\n")
    assert [made_by(p) for p in (clips, report, run)] == ["listen", "report", "run"]


@pytest.mark.parametrize("target", ["store", "parent", "grandparent"])
def test_overwrite_refuses_the_input_and_what_contains_it(store, target, capsys):
    out = {"store": store, "parent": store.parent, "grandparent": store.parent.parent}[target]
    before = snapshot(out)
    fails(["distill", "--data", str(store), *RANDOM, "--out", str(out), "--overwrite"], capsys,
          f"{out}: is or contains the input {store}")
    assert snapshot(out) == before
    open_store(store)  # still whole


@pytest.mark.parametrize("out", [".", ".."])
def test_overwrite_refuses_the_current_folder_and_its_parent(store, out, monkeypatch, capsys):
    monkeypatch.chdir(store)  # the current folder is even a store: still refused
    before = snapshot(store.parent)
    fails(["distill", "--data", str(store), *RANDOM, "--out", out, "--overwrite"], capsys,
          "is the current folder or one above it")
    assert snapshot(store.parent) == before


def test_overwrite_replaces_a_store_avdd_made_and_leaves_nothing_beside_it(store, tmp_path, capsys):
    out = tmp_path / "runs" / "set"
    assert main(["distill", "--data", str(store), *RANDOM, "--out", str(out)]) == 0
    assert main(["distill", "--data", str(store), *RANDOM, "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    assert open_store(out).provenance["seed"] == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["set"]  # no partial, old copy or lock left


def test_the_library_refuses_before_the_work_too(store, user_folder, tmp_path):
    from avdd.distill.api import distill

    before = snapshot(user_folder)
    with pytest.raises(AvddError, match="--overwrite replaces only an avdd store"):
        distill(store, user_folder, "dm", modalities=("audio",), ipc=1, progress=False, overwrite=True,
                iterations=10_000)  # refused at once, not after 10 000 iterations
    assert snapshot(user_folder) == before


def test_overwriting_a_link_to_a_store_replaces_the_link_not_the_store(store, tmp_path):
    kept = make_tiny_store(tmp_path / "kept", seed=3).path
    before = snapshot(kept)
    link = tmp_path / "runs" / "link"
    link.parent.mkdir()
    link.symlink_to(kept)
    assert main(["distill", "--data", str(store), *RANDOM, "--out", str(link), "--overwrite"]) == 0
    assert not link.is_symlink() and open_store(link).provenance["method"] == "random"
    assert snapshot(kept) == before and sorted(p.name for p in link.parent.iterdir()) == ["link"]


def test_out_naming_an_existing_file_is_one_line(store, tmp_path, capsys):
    file = tmp_path / "results.txt"
    file.write_text("keep me\n")
    fails(["distill", "--data", str(store), *RANDOM, "--out", str(file)], capsys, "already exists")
    fails(["distill", "--data", str(store), *RANDOM, "--out", str(file), "--overwrite"], capsys, "is a file")
    fails(["report", str(store), "--out", str(file)], capsys, "is a file; --out names a folder")
    fails(["listen", str(store), "--out", str(file)], capsys, "is a file; --out names a folder")
    assert file.read_text() == "keep me\n"


@pytest.mark.parametrize("verb", ["report", "listen"])
def test_folder_outputs_refuse_a_folder_they_did_not_make(store, user_folder, verb, capsys):
    before = snapshot(user_folder)
    fails([verb, str(store), "--out", str(user_folder)], capsys, f"holds files `avdd {verb}` did not write")
    assert snapshot(user_folder) == before


def write_config(path: Path, store: Path) -> Path:
    """A one-cell experiment config: random IPC 1 on ``store``, one tiny evaluation."""
    path.write_text(yaml.safe_dump({
        "experiment": "t", "dataset": "tiny", "datasets": {"tiny": {"data": str(store), "schedule": "s"}},
        "schedules": {"s": {"seeds": [0], "evaluate": {"num_eval": 1, "epochs": 1, "width": 8}}},
        "grid": {"method": ["random"], "ipc": [1]}, "table": {"rows": ["method"], "columns": ["ipc"]}}))
    return path


def test_run_refuses_a_folder_it_did_not_make_and_marks_its_own(store, user_folder, tmp_path, capsys):
    config = write_config(tmp_path / "exp.yaml", store)
    before = snapshot(user_folder)
    fails(["run", str(config), "--out", str(user_folder), "-q"], capsys, "holds files `avdd run` did not write")
    assert snapshot(user_folder) == before
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    assert (run / MARKER).is_file()
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0  # its own folder: rerun, all cached
    next((run / "cells").iterdir()).write_text('{"metrics": ')  # item 9: a corrupt cached cell
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(run), "-q"]) == 1
    out, err = capsys.readouterr()
    assert "unreadable" in out and "delete it to evaluate the cell again" in out and "Traceback" not in out + err
    (run / "results.json").write_text("{not json")
    fails(["report", str(run)], capsys, "results.json: unreadable")


# -- item 2: the final rename ---------------------------------------------------------------------
def _writer(out: Path, overwrite: bool = False) -> StoreWriter:
    return StoreWriter(out, name="x", class_names=["a", "b"], modalities={"audio": TINY_SPECS["audio"]},
                       split_sizes={"train": 2}, overwrite=overwrite)


@pytest.mark.parametrize("overwrite", [False, True])
def test_the_final_rename_never_deletes_what_appeared_meanwhile(tmp_path, user_folder, overwrite):
    out = tmp_path / "store"
    expected = "a folder avdd did not make" if overwrite else "appeared while the output was being written"
    with pytest.raises(AvddError, match=expected), _writer(out, overwrite) as writer:
        writer.labels("train")[:] = np.array([0, 1])
        shutil.copytree(user_folder, out)  # another program puts a folder there while we work
        writer.commit()
    assert snapshot(out) == snapshot(user_folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "store"]  # our partial folder is gone


def test_an_empty_folder_that_appeared_is_not_taken_over_silently(tmp_path):
    out = tmp_path / "store"
    with pytest.raises(AvddError, match="appeared"), _writer(out) as writer:
        out.mkdir()
        writer.commit()
    assert out.is_dir() and not any(out.iterdir())


# -- item 7: one process per output ---------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from avdd.outputs import output_lock
    with output_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        sys.stdin.read()  # until the test closes our stdin (or kills us)
""")


def _hold_lock(out: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


@pytest.mark.parametrize("verb", ["distill", "data build", "run", "listen"])
def test_a_second_process_on_one_output_fails_at_once_naming_the_holder(store, tmp_path, verb, capsys):
    out = tmp_path / "out"
    argv = {"distill": ["distill", "--data", str(store), *RANDOM, "--out", str(out)],
            "data build": ["data", "build", "avdigits", "--out", str(out), "-q"],
            "run": ["run", str(write_config(tmp_path / "exp.yaml", store)), "--out", str(out), "-q"],
            "listen": ["listen", str(store), "--out", str(out)]}[verb]
    holder = _hold_lock(out)
    try:
        fails(argv, capsys, f"{out}: in use by another avdd process (pid {holder.pid})")
        assert not out.exists()
    finally:
        holder.kill()  # the lock goes with its process, however it ends
        holder.wait()
    if verb == "distill":
        assert main(argv) == 0 and open_store(out)
        assert not lock_path(out).exists()  # released and removed on the way out


def test_the_lock_is_released_when_its_holder_ends_cleanly(tmp_path, store):
    out = tmp_path / "out"
    holder = _hold_lock(out)
    holder.communicate("")  # close stdin: the holder leaves its with block
    assert holder.returncode == 0 and not lock_path(out).exists()
    assert main(["distill", "--data", str(store), *RANDOM, "--out", str(out)]) == 0


# -- item 4: writable before the work, and errors after it as one line -----------------------------
def test_json_naming_a_folder_is_refused_before_any_work(store, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    fails(["evaluate", "--train", str(store), "--test", str(store), "--json", str(folder), "-q"], capsys,
          "is a folder; --json names a file")
    assert capsys.readouterr().out == ""  # nothing was computed


def test_json_that_is_not_an_earlier_result_or_inside_an_input_is_refused(store, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    fails(["retrieve", "--train", str(store), "--test", str(store), "--json", str(notes), "-q"], capsys,
          "is not an earlier JSON result")
    meta = snapshot(store)
    fails(["evaluate", "--train", str(store), "--test", str(store), "--json", str(store / "meta.json"), "-q"],
          capsys, "is inside the input")
    assert notes.read_text() == "mine\n" and snapshot(store) == meta


@pytest.mark.parametrize("out", ["/sys/avdd-test/set", "FILE/set"])
def test_an_output_where_nothing_can_be_written_is_refused_before_any_work(store, tmp_path, out, capsys):
    file = tmp_path / "FILE"
    file.write_text("x")
    out = out.replace("FILE", str(file))
    fails(["distill", "--data", str(store), *RANDOM, "--out", out], capsys, "cannot write in")
    assert file.read_text() == "x"


def test_a_full_disk_when_the_json_is_written_loses_no_result(store, tmp_path, monkeypatch, capsys):
    target = tmp_path / "r.json"

    real_replace = os.replace

    def full(src: str, dst: str) -> None:  # the disk fills up as the JSON goes into place
        if Path(dst) == target:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr("avdd.files.os.replace", full)
    assert main(["evaluate", "--train", str(store), "--test", str(store), "--num-eval", "1", "--epochs", "1",
                 "--json", str(target), "-q"]) == 1
    out, err = capsys.readouterr()
    assert "over 1 network(s)" in out  # the result was printed before the write failed
    assert err == f"avdd: error: {target}: cannot write (No space left on device)\n"
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == ["data"]


def test_an_unforeseen_file_system_error_is_one_line_naming_the_path(store, tmp_path, monkeypatch, capsys):
    import avdd.cli.distill

    def broken(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/somewhere/set")

    monkeypatch.setattr(avdd.cli.distill, "distill", broken)
    err = fails(["distill", "--data", str(store), *RANDOM, "--out", str(tmp_path / "set")], capsys)
    assert err == "avdd: error: /somewhere/set: Read-only file system\n"
