"""2-D projections of embeddings for the report: scikit-learn's PCA and t-SNE."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from avdd.errors import AvddError

PROJECTIONS = ("pca", "tsne")


def project(real: torch.Tensor, synthetic: torch.Tensor, method: str = "pca") -> tuple[torch.Tensor, torch.Tensor]:
    """2-D coordinates of real and synthetic embeddings: PCA axes fitted on the real ones (the
    synthetic samples shown in the real data's frame), or t-SNE of both together."""
    real_x, syn_x = real.double().numpy(), synthetic.double().numpy()
    if method == "pca":
        pca = PCA(n_components=2, svd_solver="full").fit(real_x)  # full SVD: exact and deterministic
        return torch.from_numpy(pca.transform(real_x)).float(), torch.from_numpy(pca.transform(syn_x)).float()
    if method == "tsne":
        both = np.concatenate([real_x, syn_x])
        # scikit-learn requires perplexity < N; a third of N keeps a small set's neighbourhoods local.
        # PCA initialisation (seeded: its solver is randomised) makes the layout the same every time.
        tsne = TSNE(n_components=2, perplexity=min(30.0, (len(both) - 1) / 3), init="pca", random_state=0)
        xy = torch.from_numpy(tsne.fit_transform(both)).float()
        return xy[: len(real)], xy[len(real):]
    raise AvddError(f"unknown projection {method!r}; known: {', '.join(PROJECTIONS)}")
