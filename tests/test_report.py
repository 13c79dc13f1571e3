"""Figures, projections, listening and the HTML report."""

import json
import struct
import wave

import numpy as np
import pytest
import torch

import avdd.experiments.runner as runner
from avdd.cli import main
from avdd.data.audio import SAMPLE_RATE, SPECTROGRAM_SHAPE, clip_to_spectrogram, read_wav
from avdd.data.store import IMAGE, SPECTROGRAM, ModalitySpec, open_store, write_store
from avdd.distill.api import distill
from avdd.distill.result import SyntheticSet, save_synthetic
from avdd.errors import AvddError
from avdd.experiments.config import resolve
from avdd.experiments.runner import run_experiment
from avdd.report.build import REPORT, build_report, describe
from avdd.report.figures import DPI, accuracy_figure, class_grid, grid_inches, loss_figure, projection_figure
from avdd.report.projection import project
from avdd.report.samples import training_samples, view
from avdd.report.sonify import write_clips
from conftest import make_tiny_store, rename_modalities


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


SPECS = {
    "audio": ModalitySpec(kind=SPECTROGRAM, shape=SPECTROGRAM_SHAPE, dtype="float16", mean=(-68.6,), std=(37.3,)),
    "frame": ModalitySpec(kind=IMAGE, shape=(1, 28, 28), dtype="uint8", mean=(0.13,), std=(0.31,), scale=1 / 255),
}


@pytest.fixture(scope="module")
def spoken(data_root, tmp_path_factory):
    """A small real store in the front end's format: FSDD digits 0 and 1, 4 train + 2 test each."""
    rng = np.random.default_rng(0)
    splits = {}
    for split, takes in (("train", range(5, 9)), ("test", range(0, 2))):
        paths = [data_root / "fsdd" / "recordings" / f"{d}_george_{k}.wav" for d in (0, 1) for k in takes]
        audio = torch.stack([clip_to_spectrogram(*read_wav(p)) for p in paths]).numpy().astype(np.float16)
        labels = np.repeat([0, 1], len(takes))
        frames = rng.integers(0, 256, (len(paths), 1, 28, 28), dtype=np.uint8)
        splits[split] = {"labels": labels, "audio": audio, "frame": frames}
    return write_store(tmp_path_factory.mktemp("spoken") / "store", name="spoken", class_names=["zero", "one"],
                       modalities=SPECS, splits=splits)


@pytest.fixture(scope="module")
def factorised(spoken, tmp_path_factory):
    """A factorised 'distilled' set (one stored sample per class) with a loss and evaluation log."""
    split = spoken.split("train")
    index = [int(split.class_indices[c][0]) for c in range(2)]
    data = {m: torch.from_numpy(np.asarray(split.arrays[m][index], dtype=np.float32)) for m in SPECS}
    log = {"losses": [{"iteration": i, "base": 10.0 / i, "joint": 5.0 / i, "total": 15.0 / i} for i in range(1, 6)],
           "evaluations": [{"iteration": i, "mean": 0.5 + 0.05 * i, "std": 0.01, "runs": [0.5]} for i in (0, 5)]}
    synthetic = SyntheticSet(data, torch.tensor([0, 1]), factor=2, log=log)
    return save_synthetic(synthetic, tmp_path_factory.mktemp("sets") / "avdd-like", spoken,
                          provenance={"method": "avdd", "ipc": 1, "seed": 0, "modalities": ["audio", "frame"]})


def test_training_samples_decode_the_factor_into_four_per_stored_sample(factorised):
    samples = training_samples(factorised)
    assert samples.class_names == ["zero", "one"]
    assert [len(s["audio"]) for s in samples.samples] == [4, 4]
    assert samples.samples[0]["frame"].shape == (4, 1, 28, 28)
    assert [len(s["audio"]) for s in training_samples(factorised, max_per_class=3).samples] == [3, 3]


def test_training_samples_of_a_factor_per_modality_are_its_decoded_pairs(factorised, spoken, tmp_path):
    stored = {m: torch.tensor(factorised.split("train").arrays[m]) for m in SPECS}
    per_modality = save_synthetic(SyntheticSet(stored, torch.tensor([0, 1]), factor={"audio": 4, "frame": 2}),
                                  tmp_path / "set", spoken, provenance={"method": "avdd", "ipc": 1, "seed": 0})
    samples = training_samples(per_modality)
    assert [len(s["audio"]) for s in samples.samples] == [16, 16] == [len(s["frame"]) for s in samples.samples]
    torch.testing.assert_close(samples.samples[1]["frame"][4:8], samples.samples[1]["frame"][:4])  # in turn
    assert [len(s["frame"]) for s in training_samples(per_modality, max_per_class=5).samples] == [5, 5]


