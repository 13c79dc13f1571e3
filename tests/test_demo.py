import avdd.experiments.runner as runner
from avdd.demo import METHODS, DemoSettings, run_demo
from avdd.experiments.grid import expand
from avdd.experiments.runner import Runner
from avdd.experiments.tables import format_value
from avdd.training.protocol import EvalConfig
from conftest import assert_one_networks_accuracy


def test_demo_runs_every_method_and_reuses_its_work(tiny_store, tmp_path, monkeypatch):
    settings = DemoSettings(iterations=1, batch_real=4, embed_epochs=1, num_eval=1, epochs=1, width=8)
    outcomes = run_demo(tmp_path, settings, progress=False, data=tiny_store, log=lambda line: None)
    assert [o.cell.method for o in outcomes] == list(METHODS)
    assert all(o.status == "done" for o in outcomes)
    table = (tmp_path / "tables.md").read_text()
    for o in outcomes:
        accuracy = o.metrics["accuracy"]
        assert_one_networks_accuracy(accuracy, tiny_store.split("test"))
        assert f"| {o.cell.method} | {format_value('accuracy', accuracy['mean'], accuracy['std'])} |" in table

    def must_not_run(*args, **kwargs):
        raise AssertionError("finished work was redone")

    monkeypatch.setattr(runner, "distill", must_not_run)
    monkeypatch.setattr(runner, "evaluate_recognition", must_not_run)
    again = run_demo(tmp_path, settings, progress=False, data=tiny_store, log=lambda line: None)
    assert [o.metrics for o in again] == [o.metrics for o in outcomes]
    assert EvalConfig().epochs == 30  # the demo evaluates with the reference protocol by default
    assert DemoSettings().epochs == 30


def test_demo_settings_reach_the_methods_that_take_them(tmp_path):
    experiment = DemoSettings(iterations=7, width=8).experiment("avdigits", tmp_path / "avdigits")
    assert experiment.view["distill"] == {"iterations": 7, "batch_real": 32, "embed_epochs": 1, "width": 8}
    assert experiment.view["grid"]["method"] == list(METHODS)


def test_demo_protocol_reaches_dm_avdd_and_the_evaluation_and_clean_keeps_earlier_keys(tiny_store, tmp_path):
    def planned(settings: DemoSettings) -> dict[str, tuple[dict, str, str]]:
        runner = Runner(settings.experiment(tiny_store.name, tiny_store.path), tmp_path, progress=False)
        plans = {cell.method: runner.plan(cell) for cell in expand(runner.experiment)}
        return {m: (d.settings["settings"], config.protocol, d.key) for m, (config, d, _) in plans.items()}

    clean, reference = planned(DemoSettings()), planned(DemoSettings(protocol="reference"))
    assert all(protocol == "clean" and "protocol" not in s for s, protocol, _ in clean.values())
    for method, (settings, protocol, key) in reference.items():
        assert protocol == "reference"
        assert settings.get("protocol") == ("reference" if method in ("dm", "avdd") else None)
        assert (key == clean[method][2]) == (method not in ("dm", "avdd"))  # coresets' sets are shared
    # the default's keys do not depend on the protocol setting existing: a set made before it is reused
    explicit = DemoSettings().experiment(tiny_store.name, tiny_store.path)
    assert "protocol" not in explicit.view["distill"] and "protocol" not in explicit.view["evaluate"]
