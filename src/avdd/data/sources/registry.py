"""The dataset registries: built-in datasets in :data:`DATASETS` (``avdd data build``), raw data a
user fetched in :data:`PREPARE_SOURCES` (``avdd prepare``). Each source module registers itself;
``avdd/data/sources/__init__.py`` imports them all."""

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
    required: bool = False


@dataclass(frozen=True)
class DatasetSource:
    """A dataset avdd can build into a store: ``build(out, overwrite=..., progress=..., **options)``."""

    name: str
    summary: str
    build: Callable[..., Store]
    options: tuple[Option, ...] = field(default_factory=tuple)


DATASETS: Registry[DatasetSource] = Registry("dataset")
# Sources of `avdd prepare`: raw data the user fetched (videos, the authors' .pt files) -> store.
PREPARE_SOURCES: Registry[DatasetSource] = Registry("prepare source")
