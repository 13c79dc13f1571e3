import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avdd.errors import AvddError
from avdd.ranges import RANGES
from avdd.training.factor import (
    check_named,
    decoded_per_stored,
    expand_factor,
    expand_tiles,
    pack_tiles,
    tiles_per_side,
)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_constant_tiles_expand_to_constant_samples_in_tile_major_order(factor):
    # tile (i, j) of sample n holds the value 100 n + i * factor + j
    n, side = 2, (3, 5)
    values = torch.arange(n)[:, None] * 100 + torch.arange(factor * factor)[None, :]  # (n, factor²)
    x = values.view(n, 1, factor, factor).float()
    x = x.repeat_interleave(side[0], dim=2).repeat_interleave(side[1], dim=3)  # (n, 1, 3 factor, 5 factor)
    out = expand_tiles(x, factor)
    assert out.shape == (factor * factor * n, 1, side[0] * factor, side[1] * factor)
    expected = values.T.reshape(-1).float()  # tile-major: every sample's tile 0, then tile 1, ...
    torch.testing.assert_close(out, expected.view(-1, 1, 1, 1).expand_as(out))


def test_bilinear_upsampling_matches_a_hand_computation():
    a, b, c, d = 1.0, 2.0, 5.0, 7.0
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = torch.tensor([[a, b], [c, d]])  # top-left tile; the rest zero
    tile = expand_tiles(x, 2)[0, 0]
    # x2 bilinear with half-pixel centres: rows/cols blend as 1, .75/.25, .25/.75, 1 (edges clamp)
    w = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    torch.testing.assert_close(tile, w @ torch.tensor([[a, b], [c, d]]) @ w.T)


@pytest.mark.parametrize("factor", [2, 3])
def test_packed_tiles_decode_in_the_order_they_were_packed(factor):
    stored_n, h, w = 2, 4 * factor, 3 * factor
    x = torch.randn(factor * factor * stored_n, 3, h, w)  # tile-major, as expand_tiles outputs
    stored = pack_tiles(x, factor)
    assert stored.shape == (stored_n, 3, h, w)
    for k in range(factor * factor):  # slow: each tile of each stored sample, one at a time
        i, j = divmod(k, factor)
        for s in range(stored_n):
            tile = stored[s, :, i * 4 : (i + 1) * 4, j * 3 : (j + 1) * 3]
            torch.testing.assert_close(tile, F.avg_pool2d(x[k * stored_n + s], factor))
    shrunk = F.interpolate(x, size=(4, 3), mode="area")
    expected = F.interpolate(shrunk, size=(h, w), mode="bilinear", align_corners=False)
    torch.testing.assert_close(expand_tiles(stored, factor), expected)


def test_labels_repeat_with_the_tiles_for_every_modality():
    inputs = {"audio": torch.randn(3, 1, 8, 4), "frame": torch.randn(3, 3, 6, 6)}
    labels = torch.tensor([0, 2, 1])
    out, out_labels = expand_factor(inputs, labels, 2)
    assert out["audio"].shape == (12, 1, 8, 4) and out["frame"].shape == (12, 3, 6, 6)
    assert out_labels.tolist() == [0, 2, 1] * 4


@pytest.mark.parametrize(("factor", "shape"), [(2, (5, 4)), (3, (6, 4)), (4, (8, 6))])
def test_sides_the_factor_does_not_divide_are_refused(factor, shape):
    with pytest.raises(AvddError, match=f"factor {factor} needs sides divisible by {factor}"):
        expand_tiles(torch.zeros(1, 1, *shape), factor)
    with pytest.raises(AvddError, match=f"factor {factor} needs sides divisible by {factor}"):
        pack_tiles(torch.zeros(factor * factor, 1, *shape), factor)


