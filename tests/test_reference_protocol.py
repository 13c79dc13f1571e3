"""The ``reference`` evaluation protocol against the authors' code (github sakshamsingh1/AVDD, commit 165d032).

The expected numbers were computed by instantiating the authors' networks from that checkout
(``nets/audio_net.py`` ConvNet(1, (128, 56)), ``nets/vision_net.py`` ConvNet_v(3, (224, 224)),
``nets/cls_net.py`` Classifier_Ensemble(10) built by ``nets/__init__.py``) and printing each layer's
output shape and ``sum(p.numel() for p in net.parameters())``; they are hard-coded here.
"""

from dataclasses import replace

import pytest
import torch
from torch import nn

from avdd.data.augment import DSA, DSAParams
from avdd.errors import AvddError
from avdd.models.convnet import ConvNet, layout_overrides, reference_config
from avdd.models.fusion import build_classifier
from avdd.training.inputs import network_inputs
from avdd.training.protocol import PROTOCOLS, EvalConfig, decays_after, train_network
from conftest import rename_modalities
from test_augment import batch, draw_of

AUDIO, FRAME = (1, 128, 56), (3, 224, 224)
# (module, output H x W) of every conv and pool of the authors' audio net on 1x128x56: the first conv
# pads by 3 (132x60), the last layer ends in AdaptiveAvgPool2d((7, 7)) on 33x15
AUTHORS_AUDIO = [("Conv2d", (132, 60)), ("AvgPool2d", (66, 30)), ("Conv2d", (66, 30)), ("AvgPool2d", (33, 15)),
                 ("Conv2d", (33, 15)), ("AdaptiveAvgPool2d", (7, 7))]
AUTHORS_FRAME = [("Conv2d", (224, 224)), ("AvgPool2d", (112, 112)), ("Conv2d", (112, 112)), ("AvgPool2d", (56, 56)),
                 ("Conv2d", (56, 56)), ("AvgPool2d", (28, 28)), ("Conv2d", (28, 28)), ("AvgPool2d", (14, 14)),
                 ("Conv2d", (14, 14)), ("AvgPool2d", (7, 7))]
AUTHORS_AUDIO_PARAMETERS = 297_216
AUTHORS_FRAME_FEATURE_PARAMETERS = 595_200  # ConvNet_v.features; their ConvNet_v also holds a `sample_layer`
# Linear(6272, 4096) (25,694,208 more, 26,289,408 in all) that evaluation and DM never call
AUTHORS_HEAD_PARAMETERS = 125_460  # two Linear(6272, 10)


def encoder(shape, layout: str) -> ConvNet:
    return ConvNet(reference_config(shape, layout))


