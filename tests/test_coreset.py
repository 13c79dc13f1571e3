import itertools

import numpy as np
import torch

from avdd.distill.coreset import herding_order, kcenter_order
from avdd.distill.embedding import joint_embedding


def brute_force_herding(x: np.ndarray, k: int) -> list[int]:
    """The herding criterion evaluated candidate by candidate, with plain Python loops."""
    mu = x.mean(axis=0)
    chosen: list[int] = []
    for t in range(1, k + 1):
        best, best_dist = None, None
        for i in range(len(x)):
            if i in chosen:
                continue
            mean = (sum(x[j] for j in chosen) + x[i]) / t
            dist = float(((mu - mean) ** 2).sum())
            if best_dist is None or dist < best_dist - 1e-12:
                best, best_dist = i, dist
        chosen.append(best)
    return chosen


def test_herding_matches_brute_force():
    x = np.random.default_rng(0).normal(size=(25, 6))
    assert herding_order(torch.tensor(x), 10).tolist() == brute_force_herding(x, 10)


def test_herding_picks_the_sample_nearest_the_mean_first_and_beats_random():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    order = herding_order(x, 10)
    assert int(order[0]) == int(((x - x.mean(0)) ** 2).sum(1).argmin())
    herd_err = float(((x[order].mean(0) - x.mean(0)) ** 2).sum())
    rng = np.random.default_rng(0)
    random_errs = [float(((x[rng.choice(200, 10, replace=False)].mean(0) - x.mean(0)) ** 2).sum())
                   for _ in range(50)]
    assert herd_err < min(random_errs)


def test_selection_is_nested_across_sizes():
    x = torch.randn(60, 5, generator=torch.Generator().manual_seed(2))
    for select in (herding_order, kcenter_order):
        ipc20 = select(x, 20).tolist()
        assert select(x, 1).tolist() == ipc20[:1]
        assert select(x, 10).tolist() == ipc20[:10]
        assert len(set(ipc20)) == 20


def covering_radius(features: torch.Tensor, centres: torch.Tensor) -> float:
    """The k-center objective: max over samples of the distance to the nearest of ``features[centres]``."""
    d = torch.cdist(features.double(), features[centres].double())
    return float(d.min(dim=1).values.max())


def test_kcenter_radius_never_increases():
    x = torch.randn(80, 4, generator=torch.Generator().manual_seed(3))
    order = kcenter_order(x, 30)
    radii = [covering_radius(x, order[:k]) for k in range(1, 31)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(radii))
    assert radii[-1] < radii[0]


def test_kcenter_picks_the_farthest_point():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    assert kcenter_order(x, 2).tolist() == [2, 3]  # mean 3.25 → nearest is 2.0; farthest from it is 10


def test_sizes_larger_than_the_class_are_capped():
    x = torch.randn(4, 3)
    assert sorted(herding_order(x, 10).tolist()) == [0, 1, 2, 3]
    assert sorted(kcenter_order(x, 10).tolist()) == [0, 1, 2, 3]


def test_joint_embedding_normalises_each_modality():
    a, v = torch.randn(5, 3) * 10, torch.randn(5, 7) * 0.1
    joint = joint_embedding({"audio": a, "frame": v})
    assert joint.shape == (5, 10)
    torch.testing.assert_close(joint[:, :3].norm(dim=1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(joint[:, 3:].norm(dim=1), torch.ones(5, dtype=torch.float64))
