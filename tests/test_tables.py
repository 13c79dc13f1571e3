"""The table formatter against hand-made results."""

from avdd.experiments.tables import build_table, to_csv, to_html, to_markdown


def cell(method, ipc, modalities, seed, runs=None, status="done", **metrics):
    metrics = {"accuracy": {"runs": runs}} if runs is not None else metrics
    return {"labels": {"method": method, "ipc": ipc, "modalities": modalities},
            "settings": {"method": method, "ipc": ipc, "modalities": modalities, "fusion": "ensemble"},
            "seed": seed, "status": status, "metrics": metrics if status == "done" else {},
            "error": None if status == "done" else "boom"}


RESULTS = [
    cell("random", 1, "audio", 0, [0.30, 0.40]),
    cell("random", 1, "audio", 1, [0.50, 0.40]),  # seeds pool: 0.3 0.4 0.5 0.4 -> 40.0 ± 7.1
    cell("random", 1, "audio+frame", 0, [0.5]),
    cell("random", 10, "audio", 0, [0.6]),
    cell("avdd", 1, "audio+frame", 0, [0.861, 0.861]),
    cell("avdd", 10, "audio+frame", 0, status="failed"),
    cell("whole data", None, "audio", 0, [0.97, 0.99]),
]


def test_markdown_rows_methods_columns_ipc_by_modality():
    table = build_table(RESULTS, ["method"], ["ipc", "modalities"], "recognition on avdigits")
    assert to_markdown(table).splitlines() == [
        "## recognition on avdigits",
        "",
        "| method | IPC 1 · audio | IPC 1 · audio+frame | IPC 10 · audio | IPC 10 · audio+frame |",
        "| --- | --- | --- | --- | --- |",
        "| random | 40.0 ± 7.1 | 50.0 ± 0.0 | 60.0 ± 0.0 | — |",
        "| avdd | — | 86.1 ± 0.0 | — | failed |",
        "| whole data | 98.0 ± 1.0 | — | 98.0 ± 1.0 | — |",
    ]


def test_several_metrics_become_a_column_level_and_html_merges_headers():
    cells = [{"labels": {"method": "dm", "ipc": 1}, "settings": {}, "seed": 0, "status": "done",
              "metrics": {"a2v.r1": {"runs": [0.2, 0.4]}, "a2v.medr": {"runs": [3.0, 5.0]}}}]
    table = build_table(cells, ["method"], ["ipc"], "retrieval")
    assert to_markdown(table).splitlines()[2:] == [
        "| method | IPC 1 · A→V R@1 (%) | IPC 1 · A→V medR |",
        "| --- | --- | --- |",
        "| dm | 30.0 ± 10.0 | 4.0 ± 1.0 |",
    ]
    page = to_html(table)
    assert "<th rowspan='2'>method</th><th colspan='2'>IPC 1</th>" in page
    assert "<td>30.0 ± 10.0</td><td>4.0 ± 1.0</td>" in page


def test_boolean_labels_read_as_ticks():
    cells = [{"labels": {"factor": flag, "ipc": 1}, "settings": {}, "seed": 0, "status": "done",
              "metrics": {"accuracy": {"runs": [0.5]}}} for flag in (False, True)]
    lines = to_markdown(build_table(cells, ["factor"], ["ipc"], "ablation")).splitlines()
    assert lines[-2:] == ["| ✗ | 50.0 ± 0.0 |", "| ✓ | 50.0 ± 0.0 |"]


def test_csv_has_one_line_per_cell_and_metric():
    lines = to_csv(RESULTS).splitlines()
    assert lines[0] == "method,ipc,modalities,seed,status,metric,mean,std,runs,set,error"
    assert len(lines) == 1 + len(RESULTS)
    assert lines[6] == "avdd,10,audio+frame,0,failed,,,,[],,boom"
