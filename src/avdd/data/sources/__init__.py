"""Known datasets, one module each, registered by name in :data:`DATASETS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from avdd.data.store import Store
from avdd.registry import Registry


@dataclass(frozen=True)
class Option:
    """One build option of a dataset source (the CLI turns each into a ``--flag``)."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class DatasetSource:
    """A dataset avdd can build into a store: ``build(out, overwrite=..., progress=..., **options)``."""

    name: str
    summary: str
    build: Callable[..., Store]
    options: tuple[Option, ...] = field(default_factory=tuple)


DATASETS: Registry[DatasetSource] = Registry("dataset")


def _register_builtin() -> None:
    from avdd.data.sources import avdigits  # noqa: F401  (registers itself)


_register_builtin()

__all__ = ["DATASETS", "DatasetSource", "Option"]
