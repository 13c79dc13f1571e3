"""Which torch device a command runs on: the one asked for, or the best one available."""

from __future__ import annotations

import torch

from avdd.distributed import launched, local_rank
from avdd.errors import AvddError

AUTO = "auto"


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` (where available) or a ``torch.device``; None or "auto": CUDA
    when available, else CPU. Anything else is an AvddError.

    Under torchrun an unnumbered CUDA device is the process's own GPU, ``cuda:LOCAL_RANK``.
    """
    if name is None or str(name) == AUTO:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):  # torch knows more types; avdd runs on these
        raise AvddError(f"unknown device {str(name)!r} (use cpu, cuda, cuda:N, or mps where available)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise AvddError(f"device {str(name)!r} requested but MPS is not available on this machine; use --device cpu")
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise AvddError(f"device {str(name)!r} requested but CUDA is not available; use --device cpu")
    if device.index is None and launched():
        device = torch.device("cuda", local_rank())
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise AvddError(f"device {str(device)!r} requested but only {count} GPU(s) are visible")
    return device
