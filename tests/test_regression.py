"""avdd-plus's kernel ridge regression term (distill/regression.py): the loss against a direct
computation and the primal solution, the loop's gradient (computed first over every class, then
pulled group by group) against one pass's autograd, groups, resume, settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avdd.distill.matching import MatchingWeights
from avdd.distill.registry import METHODS
from avdd.distill.regression import ridge_loss
from avdd.errors import AvddError
from test_plus import AV, config, make_run

LAMBDA = 10.0


def krr_only(**kw):
    """The regression term alone: no other term, DM's random encoders."""
    return dict(weights=MatchingWeights(0, 0, 0), mix_min=0.0, mix_max=0.0, lambda_ce=0.0,
                lambda_dist=0.0, lambda_pair=0.0, lambda_krr=LAMBDA, **kw)


def problem(seed=0, classes=3, real_per_class=(4, 3, 5), syn_per_class=2, dim=6):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(sum(real_per_class), dim, generator=g, dtype=torch.float64) * 2 + 5
    syn = torch.randn(classes * syn_per_class, dim, generator=g, dtype=torch.float64) * 2 + 5
    real_labels = torch.repeat_interleave(torch.arange(classes), torch.tensor(real_per_class))
    syn_labels = torch.arange(classes).repeat_interleave(syn_per_class)
    return real, real_labels, syn, syn_labels


def direct_ridge_loss(real, real_labels, syn, syn_labels, num_classes, ridge) -> float:
    """The module docstring's L, element by element (lists and numpy's solve)."""
    r, s = real.tolist(), syn.tolist()
    dim = len(r[0])
    centre = [sum(row[k] for row in r) / len(r) for k in range(dim)]
    scale = (sum(sum((row[k] - centre[k]) ** 2 for k in range(dim)) for row in r) / len(r)) ** 0.5
    r = [[(row[k] - centre[k]) / scale for k in range(dim)] for row in r]
    s = [[(row[k] - centre[k]) / scale for k in range(dim)] for row in s]

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    def target(label):
        return [(1.0 if k == label else 0.0) - 1 / num_classes for k in range(num_classes)]

    kernel = np.array([[dot(a, b) for b in s] for a in s])
    reg = ridge * np.trace(kernel) / len(s)
    alpha = np.linalg.solve(kernel + reg * np.eye(len(s)), np.array([target(int(y)) for y in syn_labels]))
    errors = []
    for row, label in zip(r, real_labels.tolist(), strict=True):
        prediction = [sum(dot(row, s[j]) * alpha[j, k] for j in range(len(s))) for k in range(num_classes)]
        errors.append(sum((p - t) ** 2 for p, t in zip(prediction, target(label), strict=True)))
    return num_classes * sum(errors) / len(errors)


@pytest.mark.parametrize("seed", [0, 1])
def test_ridge_loss_equals_a_direct_computation_and_the_primal_solution(seed):
    real, real_labels, syn, syn_labels = problem(seed)
    got = ridge_loss(real, real_labels, syn, syn_labels, 3, 0.1)
    assert float(got) == pytest.approx(direct_ridge_loss(real, real_labels, syn, syn_labels, 3, 0.1), rel=1e-10)
    # the same fit in the primal: W = (SᵀS + λI)⁻¹ Sᵀ Y, predictions R W
    centre = real.mean(0)
    scale = (real - centre).pow(2).sum(1).mean().sqrt()
    r, s = (real - centre) / scale, (syn - centre) / scale
    targets = torch.eye(3, dtype=torch.float64) - 1 / 3
    reg = 0.1 * s.pow(2).sum(1).mean()
    weights = torch.linalg.solve(s.T @ s + reg * torch.eye(s.shape[1], dtype=torch.float64), s.T @ targets[syn_labels])
    primal = 3 * (r @ weights - targets[real_labels]).pow(2).sum(1).mean()
    assert float(got) == pytest.approx(float(primal), rel=1e-10)


def test_ridge_loss_is_small_when_the_synthetic_rows_are_the_real_ones():
    real, real_labels, _, _ = problem(2, real_per_class=(6, 6, 6), dim=30)
    fitted = ridge_loss(real, real_labels, real, real_labels, 3, 1e-6)
    shuffled = ridge_loss(real, real_labels, real, real_labels[torch.randperm(18)], 3, 1e-6)
    assert float(fitted) < 1e-6 < float(shuffled)


