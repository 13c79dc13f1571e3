import pytest
import torch
from torch import nn

from avdd.errors import AvddError
from avdd.models.convnet import ENCODERS, NORMS, POOLINGS, ConvNet, ConvNetConfig, depth_for, reference_config


@pytest.mark.parametrize(
    ("shape", "depth"),
    [((1, 128, 56), 3), ((3, 224, 224), 5), ((1, 28, 28), 2), ((3, 28, 28), 2)],
    ids=["audio-reference", "frame-reference", "frame-avdigits", "frame-avdigits-rgb"],
)
def test_reference_encoders_emit_the_same_feature_size(shape, depth):
    config = reference_config(shape)
    assert config.depth == depth
    encoder = ENCODERS.get("convnet")(config)
    out = encoder(torch.randn(2, *shape))
    assert out.shape == (2, 128 * 7 * 7) == (2, encoder.feature_dim)
    assert torch.isfinite(out).all()


def test_depth_stops_before_the_map_goes_below_the_grid():
    assert depth_for((64, 64), grid=7) == 3  # 64 -> 32 -> 16 -> 8; 4 would be below 7
    assert depth_for((14, 14), grid=7) == 1
    assert depth_for((5, 5), grid=7) == 1  # always at least one layer


def test_instance_norm_is_groupnorm_with_one_group_per_channel():
    encoder = ConvNet(ConvNetConfig(in_channels=1, width=16, depth=2))
    norms = [m for m in encoder.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 2
    assert all(m.num_groups == m.num_channels == 16 and m.affine for m in norms)


@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_every_norm_and_pooling_builds(norm, pooling):
    config = ConvNetConfig(in_channels=3, width=8, depth=2, norm=norm, pooling=pooling, grid=3)
    out = ConvNet(config)(torch.randn(4, 3, 16, 16))
    assert out.shape == (4, 8 * 9)


def test_overrides_and_unknown_options():
    assert reference_config((1, 28, 28), width=32, grid=4).feature_dim == 32 * 16
    with pytest.raises(AvddError, match="instance"):
        ConvNet(ConvNetConfig(in_channels=1, norm="nope"))
    with pytest.raises(AvddError, match="convnet"):
        ENCODERS.get("resnet")
