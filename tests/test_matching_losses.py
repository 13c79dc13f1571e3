import pytest
import torch

from avdd.distill.matching import MatchingWeights, class_means, matching_terms, weighted_total


def direct_loss(ra, rv, sa, sv, w_jm, w_mgm):
    """DESIGN.md's per-class formula, written term by term with explicit loops."""
    total = 0.0
    for c in range(ra.shape[0]):
        base = sum(float(v) ** 2 for v in ra[c] - sa[c]) + sum(float(v) ** 2 for v in rv[c] - sv[c])
        joint = sum(float(v) ** 2 for v in (ra[c] + rv[c]) - (sa[c] + sv[c]))
        gap = sum(float(v) ** 2 for v in (ra[c] + sv[c]) - (rv[c] + sa[c]))
        total += base + w_jm * joint + w_mgm * gap
    return total


@pytest.mark.parametrize(("w_jm", "w_mgm"), [(0, 0), (10, 10), (3, 0), (0, 2)])
def test_total_matches_direct_formula(w_jm, w_mgm):
    g = torch.Generator().manual_seed(0)
    ra, rv, sa, sv = (torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(4))
    terms = matching_terms({"audio": ra, "frame": rv}, {"audio": sa, "frame": sv}, ("audio", "frame"))
    got = weighted_total(terms, MatchingWeights(1.0, w_jm, w_mgm))
    assert float(got) == pytest.approx(direct_loss(ra, rv, sa, sv, w_jm, w_mgm), rel=1e-12)


def test_single_modality_is_plain_dm():
    g = torch.Generator().manual_seed(1)
    r, s = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    terms = matching_terms({"audio": r}, {"audio": s}, ("audio",))
    assert set(terms) == {"base"}
    torch.testing.assert_close(terms["base"], ((r - s) ** 2).sum(1))
    with pytest.raises(ValueError, match="need two modalities"):
        weighted_total(terms, MatchingWeights(1, 10, 0))


def test_gap_is_zero_when_the_synthetic_gap_equals_the_real_gap():
    g = torch.Generator().manual_seed(2)
    ra, rv, shift = (torch.randn(2, 4, generator=g) for _ in range(3))
    terms = matching_terms({"a": ra, "v": rv}, {"a": ra + shift, "v": rv + shift}, ("a", "v"))
    torch.testing.assert_close(terms["gap"], torch.zeros(2))
    assert (terms["base"] > 0).all() and (terms["joint"] > 0).all()


def test_joint_and_gap_split_the_base_term_by_the_cross_modal_inner_product():
    # with d_m = r_m - s_m: joint = base + 2<d_a, d_v>, gap = base - 2<d_a, d_v> (parallelogram law),
    # so equal weights cancel the cross-modal part: base + λ(joint + gap) = (1 + 2λ) base
    g = torch.Generator().manual_seed(3)
    ra, rv, sa, sv = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(4))
    terms = matching_terms({"a": ra, "v": rv}, {"a": sa, "v": sv}, ("a", "v"))
    inner = ((ra - sa) * (rv - sv)).sum(1)
    torch.testing.assert_close(terms["joint"], terms["base"] + 2 * inner, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["gap"], terms["base"] - 2 * inner, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weighted_total(terms, MatchingWeights(1, 10, 10)),
                               21 * weighted_total(terms, MatchingWeights(1, 0, 0)), rtol=1e-12, atol=0)


def test_cross_modal_terms_need_equal_widths():
    with pytest.raises(ValueError, match="same width and grid"):
        matching_terms({"a": torch.zeros(2, 3), "v": torch.zeros(2, 4)},
                       {"a": torch.zeros(2, 3), "v": torch.zeros(2, 4)}, ("a", "v"))


def test_class_means_against_loop():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(20, 3, generator=g)
    labels = torch.randint(0, 4, (20,), generator=g)
    labels[labels == 2] = 1  # class 2 empty
    means = class_means(feats, labels, 4)
    for c in range(4):
        expected = feats[labels == c].mean(0) if (labels == c).any() else torch.zeros(3)
        torch.testing.assert_close(means[c], expected)
