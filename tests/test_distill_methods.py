"""Every registered method through the library call and the CLI, on a tiny store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import avdd
from avdd.cli import main
from avdd.data.store import open_store
from avdd.distill import api
from avdd.distill.experts import ExpertConfig, train_experts
from avdd.distill.registry import METHODS
from avdd.distill.result import LOG_FILE
from avdd.errors import AvddError
from conftest import (
    TINY_EXPERTS,
    assert_one_networks_accuracy,
    assert_real_samples_of_their_class,
    make_tiny_store,
    rename_modalities,
)

FAST = {
    "random": {},
    "herding": {"embed_source": "random"},
    "kcenter": {"embed_source": "random"},
    "dm": {"iterations": 2, "batch_real": 4, "width": 8},
    "avdd": {"iterations": 2, "batch_real": 4, "width": 8, "embed_source": "random"},
    "mtt": {"iterations": 2, "syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 1},
    "avdd-plus": {"iterations": 2, "batch_real": 4, "width": 8, "embed_source": "random", "pool_networks": 1,
                  "pool_epochs": 1},
}


def settings_for(method: str, request: pytest.FixtureRequest) -> dict:
    """FAST settings, plus the tiny experts for the method that follows them."""
    experts = {"experts": request.getfixturevalue("tiny_experts").path} if method == "mtt" else {}
    return {**FAST[method], **experts}


def test_every_method_is_covered():
    assert sorted(FAST) == METHODS.names()


@pytest.mark.parametrize("method", sorted(FAST))
def test_method_gives_a_store_that_evaluate_accepts(tiny_store, tmp_path, method, capsys, request):
    out = tmp_path / method
    saved = api.distill(tiny_store.path, out, method, modalities=("audio", "frame"), ipc=2, seed=1,
                        progress=False, **settings_for(method, request))
    again = open_store(out)
    assert again.split_sizes == {"train": 2 * tiny_store.num_classes}
    assert again.split("train").class_counts() == [2] * tiny_store.num_classes
    assert again.class_names == tiny_store.class_names
    prov = again.provenance
    assert prov["method"] == method and prov["ipc"] == 2 and prov["seed"] == 1
    assert prov["source_dataset"]["path"] == str(tiny_store.path.resolve()) and "code_version" in prov
    assert saved.path == out
    code = main(["evaluate", "--train", str(out), "--test", str(tiny_store.path), "--num-eval", "1",
                 "--epochs", "1", "--json", str(tmp_path / "r.json"), "-q"])
    assert code == 0
    assert_one_networks_accuracy(json.loads((tmp_path / "r.json").read_text())["accuracy"], tiny_store.split("test"))


@pytest.mark.parametrize("method", ["dm", "avdd", "mtt", "avdd-plus"])
def test_zero_iterations_save_the_initialised_set(tiny_store, tmp_path, method, request):
    def stored(iterations: int, name: str) -> dict[str, np.ndarray]:
        settings = {**settings_for(method, request), "iterations": iterations}
        saved = api.distill(tiny_store.path, tmp_path / name, method, modalities=("audio", "frame"), ipc=1,
                            seed=0, progress=False, **settings)
        return {m: saved.split("train").arrays[m] for m in ("audio", "frame")}

    initial, stepped = stored(0, "zero"), stored(1, "one")
    assert json.loads((tmp_path / "zero" / LOG_FILE).read_text())["losses"] == []
    assert any(not np.array_equal(initial[m], stepped[m]) for m in initial)  # one step moves it


def test_zero_iterations_of_dm_without_factor_are_real_samples_of_each_class(tiny_store, tmp_path):
    saved = api.distill(tiny_store.path, tmp_path / "zero", "dm", modalities=("audio", "frame"), ipc=2,
                        progress=False, **{**FAST["dm"], "iterations": 0})
    synthetic = saved.split("train")
    for m in ("audio", "frame"):
        assert_real_samples_of_their_class(tiny_store.split("train"), m, synthetic.arrays[m], synthetic.labels)


@pytest.mark.parametrize("method", ["random", "herding", "kcenter"])
def test_coreset_selection_is_nested_and_real(tiny_store, tmp_path, method):
    sets = {ipc: open_store(api.distill(tiny_store.path, tmp_path / f"{ipc}", method, modalities=("audio", "frame"),
                                        ipc=ipc, progress=False, **FAST[method]).path) for ipc in (1, 3)}
    small, large = (sets[k].provenance["selection"] for k in (1, 3))
    for name in tiny_store.class_names:
        assert large[name][:1] == small[name]
    split = tiny_store.split("train")
    chosen = np.concatenate([large[n] for n in tiny_store.class_names])
    np.testing.assert_array_equal(sets[3].split("train").arrays["frame"], split.arrays["frame"][chosen])
    np.testing.assert_array_equal(sets[3].split("train").labels, split.labels[chosen])


def test_unknown_setting_names_the_flag(tiny_store, tmp_path):
    with pytest.raises(AvddError, match="'random' does not take --lambda-jm"):
        api.distill(tiny_store.path, tmp_path / "x", "random", modalities=("audio",), ipc=1, lambda_jm=3.0)


def test_too_large_ipc_for_a_coreset(tiny_store, tmp_path):
    with pytest.raises(AvddError, match="fewer than IPC 50"):
        api.distill(tiny_store.path, tmp_path / "x", "random", modalities=("audio",), ipc=50, progress=False)


def test_interrupted_distill_resumes_to_the_same_store(tiny_store, tmp_path, monkeypatch):
    settings = {**FAST["avdd"], "iterations": 4, "checkpoint_every": 1}
    whole = api.distill(tiny_store.path, tmp_path / "whole", "avdd", modalities=("audio", "frame"), ipc=1,
                        progress=False, **settings)
    from avdd.distill.dm import MatchingRun

    original_step = MatchingRun.step

    def dying_step(self):
        if self.iteration == 2:
            raise KeyboardInterrupt
        return original_step(self)

    monkeypatch.setattr(MatchingRun, "step", dying_step)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        api.distill(tiny_store.path, out, "avdd", modalities=("audio", "frame"), ipc=1, progress=False, **settings)
    assert not out.exists() and api.checkpoint_path(out).exists()
    monkeypatch.setattr(MatchingRun, "step", original_step)
    with pytest.raises(AvddError, match="pass --resume"):
        api.distill(tiny_store.path, out, "avdd", modalities=("audio", "frame"), ipc=1, progress=False, **settings)
    resumed = api.distill(tiny_store.path, out, "avdd", modalities=("audio", "frame"), ipc=1, progress=False,
                          resume=True, **settings)
    for m in ("audio", "frame"):
        np.testing.assert_array_equal(resumed.split("train").arrays[m], whole.split("train").arrays[m])
    assert not api.checkpoint_path(out).exists()
    losses = json.loads((out / LOG_FILE).read_text())["losses"]
    assert [row["iteration"] for row in losses] == [1, 2, 3, 4]


def test_cli_distill_with_intermediate_evaluation(tiny_store, tmp_path, capsys):
    out = tmp_path / "d"
    code = main(["distill", "--data", str(tiny_store.path), "--method", "dm", "--ipc", "1", "--iterations", "2",
                 "--batch-real", "4", "--width", "8", "--eval-every", "1", "--eval-epochs", "1",
                 "--out", str(out), "-q"])
    assert code == 0
    assert "train     3 samples" in capsys.readouterr().out
    log = json.loads((out / LOG_FILE).read_text())
    assert [e["iteration"] for e in log["evaluations"]] == [1, 2]
    assert main(["distill", "--data", str(tiny_store.path), "--method", "dm", "--ipc", "1",
                 "--out", str(out), "-q"]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("method", sorted(FAST))
def test_every_method_runs_on_modalities_of_any_name(tiny_store, tmp_path, method):
    # no setting is keyed by the names audio and frame alone: learning rates have a default for any modality
    renamed = rename_modalities(tiny_store, {"audio": "sound", "frame": "rgb"}, tmp_path / "renamed")
    modalities = ("sound", "rgb")
    experts = {}
    if method == "mtt":
        config = ExpertConfig(modalities=modalities, **TINY_EXPERTS)
        experts = {"experts": train_experts(renamed, tmp_path / "experts", config, progress=False).path}
    saved = api.distill(renamed.path, tmp_path / method, method, modalities=modalities, ipc=1, seed=1,
                        progress=False, **FAST[method], **experts)
    assert {m: spec.kind for m, spec in saved.modalities.items()} == {"sound": "spectrogram", "rgb": "image"}


@pytest.fixture(scope="module")
def sixteen_per_class(tmp_path_factory):
    """A tiny store with 16 train samples per class: enough for IPC 1 at factor 4 (16 tiles)."""
    return make_tiny_store(tmp_path_factory.mktemp("sixteen") / "store", train_per_class=16)


@pytest.mark.parametrize("method", ["dm", "avdd", "mtt", "avdd-plus"])
def test_factor_4_stores_16_tiles_per_sample_that_evaluation_decodes(sixteen_per_class, tmp_path, method, request):
    out = tmp_path / method
    api.distill(sixteen_per_class.path, out, method, modalities=("audio", "frame"), ipc=1, progress=False,
                **{**settings_for(method, request), "factor": 4})
    saved = open_store(out)
    assert saved.provenance["factor"] == 4 and saved.split_sizes == {"train": sixteen_per_class.num_classes}
    data = avdd.load(out)
    assert len(data) == 16 * sixteen_per_class.num_classes
    assert data.labels.tolist() == list(range(sixteen_per_class.num_classes)) * 16  # tile-major


def test_factor_4_initialises_each_tile_from_a_distinct_real_sample_of_its_class(sixteen_per_class, tmp_path):
    saved = api.distill(sixteen_per_class.path, tmp_path / "zero", "dm", modalities=("audio", "frame"), ipc=1,
                        progress=False, **{**FAST["dm"], "iterations": 0, "factor": 4})
    stored = torch.tensor(saved.split("train").arrays["frame"], dtype=torch.float32)  # (classes, 3, 8, 8): 2 x 2 tiles
    train = sixteen_per_class.split("train")
    real = torch.tensor(train.arrays["frame"], dtype=torch.float32)
    for c in range(sixteen_per_class.num_classes):
        shrunk = F.avg_pool2d(real[train.labels == c], 4)  # every real sample of the class, shrunk to a tile
        found = set()
        for i in range(4):
            for j in range(4):
                tile = stored[c, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                matches = [k for k in range(len(shrunk)) if torch.allclose(shrunk[k], tile, atol=1e-3)]
                assert matches, f"class {c}, tile ({i}, {j}) is no real sample of its class"
                found.add(matches[0])
        assert len(found) == 16


PER_MODALITY = {"audio": 4, "frame": 2}


@pytest.mark.parametrize("method", ["dm", "avdd", "mtt", "avdd-plus"])
def test_a_factor_per_modality_stores_each_modalitys_tiles_that_evaluation_pairs(sixteen_per_class, tmp_path, method,
                                                                                request):
    out = tmp_path / method
    api.distill(sixteen_per_class.path, out, method, modalities=("audio", "frame"), ipc=1, progress=False,
                **{**settings_for(method, request), "factor": PER_MODALITY})
    saved = open_store(out)
    assert saved.provenance["factor"] == PER_MODALITY and saved.provenance["settings"]["factor"] == PER_MODALITY
    classes = sixteen_per_class.num_classes
    data = avdd.load(out)
    assert len(data) == 16 * classes and data.labels.tolist() == list(range(classes)) * 16
    stored = {m: torch.tensor(saved.split("train").arrays[m], dtype=torch.float32) for m in ("audio", "frame")}
    for t in (0, 3, 4, 15):  # decoded sample t of class c: audio tile t, frame tile t mod 4
        item = data[t * classes + 1]
        for m, side in PER_MODALITY.items():
            i, j = divmod(t % side**2, side)
            h, w = stored[m].shape[-2] // side, stored[m].shape[-1] // side
            tile = stored[m][1:2, :, i * h : (i + 1) * h, j * w : (j + 1) * w]
            expected = F.interpolate(tile, size=stored[m].shape[-2:], mode="bilinear", align_corners=False)
            spec = saved.modalities[m]
            normalised = (expected * spec.scale - torch.tensor(spec.mean).view(-1, 1, 1)) / torch.tensor(
                spec.std).view(-1, 1, 1)
            torch.testing.assert_close(item[m], normalised[0], rtol=1e-4, atol=1e-4)
    code = main(["evaluate", "--train", str(out), "--test", str(sixteen_per_class.path), "--num-eval", "1",
                 "--epochs", "1", "--json", str(tmp_path / "r.json"), "-q"])
    assert code == 0 and json.loads((tmp_path / "r.json").read_text())["train_samples"] == 16 * classes


def test_a_factor_per_modality_starts_from_real_pairs(sixteen_per_class, tmp_path):
    """Decoded samples 0..3 of a class pair audio tile k with frame tile k: the same real sample's."""
    saved = api.distill(sixteen_per_class.path, tmp_path / "zero", "dm", modalities=("audio", "frame"), ipc=1,
                        progress=False, **{**FAST["dm"], "iterations": 0, "factor": PER_MODALITY})
    train = sixteen_per_class.split("train")
    for c in range(sixteen_per_class.num_classes):
        members = np.flatnonzero(train.labels == c)
        found = {}
        for m, side in PER_MODALITY.items():
            stored = torch.tensor(saved.split("train").arrays[m][c], dtype=torch.float32)
            real = F.avg_pool2d(torch.tensor(train.arrays[m][members], dtype=torch.float32), side)
            h, w = real.shape[-2:]
            for k in range(side * side):
                i, j = divmod(k, side)
                tile = stored[:, i * h : (i + 1) * h, j * w : (j + 1) * w]
                matches = [members[r] for r in range(len(real)) if torch.allclose(real[r], tile, atol=1e-2)]
                assert matches, f"class {c}, {m} tile {k} is no real sample of its class"
                found[m, k] = matches[0]
        assert len({found["audio", k] for k in range(16)}) == 16
        assert all(found["frame", k] == found["audio", k] for k in range(4))


