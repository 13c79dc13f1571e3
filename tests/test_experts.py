"""Expert trajectories: what is saved, exact resume, and refusing mismatched settings or data."""

from __future__ import annotations

import json

import pytest
import torch

from avdd.cli import main
from avdd.distill import experts as experts_module
from avdd.distill.experts import ExpertConfig, ExpertSet, expert_file, train_experts
from avdd.errors import AvddError
from avdd.formats import EXPERTS_MANIFEST
from avdd.models.flat import flatten_parameters
from avdd.training.protocol import accuracy_on, network_generators, protocol_network
from conftest import TINY_EXPERTS, make_tiny_store

SMALL = {**TINY_EXPERTS, "epochs": 2}


def test_trajectory_holds_the_initialisation_and_every_epoch(tiny_store, tiny_experts):
    config = tiny_experts.config
    trajectory = tiny_experts.trajectory(1)
    assert trajectory.shape == (config.epochs + 1, tiny_experts.num_parameters)
    assert trajectory.dtype == torch.float32
    init = protocol_network(tiny_store, config.protocol(), network_generators(config.seed, 1, torch.device("cpu"))
                            ["init"], torch.device("cpu"))
    torch.testing.assert_close(trajectory[0], flatten_parameters(init), rtol=0, atol=0)
    steps = (trajectory[1:] - trajectory[:-1]).norm(dim=1)
    assert (steps > 0).all()  # every epoch moved the network
    manifest = json.loads((tiny_experts.path / EXPERTS_MANIFEST).read_text())
    assert manifest["data"]["classes"] == tiny_store.class_names
    assert manifest["parameters"][0] == ["encoders.audio.features.0.weight", [8, 1, 3, 3]]
    assert manifest["parameters"][-1][0].startswith("head.")  # encoders and head form one vector
    # the saved accuracy is that of the last epoch's parameters on the test split
    cpu = torch.device("cpu")
    torch.nn.utils.vector_to_parameters(trajectory[-1], init.parameters())
    assert tiny_experts.test_accuracy(1) == accuracy_on(init, tiny_store.split("test"), config.modalities, cpu, 64)


def test_float16_trajectories(tiny_store, tmp_path):
    saved = train_experts(tiny_store, tmp_path / "e", ExpertConfig(**{**SMALL, "num_experts": 1}, float16=True),
                          progress=False)
    assert saved.trajectory(0).dtype == torch.float16


def test_interrupted_experts_resume_to_identical_files(tiny_store, tmp_path, monkeypatch):
    config = ExpertConfig(**{**SMALL, "num_experts": 3})
    train_experts(tiny_store, tmp_path / "whole", config, progress=False)

    original = experts_module.train_network
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and dying:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(experts_module, "train_network", counted)
    out = tmp_path / "resumed"
    dying = True
    with pytest.raises(KeyboardInterrupt):
        train_experts(tiny_store, out, config, progress=False)
    assert {p.name for p in out.iterdir()} == {EXPERTS_MANIFEST, expert_file(0)}  # no partial files
    first = (out / expert_file(0)).stat().st_mtime_ns
    calls.clear()
    dying = False
    resumed = train_experts(tiny_store, out, config, progress=False)
    assert len(calls) == 2  # expert 0 was not trained again
    assert (out / expert_file(0)).stat().st_mtime_ns == first
    assert [p.name for p in resumed.files] == [expert_file(e) for e in range(3)]
    for e in range(3):
        assert (out / expert_file(e)).read_bytes() == (tmp_path / "whole" / expert_file(e)).read_bytes()


def test_more_experts_can_be_added_but_other_settings_are_refused(tiny_store, tmp_path):
    out = tmp_path / "e"
    train_experts(tiny_store, out, ExpertConfig(**{**SMALL, "num_experts": 1}), progress=False)
    assert len(train_experts(tiny_store, out, ExpertConfig(**SMALL), progress=False).files) == 2
    with pytest.raises(AvddError, match=r"trained differently \(config.lr: checkpoint has 0.01, now 0.02\)"):
        train_experts(tiny_store, out, ExpertConfig(**SMALL, lr=0.02), progress=False)


def test_opening_and_checking_experts_gives_clear_errors(tiny_store, tiny_experts, tmp_path):
    with pytest.raises(AvddError, match="no such directory"):
        ExpertSet.open(tmp_path / "missing")
    with pytest.raises(AvddError, match="not an expert directory"):
        ExpertSet.open(tmp_path)
    with pytest.raises(AvddError, match="trained on audio,frame; pass --modalities audio,frame"):
        tiny_experts.check_data(tiny_store, ("frame", "audio"))
    other = make_tiny_store(tmp_path / "other", num_classes=4)
    with pytest.raises(AvddError, match="other classes"):
        tiny_experts.check_data(other, ("audio", "frame"))
    with pytest.raises(AvddError, match=r"invalid expert settings: epochs=0 \(must be an integer ≥ 1\)"):
        ExpertConfig(epochs=0)


def test_cli_experts(tiny_store, tmp_path, capsys):
    out = tmp_path / "e"
    args = ["experts", "--data", str(tiny_store.path), "--out", str(out), "--modalities", "audio", "--num-experts", "1",
            "--epochs", "1", "--batch-size", "8", "--width", "4", "--float16", "-q"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 expert(s)" in printed and "audio, 1 epochs" in printed and "expert_000.pt  test accuracy" in printed
    assert ExpertSet.open(out).trajectory(0).dtype == torch.float16


def test_the_experiment_runners_experts_step_trains_experts(tiny_store, tmp_path):
    from avdd.experiments.steps import expert_trajectories_step

    expert_trajectories_step(tiny_store, tmp_path / "e", modalities=("audio", "frame"), device=torch.device("cpu"),
                             progress=False, num_experts=1, epochs=1, batch_size=8, width=4)
    assert ExpertSet.open(tmp_path / "e").config.width == 4
