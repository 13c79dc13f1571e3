"""Experiment configs: a YAML file (one per table of the paper), a dataset and schedule picked in it,
``--set key=value`` overrides, validated into an :class:`Experiment`.

A config file names several datasets and schedules; resolving it picks one of each and flattens
the result into the *resolved view* (``experiment``, ``dataset``, ``data``, ``schedule``,
``seeds``, ``distill``, ``methods``, ``intermediate``, ``evaluate``, ``evaluation``,
``retrieval``, ``grid``, ``exclude``, ``whole_data``, ``table``, ``log``). ``--set`` keys are dotted paths
into that view (``--set evaluate.num_eval=1``); values are YAML (``--set grid.ipc=[1,10]``).
The README documents the format.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from avdd.distill.registry import METHODS
from avdd.distill.spec import settings_of
from avdd.errors import AvddError
from avdd.evaluate.retrieval import SPACES
from avdd.experiments.steps import STEPS
from avdd.ranges import RANGES, OneOrPerModality, PerModality, Spec, parse_modalities, problem, unknown_modalities
from avdd.training.protocol import EvalConfig

EVALUATIONS = ("recognition", "retrieval")
CELL_AXES = ("method", "ipc", "modalities", "fusion")  # grid axes that are not method settings
FILE_KEYS = ("experiment", "description", "evaluation", "dataset", "datasets", "schedules", "retrieval", "grid",
             "exclude", "whole_data", "table", "log")
SCHEDULE_KEYS = ("seeds", "distill", "methods", "intermediate", "evaluate")
RETRIEVAL_KEYS = ("subset", "subsets", "space")
TABLE_KEYS = ("rows", "columns")
LOG_SETTINGS = {"backend": "log", "dir": None, "every": "log_every"}  # experiment tracking; key -> ranges.py name
OPEN = None  # a section whose keys are checked later (per method) or not at all
# what a section of the view holds where neither the file nor --set says
SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "intermediate": {"every": 0, "num_eval": 1, "epochs": 30},
    "retrieval": {"subset": 150, "subsets": 1, "space": "probabilities"},
    "table": {"rows": ["method"], "columns": ["ipc", "modalities"]},
    "log": {"backend": "none", "dir": None, "every": None},  # dir None: OUT/logs; every None: the tracker's default
}
VIEW_TYPES = {  # the type of each key of the resolved view (--set can give any YAML value)
    **dict.fromkeys(("experiment", "description", "evaluation", "dataset", "data", "schedule"), str),
    **dict.fromkeys(("seeds", "exclude", "whole_data"), list),
    **dict.fromkeys(("distill", "methods", "intermediate", "evaluate", "retrieval", "grid", "table", "log"), dict),
}
INTERMEDIATE_SETTINGS = {"every": "eval_every", "num_eval": "num_eval", "epochs": "epochs"}  # key -> ranges.py name
STEP_SETTINGS = {"lr": "expert_lr"}  # a step's keys whose ranges.py name differs (experts: SGD's one rate)


def method_ranges() -> dict[str, Spec]:
    """Every registered method's settings (from their settings dataclasses) and their ranges."""
    return {s.name: s.range for name in METHODS.names() for s in settings_of(METHODS.get(name).settings)}


def method_setting_names() -> set[str]:
    return set(method_ranges())


def eval_setting_names() -> set[str]:
    return {f.name for f in fields(EvalConfig)} - {"modalities", "fusion", "seed"}  # those come from each cell


def view_schema() -> dict[str, Any]:
    """Known keys of the resolved view: a tuple/set lists a section's keys, OPEN takes any."""
    leaf = ("experiment", "description", "evaluation", "dataset", "data", "schedule", "seeds", "exclude", "whole_data")
    return {
        **{k: () for k in leaf},
        "distill": method_setting_names(),
        "methods": OPEN,
        "intermediate": tuple(INTERMEDIATE_SETTINGS),
        "evaluate": eval_setting_names(),
        "retrieval": RETRIEVAL_KEYS,
        "grid": OPEN,  # named-variant axes take any name; validate() checks the settings
        "table": TABLE_KEYS,
        "log": tuple(LOG_SETTINGS),
    }


@dataclass(frozen=True)
class Axis:
    """One grid axis: ``values`` label the table; ``settings[i]`` is what value i sets in a cell;
    ``named``: a mapping of variants (any axis name) rather than a list of one setting's values."""

    name: str
    values: tuple[Any, ...]
    settings: tuple[dict[str, Any], ...]
    named: bool


