from avdd.evaluate.recognition import EvalConfig
from avdd.quickstart import METHODS, DemoSettings, format_table, run_demo


def test_demo_runs_every_method_and_reuses_its_work(tiny_store, tmp_path, monkeypatch):
    settings = DemoSettings(iterations=1, batch_real=4, embed_epochs=1, num_eval=1, epochs=1, width=8)
    rows = run_demo(tmp_path, settings, progress=False, data=tiny_store)
    assert [r["method"] for r in rows] == list(METHODS)
    assert all(0.0 <= r["mean"] <= 1.0 and len(r["runs"]) == 1 for r in rows)

    def must_not_run(*args, **kwargs):
        raise AssertionError("finished work was redone")

    monkeypatch.setattr("avdd.quickstart.distill", must_not_run)
    monkeypatch.setattr("avdd.quickstart.evaluate_recognition", must_not_run)
    assert run_demo(tmp_path, settings, progress=False, data=tiny_store) == rows
    assert EvalConfig().epochs == 30  # the demo evaluates with the reference protocol by default
    assert DemoSettings().epochs == 30


def test_table_format():
    rows = [{"method": "avdd", "ipc": 1, "mean": 0.861, "std": 0.006, "runs": [0.855, 0.867]}]
    table = format_table(rows, "title")
    assert table.splitlines()[-1] == "| avdd | 1 | 86.1 ± 0.6 | 85.5 / 86.7 |"
