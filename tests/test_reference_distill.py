"""DM/AVDD under the reference protocol: the authors' loop (one SGD step per class, one augmentation
for every class and modality, spectrograms in raw dB, their encoder layout)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from avdd.distill import dm
from avdd.distill.dm import MatchingConfig, MatchingRun
from avdd.distill.matching import MatchingWeights, weighted_total
from avdd.distributed import Job
from avdd.errors import AvddError
from avdd.experiments.config import load_experiment
from conftest import TINY_SPECS, make_tiny_store
from test_experiment_config import CONFIG_DIR

AV = ("audio", "frame")


def make_run(store, **kw) -> MatchingRun:
    base = MatchingConfig(iterations=3, batch_real=5, weights=MatchingWeights(1, 10, 10), factor=2,
                          encoder={"width": 8, "grid": 2}, checkpoint_every=2, protocol="reference",
                          lr={"audio": 0.05, "frame": 0.2})
    return MatchingRun(store.split("train"), AV, ipc=2, seed=0, config=replace(base, **kw))


def class_rows(run: MatchingRun, position: int) -> torch.Tensor:
    return run.labels == run.classes[position]


def test_class_steps_are_sgd_steps_on_each_class_loss_in_turn(tiny_store):
    # the slow way: per class, the whole loss's gradient on that class's rows (only its own loss
    # reaches them) at the data as the earlier classes' steps left it, then SGD with momentum
    # written out, one buffer per modality for all classes
    run = make_run(tiny_store)
    lr, momentum = run.config.lr, run.config.momentum
    data = {m: x.detach().clone() for m, x in run.synthetic.items()}
    buffers: dict[str, torch.Tensor] = {}
    for iteration in range(2):
        for position in range(len(run.classes)):
            slow = make_run(tiny_store)
            slow.iteration = iteration
            with torch.no_grad():
                for m, x in data.items():
                    slow.synthetic[m].copy_(x)
            weighted_total(slow.loss_terms(), slow.config.weights).backward()
            for m in AV:
                grad = torch.where(class_rows(slow, position).view(-1, 1, 1, 1), slow.synthetic[m].grad, 0.0)
                buffers[m] = grad if m not in buffers else momentum * buffers[m] + grad
                data[m] = data[m] - lr[m] * buffers[m]
        run.step()
        for m in AV:
            torch.testing.assert_close(run.synthetic[m].detach(), data[m], rtol=1e-5, atol=1e-6)


def test_one_step_per_class_moves_earlier_classes_again(tiny_store):
    # through the momentum buffer: after one iteration the first class has moved further than one
    # step on its gradient, which is all the last class gets
    run = make_run(tiny_store)
    start = {m: x.detach().clone() for m, x in run.synthetic.items()}
    weighted_total(run.loss_terms(), run.config.weights).backward()
    first_step = {m: -run.config.lr[m] * x.grad for m, x in run.synthetic.items()}
    run.synthetic["audio"].grad = run.synthetic["frame"].grad = None
    run.step()
    for m in AV:
        moved = run.synthetic[m].detach() - start[m]
        first, last = class_rows(run, 0), class_rows(run, len(run.classes) - 1)
        torch.testing.assert_close(moved[last], first_step[m][last], rtol=1e-4, atol=1e-7)
        assert moved[first].norm() > 1.2 * first_step[m][first].norm()


def test_one_augmentation_for_every_class_and_modality(tiny_store):
    run = make_run(tiny_store)
    audio, frame = run._draws("audio"), run._draws("frame")
    assert torch.equal(audio.kinds, frame.kinds) and torch.equal(audio.uniforms, frame.uniforms)
    assert len(set(audio.kinds.tolist())) == 1 and (audio.uniforms == audio.uniforms[0]).all()
    clean = make_run(tiny_store, protocol="clean")
    assert not torch.equal(clean._draws("audio").uniforms, clean._draws("frame").uniforms)
    run.iteration = 1
    assert not torch.equal(run._draws("audio").uniforms, audio.uniforms)  # a new one each iteration


@pytest.fixture(scope="module")
def db_store(tmp_path_factory):
    """A tiny store whose spectrograms' mean and std are not 0 and 1, so raw and normalised differ."""
    audio = replace(TINY_SPECS["audio"], mean=(-3.0,), std=(2.0,))
    return make_tiny_store(tmp_path_factory.mktemp("db") / "db", specs={**TINY_SPECS, "audio": audio})


