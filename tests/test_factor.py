import pytest
import torch

from avdd.errors import AvddError
from avdd.training.factor import expand_factor, expand_tiles


def test_constant_quadrants_expand_to_constant_samples_in_tile_major_order():
    # sample n has quadrant values 10n + (0, 1, 2, 3) (top-left, top-right, bottom-left, bottom-right)
    quadrants = torch.arange(2)[:, None] * 10 + torch.arange(4)[None, :]
    x = quadrants.view(2, 1, 2, 2).float().repeat_interleave(3, dim=2).repeat_interleave(5, dim=3)  # (2,1,6,10)
    out = expand_tiles(x)
    assert out.shape == (8, 1, 6, 10)
    expected = quadrants.T.reshape(-1).float()  # tile-major: both samples' tile 0, then tile 1, ...
    torch.testing.assert_close(out, expected.view(8, 1, 1, 1).expand_as(out))


def test_bilinear_upsampling_matches_a_hand_computation():
    a, b, c, d = 1.0, 2.0, 5.0, 7.0
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = torch.tensor([[a, b], [c, d]])  # top-left tile; the rest zero
    tile = expand_tiles(x)[0, 0]
    # x2 bilinear with half-pixel centres: rows/cols blend as 1, .75/.25, .25/.75, 1 (edges clamp)
    w = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    torch.testing.assert_close(tile, w @ torch.tensor([[a, b], [c, d]]) @ w.T)


def test_labels_repeat_with_the_tiles_for_every_modality():
    inputs = {"audio": torch.randn(3, 1, 8, 4), "frame": torch.randn(3, 3, 6, 6)}
    labels = torch.tensor([0, 2, 1])
    out, out_labels = expand_factor(inputs, labels)
    assert out["audio"].shape == (12, 1, 8, 4) and out["frame"].shape == (12, 3, 6, 6)
    assert out_labels.tolist() == [0, 2, 1] * 4


def test_odd_sides_are_refused():
    with pytest.raises(AvddError, match="divisible"):
        expand_tiles(torch.zeros(1, 1, 5, 4))
