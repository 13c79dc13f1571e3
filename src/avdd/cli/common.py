"""Options shared by the verbs: ``--device``, and the argparse types that check every number.

A bad value is a usage error: argparse prints the verb's usage and one line,
``avdd VERB: error: argument --FLAG: must be …, got '…'``, and exits with status 2. The ranges
are those of avdd/ranges.py, which the library checks too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from avdd.errors import AvddError
from avdd.ranges import RANGES, Choice, Number, OneOrPerModality, PerModality, unknown_modalities
from avdd.tracking import LOG_EVERY


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu; under torchrun "
                             "cuda is each process's own GPU, cuda:LOCAL_RANK)")


LOG_DIR = "avdd-logs"  # --log-dir of distill and evaluate (run: its --out/logs)


def add_log_options(parser: argparse.ArgumentParser, default_dir: str, default: str | None = "none") -> None:
    """``--log``, ``--log-dir``, ``--log-every``: experiment tracking (avdd/tracking.py)."""
    backends = RANGES["log"]
    assert isinstance(backends, Choice)
    parser.add_argument("--log", choices=backends.names, default=default,
                        help="send losses, accuracies, sample grids and sounds to TensorBoard or Weights & Biases "
                             f"(pip install 'avdd[tensorboard]' or 'avdd[wandb]'; default: {default or 'the config'})")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help=f"where the tracker writes (default: {default_dir})")
    parser.add_argument("--log-every", type=setting("log_every"), default=None,
                        help="iterations between logged sample grids and sounds (losses: every iteration; "
                             f"default {LOG_EVERY})")


def _number(spec: Number, text: str) -> Any:
    value = spec.parse(text)
    if not spec.accepts(value):
        raise argparse.ArgumentTypeError(f"must be {spec.describe()}, got {text!r}")
    return value


def number(spec: Number, name: str = "number") -> Callable[[str], Any]:
    """argparse ``type=``: the text parsed as ``spec``'s kind and checked against its range."""

    def parse(text: str) -> Any:
        return _number(spec, text)

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def setting(name: str) -> Callable[[str], Any]:
    """argparse ``type=`` for the numeric setting ``name`` of avdd/ranges.py."""
    spec = RANGES[name]
    assert isinstance(spec, Number), f"{name} is not a number"
    return number(spec, name)


def modality_value(name: str) -> Callable[[str], tuple[str, Any]]:
    """argparse ``type=`` for one ``MODALITY=VALUE`` of the per-modality setting ``name`` (a setting that
    takes one value for all modalities or one per modality: also ``VALUE``, as modality "")."""
    spec = RANGES[name]
    assert isinstance(spec, (PerModality, OneOrPerModality)), f"{name} is not per modality"
    example = "4 or frame=2" if isinstance(spec, OneOrPerModality) else "frame=0.1"

    def parse(text: str) -> tuple[str, Any]:
        modality, sep, value = text.partition("=")
        if not sep and isinstance(spec, OneOrPerModality):
            return "", _number(spec.value, text)
        if not sep or not modality.strip():
            raise argparse.ArgumentTypeError(f"takes MODALITY=VALUE, e.g. {example}; got {text!r}")
        return modality.strip(), _number(spec.value, value)

    parse.__name__ = name
    return parse


class PerModalityValues(argparse.Action):
    """Repeated ``--flag MODALITY=VALUE`` collected into {modality: value}; a modality given twice
    is refused (the second would silently win)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        modality, value = values
        given = getattr(namespace, self.dest)
        if modality == "" or not isinstance(given, (dict, type(None))):  # VALUE: one for all modalities
            if given is not None:
                raise argparse.ArgumentError(self, "give VALUE once for all modalities, or MODALITY=VALUE "
                                                   "for each, not both")
            setattr(namespace, self.dest, value)
            return
        given = dict(given or {})
        if modality in given:
            raise argparse.ArgumentError(self, f"{modality} given twice ({given[modality]:g} and {value:g}); "
                                               "give each modality once")
        setattr(namespace, self.dest, {**given, modality: value})


def add_per_modality_option(parser: argparse.ArgumentParser, flag: str, name: str, help: str) -> None:
    """``flag MODALITY=VALUE``, repeatable, into ``args.<name>`` (None when not given); for a setting
    that also takes one value for all modalities, ``flag VALUE`` instead."""
    one = isinstance(RANGES[name], OneOrPerModality)
    parser.add_argument(flag, dest=name, type=modality_value(name), action=PerModalityValues,
                        metavar="N|MODALITY=N" if one else "MODALITY=VALUE", default=None, help=help)


def check_modality_keys(flag: str, values: dict[str, Any] | None, modalities: Sequence[str]) -> None:
    """Refuse a per-modality value for a modality the run does not have (it would be ignored)."""
    unknown = unknown_modalities(values or {}, modalities)
    if unknown:
        raise AvddError(f"{flag} names {', '.join(unknown)}, which this run does not have "
                        f"(its modalities: {', '.join(modalities)})")
