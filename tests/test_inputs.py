import numpy as np
import torch

from avdd.training.inputs import load_batch


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

