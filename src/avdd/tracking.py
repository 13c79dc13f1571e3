"""Experiment tracking: what a run does, sent to TensorBoard or Weights & Biases as it happens.

One small interface, :class:`Backend` (scalars, an image, a sound, a table, the run's settings),
with two implementations: :class:`TensorBoard` (``torch.utils.tensorboard``, extra
``avdd[tensorboard]``) and :class:`Wandb` (``wandb``, extra ``avdd[wandb]``), each imported only
when asked for. :class:`Tracker` wraps a backend so that logging never stops a run: the first
failure (a missing package, a full disk, a lost server) is one warning and the tracker goes quiet.
It never changes results either: it reads copies of the synthetic data and draws no random
numbers from any generator the methods use.

What is logged: every iteration's loss terms, intermediate accuracies, and every ``every``
iterations (and at the last) a per-class grid of each modality's samples and one sound per class
(:meth:`Tracker.distill_hook`); final accuracies and tables (:meth:`Tracker.accuracy`,
:meth:`Tracker.table`).
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from avdd.data.audio import SAMPLE_RATE, write_wav
from avdd.data.store import Store
from avdd.errors import AvddError
from avdd.files import temp_dir
from avdd.ranges import RANGES, Choice, check_settings
from avdd.report.figures import class_grid_figure
from avdd.report.samples import class_samples
from avdd.report.sonify import audible_modality, spectrogram_to_waveform, within_full_scale
from avdd.training.factor import Factor, decoded_per_stored

LOG_EVERY = 100  # iterations between sample grids and sounds (losses: every iteration)
SOUND_ITERATIONS = 32  # Griffin-Lim iterations per logged sound: enough to hear a class, cheap to run
PROJECT = "avdd"  # the Weights & Biases project runs go to


class Backend(Protocol):
    """Where a run's records go. ``step`` is the distillation iteration (0 for results)."""

    def config(self, settings: Mapping[str, Any]) -> None: ...
    def scalars(self, values: Mapping[str, float], step: int) -> None: ...
    def image(self, tag: str, pixels: np.ndarray, step: int) -> None: ...  # (H, W, 3) uint8
    def audio(self, tag: str, wave: np.ndarray, step: int) -> None: ...  # (samples,) in [-1, 1]
    def table(self, tag: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...
    def close(self) -> None: ...


class TensorBoard:
    """Event files under ``log_dir/name`` (``tensorboard --logdir log_dir`` shows every run)."""

    def __init__(self, log_dir: Path, name: str) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(log_dir / name))

    def config(self, settings: Mapping[str, Any]) -> None:
        text = json.dumps(dict(settings), indent=1, default=str)
        self.writer.add_text("settings", "    " + text.replace("\n", "\n    "))  # indented: shown verbatim

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def audio(self, tag: str, wave: np.ndarray, step: int) -> None:
        self.writer.add_audio(tag, torch.from_numpy(wave)[None], step, sample_rate=SAMPLE_RATE)

    def table(self, tag: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        lines = [" | ".join(columns), " | ".join("---" for _ in columns)]
        self.writer.add_text(tag, "\n".join(lines + [" | ".join(map(str, row)) for row in rows]))

    def close(self) -> None:
        self.writer.close()


class Wandb:
    """A Weights & Biases run named ``name`` in project ``avdd``, its files under ``log_dir/wandb``
    (``WANDB_MODE=offline`` keeps it there; ``wandb sync`` uploads it later)."""

    def __init__(self, log_dir: Path, name: str) -> None:
        import wandb

        self.wandb = wandb
        log_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=PROJECT, name=name, dir=str(log_dir), reinit="create_new")
        # wandb.Audio reads arrays only with soundfile: the clips go through files, removed at close
        self.sounds = temp_dir(log_dir, ".avdd-sounds-")

    def config(self, settings: Mapping[str, Any]) -> None:
        self.run.config.update(dict(settings), allow_val_change=True)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        self.run.log({tag: self.wandb.Image(pixels)}, step=step)

    def audio(self, tag: str, wave: np.ndarray, step: int) -> None:
        path = self.sounds / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', tag)}-{step}.wav"
        write_wav(path, torch.from_numpy(wave), SAMPLE_RATE)
        self.run.log({tag: self.wandb.Audio(str(path))}, step=step)  # copied into the run's media when logged

    def table(self, tag: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.run.log({tag: self.wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def close(self) -> None:
        self.run.finish()
        shutil.rmtree(self.sounds, ignore_errors=True)


BACKENDS: dict[str, Callable[[Path, str], Backend]] = {"tensorboard": TensorBoard, "wandb": Wandb}  # and "none"


def run_name(provenance: Mapping[str, Any]) -> str:
    """``avdd-ipc1-audio+frame-s0`` from a distillation's provenance (method, IPC, modalities, seed)."""
    parts = [str(provenance.get("method", "run"))]
    if "ipc" in provenance:
        parts.append(f"ipc{provenance['ipc']}")
    if provenance.get("modalities"):
        parts.append("+".join(provenance["modalities"]))
    if "seed" in provenance:
        parts.append(f"s{provenance['seed']}")
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", "-".join(parts))


class Tracker:
    """A backend that turns its first failure into a warning and then logs nothing more."""

    def __init__(self, backend: Backend | None, name: str, every: int = LOG_EVERY) -> None:
        self.backend, self.name, self.every = backend, name, every

    @property
    def active(self) -> bool:
        return self.backend is not None

    def _call(self, what: str, action: Callable[[Backend], None]) -> None:
        if self.backend is None:
            return
        try:
            action(self.backend)
        except Exception as err:  # logging never stops a run
            warnings.warn(f"logging {what} of {self.name} failed ({type(err).__name__}: {err}); "
                          "the run goes on without logging", stacklevel=2)
            self.backend = None

    def config(self, settings: Mapping[str, Any]) -> None:
        self._call("the settings", lambda b: b.config(settings))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self._call("scalars", lambda b: b.scalars(values, step))

    def table(self, tag: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._call(f"the table {tag}", lambda b: b.table(tag, columns, rows))

    def accuracy(self, result: Mapping[str, Any], prefix: str = "accuracy") -> None:
        """A recognition result's mean and std (as scalars) and every network's accuracy (a table)."""
        self.scalars({f"{prefix}/mean": result["mean"], f"{prefix}/std": result["std"]}, 0)
        self.table(f"{prefix}/runs", ["network", "accuracy"], [[k, r] for k, r in enumerate(result["runs"])])

    def samples(self, store: Store, stored: Mapping[str, torch.Tensor], labels: torch.Tensor, factor: Factor,
                step: int) -> None:
        """A grid per modality and, for front-end audio (not a test store's), each class's first sample as sound."""
        def log(backend: Backend) -> None:
            # up to one factorised sample's tiles per class: a grid that stays readable at any IPC
            samples = class_samples(stored, labels, store.class_names, factor,
                                    max_per_class=decoded_per_stored(factor, stored))
            for modality in stored:
                fig = class_grid_figure(samples, store, modality, f"{self.name}: {modality}, iteration {step}")
                canvas = FigureCanvasAgg(fig)
                canvas.draw()
                backend.image(f"samples/{modality}", np.asarray(canvas.buffer_rgba())[..., :3].copy(), step)
            try:
                audio = audible_modality(store)
            except AvddError:  # no front-end spectrogram to turn into sound: pictures only
                return
            if audio in stored:
                for c, per_class in enumerate(samples.samples):
                    if len(per_class[audio]):
                        wave = spectrogram_to_waveform(per_class[audio][:1], iterations=SOUND_ITERATIONS)[0]
                        backend.audio(f"sound/{c:03d}-{store.class_names[c]}", within_full_scale(wave).numpy(), step)

        self._call("samples", log)

    def distill_hook(self, store: Store) -> Callable[[Any, Mapping[str, Any] | None], None]:
        """``distill(on_iteration=...)``: losses every iteration, the intermediate evaluation when
        there is one, samples every ``every`` iterations and at the last."""

        def hook(run: Any, evaluation: Mapping[str, Any] | None) -> None:
            if self.backend is None:
                return
            step = run.iteration
            values = {f"loss/{k}": v for k, v in run.history[-1].items() if k != "iteration"}
            if evaluation is not None:
                values |= {"intermediate/accuracy": evaluation["mean"], "intermediate/std": evaluation["std"]}
            self.scalars(values, step)
            if step % self.every == 0 or step == run.config.iterations:
                self.samples(store, run.stored(), run.labels, run.config.factor, step)

        return hook

    def close(self) -> None:
        self._call("the end", lambda b: b.close())
        self.backend = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tracker(kind: str, log_dir: str | Path, name: str, settings: Mapping[str, Any] | None = None,
                 every: int | None = None) -> Tracker:
    """A tracker for ``kind`` (tensorboard, wandb or none) writing under ``log_dir`` as run ``name``,
    samples every ``every`` iterations (None: ``LOG_EVERY``). A backend that cannot start (its
    package missing) is a warning and a tracker that logs nothing."""
    every = LOG_EVERY if every is None else every
    choice = RANGES["log"]
    assert isinstance(choice, Choice)
    if kind not in choice.names:
        raise AvddError(f"--log must be {choice.describe()}, got {kind!r}")
    check_settings("logging", {"log_every": every})
    tracker = Tracker(None, name, every)
    if kind == "none":
        return tracker
    try:
        tracker.backend = BACKENDS[kind](Path(log_dir), name)
    except Exception as err:  # ImportError included: pip install 'avdd[tensorboard]' / 'avdd[wandb]'
        warnings.warn(f"cannot log to {kind} ({type(err).__name__}: {err}; pip install 'avdd[{kind}]'); "
                      "the run goes on without logging", stacklevel=2)
    if settings:
        tracker.config(settings)
    return tracker
