"""The main job on the embedded default dataset: build avdigits, distill it with every method at a
short schedule, evaluate each set with the recognition protocol, and tabulate the results."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from avdd.data.sources import DATASETS
from avdd.data.store import Store, open_store
from avdd.distill.api import distill
from avdd.errors import AvddError
from avdd.evaluate.recognition import EvalConfig, evaluate_recognition

METHODS = ("random", "herding", "dm", "avdd")


@dataclass(frozen=True)
class DemoSettings:
    ipc: int = 1
    iterations: int = 20  # DM/AVDD iterations: a short schedule (the reference runs 5000)
    batch_real: int = 32
    embed_epochs: int = 1  # herding's embedding network (the method default is 5)
    num_eval: int = 2
    epochs: int = 30
    seed: int = 0
    width: int | None = None  # encoder width of DM/AVDD (None: the reference 128)

    def method_settings(self, method: str) -> dict[str, Any]:
        matching = {"iterations": self.iterations, "batch_real": self.batch_real, "width": self.width}
        herding = {"embed_epochs": self.embed_epochs}
        return {"random": {}, "herding": herding, "dm": matching, "avdd": {**matching, **herding}}[method]


def ensure_avdigits(path: Path, progress: bool) -> Store:
    try:
        return open_store(path)
    except AvddError:  # absent or broken: (re)build it
        return DATASETS.get("avdigits").build(path, overwrite=True, progress=progress)


def run_demo(workdir: Path, settings: DemoSettings = DemoSettings(), progress: bool = True,
             data: Store | None = None, device: str | torch.device | None = "cpu") -> list[dict[str, Any]]:
    """Rows of {method, ipc, mean, std, runs} on ``data`` (default: avdigits, built in ``workdir``);
    finished sets and results in ``workdir`` are reused."""
    data = data or ensure_avdigits(workdir / "avdigits", progress)
    config = replace(EvalConfig(), num_eval=settings.num_eval, epochs=settings.epochs, seed=settings.seed)
    rows = []
    for method in METHODS:
        name = f"{method}-ipc{settings.ipc}"
        out, result_file = workdir / "sets" / name, workdir / "results" / f"{name}.json"
        if not out.exists():
            distill(data.path, out, method, modalities=config.modalities, ipc=settings.ipc, seed=settings.seed,
                    device=device, progress=progress, resume=True, **settings.method_settings(method))
        if not result_file.exists():
            result = evaluate_recognition(out, data, config, device=device, progress=progress).to_json()
            result_file.parent.mkdir(parents=True, exist_ok=True)
            result_file.write_text(json.dumps(result, indent=2) + "\n")
        accuracy = json.loads(result_file.read_text())["accuracy"]
        rows.append({"method": method, "ipc": settings.ipc, **accuracy})
    return rows


def format_table(rows: list[dict[str, Any]], title: str) -> str:
    lines = [title, "", "| method | IPC | accuracy (%) | runs |", "| --- | --- | --- | --- |"]
    for row in rows:
        runs = " / ".join(f"{100 * r:.1f}" for r in row["runs"])
        lines.append(f"| {row['method']} | {row['ipc']} | {100 * row['mean']:.1f} ± {100 * row['std']:.1f} | {runs} |")
    return "\n".join(lines)
