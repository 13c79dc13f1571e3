"""avdd-plus: AVDD with what stronger distribution-matching methods add (issue #21).

AVDD's cross-modal terms at equal weights reduce to DM, and DM matches only class means under
random encoders. avdd-plus keeps AVDD's loop and terms and adds, each behind its own setting so
that every ablation is a config:

- an encoder pool (distill/pool.py): each iteration's encoders are α · trained + (1 − α) · the same
  network's initialisation (``mix_with`` init) or DM's random draw (random); ``mix_max = 0`` gives
  AVDD's encoders;
- cross-entropy calibration (``lambda_ce``, falling with the decoded samples per class beyond
  ``ce_samples``): the drawn pool network after its last epoch, unmixed
  (``ce_network`` trained), after the drawn epoch (any-epoch), or the iteration's matching network
  and head (mixed) classifies the augmented synthetic samples;
- a distance between the class's real and synthetic embeddings beyond their means, per modality
  (``lambda_dist``; ``distance``: MMD or characteristic functions, distill/distances.py);
- a joint audio-visual term (``lambda_pair``): the same distance on each sample's concatenated
  audio and frame embeddings, which, unlike AVDD's joint and gap terms on means, does not cancel;
- a term across classes (``lambda_krr``, distill/regression.py): a ridge regression fitted on the
  synthetic embeddings of every class predicts the real embeddings' classes;
- a linear warm-up of the synthetic data's learning rates over the first ``warmup`` iterations.

Every other term is a sum of per-class values, as DM's, so class groups and shards give the
gradients of one batched pass (the regression term gets there through its gradient, computed first
over every class); every draw is keyed by (seed, iteration, ...), so resume and shards draw alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from avdd.data.augment import Draw
from avdd.data.store import Split
from avdd.distill.distances import cf_distance, cf_frequencies, median_sq_distance, mmd2, paired
from avdd.distill.dm import AVDD_DEFAULTS, DMSettings, MatchingConfig, MatchingRun, distill_with
from avdd.distill.experts import ExpertConfig, ExpertSet
from avdd.distill.pool import EncoderPool, PoolDraw, automatic_pool
from avdd.distill.real_cache import RealMeanCache
from avdd.distill.registry import METHODS, MethodSpec, RunContext
from avdd.distill.regression import RegressionPull, regression_pull
from avdd.distill.result import SyntheticSet
from avdd.distill.spec import setting, with_defaults
from avdd.distributed import main_first
from avdd.errors import AvddError
from avdd.models.fusion import Logits, fusion_loss, make_head
from avdd.models.init import init_parameters
from avdd.ranges import PATH, Choice, problem
from avdd.seeding import generator

DISTANCE = Choice(("mmd", "cf"))  # the distances beyond the mean (distill/distances.py)
MIX_WITH = Choice(("init", "random"))  # what a pool network is mixed with (distill/pool.py)
CE_NETWORK = Choice(("trained", "any-epoch", "mixed"))  # which network the cross-entropy term asks
# the terms avdd-plus adds to AVDD's, by the name of their weight
PLUS_TERMS = {"ce": "lambda_ce", "dist": "lambda_dist", "pair": "lambda_pair", "krr": "lambda_krr"}


@dataclass(frozen=True)
class PlusFields(DMSettings):
    """DM's settings and avdd-plus's own (``PlusSettings`` gives them AVDD's defaults)."""

    pool: str = field(default="", metadata=setting(
        "expert directory (`avdd experts`) of the encoder pool; empty: a pool trained on the store's train split "
        "and cached next to it", PATH))
    pool_networks: int = field(default=2, metadata=setting("networks of the automatic encoder pool"))
    pool_epochs: int = field(default=3, metadata=setting("training epochs of each automatic pool network"))
    mix_min: float = field(default=0.0, metadata=setting("least weight of the trained network in an iteration's "
                                                         "encoders (α ~ U(mix_min, mix_max))"))
    mix_max: float = field(default=0.0, metadata=setting("largest weight of the trained network (0: DM's random "
                                                         "encoders)"))
    mix_with: str = field(default="init", metadata=setting(
        "what the trained network is mixed with: init (its own initialisation, DANCE's middle encoders) or random "
        "(DM's fresh draw of the iteration)", MIX_WITH))
    # the defaults are the best configuration measured on avdigits (benchmarks/RESULTS.md, "avdd-plus"):
    # a pool of 2 networks × 3 epochs (~96 % test accuracy there) that only classifies (its encoders
    # mixed into the matching ones did not help there), the cross-entropy pulling about as hard as AVDD's
    # weighted terms (benchmarks/plus_term_gradients.py), the distances off (they lowered accuracy there)
    lambda_ce: float = field(default=1000.0, metadata=setting("weight of the cross-entropy of the synthetic "
                                                             "samples under the drawn network, at ce_samples decoded "
                                                             "samples per class"))
    # the weight that helped most at 4 samples per class (IPC 1, factor 2) cost accuracy at 40 (IPC 10)
    # and was above its best at 16 (audio factor 4); benchmarks/RESULTS.md, "The cross-entropy's weight"
    ce_samples: int = field(default=4, metadata=setting(
        "decoded synthetic samples per class at which lambda_ce is the cross-entropy's weight; at n per class the "
        "weight is lambda_ce × ce_samples / n, so the calibration pulls less where more samples cover a class "
        "(0: lambda_ce at any n)"))
    ce_network: str = field(default="trained", metadata=setting(
        "the network that classifies the synthetic samples: trained (the drawn pool network after its last epoch, "
        "unmixed: DANCE's calibration), any-epoch (the drawn pool network after the drawn epoch, unmixed) or mixed "
        "(the iteration's matching network and head)", CE_NETWORK))
    distance: str = field(default="mmd", metadata=setting("distribution distance beyond the mean: mmd (Gaussian "
                                                          "kernels) or cf (characteristic functions)",
                                                          DISTANCE))
    lambda_dist: float = field(default=0.0, metadata=setting("weight of the per-modality distribution distance"))
    lambda_pair: float = field(default=0.0, metadata=setting("weight of the distance between paired "
                                                              "audio-visual embeddings"))
    cf_frequencies: int = field(default=64, metadata=setting("random frequencies of the cf distance"))
    cf_sigma: float = field(default=1.0, metadata=setting("standard deviation of the cf frequencies, in units of "
                                                          "the class's median real distance"))
    # on: it gained at 4 and 16 samples per class (IPC 1, every seed) and lost nothing at IPC 10 (RESULTS.md,
    # "The regression term, built"); it needs the real embeddings, so it leaves out the real-mean cache
    lambda_krr: float = field(default=1000.0, metadata=setting(
        "weight of the kernel ridge regression term: a ridge regression fitted on every class's synthetic "
        "embeddings predicts the real embeddings' classes"))
    krr_ridge: float = field(default=0.1, metadata=setting("the regression's ridge, in units of the mean squared "
                                                           "norm of the synthetic embeddings"))
    warmup: int = field(default=0, metadata=setting("iterations over which the synthetic-data learning rates rise "
                                                    "linearly to their values (0: from the first step)"))

    def config(self) -> PlusConfig:
        return PlusConfig(**self.matching_fields(), **{name: getattr(self, name) for name in PLUS_FIELDS})


PlusSettings = with_defaults(PlusFields, "PlusSettings", "The settings of ``avdd distill --method avdd-plus``.",
                             **AVDD_DEFAULTS)


@dataclass(frozen=True)
class PlusConfig(MatchingConfig):
    """An avdd-plus run's configuration: AVDD's and the added settings (declared in PlusFields)."""

    pool: str = PlusFields.pool
    pool_networks: int = PlusFields.pool_networks
    pool_epochs: int = PlusFields.pool_epochs
    mix_min: float = PlusFields.mix_min
    mix_max: float = PlusFields.mix_max
    mix_with: str = PlusFields.mix_with
    lambda_ce: float = PlusFields.lambda_ce
    ce_samples: int = PlusFields.ce_samples
    ce_network: str = PlusFields.ce_network
    distance: str = PlusFields.distance
    lambda_dist: float = PlusFields.lambda_dist
    lambda_pair: float = PlusFields.lambda_pair
    cf_frequencies: int = PlusFields.cf_frequencies
    cf_sigma: float = PlusFields.cf_sigma
    lambda_krr: float = PlusFields.lambda_krr
    krr_ridge: float = PlusFields.krr_ridge
    warmup: int = PlusFields.warmup

    def __post_init__(self) -> None:
        super().__post_init__()
        found = [p for p in [problem("distance", self.distance, spec=DISTANCE),
                             problem("mix_with", self.mix_with, spec=MIX_WITH),
                             problem("ce_network", self.ce_network, spec=CE_NETWORK)] if p]
        if self.mix_min > self.mix_max:
            found.append(f"mix_min={self.mix_min!r} above mix_max={self.mix_max!r}")
        if self.protocol != "clean":  # its pool is trained the clean way; `reference` reproduces DM/AVDD
            found.append(f"protocol={self.protocol!r} (avdd-plus is not the authors' method: clean only)")
        if found:
            raise AvddError(f"invalid avdd-plus settings: {'; '.join(found)}")

    def plus_weights(self) -> dict[str, float]:
        """The weights of the added terms that are on, by term."""
        return {t: getattr(self, name) for t, name in PLUS_TERMS.items() if getattr(self, name)}

    @property
    def has_loss(self) -> bool:
        return super().has_loss or bool(self.plus_weights())

    @property
    def real_embeddings(self) -> bool:
        """Whether a term needs every real sample's embedding, not only the class means."""
        return bool(self.lambda_dist or self.lambda_pair or self.lambda_krr)

    @property
    def trained_ce(self) -> bool:
        """Whether the cross-entropy term asks a pool network (not the iteration's matching one)."""
        return bool(self.lambda_ce) and self.ce_network != "mixed"

    @property
    def needs_pool(self) -> bool:
        """Whether the run draws trained networks: to mix into its encoders or to classify with."""
        return self.mix_max > 0 or self.trained_ce

    @property
    def means_only(self) -> bool:
        """Whether the real side is class means under DM's encoders (what the real-mean cache holds);
        the trained network's cross-entropy sees only the synthetic samples."""
        return self.mix_max == 0 and not self.real_embeddings


PLUS_FIELDS = tuple(name for name in PlusConfig.__dataclass_fields__ if name not in MatchingConfig.__dataclass_fields__)


@dataclass(frozen=True)
class RealSide:
    """This iteration's real batches as the terms need them: class means (C, d) per modality, and
    where a distance term needs them the embeddings themselves, (C, n, d) padded, with their (C, n) mask; the
    regression term's value and gradient where it is on."""

    means: dict[str, torch.Tensor]
    features: dict[str, torch.Tensor] | None = None
    mask: torch.Tensor | None = None
    regression: RegressionPull | None = None


def class_cross_entropy(head: Callable[[dict[str, torch.Tensor]], Logits], features: dict[str, torch.Tensor],
                        labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """(C,) per class: ``fusion_loss`` of ``head`` on its own samples (rows class-major, ``per_class``
    each). The head runs class by class: a matmul's rounding can depend on its row count, and a
    shard's class groups differ from the serial run's, which would then differ bit for bit."""
    rows = [slice(c, c + per_class) for c in range(0, len(labels), per_class)]
    return torch.stack([fusion_loss(head({m: f[r] for m, f in features.items()}), labels[r]) for r in rows])


def padded(rows: Sequence[torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_c ≤ n, d) per class -> (C, n, d) zero-padded, and the (C, n) mask of real rows."""
    out = rows[0].new_zeros(len(rows), n, rows[0].shape[1])
    mask = torch.zeros(len(rows), n, dtype=torch.bool, device=rows[0].device)
    for c, r in enumerate(rows):
        out[c, : len(r)], mask[c, : len(r)] = r, True
    return out, mask


class PlusRun(MatchingRun):
    """The state of one avdd-plus distillation: AVDD's, with the pool and the added terms."""

    config: PlusConfig

    def __init__(
        self,
        train: Split,
        modalities: Sequence[str],
        ipc: int,
        seed: int,
        config: PlusConfig,
        device: torch.device | str = "cpu",
        init_order: list[np.ndarray] | None = None,
        classes: Sequence[int] | None = None,
        real_cache: RealMeanCache | None = None,
        pool: ExpertSet | None = None,
    ) -> None:
        if len(modalities) < 2 and config.lambda_pair:
            raise AvddError("the paired audio-visual term needs two modalities; set --lambda-pair 0")
        if real_cache is not None and not config.means_only:
            warnings.warn("the real-mean cache is not used: the pool's encoders (mix_max > 0), the distance terms or "
                          "the regression term need more than DM's class means", stacklevel=2)
            real_cache = None
        if config.needs_pool and pool is None:
            raise ValueError("mix_max > 0 or the trained network's cross-entropy needs a pool")
        super().__init__(train, modalities, ipc, seed, config, device, init_order, classes, real_cache)
        self.pool = EncoderPool(pool) if pool is not None and config.needs_pool else None
        if self.pool is not None:
            width = self.encoder_configs[self.modalities[0]].width
            modules = {f"encoders.{m}.": net for m, net in MatchingRun._encoders(self).items()}
            self.pool.check(train.store, self.modalities, width, {**modules, "head.": self._random_head()})
        self.full_lr = [group["lr"] for group in self.optimizer.param_groups]  # the warm-up's end
        self.added_weights = self.config.plus_weights()  # as applied: the cross-entropy's scaled
        if "ce" in self.added_weights and config.ce_samples:
            self.added_weights["ce"] *= config.ce_samples / (ipc * self.tiles)
        # this iteration's classifier of the cross-entropy term: encoders (None: the matching ones) and head
        self.ce_encoders: dict[str, nn.Module] | None = None
        self.head: nn.Module | None = None

    def _pool_draw(self) -> PoolDraw | None:
        """This iteration's draw from the pool (None without one)."""
        if self.pool is None:
            return None
        return self.pool.draw(self.seed, self.iteration, self.config.mix_min, self.config.mix_max)

    def _mix(self, module: nn.Module, prefix: str) -> None:
        """``module`` mixed in place with the drawn pool network's parameters under ``prefix``."""
        chosen = self._pool_draw()
        if self.pool is not None and chosen is not None and self.config.mix_max > 0:
            self.pool.mix(module, chosen, prefix, from_init=self.config.mix_with == "init")

    def _trained(self, module: nn.Module, prefix: str) -> nn.Module:
        """``module`` holding the drawn pool network's parameters after its last epoch (any-epoch:
        after the drawn epoch)."""
        chosen = self._pool_draw()
        assert self.pool is not None and chosen is not None
        if self.config.ce_network == "trained":
            chosen = replace(chosen, epoch=self.pool.epochs)
        self.pool.load(module, chosen, prefix)
        return module

    def _encoders(self) -> dict[str, nn.Module]:
        encoders = super()._encoders()
        for m, net in encoders.items():
            self._mix(net, f"encoders.{m}.")
        return encoders

    def _random_head(self) -> nn.Module:
        """This iteration's random fusion head (the pool's fusion; ensemble without a pool)."""
        dims = {m: self.encoder_configs[m].feature_dim for m in self.modalities}
        head = make_head(self.pool.fusion if self.pool else "ensemble", dims, self.train.store.num_classes)
        init_parameters(head, generator(self.seed, "head", self.iteration))
        return head.to(self.device).requires_grad_(False)

    def _head(self) -> nn.Module:
        """This iteration's fusion head: the pool network's mixed with the random one."""
        head = self._random_head()
        self._mix(head, "head.")
        return head

    def loss_terms(self, backward: bool = False,
                   after_group: Callable[[dict[str, torch.Tensor]], None] | None = None) -> dict[str, torch.Tensor]:
        self.ce_encoders, self.head = None, None
        if self.config.trained_ce:
            random = MatchingRun._encoders(self)
            self.ce_encoders = {m: self._trained(net, f"encoders.{m}.") for m, net in random.items()}
            self.head = self._trained(self._random_head(), "head.")
        elif self.config.lambda_ce:
            self.head = self._head()
        return super().loss_terms(backward, after_group)

    def descend(self) -> tuple[dict[str, float], float]:
        # set from the iteration, not stepped: a resumed run's rates are the uninterrupted run's
        ramp = min(1.0, (self.iteration + 1) / self.config.warmup) if self.config.warmup else 1.0
        for group, lr in zip(self.optimizer.param_groups, self.full_lr, strict=True):
            group["lr"] = ramp * lr
        return super().descend()

    def _real_side(self, encoders: dict[str, nn.Module], draws: dict[str, Draw]) -> RealSide:
        if not self.config.real_embeddings:  # class means (from the cache where the run has one)
            return RealSide(super()._real_side(encoders, draws))
        rows = [self._class_real_features(p, self.modalities, encoders, draws) for p in range(len(self.classes))]
        means = {m: torch.stack([row[m].mean(0) for row in rows]) for m in self.modalities}
        regression = self._regression(rows, encoders, draws) if self.config.lambda_krr else None
        if not (self.config.lambda_dist or self.config.lambda_pair):
            return RealSide(means, regression=regression)
        features, masks = {}, []
        for m in self.modalities:
            # to the configured batch, not this run's largest class: a shard's tensors then have the
            # serial run's shapes whichever classes it holds
            features[m], mask = padded([row[m] for row in rows], self.config.batch_real)
            masks.append(mask)
        return RealSide(means, features, masks[0], regression)

    def _regression(self, real: list[dict[str, torch.Tensor]], encoders: dict[str, nn.Module],
                    draws: dict[str, Draw]) -> RegressionPull:
        """The regression term's value and gradient, from a first pass (no graph) of every class's
        synthetic samples through this iteration's encoders, class group by class group."""
        per_class = self.ipc * self.tiles
        with torch.no_grad():
            groups = [self._synthetic_features(group, encoders, draws)[1] for group in self.class_groups()]
        synthetic = [{m: torch.cat([g[m] for g in groups])[p * per_class: (p + 1) * per_class]
                      for m in self.modalities} for p in range(len(self.classes))]
        return regression_pull(self.classes, real, synthetic, self.config.krr_ridge)

    def _distance(self, real: torch.Tensor, mask: torch.Tensor, synthetic: torch.Tensor, key: str) -> torch.Tensor:
        if self.config.distance == "mmd":
            return mmd2(real, mask, synthetic)
        frequencies = cf_frequencies(generator(self.seed, "cf", self.iteration, key), self.config.cf_frequencies,
                                     real.shape[2], self.config.cf_sigma)
        return cf_distance(real, mask, synthetic, frequencies)

    def _group_terms(self, real: RealSide, group: slice, features: dict[str, torch.Tensor],
                     augmented: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = super()._group_terms(real.means, group, features, augmented)
        per_class = self.ipc * self.tiles
        if self.head is not None:
            labels = torch.tensor(self.classes[group], device=self.device).repeat_interleave(per_class)
            seen = features  # by the matching encoders, or the trained ones from the same augmented samples
            if self.ce_encoders is not None:
                seen = {m: net(augmented[m]) for m, net in self.ce_encoders.items()}
            terms["ce"] = class_cross_entropy(self.head, seen, labels, per_class)
        if real.regression is not None:
            terms["krr"] = real.regression.terms(group, features)
        if real.features is None or real.mask is None:
            return terms
        mask = real.mask[group]
        n = group.stop - group.start
        syn = {m: f.view(n, per_class, -1) for m, f in features.items()}
        # the distances are scale-free; × the class's median squared real distance puts them in the
        # mean terms' units (squared embedding distances), so their weights compare to λ_base's
        scale = {m: median_sq_distance(real.features[m][group], mask) for m in self.modalities}
        if self.config.lambda_dist:
            terms["dist"] = cast(torch.Tensor, sum(
                (scale[m] * self._distance(real.features[m][group], mask, syn[m], m)).float() for m in self.modalities))
        if self.config.lambda_pair:
            pair_real, pair_syn = paired([real.features[m][group] for m in self.modalities], mask,
                                         [syn[m] for m in self.modalities])
            pair = self._distance(pair_real, mask, pair_syn, "+".join(self.modalities))
            terms["pair"] = (cast(torch.Tensor, sum(scale.values())) * pair).float()
        return terms

    def active_terms(self) -> tuple[str, ...]:
        return super().active_terms() + tuple(self.config.plus_weights())

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        total = super().total(terms)
        for t, weight in self.added_weights.items():  # none: AVDD's total, bit for bit
            total = total + weight * terms[t].sum()
        return total


def run_pool(context: RunContext, settings: PlusFields) -> ExpertSet | None:
    """The run's encoder pool: the given expert directory, or the automatic one; None where nothing
    draws trained networks."""
    if not settings.config().needs_pool:
        if settings.pool:
            warnings.warn(f"--pool {settings.pool} is not used: --mix-max 0 leaves DM's random encoders, and no "
                          "cross-entropy asks the trained networks", stacklevel=2)
        return None
    if settings.pool:
        return ExpertSet.open(Path(settings.pool))
    config = ExpertConfig(modalities=context.modalities, num_experts=settings.pool_networks,
                          epochs=settings.pool_epochs, width=settings.width, seed=0)
    # trained (and cached) once, not by every process at once
    return main_first(lambda: automatic_pool(context.store, config, context.device, context.progress))


def _plus(context: RunContext, settings: PlusFields) -> SyntheticSet:
    return distill_with(PlusRun, context, settings, pool=run_pool(context, settings))


METHODS.add("avdd-plus", MethodSpec(PlusSettings, _plus, "AVDD + trained-encoder pool, cross-entropy calibration, "
                                    "MMD/CF distribution and paired audio-visual terms", sharded=True))
