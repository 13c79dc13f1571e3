"""Trajectory matching (MTT; Cazenavette et al., CVPR 2022) with the evaluation protocol's networks.

Each iteration picks an expert and a start epoch t ≤ max_start_epoch (drawn from a generator
keyed by (seed, iteration), so a resumed run picks what an uninterrupted one does), starts a
student at the expert's parameters θ_t, and takes N differentiable SGD steps on augmented
minibatches of the synthetic set with a learnable step size α = exp(log α). The loss is

    ‖θ_N − θ_{t+M}‖² / ‖θ_t − θ_{t+M}‖²

(M = expert_epochs). The synthetic data (a learning rate per modality) and log α (its own
learning rate) take SGD steps with momentum. The student is the AVClassifier the evaluation
trains, called through ``torch.func.functional_call`` on one flat vector of all its trainable
parameters: for audio-visual, both encoders and the fusion head.

Memory: the backward pass needs every unrolled step's activations (of ``batch_syn`` samples) and
parameter vector, so memory grows with ``syn_steps`` × ``batch_syn`` (benchmarks/mtt_memory.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from avdd.data.augment import REFERENCE_STRATEGY
from avdd.data.store import Split
from avdd.distill.embedding import EmbeddingConfig
from avdd.distill.experts import ExpertSet
from avdd.distill.registry import METHODS, MethodSpec, RunContext
from avdd.distill.result import SyntheticSet
from avdd.distill.spec import check, nested, setting
from avdd.distill.synthetic import FACTOR_HELP, ITERATIONS_HELP, SyntheticRun, finish, init_order
from avdd.errors import AvddError
from avdd.models.flat import Layout, parameter_layout, unflatten
from avdd.models.fusion import AVClassifier, fusion_loss
from avdd.ranges import PATH
from avdd.seeding import generator
from avdd.training.factor import Factor
from avdd.training.protocol import protocol_network


@dataclass(frozen=True)
class MTTConfig:
    """The settings of ``avdd distill --method mtt`` (defaults: see the README's MTT section)."""

    experts: str = field(default="", metadata=setting("expert trajectories from `avdd experts` (required)", PATH))
    iterations: int = field(default=5000, metadata=setting(ITERATIONS_HELP))
    # the MTT reference's lr_img; on avdigits (20 iterations) 1000 gave 55 % where 100 gave 40 % (random: 37 %)
    lr: dict[str, float] = field(default_factory=lambda: {"audio": 1000.0, "frame": 1000.0},
                                 metadata=setting("synthetic-data learning rate per modality"))
    lr_default: float = field(default=1000.0, metadata=setting("synthetic-data learning rate of a modality --lr "
                                                               "does not name"))
    momentum: float = field(default=0.5, metadata=setting("SGD momentum on the synthetic data and the step size"))
    syn_steps: int = field(default=20, metadata=setting("student SGD steps unrolled per iteration (N); memory "
                                                        "grows linearly with it"))
    expert_epochs: int = field(default=2, metadata=setting("expert epochs the student's steps must cover (M)"))
    max_start_epoch: int = field(default=2, metadata=setting("latest expert epoch a student starts from"))
    batch_syn: int = field(default=0, metadata=setting("synthetic samples per student step (0 = all); memory "
                                                       "grows linearly with it"))
    step_size: float | None = field(default=None, metadata=setting("the student's initial SGD step size (unset: "
                                                                   "the experts' learning rate)"))
    # learning rate of log(step size): the reference's lr_lr (1e-7 to 1e-5 on the raw rate ~0.01) is 1e-3 to
    # 1e-1 on its log; on avdigits (20 iterations, lr 1000) 0.1 gave 60 % where 1e-3 gave 55 %
    lr_step_size: float = field(default=0.1, metadata=setting("learning rate of log(step size)"))
    factor: Factor = field(default=1, metadata=setting(FACTOR_HELP))
    init: str = field(default="random", metadata=setting("initialisation: random real samples, or herding order"))
    dsa_strategy: str = field(default=REFERENCE_STRATEGY, metadata=setting("augmentation ops joined by _"))
    checkpoint_every: int = field(default=100, metadata=setting("iterations between checkpoints"))
    # herding init's embedding network (--embed-source, --embed-epochs)
    embed: EmbeddingConfig = field(default_factory=EmbeddingConfig, metadata=nested("embed"))

    def __post_init__(self) -> None:
        check("MTT", self)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def trajectory_loss(student: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖student − target‖² / ‖start − target‖²: 1 where the student did not move, 0 on target."""
    return ((student - target) ** 2).sum() / ((start - target) ** 2).sum()


def student_step(
    model: AVClassifier, layout: Layout, params: torch.Tensor, inputs: dict[str, torch.Tensor],
    labels: torch.Tensor, step_size: torch.Tensor,
) -> torch.Tensor:
    """One SGD step of ``model`` at the flat parameters ``params``: params − step_size · ∇loss,
    differentiable in ``params``, ``inputs`` and ``step_size`` (the graph is kept)."""
    loss = fusion_loss(functional_call(model, unflatten(params, layout), (inputs,)), labels)
    (grad,) = torch.autograd.grad(loss, params, create_graph=True)
    return params - step_size * grad


class TrajectoryRun(SyntheticRun):
    """The state of one MTT distillation: synthetic tensors, log step size, optimizer, iteration."""

    config: MTTConfig

    def __init__(
        self,
        train: Split,
        modalities: Sequence[str],
        ipc: int,
        seed: int,
        config: MTTConfig,
        experts: ExpertSet,
        device: torch.device | str = "cpu",
        init_order: list[np.ndarray] | None = None,
    ) -> None:
        super().__init__(train, modalities, ipc, seed, config, device, init_order)
        experts.check_data(train.store, self.modalities)
        last = config.max_start_epoch + config.expert_epochs
        if last > experts.config.epochs:
            raise AvddError(f"--max-start-epoch {config.max_start_epoch} + --expert-epochs {config.expert_epochs} = "
                            f"{last} is beyond the {experts.config.epochs} epochs the experts in {experts.path} "
                            "saved; lower them or train longer experts")
        self.experts = experts
        # the student's own parameters are never used: functional_call substitutes the flat vector
        self.model = protocol_network(train.store, experts.config.protocol(), generator(seed, "student"),
                                      self.device).requires_grad_(False)
        self.layout = experts.layout
        if [(n, tuple(s)) for n, s in parameter_layout(self.model)] != self.layout:
            raise AvddError(f"{experts.path}: the experts' parameters do not fit this avdd's network "
                            "(trained by another version?); train the experts again")
        initial = config.step_size or experts.config.lr
        self.log_step = torch.tensor(math.log(initial), device=self.device, requires_grad=True)
        self.optimizer.add_param_group({"params": [self.log_step], "lr": config.lr_step_size})
        self.syn_labels = torch.tensor(self.classes, device=self.device).repeat_interleave(ipc * self.tiles)

    def _minibatches(self) -> list[torch.Tensor]:
        """Indices into the decoded synthetic set for each student step: consecutive chunks of
        random permutations (a new one when a permutation runs out)."""
        n = len(self.syn_labels)
        g = generator(self.seed, "minibatch", self.iteration)
        batches: list[torch.Tensor] = []
        while len(batches) < self.config.syn_steps:
            batches += torch.randperm(n, generator=g).split(self.config.batch_syn or n)
        return [b.to(self.device) for b in batches[: self.config.syn_steps]]

    def segment(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This iteration's expert parameters at the start epoch and M epochs later (float32, on device)."""
        g = generator(self.seed, "trajectory", self.iteration)
        expert = int(torch.randint(len(self.experts.files), (1,), generator=g))
        start = int(torch.randint(self.config.max_start_epoch + 1, (1,), generator=g))
        trajectory = self.experts.trajectory(expert)
        rows = trajectory[[start, start + self.config.expert_epochs]]
        theta = rows.to(self.device, torch.float32)
        return theta[0], theta[1]

    def objective(self) -> tuple[dict[str, float], torch.Tensor]:
        start, target = self.segment()
        syn = self.synthetic_inputs()
        augment = generator(self.seed, "dsa", self.iteration)
        step_size = self.log_step.exp()
        params = start.clone().requires_grad_(True)
        for index in self._minibatches():
            batch = {m: self.dsa(x[index], augment) for m, x in syn.items()}
            params = student_step(self.model, self.layout, params, batch, self.syn_labels[index], step_size)
        loss = trajectory_loss(params, start, target)
        return {"trajectory": float(loss.detach())}, loss

    def learned(self) -> dict[str, torch.Tensor]:
        return {**super().learned(), "the step size": self.log_step}

    def monitored(self) -> dict[str, float]:
        return {"step_size": float(self.log_step.detach().exp())}

    def run_settings(self) -> dict[str, Any]:
        return {**super().run_settings(), "experts_used": len(self.experts.files)}

    def state(self) -> dict[str, Any]:
        return {**super().state(), "log_step_size": self.log_step.detach().cpu()}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        with torch.no_grad():
            self.log_step.copy_(state["log_step_size"])


def _mtt(context: RunContext, config: MTTConfig) -> SyntheticSet:
    if not config.experts:
        raise AvddError("method 'mtt' needs --experts DIR (expert trajectories; train them with `avdd experts`)")
    config = replace(config, experts=str(Path(config.experts).resolve()))
    experts = ExpertSet.open(config.experts)
    order = init_order(context.store, context.modalities, context.ipc, config, config.embed, context.device,
                       context.progress)
    run = TrajectoryRun(context.store.split("train"), context.modalities, context.ipc, context.seed, config, experts,
                        context.device, order)
    synthetic = finish(run, checkpoint=context.checkpoint, resume=context.resume, progress=context.progress,
                       on_iteration=context.on_iteration, details={"mtt": config.to_json()})
    synthetic.details["mtt"].update(experts_used=len(experts.files), expert_settings=experts.config.to_json(),
                                    final_step_size=run.monitored()["step_size"])
    return synthetic


METHODS.add("mtt", MethodSpec(MTTConfig, _mtt, "trajectory matching: follow expert training trajectories "
                                               "(needs --experts from `avdd experts`)"))
