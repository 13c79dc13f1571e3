"""An evaluation's networks trained together: one batched forward/backward for K networks.

Network k keeps every random draw of its sequential training (``network_generators``: its
initial weights, batch order and augmentation), drawn per network in Python; only the
forward/backward runs batched, as ``torch.func.vmap`` over ``functional_call`` on the K networks'
stacked parameters (convolutions become grouped convolutions). Adam, L2 weight decay and the step
decay are elementwise, so one Adam over the stacked parameters, with the protocol's per-modality
learning rates, is the K networks' Adams. The networks are therefore the sequential ones up to
float rounding (different kernels sum in different orders; tests/test_parallel_eval.py).

How many networks form a group is ``EvalConfig.networks_together``; 0 chooses per device from
benchmarks/RESULTS.md ("Evaluation networks trained together").
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

from avdd.data.store import Store
from avdd.distributed import current, gather_all
from avdd.errors import AvddError
from avdd.models.fusion import AVClassifier, fusion_loss
from avdd.training.protocol import EvalConfig, decays_after, network_generators, protocol_network

R = TypeVar("R")

# Networks per group when ``networks_together`` is 0 (auto), by device type; unmeasured types: 1.
# CPU: one by one; together gains 5-24 % there (the step is compute-bound) for 5x the peak memory (RESULTS.md).
AUTO_TOGETHER: dict[str, int] = {"cpu": 1}


def networks_together(config: EvalConfig, device: torch.device) -> int:
    """How many networks train as one group: the setting, or the device's measured choice (0: auto);
    1 (sequential) where batch norm's running statistics would have to be updated inside vmap."""
    wanted = config.networks_together or AUTO_TOGETHER.get(device.type, 1)
    if config.norm == "batch":
        if config.networks_together > 1:
            raise AvddError("networks_together > 1 needs a norm without running statistics "
                            "(instance, layer or none), not batch norm; use networks_together 1")
        return 1
    return max(1, min(wanted, config.num_eval))


def spread_groups(count: int, size: int, compute: Callable[[Sequence[int]], Sequence[R]]) -> list[R]:
    """``avdd.distributed.spread`` for work done ``size`` items at a time: this process's items (dealt
    round-robin, as ``spread`` deals them) in groups of ``size``, ``compute(group)`` giving one
    result per item; every process gets all ``count`` results in order."""
    share = list(current().share(count))
    mine = [item for start in range(0, len(share), size)
            for item in zip(share[start : start + size], compute(share[start : start + size]), strict=True)]
    everyone = itertools.chain.from_iterable(gather_all(mine))
    return [value for _, value in sorted(everyone, key=lambda item: item[0])]


def stacked_optimizer(params: Mapping[str, torch.Tensor], modalities: Sequence[str],
                      config: EvalConfig) -> torch.optim.Adam:
    """The protocol's Adam (``make_optimizer``) over stacked parameters, grouped by their names."""
    def named(prefix: str) -> list[torch.Tensor]:
        return [p for name, p in params.items() if name.startswith(prefix)]

    groups = [{"params": named(f"encoders.{m}."), "lr": config.encoder_lr(m)} for m in modalities]
    groups.append({"params": named("head."), "lr": config.lr_head})
    return torch.optim.Adam(groups, betas=config.betas, weight_decay=config.weight_decay)


def train_networks(
    models: Sequence[AVClassifier],
    inputs: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    config: EvalConfig,
    generators: Sequence[Mapping[str, torch.Generator]],
    on_epoch: Callable[[int, float], None] = lambda k, loss: None,
) -> list[AVClassifier]:
    """``train_network`` for each of ``models`` with its ``generators``, all in one batched loop;
    ``on_epoch(k, mean loss of network k)``. The models' parameters are replaced by the trained ones."""
    stacked, buffers = stack_module_state(list(models))
    if buffers:
        raise AvddError("networks trained together cannot update buffers (batch norm's running statistics)")
    # contiguous: a stack of channels-last weights keeps their strides, which vmap's group norm refuses
    params = {name: p.detach().contiguous().requires_grad_() for name, p in stacked.items()}
    template = copy.deepcopy(models[0]).to("meta")  # the function; parameters come from ``params``
    template.train()

    def loss_of(p: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        return fusion_loss(functional_call(template, p, (batch,)), y)

    batched_loss = vmap(loss_of)
    optimizer = stacked_optimizer(params, models[0].modalities, config)
    dsa = config.quirks.augmentation(config.dsa_strategy) if config.dsa else None
    n, count = len(labels), len(models)
    for epoch in range(config.epochs):
        orders = [torch.randperm(n, generator=g["batches"]).to(labels.device) for g in generators]
        totals = [0.0] * count
        for start in range(0, n, config.batch_size):
            index = [order[start : start + config.batch_size] for order in orders]
            batch = {}
            for m, x in inputs.items():  # per network, modalities in order: each generator draws as sequentially
                pieces = [x[i] for i in index]
                if dsa is not None:
                    pieces = [dsa(piece, g["augment"]) for piece, g in zip(pieces, generators, strict=True)]
                # contiguous whatever ``channels_last`` says: vmap cannot query group norm's input for another format
                batch[m] = torch.stack(pieces).contiguous()
            losses = batched_loss(params, batch, torch.stack([labels[i] for i in index]))
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # the networks share no parameter: each gets its own loss's gradient
            optimizer.step()
            totals = [t + loss * len(index[0]) for t, loss in zip(totals, losses.tolist(), strict=True)]
        if decays_after(epoch, config):
            for group in optimizer.param_groups:
                group["lr"] *= config.lr_gamma
        for k, total in enumerate(totals):
            on_epoch(k, total / n)
    with torch.no_grad():
        for k, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(params[name][k])
    return list(models)


def train_fresh_networks(
    train_store: Store,
    inputs: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    config: EvalConfig,
    runs: Sequence[int],
    device: torch.device,
    bar: tqdm,
) -> list[AVClassifier]:
    """``train_fresh_network`` for each of ``runs``, trained together; ``bar`` counts network-epochs."""
    generators = [network_generators(config.seed, run, device) for run in runs]
    models = [protocol_network(train_store, config, g["init"], device) for g in generators]

    def on_epoch(k: int, loss: float) -> None:
        bar.set_postfix(nets=f"{runs[0] + 1}-{runs[-1] + 1}/{config.num_eval}", loss=f"{loss:.3f}")
        bar.update()
        if not math.isfinite(loss):
            raise AvddError(f"training diverged (loss {loss}) on network {runs[k] + 1}")

    return train_networks(models, inputs, labels, config, generators, on_epoch)
