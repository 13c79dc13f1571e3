"""``avdd run --jobs N``: cells in worker processes, shared steps once, outputs as with one job."""

import json
import multiprocessing
import os
import signal

import pytest
import torch

from avdd.cli import main
from avdd.errors import AvddError
from avdd.experiments.parallel import run_groups, share_groups
from avdd.experiments.runner import check_jobs, run_experiment
from test_runner import experiment

# two sets (random, dm), each evaluated by two fusion heads, and a dm cell whose distillation fails
GRID = {"method": ["random", "dm"], "ipc": [1], "fusion": ["ensemble", "concat"]}


def test_share_groups_are_the_connected_components_largest_first():
    keys = [{"a"}, {"b"}, set(), {"a", "c"}, {"c"}, {"b"}, {"d"}]
    assert share_groups(keys) == [[0, 3, 4], [1, 5], [2], [6]]
    assert share_groups([]) == []


def posting_worker(group, post):
    """Posts each index; index 1 dies as a killed process would."""
    for index in group:
        if index == 1:
            os._exit(3)
        post("outcome", index, index * 10)


def test_a_worker_that_dies_loses_only_its_own_group():
    received = {}
    lost = run_groups([[0, 1], [2]], posting_worker, 2, lambda kind, index, payload: received.update({index: payload}))
    assert lost == {0: 3} and received == {0: 0, 2: 20}


def warning_worker(group, post):
    import warnings

    warnings.warn("the cache is not used", stacklevel=1)
    post("outcome", group[0], None)


def test_a_workers_warning_is_one_avdd_line(capfd):
    run_groups([[0]], warning_worker, 1, lambda kind, index, payload: None)
    err = capfd.readouterr().err
    assert "avdd: warning: the cache is not used\n" in err and "UserWarning" not in err


def test_bad_jobs_are_refused():
    with pytest.raises(AvddError, match="invalid run settings: jobs=0"):
        check_jobs(0, torch.device("cpu"), None)
    with pytest.raises(AvddError, match="--jobs 2 runs cells side by side on CPU cores only; on cuda"):
        check_jobs(2, torch.device("cuda"), None)
    with pytest.raises(AvddError, match="the tracker factory must be picklable"):
        check_jobs(2, torch.device("cpu"), lambda name: None)
    check_jobs(1, torch.device("cuda"), lambda name: None)  # one job: as before


@pytest.mark.parametrize("value", ["0", "-1"])
def test_cli_refuses_jobs_below_one_when_parsed(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "exp.yaml", "--out", str(tmp_path / "run"), "--jobs", value])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"argument --jobs: must be an integer ≥ 1, got '{value}'")


def set_arrays(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted((out / "sets").rglob("*.npy"))}


@pytest.fixture
def one_thread(monkeypatch):
    """One thread here and in the workers (who inherit the environment): equal numerics."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_jobs_give_the_outputs_of_one_and_run_each_shared_set_once(tiny_store, tmp_path, one_thread):
    exp = experiment(tiny_store, grid=GRID)
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run_experiment(exp, serial, progress=False, log=lambda line: None)
    lines = []
    outcomes = run_experiment(exp, parallel, progress=False, log=lines.append, jobs=2)
    assert [o.status for o in outcomes] == ["done"] * 4
    results = [json.loads((out / "results.json").read_text()) for out in (serial, parallel)]
    assert results[0] == results[1]
    assert (serial / "tables.md").read_text() == (parallel / "tables.md").read_text()
    assert set_arrays(serial) == set_arrays(parallel) and set_arrays(serial)
    # one distillation per set, each line under its cell's [i/n]; the second head of a set reuses it
    distilling = [line for line in lines if "  sets/" in line]
    assert len(distilling) == 2 and {line.split()[0] for line in distilling} == {"[1/4]", "[3/4]"}
    assert lines[-1] == "4 cells: 4 run, 0 cached, 0 failed"

    lines.clear()  # everything cached: no worker at all
    run_experiment(exp, parallel, progress=False, log=lines.append, jobs=2)
    assert lines[-1] == "nothing to do: all 4 cells were cached"


def test_a_cell_failing_in_a_worker_is_reported_and_the_others_go_on(tiny_store, tmp_path):
    exp = experiment(tiny_store, grid=GRID, methods={"dm": {"init": "nonsense"}})
    lines = []
    outcomes = run_experiment(exp, tmp_path / "run", progress=False, log=lines.append, jobs=2)
    assert [o.status for o in outcomes] == ["done", "done", "failed", "failed"]
    assert "nonsense" in outcomes[2].error
    assert any(line.startswith("[3/4]   FAILED: ") for line in lines)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [c["status"] for c in results["cells"]] == ["done", "done", "failed", "failed"]


def test_killed_workers_fail_their_cells_and_a_rerun_resumes(tiny_store, tmp_path):
    exp, out, lines = experiment(tiny_store, grid=GRID), tmp_path / "run", []

    def kill_workers_at_the_first_step(line):
        lines.append(line)
        if "  sets/" in line:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)

    outcomes = run_experiment(exp, out, progress=False, log=kill_workers_at_the_first_step, jobs=2)
    failed = [o for o in outcomes if o.status == "failed"]
    assert failed and all(o.error.startswith("its worker process ended (exit code -9)") for o in failed)
    assert json.loads((out / "results.json").read_text())["cells"][outcomes.index(failed[0])]["status"] == "failed"
    outcomes = run_experiment(exp, out, progress=False, log=lambda line: None, jobs=2)
    assert [o.status for o in outcomes] == ["done"] * 4
