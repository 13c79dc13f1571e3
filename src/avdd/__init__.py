"""avdd: audio-visual dataset distillation.

``avdd.load(path, split="train")``: any store as a ``torch.utils.data.Dataset``
(avdd/training/dataset.py), imported on first use so that ``import avdd`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from avdd.version import __version__

if TYPE_CHECKING:
    from avdd.training.dataset import load

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from avdd.training.dataset import load

        return load
    raise AttributeError(f"module 'avdd' has no attribute {name!r}")
