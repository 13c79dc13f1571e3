"""The method registry: each method registers one spec (its settings dataclass and its run
function) in its own module; ``avdd/distill/__init__.py`` imports them all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avdd.data.store import Store
from avdd.distill.result import SyntheticSet
from avdd.distill.spec import build, settings_of
from avdd.registry import Registry


@dataclass(frozen=True)
class RunContext:
    """What every method is run with besides its settings. ``checkpoint``, ``resume`` and
    ``on_iteration`` concern iterative methods; a one-pass selection has no use for them."""

    store: Store
    modalities: tuple[str, ...]
    ipc: int
    seed: int
    device: torch.device
    progress: bool
    checkpoint: Path | None = None
    resume: bool = False
    on_iteration: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its settings dataclass (see distill/spec.py: the CLI flags, the config
    keys, the checks and the provenance all come from it), the function that runs it on a context
    and an instance of that dataclass, a one-line summary, and whether it is ``sharded``: under a
    process group it distills only its own process's share of the classes
    (``avdd.distributed.current()``) and returns the set of those; ``distill`` gathers the shares.
    Other methods run on the main process alone."""

    settings: type
    run: Callable[[RunContext, Any], SyntheticSet]
    summary: str
    sharded: bool = False

    @property
    def setting_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in settings_of(self.settings))

    @property
    def result_free(self) -> frozenset[str]:
        """The settings that cannot change what the method computes (``setting(result=False)``)."""
        return frozenset(s.name for s in settings_of(self.settings) if not s.result)

    @property
    def iterative(self) -> bool:
        return "iterations" in self.setting_names

    def build(self, given: Mapping[str, Any], method: str) -> Any:
        """The settings instance: defaults overridden by ``given`` (flat names, None = default)."""
        return build(self.settings, given, method)


METHODS: Registry[MethodSpec] = Registry("method")
