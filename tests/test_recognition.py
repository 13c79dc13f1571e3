import json

import numpy as np
import pytest
import torch

from avdd.errors import AvddError
from avdd.evaluate.recognition import evaluate_recognition, summarise
from avdd.models.fusion import build_classifier
from avdd.training.inputs import load_training_set
from avdd.training.protocol import EvalConfig, network_generators, train_network
from conftest import make_tiny_store

TINY = {"width": 8, "grid": 2, "batch_size": 8}


def test_mean_and_std_match_a_direct_computation_over_the_runs(tiny_store):
    config = EvalConfig(num_eval=3, epochs=2, **TINY)
    result = evaluate_recognition(tiny_store, tiny_store, config, progress=False)
    runs = result.runs
    assert len(runs) == 3 and all(0 <= r <= 1 for r in runs)
    mean = sum(runs) / len(runs)
    assert result.mean == pytest.approx(mean)
    assert result.std == pytest.approx((sum((r - mean) ** 2 for r in runs) / len(runs)) ** 0.5)  # population
    report = result.to_json()
    assert report["accuracy"] == {"mean": result.mean, "std": result.std, "std_kind": "population", "runs": runs}
    assert summarise([0.5, 0.7]) == pytest.approx((0.6, 0.1))


@pytest.mark.parametrize("modalities", [("audio",), ("frame",), ("audio", "frame")])
def test_networks_learn_the_tiny_classes_well_above_chance(tiny_store, modalities):
    config = EvalConfig(modalities=modalities, num_eval=1, epochs=6, lr_encoder={}, **TINY)
    result = evaluate_recognition(tiny_store, tiny_store, config, progress=False)
    assert result.runs[0] > 0.8  # chance is 1/3


def trained_parameters(store, seed: int, run: int) -> list[torch.Tensor]:
    config = EvalConfig(epochs=1, **TINY)
    inputs, labels = load_training_set(store, config.modalities, torch.device("cpu"))
    generators = network_generators(seed, run, torch.device("cpu"))
    model = build_classifier({m: store.modalities[m].shape for m in config.modalities}, store.num_classes,
                             generator=generators["init"], width=config.width, grid=config.grid)
    train_network(model, inputs, labels, config, generators)
    return [p.detach() for p in model.parameters()]


def test_training_is_determined_by_seed_and_run(tiny_store):
    a, b = trained_parameters(tiny_store, 0, 1), trained_parameters(tiny_store, 0, 1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    for other in (trained_parameters(tiny_store, 1, 1), trained_parameters(tiny_store, 0, 2)):
        assert not torch.equal(a[0], other[0])


def test_network_k_does_not_depend_on_num_eval(tiny_store):
    one = evaluate_recognition(tiny_store, tiny_store, EvalConfig(num_eval=1, epochs=1, **TINY), progress=False)
    two = evaluate_recognition(tiny_store, tiny_store, EvalConfig(num_eval=2, epochs=1, **TINY), progress=False)
    assert one.runs[0] == two.runs[0]


def test_config_round_trips_through_json():
    config = EvalConfig(modalities=("frame",), fusion="sum", lr_encoder={"frame": 3e-4}, epochs=4)
    assert EvalConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(AvddError, match="epoch"):
        EvalConfig.from_json({"epoch": 3})
    with pytest.raises(AvddError, match="epochs=0"):
        EvalConfig(epochs=0)


def test_a_factorised_set_trains_on_four_tiles_per_sample(tmp_path, tiny_store):
    store = make_tiny_store(tmp_path / "distilled", train_per_class=2, splits=("train",),
                            provenance={"method": "test", "factor": True})
    inputs, labels = load_training_set(store, ("audio", "frame"), torch.device("cpu"))
    assert inputs["audio"].shape == (24, 1, 16, 12) and inputs["frame"].shape == (24, 3, 8, 8)
    assert np.bincount(labels.numpy()).tolist() == [8, 8, 8]
    result = evaluate_recognition(store, tiny_store, EvalConfig(num_eval=1, epochs=1, **TINY), progress=False)
    assert result.train_samples == 24
