"""The valid values of every setting a user can give, declared once.

The CLI's argparse types (avdd/cli/common.py), experiment configs (experiments/config.py), the
settings dataclasses (methods' settings through avdd/distill/spec.py, EvalConfig, ExpertConfig) and the library calls
that take numbers directly (distill, evaluate_retrieval, prepare_clips, …) all check against
``RANGES``, so a setting has the same range, and the same message, wherever it is given.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from avdd.errors import AvddError


@dataclass(frozen=True)
class Number:
    """An int or float between ``low`` and ``high`` (``*_open``: that bound itself is excluded)."""

    kind: type
    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def accepts(self, value: Any) -> bool:
        types = numbers.Real if self.kind is float else numbers.Integral  # numpy's numbers too
        if isinstance(value, bool) or not isinstance(value, types) or not math.isfinite(value):
            return False  # a bool is an int to Python, not to a user; NaN and inf are in no range
        # typeshed's numbers.Real declares only < and <= (its stubs say they are incomplete); the Reals
        # accepted here (int, float, numpy's, Fraction) all have > and >=
        above = value > self.low if self.low_open else value >= self.low  # type: ignore[operator]
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.high == math.inf:
            return f"{noun} {'>' if self.low_open else '≥'} {self.low:g}"
        return f"{noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def parse(self, text: str) -> Any:
        """``text`` as this number, or ``text`` itself where it is not one (then ``accepts`` says no)."""
        try:
            return self.kind(text)
        except ValueError:
            return text


@dataclass(frozen=True)
class Kind:
    """A non-numeric setting: any value of one type."""

    kind: Any  # a type, or a union of types
    noun: str

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.kind) and (self.kind is bool or not isinstance(value, bool))

    def describe(self) -> str:
        return self.noun


@dataclass(frozen=True)
class PerModality:
    """A mapping of modality names to numbers, e.g. a learning rate per modality."""

    value: Number

    def accepts(self, value: Any) -> bool:
        return isinstance(value, Mapping) and all(isinstance(k, str) and self.value.accepts(v)
                                                  for k, v in value.items())

    def describe(self) -> str:
        numbers = self.value.describe().replace("a number", "numbers")
        return f"a mapping of modality names to {numbers}, e.g. {{audio: 0.2, frame: 0.2}}"


@dataclass(frozen=True)
class OneOrPerModality:
    """One number for every modality, or a mapping of modality names to numbers (a factor per modality)."""

    value: Number

    def accepts(self, value: Any) -> bool:
        return self.value.accepts(value) or (PerModality(self.value).accepts(value) and bool(value))

    def describe(self) -> str:
        return f"{self.value.describe()}, or one per modality, e.g. {{audio: 4, frame: 2}}"


@dataclass(frozen=True)
class Several:
    """A list of ``count`` numbers."""

    value: Number
    count: int

    def accepts(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and len(value) == self.count and all(map(self.value.accepts, value))

    def describe(self) -> str:
        return f"{self.count} numbers, each {self.value.describe().removeprefix('a number ')}"


@dataclass(frozen=True)
class Choice:
    """One of a few names."""

    names: tuple[str, ...]

    def accepts(self, value: Any) -> bool:
        return value in self.names

    def describe(self) -> str:
        return "one of " + ", ".join(self.names)


Spec = Number | Kind | PerModality | OneOrPerModality | Several | Choice

COUNT = Number(int, 1)  # how many of something: at least one
INDEX = Number(int, 0)  # seeds, and counts where 0 means off, auto or all
RATE = Number(float, 0, low_open=True)  # learning rates and step sizes
WEIGHT = Number(float, 0)  # loss weights (0 switches a term off), weight decay
FRACTION = Number(float, 0, 1, high_open=True)  # momentum, Adam's betas
SHARE = Number(float, 0, 1, low_open=True, high_open=True)  # a part of a whole that leaves both parts non-empty
TEXT = Kind(str, "a string")
FLAG = Kind(bool, "true or false")
PATH = Kind(str | os.PathLike, "a path")

RANGES: dict[str, Spec] = {
    **dict.fromkeys(("ipc", "griffin_lim_iterations", "num_eval", "epochs", "batch_size", "test_batch_size",
                     "batch_real", "width", "grid", "checkpoint_every", "embed_epochs", "syn_steps", "expert_epochs",
                     "num_experts", "lr_step", "subset", "subsets", "max_per_class", "workers", "real_cache_mb",
                     "log_every", "jobs", "pool_networks", "pool_epochs", "cf_frequencies"), COUNT),
    **dict.fromkeys(("seed", "eval_every", "batch_syn", "max_start_epoch", "real_chunk", "synthetic_group",
                     "pairing_seed", "split_seed", "networks_together", "warmup", "ce_samples"), INDEX),
    "factor": OneOrPerModality(COUNT),  # tiles per side of a stored sample (1: no factor parametrisation)
    "iterations": INDEX,  # distillation steps; 0 keeps the initialised set (to measure the initialisation)
    **dict.fromkeys(("step_size", "lr_step_size", "lr_head", "lr_encoder_default", "lr_default", "expert_lr",
                     "cf_sigma", "krr_ridge"), RATE),
    **dict.fromkeys(("lambda_base", "lambda_jm", "lambda_mgm", "lambda_ce", "lambda_dist", "lambda_pair",
                     "lambda_krr", "weight_decay"), WEIGHT),
    **dict.fromkeys(("mix_min", "mix_max"), Number(float, 0, 1)),  # the trained network's share of a mixture
    "momentum": FRACTION,
    "lr_gamma": Number(float, 0, 1, low_open=True),  # a decay: the rate shrinks (1: stays)
    "test_fraction": SHARE,
    "image_size": Number(int, 8),  # frames smaller than the encoders' three 2x poolings are refused
    "betas": Several(FRACTION, 2),
    **dict.fromkeys(("lr", "lr_encoder"), PerModality(RATE)),
    **dict.fromkeys(("method", "fusion", "init", "dsa_strategy", "autocast", "embed_source", "space",
                     "protocol", "encoder", "norm", "activation", "pooling"), TEXT),
    **dict.fromkeys(("dsa", "channels_last", "float16"), FLAG),
    "log": Choice(("none", "tensorboard", "wandb")),  # experiment trackers (avdd/tracking.py)
}


def problem(name: str, value: Any, label: str | None = None, none_ok: bool = True,
            spec: Spec | None = None) -> str | None:
    """``label=value (must be …)`` where ``value`` is outside ``spec`` (default: the range of setting
    ``name``), else None. Names without a range are not checked here; None (``none_ok``) is a
    setting's default."""
    spec = spec or RANGES.get(name)
    if spec is None or (value is None and none_ok) or spec.accepts(value):
        return None
    return f"{label or name}={value!r} (must be {spec.describe()})"