def test_spectrograms_are_learned_in_stored_units_and_saved_back(db_store):
    run, clean = make_run(db_store, factor=1), make_run(db_store, factor=1, protocol="clean")
    assert run.raw == ("audio",) and clean.raw == ()
    info = db_store.modalities["audio"]
    # the same picks: the reference's are the stored values, the clean run's normalised
    torch.testing.assert_close(info.normalise(run.synthetic["audio"].detach()), clean.synthetic["audio"].detach())
    stored = torch.from_numpy(np.asarray(db_store.split("train").arrays["audio"]).astype(np.float32))
    for row in run.synthetic["audio"].detach():
        assert (stored - row).flatten(1).abs().max(1).values.min() == 0
    for m in AV:  # saved in the store's units either way
        torch.testing.assert_close(run.stored()[m], clean.stored()[m], rtol=0, atol=1e-4)
    real, clean_real = run._real_batch(run.classes[0], AV), clean._real_batch(clean.classes[0], AV)
    torch.testing.assert_close(info.normalise(real["audio"]), clean_real["audio"])
    assert torch.equal(real["frame"], clean_real["frame"])


def test_encoders_take_the_authors_layout(tiny_store):
    run = make_run(tiny_store)
    audio = run.encoder_configs["audio"]
    assert audio.stem_padding == (3 if tiny_store.modalities["audio"].shape[0] == 1 else 1)
    assert not audio.pool_last and run.dsa.params.align_corners is False
    clean = make_run(tiny_store, protocol="clean")
    assert clean.encoder_configs["audio"].pool_last and clean.dsa.params.align_corners is True


def test_resume_equals_uninterrupted(tiny_store, tmp_path):
    full = make_run(tiny_store, iterations=4)
    full.run(progress=False)
    ck = tmp_path / "ck.pt"
    make_run(tiny_store, iterations=2).run(checkpoint=ck, progress=False)
    second = make_run(tiny_store, iterations=4)
    second.load_state(ck)
    second.run(checkpoint=ck, progress=False)
    for m in AV:
        torch.testing.assert_close(second.synthetic[m], full.synthetic[m], rtol=0, atol=0)
    clean = make_run(tiny_store, iterations=4, protocol="clean")
    with pytest.raises(AvddError, match="protocol"):
        clean.load_state(ck)


def test_class_steps_refuse_a_sharded_run(tiny_store, monkeypatch):
    monkeypatch.setattr(dm, "current", lambda: Job(rank=0, world_size=2))
    with pytest.raises(AvddError, match="one process"):
        dm.process_classes(tiny_store.split("train"), make_run(tiny_store).config, 4)
    assert dm.process_classes(tiny_store.split("train"), replace(make_run(tiny_store).config, protocol="clean"), 4)


def test_an_unknown_protocol_is_one_line(tiny_store):
    with pytest.raises(AvddError, match="unknown protocol 'theirs'; known: clean, reference"):
        make_run(tiny_store, protocol="theirs")


def test_avdd_plus_refuses_the_reference_protocol():
    from avdd.distill.plus import PlusConfig

    with pytest.raises(AvddError, match="protocol='reference'.*clean only"):
        PlusConfig(protocol="reference")


@pytest.mark.parametrize("config", ["recognition", "ablation"])
def test_the_papers_schedule_distils_and_evaluates_the_authors_way(config):
    view = load_experiment(CONFIG_DIR / f"{config}.yaml", ["dataset=vggs10k"]).view
    assert view["methods"]["dm"]["protocol"] == view["methods"]["avdd"]["protocol"] == "reference"
    assert view["evaluate"]["protocol"] == "reference"
    avdigits = load_experiment(CONFIG_DIR / f"{config}.yaml", ["dataset=avdigits"]).view
    assert "protocol" not in avdigits["methods"].get("avdd", {})
