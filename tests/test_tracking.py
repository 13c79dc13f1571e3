"""Experiment tracking (--log tensorboard|wandb): what a run logs, read back with each tool's own
reader; that logging changes no result; that a failing logger is a warning, never a failed run."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import avdd.tracking as tracking
from avdd.cli import main
from avdd.data.sources.reference_pt import import_reference
from avdd.data.store import Store, open_store
from avdd.errors import AvddError
from avdd.experiments.config import resolve
from avdd.experiments.runner import run_experiment

ITERATIONS = 4


def distill_argv(store: Store, out: Path, *extra: str) -> list[str]:
    return ["distill", "-q", "--data", str(store.path), "--method", "avdd", "--ipc", "1", "--iterations",
            str(ITERATIONS), "--batch-real", "4", "--width", "8", "--out", str(out), *extra]


def events(log_dir: Path) -> EventAccumulator:
    (path,) = glob.glob(str(log_dir / "*" / "events.out.tfevents.*"))
    accumulator = EventAccumulator(path, size_guidance={"scalars": 0, "images": 0, "audio": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def same_set(a: Path, b: Path) -> None:
    x, y = open_store(a).split("train"), open_store(b).split("train")
    assert x.arrays.keys() == y.arrays.keys()
    for m in x.arrays:
        assert np.array_equal(x.arrays[m], y.arrays[m])  # bit-identical
    assert np.array_equal(x.labels, y.labels)


def test_tensorboard_holds_the_losses_and_sample_grids_and_changes_nothing(tiny_store: Store, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    evaluate = ("--eval-every", "2", "--eval-epochs", "1")
    assert main(distill_argv(tiny_store, tmp_path / "plain", *evaluate)) == 0
    assert main(distill_argv(tiny_store, tmp_path / "logged", *evaluate, "--log", "tensorboard", "--log-dir", str(logs),
                             "--log-every", "2")) == 0
    same_set(tmp_path / "plain", tmp_path / "logged")

    run = events(logs)
    assert Path(run.path).parent.name == "avdd-ipc1-audio+frame-s0"  # the run's name, from its settings
    history = json.loads((tmp_path / "logged" / "distill_log.json").read_text())["losses"]
    for term in ("base", "joint", "gap", "total"):
        logged = run.Scalars(f"loss/{term}")
        assert [e.step for e in logged] == [1, 2, 3, 4]
        assert [e.value for e in logged] == pytest.approx([h[term] for h in history], rel=1e-6)
    evaluations = json.loads((tmp_path / "logged" / "distill_log.json").read_text())["evaluations"]
    accuracy = run.Scalars("intermediate/accuracy")
    assert [e.step for e in accuracy] == [2, 4]
    assert [e.value for e in accuracy] == pytest.approx([e["mean"] for e in evaluations])
    for modality in ("audio", "frame"):
        grids = run.Images(f"samples/{modality}")
        assert [g.step for g in grids] == [2, 4]  # every 2 iterations, and the last
        assert grids[0].width > 100 and grids[0].height > 100
    assert "settings/text_summary" in run.Tags()["tensors"]  # the provenance


def test_wandb_writes_an_offline_run(tiny_store: Store, tmp_path: Path, offline_wandb: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    assert main(distill_argv(tiny_store, tmp_path / "set", "--log", "wandb", "--log-dir", str(logs))) == 0
    assert "avdd: warning" not in capsys.readouterr().err
    (run_dir,) = (logs / "wandb").glob("offline-run-*")
    (records,) = run_dir.glob("run-*.wandb")
    record = records.read_bytes()  # wandb's own record of the run: its name, history and config
    assert b"avdd-ipc1-audio+frame-s0" in record and b"loss/total" in record and b"source_dataset" in record
    grids = sorted(p.name.split("_")[0] for p in (run_dir / "files" / "media" / "images" / "samples").iterdir())
    assert grids == ["audio", "frame"]  # at the last iteration (the default interval is longer than the run)


def test_a_failing_logger_is_a_warning_and_the_run_goes_on(tiny_store: Store, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    def broken(self: tracking.TensorBoard, values: object, step: int) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(tracking.TensorBoard, "scalars", broken)
    assert main(distill_argv(tiny_store, tmp_path / "plain")) == 0
    assert main(distill_argv(tiny_store, tmp_path / "set", "--log", "tensorboard",
                             "--log-dir", str(tmp_path / "logs"))) == 0
    err = capsys.readouterr().err
    assert err.count("avdd: warning:") == 1  # once, then the tracker is quiet
    assert "logging scalars of avdd-ipc1-audio+frame-s0 failed (OSError: No space left on device)" in err
    same_set(tmp_path / "plain", tmp_path / "set")


def test_a_backend_that_cannot_start_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(log_dir: Path, name: str) -> tracking.Backend:
        raise ModuleNotFoundError("No module named 'wandb'")

    monkeypatch.setitem(tracking.BACKENDS, "wandb", missing)
    with pytest.warns(UserWarning, match=r"cannot log to wandb .*pip install 'avdd\[wandb\]'"):
        tracker = tracking.open_tracker("wandb", tmp_path, "x")
    assert not tracker.active
    tracker.scalars({"loss": 1.0}, 1)  # nothing, quietly
    with pytest.raises(AvddError, match="--log must be one of none, tensorboard, wandb, got 'mlflow'"):
        tracking.open_tracker("mlflow", tmp_path, "x")


@pytest.fixture
def offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_sounds_of_front_end_spectrograms_go_to_the_audio_panel(tmp_path: Path, offline_wandb: None) -> None:
    g = torch.Generator().manual_seed(0)
    files = {}
    for split in ("train", "test"):
        files[split] = tmp_path / f"{split}.pt"
        torch.save({f"audio_{split}": torch.randn(4, 1, 128, 56, generator=g) * 10 - 40,
                    f"images_{split}": torch.randint(0, 256, (4, 3, 8, 8), generator=g, dtype=torch.uint8),
                    f"labels_{split}": torch.tensor([0, 1, 0, 1])}, files[split])
    store = import_reference(tmp_path / "store", train=files["train"], test=files["test"], progress=False)
    split = store.split("train")
    stored = {m: torch.from_numpy(np.array(split.arrays[m][:2])).float() for m in ("audio", "frame")}
    with tracking.open_tracker("tensorboard", tmp_path / "logs", "sounds") as tracker:
        tracker.samples(store, stored, torch.tensor([0, 1]), factor=2, step=7)
    run = events(tmp_path / "logs")
    assert sorted(run.Tags()["audio"]) == ["sound/000-0", "sound/001-1"]
    (clip,) = run.Audio("sound/000-0")
    assert clip.step == 7 and clip.sample_rate == 11000 and clip.length_frames == 11000  # 1 s

    with tracking.open_tracker("wandb", tmp_path / "wandb-logs", "sounds") as tracker:
        tracker.samples(store, stored, torch.tensor([0, 1]), factor=2, step=7)
        assert tracker.active  # no warning turned it off
    (media,) = (tmp_path / "wandb-logs" / "wandb").glob("offline-run-*/files/media")
    assert not list((tmp_path / "wandb-logs").glob(".avdd-sounds-*"))  # the clips' folder went at close
    assert sorted(p.name.split("_")[0] for p in (media / "audio" / "sound").iterdir()) == ["000-0", "001-1"]


def test_the_config_log_key_and_the_runner(tiny_store: Store, tmp_path: Path) -> None:
    doc = {"experiment": "tracked", "dataset": "tiny",
           "datasets": {"tiny": {"data": str(tiny_store.path), "schedule": "s"}},
           "schedules": {"s": {"seeds": [0], "distill": {"iterations": 2, "batch_real": 4, "width": 8},
                               "evaluate": {"num_eval": 1, "epochs": 1, "width": 8}}},
           "grid": {"method": ["dm"], "ipc": [1]}, "log": {"backend": "tensorboard", "every": 1}}
    experiment = resolve(doc)
    assert experiment.view["log"] == {"backend": "tensorboard", "dir": None, "every": 1}
    with pytest.raises(AvddError, match=r"log.backend='mlflow' \(must be one of none, tensorboard, wandb\)"):
        resolve(doc, ["log.backend=mlflow"])
    with pytest.raises(AvddError, match=r"log.every=0 \(must be an integer ≥ 1\)"):
        resolve(doc, ["log.every=0"])

    logs = tmp_path / "logs"
    run_experiment(experiment, tmp_path / "run", progress=False, log=lambda line: None,
                   tracker=lambda name: tracking.open_tracker("tensorboard", logs, name, every=1))
    runs = sorted(p.name for p in logs.iterdir())
    assert runs[0] == "tracked" and runs[1].startswith("tracked-dm-ipc1-audio+frame-s0-")
    cells = EventAccumulator(str(logs / "tracked"))
    cells.Reload()
    assert "results/text_summary" in cells.Tags()["tensors"]
    distilled = EventAccumulator(str(logs / runs[1]), size_guidance={"images": 0})
    distilled.Reload()
    assert [e.step for e in distilled.Scalars("loss/total")] == [1, 2]
    assert [e.step for e in distilled.Images("samples/frame")] == [1, 2]
