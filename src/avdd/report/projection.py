"""2-D projections of embeddings: PCA (torch SVD) and exact t-SNE (a small torch implementation)."""

from __future__ import annotations

import torch

from avdd.errors import AvddError
from avdd.seeding import generator

PROJECTIONS = ("pca", "tsne")


def pca_fit(x: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and the top ``k`` principal axes (rows) of ``x`` (N, D), from the eigenvectors of the
    smaller of the Gram (N×N) and covariance (D×D) matrices — embeddings have D in the thousands.
    Each axis's sign is fixed so its largest loading is positive (eigenvector signs are arbitrary)."""
    x = x.double()
    mean = x.mean(dim=0)
    centred = x - mean
    if len(x) < x.shape[1]:
        vectors = torch.linalg.eigh(centred @ centred.T)[1]
        axes = (centred.T @ vectors[:, -k:].flip(1)).T
        axes = axes / axes.norm(dim=1, keepdim=True).clamp_min(1e-300)
    else:
        axes = torch.linalg.eigh(centred.T @ centred)[1][:, -k:].flip(1).T
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    return mean, axes * signs


def _affinities(x: torch.Tensor, perplexity: float, steps: int = 64) -> torch.Tensor:
    """Symmetrised t-SNE input affinities, each row's Gaussian width found by bisection on its
    entropy (distances rescaled to mean 1 first, so the search starts in range)."""
    d2 = torch.cdist(x, x).pow(2)
    d2 = d2 / d2.mean().clamp_min(1e-12)
    n = len(x)
    target = torch.log(torch.tensor(min(perplexity, (n - 1) / 3), dtype=x.dtype))
    beta, low, high = torch.ones(n, dtype=x.dtype), torch.zeros(n, dtype=x.dtype), torch.full((n,), float("inf"))
    eye = torch.eye(n, dtype=torch.bool)
    for _ in range(steps):
        p = torch.exp(-d2 * beta[:, None]).masked_fill(eye, 0.0)
        total = p.sum(dim=1).clamp_min(1e-300)
        entropy = torch.log(total) + beta * (d2 * p).sum(dim=1) / total
        too_flat = entropy > target  # too wide a Gaussian: sharpen (larger beta)
        low = torch.where(too_flat, beta, low)
        high = torch.where(too_flat, high, beta)
        beta = torch.where(torch.isinf(high), beta * 2, (low + high) / 2)
    p = p / total[:, None]
    return ((p + p.T) / (2 * n)).clamp_min(1e-12)


def tsne(x: torch.Tensor, perplexity: float = 30.0, iterations: int = 750, seed: int = 0) -> torch.Tensor:
    """Exact t-SNE (van der Maaten & Hinton 2008) of ``x`` (N, D) -> (N, 2): early exaggeration 12
    for 250 iterations, momentum 0.5 then 0.8, adaptive gains; O(N²) memory, fine for a few thousand."""
    x = x.double()
    n = len(x)
    p = _affinities(x, perplexity)
    y = torch.randn(n, 2, generator=generator(seed, "tsne"), dtype=torch.float64) * 1e-4
    update, gains = torch.zeros_like(y), torch.ones_like(y)
    rate = max(n / 12 / 4, 50.0)  # the "auto" learning rate of Belkina et al. 2019
    for step in range(iterations):
        early = step < 250
        kernel = 1.0 / (1.0 + torch.cdist(y, y).pow(2))
        kernel.fill_diagonal_(0.0)
        q = (kernel / kernel.sum()).clamp_min(1e-12)
        weights = ((12.0 if early else 1.0) * p - q) * kernel
        grad = 4.0 * (weights.sum(dim=1, keepdim=True) * y - weights @ y)
        same = torch.sign(grad) == torch.sign(update)
        gains = torch.where(same, gains * 0.8, gains + 0.2).clamp_min(0.01)
        update = (0.5 if early else 0.8) * update - rate * gains * grad
        y = y + update
    return (y - y.mean(dim=0)).float()


def project(real: torch.Tensor, synthetic: torch.Tensor, method: str = "pca",
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D coordinates of real and synthetic embeddings: PCA axes fitted on the real ones (the
    synthetic samples shown in the real data's frame), or t-SNE of both together."""
    if method == "pca":
        mean, axes = pca_fit(real)
        return ((real.double() - mean) @ axes.T).float(), ((synthetic.double() - mean) @ axes.T).float()
    if method == "tsne":
        both = tsne(torch.cat([real, synthetic]), seed=seed)
        return both[: len(real)], both[len(real):]
    raise AvddError(f"unknown projection {method!r}; known: {', '.join(PROJECTIONS)}")
