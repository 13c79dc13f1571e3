"""Expanding an experiment's grid into cells: one cell = one distilled set (or the whole data),
evaluated once, for one seed."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from avdd.errors import AvddError
from avdd.experiments.config import CELL_AXES, Experiment
from avdd.ranges import parse_modalities

WHOLE_DATA = "whole data"  # the method label of the whole-data row
DEFAULTS = {"modalities": "audio+frame", "fusion": "ensemble"}


@dataclass(frozen=True)
class Cell:
    """``labels``: the cell's value on every axis (its place in the table; None on the axes a
    whole-data cell has no value for); ``settings``: method, ipc, modalities, fusion and the
    method settings the grid sets."""

    labels: dict[str, Any]
    settings: dict[str, Any]
    seed: int

    @property
    def whole(self) -> bool:
        return self.settings["method"] is None

    @property
    def method(self) -> str:
        return str(self.settings["method"])

    @property
    def ipc(self) -> int:
        return int(self.settings["ipc"])

    @property
    def modalities(self) -> tuple[str, ...]:
        return parse_modalities(self.settings["modalities"], "modalities")

    @property
    def fusion(self) -> str:
        return str(self.settings["fusion"])

    def method_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k not in CELL_AXES}

    def describe(self) -> str:
        if self.whole:
            return f"{WHOLE_DATA} {'+'.join(self.modalities)} {self.fusion} seed={self.seed}"
        extra = " ".join(f"{k}={v}" for k, v in self.labels.items() if k not in ("method", "ipc", "modalities"))
        return " ".join(filter(None, [f"{self.method} ipc={self.ipc} {'+'.join(self.modalities)}", extra,
                                      f"seed={self.seed}"]))


def _matches(entry: Mapping[str, Any], labels: Mapping[str, Any], settings: Mapping[str, Any]) -> bool:
    def same(key: str, value: Any) -> bool:
        if key == "modalities":
            return parse_modalities(value, "exclude") == parse_modalities(settings[key], "modalities")
        return labels.get(key, settings.get(key)) == value or (key in settings and settings[key] == value)

    return all((key in labels or key in settings) and same(key, value) for key, value in entry.items())


def expand(experiment: Experiment) -> list[Cell]:
    """Every grid combination not excluded, then the whole-data cells, each for every seed."""
    axes = experiment.axes
    seeds = experiment.view["seeds"]
    cells = []
    for combination in itertools.product(*[range(len(a.values)) for a in axes]):
        labels = {a.name: a.values[i] for a, i in zip(axes, combination, strict=True)}
        settings: dict[str, Any] = dict(DEFAULTS)
        for a, i in zip(axes, combination, strict=True):
            settings.update(a.settings[i])
        missing = [k for k in ("method", "ipc") if k not in settings]
        if missing:
            raise AvddError(f"{experiment.source}: grid cell {labels} sets no {' or '.join(missing)}; "
                            "add an axis (or a variant setting) for it")
        if any(_matches(entry, labels, settings) for entry in experiment.view["exclude"]):
            continue
        cells += [Cell(labels, settings, seed) for seed in seeds]
    for modalities in experiment.view["whole_data"]:
        labels = {a.name: None for a in axes} | {"method": WHOLE_DATA, "modalities": modalities}
        settings = {**DEFAULTS, "method": None, "ipc": None, "modalities": modalities}
        cells += [Cell(labels, settings, seed) for seed in seeds]
    return cells
