"""What every optimisation-based method (DM/AVDD, MTT) shares: synthetic tensors initialised from
real samples (random or herding order, optionally factorised), their SGD optimizer, and the
checkpointed, interruptible, NaN-guarded iteration loop. A method subclasses :class:`SyntheticRun`
with its ``objective`` (and its own settings)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from avdd.data.store import Split, Store
from avdd.distill.checkpoint import (
    Interrupted,
    check_resumable,
    interrupts_deferred,
    load_checkpoint,
    save_checkpoint,
    store_fingerprint,
)
from avdd.distill.coreset import selection_orders
from avdd.distill.embedding import EmbeddingConfig
from avdd.distill.result import SyntheticSet
from avdd.errors import AvddError, first_line
from avdd.seeding import generator
from avdd.training.factor import (
    Factor,
    check_named,
    decoded_per_stored,
    expand_modality,
    pack_tiles,
    side_of,
    tile_size,
    tiles_per_side,
)
from avdd.training.inputs import network_inputs, to_stored
from avdd.training.protocol import PROTOCOLS
from avdd.training.protocol import Protocol as Quirks

INITS = ("random", "herding")
# settings a resume may change: more iterations continue the run (fewer are refused), and how
# often it checkpoints does not change what it computes
MAY_CHANGE_ON_RESUME = ("iterations", "checkpoint_every")
ITERATIONS_HELP = "optimisation iterations (0: the initialised set, unoptimised)"
FACTOR_HELP = ("factor parametrisation: each stored sample holds N×N tiles, each decoded into a full-size "
               "sample (1: off; AVDD's 2: 4 samples per stored one); N, or MODALITY=N for each modality "
               "(the modalities' tiles are paired in turn: audio=4 frame=2 decodes into 16 pairs)")
STATE_KEYS = ("iteration", "synthetic", "optimizer", "history", "settings", "data")


class DivergedError(AvddError):
    """NaN or Inf in a loss term, in the synthetic data or in another learned value."""


class SyntheticConfig(Protocol):
    """The settings a :class:`SyntheticRun` reads; methods' configs have these and more. Read-only
    properties, so that frozen dataclasses (MatchingConfig, MTTConfig) satisfy it."""

    @property
    def iterations(self) -> int: ...
    @property
    def lr(self) -> dict[str, float]: ...  # synthetic-data learning rate per modality
    @property
    def lr_default(self) -> float: ...  # that of a modality lr does not name
    @property
    def momentum(self) -> float: ...
    @property
    def factor(self) -> Factor: ...  # tiles per side of a stored sample (1: off), or one per modality
    @property
    def init(self) -> str: ...
    @property
    def dsa_strategy(self) -> str: ...
    @property
    def checkpoint_every(self) -> int: ...

    def to_json(self) -> dict[str, Any]: ...


def check_tiles(store: Store, modalities: Sequence[str], factor: Factor) -> None:
    """Refuse, before any work, a factor per modality that does not name exactly the run's
    modalities, or a factor whose tiles do not divide a modality's sample sides."""
    check_named(factor, modalities)
    for m in modalities:
        if side_of(factor, m) > 1 and m in store.modalities:  # an unknown modality is refused where it is read
            h, w = store.modalities[m].shape[-2:]
            try:
                tile_size(h, w, side_of(factor, m))
            except AvddError as e:
                raise AvddError(f"{m}: {e}") from None


def init_order(
    store: Store, modalities: Sequence[str], ipc: int, config: SyntheticConfig, embedding: EmbeddingConfig,
    device: torch.device, progress: bool,
) -> list[np.ndarray] | None:
    """Per class, the herding order (long enough for every tile) on ``embedding`` for
    ``init = herding``; None for random real samples."""
    if config.init not in INITS:
        raise AvddError(f"unknown init {config.init!r}; known: {', '.join(INITS)}")
    check_tiles(store, modalities, config.factor)
    if config.init == "random":
        return None
    return selection_orders(store, modalities, "herding", ipc * decoded_per_stored(config.factor, modalities),
                            embedding, device=device, progress=progress)


