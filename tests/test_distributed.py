"""Several processes under torchrun (gloo, CPU) give what one process gives; a killed rank resumes.

The torchrun tests start real jobs of 2 processes. Every process uses one thread (torchrun's default,
and ``one_thread`` for the serial references here), so that the comparisons are about sharding and
spreading alone; on the tiny store the results are then equal bit for bit: each class's losses,
gradients and updates involve only that class's samples, and every random draw is keyed by (seed,
iteration, class) or by network index, never by process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import avdd
from avdd import distributed
from avdd.cli import main
from avdd.data.store import Store, open_store
from avdd.device import resolve_device
from avdd.distill import api
from avdd.distill.checkpoint import load_checkpoint
from avdd.distill.dm import MatchingConfig, MatchingRun
from avdd.distill.matching import MatchingWeights
from avdd.distill.result import LOG_FILE, SyntheticSet, merge_shards
from avdd.distributed import Job, balanced_shards
from avdd.errors import AvddError
from avdd.evaluate.recognition import evaluate_recognition
from avdd.evaluate.retrieval import evaluate_retrieval
from avdd.training.protocol import EvalConfig
from conftest import make_tiny_store

AV = ("audio", "frame")
# AVDD with herding init from a trained embedding network (trained once, on rank 0), factor, JM, MGM
DISTILL = ["--method", "avdd", "--ipc", "2", "--seed", "3", "--iterations", "4", "--batch-real", "5",
           "--width", "8", "--embed-epochs", "1", "--checkpoint-every", "2", "--resume", "-q"]
SETTINGS = {"iterations": 4, "batch_real": 5, "width": 8, "embed_epochs": 1, "checkpoint_every": 2}
EVAL = EvalConfig(num_eval=3, epochs=2, seed=5)  # 3 networks over 2 processes: 2 + 1


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torchrun(*argv: str, kill_at: str = "") -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m avdd ARGV`` with this checkout's avdd; ``kill_at``
    "RANK:N" runs it through tests/kill_rank.py instead (that process dies after iteration N)."""
    src = str(Path(avdd.__file__).parents[1])
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
                   "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               *([str(Path(__file__).with_name("kill_rank.py")), kill_at] if kill_at else ["-m", "avdd"]), *argv]
    # the timeout only keeps a hung job from hanging the suite
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store of its own (the embedding network's cache lands in it); 3 classes over 2 processes
    are shared as classes 0, 2 and class 1, so the gathered set interleaves the shares."""
    return make_tiny_store(tmp_path_factory.mktemp("dist") / "source", num_classes=3)


@pytest.fixture(scope="module")
def serial_set(source: Store, tmp_path_factory: pytest.TempPathFactory) -> Store:
    with one_thread():
        return api.distill(source.path, tmp_path_factory.mktemp("serial") / "set", "avdd", modalities=AV, ipc=2,
                           seed=3, progress=False, **SETTINGS)


def assert_same_arrays(got: Path, want: Store) -> None:
    for key in (*AV, "labels"):
        a, b = np.load(got / f"train_{key}.npy"), np.load(want.path / f"train_{key}.npy")
        assert a.dtype == b.dtype and np.array_equal(a, b), key


def assert_same_set(got: Path, want: Store) -> None:
    assert_same_arrays(got, want)
    got_provenance, want_provenance = dict(open_store(got).provenance), dict(want.provenance)
    assert (got_provenance.pop("world_size"), want_provenance.pop("world_size")) == (2, 1)
    assert got_provenance == want_provenance


def leftovers(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.checkpoint*"))


def distill_argv(source: Store, out: Path) -> list[str]:
    return ["distill", "--data", str(source.path), "--out", str(out), "--device", "cpu", *DISTILL]


# -- jobs of 2 processes ---------------------------------------------------------------------------
def test_two_processes_distill_the_store_one_process_does(source, serial_set, tmp_path):
    out = tmp_path / "set"
    shutil.rmtree(source.path / "cache")  # the job's main process trains the embedding network again
    done = torchrun(*distill_argv(source, out))
    assert done.returncode == 0, done.stderr
    assert_same_set(out, serial_set)
    assert done.stdout.count("tiny-avdd") == 1  # the main process alone reports
    assert not leftovers(out)
    # logged losses are sums over classes: the shards' sums add up to the serial sums (float rounding)
    got, want = (json.loads((p / LOG_FILE).read_text())["losses"] for p in (out, serial_set.path))
    assert [r["iteration"] for r in got] == [1, 2, 3, 4]
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-5)


def test_a_killed_rank_is_resumed_by_rerunning_the_command(source, serial_set, tmp_path):
    out = tmp_path / "set"
    killed = torchrun(*distill_argv(source, out), kill_at="1:3")
    assert killed.returncode != 0
    assert not out.exists()  # no partial store
    rank1 = api.checkpoint_path(out, Job(1, 2))
    assert load_checkpoint(rank1)["iteration"] == 2  # the last checkpoint before rank 1 died
    rerun = torchrun(*distill_argv(source, out))
    assert rerun.returncode == 0, rerun.stderr
    assert_same_set(out, serial_set)
    assert not leftovers(out)


def test_a_coreset_is_selected_by_the_main_process_alone(source, tmp_path):
    out = tmp_path / "herding"
    done = torchrun("distill", "--data", str(source.path), "--out", str(out), "--method", "herding", "--ipc", "3",
                    "--embed-source", "random", "--device", "cpu", "-q")
    assert done.returncode == 0, done.stderr
    serial = api.distill(source.path, tmp_path / "serial", "herding", modalities=AV, ipc=3, progress=False,
                         embed_source="random")
    assert open_store(out).provenance["selection"] == serial.provenance["selection"]
    assert_same_arrays(out, serial)


def test_distributed_evaluation_equals_serial(source, serial_set, tmp_path):
    recognition, retrieval = tmp_path / "recognition.json", tmp_path / "retrieval.json"
    common = ["--train", str(serial_set.path), "--test", str(source.path), "--num-eval", "3", "--epochs", "2",
              "--seed", "5", "--device", "cpu", "-q"]
    done = torchrun("evaluate", *common, "--json", str(recognition))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("over 3 network(s)") == 1
    done = torchrun("retrieve", *common, "--subset", "9", "--subsets", "2", "--json", str(retrieval))
    assert done.returncode == 0, done.stderr
    with one_thread():
        serial = evaluate_recognition(serial_set, source, EVAL, progress=False).to_json()
        serial_retrieval = evaluate_retrieval(serial_set, source, EVAL, subset=9, subsets=2, progress=False).to_json()
    got = json.loads(recognition.read_text())
    assert got["accuracy"] == serial["accuracy"] and len(got["accuracy"]["runs"]) == 3
    # rank 0's networks 0 and 2 trained together, rank 1's network 1 alone: the same accuracies
    done = torchrun("evaluate", *common, "--networks-together", "2", "--json", str(recognition))
    assert done.returncode == 0, done.stderr
    assert json.loads(recognition.read_text())["accuracy"]["runs"] == serial["accuracy"]["runs"]
    got = json.loads(retrieval.read_text())
    for direction in ("a2v", "v2a"):
        assert got[direction] == serial_retrieval[direction] and len(got[direction]["r1"]["runs"]) == 6


# -- the pieces, in one process --------------------------------------------------------------------
def test_balanced_shards_cover_every_class_once_and_balance_the_cost():
    costs = [133, 133, 40, 133, 10, 133, 60, 133]
    shards = balanced_shards(costs, 3)
    assert shards == balanced_shards(costs, 3)  # deterministic
    assert sorted(c for s in shards for c in s) == list(range(len(costs)))
    assert all(s == sorted(s) for s in shards)
    loads = [sum(costs[c] for c in s) for s in shards]
    assert max(loads) - min(loads) <= max(costs)
    assert balanced_shards([1] * 5, 2) == [[0, 2, 4], [1, 3]]


def test_sharded_runs_merge_into_the_serial_run(tiny_store):
    config = MatchingConfig(iterations=3, batch_real=5, weights=MatchingWeights(1, 10, 10), encoder={"width": 8})

    def run(classes):
        matching = MatchingRun(tiny_store.split("train"), AV, ipc=2, seed=3, config=config, classes=classes)
        matching.run(progress=False)
        return SyntheticSet(matching.stored(), matching.labels, log={"losses": matching.history})

    whole = run(None)
    # at seed 3 class 1's frames draw an augmentation no other class draws at iteration 2 (the case
    # DSA.apply must regroup like any other for the gradients to match bit for bit)
    merged = merge_shards([run([0, 2]), run([1])])
    assert torch.equal(merged.labels, whole.labels)
    for m in AV:
        assert torch.equal(merged.data[m], whole.data[m]), m
    for got, want in zip(merged.log["losses"], whole.log["losses"], strict=True):
        assert got == pytest.approx(want, rel=1e-5)


def test_more_processes_than_classes_is_a_clear_error(tiny_store, tmp_path, monkeypatch):
    monkeypatch.setattr("avdd.distill.dm.current", lambda: Job(0, 4))
    with pytest.raises(AvddError, match="4 processes for 3 classes: each process distills whole classes"):
        api.distill(tiny_store.path, tmp_path / "x", "dm", modalities=AV, ipc=1, progress=False, iterations=1)


def test_checkpoints_of_another_process_count_are_refused(tiny_store, tmp_path):
    out = tmp_path / "set"
    api.checkpoint_path(out, Job(0, 2)).write_bytes(b"")
    with pytest.raises(AvddError, match="left by a run with another number of processes"):
        api.distill(tiny_store.path, out, "dm", modalities=AV, ipc=1, progress=False, resume=True, iterations=1)
    with pytest.raises(AvddError, match="pass --resume"):
        api.distill(tiny_store.path, out, "dm", modalities=AV, ipc=1, progress=False, iterations=1)


def test_a_job_of_one_spreads_to_a_serial_loop():
    assert distributed.current() == Job()
    assert distributed.spread(4, lambda i: i * i) == [0, 1, 4, 9]
    assert distributed.gather_to_main("x") == ["x"] and distributed.main_first(lambda: 7) == 7


def test_one_process_verbs_refuse_to_run_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["data", "list"]) == 1
    assert "avdd: error: [rank 1] avdd data runs as one process" in capsys.readouterr().err


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(AvddError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(AvddError, match="unknown device 'gpu7'"):
        resolve_device("gpu7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device("cuda:2") == torch.device("cuda", 2)
    with pytest.raises(AvddError, match="only 4 GPU"):
        resolve_device("cuda:4")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("cuda") == resolve_device(None) == torch.device("cuda", 3)
