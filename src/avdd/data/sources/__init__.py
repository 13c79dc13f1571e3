"""Known datasets, one module each: built-in ones in :data:`DATASETS` (``avdd data build``), raw
ones a user fetched in :data:`PREPARE_SOURCES` (``avdd prepare``)."""

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


def _register_builtin() -> None:
    # each module registers itself
    from avdd.data.sources import (  # noqa: F401
        avdigits,
        ave,
        csvfile,
        folder,
        music21,
        reference_pt,
        vggs10k,
        vggsound,
    )


_register_builtin()

__all__ = ["DATASETS", "PREPARE_SOURCES", "DatasetSource", "Option"]