class SyntheticRun:
    """The state of one distillation: synthetic tensors, optimizer, iteration counter, loss history."""

    def __init__(
        self,
        train: Split,
        modalities: Sequence[str],
        ipc: int,
        seed: int,
        config: SyntheticConfig,
        device: torch.device | str = "cpu",
        init_order: list[np.ndarray] | None = None,
        classes: Sequence[int] | None = None,
        quirks: Quirks = PROTOCOLS["clean"],
    ) -> None:
        """``quirks``: where the run follows the authors' code (units of the raw kinds, warps)."""
        self.train, self.modalities, self.ipc, self.seed, self.config = train, tuple(modalities), ipc, seed, config
        self.device = torch.device(device)
        self.classes = list(range(train.store.num_classes)) if classes is None else list(classes)
        missing = [m for m in self.modalities if m not in train.store.modalities]
        if missing:
            have = ", ".join(train.store.modalities)
            raise AvddError(f"{train.store.path}: no modality {missing[0]!r} (has: {have})")
        check_tiles(train.store, self.modalities, config.factor)
        self.tiles = decoded_per_stored(config.factor, self.modalities)  # decoded samples per stored one
        self.quirks = quirks
        self.raw = quirks.raw_modalities(train.store, self.modalities)  # learned in stored units, not normalised
        self.dsa = quirks.augmentation(config.dsa_strategy)
        self.labels = torch.tensor(self.classes, device=self.device).repeat_interleave(ipc)
        self.synthetic = self._initial_synthetic(init_order)
        self.optimizer = torch.optim.SGD(
            [{"params": [self.synthetic[m]], "lr": config.lr.get(m, config.lr_default)} for m in self.modalities],
            lr=config.lr_default, momentum=config.momentum,
        )
        self.iteration = 0
        self.history: list[dict[str, float]] = []

    # -- initialisation -------------------------------------------------------------------------
    def _initial_synthetic(self, init_order: list[np.ndarray] | None) -> dict[str, torch.Tensor]:
        need = self.ipc * self.tiles
        picks = []
        for c in self.classes:
            pool = self.train.class_indices[c]
            if len(pool) < need:
                raise AvddError(
                    f"class {self.train.store.class_names[c]!r} has {len(pool)} training samples, fewer than "
                    f"IPC × tiles = {need}; lower --ipc" + (" or --factor" if self.tiles > 1 else "")
                )
            if init_order is not None:
                picks.append(np.asarray(init_order[c][:need]))
            else:
                perm = torch.randperm(len(pool), generator=generator(self.seed, "init", c)).numpy()
                picks.append(pool[perm[:need]])
        # tile-major within a class: tile k of stored sample i is real pick k * ipc + i (a modality with
        # fewer tiles takes the first picks, so decoded sample k < its tile count is a real pair)
        index = np.concatenate(picks)
        real = self.real_inputs(index, self.modalities)
        synthetic = {}
        for m, x in real.items():
            side = side_of(self.config.factor, m)
            if self.tiles > 1:
                per_class = x.view(len(self.classes), self.tiles * self.ipc, *x.shape[1:])
                x = torch.cat([pack_tiles(chunk[: side * side * self.ipc], side) for chunk in per_class])
            synthetic[m] = x.detach().clone().requires_grad_(True)
        return synthetic

    def real_inputs(self, index: np.ndarray, modalities: Sequence[str]) -> dict[str, torch.Tensor]:
        """Train samples ``index`` as the networks see them (the raw modalities in stored units)."""
        return network_inputs(self.train, index, modalities, self.device, self.raw)

    def synthetic_inputs(self, classes: slice = slice(None)) -> dict[str, torch.Tensor]:
        """Decoded synthetic samples, class-major (each class's samples contiguous), of the classes at
        positions ``classes`` of ``self.classes`` (all by default)."""
        first, stop, _ = classes.indices(len(self.classes))
        rows = slice(first * self.ipc, stop * self.ipc)
        if self.tiles == 1:
            return {m: x[rows] for m, x in self.synthetic.items()}
        out = {}
        for m, x in self.synthetic.items():
            decoded = expand_modality(x[rows], side_of(self.config.factor, m), self.tiles)
            tiles = decoded.view(self.tiles, stop - first, self.ipc, *x.shape[1:])
            out[m] = tiles.transpose(0, 1).reshape(-1, *x.shape[1:])
        return out

    # -- one iteration --------------------------------------------------------------------------
    def objective(self) -> tuple[dict[str, float], torch.Tensor]:
        """The method's logged loss terms and the differentiable total to minimise at this iteration."""
        raise NotImplementedError

    def backward(self) -> tuple[dict[str, float], float]:
        """Compute this iteration's loss and its gradients; returns the logged terms and the total.

        A method whose loss is a sum of independent parts can override this to backpropagate part
        by part and free each part's graph (DM/AVDD's class groups)."""
        logged, loss = self.objective()
        loss.backward()
        return logged, float(loss.detach())

    def learned(self) -> dict[str, torch.Tensor]:
        """Everything the optimizer updates, by the name an error message gives it."""
        return {f"synthetic {m} data": x for m, x in self.synthetic.items()}

    def monitored(self) -> dict[str, float]:
        """Values logged with the losses after each step (none here)."""
        return {}

    def check_finite(self, logged: dict[str, float]) -> None:
        """Raise DivergedError for a NaN or Inf loss term (before it reaches the optimizer)."""
        for t, value in logged.items():
            if not np.isfinite(value):
                raise DivergedError(f"iteration {self.iteration}: the {t!r} loss term is {value}")

    def descend(self) -> tuple[dict[str, float], float]:
        """This iteration's gradients and optimizer step; returns the logged terms and the total."""
        self.optimizer.zero_grad(set_to_none=True)
        logged, total = self.backward()
        self.check_finite(logged)
        self.optimizer.step()
        return logged, total

    def step(self) -> dict[str, float]:
        logged, total = self.descend()
        for name, x in self.learned().items():
            if not torch.isfinite(x).all():
                raise DivergedError(f"iteration {self.iteration}: {name} became NaN/Inf")
        self.iteration += 1
        logged = {**logged, "total": total, **self.monitored()}
        self.history.append({"iteration": self.iteration, **logged})
        return logged

    # -- checkpoints ----------------------------------------------------------------------------
    def run_settings(self) -> dict[str, Any]:
        """What a checkpoint must have been made with to be resumed by this run."""
        settings = {"modalities": list(self.modalities), "ipc": self.ipc, "seed": self.seed,
                    "classes": self.classes, **self.config.to_json()}
        return {k: v for k, v in settings.items() if k not in MAY_CHANGE_ON_RESUME}

    @cached_property
    def data_fingerprint(self) -> str:
        return store_fingerprint(self.train.store)

    def state(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "synthetic": {m: x.detach().cpu() for m, x in self.synthetic.items()},
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "settings": self.run_settings(),
            "data": self.data_fingerprint,
        }

    def load_state(self, path: Path) -> dict[str, Any]:
        """Continue from the checkpoint at ``path``, refused if it was made with other settings, from
        other data or has run more iterations than this run is to; returns its state."""
        state = load_checkpoint(path)
        self.check_state(path, state)
        try:
            self.restore(state)
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as err:  # made by another run
            raise AvddError(f"{path}: does not fit this run ({first_line(err)}); delete it to start over") from None
        self.iteration, self.history = state["iteration"], state["history"]
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Put the learned values and the optimizer back as ``state`` has them."""
        saved = state["synthetic"]
        have = {m: tuple(x.shape) for m, x in self.synthetic.items()}
        got = {m: tuple(x.shape) for m, x in saved.items()}
        if got != have:  # copy_ would broadcast a smaller tensor silently
            raise ValueError(f"synthetic data of shapes {got}, this run has {have}")
        with torch.no_grad():
            for m, x in saved.items():
                self.synthetic[m].copy_(x)
        self.optimizer.load_state_dict(state["optimizer"])

    def check_state(self, path: Path, state: dict[str, Any]) -> None:
        """Refuse a checkpoint this run cannot continue honestly."""
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise AvddError(f"{path}: not a checkpoint of this avdd (no {missing[0]!r}; an earlier version made "
                            "it?); delete it to start over")
        if state["data"] != self.data_fingerprint:
            raise AvddError(f"{path}: was made from other data than {self.train.store.path} (its meta.json, "
                            "labels or array sizes differ); resume with the data it was made from, or delete it "
                            "to start over")
        done = state["iteration"]
        if not (isinstance(done, int) and done >= 0 and isinstance(state["history"], list)
                and isinstance(state["settings"], dict)):
            raise AvddError(f"{path}: damaged checkpoint (iteration {done!r}); delete it to start over")
        saved = state["settings"]
        if "factor" in saved:  # checkpoints from before the factor was a number hold true/false
            saved = {**saved, "factor": tiles_per_side(saved["factor"], f"{path}: settings.factor")}
        check_resumable(path, saved, self.run_settings())
        if done > self.config.iterations:
            raise AvddError(f"{path}: has run {done} iterations, more than --iterations {self.config.iterations}; "
                            f"resume with --iterations {done} or more (the set would be trained longer than "
                            "recorded), or delete it to start over")

    def run(
        self,
        checkpoint: Path | None = None,
        progress: bool = True,
        on_iteration: Callable[[Any], None] | None = None,
    ) -> None:
        """Iterate up to ``config.iterations``, checkpointing every ``checkpoint_every`` and on Ctrl-C.

        On divergence the last good checkpoint is kept (never overwritten by the bad state).
        """
        total = self.config.iterations
        bar = tqdm(total=total, initial=self.iteration, desc="distill", disable=not progress, unit="it")
        try:
            while self.iteration < total:
                with interrupts_deferred():  # Ctrl-C lands between iterations, never inside a step
                    logged = self.step()
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items()}, refresh=False)
                if on_iteration is not None:
                    on_iteration(self)
                if checkpoint is not None and (self.iteration % self.config.checkpoint_every == 0
                                               or self.iteration == total):
                    save_checkpoint(checkpoint, self.state())
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the work done so far
            if checkpoint is None:
                raise
            save_checkpoint(checkpoint, self.state())
            raise Interrupted(checkpoint) from None
        finally:
            bar.close()

    def stored(self) -> dict[str, torch.Tensor]:
        """Synthetic samples in the source store's units (for saving)."""
        return {m: to_stored(self.train.store, m, x.detach(), self.raw) for m, x in self.synthetic.items()}


def finish(run: SyntheticRun, *, checkpoint: Path | None, resume: bool, progress: bool,
           on_iteration: Callable[[Any], None] | None, details: dict[str, Any]) -> SyntheticSet:
    """Resume ``run`` from ``checkpoint`` when asked (and one exists), run it to the end, and
    return its synthetic set with ``details`` and the loss history."""
    if resume and checkpoint is not None and checkpoint.is_file():
        run.load_state(checkpoint)
    run.run(checkpoint, progress, on_iteration)
    return SyntheticSet(run.stored(), run.labels.cpu(), factor=run.config.factor, details=details,
                        log={"losses": run.history})
