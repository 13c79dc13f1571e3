"""Steps a method needs before it runs, named in its config block (``methods: {mtt: {experts: {...}}}``).

The runner runs each step once per (dataset, modalities, step settings), caches its output under
``OUT/<step>/`` and hands the method the output directory as the setting of the same name
(``experts=DIR``). A step this avdd lacks fails the cells that need it, with a message saying so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from avdd.data.store import Store
from avdd.errors import AvddError

StepFunction = Callable[..., None]


def _module_with(module: str, names: Sequence[str], what: str) -> ModuleType:
    """``module`` if it defines every one of ``names``; otherwise an error saying what is missing."""
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
    else:
        if all(hasattr(found, name) for name in names):
            return found
    raise AvddError(f"{what} needs {module}.{'/'.join(names)}, which this avdd does not have")


def train_experts(store: Store, out: Path, *, modalities: Sequence[str], device: torch.device, progress: bool,
                  **settings: Any) -> None:
    """MTT's expert trajectories of ``store`` into ``out`` (``settings``: ExpertConfig fields such as
    num_experts, epochs, float16)."""
    experts = _module_with("avdd.distill.experts", ("ExpertConfig", "train_experts"),
                           "the experts step (MTT's expert trajectories)")
    try:
        config = experts.ExpertConfig(modalities=tuple(modalities), **settings)
    except TypeError as err:
        raise AvddError(f"experts settings: {err}") from None
    experts.train_experts(store, out, config, device=device, progress=progress)


STEPS: dict[str, StepFunction] = {"experts": train_experts}
