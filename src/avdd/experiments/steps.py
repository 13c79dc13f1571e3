"""Steps a method needs before it runs, named in its config block (``methods: {mtt: {experts: {...}}}``).

The runner runs each step once per (dataset, modalities, step settings), caches its output under
``OUT/<step>/`` and hands the method the output directory as the setting of the same name
(``experts=DIR``). A failing step fails the cells that need it, with its message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from avdd.data.store import Store
from avdd.distill import experts
from avdd.errors import AvddError

StepFunction = Callable[..., None]


def expert_trajectories_step(store: Store, out: Path, *, modalities: Sequence[str], device: torch.device,
                             progress: bool, **settings: Any) -> None:
    """MTT's expert trajectories of ``store`` into ``out`` (``settings``: ExpertConfig fields such as
    num_experts, epochs, float16)."""
    try:
        config = experts.ExpertConfig(modalities=tuple(modalities), **settings)
    except TypeError as err:
        raise AvddError(f"experts settings: {err}") from None
    experts.train_experts(store, out, config, device=device, progress=progress)


STEPS: dict[str, StepFunction] = {"experts": expert_trajectories_step}
