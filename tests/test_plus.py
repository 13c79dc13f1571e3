"""avdd-plus on the tiny store: its distances against direct computations, the pool's mixing,
gradients per class, AVDD recovered exactly, resume, shards, the pool cache and its checks."""

from __future__ import annotations

import cmath
import gc
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from avdd.data.store import open_store, write_store
from avdd.distill import api
from avdd.distill import experts as experts_module
from avdd.distill import pool as pool_module
from avdd.distill.distances import MMD_BANDWIDTHS, cf_distance, mmd2, paired
from avdd.distill.dm import MatchingRun
from avdd.distill.matching import MatchingWeights
from avdd.distill.plus import PlusConfig, PlusRun, PlusSettings, class_cross_entropy, run_pool
from avdd.distill.pool import EncoderPool, mix_
from avdd.distill.real_cache import RealMeanCache
from avdd.distill.registry import METHODS, RunContext
from avdd.distill.result import SyntheticSet, merge_shards
from avdd.distill.spec import flag_of
from avdd.errors import AvddError
from avdd.models.flat import unflatten
from avdd.models.fusion import fusion_loss
from avdd.training.protocol import protocol_network
from conftest import TINY_SPECS, make_tiny_store
from test_distributed import one_thread, torchrun

AV = ("audio", "frame")
WIDTH = 8  # the tiny experts' (conftest.TINY_EXPERTS)


def config(**kw) -> PlusConfig:
    base = PlusConfig(iterations=3, batch_real=5, weights=MatchingWeights(1, 10, 10), factor=2,
                      encoder={"width": WIDTH}, checkpoint_every=2, mix_min=0.2, mix_max=1.0, lambda_ce=100.0,
                      lambda_dist=10.0, lambda_pair=10.0,  # every per-class term on, whatever the defaults
                      lambda_krr=0.0)  # the one across classes: tests/test_regression.py
    return replace(base, **kw)


def make_run(store, experts, seed=0, classes=None, **kw) -> PlusRun:
    return PlusRun(store.split("train"), AV, ipc=2, seed=seed, config=config(**kw), classes=classes, pool=experts)


# -- the distances against direct computations ---------------------------------------------------
def sample_sets(seed=0):
    """Two classes: 4 real samples (the second class with one of padding) and 3 synthetic, in 5 dims."""
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(2, 4, 5, generator=g, dtype=torch.float64) * 3 + 10
    syn = torch.randn(2, 3, 5, generator=g, dtype=torch.float64) * 3 + 10
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    return real, mask, syn


def rows(real, mask, syn, c):
    return [real[c, j] for j in range(real.shape[1]) if mask[c, j]], [syn[c, j] for j in range(syn.shape[1])]


def sq(x, y) -> float:
    return sum((float(a) - float(b)) ** 2 for a, b in zip(x, y, strict=True))


