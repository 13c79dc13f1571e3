"""The DM/AVDD loop on a tiny store: gradients, batching equivalence, resume, faults."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from avdd.data.augment import Draw
from avdd.distill import dm
from avdd.distill.dm import MatchingConfig, MatchingRun
from avdd.distill.matching import MatchingWeights, class_means, matching_terms, weighted_total
from avdd.errors import AvddError
from avdd.training.factor import expand_factor
from conftest import assert_nan_stops_the_run, assert_real_samples_of_their_class, rename_modalities

AV = ("audio", "frame")
SMALL = {"width": 8, "grid": 2}


def config(**kw) -> MatchingConfig:
    base = MatchingConfig(iterations=3, batch_real=5, weights=MatchingWeights(1, 10, 10), factor=2,
                          encoder=SMALL, checkpoint_every=2)
    return replace(base, **kw)


def make_run(store, **kw) -> MatchingRun:
    return MatchingRun(store.split("train"), AV, ipc=2, seed=0, config=config(**kw))


FACTORS = [2, {"audio": 2, "frame": 1}]  # one for all, one per modality (4 decoded pairs: frames repeated)


@pytest.mark.parametrize("factor", FACTORS)
def test_gradients_reach_only_the_right_class(tiny_store, factor):
    run = make_run(tiny_store, factor=factor)
    terms = run.loss_terms()
    class_one = terms["base"][1] + 10 * terms["joint"][1] + 10 * terms["gap"][1]
    class_one.backward()
    for m, x in run.synthetic.items():
        per_sample = x.grad.flatten(1).abs().sum(1)
        owners = run.labels
        assert (per_sample[owners == 1] > 0).all(), m
        assert (per_sample[owners != 1] == 0).all(), m


def per_class_loop_gradients(run: MatchingRun) -> dict[str, torch.Tensor]:
    """The reference structure: per class, its own forward of real and synthetic, loss, backward."""
    encoders = run._encoders()
    syn = run.synthetic_inputs()
    for x in run.synthetic.values():
        x.grad = None
    per = run.ipc * run.tiles
    draws = {m: run._draws(m) for m in run.modalities}
    for c in range(len(run.classes)):
        real = run._real_batch(run.classes[c], run.modalities)
        r_means, s_means = {}, {}
        for m in run.modalities:
            draw = Draw(draws[m].kinds[c : c + 1], draws[m].uniforms[c : c + 1])
            with torch.no_grad():
                r = encoders[m](run.dsa.apply(real[m], draw))
            s = encoders[m](run.dsa.apply(syn[m][c * per : (c + 1) * per], draw))
            r_means[m], s_means[m] = r.mean(0, keepdim=True), s.mean(0, keepdim=True)
        loss = weighted_total(matching_terms(r_means, s_means, run.modalities), run.config.weights)
        loss.backward(retain_graph=True)
        syn = run.synthetic_inputs()
    return {m: x.grad.clone() for m, x in run.synthetic.items()}


@pytest.mark.parametrize("factor", FACTORS)
def test_batched_iteration_equals_the_per_class_loop(tiny_store, factor):
    run = make_run(tiny_store, factor=factor)
    reference = per_class_loop_gradients(run)
    for x in run.synthetic.values():
        x.grad = None
    weighted_total(run.loss_terms(), run.config.weights).backward()
    for m, x in run.synthetic.items():
        torch.testing.assert_close(x.grad, reference[m], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("group", [1, 2, 0])
def test_class_groups_backpropagated_in_turn_give_the_batched_gradients(tiny_store, group):
    run = make_run(tiny_store, synthetic_group=group)
    assert len(run.class_groups()) == (-(-len(run.classes) // group) if group else 1)
    reference = per_class_loop_gradients(run)
    for x in run.synthetic.values():
        x.grad = None
    logged, total = run.backward()
    for m, x in run.synthetic.items():
        torch.testing.assert_close(x.grad, reference[m], rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        terms = make_run(tiny_store).loss_terms()
    assert logged == pytest.approx({t: float(v.sum()) for t, v in terms.items()}, rel=1e-5)
    assert total == pytest.approx(float(weighted_total(terms, run.config.weights)), rel=1e-5)


def test_automatic_class_groups_bound_the_synthetic_activations(tiny_store, monkeypatch):
    run = make_run(tiny_store)
    per_class = run.ipc * run.tiles * max(run._first_layer_bytes(m) for m in AV)
    monkeypatch.setitem(dm.SYNTHETIC_GROUP_BYTES, "cpu", 2 * per_class)
    groups = run.class_groups()
    assert [g.stop - g.start for g in groups] == [2] * (len(run.classes) // 2) + \
        [1] * (len(run.classes) % 2)


def test_the_loss_falls(tiny_store):
    run = make_run(tiny_store, iterations=30, weights=MatchingWeights(1, 0, 0))

    def loss_at_fixed_draw() -> float:
        """Summed over 5 fixed encoder/batch/augmentation draws: one draw alone is a noisy measure."""
        saved, value = run.iteration, 0.0
        for run.iteration in range(10_000, 10_005):
            value += float(weighted_total(run.loss_terms(), run.config.weights).detach())
        run.iteration = saved
        return value

    before = loss_at_fixed_draw()
    run.run(progress=False)
    assert loss_at_fixed_draw() < 0.8 * before


def test_equal_cross_modal_weights_are_dm_at_a_larger_learning_rate(tiny_store):
    # base + λ(joint + gap) = (1 + 2λ) base, so AVDD's (1, 10, 10) at lr η takes DM's steps at lr 21η
    avdd = make_run(tiny_store, iterations=4, lr={"audio": 0.2, "frame": 0.1})
    dm = make_run(tiny_store, iterations=4, lr={"audio": 4.2, "frame": 2.1}, weights=MatchingWeights(1, 0, 0))
    avdd.run(progress=False)
    dm.run(progress=False)
    for m in AV:
        assert not torch.equal(avdd.synthetic[m], make_run(tiny_store).synthetic[m])  # it did move
        torch.testing.assert_close(avdd.synthetic[m], dm.synthetic[m], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("factor", FACTORS)
def test_resume_equals_uninterrupted(tiny_store, tmp_path, factor):
    full = make_run(tiny_store, iterations=5, factor=factor)
    full.run(progress=False)
    ck = tmp_path / "ck.pt"
    first = make_run(tiny_store, iterations=2, factor=factor)
    first.run(checkpoint=ck, progress=False)
    second = make_run(tiny_store, iterations=5, factor=factor)
    second.load_state(ck)
    assert second.iteration == 2
    second.run(checkpoint=ck, progress=False)
    for m in AV:
        torch.testing.assert_close(second.synthetic[m], full.synthetic[m], rtol=0, atol=0)


@pytest.mark.parametrize("factor", FACTORS)
def test_synthetic_inputs_are_each_classs_stored_samples_decoded_alone(tiny_store, factor):
    run = make_run(tiny_store, factor=factor)
    decoded = run.synthetic_inputs()
    per = run.ipc * run.tiles
    assert run.tiles == 4
    for c in range(len(run.classes)):
        rows = {m: x[c * run.ipc : (c + 1) * run.ipc].detach() for m, x in run.synthetic.items()}
        alone, labels = expand_factor(rows, run.labels[c * run.ipc : (c + 1) * run.ipc], factor)
        assert (labels == run.classes[c]).all()
        for m in AV:
            torch.testing.assert_close(decoded[m][c * per : (c + 1) * per], alone[m], rtol=0, atol=0)


def test_resume_with_another_configuration_is_refused(tiny_store, tmp_path):
    ck = tmp_path / "ck.pt"
    make_run(tiny_store, iterations=2).run(checkpoint=ck, progress=False)
    other = make_run(tiny_store, iterations=4, batch_real=7)
    with pytest.raises(AvddError, match="batch_real: checkpoint has 5, now 7"):
        other.load_state(ck)


@pytest.mark.parametrize(("saved", "factor", "resumes"), [(True, 2, True), (False, 1, True), (True, 1, False)])
def test_checkpoints_saying_factor_true_or_false_resume_as_factor_2_or_1(tiny_store, tmp_path, saved, factor, resumes):
    # checkpoints written before the factor was an integer hold true/false
    ck = tmp_path / "ck.pt"
    make_run(tiny_store, iterations=2).run(checkpoint=ck, progress=False)
    state = torch.load(ck, weights_only=False)
    state["settings"]["factor"] = saved
    torch.save(state, ck)
    run = make_run(tiny_store, iterations=3, factor=factor)
    if resumes:
        run.load_state(ck)
        assert run.iteration == 2
    else:
        with pytest.raises(AvddError, match="factor: checkpoint has 2, now 1"):
            run.load_state(ck)


def test_nan_stops_with_iteration_and_term_and_keeps_the_checkpoint(tiny_store, tmp_path):
    assert_nan_stops_the_run(lambda n: make_run(tiny_store, iterations=n), tmp_path / "ck.pt", 4, "frame",
                             "iteration 4: the 'base' loss term is nan")


def test_init_takes_real_samples_of_each_class(tiny_store):
    run = make_run(tiny_store, factor=1)
    assert_real_samples_of_their_class(tiny_store.split("train"), "frame", run.stored()["frame"], run.labels)


def test_too_large_ipc_is_a_clear_error(tiny_store):
    with pytest.raises(AvddError, match="fewer than IPC × tiles = 48; lower --ipc or --factor"):
        MatchingRun(tiny_store.split("train"), AV, ipc=12, seed=0, config=config())


def test_cross_modal_terms_need_two_modalities(tiny_store):
    with pytest.raises(AvddError, match="need two modalities"):
        MatchingRun(tiny_store.split("train"), ("audio",), ipc=1, seed=0, config=config())


def test_all_weights_zero_is_a_clear_error():
    with pytest.raises(AvddError, match="every loss weight is 0"):
        config(weights=MatchingWeights(0, 0, 0))
    assert config(weights=MatchingWeights(0, 1, 0)).has_loss  # any one term is a loss


def test_class_means_of_a_batch_equal_per_class_means():
    feats = torch.arange(12.0).view(6, 2)
    means = class_means(feats, torch.tensor([0, 0, 1, 1, 1, 2]), 3)
    torch.testing.assert_close(means, torch.tensor([[1.0, 2.0], [6.0, 7.0], [10.0, 11.0]]))


def test_chunking_the_real_side_does_not_change_the_loss(tiny_store):
    whole = make_run(tiny_store, real_chunk=10_000).loss_terms()
    chunked_run = make_run(tiny_store, real_chunk=3)
    assert chunked_run.real_chunk == {"audio": 3, "frame": 3}
    chunked = chunked_run.loss_terms()
    for term in whole:
        torch.testing.assert_close(chunked[term], whole[term], rtol=1e-4, atol=1e-4)


def test_automatic_chunk_bounds_the_first_layer_activations(tiny_store):
    from avdd.distill import dm

    run = make_run(tiny_store)
    for m, chunk in run.real_chunk.items():
        _, h, w = tiny_store.modalities[m].shape
        first_layer = SMALL["width"] * h * w * 4
        assert chunk * first_layer <= dm.REAL_CHUNK_BYTES["cpu"] < (chunk + 1) * first_layer


def test_a_modality_lr_does_not_name_gets_the_default(tiny_store, tmp_path):
    renamed = rename_modalities(tiny_store, {"audio": "sound", "frame": "rgb"}, tmp_path / "renamed")
    run = MatchingRun(renamed.split("train"), ("sound", "rgb"), ipc=1, seed=0, config=config(lr={"rgb": 0.1}))
    assert [group["lr"] for group in run.optimizer.param_groups] == [0.2, 0.1]
    defaults = dm.DMSettings()
    assert defaults.config().lr_default == defaults.lr_default == 0.2
