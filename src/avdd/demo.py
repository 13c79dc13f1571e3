"""The main job on the embedded default dataset: avdigits distilled with random, herding, DM and
AVDD at a short schedule and evaluated with the recognition protocol (MTT is left out: it needs
expert trajectories first) — an experiment like those in ``configs/``, run by the experiment
runner, so finished sets and results are reused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from avdd.data.store import Store
from avdd.experiments.config import Experiment, resolve
from avdd.experiments.runner import Log, Outcome, run_experiment

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
    protocol: str = "clean"  # avdd.training.protocol.PROTOCOLS: DM/AVDD's loop and the evaluation

    def experiment(self, name: str, data: Path) -> Experiment:
        distill: dict[str, object] = {"iterations": self.iterations, "batch_real": self.batch_real,
                                      "embed_epochs": self.embed_epochs}
        if self.width is not None:
            distill["width"] = self.width
        # given only when not the default: a set's key hashes the settings as given (earlier sets stay valid);
        # the runner gives a distill setting only to the methods that take it (DM, AVDD)
        quirks = {} if self.protocol == "clean" else {"protocol": self.protocol}
        distill |= quirks
        return resolve({
            "experiment": "demo",
            "dataset": name,
            "datasets": {name: {"data": str(data), "schedule": "demo"}},
            "schedules": {"demo": {"seeds": [self.seed], "distill": distill,
                                   "evaluate": {"num_eval": self.num_eval, "epochs": self.epochs, **quirks}}},
            "grid": {"method": list(METHODS), "ipc": [self.ipc], "modalities": ["audio+frame"]},
            "table": {"rows": ["method"], "columns": ["ipc"]},
        }, source="avdd demo")


def run_demo(workdir: Path, settings: DemoSettings = DemoSettings(), progress: bool = True,
             data: Store | None = None, device: str | torch.device | None = "cpu", log: Log = print) -> list[Outcome]:
    """Every method on ``data`` (default: avdigits, built in ``workdir``), run into ``workdir``."""
    experiment = settings.experiment(data.name if data else "avdigits", data.path if data else workdir / "avdigits")
    return run_experiment(experiment, workdir, device=device, progress=progress, log=log)
