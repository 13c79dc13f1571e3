"""The recognition protocol's training: its settings, the networks it trains and how it trains them.

Distillation uses it too (herding's embedding network, MTT's experts and student), so it lives
below both ``avdd.distill`` and ``avdd.evaluate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from avdd.data.augment import DSA, REFERENCE_STRATEGY, DSAParams
from avdd.data.store import SPECTROGRAM, Split, Store
from avdd.errors import AvddError
from avdd.models.convnet import DEFAULT_ENCODER
from avdd.models.fusion import AVClassifier, build_classifier, fusion_loss
from avdd.ranges import check_fields
from avdd.training.inputs import network_inputs


@dataclass(frozen=True)
class Protocol:
    """Where training and distillation follow the authors' code (AVDD ``utils/train_utils_DM.py``,
    ``nets/``, ``main_DM_AV.py``) beyond the settings EvalConfig and the methods name;
    benchmarks/RESULTS.md measures each difference."""

    encoder_layout: str  # avdd.models.convnet.layout_overrides
    head_init_std: float | None  # classifier weights N(0, std); None: PyTorch's default
    lr_step_offset: int  # epochs by which every decay comes later (theirs: after epoch *index* 10, 20)
    raw_kinds: tuple[str, ...]  # modalities of these kinds: fed in stored units, without mean/std (their audio: raw dB)
    align_corners: bool  # DSA's scale/rotate warps (theirs: affine_grid's default, False)
    # distillation (DM/AVDD) only:
    class_steps: bool  # one SGD step per class, in class order (theirs: the step inside the class loop)
    shared_augment: bool  # one augmentation draw per iteration for every class and modality (theirs: one seed)

    def augmentation(self, strategy: str) -> DSA:
        """DSA with ``strategy``'s ops, warping as this protocol does."""
        return DSA(strategy, DSAParams(align_corners=self.align_corners))

    def raw_modalities(self, store: Store, modalities: Sequence[str]) -> tuple[str, ...]:
        """Those of ``modalities`` that are fed raw: of a kind in ``raw_kinds`` in ``store``."""
        return tuple(m for m in modalities if store.modalities[m].kind in self.raw_kinds)


PROTOCOLS: dict[str, Protocol] = {
    "clean": Protocol(encoder_layout="clean", head_init_std=None, lr_step_offset=0, raw_kinds=(),
                      align_corners=True, class_steps=False, shared_augment=False),
    "reference": Protocol(encoder_layout="reference", head_init_std=1e-4, lr_step_offset=1,
                          raw_kinds=(SPECTROGRAM,), align_corners=False, class_steps=True,
                          shared_augment=True),
}