def test_ridge_loss_is_finite_when_every_synthetic_row_is_the_real_mean():
    real, real_labels, syn, syn_labels = problem(3)
    loss = ridge_loss(real, real_labels, real.mean(0).expand_as(syn), syn_labels, 3, 0.1)
    assert torch.isfinite(loss) and float(loss) == pytest.approx(3 * (1 - 1 / 3))  # predictions 0: ‖Y‖² each


def direct_gradient(run):
    """λ · ∂L/∂(synthetic data) from one pass of every class's samples with autograd, and L."""
    encoders = run._encoders()
    draws = {m: run._draws(m) for m in AV}
    real = [run._class_real_features(p, AV, encoders, draws) for p in range(len(run.classes))]
    _, features = run._synthetic_features(slice(0, len(run.classes)), encoders, draws)
    per_class = run.ipc * run.tiles
    labels = torch.arange(len(run.classes))
    counts = torch.tensor([len(r[AV[0]]) for r in real])
    loss = sum(ridge_loss(torch.cat([r[m] for r in real]), labels.repeat_interleave(counts), features[m],
                          labels.repeat_interleave(per_class), len(run.classes), run.config.krr_ridge) for m in AV)
    grads = torch.autograd.grad(LAMBDA * loss, [run.synthetic[m] for m in AV])
    return dict(zip(AV, grads, strict=True)), float(loss.detach())


@pytest.mark.parametrize(("group", "factor"), [(0, 2), (1, 2), (2, {"audio": 2, "frame": 1})])
def test_the_loops_gradient_is_the_whole_losss_whatever_the_class_groups(tiny_store, group, factor):
    """Groups of 1 or 2 classes (and the one automatic group) backpropagate the gradient of the loss
    over every class, which reaches every class's samples."""
    run = make_run(tiny_store, None, **krr_only(synthetic_group=group, factor=factor))
    run.iteration = 1
    assert len(run.class_groups()) == (1 if group == 0 else -(-3 // group))
    want, value = direct_gradient(run)
    terms = run.loss_terms(backward=True)
    assert float(terms["krr"].sum()) == pytest.approx(value, rel=1e-5)
    for m in AV:
        got = run.synthetic[m].grad  # float32 rounding through the solve: compared as a whole
        assert float((got - want[m]).norm() / want[m].norm()) < 1e-4, m
        per_sample = run.synthetic[m].grad.flatten(1).abs().sum(1)
        assert (per_sample > 0).all(), m


def test_the_term_adds_to_the_others(tiny_store, tiny_experts):
    with_term = make_run(tiny_store, tiny_experts, lambda_krr=LAMBDA).loss_terms()
    without = make_run(tiny_store, tiny_experts).loss_terms()
    assert set(with_term) == set(without) | {"krr"}
    for t, value in without.items():
        assert torch.equal(with_term[t], value), t


def test_resume_equals_uninterrupted(tiny_store, tmp_path):
    full = make_run(tiny_store, None, **krr_only(iterations=4))
    full.run(progress=False)
    checkpoint = tmp_path / "ck.pt"
    make_run(tiny_store, None, **krr_only(iterations=2)).run(checkpoint=checkpoint, progress=False)
    second = make_run(tiny_store, None, **krr_only(iterations=4))
    second.load_state(checkpoint)
    second.run(checkpoint=checkpoint, progress=False)
    for m in AV:
        assert torch.equal(second.synthetic[m], full.synthetic[m]), m


def test_settings_refuse_what_cannot_work():
    spec = METHODS.get("avdd-plus")
    assert spec.build({}, "avdd-plus").lambda_krr == 1000.0  # on (benchmarks/RESULTS.md)
    with pytest.raises(AvddError, match="krr_ridge=0.0"):
        spec.build({"krr_ridge": 0.0}, "avdd-plus")
    with pytest.raises(AvddError, match="lambda_krr=-1.0"):
        spec.build({"lambda_krr": -1.0}, "avdd-plus")
    assert config(**krr_only()).has_loss  # the term alone is a loss
