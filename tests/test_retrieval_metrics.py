import numpy as np
import torch

from avdd.evaluate.retrieval_metrics import partner_ranks, retrieval_scores


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((a / np.linalg.norm(a)) @ (b / np.linalg.norm(b)))


def brute_force_ranks(q: np.ndarray, t: np.ndarray) -> list[int]:
    ranks = []
    for i in range(len(q)):
        partner = cos(q[i], t[i])
        ranks.append(1 + sum(1 for j in range(len(t)) if j != i and cos(q[i], t[j]) >= partner))
    return ranks


def test_ranks_match_brute_force_with_ties():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(6, 3))  # targets repeat 6 directions exactly: many exact ties
    t = pool[rng.integers(0, 6, size=40)]
    q = rng.normal(size=(40, 3))
    q[:10] = t[:10]  # some queries sit exactly on their partner's direction
    got = partner_ranks(torch.tensor(q), torch.tensor(t), chunk=7).tolist()
    assert got == brute_force_ranks(q, t)
    assert len(set(got)) < len(got)  # the fixture really has ties


def test_tie_counts_against_the_query():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # query 0: partner and the other target tie
    assert partner_ranks(q, t).tolist() == [2, 2]


def test_perfect_embedding():
    x = torch.randn(150, 16)
    scores = retrieval_scores(partner_ranks(x, x * 3))
    assert scores == {"r1": 1.0, "r5": 1.0, "medr": 1.0}


def test_shuffled_embedding_is_at_chance():
    gen = torch.Generator().manual_seed(0)
    k = 1000
    x = torch.randn(k, 32, generator=gen)
    shuffled = x[torch.randperm(k, generator=gen)]
    scores = retrieval_scores(partner_ranks(x, shuffled))
    assert abs(scores["r1"] - 1 / k) < 0.01
    assert abs(scores["r5"] - 5 / k) < 0.02
    assert abs(scores["medr"] - k / 2) < 0.1 * k


def test_median_of_even_count():
    assert retrieval_scores(torch.tensor([1, 2, 3, 10]))["medr"] == 2.5
