"""``avdd run``: every cell of an experiment, distill → evaluate, each step cached by a hash of its
full settings.

Layout of the output directory::

    config.yaml            the resolved config that ran
    sets/NAME-KEY/         distilled sets (a store each, with distill_log.json); shared by every
                           evaluation that needs the same set
    experts/NAME-KEY/      outputs of the steps a method needs (MTT's expert trajectories)
    real-cache/            the real-mean cache every DM/AVDD cell shares (distill/real_cache.py): a
                           grid computes each iteration's real class means once per real side
    cells/KEY.json         one evaluation: its settings, metrics and the full result
    results.json           every cell (settings, status, metrics, error), results.csv, tables.md

A step is done when its output exists, so a second run does nothing and a changed setting re-runs
only the steps whose settings it changes. A failing step fails its cells, is reported, and the
run goes on; failures are not cached, so the next run tries them again. ``jobs`` > 1 runs cells in
that many worker processes at once (experiments/parallel.py); the outputs are those of one.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml

from avdd.data.sources.registry import DATASETS
from avdd.data.store import Store, open_store
from avdd.device import resolve_device
from avdd.distill.api import distill
from avdd.distill.registry import METHODS
from avdd.errors import AvddError
from avdd.evaluate.recognition import evaluate_recognition
from avdd.evaluate.retrieval import evaluate_retrieval
from avdd.experiments.config import Experiment
from avdd.experiments.grid import Cell, expand
from avdd.experiments.parallel import Post, run_groups, share_groups
from avdd.experiments.steps import STEPS
from avdd.experiments.tables import METRICS, build_table, format_value, to_csv, to_markdown
from avdd.files import rename_new, write_text_atomic
from avdd.formats import META_FILE
from avdd.ranges import check_settings
from avdd.training.protocol import EvalConfig

Log = Callable[[str], None]


class RunTracker(Protocol):
    """What the runner logs to (avdd/tracking.py's Tracker, passed in by the caller: tracking draws
    with avdd.report, which builds on this package)."""

    def config(self, settings: Mapping[str, Any]) -> None: ...
    def table(self, tag: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...
    def distill_hook(self, store: Store) -> Callable[[Any, Mapping[str, Any] | None], None]: ...
    def close(self) -> None: ...


OpenTracker = Callable[[str], RunTracker]  # a tracker for the run of this name
RESULTS, TABLES, CSV_FILE, CONFIG_FILE = "results.json", "tables.md", "results.csv", "config.yaml"
REAL_CACHE = "real-cache"


# what a cached cell must hold to be reused
CELL_KEYS: dict[str, type | tuple[type, ...]] = {"metrics": dict, "set": (str, type(None))}
RESULTS_KEYS = {"title": str, "experiment": dict, "cells": list}


def read_json(path: Path, keys: Mapping[str, type | tuple[type, ...]], remedy: str) -> dict[str, Any]:
    """The JSON object in ``path`` holding ``keys`` of these types; one AvddError line if it is
    unreadable, truncated or not such an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise AvddError(f"{path}: unreadable ({err}); {remedy}") from None
    if not isinstance(data, dict):
        raise AvddError(f"{path}: not a JSON object; {remedy}")
    for key, kind in keys.items():
        if not isinstance(data.get(key), kind):
            raise AvddError(f"{path}: {key!r} is missing or of the wrong type; {remedy}")
    return data


def read_results(run: Path) -> dict[str, Any]:
    """A run directory's ``results.json``, checked."""
    return read_json(run / RESULTS, RESULTS_KEYS, "rerun `avdd run` with the same config to write it again")


def settings_key(settings: Any) -> str:
    """A stable hash of JSON-able settings (key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def open_data(experiment: Experiment, progress: bool) -> Store:
    """The experiment's real store; a dataset avdd can build (avdigits) is built where it is missing."""
    path, name = Path(experiment.view["data"]), experiment.view["dataset"]
    if not path.exists() and name in DATASETS:
        return DATASETS.get(name).build(path, overwrite=False, progress=progress)
    if not path.exists():
        raise AvddError(f"{path}: no {name} store there; prepare it (docs/datasets.md) or point to one "
                        "with --set data=DIR")
    return open_store(path)


@dataclass(frozen=True)
class Step:
    """One cacheable unit of work: its output directory is ``kind/name-key``. ``free`` settings reach
    the step but not its key: they cannot change its output (a cache folder)."""

    kind: str
    name: str
    settings: dict[str, Any]
    needs: tuple[Step, ...] = ()
    free: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return settings_key({"kind": self.kind, **self.settings, "needs": [s.key for s in self.needs]})

    def path(self, out: Path) -> Path:
        return out / self.kind / f"{self.name}-{self.key[:8]}"

    def keys(self) -> set[str]:
        """Its key and those of every step it needs."""
        return {self.key}.union(*(s.keys() for s in self.needs))


