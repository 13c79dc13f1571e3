"""Distribution matching (DM) and AVDD: one optimisation loop, the method is its settings.

Each iteration draws a fresh randomly initialised encoder per modality, embeds every class's real
batch (no gradients; autocast optional) and every class's synthetic samples (one batched pass, or
groups of classes backpropagated in turn where one pass would not fit), and takes one SGD step on
the sum over classes of the matching loss (distill/matching.py); the per-class losses are
independent, so each class gets the gradient of its own. The authors' loop takes one forward and
one SGD step per class instead, which through the shared momentum buffer moves the earlier
classes again at each later class's step: the ``reference`` protocol does that too
(benchmarks/RESULTS.md measures the difference). Every random draw is keyed by (seed, iteration,
class/modality), so a resumed or sharded run draws exactly what an uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avdd.data.augment import REFERENCE_STRATEGY, Draw
from avdd.data.store import Split
from avdd.distill.embedding import EmbeddingConfig
from avdd.distill.matching import MatchingWeights, class_means, matching_terms, weighted_total
from avdd.distill.real_cache import RealMeanCache, cache_key
from avdd.distill.registry import METHODS, MethodSpec, RunContext
from avdd.distill.result import SyntheticSet
from avdd.distill.spec import nested, setting, with_defaults
from avdd.distill.synthetic import (
    FACTOR_HELP,
    ITERATIONS_HELP,
    SyntheticRun,
    finish,
    init_order,
)
from avdd.distributed import balanced_shards, current, main_first
from avdd.errors import AvddError
from avdd.models.convnet import DEFAULT_ENCODER, ENCODERS, ConvNetConfig, reference_config
from avdd.models.init import init_parameters
from avdd.ranges import PATH, check_fields
from avdd.seeding import generator
from avdd.training.factor import PAPER_FACTOR, Factor, decoded_per_stored
from avdd.training.protocol import PROTOCOLS

AUTOCAST_MODES = ("auto", "off", "bf16", "fp16")
REAL_CHUNK_BYTES = {"cpu": 256 << 20, "cuda": 8 << 30}
# first-layer activations of the synthetic samples in one forward/backward (their whole graph is
# ~3x this); CPU: 10 classes x 1 frame at 224x224 still go in one pass
SYNTHETIC_GROUP_BYTES = {"cpu": 512 << 20, "cuda": 16 << 30}


@dataclass(frozen=True)
class DMSettings:
    """The settings of ``avdd distill --method dm`` (the paper's DM baseline); AVDD's differ in defaults."""

    iterations: int = field(default=5000, metadata=setting(ITERATIONS_HELP))
    lr: dict[str, float] = field(default_factory=lambda: {"audio": 0.2, "frame": 0.2},
                                 metadata=setting("synthetic-data learning rate per modality"))
    lr_default: float = field(default=0.2, metadata=setting("synthetic-data learning rate of a modality --lr does "
                                                            "not name"))
    momentum: float = field(default=0.5, metadata=setting("SGD momentum on the synthetic data"))
    batch_real: int = field(default=128, metadata=setting("real samples per class per iteration"))
    lambda_base: float = field(default=1.0, metadata=setting("weight of the per-modality DM term (0 switches it off)"))
    lambda_jm: float = field(default=0.0, metadata=setting("weight of joint matching"))
    lambda_mgm: float = field(default=0.0, metadata=setting("weight of modality-gap matching"))
    factor: Factor = field(default=1, metadata=setting(FACTOR_HELP))
    init: str = field(default="random", metadata=setting("initialisation: random real samples, or herding order"))
    dsa_strategy: str = field(default=REFERENCE_STRATEGY, metadata=setting("augmentation ops joined by _"))
    protocol: str = field(default="clean", metadata=setting(
        "clean, or reference: the authors' loop (their encoder layout, spectrograms in raw dB, one augmentation "
        "per iteration, one SGD step per class; benchmarks/RESULTS.md)"))
    width: int = field(default=ConvNetConfig.width, metadata=setting("encoder width"))
    autocast: str = field(default="auto", metadata=setting("real-side autocast: auto (bf16 on CUDA, off on CPU), "
                                                           "off, bf16, fp16"))
    checkpoint_every: int = field(default=100, metadata=setting("iterations between checkpoints"))
    real_cache: str = field(default="", metadata=setting(
        "folder of the real-mean cache: runs that share the data, seed and real side read each other's "
        "per-iteration real class means (none by default; `avdd run` gives each experiment one)", PATH,
        result=False))
    real_cache_mb: int = field(default=2048, metadata=setting(
        "size bound of the real-mean cache in MB (least recently used iterations evicted)", result=False))
    # herding init's embedding network (--embed-source, --embed-epochs)
    embed: EmbeddingConfig = field(default_factory=EmbeddingConfig, metadata=nested("embed"))

    def config(self) -> MatchingConfig:
        """The run's configuration: these settings, the rest (chunking, memory layout) at their defaults."""
        return MatchingConfig(**self.matching_fields())

    def matching_fields(self) -> dict[str, Any]:
        """MatchingConfig's fields from these settings; a subclass's config adds its own to them
        (without building a MatchingConfig first, which would refuse a run whose only terms are its own)."""
        return dict(
            iterations=self.iterations, lr=self.lr, lr_default=self.lr_default, momentum=self.momentum,
            batch_real=self.batch_real,
            weights=MatchingWeights(self.lambda_base, self.lambda_jm, self.lambda_mgm), factor=self.factor,
            init=self.init, dsa_strategy=self.dsa_strategy, protocol=self.protocol, encoder={"width": self.width},
            autocast=self.autocast, checkpoint_every=self.checkpoint_every)


# the reference AVDD: herding init, factor, joint and modality-gap matching
AVDD_DEFAULTS: dict[str, Any] = {"lambda_jm": 10.0, "lambda_mgm": 10.0, "factor": PAPER_FACTOR, "init": "herding"}
AVDDSettings = with_defaults(DMSettings, "AVDDSettings", "The settings of ``avdd distill --method avdd``.",
                             **AVDD_DEFAULTS)


@dataclass(frozen=True)
class MatchingConfig:
    """A DM/AVDD run's configuration (DM = joint 0, gap 0; the reference AVDD = 10, 10): the user's
    settings (DMSettings, which declares their defaults) in the form the loop reads, and internal knobs."""

    iterations: int = DMSettings.iterations
    lr: dict[str, float] = field(default_factory=lambda: DMSettings().lr)
    lr_default: float = DMSettings.lr_default
    momentum: float = DMSettings.momentum
    batch_real: int = DMSettings.batch_real
    weights: MatchingWeights = field(default_factory=MatchingWeights)
    factor: Factor = PAPER_FACTOR
    init: str = "random"  # "random" real samples, or "herding" order (from distill/coreset)
    dsa_strategy: str = DMSettings.dsa_strategy
    protocol: str = DMSettings.protocol  # avdd.training.protocol.PROTOCOLS
    encoder: dict[str, Any] = field(default_factory=dict)  # ConvNetConfig overrides, e.g. width
    autocast: str = DMSettings.autocast  # real-side autocast: auto = bf16 on CUDA, off on CPU
    real_chunk: int = 0  # real samples per forward; 0 = auto: as many as keep the first layer's
    #                      activations within REAL_CHUNK_BYTES (on CPU, chunks of 8 to 64 samples run
    #                      at the same speed and bound peak memory; 224x224 frames need small ones)
    channels_last: bool = True  # real side: measured faster for its no-grad forward on CPU (benchmarks/RESULTS.md)
    synthetic_group: int = 0  # classes per synthetic forward + backward; 0 = auto (SYNTHETIC_GROUP_BYTES)
    checkpoint_every: int = DMSettings.checkpoint_every

    def __post_init__(self) -> None:
        check_fields("DM/AVDD", self, [f.name for f in fields(self) if f.name not in ("weights", "encoder")],
                     lambda_base=self.weights.base, lambda_jm=self.weights.joint, lambda_mgm=self.weights.gap,
                     **self.encoder)
        if self.protocol not in PROTOCOLS:  # after check_fields: a non-string is reported there
            raise AvddError(f"unknown protocol {self.protocol!r}; known: {', '.join(PROTOCOLS)}")
        if not self.has_loss:  # the data would not move (and the loss would be no tensor)
            raise AvddError("every loss weight is 0: nothing to distill; give a term (e.g. --lambda-base) a weight")

    @property
    def has_loss(self) -> bool:
        """Whether some term has a weight."""
        return bool(self.weights.active())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.protocol == "clean":  # left out, so checkpoints made before it existed still resume
            del data["protocol"]
        return data


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    if mode not in AUTOCAST_MODES:
        raise AvddError(f"unknown autocast mode {mode!r}; known: {', '.join(AUTOCAST_MODES)}")
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]


