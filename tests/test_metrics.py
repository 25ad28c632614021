from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tlcore.metrics import (
    DelongResult,
    EvalResult,
    _bootstrap_aucs,
    bootstrap_auc_ci,
    delong_ci,
    delong_test,
    evaluate_scores,
    predictions_table,
    roc_auc,
    roc_points,
)


def _pairwise_auc(labels, scores) -> float:
    """Brute force over every (positive, negative) pair, ties one half."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    pos, neg = scores[labels == 1], scores[labels == 0]
    total = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    return total / (len(pos) * len(neg))


def _psi_matrix(pos, neg) -> np.ndarray:
    return (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])


def _synthetic(n: int, seed: int, shift: float = 1.0):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[: n // 3] = 1
    rng.shuffle(y)
    s = shift * y + rng.standard_normal(n)
    return y, s


# ---------------------------------------------------------------- roc_auc
def test_roc_auc_hand_computed():
    # pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, *) two wins -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_counts_ties_as_half():
    # positive 2 vs negatives 1 (win) and 2 (tie); positive 3 wins both -> 3.5/4
    assert roc_auc([0, 0, 1, 1], [1, 2, 2, 3]) == pytest.approx(0.875)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_roc_auc_matches_pairwise_brute_force_with_many_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 5, 60).astype(float)  # heavy ties
    assert roc_auc(y, s) == pytest.approx(_pairwise_auc(y, s), abs=1e-12)


def test_roc_auc_single_class_is_a_clear_error():
    with pytest.raises(ValueError, match=r"only class 0 \(n=12\); AUC is undefined"):
        roc_auc([0] * 12, np.linspace(0, 1, 12))
    with pytest.raises(ValueError, match=r"only class 1 \(n=3\)"):
        roc_auc([1, 1, 1], [0.2, 0.3, 0.4])


def test_roc_auc_rejects_bad_inputs():
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 or 1"):
        roc_auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="non-finite"):
        roc_auc([0, 1, 1], [0.1, float("nan"), 0.3])
    with pytest.raises(ValueError, match="empty"):
        roc_auc([], [])


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_resample_aucs_equal_a_loop_over_resamples():
    y, s = _synthetic(40, seed=5)
    s = np.round(s, 1)  # ties on purpose
    pos, neg = s[y == 1], s[y == 0]
    aucs = _bootstrap_aucs(pos, neg, n_boot=25, seed=11)
    # replay the same draws one resample at a time
    rng = np.random.default_rng(11)
    pi = rng.integers(0, len(pos), size=(25, len(pos)))
    ni = rng.integers(0, len(neg), size=(25, len(neg)))
    for b in range(25):
        lab = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        expected = _pairwise_auc(lab, np.r_[pos[pi[b]], neg[ni[b]]])
        assert aucs[b] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_ci_contains_auc_and_shrinks_with_n():
    y_small, s_small = _synthetic(60, seed=1)
    y_big, s_big = _synthetic(1200, seed=1)
    lo_s, hi_s = bootstrap_auc_ci(y_small, s_small, n_boot=1000, seed=0)
    lo_b, hi_b = bootstrap_auc_ci(y_big, s_big, n_boot=1000, seed=0)
    assert lo_s <= roc_auc(y_small, s_small) <= hi_s
    assert lo_b <= roc_auc(y_big, s_big) <= hi_b
    assert (hi_b - lo_b) < 0.5 * (hi_s - lo_s)


def test_bootstrap_ci_is_seeded_and_level_orders_width():
    y, s = _synthetic(90, seed=2)
    assert bootstrap_auc_ci(y, s, seed=4) == bootstrap_auc_ci(y, s, seed=4)
    lo90, hi90 = bootstrap_auc_ci(y, s, level=0.90, seed=4)
    lo99, hi99 = bootstrap_auc_ci(y, s, level=0.99, seed=4)
    assert lo99 <= lo90 < hi90 <= hi99


def test_bootstrap_in_small_blocks_is_exact(monkeypatch):
    from tlcore import metrics

    y, s = _synthetic(30, seed=8)
    pos, neg = s[y == 1], s[y == 0]
    monkeypatch.setattr(metrics, "_BOOT_BLOCK_CELLS", 1)  # one resample per block
    blocked = metrics._bootstrap_aucs(pos, neg, n_boot=6, seed=2)
    rng = np.random.default_rng(2)
    lab = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    for b in range(6):
        pi = rng.integers(0, len(pos), size=(1, len(pos)))[0]
        ni = rng.integers(0, len(neg), size=(1, len(neg)))[0]
        assert blocked[b] == pytest.approx(_pairwise_auc(lab, np.r_[pos[pi], neg[ni]]), abs=1e-12)


def test_bootstrap_ci_single_class_error():
    with pytest.raises(ValueError, match="only class 1"):
        bootstrap_auc_ci([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4])


# ---------------------------------------------------------------- DeLong
def test_delong_known_case_by_hand():
    # A: positives 0.9, 0.6; negatives 0.7, 0.2 -> V10 = [1, .5], V01 = [.5, 1], AUC .75,
    #    var = var(V10)/2 + var(V01)/2 = .125/2 + .125/2 = .125
    # B: perfect separation -> AUC 1, zero variance and covariance
    labels = [1, 1, 0, 0]
    a = [0.9, 0.6, 0.7, 0.2]
    b = [0.9, 0.8, 0.1, 0.2]
    res = delong_test(labels, a, b)
    assert isinstance(res, DelongResult)
    assert res.auc_a == pytest.approx(0.75)
    assert res.auc_b == pytest.approx(1.0)
    assert res.diff == pytest.approx(-0.25)
    assert res.se == pytest.approx(math.sqrt(0.125))
    assert res.z == pytest.approx(-0.25 / math.sqrt(0.125))
    assert res.p_value == pytest.approx(math.erfc(0.5))  # 2 * (1 - Phi(1/sqrt 2))


def test_delong_variance_matches_brute_force_structural_components():
    y, sa = _synthetic(80, seed=4)
    rng = np.random.default_rng(9)
    sb = 0.5 * sa + rng.standard_normal(80)
    sa = np.round(sa, 1)  # include ties
    m, n = int(y.sum()), int((1 - y).sum())
    comps = []
    for s in (sa, sb):
        psi = _psi_matrix(s[y == 1], s[y == 0])
        comps.append((psi.mean(axis=1), psi.mean(axis=0)))  # V10 (per positive), V01 (per negative)
    s10 = np.cov(np.vstack([comps[0][0], comps[1][0]]))
    s01 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    cov = s10 / m + s01 / n
    expected_se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    res = delong_test(y, sa, sb)
    assert res.auc_a == pytest.approx(_pairwise_auc(y, sa), abs=1e-12)
    assert res.auc_b == pytest.approx(_pairwise_auc(y, sb), abs=1e-12)
    assert res.se == pytest.approx(expected_se, rel=1e-10)
    # single-AUC variance via delong_ci
    lo, hi = delong_ci(y, sa, level=0.95)
    half = 1.959963984540054 * math.sqrt(cov[0, 0])
    assert lo == pytest.approx(max(0.0, res.auc_a - half), rel=1e-9)
    assert hi == pytest.approx(min(1.0, res.auc_a + half), rel=1e-9)


def test_delong_identical_scores_give_p_one():
    y, s = _synthetic(50, seed=6)
    res = delong_test(y, s, s)
    assert res.diff == 0.0 and res.z == 0.0
    assert res.p_value == pytest.approx(1.0)


def test_delong_is_symmetric():
    y, sa = _synthetic(70, seed=7)
    sb = np.random.default_rng(1).standard_normal(70) + 0.3 * y
    ab, ba = delong_test(y, sa, sb), delong_test(y, sb, sa)
    assert ab.diff == pytest.approx(-ba.diff)
    assert ab.z == pytest.approx(-ba.z)
    assert ab.se == pytest.approx(ba.se)
    assert ab.p_value == pytest.approx(ba.p_value)
    assert ab.p_value < 0.05  # a clearly better than b here


def test_delong_needs_two_of_each_class():
    with pytest.raises(ValueError, match="at least 2 cases of each class"):
        delong_test([1, 0, 0], [0.9, 0.1, 0.2], [0.8, 0.3, 0.1])


def test_delong_ci_contains_auc():
    y, s = _synthetic(100, seed=12)
    lo, hi = delong_ci(y, s)
    assert 0.0 <= lo < roc_auc(y, s) < hi <= 1.0


# ---------------------------------------------------------------- tables
def test_roc_points_hand_example():
    df = roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert list(df.columns) == ["fpr", "tpr", "threshold"]
    np.testing.assert_allclose(df["fpr"], [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(df["tpr"], [0, 0.5, 0.5, 1, 1])
    assert np.isinf(df["threshold"].iloc[0])
    np.testing.assert_allclose(df["threshold"].iloc[1:], [0.8, 0.4, 0.35, 0.1])
    area = float(np.sum(np.diff(df["fpr"]) * (df["tpr"].to_numpy()[1:] + df["tpr"].to_numpy()[:-1]) / 2))
    assert area == pytest.approx(0.75)


def test_predictions_table_columns_and_types():
    df = predictions_table(["a", "b", "c"], [1, 0, 1], [0.9, 0.2, 0.4])
    assert list(df.columns) == ["image_id", "label", "score"]
    assert df["image_id"].tolist() == ["a", "b", "c"]
    assert df["label"].tolist() == [1, 0, 1]
    assert df["score"].dtype == np.float64
    with pytest.raises(ValueError, match="image_ids differ in length"):
        predictions_table(["a"], [1, 0], [0.1, 0.2])


def test_evaluate_scores_bundle():
    y, s = _synthetic(90, seed=13)
    ids = [f"img-{i}" for i in range(90)]
    res, table = evaluate_scores(ids, y, s, seed=3)
    assert isinstance(res, EvalResult)
    assert (res.n, res.n_pos, res.n_neg) == (90, 30, 60)
    assert res.auc == pytest.approx(roc_auc(y, s))
    assert res.ci_low <= res.auc <= res.ci_high
    assert (res.ci_low, res.ci_high) == bootstrap_auc_ci(y, s, seed=3)
    assert len(table) == 90 and table["image_id"].iloc[0] == "img-0"
    assert set(res.to_dict()) == {"auc", "ci_low", "ci_high", "n", "n_pos", "n_neg"}


def test_delong_contrast_generalises_the_paired_test():
    from tlcore.metrics import delong_contrast

    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(60), np.ones(40)]
    a, b, c = y + rng.normal(0, 1, 100), 0.5 * y + rng.normal(0, 1, 100), rng.normal(0, 1, 100)
    pair = delong_test(y, a, b)
    same = delong_contrast(y, np.vstack([a, b]), (1.0, -1.0))
    assert (same.diff, same.se, same.p_value) == pytest.approx((pair.diff, pair.se, pair.p_value), rel=1e-12)
    # The mean gap of two pairs sharing the test cases is the mean of the gaps; its SE counts their correlation,
    # so it is not the independent-pairs value.
    mean = delong_contrast(y, np.vstack([a, c, b, c]), (0.5, -0.5, 0.5, -0.5))
    d1, d2 = delong_test(y, a, c), delong_test(y, b, c)
    assert mean.diff == pytest.approx((d1.diff + d2.diff) / 2, abs=1e-12)
    assert mean.se != pytest.approx(math.sqrt(d1.se**2 + d2.se**2) / 2, rel=1e-3)
    assert delong_contrast(y, np.vstack([a, a]), (1.0, -1.0)).z == 0.0
    with pytest.raises(ValueError, match="weights"):
        delong_contrast(y, np.vstack([a, b]), (1.0,))


def test_combine_differences_inverse_variance():
    from tlcore.metrics import combine_differences

    one = combine_differences([0.2], [0.05])
    assert (one.diff, one.se, one.n) == (pytest.approx(0.2), pytest.approx(0.05), 1)
    two = combine_differences([0.2, 0.1], [0.05, 0.05])
    assert two.diff == pytest.approx(0.15) and two.se == pytest.approx(0.05 / math.sqrt(2))
    assert two.ci_low == pytest.approx(0.15 - 1.959964 * two.se, rel=1e-5) and 0 < two.p_value < 1e-3
    weighted = combine_differences([0.3, 0.0], [0.01, 0.1])
    assert weighted.diff == pytest.approx(0.3 * 100 / (100 + 1))  # the precise seed dominates
    flat = combine_differences([0.1, 0.1], [0.0, 0.02])  # a zero SE: plain mean, summed variance
    assert flat.diff == pytest.approx(0.1) and flat.se == pytest.approx(0.01)
    with pytest.raises(ValueError):
        combine_differences([], [])