@dataclass(frozen=True)
class Experiment:
    """A resolved, validated config (``view`` is what ran, saved beside the results)."""

    view: dict[str, Any]
    source: str  # the file, for messages

    @property
    def axes(self) -> list[Axis]:
        return [parse_axis(name, values) for name, values in self.view["grid"].items()]

    def eval_config(self, modalities: Sequence[str], fusion: str, seed: int) -> EvalConfig:
        return EvalConfig.from_json({**self.view["evaluate"], "modalities": list(modalities), "fusion": fusion,
                                     "seed": seed})

    def title(self) -> str:
        v = self.view
        e = self.eval_config(("audio",), "ensemble", 0)
        return (f"{v['experiment']} on {v['dataset']} — schedule {v['schedule']}: {len(v['seeds'])} seed(s) × "
                f"{e.num_eval} network(s) × {e.epochs} epochs")


def value_label(value: Any) -> Any:
    """An axis value as a table labels it: itself, or a mapping (a factor per modality) as the text
    ``audio=4 frame=2`` (a label is a table key, so it must be hashable)."""
    if isinstance(value, Mapping):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return value


def parse_axis(name: str, values: Any) -> Axis:
    """A list of values (each sets ``name``) or a mapping of labels to settings (named variants)."""
    if isinstance(values, Mapping) and values:
        for label, settings in values.items():
            if not isinstance(settings, Mapping):
                raise AvddError(f"grid.{name}.{label}: a named variant must map settings to values, got {settings!r}")
        return Axis(name, tuple(values), tuple(dict(s) for s in values.values()), named=True)
    if isinstance(values, list) and values:
        return Axis(name, tuple(map(value_label, values)), tuple({name: v} for v in values), named=False)
    raise AvddError(f"grid.{name}: an axis is a non-empty list of values or a mapping of named variants, "
                    f"got {values!r}")


