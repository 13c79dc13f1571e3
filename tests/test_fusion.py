import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from avdd.errors import AvddError
from avdd.models.fusion import FUSION_HEADS, LinearHead, build_classifier, fusion_loss, probabilities

SHAPES = {"audio": (1, 16, 12), "frame": (3, 8, 8)}
SMALL = {"width": 8, "grid": 2}


def tiny_batch(n: int = 24, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    patterns = {m: torch.randn(classes, *s, generator=g) for m, s in SHAPES.items()}
    inputs = {m: patterns[m][labels] + 0.5 * torch.randn(n, *s, generator=g) for m, s in SHAPES.items()}
    return inputs, labels


@pytest.mark.parametrize("fusion", FUSION_HEADS.names())
def test_every_head_trains_with_falling_loss(fusion):
    model = build_classifier(SHAPES, 3, fusion=fusion, generator=torch.Generator().manual_seed(1), **SMALL)
    inputs, labels = tiny_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = fusion_loss(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert (model.predict_proba(inputs).argmax(1) == labels).float().mean() > 0.9


def test_ensemble_predicts_the_mean_of_per_modality_softmaxes():
    model = build_classifier(SHAPES, 3, fusion="ensemble", generator=torch.Generator().manual_seed(0), **SMALL)
    inputs, labels = tiny_batch(6)
    features = model.features(inputs)
    per_modality = [model.head.classifiers[m](features[m]).softmax(1) for m in SHAPES]
    torch.testing.assert_close(model.predict_proba(inputs), (per_modality[0] + per_modality[1]) / 2)
    logits = model(inputs)
    assert set(logits) == set(SHAPES)
    expected_loss = sum(F.cross_entropy(logits[m], labels) for m in SHAPES)
    torch.testing.assert_close(fusion_loss(logits, labels), expected_loss)


@pytest.mark.parametrize("fusion", FUSION_HEADS.names())
def test_one_modality_reduces_every_head_to_a_linear_classifier(fusion):
    model = build_classifier({"frame": SHAPES["frame"]}, 3, fusion=fusion, **SMALL)
    assert isinstance(model.head, LinearHead)
    x = {"frame": torch.randn(4, *SHAPES["frame"])}
    logits = model(x)["frame"]
    features = model.encoders["frame"](x["frame"])
    torch.testing.assert_close(logits, features @ model.head.classifier.weight.T + model.head.classifier.bias)
    torch.testing.assert_close(probabilities(model(x)), logits.softmax(1))


def test_initialisation_comes_from_the_generator_only():
    with torch.random.fork_rng():
        torch.manual_seed(1)  # a different global RNG state for each build must not matter
        a = build_classifier(SHAPES, 3, fusion="attention", generator=torch.Generator().manual_seed(5), **SMALL)
        torch.manual_seed(2)
        b = build_classifier(SHAPES, 3, fusion="attention", generator=torch.Generator().manual_seed(5), **SMALL)
    c = build_classifier(SHAPES, 3, fusion="attention", generator=torch.Generator().manual_seed(6), **SMALL)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), name
        if pa.numel() > 1 and pa.std() > 0:
            assert not torch.equal(pa, pc), name


def test_functional_call_over_the_whole_model():
    model = build_classifier(SHAPES, 3, fusion="concat", generator=torch.Generator().manual_seed(0), **SMALL)
    inputs, labels = tiny_batch(6)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    loss = fusion_loss(functional_call(model, params, (inputs,)), labels)
    torch.testing.assert_close(loss, fusion_loss(model(inputs), labels))
    grads = torch.autograd.grad(loss, list(params.values()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_unknown_head_lists_the_known_ones():
    with pytest.raises(AvddError, match="attention, concat, ensemble, sum"):
        build_classifier(SHAPES, 3, fusion="late")