def test_saved_factors_read_as_tiles_per_side_including_the_old_true_and_false():
    assert [tiles_per_side(v) for v in (True, False, None, 1, 2, 4)] == [2, 1, 1, 1, 2, 4]
    assert tiles_per_side({"audio": 4, "frame": 2}) == {"audio": 4, "frame": 2}
    for bad in (0, -2, 2.0, "2", {}, {"audio": 0}, {"audio": 2.0}, {"audio": True}, [2, 2]):
        with pytest.raises(AvddError, match="provenance.factor must be a positive integer or one per modality"):
            tiles_per_side(bad)


def constant_tiles(n: int, factor: int, side: tuple[int, int], offset: int) -> torch.Tensor:
    """n samples whose tile k of sample i is the constant offset + 100 i + k (tiles of ``side``)."""
    values = offset + torch.arange(n)[:, None] * 100 + torch.arange(factor * factor)[None, :]
    x = values.view(n, 1, factor, factor).float()
    return x.repeat_interleave(side[0], dim=2).repeat_interleave(side[1], dim=3)


@pytest.mark.parametrize(("factor", "count"), [({"audio": 4, "frame": 2}, 16), ({"audio": 3, "frame": 2}, 36),
                                               ({"audio": 1, "frame": 2}, 4), ({"audio": 2, "frame": 2}, 4)])
def test_a_factor_per_modality_decodes_pairs_of_each_modalitys_tiles_in_turn(factor, count):
    n = 2
    inputs = {"audio": constant_tiles(n, factor["audio"], (2, 3), 0),
              "frame": constant_tiles(n, factor["frame"], (3, 3), 10000)}
    assert decoded_per_stored(factor, inputs) == count
    out, labels = expand_factor(inputs, torch.tensor([7, 5]), factor)
    assert labels.tolist() == [7, 5] * count
    for m, x in out.items():
        assert x.shape == (count * n, *inputs[m].shape[1:])
    # slow: decoded sample t * n + i holds tile t mod factor² of each modality of stored sample i
    offsets = {"audio": 0, "frame": 10000}
    for t in range(count):
        for i in range(n):
            for m, x in out.items():
                expected = offsets[m] + 100 * i + t % factor[m] ** 2
                torch.testing.assert_close(x[t * n + i], torch.full_like(x[t * n + i], float(expected)))


def test_one_factor_for_all_decodes_as_the_same_factor_per_modality():
    inputs = {"audio": torch.randn(3, 1, 8, 4), "frame": torch.randn(3, 3, 6, 6)}
    labels = torch.tensor([0, 2, 1])
    one, one_labels = expand_factor(inputs, labels, 2)
    each, each_labels = expand_factor(inputs, labels, {"audio": 2, "frame": 2})
    assert torch.equal(one_labels, each_labels)
    for m in inputs:
        assert torch.equal(one[m], each[m])


def test_a_factor_per_modality_names_exactly_the_runs_modalities():
    check_named({"audio": 4, "frame": 2}, ["audio", "frame"])
    check_named(4, ["audio", "frame"])
    with pytest.raises(AvddError, match=r"^--factor gives no factor for frame; give one per modality \(audio, frame\)"):
        check_named({"audio": 4}, ["audio", "frame"])
    with pytest.raises(AvddError, match=r"^--factor names video, which this run does not have"):
        check_named({"audio": 4, "video": 2}, ["audio"])


def test_the_factors_range_takes_one_count_or_one_per_modality():
    spec = RANGES["factor"]
    assert all(spec.accepts(v) for v in (1, 4, {"audio": 4, "frame": 2}))
    assert not any(spec.accepts(v) for v in (0, True, 2.5, {}, {"audio": 0}, {"audio": "2"}, {1: 2}, [2]))


def test_a_saved_factor_of_numpy_integers_reads_as_plain_integers():
    assert tiles_per_side(np.int64(4)) == 4 and type(tiles_per_side(np.int64(4))) is int
    assert tiles_per_side({"audio": np.int64(4), "frame": 2}) == {"audio": 4, "frame": 2}
    assert all(type(f) is int for f in tiles_per_side({"audio": np.int64(4), "frame": 2}).values())
