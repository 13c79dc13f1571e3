"""Distances between each class's real and synthetic embedding distributions beyond their means
(avdd-plus): squared MMD and a characteristic-function distance, for all classes at once.

Real embeddings come padded, (C, n, d) with a (C, n) mask, since a class may have fewer real
samples than ``--batch-real``; synthetic ones are (C, k, d), every row a sample. Both distances
measure embeddings in units of the class's median pairwise real distance (the median heuristic,
detached), so they do not depend on the embeddings' scale, which changes with the encoder's
width, depth and input. They are computed in float64: random ConvNet embeddings (width × 7²
dimensions) have norms far larger than the distances between them, and the squared distances
and the characteristic function's phases lose those differences in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Gaussian kernel widths relative to the class's median pairwise squared distance: one at the
# median heuristic and one each a factor 4 narrower and wider, for near and far structure
MMD_BANDWIDTHS = (0.25, 1.0, 4.0)


def sq_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(C, n, d), (C, m, d) -> (C, n, m) squared Euclidean distances."""
    cross = x @ y.transpose(1, 2)
    return ((x * x).sum(2)[:, :, None] + (y * y).sum(2)[:, None, :] - 2 * cross).clamp_min(0)


def median_sq_distance(real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(C,) per class: the median squared distance between two distinct real samples (detached;
    1 for a class with fewer than two, which then has no scale to measure)."""
    real = real.detach().double()
    n = real.shape[1]
    pairs = mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=real.device)
    distances = sq_distances(real, real).masked_fill(~pairs, float("nan"))
    median = distances.flatten(1).nanmedian(dim=1).values
    return median.nan_to_num(1.0).clamp_min(torch.finfo(torch.float64).tiny)


def normalised(real: torch.Tensor, mask: torch.Tensor, synthetic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides in float64, in units of the class's median pairwise real distance."""
    scale = median_sq_distance(real, mask).sqrt()[:, None, None]
    return real.double() / scale, synthetic.double() / scale


def _real_weights(mask: torch.Tensor) -> torch.Tensor:
    """(C, n) weights of the real samples in their class's empirical distribution (0: padding)."""
    weights = mask.double()
    return weights / weights.sum(1, keepdim=True).clamp_min(1)


def mmd2(real: torch.Tensor, mask: torch.Tensor, synthetic: torch.Tensor,
         bandwidths: Sequence[float] = MMD_BANDWIDTHS) -> torch.Tensor:
    """(C,) biased squared MMD between each class's real and synthetic embeddings, kernel
    Σ_b exp(−‖x − y‖² / (b · median)) over the relative ``bandwidths``."""
    real, synthetic = normalised(real, mask, synthetic)
    w = _real_weights(mask)
    v = torch.full(synthetic.shape[:2], 1 / synthetic.shape[1], dtype=torch.float64, device=synthetic.device)

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = sq_distances(x, y)
        return sum((torch.exp(-d / b) for b in bandwidths), torch.zeros_like(d))

    def mean(a: torch.Tensor, k: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # a^T K b per class
        return torch.einsum("cn,cnm,cm->c", a, k, b)

    return mean(w, kernel(real, real), w) + mean(v, kernel(synthetic, synthetic), v) \
        - 2 * mean(w, kernel(real, synthetic), v)


def cf_frequencies(generator: torch.Generator, count: int, dim: int, sigma: float) -> torch.Tensor:
    """(count, dim) frequencies t ~ N(0, σ² I), in float64 on the CPU."""
    return sigma * torch.randn(count, dim, generator=generator, dtype=torch.float64)


def cf_distance(real: torch.Tensor, mask: torch.Tensor, synthetic: torch.Tensor,
                frequencies: torch.Tensor) -> torch.Tensor:
    """(C,) mean over the frequencies t of |φ_real(t) − φ_syn(t)|², φ(t) = mean_j exp(i t·x_j)
    over each class's samples (cosine and sine parts: no complex numbers)."""
    real, synthetic = normalised(real, mask, synthetic)
    t = frequencies.to(real.device).T  # (d, K)
    w = _real_weights(mask)[:, :, None]
    real_phase, syn_phase = real @ t, synthetic @ t  # (C, n, K), (C, k, K)
    cos = (w * real_phase.cos()).sum(1) - syn_phase.cos().mean(1)
    sin = (w * real_phase.sin()).sum(1) - syn_phase.sin().mean(1)
    return (cos**2 + sin**2).mean(1)


def paired(real: Sequence[torch.Tensor], mask: torch.Tensor,
           synthetic: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's embeddings of every modality, concatenated (real, synthetic), each modality
    in its own median units so that neither dominates the joint distance by its scale."""
    sides = [normalised(r, mask, s) for r, s in zip(real, synthetic, strict=True)]
    return torch.cat([r for r, _ in sides], dim=2), torch.cat([s for _, s in sides], dim=2)
