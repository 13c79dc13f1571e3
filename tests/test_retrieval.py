import json

import numpy as np
import pytest
import torch

from avdd.cli import main
from avdd.data.store import write_store
from avdd.errors import AvddError
from avdd.evaluate.retrieval import directions, embed_pairs, evaluate_retrieval, stratified_subset
from avdd.models.fusion import build_classifier
from avdd.training.protocol import EvalConfig
from conftest import TINY_SPECS, make_tiny_store, rename_modalities


def test_subset_is_stratified_seeded_and_distinct(tiny_store):
    split = tiny_store.split("test")  # 3 classes × 6
    picked = stratified_subset(split, 7, seed=0, draw=0)
    assert len(set(picked.tolist())) == 7
    counts = np.bincount(split.labels[picked], minlength=3)
    assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(picked, stratified_subset(split, 7, seed=0, draw=0))
    assert not np.array_equal(picked, stratified_subset(split, 7, seed=0, draw=1))
    with pytest.raises(AvddError, match="between 1 and"):
        stratified_subset(split, 19, seed=0, draw=0)


def test_embeddings_are_each_modality_heads_softmax(tiny_store):
    shapes = {m: tiny_store.modalities[m].shape for m in ("audio", "frame")}
    model = build_classifier(shapes, 3, generator=torch.Generator().manual_seed(0), width=8, grid=2)
    index = np.array([0, 4, 2])
    probs = embed_pairs(model, tiny_store.split("test"), index, torch.device("cpu"), "probabilities")
    logits = embed_pairs(model, tiny_store.split("test"), index, torch.device("cpu"), "logits")
    for m in ("audio", "frame"):
        torch.testing.assert_close(probs[m], logits[m].softmax(dim=1))
        torch.testing.assert_close(probs[m].sum(1), torch.ones(3))


def test_trained_networks_retrieve_above_chance(tiny_store):
    config = EvalConfig(num_eval=2, epochs=15, width=16, grid=2, seed=0)
    result = evaluate_retrieval(tiny_store, tiny_store, config, subset=18, subsets=2, progress=False)
    out = result.to_json()
    for direction in ("a2v", "v2a"):
        assert len(out[direction]["r1"]["runs"]) == 4  # 2 networks × 2 subsets
        # chance: R@1 = 1/18, R@5 = 5/18; class-aligned embeddings put same-class partners first
        assert out[direction]["r5"]["mean"] > 1.5 * 5 / 18
        assert out[direction]["medr"]["mean"] < 9


def test_cli_writes_the_documented_json(tiny_store, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["retrieve", "--train", str(tiny_store.path), "--test", str(tiny_store.path), "--subset", "9",
                 "--num-eval", "1", "--epochs", "1", "--json", str(out), "-q"])
    assert code == 0
    data = json.loads(out.read_text())
    for direction in ("a2v", "v2a"):
        assert set(data[direction]) == {"r1", "r5", "medr"}
        assert set(data[direction]["r1"]) == {"mean", "std", "runs"}
    assert "A2V: R@1" in capsys.readouterr().out


def test_retrieval_needs_both_modalities(tmp_path):
    audio_only = make_tiny_store(tmp_path / "a", specs={"audio": TINY_SPECS["audio"]})
    assert main(["retrieve", "--train", str(audio_only.path), "--test", str(audio_only.path), "-q"]) == 1


def test_directions_are_named_by_kind_else_by_name(tiny_store, tmp_path):
    assert directions(tiny_store, ("audio", "frame")) == {"a2v": ("audio", "frame"), "v2a": ("frame", "audio")}
    assert directions(tiny_store, ("frame", "audio")) == {"v2a": ("frame", "audio"), "a2v": ("audio", "frame")}
    train = tiny_store.split("train")
    frames = np.asarray(train.arrays["frame"])
    both = write_store(tmp_path / "both", name="both", class_names=tiny_store.class_names,
                       modalities={"rgb": TINY_SPECS["frame"], "depth": TINY_SPECS["frame"]},
                       splits={"train": {"labels": np.asarray(train.labels), "rgb": frames, "depth": frames}})
    assert directions(both, ("rgb", "depth")) == {"rgb2depth": ("rgb", "depth"), "depth2rgb": ("depth", "rgb")}
    with pytest.raises(AvddError, match="exactly two modalities.*got 1: audio"):
        directions(tiny_store, ("audio",))


def test_retrieval_runs_on_the_chosen_modalities_whatever_their_names(tiny_store, tmp_path):
    renamed = rename_modalities(tiny_store, {"audio": "sound", "frame": "rgb"}, tmp_path / "renamed")
    small = {"num_eval": 1, "epochs": 1, "width": 8, "grid": 2}
    chosen = evaluate_retrieval(renamed, renamed, EvalConfig(modalities=("rgb", "sound"), **small), subset=6,
                                progress=False)
    assert chosen.config.modalities == ("rgb", "sound") and list(chosen.scores) == ["v2a", "a2v"]
    with pytest.raises(AvddError, match="exactly two modalities.*got 1: audio"):  # never widened to audio+frame
        evaluate_retrieval(tiny_store, tiny_store, EvalConfig(modalities=("audio",), **small), progress=False)


def test_cli_takes_the_modalities_or_the_train_stores(tiny_store, tmp_path, capsys):
    renamed = rename_modalities(tiny_store, {"audio": "sound", "frame": "rgb"}, tmp_path / "renamed")
    out = tmp_path / "r.json"
    argv = ["retrieve", "--train", str(renamed.path), "--test", str(renamed.path), "--subset", "6", "--num-eval", "1",
            "--epochs", "1", "-q", "--json", str(out)]
    assert main(argv) == 0
    assert json.loads(out.read_text())["config"]["modalities"] == ["sound", "rgb"]
    assert main([*argv[:-2], "--modalities", "rgb"]) == 1
    assert "exactly two modalities" in capsys.readouterr().err