def test_a_factor_that_does_not_divide_the_sides_is_one_error_line_before_any_work(tiny_store, tmp_path, capsys):
    code = main(["distill", "--data", str(tiny_store.path), "--method", "avdd", "--ipc", "1", "--factor", "3",
                 "--out", str(tmp_path / "x"), "-q"])
    assert code == 1 and not (tmp_path / "x").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "avdd: error: audio: factor 3 needs sides divisible by 3, got 16x12")


@pytest.mark.parametrize(("argv", "error"), [
    (["--factor", "audio=4"], "avdd: error: --factor gives no factor for frame; give one per modality (audio, frame) "
                              "or one for all"),
    (["--factor", "audio=4", "--factor", "frame=2", "--factor", "video=2"],
     "avdd: error: --factor names video, which this run does not have (its modalities: audio, frame)"),
    (["--factor", "audio=3", "--factor", "frame=2"],
     "avdd: error: audio: factor 3 needs sides divisible by 3, got 16x12"),
    (["--factor", "2", "--factor", "audio=4"], "avdd distill: error: argument --factor: give VALUE once for all "
                                               "modalities, or MODALITY=VALUE for each, not both"),
    (["--factor", "audio=0"], "avdd distill: error: argument --factor: must be an integer ≥ 1, got '0'"),
])
def test_a_bad_factor_per_modality_is_one_error_line_before_any_work(tiny_store, tmp_path, capsys, argv, error):
    try:  # errors of usage exit (2) from argparse, others return 1
        code = main(["distill", "--data", str(tiny_store.path), "--method", "avdd", "--ipc", "1", *argv,
                     "--out", str(tmp_path / "x"), "-q"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == (2 if error.startswith("avdd distill:") else 1) and not (tmp_path / "x").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == error


def test_the_cli_takes_a_factor_per_modality(sixteen_per_class, tmp_path):
    out = tmp_path / "set"
    assert main(["distill", "--data", str(sixteen_per_class.path), "--method", "avdd", "--ipc", "1", "--iterations",
                 "1", "--batch-real", "4", "--width", "8", "--embed-source", "random", "--factor", "audio=4",
                 "--factor", "frame=2", "--out", str(out), "-q"]) == 0
    assert open_store(out).provenance["factor"] == PER_MODALITY