def test_class_grid_has_the_expected_size(tiny_store, tmp_path):
    samples = training_samples(tiny_store, max_per_class=5)
    for modality in ("audio", "frame"):
        path = class_grid(samples, tiny_store, modality, tmp_path / f"{modality}.png", "tiny")
        width, height = grid_inches(3, 5)
        assert png_size(path) == (round(width * DPI), round(height * DPI))


def test_loss_and_accuracy_figures(factorised, tmp_path):
    log = json.loads((factorised.path / "distill_log.json").read_text())
    assert png_size(loss_figure(log, tmp_path / "l.png", "losses")) == (700, 400)
    assert png_size(accuracy_figure(log, tmp_path / "a.png", "accuracy")) == (600, 400)
    assert loss_figure({}, tmp_path / "none.png", "x") is None
    assert accuracy_figure({"losses": log["losses"]}, tmp_path / "none.png", "x") is None
    assert not (tmp_path / "none.png").exists()


def test_projection_figure_size(tmp_path):
    xy, labels = torch.randn(20, 2), torch.arange(20) % 3
    points = {"audio": (xy, labels, xy[:3], labels[:3]), "frame": (xy, labels, xy[:3], labels[:3])}
    assert png_size(projection_figure(points, ["a", "b", "c"], tmp_path / "p.png", "pca")) == (1000, 540)