def median_scale(r) -> float:
    """The lower median of the squared distances between distinct real samples (as torch's median)."""
    values = sorted(sq(r[i], r[j]) for i in range(len(r)) for j in range(len(r)) if i != j)
    return values[(len(values) - 1) // 2]


def test_mmd2_equals_a_direct_computation():
    real, mask, syn = sample_sets()
    got = mmd2(real, mask, syn)
    for c in range(2):
        r, s = rows(real, mask, syn, c)
        scale = median_scale(r)

        def k(x, y, scale=scale):
            return sum(math.exp(-sq(x, y) / (b * scale)) for b in MMD_BANDWIDTHS)

        def mean(a, b, k=k):
            return sum(k(x, y) for x in a for y in b) / (len(a) * len(b))

        assert float(got[c]) == pytest.approx(mean(r, r) + mean(s, s) - 2 * mean(r, s), rel=1e-9)


def test_cf_distance_equals_a_direct_computation_with_complex_numbers():
    real, mask, syn = sample_sets(1)
    t = torch.randn(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = cf_distance(real, mask, syn, t)
    for c in range(2):
        r, s = rows(real, mask, syn, c)
        unit = math.sqrt(median_scale(r))

        def phi(xs, tk, unit=unit):
            return sum(cmath.exp(1j * sum(float(a) * float(b) / unit for a, b in zip(tk, x, strict=True)))
                       for x in xs) / len(xs)

        want = sum(abs(phi(r, tk) - phi(s, tk)) ** 2 for tk in t) / len(t)
        assert float(got[c]) == pytest.approx(want, rel=1e-9)


def test_paired_embeddings_concatenate_each_modality_in_its_own_units():
    (ra, mask, sa), (rv, _, sv) = sample_sets(3), sample_sets(4)
    pr, ps = paired([ra, rv], mask, [sa, sv])
    assert pr.shape == (2, 4, 10) and ps.shape == (2, 3, 10)
    for c in range(2):
        ua = math.sqrt(median_scale(rows(ra, mask, sa, c)[0]))
        uv = math.sqrt(median_scale(rows(rv, mask, sv, c)[0]))
        torch.testing.assert_close(ps[c], torch.cat([sa[c] / ua, sv[c] / uv], 1), rtol=1e-12, atol=0)
        torch.testing.assert_close(pr[c, :3], torch.cat([ra[c, :3] / ua, rv[c, :3] / uv], 1), rtol=1e-12, atol=0)


def test_class_cross_entropy_is_each_class_sum_of_its_logits_cross_entropies():
    g = torch.Generator().manual_seed(0)
    logits = {"audio": torch.randn(6, 4, generator=g), "frame": torch.randn(6, 4, generator=g)}
    labels = torch.tensor([2, 2, 2, 0, 0, 0])
    got = class_cross_entropy(lambda x: x, logits, labels, per_class=3)  # the identity head
    for c in range(2):
        want = 0.0
        for z in logits.values():
            for i in range(3 * c, 3 * c + 3):
                row = [float(v) for v in z[i]]
                want += (math.log(sum(math.exp(v) for v in row)) - row[int(labels[i])]) / 3
        assert float(got[c]) == pytest.approx(want, rel=1e-5)


# -- the pool ------------------------------------------------------------------------------------
def test_mixing_is_the_weighted_sum_and_alpha_zero_leaves_the_bits():
    net = torch.nn.Linear(3, 2)
    random = {n: p.detach().clone() for n, p in net.named_parameters()}
    trained = {n: torch.randn_like(p) for n, p in net.named_parameters()}
    mix_(net, trained, 0.3)
    for n, p in net.named_parameters():
        torch.testing.assert_close(p, 0.3 * trained[n] + 0.7 * random[n])
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    mix_(net, trained, 0.0)
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())


@pytest.mark.parametrize("mix_with", ["init", "random"])
def test_the_iterations_networks_mix_the_drawn_trained_epoch_with_its_init_or_dms_draw(tiny_store, tiny_experts,
                                                                                        mix_with):
    run = make_run(tiny_store, tiny_experts, mix_with=mix_with)
    run.iteration = 4
    chosen = run._pool_draw()
    assert 1 <= chosen.epoch <= tiny_experts.config.epochs and 0.2 <= chosen.alpha <= 1
    assert run._pool_draw() == chosen  # keyed by the iteration: a resumed or sharded run draws alike
    pool = EncoderPool(tiny_experts)

    def other(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The other side of the mix: the drawn network's initialisation (trajectory row 0) or DM's draw."""
        if mix_with == "init":
            return pool.parameters(replace(chosen, epoch=0), prefix)
        return dict(module.named_parameters())

    for m, net in run._encoders().items():
        start = other(f"encoders.{m}.", MatchingRun._encoders(run)[m])
        trained = pool.parameters(chosen, f"encoders.{m}.")
        for name, p in net.named_parameters():
            torch.testing.assert_close(p, chosen.alpha * trained[name] + (1 - chosen.alpha) * start[name])
    head, start, trained = run._head(), other("head.", run._random_head()), pool.parameters(chosen, "head.")
    for name, p in head.named_parameters():
        torch.testing.assert_close(p, chosen.alpha * trained[name] + (1 - chosen.alpha) * start[name])


@pytest.mark.parametrize("ce_network", ["trained", "mixed"])
def test_the_cross_entropy_leaves_the_other_terms_as_they_are(tiny_store, tiny_experts, ce_network):
    def terms(**kw):
        run = make_run(tiny_store, tiny_experts, ce_network=ce_network, **kw)
        run.iteration = 1
        return run.loss_terms()

    with_ce, without = terms(), terms(lambda_ce=0.0)
    assert set(with_ce) == set(without) | {"ce"}
    for t, value in without.items():
        assert torch.equal(with_ce[t], value), t


@pytest.mark.parametrize("ce_network", ["trained", "any-epoch"])
def test_the_trained_cross_entropy_asks_the_drawn_network_after_its_last_or_drawn_epoch(tiny_store, tiny_experts,
                                                                                       ce_network):
    """The ce term against a direct computation: the pool network rebuilt as the evaluation protocol
    builds it, loaded with its last (any-epoch: its drawn) trajectory row, classifying the iteration's
    augmented samples."""
    run = make_run(tiny_store, tiny_experts, lambda_dist=0.0, lambda_pair=0.0, weights=MatchingWeights(0, 0, 0),
                   ce_network=ce_network)
    run.iteration = 0
    got = run.loss_terms()["ce"]
    chosen = run._pool_draw()
    assert chosen.epoch < tiny_experts.config.epochs  # so that the two choices differ
    network = protocol_network(tiny_store, tiny_experts.config.protocol(), torch.Generator(), torch.device("cpu"))
    epoch = chosen.epoch if ce_network == "any-epoch" else tiny_experts.config.epochs
    row = tiny_experts.trajectory(chosen.network)[epoch]
    with torch.no_grad():
        for name, p in network.named_parameters():
            p.copy_(unflatten(row, tiny_experts.layout)[name])
    draws = {m: run._draws(m) for m in AV}
    syn = run.synthetic_inputs(slice(0, len(run.classes)))
    per_class = run.ipc * run.tiles
    augmented = {m: run.dsa.apply(syn[m], draws[m], chunks=[per_class] * len(run.classes)) for m in AV}
    logits = network(augmented)
    labels = torch.tensor(run.classes).repeat_interleave(per_class)
    for position in range(len(run.classes)):
        rows = slice(position * per_class, (position + 1) * per_class)
        want = fusion_loss({m: z[rows] for m, z in logits.items()}, labels[rows])
        torch.testing.assert_close(got[position], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ce_samples", [0, 3, 8])
def test_the_cross_entropys_weight_falls_with_the_decoded_samples_per_class(tiny_store, tiny_experts, ce_samples):
    """The total against its terms by hand: AVDD's weighted terms, the distances at their weights and
    the cross-entropy at λ_ce × ce_samples / n, n = IPC × tiles = 8 here (ce_samples 0: λ_ce)."""
    run = make_run(tiny_store, tiny_experts, ce_samples=ce_samples)
    run.iteration = 1
    terms = run.loss_terms()
    assert run.ipc * run.tiles == 8
    ce_weight = 100.0 * (ce_samples / 8 if ce_samples else 1.0)
    weights = {"base": 1.0, "joint": 10.0, "gap": 10.0, "dist": 10.0, "pair": 10.0, "ce": ce_weight}
    want = sum(w * sum(float(v) for v in terms[t].detach()) for t, w in weights.items())
    assert float(run.total(terms).detach()) == pytest.approx(want, rel=1e-5)


def test_a_pool_that_does_not_fit_is_one_clear_error(tiny_store, tiny_experts):
    with pytest.raises(AvddError, match="encoder width 8, this distillation's encoders 16; pass --width 8"):
        make_run(tiny_store, tiny_experts, encoder={"width": 16})
    with pytest.raises(AvddError, match="trained on audio,frame; pass --modalities audio,frame"):
        PlusRun(tiny_store.split("train"), ("audio",), 2, 0,
                config(lambda_pair=0, weights=MatchingWeights(1, 0, 0)), pool=tiny_experts)
    with pytest.raises(AvddError, match="built otherwise.*encoders.audio parameters"):
        make_run(tiny_store, tiny_experts, encoder={"width": WIDTH, "norm": "none"})


def test_the_automatic_pool_is_trained_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    store = make_tiny_store(tmp_path / "store")
    trained = []
    original = experts_module.train_expert

    def counting(*args, **kwargs):
        trained.append(args[4])
        return original(*args, **kwargs)

    monkeypatch.setattr(experts_module, "train_expert", counting)
    context = RunContext(store, AV, 1, 0, torch.device("cpu"), progress=False)
    settings = PlusSettings(width=WIDTH, pool_networks=2, pool_epochs=1)
    first = run_pool(context, settings)
    assert trained == [0, 1] and first.path.parent == store.path / "cache" and first.path.name.startswith("pool-")
    again = run_pool(context, settings)
    assert trained == [0, 1] and again.path == first.path
    # a pool is drawn from to mix encoders or to classify with
    assert run_pool(context, replace(settings, mix_max=0.0)).path == first.path
    assert run_pool(context, replace(settings, mix_max=0.0, ce_network="mixed")) is None
    assert run_pool(context, replace(settings, mix_max=0.0, lambda_ce=0.0)) is None


def test_a_read_only_store_gets_a_pool_for_the_run_alone(tmp_path, monkeypatch):
    store = make_tiny_store(tmp_path / "store")
    monkeypatch.setattr(pool_module.os, "access", lambda path, mode: False)
    context = RunContext(store, AV, 1, 0, torch.device("cpu"), progress=False)
    with pytest.warns(UserWarning, match="read-only, so the encoder pool is trained into .* for this run alone"):
        pool = run_pool(context, PlusSettings(width=WIDTH, pool_networks=1, pool_epochs=1))
    assert not pool.path.is_relative_to(store.path) and pool.path.is_dir()
    folder = pool.path.parent
    del pool
    gc.collect()
    assert not folder.exists()  # removed with the run's pool


# -- the loop ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("distance", "factor"), [("mmd", 2), ("cf", 2), ("mmd", {"audio": 2, "frame": 1})])
def test_gradients_reach_only_the_right_class(tiny_store, tiny_experts, distance, factor):
    run = make_run(tiny_store, tiny_experts, distance=distance, factor=factor)
    terms = run.loss_terms()
    assert set(run.active_terms()) == {"base", "joint", "gap", "ce", "dist", "pair"}
    sum(terms[t][1] for t in run.active_terms()).backward()
    for m, x in run.synthetic.items():
        per_sample = x.grad.flatten(1).abs().sum(1)
        assert (per_sample[run.labels == 1] > 0).all(), m
        assert (per_sample[run.labels != 1] == 0).all(), m


def test_distances_are_in_the_mean_terms_units(tiny_store, tiny_experts, monkeypatch):
    """dist = Σ_m median_m · distance_m and pair = (Σ_m median_m) · distance, median_m the class's
    median squared distance between its real embeddings of modality m (a distance of 1 shows the scale)."""
    def unit(self, real, mask, syn, key):
        return torch.ones(len(real), dtype=torch.float64)

    monkeypatch.setattr(PlusRun, "_distance", unit)
    run = make_run(tiny_store, tiny_experts)
    terms = run.loss_terms()
    real = run._real_side(run._encoders(), {m: run._draws(m) for m in AV})  # the same draws: same iteration
    for c in range(len(run.classes)):
        medians = [median_scale([row for row, keep in zip(real.features[m][c], real.mask[c], strict=True) if keep])
                   for m in AV]
        assert float(terms["dist"][c]) == pytest.approx(sum(medians), rel=1e-5)
        assert float(terms["pair"][c]) == pytest.approx(sum(medians), rel=1e-5)


def test_without_mixing_and_added_terms_it_is_avdd_bit_for_bit(tiny_store):
    def distill(method: str, **settings):
        context = RunContext(tiny_store, AV, 1, 0, torch.device("cpu"), progress=False)
        spec = METHODS.get(method)
        return spec.run(context, spec.build({"iterations": 2, "batch_real": 5, "width": WIDTH, "embed_epochs": 1,
                                             **settings}, method))

    avdd = distill("avdd")
    plus = distill("avdd-plus", mix_max=0.0, lambda_ce=0.0, lambda_dist=0.0, lambda_pair=0.0, lambda_krr=0.0)
    for m in AV:
        assert torch.equal(plus.data[m], avdd.data[m]), m
    assert plus.log == avdd.log


@pytest.mark.parametrize("warmup", [0, 3])
def test_resume_equals_uninterrupted(tiny_store, tiny_experts, tmp_path, warmup):
    full = make_run(tiny_store, tiny_experts, iterations=4, distance="cf", warmup=warmup)
    full.run(progress=False)
    ck = tmp_path / "ck.pt"
    make_run(tiny_store, tiny_experts, iterations=2, distance="cf", warmup=warmup).run(checkpoint=ck, progress=False)
    second = make_run(tiny_store, tiny_experts, iterations=4, distance="cf", warmup=warmup)
    second.load_state(ck)
    second.run(checkpoint=ck, progress=False)
    for m in AV:
        assert torch.equal(second.synthetic[m], full.synthetic[m]), m
    with pytest.raises(AvddError, match="lambda_pair"):
        make_run(tiny_store, tiny_experts, iterations=4, distance="cf", lambda_pair=2.0).load_state(ck)


def test_the_warmup_raises_the_learning_rates_linearly(tiny_store, tiny_experts):
    warm = make_run(tiny_store, tiny_experts, iterations=1, warmup=4, mix_min=0.0, mix_max=0.0)
    full_lr = [group["lr"] for group in warm.optimizer.param_groups]
    # its first step is a run's at a quarter of the rates (a power of two: the same floats)
    quarter = make_run(tiny_store, tiny_experts, iterations=1, mix_min=0.0, mix_max=0.0,
                       lr={m: lr / 4 for m, lr in zip(AV, full_lr, strict=True)})
    warm.run(progress=False)
    quarter.run(progress=False)
    for m in AV:
        assert torch.equal(warm.synthetic[m], quarter.synthetic[m]), m
    rates = []
    for _ in range(5):
        warm.step()
        rates.append([group["lr"] / lr for group, lr in zip(warm.optimizer.param_groups, full_lr, strict=True)])
    assert rates == [pytest.approx([r, r]) for r in (0.5, 0.75, 1.0, 1.0, 1.0)]


def serial_and_sharded(make) -> tuple[SyntheticSet, SyntheticSet]:
    """The set of the run ``make(None)`` over every class, and those of classes [0, 2] and [1] merged."""
    def run(classes):
        plus = make(classes)
        plus.run(progress=False)
        return SyntheticSet(plus.stored(), plus.labels, log={"losses": plus.history})

    return run(None), merge_shards([run([0, 2]), run([1])])


def test_sharded_runs_merge_into_the_serial_run(tiny_store, tiny_experts):
    whole, merged = serial_and_sharded(lambda classes: make_run(tiny_store, tiny_experts, seed=3, classes=classes,
                                                                iterations=2))
    for m in AV:
        assert torch.equal(merged.data[m], whole.data[m]), m
    for got, want in zip(merged.log["losses"], whole.log["losses"], strict=True):
        assert got == pytest.approx(want, rel=1e-5)


def test_shards_equal_serial_when_a_class_has_fewer_samples_than_the_real_batch(tiny_store, tiny_experts, tmp_path):
    """Class 1 keeps 6 of its 12 training samples and the real batch is 10: its real embeddings are
    padded and masked, in a shard of its own as in the serial run."""
    train = tiny_store.split("train")
    keep = np.concatenate([np.flatnonzero(train.labels != 1), np.flatnonzero(train.labels == 1)[:6]])
    arrays = {"labels": np.asarray(train.labels)[keep], **{m: np.asarray(train.arrays[m])[keep] for m in AV}}
    test = tiny_store.split("test")
    store = write_store(tmp_path / "short", name="short", class_names=tiny_store.class_names, modalities=TINY_SPECS,
                        splits={"train": arrays, "test": {"labels": np.asarray(test.labels),
                                                          **{m: np.asarray(test.arrays[m]) for m in AV}}})
    store = open_store(store.path)

    whole, merged = serial_and_sharded(lambda classes: PlusRun(
        store.split("train"), AV, ipc=1, seed=1, config=config(iterations=2, batch_real=10), classes=classes,
        pool=tiny_experts))
    for m in AV:
        assert torch.equal(merged.data[m], whole.data[m]), m


def test_two_processes_distill_what_one_process_does(tmp_path):
    source = make_tiny_store(tmp_path / "source", num_classes=3)
    settings = {"iterations": 2, "batch_real": 5, "width": WIDTH, "embed_epochs": 1, "pool_networks": 1,
                "pool_epochs": 1, "distance": "cf", "lambda_dist": 10.0, "lambda_pair": 10.0,
                "lambda_krr": 10.0}  # the regression term: every class's embeddings gathered from both processes
    with one_thread():
        serial = api.distill(source.path, tmp_path / "serial", "avdd-plus", modalities=AV, ipc=2, seed=3,
                             progress=False, **settings)
    shutil.rmtree(source.path / "cache")  # the job's main process trains the pool (and herding's network) again
    flags = [part for name, value in settings.items() for part in (flag_of(name), str(value))]
    done = torchrun("distill", "--data", str(source.path), "--out", str(tmp_path / "job"), "--device", "cpu",
                    "--method", "avdd-plus", "--ipc", "2", "--seed", "3", *flags, "-q")
    assert done.returncode == 0, done.stderr
    for key in (*AV, "labels"):
        assert np.array_equal(np.load(tmp_path / "job" / f"train_{key}.npy"),
                              np.load(serial.path / f"train_{key}.npy")), key


def test_the_real_mean_cache_is_left_out_where_terms_need_more_than_means(tiny_store, tiny_experts, tmp_path):
    cache = RealMeanCache(Path(tmp_path), 1 << 20)
    with pytest.warns(UserWarning, match="real-mean cache is not used"):
        dropped = PlusRun(tiny_store.split("train"), AV, 2, 0, config(), pool=tiny_experts, real_cache=cache)
    assert dropped.real_cache is None
    for ce in (0.0, 100.0):  # the trained network's cross-entropy does not touch the real side
        kept = PlusRun(tiny_store.split("train"), AV, 2, 0, config(mix_min=0.0, mix_max=0.0, lambda_dist=0.0,
                                                                   lambda_pair=0.0, lambda_ce=ce),
                       real_cache=cache, pool=tiny_experts)
        assert kept.real_cache is cache


def test_random_encoders_with_the_trained_cross_entropy_read_the_real_means_from_the_cache(tiny_store, tiny_experts,
                                                                                          tmp_path, monkeypatch):
    def run(cache):
        settings = config(mix_min=0.0, mix_max=0.0, lambda_dist=0.0, lambda_pair=0.0)
        plus = PlusRun(tiny_store.split("train"), AV, 2, 0, settings, real_cache=cache, pool=tiny_experts)
        plus.iteration = 1
        return plus.loss_terms()

    cache = RealMeanCache(Path(tmp_path), 1 << 20)
    uncached, cold = run(None), run(cache)
    with monkeypatch.context() as patch:  # warm: nothing of the real side is computed again
        patch.setattr(PlusRun, "_class_real_means", lambda *args: pytest.fail("a cached mean was computed again"))
        warm = run(cache)
    for t, value in uncached.items():
        torch.testing.assert_close(cold[t], value)
        torch.testing.assert_close(warm[t], value)


def test_settings_have_avdds_defaults_and_refuse_what_cannot_work(tiny_store):
    settings = PlusSettings()
    assert (settings.lambda_jm, settings.lambda_mgm, settings.factor, settings.init) == (10.0, 10.0, 2, "herding")
    with pytest.raises(AvddError, match="mix_min=0.8 above mix_max=0.5"):
        config(mix_min=0.8, mix_max=0.5)
    with pytest.raises(AvddError, match="distance='l2'"):
        config(distance="l2")
    with pytest.raises(AvddError, match="mix_max=1.5"):
        METHODS.get("avdd-plus").build({"mix_max": 1.5}, "avdd-plus")
    with pytest.raises(AvddError, match="paired audio-visual term needs two modalities"):
        PlusRun(tiny_store.split("train"), ("audio",), 2, 0, config(mix_min=0.0, mix_max=0.0))
    nothing = dict(weights=MatchingWeights(0, 0, 0), lambda_ce=0.0, lambda_dist=0.0, lambda_pair=0.0)
    with pytest.raises(AvddError, match="every loss weight is 0"):
        config(**nothing)
    assert config(**{**nothing, "lambda_ce": 1.0}).has_loss  # the cross-entropy alone is a loss
    # and from the settings, as `avdd distill --lambda-base 0 --lambda-jm 0 --lambda-mgm 0` gives them
    # (their config once went through DM's, which refused a run without a matching term)
    alone = METHODS.get("avdd-plus").build({"lambda_base": 0.0, "lambda_jm": 0.0, "lambda_mgm": 0.0}, "avdd-plus")
    built = alone.config()
    assert built.weights == MatchingWeights(0, 0, 0) and built.lambda_ce == 1000.0
    with pytest.raises(AvddError, match="ce_samples=-1"):
        METHODS.get("avdd-plus").build({"ce_samples": -1}, "avdd-plus")