def stages(net: ConvNet, shape) -> list[tuple[str, tuple[int, int]]]:
    """(module type, output H x W) after every conv and pool, the grid pool included."""
    seen, x = [], torch.zeros(1, *shape)
    with torch.no_grad():
        for layer in [*net.features, net.grid_pool]:
            x = layer(x)
            if isinstance(layer, (nn.Conv2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                seen.append((type(layer).__name__, tuple(x.shape[2:])))
    return seen


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_reference_audio_encoder_has_the_authors_layers_and_parameter_count():
    net = encoder(AUDIO, "reference")
    assert stages(net, AUDIO) == AUTHORS_AUDIO
    assert count(net) == AUTHORS_AUDIO_PARAMETERS
    assert net(torch.zeros(2, *AUDIO)).shape == (2, 6272)
    # the clean layout: same parameters, but pad 1 and a 2x2 pool in every layer (16x7 before the grid pool)
    assert count(encoder(AUDIO, "clean")) == AUTHORS_AUDIO_PARAMETERS
    assert stages(encoder(AUDIO, "clean"), AUDIO)[-2:] == [("AvgPool2d", (16, 7)), ("AdaptiveAvgPool2d", (7, 7))]


def test_reference_frame_encoder_has_the_authors_layers_and_parameter_count():
    net = encoder(FRAME, "reference")
    # the last 2x2 pool is the grid pool here (14x14 -> 7x7 is the same average)
    assert [(n if s != (7, 7) else "AvgPool2d", s) for n, s in stages(net, FRAME)] == AUTHORS_FRAME
    assert count(net) == AUTHORS_FRAME_FEATURE_PARAMETERS
    frames = torch.randn(2, *FRAME, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # on frames the two layouts are the same function
        clean = encoder(FRAME, "clean")
        clean.load_state_dict(net.state_dict())
        torch.testing.assert_close(net(frames), clean(frames))


@torch.no_grad()
def test_reference_head_is_two_linear_layers_with_weights_drawn_from_n_0_1e_4():
    shapes = {"audio": AUDIO, "frame": (3, 28, 28)}
    model = build_classifier(shapes, 10, generator=torch.Generator().manual_seed(0), layout="reference",
                             head_init_std=1e-4)
    assert count(model.head) == AUTHORS_HEAD_PARAMETERS
    for layer in model.head.classifiers.values():
        assert 0.8e-4 < float(layer.weight.std()) < 1.2e-4
        bound = 1 / 6272**0.5  # biases keep PyTorch's default, as in the authors' weights_init
        assert float(layer.bias.abs().max()) <= bound and float(layer.bias.std()) > 0.3 * bound
    default = build_classifier(shapes, 10, generator=torch.Generator().manual_seed(0), layout="reference")
    assert float(default.head.classifiers["audio"].weight.std()) > 10 * 1e-4
    for a, b in zip(model.encoders.parameters(), default.encoders.parameters(), strict=True):
        assert torch.equal(a, b)  # the head's draw comes after the encoders'


@pytest.mark.parametrize(("protocol", "rates"), [
    ("reference", [1.0] * 11 + [0.1] * 10 + [0.01] * 9),  # the authors: decay after epoch indices 10 and 20
    ("clean", [1.0] * 10 + [0.1] * 10 + [0.01] * 10),
])
def test_learning_rate_schedule(protocol, rates):
    config = EvalConfig(protocol=protocol, epochs=30, lr_step=10, batch_size=4)
    assert [decays_after(e, config) for e in range(29)] == [
        rates[e + 1] != rates[e] for e in range(29)]
    model = Named(nn.Linear(2, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    seen: list[float] = []  # on_epoch runs after the epoch's decay: the rate the next epoch trains with
    train_network(model, {"x": torch.randn(4, 2)}, torch.tensor([0, 1, 0, 1]), replace(config, dsa=False),
                  {"batches": torch.Generator().manual_seed(0)}, optimizer=optimizer,
                  on_epoch=lambda loss: seen.append(optimizer.param_groups[0]["lr"]))
    torch.testing.assert_close(torch.tensor([1.0, *seen[:-1]]), torch.tensor(rates))


class Named(nn.Module):
    """A linear layer taking and giving named tensors, as train_network's classifiers do."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": self.layer(inputs["x"])}


def test_reference_feeds_audio_in_stored_units_and_frames_normalised(tiny_store):
    split = tiny_store.split("train")
    index = torch.arange(4).numpy()
    raw_modalities = PROTOCOLS["reference"].raw_modalities(tiny_store, ("audio", "frame"))
    assert raw_modalities == ("audio",)  # the spectrograms, by kind
    raw = network_inputs(split, index, ("audio", "frame"), torch.device("cpu"), raw_modalities)
    clean = network_inputs(split, index, ("audio", "frame"), torch.device("cpu"))
    stored = torch.from_numpy(split.arrays["audio"][:4].astype("float32"))
    assert torch.equal(raw["audio"], stored)
    assert torch.equal(raw["frame"], clean["frame"])
    torch.testing.assert_close(clean["audio"], tiny_store.modalities["audio"].normalise(stored))


def test_reference_feeds_raw_the_spectrograms_whatever_their_name(tiny_store, tmp_path):
    renamed = rename_modalities(tiny_store, {"audio": "sound", "frame": "rgb"}, tmp_path / "renamed")
    assert PROTOCOLS["reference"].raw_modalities(renamed, ("rgb", "sound")) == ("sound",)
    assert PROTOCOLS["clean"].raw_modalities(renamed, ("rgb", "sound")) == ()


def test_warp_conventions_agree_on_square_inputs_and_differ_on_a_rotated_spectrogram():
    true, false = DSA(), DSA(params=DSAParams(align_corners=False))
    draw = draw_of("rotate", rotate=0.9)
    square, wide = batch(2, (3, 28, 28)), batch(2, AUDIO)
    torch.testing.assert_close(true.apply(square, draw), false.apply(square, draw), atol=1e-4, rtol=0)
    assert (true.apply(wide, draw) - false.apply(wide, draw)).abs().max() > 0.1
    scale = draw_of("scale", scale_x=0.1, scale_y=0.8)
    torch.testing.assert_close(true.apply(wide, scale), false.apply(wide, scale), atol=1e-4, rtol=0)


def test_protocol_is_checked_and_saved():
    assert EvalConfig().protocol == "clean"  # the library default: results unchanged by the reference quirks
    with pytest.raises(AvddError, match="reference"):
        EvalConfig(protocol="authors")
    config = EvalConfig(protocol="reference")
    assert EvalConfig.from_json(config.to_json()) == config
    with pytest.raises(AvddError, match="layout"):
        layout_overrides(AUDIO, "mnist")