def clusters(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well-separated Gaussian clusters of 30 points in 40 dimensions, and their labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(30)
    return (torch.randn(3, 40, generator=g) * 10)[labels] + torch.randn(90, 40, generator=g), labels


def neighbours_of_the_same_class(xy: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of each point's 5 nearest 2-D neighbours that have its class."""
    d = torch.cdist(xy, xy).fill_diagonal_(float("inf"))
    return float((labels[d.topk(5, largest=False).indices] == labels[:, None]).float().mean())


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_keeps_separated_classes_apart(method):
    x, labels = clusters()
    real, synthetic = project(x[:84], x[84:], method=method)
    assert real.shape == (84, 2) and synthetic.shape == (6, 2) and real.dtype == torch.float32
    assert neighbours_of_the_same_class(torch.cat([real, synthetic]), labels) > 0.95
    again = project(x[:84], x[84:], method=method)
    assert torch.equal(again[0], real) and torch.equal(again[1], synthetic)  # the same figure every time


def test_pca_shows_the_synthetic_samples_in_the_real_samples_frame():
    x, _ = clusters()
    real, synthetic = project(x, x[:4])
    torch.testing.assert_close(synthetic, real[:4])  # axes fitted on the real samples only
    assert real[:, 0].var() > real[:, 1].var() > 1.0  # the first axis carries the most variance


def test_unknown_projections_are_refused():
    x, _ = clusters()
    with pytest.raises(AvddError, match="unknown projection 'umap'"):
        project(x, x[:3], "umap")


def test_listen_writes_valid_wavs_for_every_decoded_sample(factorised, tmp_path, capsys):
    assert main(["listen", str(factorised.path), "--out", str(tmp_path / "wav"), "--iterations", "8"]) == 0
    assert "8 clips (11000 Hz" in capsys.readouterr().out
    files = sorted((tmp_path / "wav").glob("*.wav"))
    assert [f.name for f in files[:5]] == ["000-zero-0.wav", "000-zero-1.wav", "000-zero-2.wav", "000-zero-3.wav",
                                           "001-one-0.wav"]
    for f in files:
        with wave.open(str(f)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, SAMPLE_RATE,
                                                                                              SAMPLE_RATE)
        samples, _ = read_wav(f)
        assert samples.abs().max() > 0.001  # not silence: the spoken digits are in there


def test_listen_refuses_what_is_not_a_front_end_spectrogram(tiny_store, tmp_path):
    with pytest.raises(AvddError, match="not a front-end log-mel spectrogram"):
        write_clips(tiny_store, tmp_path)


def test_report_of_a_set_has_figures_and_a_player_per_spectrogram(factorised, tmp_path):
    page = build_report(factorised.path, tmp_path / "r", max_per_class=2, log=lambda line: None).read_text()
    folder = tmp_path / "r" / "sets" / "avdd-like"
    for name in ("audio_grid.png", "frame_grid.png", "projection.png", "losses.png", "accuracy.png"):
        assert png_size(folder / name)[0] > 100 and f"sets/avdd-like/{name}" in page
    assert page.count("<audio ") == 4 and len(list((folder / "audio").glob("*.wav"))) == 4
    assert page.count("<img ") == 5 + 4 * 2  # the figures, then a frame and a spectrogram per sample
    for src in [part.split("'")[0] for part in page.split("src='")[1:]]:
        assert (tmp_path / "r" / src).is_file(), src


def test_report_of_a_run_has_its_table_and_the_sets_of_the_first_seed(spoken, tmp_path, monkeypatch):
    def fake_recognition(train, test, exp, config, device, progress):
        return {"accuracy": {"mean": 0.5, "std": 0.0, "runs": [0.5]}}, {}

    monkeypatch.setitem(runner.EVALUATIONS, "recognition", fake_recognition)
    doc = {"dataset": "spoken", "datasets": {"spoken": {"data": str(spoken.path), "schedule": "s"}},
           "schedules": {"s": {"seeds": [0, 1]}}, "grid": {"method": ["random"], "ipc": [1, 2]},
           "whole_data": ["audio+frame"]}
    run_experiment(resolve(doc), tmp_path / "run", progress=False, log=lambda line: None)
    assert main(["report", str(tmp_path / "run"), "--max-per-class", "1", "-q"]) == 0
    page = (tmp_path / "run" / "report" / REPORT).read_text()
    assert "<table class='results'>" in page and "whole data" in page
    assert page.count("<h2 id='random-ipc") == 2 and "-s0-" in page and "-s1-" not in page
    assert page.count("<audio ") == 2 * 2


def test_a_set_without_its_source_still_reports(spoken, tmp_path):
    moved = distill(spoken.path, tmp_path / "set", "random", modalities=("audio",), ipc=1, progress=False)
    meta = json.loads((moved.path / "meta.json").read_text())
    meta["provenance"]["source_dataset"]["path"] = str(tmp_path / "gone")
    (moved.path / "meta.json").write_text(json.dumps(meta))
    page = build_report(open_store(moved.path).path, tmp_path / "r", log=lambda line: None).read_text()
    assert "no projection:" in page and page.count("<audio ") == 2


@pytest.fixture(scope="module")
def renamed(spoken, tmp_path_factory):
    """``spoken`` with its spectrograms called "sound" and its frames "rgb": the kinds say what they are."""
    return rename_modalities(spoken, {"audio": "sound", "frame": "rgb"}, tmp_path_factory.mktemp("renamed") / "store")


def test_a_store_is_reported_and_heard_by_its_kinds_not_its_names(spoken, renamed, tmp_path):
    for store, folder in ((spoken, "before"), (renamed, "after")):
        build_report(store.path, tmp_path / folder, max_per_class=1, log=lambda line: None)
    before, after = tmp_path / "before" / "sets" / "store", tmp_path / "after" / "sets" / "store"
    page = (tmp_path / "after" / REPORT).read_text()
    assert page.count("<audio ") == 2 and page.count("<img class='spectrogram'") == 2
    assert page.count("<img class='image'") == 2 and "sets/store/sound_grid.png" in page
    for old, new in (("audio", "sound"), ("frame", "rgb")):  # drawn exactly as under the old names
        thumb = (after / "thumbs" / f"001-0-{new}.png").read_bytes()
        assert thumb == (before / "thumbs" / f"001-0-{old}.png").read_bytes()
    sounds = sorted(p.name for p in (after / "audio").glob("*.wav"))
    assert sounds == ["000-zero-0.wav", "001-one-0.wav"]
    assert all((after / "audio" / f).read_bytes() == (before / "audio" / f).read_bytes() for f in sounds)
    sample = torch.zeros(1, 28, 28)
    assert view(renamed.modalities["rgb"], sample)[1]["cmap"] == "gray"
    assert view(renamed.modalities["sound"], torch.zeros(SPECTROGRAM_SHAPE))[1]["cmap"] == "magma"


def test_listen_needs_one_spectrogram_modality(spoken, tmp_path):
    frames = {"labels": np.arange(2), "rgb": np.zeros((2, 1, 28, 28), np.uint8)}
    silent = write_store(tmp_path / "silent", name="silent", class_names=["zero", "one"],
                         modalities={"rgb": SPECS["frame"]}, splits={"train": frames})
    with pytest.raises(AvddError, match=r"no spectrogram modality to listen to \(it has: rgb \(image\)\)"):
        write_clips(silent, tmp_path / "wav")
    audio = np.asarray(spoken.split("test").arrays["audio"][:2])
    twice = write_store(tmp_path / "twice", name="twice", class_names=["zero", "one"],
                        modalities={"left": SPECS["audio"], "right": SPECS["audio"]},
                        splits={"train": {"labels": np.arange(2), "left": audio, "right": audio}})
    with pytest.raises(AvddError, match="more than one spectrogram modality"):
        write_clips(twice, tmp_path / "wav")


@pytest.mark.parametrize(("factor", "said"), [
    (1, ""), (2, ", factorised (4 tiles per stored sample)"),
    ({"audio": 4, "frame": 2}, ", factorised (16 tiles per stored sample: audio 4, frame 2 per side)")])
def test_a_sets_description_says_its_factor(tmp_path, factor, said):
    store = make_tiny_store(tmp_path / "set", splits=("train",),
                            provenance={"method": "avdd", "ipc": 1, "seed": 0, "factor": factor})
    assert describe(store) == f"avdd, IPC 1, audio+frame, seed 0{said}"
