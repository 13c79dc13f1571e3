"""Trajectory matching (MTT): the loss, the functional student, gradients, resume, faults, CLI."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from avdd.cli import main
from avdd.data.store import open_store
from avdd.distill.experts import ExpertSet
from avdd.distill.mtt import MTTConfig, TrajectoryRun, student_step, trajectory_loss
from avdd.errors import AvddError
from avdd.models.flat import flatten_parameters, parameter_layout
from avdd.models.fusion import build_classifier, fusion_loss
from conftest import assert_nan_stops_the_run

AV = ("audio", "frame")


def config(experts: ExpertSet, **kw) -> MTTConfig:
    base = MTTConfig(experts=str(experts.path), iterations=3, syn_steps=3, expert_epochs=2, max_start_epoch=1,
                     batch_syn=4, checkpoint_every=2)
    return replace(base, **kw)


def make_run(store, experts, **kw) -> TrajectoryRun:
    return TrajectoryRun(store.split("train"), AV, ipc=2, seed=0, config=config(experts, **kw), experts=experts)


def test_trajectory_loss_is_the_normalised_squared_distance():
    g = torch.Generator().manual_seed(0)
    student, start, target = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(3))
    s, a, t = student.numpy(), start.numpy(), target.numpy()
    expected = np.sum((s - t) ** 2) / np.sum((a - t) ** 2)
    assert float(trajectory_loss(student, start, target)) == pytest.approx(expected, rel=1e-12)
    assert float(trajectory_loss(start, start, target)) == 1.0  # a student that did not move
    assert float(trajectory_loss(target, start, target)) == 0.0


@pytest.mark.parametrize("fusion", ["ensemble", "attention"])
def test_a_functional_student_step_equals_an_sgd_step_on_the_module(fusion):
    shapes = {"audio": (1, 16, 12), "frame": (3, 8, 8)}
    model = build_classifier(shapes, 3, fusion=fusion, generator=torch.Generator().manual_seed(0), width=4, grid=2)
    g = torch.Generator().manual_seed(1)
    inputs = {m: torch.randn(5, *s, generator=g) for m, s in shapes.items()}
    labels = torch.tensor([0, 1, 2, 1, 0])
    start = flatten_parameters(model).requires_grad_(True)
    stepped = student_step(model, parameter_layout(model), start, inputs, labels, torch.tensor(0.1))

    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    fusion_loss(reference(inputs), labels).backward()
    optimizer.step()
    torch.testing.assert_close(stepped.detach(), flatten_parameters(reference), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(start.detach(), flatten_parameters(model), rtol=0, atol=0)  # module untouched


def test_gradients_reach_the_synthetic_data_and_the_step_size(tiny_store, tiny_experts):
    run = make_run(tiny_store, tiny_experts)
    logged, loss = run.objective()
    assert np.isfinite(logged["trajectory"]) and logged["trajectory"] > 0
    loss.backward()
    for m, x in run.synthetic.items():
        per_sample = x.grad.flatten(1).abs().sum(1)
        assert torch.isfinite(x.grad).all() and (per_sample > 0).all(), m
    assert run.log_step.grad is not None and float(run.log_step.grad) != 0


def test_segments_are_expert_epochs_within_the_start_range(tiny_store, tiny_experts):
    run = make_run(tiny_store, tiny_experts, max_start_epoch=1, expert_epochs=2)
    seen = set()
    for iteration in range(12):
        run.iteration = iteration
        start, target = run.segment()
        matches = [(e, t) for e in range(len(tiny_experts.files)) for t in range(2)
                   if torch.equal(tiny_experts.trajectory(e)[t], start)]
        assert len(matches) == 1
        (e, t), = matches
        assert torch.equal(tiny_experts.trajectory(e)[t + 2], target)
        seen.add((e, t))
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}  # every expert and start epoch is drawn


def test_resume_equals_uninterrupted(tiny_store, tiny_experts, tmp_path):
    full = make_run(tiny_store, tiny_experts, iterations=4)
    full.run(progress=False)
    ck = tmp_path / "ck.pt"
    make_run(tiny_store, tiny_experts, iterations=2).run(checkpoint=ck, progress=False)
    second = make_run(tiny_store, tiny_experts, iterations=4)
    second.load_state(ck)
    assert second.iteration == 2
    second.run(checkpoint=ck, progress=False)
    for m in AV:
        torch.testing.assert_close(second.synthetic[m], full.synthetic[m], rtol=0, atol=0)
    torch.testing.assert_close(second.log_step, full.log_step, rtol=0, atol=0)
    assert second.history == full.history


def test_nan_stops_with_the_iteration_and_keeps_the_checkpoint(tiny_store, tiny_experts, tmp_path):
    assert_nan_stops_the_run(lambda n: make_run(tiny_store, tiny_experts, iterations=n), tmp_path / "ck.pt", 2,
                             "audio", "iteration 2: the 'trajectory' loss term is nan")


def test_bad_settings_are_clear_errors(tiny_store, tiny_experts):
    with pytest.raises(AvddError, match=r"--max-start-epoch 2 \+ --expert-epochs 2 = 4 is beyond the 3 epochs"):
        make_run(tiny_store, tiny_experts, max_start_epoch=2)
    with pytest.raises(AvddError, match="trained on audio,frame; pass --modalities audio,frame"):
        TrajectoryRun(tiny_store.split("train"), ("audio",), 1, 0, config(tiny_experts), tiny_experts)
    with pytest.raises(AvddError, match="invalid MTT settings: syn_steps=0"):
        config(tiny_experts, syn_steps=0)


def test_cli_distill_mtt_then_evaluate(tiny_store, tiny_experts, tmp_path, capsys):
    out = tmp_path / "mtt"
    base = ["distill", "--data", str(tiny_store.path), "--method", "mtt", "--ipc", "1", "--iterations", "2",
            "--syn-steps", "2", "--expert-epochs", "1", "--max-start-epoch", "1", "--out", str(out), "-q"]
    assert main(base) == 1
    assert "needs --experts DIR" in capsys.readouterr().err
    assert main([*base, "--experts", str(tiny_experts.path), "--factor", "2"]) == 0
    saved = open_store(out)
    assert saved.split_sizes == {"train": tiny_store.num_classes} and saved.provenance["factor"] == 2
    assert saved.provenance["mtt"]["experts"] == str(tiny_experts.path.resolve())
    # the step size starts at the experts' rate and is learned
    assert saved.provenance["mtt"]["final_step_size"] != pytest.approx(tiny_experts.config.lr, rel=1e-4)
    assert main(["evaluate", "--train", str(out), "--test", str(tiny_store.path), "--num-eval", "1", "--epochs", "1",
                 "-q"]) == 0
    assert "audio+frame ensemble" in capsys.readouterr().out
