import pytest
import torch

from avdd.data.augment import COL, COLUMNS, DSA, OPS, Draw
from avdd.errors import AvddError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int, shape=(3, 12, 10), seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=gen(seed))


def draw_of(kind: str, **values: float) -> Draw:
    """A single draw of one op with chosen uniforms (the rest 0.5)."""
    uniforms = torch.full((1, len(COLUMNS)), 0.5)
    for name, v in values.items():
        uniforms[0, COL[name]] = v
    return Draw(torch.tensor([list(OPS).index(kind)]), uniforms)


def test_deterministic_under_a_seed():
    dsa, x = DSA(), batch(8)
    assert torch.equal(dsa(x, gen(3)), dsa(x, gen(3)))
    assert not torch.equal(dsa(x, gen(3)), dsa(x, gen(4)))


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("shape", [(1, 128, 56), (3, 28, 28), (1, 28, 28)], ids=["spectrogram", "rgb", "gray"])
def test_a_siamese_draw_is_identical_across_two_batches(op, shape):
    dsa = DSA(op)
    sample = batch(1, shape)
    real, syn = sample.expand(6, *shape), sample.expand(2, *shape)
    for seed in range(4):  # several draws, so flips and crops are exercised both ways
        draw = dsa.draw(1, gen(seed))
        a, b = dsa.apply(real, draw), dsa.apply(syn, draw)
        assert a.shape == real.shape and b.shape == syn.shape
        assert torch.equal(a, a[:1].expand_as(a))  # one transform for the whole batch
        torch.testing.assert_close(a[:2], b)


def test_per_sample_draws_differ_between_samples():
    dsa = DSA("rotate")
    out = dsa(batch(1).expand(4, -1, -1, -1), gen(0))
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("op", list(OPS))
def test_gradients_reach_the_input(op):
    x = batch(4).requires_grad_()
    weights = batch(4, seed=1)
    (DSA(op)(x, gen(0)) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_one_draw_per_chunk_equals_separate_siamese_draws():
    dsa = DSA()
    chunks = [3, 1, 4, 2]
    x = batch(sum(chunks))
    draw = dsa.draw(len(chunks), gen(7))
    together = dsa.apply(x, draw, chunks=chunks)
    assert len(set(draw.kinds.tolist())) > 1  # this seed mixes ops, so regrouping is exercised
    start = 0
    for g, n in enumerate(chunks):
        alone = dsa.apply(x[start : start + n], Draw(draw.kinds[g : g + 1], draw.uniforms[g : g + 1]))
        torch.testing.assert_close(together[start : start + n], alone)
        start += n


def test_ops_do_what_they_say():
    dsa, x = DSA(), batch(2, (1, 8, 8))
    torch.testing.assert_close(dsa.apply(x, draw_of("flip", flip=0.1)), x.flip(3))
    torch.testing.assert_close(dsa.apply(x, draw_of("flip", flip=0.9)), x)
    # crop on 8 px: shift range ±1; u=0.9 -> +1: output pixel j is input pixel j+1, zero past the edge
    shifted = dsa.apply(x, draw_of("crop", crop_x=0.9, crop_y=0.5))
    torch.testing.assert_close(shifted[..., :-1], x[..., 1:])
    assert torch.all(shifted[..., -1] == 0)
    torch.testing.assert_close(dsa.apply(x, draw_of("rotate", rotate=0.5)), x, atol=1e-5, rtol=0)
    cut = dsa.apply(x, draw_of("cutout", cutout_x=0.5, cutout_y=0.5))
    assert int((cut == 0).sum()) == 2 * 4 * 4  # a 4x4 square per sample
    bright = dsa.apply(x, draw_of("color", brightness=1.0, saturation=0.5, contrast=0.5))
    torch.testing.assert_close(bright, x + 0.5)  # saturation x1, contrast x1, brightness +0.5


def test_unknown_strategy():
    with pytest.raises(AvddError, match="color"):
        DSA("color_blur")
