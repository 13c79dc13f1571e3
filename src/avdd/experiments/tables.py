"""Results of a run as the paper lays them out: rows (e.g. methods) × columns (e.g. IPC × modality),
each entry mean ± std over every network of every seed; and as CSV, one line per cell and metric.

Works on the cell records of ``results.json`` (dicts with ``labels``, ``settings``, ``seed``,
``status``, ``metrics``), so a report can re-render the tables of a finished run.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from avdd.evaluate.recognition import summarise

# metric name -> (header, shown in percent)
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("accuracy (%)", True),
    "a2v.r1": ("A→V R@1 (%)", True),
    "a2v.r5": ("A→V R@5 (%)", True),
    "a2v.medr": ("A→V medR", False),
    "v2a.r1": ("V→A R@1 (%)", True),
    "v2a.r5": ("V→A R@5 (%)", True),
    "v2a.medr": ("V→A medR", False),
}
MISSING, FAILED = "—", "failed"


def format_value(metric: str, mean: float, std: float) -> str:
    scale = 100.0 if METRICS.get(metric, ("", False))[1] else 1.0
    return f"{scale * mean:.1f} ± {scale * std:.1f}"


def format_label(axis: str, value: Any) -> str:
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if axis == "ipc" and value is not None:
        return f"IPC {value}"
    return MISSING if value is None else str(value)


def cell_value(cell: Mapping[str, Any], axis: str) -> Any:
    """A cell's label on ``axis`` (its settings' value when the axis is not in the grid)."""
    labels = cell["labels"]
    return labels[axis] if axis in labels else cell["settings"].get(axis)


@dataclass
class Table:
    title: str
    row_axes: list[str]
    column_axes: list[str]  # the last one is "metric" when a table shows several metrics
    rows: list[tuple[Any, ...]]
    columns: list[tuple[Any, ...]]
    values: dict[tuple[tuple[Any, ...], tuple[Any, ...]], str]

    def value(self, row: tuple[Any, ...], column: tuple[Any, ...]) -> str:
        return self.values.get((row, column), MISSING)


def _unique(items: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return list(dict.fromkeys(items))


def _fits(key: tuple[Any, ...], column: tuple[Any, ...]) -> bool:
    """A None label (the whole data has no IPC) fits every value of that axis."""
    return all(k is None or k == c for k, c in zip(key, column, strict=True))


def build_table(cells: Sequence[Mapping[str, Any]], rows: Sequence[str], columns: Sequence[str],
                title: str) -> Table:
    """Pool the runs of every cell (all seeds) at each row × column; a failed seed fails the entry."""
    metrics = [m for m in METRICS if any(m in c.get("metrics", {}) for c in cells)] or ["accuracy"]
    row_keys = _unique([tuple(cell_value(c, a) for a in rows) for c in cells])
    keyed = [(tuple(cell_value(c, a) for a in rows), tuple(cell_value(c, a) for a in columns), c) for c in cells]
    column_keys = _unique([col for _, col, _ in keyed if None not in col]) or _unique([col for _, col, _ in keyed])
    values = {}
    for row in row_keys:
        for column in column_keys:
            group = [c for r, col, c in keyed if r == row and _fits(col, column)]
            if not group:
                continue
            for metric in metrics:
                if any(c["status"] != "done" for c in group):
                    text = FAILED
                else:
                    runs = [r for c in group for r in c["metrics"].get(metric, {}).get("runs", [])]
                    text = format_value(metric, *summarise(runs)) if runs else MISSING
                values[(row, (*column, metric) if len(metrics) > 1 else column)] = text
    if len(metrics) > 1:
        return Table(title, list(rows), [*columns, "metric"], row_keys,
                     [(*col, m) for col in column_keys for m in metrics], values)
    return Table(title, list(rows), list(columns), row_keys, column_keys, values)


def _header(table: Table, column: tuple[Any, ...]) -> list[str]:
    return [METRICS.get(v, (v, False))[0] if a == "metric" else format_label(a, v)
            for a, v in zip(table.column_axes, column, strict=True)]


def to_markdown(table: Table) -> str:
    head = [*table.row_axes, *(" · ".join(_header(table, c)) for c in table.columns)]
    lines = [f"## {table.title}", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in table.rows:
        labels = [format_label(a, v) for a, v in zip(table.row_axes, row, strict=True)]
        lines.append("| " + " | ".join([*labels, *(table.value(row, c) for c in table.columns)]) + " |")
    return "\n".join(lines)


def to_html(table: Table) -> str:
    """The same table with one header row per column axis (equal neighbours merged)."""
    depth = max(1, len(table.column_axes))
    out = [f"<table class='results'><caption>{html.escape(table.title)}</caption><thead>"]
    for level in range(depth):
        out.append("<tr>")
        if level == 0:
            out += [f"<th rowspan='{depth}'>{html.escape(a)}</th>" for a in table.row_axes]
        spans: list[list[Any]] = []
        for column in table.columns:
            prefix = column[: level + 1]
            if spans and spans[-1][0] == prefix:
                spans[-1][1] += 1
            else:
                spans.append([prefix, 1])
        for prefix, span in spans:
            text = _header(table, prefix + (None,) * (len(table.column_axes) - len(prefix)))[level]
            out.append(f"<th colspan='{span}'>{html.escape(text)}</th>")
        out.append("</tr>")
    out.append("</thead><tbody>")
    for row in table.rows:
        labels = [format_label(a, v) for a, v in zip(table.row_axes, row, strict=True)]
        out.append("<tr>" + "".join(f"<th>{html.escape(x)}</th>" for x in labels)
                   + "".join(f"<td>{html.escape(table.value(row, c))}</td>" for c in table.columns) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def to_csv(cells: Sequence[Mapping[str, Any]]) -> str:
    """One line per cell and metric: its labels, seed, status, mean, std and every run."""
    axes = list(dict.fromkeys(a for c in cells for a in c["labels"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*axes, "seed", "status", "metric", "mean", "std", "runs", "set", "error"])
    for c in cells:
        labels = [c["labels"].get(a) for a in axes]
        metrics = c.get("metrics") or {"": {}}
        for metric, m in metrics.items():
            writer.writerow([*("" if v is None else v for v in labels), c["seed"], c["status"], metric,
                             m.get("mean", ""), m.get("std", ""), json.dumps(m.get("runs", [])),
                             c.get("set") or "", c.get("error") or ""])
    return buffer.getvalue()