class MatchingRun(SyntheticRun):
    """The state of one DM/AVDD distillation: synthetic tensors, optimizer, iteration counter."""

    config: MatchingConfig

    def __init__(
        self,
        train: Split,
        modalities: Sequence[str],
        ipc: int,
        seed: int,
        config: MatchingConfig,
        device: torch.device | str = "cpu",
        init_order: list[np.ndarray] | None = None,
        classes: Sequence[int] | None = None,
        real_cache: RealMeanCache | None = None,
    ) -> None:
        if len(modalities) < 2 and (config.weights.joint or config.weights.gap):
            raise AvddError("joint and modality-gap matching need two modalities; set their weights to 0")
        super().__init__(train, modalities, ipc, seed, config, device, init_order, classes, PROTOCOLS[config.protocol])
        self.amp = autocast_dtype(config.autocast, self.device)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.encoder_configs = {
            m: reference_config(train.store.modalities[m].shape, self.quirks.encoder_layout, **config.encoder)
            for m in self.modalities
        }
        self.real_chunk = {m: config.real_chunk or self._auto_chunk(m) for m in self.modalities}
        self.real_cache = real_cache
        self.real_settings = {m: self.real_key(m) for m in self.modalities} if real_cache else {}
        self.real_keys = {m: cache_key(settings) for m, settings in self.real_settings.items()}

    def real_key(self, modality: str) -> dict[str, Any]:
        """Everything ``modality``'s real class means depend on but the iteration and the class: the
        real-mean cache's key. Not the synthetic side (IPC, init, factor, weights, learning rates)."""
        return {"format": 1, "data": self.data_fingerprint, "seed": self.seed, "modality": modality,
                "encoder": [DEFAULT_ENCODER, asdict(self.encoder_configs[modality])],
                "dsa_strategy": self.config.dsa_strategy, "batch_real": self.config.batch_real,
                "raw": modality in self.raw, "align_corners": self.quirks.align_corners,
                "shared_augment": self.quirks.shared_augment,
                # the numerics: the same inputs give other bits in another dtype, layout, chunking
                "autocast": str(self.amp), "channels_last": self.config.channels_last,
                "real_chunk": self.real_chunk[modality], "device": self.device.type, "torch": torch.__version__,
                "threads": torch.get_num_threads() if self.device.type == "cpu" else None}

    def _first_layer_bytes(self, modality: str) -> int:
        """Bytes of one sample's first conv layer output (fp32): what sizes a batch's activations."""
        _, h, w = self.train.store.modalities[modality].shape
        return self.encoder_configs[modality].width * h * w * 4

    def _fitting(self, budgets: dict[str, int], per_item: int) -> int:
        """How many items of ``per_item`` bytes fit this device's budget (at least one)."""
        return max(1, budgets.get(self.device.type, budgets["cuda"]) // per_item)

    def _auto_chunk(self, modality: str) -> int:
        return self._fitting(REAL_CHUNK_BYTES, self._first_layer_bytes(modality))

    # -- one iteration --------------------------------------------------------------------------
    # Draws are keyed by the modality's name, not its position in the run: the frame encoder of an
    # audio-visual run is that of a frame-only run, so A, V and AV runs share their real means.
    def _encoders(self) -> dict[str, torch.nn.Module]:
        encoders = {}
        for m in self.modalities:
            net = ENCODERS.get(DEFAULT_ENCODER)(self.encoder_configs[m])
            init_parameters(net, generator(self.seed, "encoder", self.iteration, m))
            net = net.to(self.device, memory_format=self.memory_format)  # type: ignore[call-overload]  # stubs lack memory_format
            encoders[m] = net.requires_grad_(False)  # gradients go to the synthetic inputs only
        return encoders

    def _draws(self, modality: str) -> Draw:
        """One augmentation per class (keyed by class and modality), or one for every class and
        modality (``shared_augment``, as the authors' loop seeds them all alike)."""
        if self.quirks.shared_augment:
            draw = self.dsa.draw(1, generator(self.seed, "dsa", self.iteration))
            count = len(self.classes)
            return Draw(draw.kinds.expand(count), draw.uniforms.expand(count, -1))
        draws = [self.dsa.draw(1, generator(self.seed, "dsa", self.iteration, modality, c)) for c in self.classes]
        return Draw(torch.cat([d.kinds for d in draws]), torch.cat([d.uniforms for d in draws]))

    def _real_batch(self, c: int, modalities: Sequence[str]) -> dict[str, torch.Tensor]:
        """Class ``c``'s real batch of this iteration (the same samples in every modality)."""
        pool = self.train.class_indices[c]
        perm = torch.randperm(len(pool), generator=generator(self.seed, "real", self.iteration, c)).numpy()
        return self.real_inputs(pool[perm[: self.config.batch_real]], modalities)

    def _class_real_features(self, position: int, modalities: Sequence[str], encoders: dict[str, torch.nn.Module],
                             draws: dict[str, Draw]) -> dict[str, torch.Tensor]:
        """(n, d) per modality: the embeddings of the augmented real batch of the class at
        ``position``. Each class goes through the encoders on its own, in chunks of its own samples,
        so its embeddings are the same bits whichever other classes a run has (a shard, a cache)."""
        real = self._real_batch(self.classes[position], modalities)
        features = {}
        for m in modalities:
            draw = Draw(draws[m].kinds[position : position + 1], draws[m].uniforms[position : position + 1])
            with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                                                 enabled=self.amp is not None):
                augmented = self.dsa.apply(real[m], draw)
                features[m] = torch.cat([encoders[m](x.contiguous(memory_format=self.memory_format)).float()
                                         for x in augmented.split(self.real_chunk[m])])
        return features

    def _class_real_means(self, position: int, modalities: Sequence[str], encoders: dict[str, torch.nn.Module],
                          draws: dict[str, Draw]) -> dict[str, torch.Tensor]:
        """(d,) per modality: the mean embedding of the augmented real batch of the class at ``position``."""
        return {m: f.mean(0) for m, f in self._class_real_features(position, modalities, encoders, draws).items()}

    def _real_means(self, encoders: dict[str, torch.nn.Module],
                    draws: dict[str, Draw]) -> dict[str, torch.Tensor]:
        """(C, d) per modality: every class's mean embedding of its augmented real batch (no graph),
        read from the real-mean cache where it has them; those computed here are written to it."""
        cache, rows = self.real_cache, []
        for position, c in enumerate(self.classes):
            found = {m: cache.get(self.real_keys[m], c, self.iteration) for m in self.modalities} if cache else {}
            row = {m: mean for m, mean in found.items() if mean is not None}
            missing = [m for m in self.modalities if m not in row]
            if missing:
                computed = self._class_real_means(position, missing, encoders, draws)
                if cache:
                    for m, mean in computed.items():
                        cache.put(self.real_keys[m], self.real_settings[m], c, self.iteration, mean)
                row |= computed
            rows.append(row)
        # cached means come on the CPU, computed ones on the device
        return {m: torch.stack([row[m].to(self.device) for row in rows]) for m in self.modalities}

    def class_groups(self) -> list[slice]:
        """Positions of ``self.classes`` whose synthetic samples go through the encoders together.

        All classes at once where that fits: the batched pass holds every class's graph until the
        backward, C × IPC × tiles samples (at 224×224, ~77 MB each). Beyond the budget, groups of
        whole classes are backpropagated one after the other, which bounds the memory and leaves
        the gradients unchanged (the loss is a sum over classes)."""
        class_bytes = self.ipc * self.tiles * max(self._first_layer_bytes(m) for m in self.modalities)
        size = self.config.synthetic_group or self._fitting(SYNTHETIC_GROUP_BYTES, class_bytes)
        if self.quirks.class_steps:  # each class's loss is computed after the previous class's step
            size = 1
        count = len(self.classes)
        return [slice(c, min(c + size, count)) for c in range(0, count, size)]

    def _synthetic_features(self, group: slice, encoders: dict[str, torch.nn.Module], draws: dict[str, Draw]
                            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The augmented synthetic samples of the classes at positions ``group`` and their embeddings
        ((classes × samples, d), class-major), per modality."""
        syn = self.synthetic_inputs(group)
        per_class, n = self.ipc * self.tiles, group.stop - group.start
        augmented = {m: self.dsa.apply(syn[m], Draw(draws[m].kinds[group], draws[m].uniforms[group]),
                                       chunks=[per_class] * n) for m in self.modalities}
        # contiguous, not channels-last: measured faster for the synthetic forward + backward
        return augmented, {m: encoders[m](augmented[m]) for m in self.modalities}

    def _real_side(self, encoders: dict[str, torch.nn.Module], draws: dict[str, Draw]) -> Any:
        """What the terms need of this iteration's real batches: DM/AVDD's class means."""
        return self._real_means(encoders, draws)

    def _group_terms(self, real: Any, group: slice, features: dict[str, torch.Tensor],
                     augmented: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-class terms of the classes at positions ``group`` from the real side and the
        embeddings of their augmented synthetic samples ((classes × samples, d), class-major;
        the samples themselves in ``augmented``, for terms that put them through other networks)."""
        n = group.stop - group.start
        labels = torch.arange(n, device=self.device).repeat_interleave(self.ipc * self.tiles)
        syn_means = {m: class_means(features[m], labels, n) for m in self.modalities}
        return matching_terms({m: real[m][group] for m in self.modalities}, syn_means, self.modalities)

    def active_terms(self) -> tuple[str, ...]:
        """The terms with a non-zero weight (those logged)."""
        return self.config.weights.active()

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ over classes and active terms of weight · term."""
        return weighted_total(terms, self.config.weights)

    def loss_terms(self, backward: bool = False,
                   after_group: Callable[[dict[str, torch.Tensor]], None] | None = None) -> dict[str, torch.Tensor]:
        """Per-class values of every matching term at the current iteration's draws.

        With ``backward``, each class group's weighted loss is backpropagated as soon as it is
        computed, its graph freed and ``after_group(its terms)`` called; the returned terms are
        then detached."""
        encoders = self._encoders()
        draws = {m: self._draws(m) for m in self.modalities}
        real = self._real_side(encoders, draws)
        parts = []
        for group in self.class_groups():
            augmented, features = self._synthetic_features(group, encoders, draws)
            terms = self._group_terms(real, group, features, augmented)
            if backward:
                self.total(terms).backward()
                terms = {t: v.detach() for t, v in terms.items()}
                if after_group is not None:
                    after_group(terms)
            parts.append(terms)
        return {t: torch.cat([part[t] for part in parts]) for t in parts[0]}

    def backward(self) -> tuple[dict[str, float], float]:
        return self._logged(self.loss_terms(backward=True))

    def _logged(self, terms: dict[str, torch.Tensor]) -> tuple[dict[str, float], float]:
        return {t: float(terms[t].sum()) for t in self.active_terms()}, float(self.total(terms))

    def descend(self) -> tuple[dict[str, float], float]:
        """One SGD step on all classes' loss, or (``class_steps``) one per class, in class order:
        class c's loss is then computed after the earlier classes' steps, which move its samples
        too through the momentum buffer (the authors' loop)."""
        if not self.quirks.class_steps:
            return super().descend()

        def class_step(terms: dict[str, torch.Tensor]) -> None:
            self.check_finite(self._logged(terms)[0])
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

        self.optimizer.zero_grad(set_to_none=True)
        return self._logged(self.loss_terms(backward=True, after_group=class_step))


# -- the registered methods ----------------------------------------------------------------------
def process_classes(train: Split, config: MatchingConfig, synthetic_per_class: int) -> list[int]:
    """This process's share of the classes (all of them when serial), balanced by the samples each
    class puts through the encoders per iteration: its real batch and its synthetic samples."""
    job = current()
    num_classes = train.store.num_classes
    if job.world_size > 1 and PROTOCOLS[config.protocol].class_steps:
        raise AvddError(f"protocol {config.protocol!r} steps once per class through one momentum buffer, which "
                        "processes holding a share of the classes cannot reproduce; run it in one process")
    if job.world_size > num_classes:
        raise AvddError(f"{job.world_size} processes for {num_classes} classes: each process distills whole "
                        f"classes, so start at most {num_classes}")
    costs = [min(len(pool), config.batch_real) + synthetic_per_class for pool in train.class_indices]
    return balanced_shards(costs, job.world_size)[job.rank]


def distill_with(run_type: type[MatchingRun], context: RunContext, settings: DMSettings,
                 **extra: Any) -> SyntheticSet:
    """Run a matching method (``run_type``, built with ``extra`` besides what every one gets) on
    this process's classes, with its herding order and real-mean cache, to its synthetic set."""
    config = settings.config()
    train = context.store.split("train")
    # a herding order's embedding network is trained (and cached) once, not by every process at once
    order = main_first(lambda: init_order(context.store, context.modalities, context.ipc, config, settings.embed,
                                          context.device, context.progress))  # checks the factor first
    classes = process_classes(train, config, context.ipc * decoded_per_stored(config.factor, context.modalities))
    cache = RealMeanCache(Path(settings.real_cache), settings.real_cache_mb << 20) if settings.real_cache else None
    run = run_type(train, context.modalities, context.ipc, context.seed, config, context.device, order, classes,
                   cache, **extra)
    return finish(run, checkpoint=context.checkpoint, resume=context.resume, progress=context.progress,
                  on_iteration=context.on_iteration, details={"matching": config.to_json()})


def _matching(context: RunContext, settings: DMSettings) -> SyntheticSet:
    return distill_with(MatchingRun, context, settings)


METHODS.add("dm", MethodSpec(DMSettings, _matching,
                             "distribution matching with random encoders (each modality separately)", sharded=True))
METHODS.add("avdd", MethodSpec(AVDDSettings, _matching,
                               "DM + joint and modality-gap matching, herding init, factor", sharded=True))