def problems(values: Mapping[str, Any], prefix: str = "", nullable: Container[str] | None = None) -> list[str]:
    """``problem`` of every item of ``values``, each labelled ``prefix + name``; None is accepted for
    the names in ``nullable`` (None: for all of them)."""
    return [p for name, value in values.items()
            if (p := problem(name, value, prefix + name, nullable is None or name in nullable))]


def check_settings(what: str, values: Mapping[str, Any], nullable: Container[str] | None = None) -> None:
    """Raise one AvddError listing every value of ``values`` outside its range."""
    found = problems(values, nullable=nullable)
    if found:
        raise AvddError(f"invalid {what} settings: {'; '.join(found)}")


def check_fields(what: str, obj: Any, names: Iterable[str], **extra: Any) -> None:
    """``check_settings`` on the fields ``names`` of the settings dataclass ``obj`` (None only where
    that is the field's default) and on ``extra`` (settings it holds otherwise: nested, renamed)."""
    nullable = {f.name for f in fields(obj) if f.default is None}
    check_settings(what, {**{name: getattr(obj, name) for name in names}, **extra}, nullable)


def unknown_modalities(values: Mapping[str, Any], modalities: Sequence[str]) -> list[str]:
    """The keys of a per-modality setting that name none of ``modalities``."""
    return [name for name in values if name not in modalities]


def parse_modalities(value: Any, where: str = "--modalities") -> tuple[str, ...]:
    """Modality names joined by ',' (as the CLI's ``--modalities audio,frame``) or '+' (as configs'
    ``audio+frame``), or a list of names: the distinct names, in order."""
    parts = value if isinstance(value, list) else str(value).replace("+", ",").split(",")
    modalities = tuple(str(p).strip() for p in parts if str(p).strip())
    if not modalities or len(set(modalities)) != len(modalities):
        raise AvddError(f"{where}: modalities must be distinct names joined by ',' or '+', e.g. audio,frame; "
                        f"got {value!r}")
    return modalities
