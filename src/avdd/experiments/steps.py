"""Steps a method needs before it runs, named in its config block (``methods: {mtt: {experts: {...}}}``).

The runner runs each step once per (dataset, modalities, step settings), caches its output under
``OUT/<step>/`` and hands the method the output directory as the setting of the same name
(``experts=DIR``). A step this avdd lacks fails the cells that need it, with a message saying so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from avdd.data.store import Store
from avdd.errors import AvddError

StepFunction = Callable[..., None]


def _module_function(module: str, function: str, what: str) -> StepFunction:
    try:
        return getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
    except AttributeError:
        pass
    raise AvddError(f"{what} needs {module}.{function}, which this avdd does not have")


def train_experts(store: Store, out: Path, *, modalities: Sequence[str], device: torch.device, progress: bool,
                  **settings: Any) -> None:
    """MTT's expert trajectories of ``store`` into ``out`` (``settings``: num_experts, epochs, …)."""
    run = _module_function("avdd.distill.experts", "train_experts", "the experts step (MTT's expert trajectories)")
    run(store.path, out, modalities=tuple(modalities), device=device, progress=progress, **settings)


STEPS: dict[str, StepFunction] = {"experts": train_experts}
