"""The experiment runner: caching by settings, shared distilled sets, failing cells, outputs."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import avdd.experiments.runner as runner
from avdd.cli import main
from avdd.distill.api import distill as real_distill
from avdd.distill.registry import METHODS, MethodSpec, RunContext
from avdd.distill.spec import setting
from avdd.errors import AvddError
from avdd.experiments.config import resolve
from avdd.experiments.runner import run_experiment
from avdd.ranges import PATH


def experiment(store, *overrides, grid=None, methods=None):
    doc = {
        "experiment": "test", "dataset": "tiny",
        "datasets": {"tiny": {"data": str(store.path), "schedule": "s"}},
        "schedules": {"s": {"seeds": [0], "distill": {"iterations": 1, "batch_real": 4, "width": 8},
                            "methods": methods or {}, "evaluate": {"num_eval": 1, "epochs": 1, "width": 8}}},
        "grid": grid or {"method": ["random", "dm"], "ipc": [1, 2], "fusion": ["ensemble", "concat"]},
        "table": {"rows": ["method"], "columns": ["ipc", "fusion"]},
    }
    return resolve(doc, overrides)


@pytest.fixture
def calls(monkeypatch):
    """Counts distillations (real ones) and evaluations (faked: accuracy = 0.1 × IPC)."""
    seen = {"distill": [], "evaluate": []}

    def counting_distill(data, out, method, **kwargs):
        seen["distill"].append((method, kwargs["ipc"], kwargs.get("iterations")))
        return real_distill(data, out, method, **kwargs)

    def fake_recognition(train, test, exp, config, device, progress):
        seen["evaluate"].append((train.provenance.get("method"), config.fusion, config.epochs))
        accuracy = 0.1 * train.provenance.get("ipc", 10)
        return {"accuracy": {"mean": accuracy, "std": 0.0, "runs": [accuracy]}}, {"fake": True}

    monkeypatch.setattr(runner, "distill", counting_distill)
    monkeypatch.setitem(runner.EVALUATIONS, "recognition", fake_recognition)
    return seen


def test_second_run_does_nothing_and_a_changed_setting_reruns_only_its_cells(tiny_store, tmp_path, calls):
    out = tmp_path / "run"
    first = run_experiment(experiment(tiny_store), out, progress=False, log=lambda line: None)
    # 4 sets (2 methods × 2 IPC), each evaluated with 2 fusion heads: one distillation per set
    assert sorted(calls["distill"]) == [("dm", 1, 1), ("dm", 2, 1), ("random", 1, None), ("random", 2, None)]
    assert len(calls["evaluate"]) == 8 and all(o.status == "done" and not o.cached for o in first)

    calls["distill"].clear(), calls["evaluate"].clear()
    lines = []
    again = run_experiment(experiment(tiny_store), out, progress=False, log=lines.append)
    assert calls == {"distill": [], "evaluate": []}
    assert all(o.cached for o in again) and lines[-1] == "nothing to do: all 8 cells were cached"
    assert [o.metrics for o in again] == [o.metrics for o in first]

    # DM's iterations change DM's sets only; random takes no such setting, so its cells stay cached
    run_experiment(experiment(tiny_store, "distill.iterations=2"), out, progress=False, log=lambda line: None)
    assert sorted(calls["distill"]) == [("dm", 1, 2), ("dm", 2, 2)]
    assert sorted(calls["evaluate"]) == [("dm", "concat", 1), ("dm", "concat", 1), ("dm", "ensemble", 1),
                                         ("dm", "ensemble", 1)]

    # an evaluation setting re-runs evaluations, never distillations
    calls["distill"].clear(), calls["evaluate"].clear()
    run_experiment(experiment(tiny_store, "distill.iterations=2", "evaluate.epochs=2"), out, progress=False,
                   log=lambda line: None)
    assert calls["distill"] == [] and len(calls["evaluate"]) == 8


def test_outputs_tables_and_the_failing_cell_reported_while_others_go_on(tiny_store, tmp_path, calls):
    out = tmp_path / "run"
    grid = {"method": ["random", "nonexistent"], "ipc": [1, 2], "fusion": ["ensemble"]}
    outcomes = run_experiment(experiment(tiny_store, grid=grid), out, progress=False, log=lambda line: None)
    assert [o.status for o in outcomes] == ["done", "done", "failed", "failed"]
    assert "unknown method 'nonexistent'" in outcomes[2].error
    results = json.loads((out / "results.json").read_text())
    assert [c["status"] for c in results["cells"]] == ["done", "done", "failed", "failed"]
    assert results["experiment"]["grid"] == grid
    tables = (out / "tables.md").read_text()
    assert "| random | 10.0 ± 0.0 | 20.0 ± 0.0 |" in tables and "| nonexistent | failed | failed |" in tables
    assert (out / "results.csv").read_text().count("\n") == 5
    assert (out / "config.yaml").is_file() and len(list((out / "cells").glob("*.json"))) == 2


def test_a_method_needing_experts_gets_them_once_or_fails_clearly(tiny_store, tmp_path, calls, monkeypatch):
    coreset = METHODS.get("random")

    @dataclass(frozen=True)
    class NeedsExperts:  # a stand-in for MTT: needs an experts directory
        experts: str = field(default="", metadata=setting("expert trajectories", PATH))

    def with_experts(context: RunContext, settings: NeedsExperts):
        assert (Path(settings.experts) / "trajectories.txt").read_text() == "2"
        return coreset.run(context, coreset.build({}, "random"))

    monkeypatch.setitem(METHODS._entries, "fake", MethodSpec(NeedsExperts, with_experts, "needs experts"))
    grid = {"method": ["random", "fake"], "ipc": [1, 2], "fusion": ["ensemble"]}
    methods = {"fake": {"experts": {"num_experts": 2}}}

    def failing_experts(store, out, **kwargs):
        raise AvddError("experts: no space left on the device")

    out = tmp_path / "failing"
    monkeypatch.setitem(runner.STEPS, "experts", failing_experts)
    outcomes = run_experiment(experiment(tiny_store, grid=grid, methods=methods), out, progress=False,
                              log=lambda line: None)
    assert [o.status for o in outcomes] == ["done", "done", "failed", "failed"]
    assert "experts: no space left on the device" in outcomes[2].error
    assert not (out / "experts").exists() or not any((out / "experts").iterdir())  # a failure is not cached

    built = []

    def fake_experts(store, out, *, modalities, device, progress, num_experts):
        built.append(modalities)
        out.mkdir()
        (out / "trajectories.txt").write_text(str(num_experts))

    monkeypatch.setitem(runner.STEPS, "experts", fake_experts)
    outcomes = run_experiment(experiment(tiny_store, grid=grid, methods=methods), out, progress=False,
                              log=lambda line: None)
    assert [o.status for o in outcomes] == ["done"] * 4, [o.error for o in outcomes]
    assert built == [("audio", "frame")]  # one experts step shared by both IPC cells
    assert len(list((out / "experts").iterdir())) == 1


def test_cli_run_prints_the_table_and_fails_on_a_bad_key(tiny_store, tmp_path, calls, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(
        f"dataset: tiny\ndatasets: {{tiny: {{data: {tiny_store.path}, schedule: s}}}}\n"
        "schedules: {s: {seeds: [0], evaluate: {num_eval: 1, epochs: 1}}}\n"
        "grid: {method: [random], ipc: [1]}\ntable: {rows: [method], columns: [ipc]}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 0
    assert "| random | 10.0 ± 0.0 |" in capsys.readouterr().out
    assert main(["run", str(config), "--set", "evaluate.nets=2", "--out", str(tmp_path / "run")]) == 1
    assert "unknown key 'nets' in evaluate" in capsys.readouterr().err


def test_missing_data_names_the_path(tmp_path):
    doc = {"dataset": "nowhere", "datasets": {"nowhere": {"data": str(tmp_path / "no"), "schedule": "s"}},
           "schedules": {"s": {}}, "grid": {"method": ["random"], "ipc": [1]}}
    with pytest.raises(AvddError, match="no nowhere store there"):
        run_experiment(resolve(doc), tmp_path / "run", progress=False, log=lambda line: None)
