"""Resuming safely (issue 18): a checkpoint loads no code, a damaged one is one line, one made from
other data or further than --iterations is refused, changing --checkpoint-every is not, and SIGTERM
saves a checkpoint as Ctrl-C does."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from avdd.cli import interrupted_message, main
from avdd.data.store import open_store
from avdd.distill import api
from avdd.distill.checkpoint import interrupts_deferred, load_checkpoint, save_checkpoint
from avdd.distill.dm import MatchingRun
from avdd.distill.experts import ExpertSet, expert_file
from avdd.distill.registry import METHODS
from avdd.errors import AvddError
from conftest import make_tiny_store

AV = ("audio", "frame")
DM = ["--method", "dm", "--ipc", "1", "--width", "8", "--batch-real", "4", "-q"]


def dm_run(store, iterations: int, **settings) -> MatchingRun:
    config = METHODS.get("dm").build({"iterations": iterations, "batch_real": 4, "width": 8, **settings}, "dm").config()
    return MatchingRun(store.split("train"), AV, 1, 0, config)


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("avdd: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


class Planted:
    """Unpickling this creates a file: what a checkpoint planted by someone else could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def plant(path: Path, marker: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"iteration": 1, "settings": {}, "payload": Planted(marker)}, path)
    return path.read_bytes()


# -- item 3: a checkpoint runs no code ------------------------------------------------------------
def test_a_planted_checkpoint_runs_no_code_on_resume(tiny_store, tmp_path, capsys):
    out, marker = tmp_path / "set", tmp_path / "pwned"
    planted = plant(api.checkpoint_path(out), marker)
    fails(["distill", "--data", str(tiny_store.path), *DM, "--iterations", "2", "--out", str(out), "--resume"],
          capsys, "not an avdd checkpoint", "could run code", "delete it to start over")
    assert not marker.exists() and not out.exists()
    assert api.checkpoint_path(out).read_bytes() == planted


def test_a_planted_expert_runs_no_code(tiny_experts, tmp_path):
    experts, marker = tmp_path / "experts", tmp_path / "pwned"
    shutil.copytree(tiny_experts.path, experts)
    plant(experts / expert_file(0), marker)
    with pytest.raises(AvddError, match="expert_000.pt: not an avdd checkpoint.*rerun `avdd experts`"):
        ExpertSet.open(experts).trajectory(0)
    assert not marker.exists()


def test_checkpoints_hold_only_plain_values(tiny_store, tmp_path):
    ck = tmp_path / "ck.pt"
    dm_run(tiny_store, 2).run(checkpoint=ck, progress=False)
    state = torch.load(ck, weights_only=True)  # what a weights-only load reads is all there is
    assert state["iteration"] == 2 and set(state["synthetic"]) == set(AV)
    save_checkpoint(ck, {"n": np.int64(3), "x": np.zeros(2, np.float32), "p": Path("a")})
    plain = load_checkpoint(ck)
    assert type(plain["n"]) is int and plain["p"] == "a" and torch.equal(plain["x"], torch.zeros(2))


