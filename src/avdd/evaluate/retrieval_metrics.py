"""Cross-modal retrieval metrics: the rank of each query's true partner, R@K and median rank.

Query i's partner is target i. Similarity is cosine. Ties count against the query:
rank = 1 + number of other targets scoring ≥ the partner. A matrix product may round identical
targets' scores differently in the last bit (BLAS kernels order sums by column position), so
scores within ``TIE_TOLERANCE`` of the partner's count as ties. Queries are processed in chunks, so no
more than one (chunk × K) similarity block exists at a time (never more than one K × K matrix).
"""

from __future__ import annotations

import torch

TIE_TOLERANCE = 1e-12  # cosine similarities are computed in float64


def partner_ranks(queries: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """(K, d) queries and (K, d') … (K, d) targets -> (K,) int64 ranks (1 = partner ranked first)."""
    if queries.shape[0] != targets.shape[0]:
        raise ValueError(f"need as many queries as targets, got {queries.shape[0]} and {targets.shape[0]}")
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    t = torch.nn.functional.normalize(targets.double(), dim=1)
    ranks = []
    for start in range(0, q.shape[0], chunk):
        sims = q[start : start + chunk] @ t.T
        rows = torch.arange(sims.shape[0])
        partner = sims[rows, start + rows]
        at_least = (sims >= partner[:, None] - TIE_TOLERANCE).sum(dim=1)  # counts the partner itself once
        ranks.append(at_least)
    return torch.cat(ranks).long()


def retrieval_scores(ranks: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """{"r1", "r5", …: fraction of queries whose partner ranks ≤ K; "medr": median rank}."""
    scores = {f"r{k}": float((ranks <= k).double().mean()) for k in ks}
    scores["medr"] = float(ranks.double().median()) if ranks.numel() % 2 else float(ranks.double().quantile(0.5))
    return scores