# -- loading -------------------------------------------------------------------------------------
class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a mapping giving a key twice is an error (YAML keeps the last
    one silently: `lr: {frame: 0.1, frame: 0.2}` would run with 0.2)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = []
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`: the keys it brings may be overridden
            key = self.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            keys.append(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=UniqueKeyLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = load_yaml(path.read_text())
    except OSError as err:
        raise AvddError(f"{path}: cannot read the config ({err.strerror})") from None
    except UnicodeDecodeError:
        raise AvddError(f"{path}: not a text file (a config is UTF-8 YAML)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise AvddError(f"{path}: malformed YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise AvddError(f"{path}: a config is a YAML mapping (experiment:, datasets:, grid:, …)")
    return doc


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.sub=value`` -> (["key", "sub"], YAML-parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise AvddError(f"--set takes KEY=VALUE, e.g. evaluate.num_eval=1; got {text!r}")
    try:
        parsed = load_yaml(value) if value.strip() else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise AvddError(f"--set {text}: the value is not valid YAML ({problem})") from None
    return key.strip().split("."), parsed


def check_path(path: Sequence[str], where: str) -> None:
    """Fail on a key the view does not have, listing the known ones."""
    schema = view_schema()
    head = path[0]
    if head not in schema:
        raise AvddError(f"{where}: unknown config key {head!r}; known: {', '.join(sorted(schema))}")
    known = schema[head]
    if known is OPEN or len(path) == 1:
        return
    if not known:
        raise AvddError(f"{where}: {head!r} has no sub-keys")
    if path[1] not in known:
        raise AvddError(f"{where}: unknown key {path[1]!r} in {head}; known: {', '.join(sorted(known))}")


def _given(doc: Mapping[str, Any], key: str, kind: type[dict] | type[list], where: str) -> Any:
    """A copy of the mapping or list ``doc[key]`` (empty when absent or null), refusing any other type."""
    value = doc.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise AvddError(f"{where}{key} must be a {'mapping' if kind is dict else 'list'}, got {value!r}")
    return kind(value)


def _section(doc: Mapping[str, Any], key: str, name: str, where: str) -> dict[str, Any]:
    table = doc.get(key) or {}
    if not isinstance(table, Mapping) or name not in table:
        known = ", ".join(table) if isinstance(table, Mapping) else "none"
        raise AvddError(f"{where}: no {key[:-1]} {name!r} in {key}; known: {known or 'none'}")
    if not isinstance(table[name], Mapping):
        raise AvddError(f"{where}: {key}.{name} must be a mapping")
    return dict(table[name])


def resolve(doc: Mapping[str, Any], overrides: Sequence[str] = (), source: str = "config") -> Experiment:
    """Pick the dataset and schedule (file defaults or ``--set``), flatten, apply ``--set``, validate."""
    unknown = sorted(set(doc) - set(FILE_KEYS))
    if unknown:
        raise AvddError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; known: {', '.join(FILE_KEYS)}")
    sets = [parse_override(text) for text in overrides]
    for (path, _), text in zip(sets, overrides, strict=True):
        check_path(path, f"--set {text}")
    chosen = {path[0]: value for path, value in sets if len(path) == 1 and path[0] in ("dataset", "schedule")}
    dataset_name = str(chosen.get("dataset", doc.get("dataset", "")))
    dataset = _section(doc, "datasets", dataset_name, source)
    schedule_name = str(chosen.get("schedule", dataset.get("schedule", "")))
    schedule = _section(doc, "schedules", schedule_name, source)
    if set(dataset) - {"data", "schedule"}:
        bad = ", ".join(sorted(set(dataset) - {"data", "schedule"}))
        raise AvddError(f"{source}: datasets.{dataset_name}: unknown key(s) {bad}; known: data, schedule")
    if set(schedule) - set(SCHEDULE_KEYS):
        bad = ", ".join(sorted(set(schedule) - set(SCHEDULE_KEYS)))
        raise AvddError(f"{source}: schedules.{schedule_name}: unknown key(s) {bad}; known: {', '.join(SCHEDULE_KEYS)}")
    in_schedule = f"{source}: schedules.{schedule_name}."
    methods = _given(schedule, "methods", dict, in_schedule)
    view: dict[str, Any] = {
        "experiment": doc.get("experiment", Path(source).stem),
        "description": doc.get("description", ""),
        "evaluation": doc.get("evaluation", "recognition"),
        "dataset": dataset_name,
        "data": dataset.get("data", f"data/{dataset_name}"),
        "schedule": schedule_name,
        "seeds": schedule.get("seeds", [0]),
        "distill": _given(schedule, "distill", dict, in_schedule),
        "methods": {m: _given(methods, m, dict, f"{in_schedule}methods.") for m in methods},
        "intermediate": _given(schedule, "intermediate", dict, in_schedule),
        "evaluate": _given(schedule, "evaluate", dict, in_schedule),
        "retrieval": _given(doc, "retrieval", dict, f"{source}: "),
        "grid": _given(doc, "grid", dict, f"{source}: "),
        "exclude": _given(doc, "exclude", list, f"{source}: "),
        "whole_data": _given(doc, "whole_data", list, f"{source}: "),
        "table": _given(doc, "table", dict, f"{source}: "),
        "log": _given(doc, "log", dict, f"{source}: "),
    }
    for path, value in sets:
        if len(path) == 1 and path[0] in ("dataset", "schedule"):
            continue
        target = view
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise AvddError(f"--set {'.'.join(path)}: {part!r} is not a mapping")
        target[path[-1]] = value
    check_types(view, source)
    for key, value in view.items():  # what the file gave, or --set gave as a whole section, like --set keys
        if isinstance(value, Mapping) and view_schema()[key] is not OPEN:
            for sub in value:
                check_path([key, sub], source)
    for key, defaults in SECTION_DEFAULTS.items():
        view[key] = {**defaults, **view[key]}
    experiment = Experiment(view, source)
    validate(experiment)
    return experiment


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mappings merged key by key."""
    out = dict(base)
    for key, value in top.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def read_config(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file with the files its ``include:`` names (relative to it) merged underneath."""
    if path.resolve() in seen:
        raise AvddError(f"{path}: included twice in a loop ({' -> '.join(map(str, seen))})")
    doc = read_yaml(path)
    includes = doc.pop("include", [])
    names = [includes] if isinstance(includes, str) else includes
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise AvddError(f"{path}: include names a config file or a list of them, got {includes!r}")
    base: dict[str, Any] = {}
    for name in names:
        base = merge(base, read_config(path.parent / name, (*seen, path.resolve())))
    return merge(base, doc)


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    path = Path(path)
    return resolve(read_config(path), overrides, str(path))


# -- validation ----------------------------------------------------------------------------------
TYPE_NAMES = {str: "a string", list: "a list", dict: "a mapping"}


def check_types(view: Mapping[str, Any], where: str) -> None:
    """Every key of the view has its type, before anything reads it."""
    for key, kind in VIEW_TYPES.items():
        if not isinstance(view[key], kind):
            raise AvddError(f"{where}: {key} must be {TYPE_NAMES[kind]}, got {view[key]!r}")
    for method, block in view["methods"].items():
        if not isinstance(block, Mapping):
            raise AvddError(f"{where}: methods.{method} must map settings to values, got {block!r}")
        for step in set(block) & set(STEPS):
            if not isinstance(block[step], Mapping):
                raise AvddError(f"{where}: methods.{method}.{step} must map the {step} step's settings to values, "
                                f"got {block[step]!r}")


def given_settings(experiment: Experiment) -> Iterator[tuple[str, str, Any]]:
    """(where in the view, setting name (of a method or in avdd/ranges.py), value) of every setting the
    view gives."""
    v = experiment.view
    blocks = [("distill.", v["distill"]), *((f"methods.{m}.", b) for m, b in v["methods"].items()),
              ("evaluate.", v["evaluate"]), ("retrieval.", v["retrieval"])]
    for prefix, block in blocks:  # a method's steps (below) are settings of their own
        yield from ((prefix + name, name, value) for name, value in block.items() if name not in STEPS)
    for method, block in v["methods"].items():  # the steps a method needs (MTT's experts)
        for step in set(block) & set(STEPS):
            yield from ((f"methods.{method}.{step}.{key}", STEP_SETTINGS.get(key, key), value)
                        for key, value in block[step].items())
    yield from ((f"intermediate.{key}", INTERMEDIATE_SETTINGS[key], value) for key, value in v["intermediate"].items())
    yield from ((f"log.{key}", LOG_SETTINGS[key] or key, value) for key, value in v["log"].items())
    for axis in experiment.axes:
        for index, (label, settings) in enumerate(zip(axis.values, axis.settings, strict=True)):
            for name, value in settings.items():
                yield (f"grid.{axis.name}.{label}.{name}" if axis.named else f"grid.{axis.name}[{index}]"), name, value


def check_modality_keys(experiment: Experiment, given: list[tuple[str, str, Any]]) -> None:
    """A per-modality setting (a learning rate per modality) may only name modalities some cell has."""
    from avdd.experiments.grid import expand  # grid builds on this module

    known = sorted({m for cell in expand(experiment) for m in cell.modalities})
    ranges = {**RANGES, **method_ranges()}
    for where, name, value in given:
        per_modality = isinstance(ranges.get(name), PerModality | OneOrPerModality) and isinstance(value, Mapping)
        unknown = unknown_modalities(value, known) if per_modality else []
        if unknown:
            raise AvddError(f"{experiment.source}: {where} names {', '.join(unknown)}, which no cell of this grid "
                            f"has (its modalities: {', '.join(known)})")


def validate(experiment: Experiment) -> None:
    """Types, ranges and names that can be checked before anything runs (methods are checked per cell,
    so a method this avdd lacks fails its own cells only)."""
    v, where = experiment.view, experiment.source
    if v["evaluation"] not in EVALUATIONS:
        raise AvddError(f"{where}: evaluation must be one of {', '.join(EVALUATIONS)}, got {v['evaluation']!r}")
    seed = RANGES["seed"]
    if not v["seeds"] or not all(seed.accepts(s) for s in v["seeds"]):
        raise AvddError(f"{where}: seeds must be a non-empty list, each {seed.describe()}, got {v['seeds']!r}")
    if not v["grid"]:
        raise AvddError(f"{where}: grid is empty; it needs at least a method axis")
    given = list(given_settings(experiment))
    ranges = method_ranges()  # a method's range where it declares one, else avdd/ranges.py's
    found = [p for label, name, value in given if (p := problem(name, value, label, spec=ranges.get(name)))]
    if found:
        raise AvddError(f"{where}: {'; '.join(found)}")
    if not isinstance(v["log"]["dir"], str | type(None)):
        raise AvddError(f"{where}: log.dir must be a path (a string), got {v['log']['dir']!r}")
    if v["retrieval"]["space"] not in SPACES:
        raise AvddError(f"{where}: retrieval.space must be one of {', '.join(SPACES)}")
    experiment.eval_config(("audio",), "ensemble", 0)  # evaluate settings: what the ranges do not cover
    allowed = set(CELL_AXES) | method_setting_names()
    for axis in experiment.axes:
        if not axis.named and axis.name not in allowed:
            raise AvddError(f"{where}: grid.{axis.name}: a list axis must be a setting ({', '.join(sorted(allowed))}); "
                            "name anything else as a mapping of variants")
        for settings in axis.settings:
            bad = sorted(set(settings) - allowed)
            if bad:
                raise AvddError(f"{where}: grid.{axis.name}: unknown setting(s) {', '.join(bad)}")
            if "modalities" in settings:
                parse_modalities(settings["modalities"], f"{where}: grid.{axis.name}")
    for entry in v["exclude"]:
        if not isinstance(entry, Mapping) or not entry:
            raise AvddError(f"{where}: exclude entries are mappings of axis or setting values, got {entry!r}")
    for modalities in v["whole_data"]:
        parse_modalities(modalities, f"{where}: whole_data")
    if v["whole_data"] and "method" not in v["table"]["rows"]:
        raise AvddError(f"{where}: whole_data adds a 'whole data' row, so table.rows must include method")
    names = {a.name for a in experiment.axes} | set(CELL_AXES)
    for part in TABLE_KEYS:
        layout = v["table"][part]
        if not isinstance(layout, list) or not all(a in names for a in layout):
            raise AvddError(f"{where}: table.{part} must list grid axes (of: {', '.join(sorted(names))}), "
                            f"got {layout!r}")
    check_modality_keys(experiment, given)
