from pathlib import Path

import pytest
import torch

from avdd.distill.checkpoint import check_resumable, config_differences, load_checkpoint, save_checkpoint
from avdd.errors import AvddError


def test_round_trip_and_no_temporaries(tmp_path):
    path = tmp_path / "ck" / "state.pt"
    save_checkpoint(path, {"iteration": 7, "x": torch.arange(3)})
    state = load_checkpoint(path)
    assert state["iteration"] == 7 and torch.equal(state["x"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"]


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "state.pt"
    save_checkpoint(path, {"iteration": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot save")

    with pytest.raises(TypeError, match="not Unpicklable"):  # refused before anything is written
        save_checkpoint(path, {"iteration": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_corrupt_checkpoint_is_reported(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(b"junk")
    with pytest.raises(AvddError, match="unreadable checkpoint"):
        load_checkpoint(path)


def test_differences_are_listed():
    saved = {"ipc": 1, "lr": {"audio": 0.2, "frame": 0.2}, "seed": 0}
    current = {"ipc": 10, "lr": {"audio": 0.2, "frame": 0.1}, "seed": 0, "new": True}
    assert config_differences(saved, current) == [
        "ipc: checkpoint has 1, now 10",
        "lr.frame: checkpoint has 0.2, now 0.1",
        "new: checkpoint has '<unset>', now True",
    ]
    check_resumable(Path("ck.pt"), saved, dict(saved))  # same configuration: accepted
    with pytest.raises(AvddError, match="ck.pt: cannot resume.*ipc: checkpoint has 1, now 10"):
        check_resumable(Path("ck.pt"), saved, current)


def test_interrupt_is_deferred_to_the_end_of_the_block():
    import os
    import signal

    from avdd.distill.checkpoint import interrupts_deferred

    finished = False
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        finished = True  # the block still runs to its end
    assert finished
