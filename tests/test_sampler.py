import numpy as np
import torch

from avdd.data.sampler import ClassSampler, load_batch


def test_class_batches_hold_only_that_class(avdigits):
    split = avdigits.split("train")
    sampler = ClassSampler(split, ("audio", "frame"), generator=torch.Generator().manual_seed(0))
    for c in (0, 7):
        idx = sampler.indices(c, 16)
        assert len(set(idx.tolist())) == 16
        assert (split.labels[idx] == c).all()


def test_batches_are_normalised_on_the_device_in_the_requested_order(avdigits):
    split = avdigits.split("test")
    idx = np.array([3, 1, 2])
    batch = load_batch(split, idx, ("audio", "frame"), "cpu")
    frame_spec = avdigits.modalities["frame"]
    expected = (split.arrays["frame"][[3, 1, 2]].astype(np.float32) / 255 - frame_spec.mean[0]) / frame_spec.std[0]
    assert batch["frame"].dtype == torch.float32 and batch["frame"].shape == (3, 1, 28, 28)
    np.testing.assert_allclose(batch["frame"].numpy(), expected, rtol=1e-5, atol=1e-5)
    audio_spec = avdigits.modalities["audio"]
    expected_audio = (split.arrays["audio"][[3, 1, 2]].astype(np.float32) - audio_spec.mean[0]) / audio_spec.std[0]
    np.testing.assert_allclose(batch["audio"].numpy(), expected_audio, rtol=1e-5, atol=1e-5)


def test_sampler_is_reproducible_and_caps_at_class_size(avdigits):
    split = avdigits.split("test")

    def draw(seed):
        return ClassSampler(split, ("frame",), generator=torch.Generator().manual_seed(seed)).indices(4, 10)

    np.testing.assert_array_equal(draw(1), draw(1))
    assert not np.array_equal(draw(1), draw(2))
    everything = ClassSampler(split, ("frame",)).sample(4, 1000)
    assert everything["frame"].shape[0] == 30
