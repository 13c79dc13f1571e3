"""Method specs: a method's settings are one frozen dataclass, and everything else is derived.

A field with ``metadata=setting(help)`` is a user setting: its name is the CLI flag
(``--batch-real``), the experiment-config key (``batch_real``) and the provenance key; its range
is ``range=`` or, where that is omitted, the entry of the same name in avdd/ranges.py; a string or
bool setting needs neither. A setting declared with ``result=False`` changes how a run works, not
what it computes (a cache folder): it is left out of the provenance and of ``avdd run``'s step
keys. A field with ``metadata=nested(prefix)`` holds a settings dataclass of its own (its
default) whose settings are named ``prefix_name`` (``embed: EmbeddingConfig`` gives
``embed_source`` and ``embed_epochs``). Other fields are internal knobs, not settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from functools import cache
from typing import Any

from avdd.errors import AvddError
from avdd.ranges import FLAG, RANGES, TEXT, PerModality, Spec, problem

HELP, RANGE, PREFIX, RESULT = "avdd.help", "avdd.range", "avdd.prefix", "avdd.result"


def setting(help: str, range: Spec | None = None, result: bool = True) -> dict[str, Any]:
    """The field metadata of a user setting (see the module docstring)."""
    return {HELP: help, RANGE: range, RESULT: result}


def nested(prefix: str) -> dict[str, Any]:
    """The field metadata of a nested settings dataclass, its settings named ``prefix_*``."""
    return {PREFIX: prefix}


@dataclass(frozen=True)
class Setting:
    """One user setting of a settings dataclass, flattened: ``path`` is where it lives in it."""

    name: str
    path: tuple[str, ...]
    help: str
    range: Spec
    default: Any
    result: bool = True  # whether it can change what the run computes


def flag_of(name: str) -> str:
    """The CLI flag of setting ``name``."""
    return "--" + name.replace("_", "-")


def _default(f: Field[Any]) -> Any:
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


def _range(name: str, f: Field[Any], default: Any) -> Spec:
    declared = f.metadata[RANGE] or RANGES.get(name)
    if declared is not None:
        return declared
    if isinstance(default, bool):
        return FLAG
    if isinstance(default, str):
        return TEXT
    raise TypeError(f"setting {name!r} needs a range: give range= or add it to avdd/ranges.py")


@cache
def settings_of(cls: type) -> tuple[Setting, ...]:
    """Every user setting of the settings dataclass ``cls``, nested ones flattened, in field order."""
    found: list[Setting] = []

    def walk(cls: type, prefix: str, path: tuple[str, ...]) -> None:
        for f in fields(cls):
            if PREFIX in f.metadata:
                walk(_default(f).__class__, f"{prefix}{f.metadata[PREFIX]}_", (*path, f.name))
            elif HELP in f.metadata:
                name, default = prefix + f.name, _default(f)
                found.append(Setting(name, (*path, f.name), f.metadata[HELP], _range(name, f, default), default,
                                     f.metadata[RESULT]))

    walk(cls, "", ())
    return tuple(found)


def _value_at(obj: Any, path: Iterable[str]) -> Any:
    for part in path:
        obj = getattr(obj, part)
    return obj


def check(what: str, obj: Any) -> None:
    """Raise one AvddError listing every setting of ``obj`` outside its range (None is accepted only
    where it is the default): for a settings dataclass built directly, not through ``build``."""
    cls: type = type(obj)  # mypy takes type[Any] for unhashable (settings_of's cache needs hashable arguments)
    found = [p for s in settings_of(cls)
             if (p := problem(s.name, _value_at(obj, s.path), none_ok=s.default is None, spec=s.range))]
    if found:
        raise AvddError(f"invalid {what} settings: {'; '.join(found)}")


def build(cls: type, given: Mapping[str, Any], method: str) -> Any:
    """``cls`` with the settings in ``given`` (flat names; None = the default). A name ``cls``
    does not have is an error naming its flag; a per-modality value adds to the default mapping."""
    known = {s.name: s for s in settings_of(cls)}
    values = {name: value for name, value in given.items() if value is not None}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise AvddError(f"method {method!r} does not take {', '.join(map(flag_of, unknown))}")
    found = [p for name, value in values.items() if (p := problem(name, value, spec=known[name].range))]
    if found:
        raise AvddError(f"invalid distillation settings: {'; '.join(found)}")
    tree: dict[str, Any] = {}
    for name, value in values.items():
        s = known[name]
        if isinstance(s.range, PerModality):
            value = {**s.default, **value}
        node = tree
        for part in s.path[:-1]:
            node = node.setdefault(part, {})
        node[s.path[-1]] = value
    return _construct(cls, tree)


def _construct(cls: type, tree: Mapping[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        if f.name in tree:
            kwargs[f.name] = _construct(_default(f).__class__, tree[f.name]) if PREFIX in f.metadata else tree[f.name]
    return cls(**kwargs)


def with_defaults(cls: type, name: str, doc: str, **defaults: Any) -> type:
    """A subclass of the settings dataclass ``cls`` whose listed settings default otherwise (AVDD is
    DM with other defaults): same settings, same help and ranges."""
    namespace: dict[str, Any] = {"__doc__": doc, "__module__": cls.__module__, "__annotations__": {}}
    by_name = {f.name: f for f in fields(cls)}
    for key, value in defaults.items():
        f = by_name[key]
        namespace["__annotations__"][key] = f.type
        namespace[key] = field(default=value, metadata=f.metadata)
    return dataclass(frozen=True)(type(name, (cls,), namespace))