@dataclass(frozen=True)
class EvalConfig:
    """The protocol's settings; defaults are the reference protocol's values (DESIGN.md), and
    ``protocol`` says whether the authors' code's quirks (``PROTOCOLS``) come with them."""

    protocol: str = "clean"
    modalities: tuple[str, ...] = ("audio", "frame")
    fusion: str = "ensemble"
    encoder: str = DEFAULT_ENCODER
    width: int = 128
    norm: str = "instance"
    activation: str = "relu"
    pooling: str = "avg"
    grid: int = 7
    num_eval: int = 5
    epochs: int = 30
    batch_size: int = 32
    lr_head: float = 1e-3
    lr_encoder: Mapping[str, float] = field(default_factory=lambda: {"audio": 1e-3, "frame": 1e-4})
    lr_encoder_default: float = 1e-3  # for modalities not named in lr_encoder
    lr_step: int = 10  # epochs between learning-rate decays
    lr_gamma: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    dsa: bool = True
    dsa_strategy: str = REFERENCE_STRATEGY
    test_batch_size: int = 500
    channels_last: bool = True  # CPU: as fast as contiguous in `avdd evaluate`, lower peak (benchmarks/RESULTS.md)
    networks_together: int = 0  # networks trained as one batched group (avdd.training.parallel); 0: per device
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields("evaluation", self, [f.name for f in fields(self) if f.name != "modalities"])
        if self.protocol not in PROTOCOLS:  # after check_fields: a non-string is reported there
            raise AvddError(f"unknown evaluation protocol {self.protocol!r}; known: {', '.join(PROTOCOLS)}")
        if (not isinstance(self.modalities, tuple) or not all(isinstance(m, str) for m in self.modalities)
                or not self.modalities or len(set(self.modalities)) != len(self.modalities)):
            raise AvddError(f"modalities must be distinct names, not empty, got {self.modalities!r}")

    @property
    def quirks(self) -> Protocol:
        return PROTOCOLS[self.protocol]

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.networks_together:  # auto: left out, so keys of results recorded before it existed hold
            del data["networks_together"]
        return {**data, "modalities": list(self.modalities), "betas": list(self.betas),
                "lr_encoder": dict(self.lr_encoder)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AvddError(f"unknown evaluation settings: {', '.join(unknown)}")
        values = dict(data)
        for name in ("modalities", "betas"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)

    def encoder_lr(self, modality: str) -> float:
        return float(self.lr_encoder.get(modality, self.lr_encoder_default))


def network_generators(seed: int, run: int, device: torch.device) -> dict[str, torch.Generator]:
    """Independent generators for one network's init, batch order and augmentation.

    Derived from (seed, run) alone, so network ``run`` is the same whatever ``num_eval`` is.
    """
    init, batches, augment = np.random.SeedSequence(seed, spawn_key=(run,)).generate_state(3).tolist()
    return {
        "init": torch.Generator().manual_seed(init),
        "batches": torch.Generator().manual_seed(batches),
        "augment": torch.Generator(device=device).manual_seed(augment),
    }


def make_optimizer(model: AVClassifier, config: EvalConfig) -> torch.optim.Adam:
    groups = [{"params": model.encoders[m].parameters(), "lr": config.encoder_lr(m)} for m in model.modalities]
    groups.append({"params": model.head.parameters(), "lr": config.lr_head})
    return torch.optim.Adam(groups, betas=config.betas, weight_decay=config.weight_decay)


def decays_after(epoch: int, config: EvalConfig) -> bool:
    """Whether the learning rate decays after (0-based) ``epoch``: every ``lr_step`` epochs, each
    decay ``lr_step_offset`` epochs later (the authors' 30 epochs: rates 11, 10 and 9 epochs long)."""
    done = epoch + 1 - config.quirks.lr_step_offset
    return done > 0 and done % config.lr_step == 0


def train_network(
    model: AVClassifier,
    inputs: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    config: EvalConfig,
    generators: Mapping[str, torch.Generator],
    on_epoch: Callable[[float], object] = lambda loss: None,  # what it returns is ignored
    optimizer: torch.optim.Optimizer | None = None,
) -> AVClassifier:
    """Adam with step decay, shuffled mini-batches, DSA per sample; ``on_epoch(mean loss)``.

    ``optimizer`` replaces the protocol's Adam (expert trajectories train with plain SGD).
    """
    optimizer = optimizer or make_optimizer(model, config)
    dsa = config.quirks.augmentation(config.dsa_strategy) if config.dsa else None
    n = len(labels)
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=generators["batches"]).to(labels.device)
        total = 0.0
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            batch = {m: x[index] for m, x in inputs.items()}
            if dsa is not None:
                batch = {m: dsa(x, generators["augment"]) for m, x in batch.items()}
            loss = fusion_loss(model(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        if decays_after(epoch, config):
            for group in optimizer.param_groups:
                group["lr"] *= config.lr_gamma  # as StepLR does it, so the clean protocol's rates are unchanged
        on_epoch(total / n)
    return model


@torch.no_grad()
def accuracy_on(
    model: AVClassifier, split: Split, modalities: Sequence[str], device: torch.device,
    batch_size: int, memory_format: torch.memory_format = torch.contiguous_format, raw: Sequence[str] = (),
) -> float:
    """Fraction of ``split`` classified correctly, read in memory-mapped chunks."""
    model.eval()
    correct = 0
    for start in range(0, len(split), batch_size):
        index = np.arange(start, min(start + batch_size, len(split)))
        batch = {m: x.contiguous(memory_format=memory_format)
                 for m, x in network_inputs(split, index, modalities, device, raw).items()}
        labels = torch.from_numpy(np.asarray(split.labels[index])).to(device)
        correct += int((model.predict_proba(batch).argmax(dim=1) == labels).sum())
    return correct / len(split)


def protocol_network(
    store: Store, config: EvalConfig, generator: torch.Generator, device: torch.device,
) -> AVClassifier:
    """The protocol's classifier (encoders + fusion head) for ``store``'s shapes, drawn from ``generator``."""
    shapes = {m: store.modalities[m].shape for m in config.modalities}
    return build_classifier(
        shapes, store.num_classes, fusion=config.fusion, encoder=config.encoder,
        generator=generator, width=config.width, norm=config.norm,
        activation=config.activation, pooling=config.pooling, grid=config.grid,
        layout=config.quirks.encoder_layout, head_init_std=config.quirks.head_init_std,
    ).to(device=device, memory_format=config.memory_format)  # type: ignore[call-overload]  # stubs lack memory_format


def train_fresh_network(
    train_store: Store,
    inputs: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    config: EvalConfig,
    run: int,
    device: torch.device,
    bar: tqdm,
) -> AVClassifier:
    """Network number ``run`` of the protocol, freshly initialised and trained; ``bar`` counts epochs."""
    generators = network_generators(config.seed, run, device)
    model = protocol_network(train_store, config, generators["init"], device)

    def on_epoch(loss: float) -> None:
        bar.set_postfix(net=f"{run + 1}/{config.num_eval}", loss=f"{loss:.3f}")
        bar.update()
        if not math.isfinite(loss):
            raise AvddError(f"training diverged (loss {loss}) on network {run + 1}")

    return train_network(model, inputs, labels, config, generators, on_epoch)