@dataclass
class Outcome:
    cell: Cell
    key: str
    status: str = "done"  # or "failed"
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    set: str | None = None
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"labels": self.cell.labels, "settings": self.cell.settings, "seed": self.cell.seed, "key": self.key,
                "status": self.status, "metrics": self.metrics, "error": self.error, "set": self.set}


def recognition(train: Store, test: Store, experiment: Experiment, config: EvalConfig, device: torch.device,
                progress: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    result = evaluate_recognition(train, test, config, device=device, progress=progress).to_json()
    return {"accuracy": result["accuracy"]}, result


def retrieval(train: Store, test: Store, experiment: Experiment, config: EvalConfig, device: torch.device,
              progress: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    result = evaluate_retrieval(train, test, config, device=device, progress=progress,
                                **experiment.view["retrieval"]).to_json()
    metrics = {name: result[name.split(".")[0]][name.split(".")[1]] for name in METRICS if "." in name}
    return metrics, result


EVALUATIONS = {"recognition": recognition, "retrieval": retrieval}


def check_jobs(jobs: int, device: torch.device, tracker: OpenTracker | None) -> None:
    """Refuse what ``jobs`` worker processes cannot do."""
    check_settings("run", {"jobs": jobs})
    if jobs > 1 and device.type != "cpu":  # every worker would share the one device
        raise AvddError(f"--jobs {jobs} runs cells side by side on CPU cores only; on {device} use --jobs 1 "
                        "(or --device cpu)")
    if jobs > 1 and tracker is not None:
        try:
            pickle.dumps(tracker)
        except Exception:  # whatever pickling a local function or an open handle raises
            raise AvddError(f"--jobs {jobs}: the tracker factory must be picklable (a module-level function or "
                            "a partial of one): each worker opens its own trackers") from None


class Runner:
    def __init__(self, experiment: Experiment, out: Path, *, device: str | torch.device | None = "cpu",
                 progress: bool = True, log: Log = print, tracker: OpenTracker | None = None, jobs: int = 1) -> None:
        self.experiment, self.out, self.progress, self.log = experiment, Path(out), progress, log
        self.tracker, self.jobs = tracker, jobs
        self.device = resolve_device(device)
        check_jobs(jobs, self.device, tracker)
        self.store = open_data(experiment, progress)
        # the data's identity is its description (classes, shapes, statistics, provenance), not its path
        self.data_key = settings_key((self.store.path / META_FILE).read_text())
        self.failed: dict[str, str] = {}  # step key -> error, so a shared failing step runs once per run

    # -- planning --------------------------------------------------------------------------------
    def distill_step(self, cell: Cell) -> Step:
        """The cell's distillation: common schedule settings the method takes, its own block, the grid."""
        view = self.experiment.view
        method = METHODS.get(cell.method)
        taken = method.setting_names
        block = dict(view["methods"].get(cell.method, {}))
        needs = tuple(Step(name, "+".join(cell.modalities),
                           {"data": self.data_key, "modalities": list(cell.modalities), **block.pop(name)})
                      for name in STEPS if name in block)
        settings = {k: v for k, v in view["distill"].items() if k in taken} | block | cell.method_settings()
        free = {k: settings.pop(k) for k in method.result_free & settings.keys()}
        if "real_cache" in taken:  # every cell of the experiment shares one
            free.setdefault("real_cache", str(self.out / REAL_CACHE))
        # only iterative methods evaluate while distilling
        intermediate = view["intermediate"] if view["intermediate"]["every"] and method.iterative else None
        return Step("sets", f"{cell.method}-ipc{cell.ipc}-{'+'.join(cell.modalities)}-s{cell.seed}",
                    {"data": self.data_key, "method": cell.method, "ipc": cell.ipc, "seed": cell.seed,
                     "modalities": list(cell.modalities), "settings": settings, "intermediate": intermediate},
                    needs, free)

    def eval_key(self, cell: Cell, config: EvalConfig, distilled: Step | None) -> str:
        view = self.experiment.view
        source = distilled.key if distilled else {"whole": self.data_key}
        extra = view["retrieval"] if view["evaluation"] == "retrieval" else None
        return settings_key({"set": source, "evaluation": view["evaluation"], "config": config.to_json(),
                             "retrieval": extra})

    # -- running ---------------------------------------------------------------------------------
    def ensure(self, step: Step) -> Path:
        """The step's output, run now (after the steps it needs) unless it exists."""
        path = step.path(self.out)
        if step.key in self.failed:
            raise AvddError(self.failed[step.key])
        if path.exists():
            return path
        try:
            needed = {s.kind: str(self.ensure(s)) for s in step.needs}
            self.log(f"  {step.kind}/{path.name} …")
            start = time.perf_counter()
            self.run_step(step, path, needed)
            self.log(f"  … done in {time.perf_counter() - start:.1f} s")
        except Exception as err:  # a cell's failure, not the run's
            self.failed[step.key] = str(err) or type(err).__name__
            raise
        return path

    def run_step(self, step: Step, path: Path, needed: Mapping[str, str]) -> None:
        s = step.settings
        if step.kind == "sets":
            eval_config = None
            if s["intermediate"]:
                eval_config = replace(self.experiment.eval_config(s["modalities"], "ensemble", s["seed"]),
                                      num_eval=s["intermediate"]["num_eval"], epochs=s["intermediate"]["epochs"])
            tracker = self.tracker(f"{self.experiment.view['experiment']}-{path.name}") if self.tracker else None
            try:
                if tracker is not None:
                    tracker.config(s)
                distill(self.store.path, path, s["method"], modalities=s["modalities"], ipc=s["ipc"], seed=s["seed"],
                        device=self.device, progress=self.progress, resume=True, overwrite=False,
                        eval_every=s["intermediate"]["every"] if s["intermediate"] else 0, eval_config=eval_config,
                        on_iteration=tracker.distill_hook(self.store) if tracker else None, **s["settings"],
                        **step.free, **needed)
            finally:
                if tracker is not None:
                    tracker.close()
            return
        settings = {k: v for k, v in s.items() if k not in ("data", "modalities")}
        tmp = path.with_name(f".{path.name}.partial")  # a step's own resumable work lives here until done
        tmp.parent.mkdir(parents=True, exist_ok=True)
        STEPS[step.kind](self.store, tmp, modalities=tuple(s["modalities"]), device=self.device, progress=self.progress,
                         **settings)
        rename_new(tmp, path)  # never over something that appeared there meanwhile

    def plan(self, cell: Cell) -> tuple[EvalConfig, Step | None, Path]:
        """The cell's evaluation settings, its distillation (None: the whole data), its result file."""
        config = self.experiment.eval_config(cell.modalities, cell.fusion, cell.seed)
        distilled = None if cell.whole else self.distill_step(cell)
        return config, distilled, self.out / "cells" / f"{self.eval_key(cell, config, distilled)}.json"

    def step_keys(self, cell: Cell) -> set[str] | None:
        """The keys of the steps the cell would run; None where it needs no worker: its result is
        cached, or planning it fails (it fails at once, as it would in a worker)."""
        try:
            _, distilled, result_file = self.plan(cell)
        except Exception:
            return None
        if result_file.is_file():
            return None
        return distilled.keys() if distilled else set()

    def run_cell(self, cell: Cell) -> Outcome:
        view = self.experiment.view
        config, distilled, result_file = self.plan(cell)
        outcome = Outcome(cell, result_file.stem)
        if result_file.is_file():
            saved = read_json(result_file, CELL_KEYS, "delete it to evaluate the cell again")
            outcome.metrics, outcome.set, outcome.cached = saved["metrics"], saved["set"], True
            return outcome
        if distilled is None:
            train, outcome.set = self.store, None
        else:
            path = self.ensure(distilled)
            train, outcome.set = open_store(path), str(path.relative_to(self.out))
        self.log(f"  {view['evaluation']} …")
        outcome.metrics, result = EVALUATIONS[view["evaluation"]](train, self.store, self.experiment, config,
                                                                  self.device, self.progress)
        write_text_atomic(result_file, json.dumps({**outcome.to_json(), "result": result}, indent=1) + "\n")
        return outcome

    def run(self) -> list[Outcome]:
        cells = expand(self.experiment)
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.out / CONFIG_FILE,
                          yaml.safe_dump(self.experiment.view, sort_keys=False, allow_unicode=True))
        outcomes = self.run_parallel(cells) if self.jobs > 1 else [self.settle(i, cells) for i in range(len(cells))]
        self.write(outcomes)
        if self.tracker is not None:
            self.track(outcomes)
        done = [o for o in outcomes if o.status == "done"]
        cached = sum(o.cached for o in done)
        failed = len(outcomes) - len(done)
        if cached == len(outcomes):
            self.log(f"nothing to do: all {len(outcomes)} cells were cached")
        else:
            self.log(f"{len(outcomes)} cells: {len(done) - cached} run, {cached} cached, {failed} failed")
        return outcomes

    def attempt(self, cell: Cell) -> Outcome:
        """The cell run, or its failure, reported either way; the other cells go on."""
        try:
            outcome = self.run_cell(cell)
        except Exception as err:
            message = str(err) or type(err).__name__
            if not isinstance(err, AvddError):
                self.log(traceback.format_exc().rstrip())
            self.log(f"  FAILED: {message}")
            return Outcome(cell, "", status="failed", error=message)
        summary = ", ".join(f"{m} {format_value(m, v['mean'], v['std'])}" for m, v in outcome.metrics.items())
        self.log(f"  {'cached: ' if outcome.cached else ''}{summary}")
        return outcome

    def settle(self, index: int, cells: Sequence[Cell]) -> Outcome:
        """Cell ``index`` (from 0) of ``cells`` run here, under its ``[i/n]`` line."""
        self.log(f"[{index + 1}/{len(cells)}] {cells[index].describe()}")
        return self.attempt(cells[index])

    def run_parallel(self, cells: Sequence[Cell]) -> list[Outcome]:
        """Every cell: those cached (or failing at once) here, the others in groups of cells that share
        a step, by ``self.jobs`` workers; their lines shown here under each cell's ``[i/n]``."""
        outcomes: dict[int, Outcome] = {}
        keys: dict[int, set[str]] = {}
        for i, cell in enumerate(cells):
            found = self.step_keys(cell)
            if found is None:
                outcomes[i] = self.settle(i, cells)
            else:
                keys[i] = found
        pending = list(keys)
        groups = [[pending[j] for j in group] for group in share_groups([keys[i] for i in pending])]

        def receive(kind: str, index: int, payload: Any) -> None:
            if kind == "log":
                self.log(f"[{index + 1}/{len(cells)}] {payload}")
            else:
                outcomes[index] = payload

        worker = partial(run_group, self.experiment, self.out, self.device, self.tracker, cells)
        for number, code in run_groups(groups, worker, self.jobs, receive).items():
            for i in groups[number]:
                if i not in outcomes:
                    message = f"its worker process ended (exit code {code}) before finishing it"
                    receive("log", i, f"  FAILED: {message}")
                    outcomes[i] = Outcome(cells[i], "", status="failed", error=message)
        return [outcomes[i] for i in range(len(cells))]

    def track(self, outcomes: list[Outcome]) -> None:
        """Every cell's metrics as one table of the experiment's own tracker run."""
        assert self.tracker is not None
        tracker = self.tracker(self.experiment.view["experiment"])
        try:
            tracker.config(self.experiment.view)
            rows = [[o.cell.describe(), o.cell.seed, o.status, metric, value["mean"], value["std"]]
                    for o in outcomes for metric, value in (o.metrics or {"": {"mean": None, "std": None}}).items()]
            tracker.table("results", ["cell", "seed", "status", "metric", "mean", "std"], rows)
        finally:
            tracker.close()

    def write(self, outcomes: list[Outcome]) -> None:
        view = self.experiment.view
        cells = [o.to_json() for o in outcomes]
        title = self.experiment.title()
        summary = {"title": title, "experiment": view, "cells": cells}
        write_text_atomic(self.out / RESULTS, json.dumps(summary, indent=1) + "\n")
        write_text_atomic(self.out / CSV_FILE, to_csv(cells))
        write_text_atomic(self.out / TABLES, tables_markdown(title, view, cells))


def tables_markdown(title: str, view: Mapping[str, Any], cells: list[dict[str, Any]]) -> str:
    table = build_table(cells, view["table"]["rows"], view["table"]["columns"], title)
    text = [to_markdown(table), "", "mean ± std (population) over every network of every seed."]
    failures = [c for c in cells if c["status"] != "done"]
    if failures:
        text += ["", "Failed cells:", ""]
        text += [f"- {json.dumps(c['labels'], default=str)} seed {c['seed']}: {c['error']}" for c in failures]
    return "\n".join(text) + "\n"


def run_group(experiment: Experiment, out: Path, device: torch.device, tracker: OpenTracker | None,
              cells: Sequence[Cell], group: Sequence[int], post: Post) -> None:
    """A worker's part of ``run_parallel``: the cells ``group`` of ``cells``, in order, without progress
    bars; each log line and each outcome posted to the parent with its cell's index."""
    current = group[0]  # the cell the lines are about; log reads it as the loop moves on

    def log(line: str) -> None:
        post("log", current, line)

    runner = Runner(experiment, out, device=device, progress=False, log=log, tracker=tracker)
    for current in group:
        log(cells[current].describe())
        post("outcome", current, runner.attempt(cells[current]))


def run_experiment(experiment: Experiment, out: str | Path, *, device: str | torch.device | None = "cpu",
                   progress: bool = True, log: Log = print, tracker: OpenTracker | None = None,
                   jobs: int = 1) -> list[Outcome]:
    """Run every cell of ``experiment`` into ``out`` (see the module docstring for the layout), ``jobs``
    cells at a time; ``tracker(name)`` opens a tracker per distillation and one for the results table."""
    return Runner(experiment, Path(out), device=device, progress=progress, log=log, tracker=tracker,
                  jobs=jobs).run()
