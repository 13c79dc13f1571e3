import json
from dataclasses import replace

import numpy as np
import pytest

from avdd.cli import main
from avdd.data.store import IMAGE, SPECTROGRAM, ModalitySpec, write_store
from conftest import TINY_SPECS, make_tiny_store


def run_cli(train, test, *extra: str) -> list[str]:
    return ["evaluate", "--train", str(train), "--test", str(test), "--num-eval", "1", "--epochs", "1",
            "--quiet", *extra]


def test_evaluate_writes_json_and_prints_a_summary(tiny_store, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(run_cli(tiny_store.path, tiny_store.path, "--num-eval", "2", "--fusion", "concat",
                        "--json", str(out))) == 0
    report = json.loads(out.read_text())
    assert {"accuracy", "modalities", "fusion", "train", "test", "config"} <= set(report)
    assert len(report["accuracy"]["runs"]) == 2
    assert report["accuracy"]["mean"] == pytest.approx(np.mean(report["accuracy"]["runs"]))
    assert report["modalities"] == ["audio", "frame"] and report["fusion"] == "concat"
    assert report["config"]["epochs"] == 1 and report["config"]["num_eval"] == 2
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("audio+frame concat:") and "±" in summary[0]


def test_networks_together_reaches_the_evaluation(tiny_store, tmp_path):
    out = tmp_path / "result.json"
    assert main(run_cli(tiny_store.path, tiny_store.path, "--num-eval", "2", "--networks-together", "2",
                        "--json", str(out))) == 0
    report = json.loads(out.read_text())
    assert report["config"]["networks_together"] == 2 and len(report["accuracy"]["runs"]) == 2


def expect_error(argv: list[str], capsys, *fragments: str) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("avdd: error:") and err.count("\n") == 1
    for fragment in fragments:
        assert fragment in err


def test_classes_that_differ(tiny_store, tmp_path, capsys):
    other = make_tiny_store(tmp_path / "other", class_names=["x", "y", "z"])
    expect_error(run_cli(other.path, tiny_store.path), capsys, "different classes")


def test_modality_shapes_that_differ(tiny_store, tmp_path, capsys):
    narrow = ModalitySpec(kind=SPECTROGRAM, shape=(1, 8, 12), dtype="float16", mean=(0.0,), std=(1.0,))
    labels = np.arange(6) % 3
    audio = np.random.default_rng(0).standard_normal((6, *narrow.shape)).astype(np.float16)
    other = write_store(tmp_path / "narrow", name="narrow", class_names=tiny_store.class_names,
                        modalities={"audio": narrow}, splits={"train": {"labels": labels, "audio": audio}})
    expect_error(run_cli(other.path, tiny_store.path, "--modalities", "audio"), capsys, "'audio'", "[1, 8, 12]")


def test_modality_kinds_that_differ(tiny_store, tmp_path, capsys):
    # same name and shape, but pictures in one store and spectrograms in the other
    other = make_tiny_store(tmp_path / "other", specs={**TINY_SPECS, "audio": replace(TINY_SPECS["audio"], kind=IMAGE)})
    expect_error(run_cli(other.path, tiny_store.path), capsys, "'audio' is of kind image", "but spectrogram")


def test_modality_not_in_the_store(tiny_store, capsys):
    expect_error(run_cli(tiny_store.path, tiny_store.path, "--modalities", "audio,depth"), capsys,
                 "no modality 'depth'", "it has: audio, frame")


def test_unknown_fusion_head_lists_the_known_ones(tiny_store, capsys):
    expect_error(run_cli(tiny_store.path, tiny_store.path, "--fusion", "late"), capsys,
                 "unknown fusion head 'late'", "attention, concat, ensemble, sum")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_training_data(tiny_store, tmp_path, capsys, bad):
    store = make_tiny_store(tmp_path / "broken")
    audio = np.load(store.path / "train_audio.npy", mmap_mode="r+")
    audio[3, 0, 2, 2] = bad
    audio.flush()
    expect_error(run_cli(store.path, tiny_store.path), capsys, "1 training sample(s)", "NaN or Inf")


def test_missing_store_and_bad_device(tiny_store, tmp_path, capsys):
    expect_error(run_cli(tmp_path / "nowhere", tiny_store.path), capsys, "no such directory")
    expect_error(run_cli(tiny_store.path, tiny_store.path, "--device", "cuda:7"), capsys, "device")
