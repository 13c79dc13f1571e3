"""The encoder pool of avdd-plus: networks trained on the real train split, whose parameters are
mixed into the random encoders (and fusion head) a matching iteration draws.

The pool is an expert directory (distill/experts.py): each network's parameters after every
training epoch. Iteration i draws, from generators keyed by (seed, "pool", i) so that a resumed
or sharded run draws the same, one network, one of its trained epochs (rows 1..epochs, uniformly:
row 0 is its untrained initialisation, which the other side of the mix covers) and a weight α; the
iteration's networks are then α · trained + (1 − α) · that network's own initialisation (DANCE's
middle encoders) or a fresh random draw. An automatic pool is trained once and cached next to the
store, like herding's embedding network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from avdd.data.store import Store
from avdd.distill.checkpoint import store_cache_path
from avdd.distill.experts import ExpertConfig, ExpertSet, train_experts
from avdd.errors import AvddError
from avdd.models.flat import unflatten
from avdd.seeding import generator


@dataclass(frozen=True)
class PoolDraw:
    """One iteration's draw: which network, after which epoch, and how much of it."""

    network: int
    epoch: int
    alpha: float


def draw(seed: int, iteration: int, networks: int, epochs: int, mix_min: float, mix_max: float) -> PoolDraw:
    """Iteration ``iteration``'s network (of ``networks``), trained epoch (1..``epochs``) and
    α ~ U(mix_min, mix_max)."""
    g = generator(seed, "pool", iteration)
    network = int(torch.randint(networks, (1,), generator=g))
    epoch = int(torch.randint(1, epochs + 1, (1,), generator=g))
    u = float(torch.rand(1, generator=g, dtype=torch.float64))
    return PoolDraw(network, epoch, mix_min + (mix_max - mix_min) * u)


@torch.no_grad()
def mix_(module: nn.Module, trained: Mapping[str, torch.Tensor], alpha: float) -> None:
    """Every parameter of ``module`` becomes α · trained + (1 − α) · itself, in place (α = 0
    leaves it bit for bit: lerp adds α · (trained − p) to p)."""
    for name, p in module.named_parameters():
        p.lerp_(trained[name].to(device=p.device, dtype=p.dtype), alpha)


@torch.no_grad()
def load_(module: nn.Module, parameters: Mapping[str, torch.Tensor]) -> None:
    """Every parameter of ``module`` set to ``parameters``' (by name), in place."""
    for name, p in module.named_parameters():
        p.copy_(parameters[name])


class EncoderPool:
    """An expert directory opened as a pool: the parameters of its networks by draw."""

    def __init__(self, experts: ExpertSet) -> None:
        self.experts = experts

    @property
    def fusion(self) -> str:
        return self.experts.config.fusion

    def draw(self, seed: int, iteration: int, mix_min: float, mix_max: float) -> PoolDraw:
        return draw(seed, iteration, len(self.experts.files), self.experts.config.epochs, mix_min, mix_max)

    def parameters(self, chosen: PoolDraw, prefix: str) -> dict[str, torch.Tensor]:
        """The drawn network's parameters whose names start with ``prefix`` (``encoders.audio.``,
        ``head.``), named without it."""
        row = self.experts.trajectory(chosen.network)[chosen.epoch]
        return {name.removeprefix(prefix): p for name, p in unflatten(row, self.experts.layout).items()
                if name.startswith(prefix)}

    @property
    def epochs(self) -> int:
        return self.experts.config.epochs

    def mix(self, module: nn.Module, chosen: PoolDraw, prefix: str, from_init: bool = False) -> None:
        """``module``'s parameters mixed in place with the drawn network's under ``prefix``; with
        ``from_init``, mixed with that network's own initialisation instead of ``module``'s values
        (DANCE's middle encoders: a path within one network's basin, not between two networks)."""
        if from_init:
            self.load(module, replace(chosen, epoch=0), prefix)
        mix_(module, self.parameters(chosen, prefix), chosen.alpha)

    def load(self, module: nn.Module, chosen: PoolDraw, prefix: str) -> None:
        """``module``'s parameters set to the drawn network's (at ``chosen.epoch``) under ``prefix``."""
        load_(module, self.parameters(chosen, prefix))

    def check(self, store: Store, modalities: Sequence[str], width: int, modules: Mapping[str, nn.Module]) -> None:
        """Refuse a pool whose networks do not fit this distillation's data and ``modules`` (the
        modules its parameters are mixed into, by their prefix in the pool's networks)."""
        path, trained_width = self.experts.path, self.experts.config.width
        if trained_width != width:
            raise AvddError(f"{path}: the pool's networks have encoder width {trained_width}, this distillation's "
                            f"encoders {width}; pass --width {trained_width} or another --pool")
        self.experts.check_data(store, tuple(modalities))
        for prefix, module in modules.items():
            own = {prefix + name: tuple(p.shape) for name, p in module.named_parameters()}
            if own != {name: tuple(shape) for name, shape in self.experts.layout if name.startswith(prefix)}:
                raise AvddError(f"{path}: the pool's networks are built otherwise than this distillation's (their "
                                f"{prefix.rstrip('.')} parameters differ: other depth, grid, norm or fusion); train "
                                "a pool with `avdd experts` for these settings")


def pool_directory(store: Store, config: ExpertConfig) -> Path:
    """Where the automatic pool of ``config`` on ``store`` is cached."""
    return store_cache_path(store, "pool", {"modalities": list(config.modalities), "experts": config.to_json()})


def automatic_pool(store: Store, config: ExpertConfig, device: torch.device, progress: bool) -> ExpertSet:
    """The pool of ``config`` on ``store``: trained on first use, read from the cache after."""
    out = pool_directory(store, config)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(out.parent, os.W_OK)
    except OSError:
        writable = False
    temporary = None
    if not writable:
        temporary = tempfile.mkdtemp(prefix="avdd-pool-")
        out = Path(temporary) / "pool"
        warnings.warn(f"{store.path}: read-only, so the encoder pool is trained into {temporary} for this run "
                      "alone (not cached)", stacklevel=2)
    experts = train_experts(store, out, config, device=device, progress=progress)
    if temporary is not None:
        weakref.finalize(experts, shutil.rmtree, temporary, True)
    return experts