def test_a_full_disk_keeps_the_previous_checkpoint_and_names_the_file(tiny_store, tmp_path, monkeypatch):
    ck = tmp_path / "ck.pt"
    dm_run(tiny_store, 1).run(checkpoint=ck, progress=False)
    before = ck.read_bytes()

    def full(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(AvddError, match=f"^{re.escape(str(ck))}: cannot write \\(No space left on device\\)$"):
        dm_run(tiny_store, 2).run(checkpoint=ck, progress=False)
    assert ck.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


# -- item 9: damaged checkpoints --------------------------------------------------------------------
GARBAGE = bytes(range(7, 256)) + bytes(range(51))  # fixed bytes: random ones made this test flaky
DAMAGED_BYTES = {"garbage": GARBAGE, "empty": b"",
                 "an unknown pickle protocol": b"\x80\xf7" + GARBAGE}  # torch warns about it before it fails


@pytest.mark.parametrize("damage", ["truncated", "a list", *DAMAGED_BYTES])
def test_a_damaged_checkpoint_is_one_line(tiny_store, tmp_path, damage, capsys):
    out = tmp_path / "set"
    ck = api.checkpoint_path(out)
    dm_run(tiny_store, 2).run(checkpoint=ck, progress=False)
    whole = ck.read_bytes()
    if damage == "a list":
        torch.save([1, 2], ck)
    else:
        ck.write_bytes(DAMAGED_BYTES.get(damage, whole[: len(whole) // 2]))
    before = ck.read_bytes()
    fails(["distill", "--data", str(tiny_store.path), *DM, "--iterations", "2", "--out", str(out), "--resume"],
          capsys, str(ck), "delete it to start over")
    assert ck.read_bytes() == before and not out.exists()


DAMAGES = {  # a field of a real checkpoint, what it is changed to, the error that says so
    "no data fingerprint": ("data", None, "not a checkpoint of this avdd"),
    "settings not a mapping": ("settings", "x", "damaged checkpoint"),
    "negative iteration": ("iteration", -1, "damaged checkpoint"),
    "synthetic of another shape": ("synthetic", {"audio": torch.zeros(1)}, "does not fit this run"),
    "optimizer of another layout": ("optimizer", {"state": {}, "param_groups": []}, "does not fit this run"),
}


@pytest.mark.parametrize("field, value, message", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_checkpoint_that_does_not_fit_is_one_line(tiny_store, tmp_path, field, value, message):
    ck = tmp_path / "ck.pt"
    dm_run(tiny_store, 1).run(checkpoint=ck, progress=False)
    state = load_checkpoint(ck)
    if value is None:
        del state[field]
    else:
        state[field] = value
    save_checkpoint(ck, state)
    with pytest.raises(AvddError, match=message) as caught:
        dm_run(tiny_store, 2).load_state(ck)
    assert "\n" not in str(caught.value)


# -- item 6: resume only what this run can continue honestly ----------------------------------------
def test_a_checkpoint_made_from_other_data_is_refused(tiny_store, tmp_path, capsys):
    # same meta.json (classes, shapes, statistics), other samples: only the data tells them apart
    other = make_tiny_store(tmp_path / "other", seed=1)
    assert (other.path / "meta.json").read_bytes() == (tiny_store.path / "meta.json").read_bytes()
    out = tmp_path / "set"
    ck = api.checkpoint_path(out)
    dm_run(tiny_store, 2).run(checkpoint=ck, progress=False)
    before = ck.read_bytes()
    with pytest.raises(AvddError, match="was made from other data than"):
        dm_run(other, 4).load_state(ck)
    fails(["distill", "--data", str(other.path), *DM, "--iterations", "4", "--out", str(out), "--resume"], capsys,
          "was made from other data than", "resume with the data it was made from")
    assert ck.read_bytes() == before and not out.exists()


def test_a_moved_store_still_resumes(tiny_store, tmp_path):
    ck = tmp_path / "ck.pt"
    dm_run(tiny_store, 2).run(checkpoint=ck, progress=False)
    moved = open_store(shutil.copytree(tiny_store.path, tmp_path / "elsewhere"))
    assert dm_run(moved, 3).load_state(ck)["iteration"] == 2


def test_fewer_iterations_than_the_checkpoint_ran_are_refused(tiny_store, tmp_path, capsys):
    out = tmp_path / "set"
    ck = api.checkpoint_path(out)
    dm_run(tiny_store, 3).run(checkpoint=ck, progress=False)
    with pytest.raises(AvddError, match="has run 3 iterations, more than --iterations 2"):
        dm_run(tiny_store, 2).load_state(ck)
    fails(["distill", "--data", str(tiny_store.path), *DM, "--iterations", "1", "--out", str(out), "--resume"],
          capsys, "has run 3 iterations, more than --iterations 1", "--iterations 3 or more")
    assert not out.exists()


def test_changing_only_checkpoint_every_resumes_to_the_uninterrupted_result(tiny_store, tmp_path):
    whole = dm_run(tiny_store, 4)
    whole.run(progress=False)
    ck = tmp_path / "ck.pt"
    dm_run(tiny_store, 2, checkpoint_every=1).run(checkpoint=ck, progress=False)
    resumed = dm_run(tiny_store, 4, checkpoint_every=50)
    assert resumed.load_state(ck)["iteration"] == 2
    resumed.run(checkpoint=ck, progress=False)
    for m in AV:
        torch.testing.assert_close(resumed.synthetic[m], whole.synthetic[m], rtol=0, atol=0)


# -- item 10: SIGTERM saves a checkpoint as Ctrl-C does ----------------------------------------------
def test_sigterm_is_deferred_to_the_end_of_a_step():
    finished = False
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        finished = True
    assert finished


def test_sigterm_keeps_a_checkpoint_and_resume_gives_the_uninterrupted_set(tiny_store, tmp_path, monkeypatch,
                                                                          capsys):
    argv = ["distill", "--data", str(tiny_store.path), *DM, "--iterations", "4"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    original_step = MatchingRun.step

    def terminated_step(self):
        if self.iteration == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler stopping the job would
        return original_step(self)

    monkeypatch.setattr(MatchingRun, "step", terminated_step)
    out = tmp_path / "set"
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 130
    ck = api.checkpoint_path(out)
    assert capsys.readouterr().err == (f"avdd: interrupted; the checkpoint {ck} was kept; rerun the same command "
                                       "with --resume to continue from it\n")
    assert load_checkpoint(ck)["iteration"] == 3  # the step under way was finished, then saved
    monkeypatch.setattr(MatchingRun, "step", original_step)
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    for m in AV:
        np.testing.assert_array_equal(open_store(out).split("train").arrays[m],
                                      open_store(tmp_path / "whole").split("train").arrays[m])


def test_sigterm_to_a_real_process_keeps_its_checkpoint(tiny_store, tmp_path):
    out = tmp_path / "set"
    argv = [sys.executable, "-m", "avdd", "distill", "--data", str(tiny_store.path), "--method", "dm", "--ipc", "1",
            "--width", "8", "--batch-real", "4", "--iterations", "100000", "--checkpoint-every", "100000",
            "--out", str(out)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
    seen = bytearray()

    def pump() -> None:
        for chunk in iter(lambda: proc.stderr.read1(256), b""):
            seen.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not re.search(rb" [1-9][0-9]*/100000", bytes(seen)):  # the progress bar: an iteration is done
            assert proc.poll() is None and time.monotonic() < deadline, bytes(seen).decode(errors="replace")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()  # never left running, whatever failed
        proc.wait()
    reader.join(timeout=10)
    last = bytes(seen).decode().replace("\r", "\n").strip().splitlines()[-1]
    ck = api.checkpoint_path(out)
    assert last == f"avdd: interrupted; the checkpoint {ck} was kept; rerun the same command with --resume to " \
                   "continue from it"
    assert load_checkpoint(ck)["iteration"] >= 1 and not out.exists()


def test_sigterm_stops_avdd_run_with_its_checkpoint_and_rerunning_continues(tiny_store, tmp_path, monkeypatch,
                                                                            capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": "t", "dataset": "tiny", "datasets": {"tiny": {"data": str(tiny_store.path), "schedule": "s"}},
        "schedules": {"s": {"seeds": [0], "distill": {"iterations": 3, "batch_real": 4, "width": 8},
                            "evaluate": {"num_eval": 1, "epochs": 1, "width": 8}}},
        "grid": {"method": ["dm"], "ipc": [1]}, "table": {"rows": ["method"], "columns": ["ipc"]}}))
    original_step = MatchingRun.step

    def terminated_step(self):
        if self.iteration == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_step(self)

    monkeypatch.setattr(MatchingRun, "step", terminated_step)
    argv = ["run", str(config), "--out", str(tmp_path / "run"), "-q"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert re.fullmatch(r"avdd: interrupted; the checkpoint \S+/sets/\.dm-\S+\.checkpoint\.pt was kept; rerun the "
                        r"same command to continue \(finished sets and cells are kept\)\n", err), err
    monkeypatch.setattr(MatchingRun, "step", original_step)
    assert main(argv) == 0


def test_the_interruption_message_says_how_each_verb_continues(tmp_path):
    ck = tmp_path / ".set.checkpoint.pt"
    assert interrupted_message("run", ck) == (f"interrupted; the checkpoint {ck} was kept; rerun the same command "
                                              "to continue (finished sets and cells are kept)")
    assert interrupted_message("run", None).endswith("rerun the same command to continue (finished sets and "
                                                     "cells are kept)")
    assert interrupted_message("distill", None) == "interrupted"  # nothing kept, nothing to resume
    assert interrupted_message("evaluate", None) == "interrupted"
