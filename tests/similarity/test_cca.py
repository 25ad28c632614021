from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tlcore.similarity import (
    UnderdeterminedError,
    cca_coefficients,
    layerwise_similarity,
    linear_cka,
    mean_cca,
    pwcca,
    svcca,
    svcca_details,
)


def _reference_cca(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Textbook CCA: eigenvalues of Sxx^-1/2 Sxy Syy^-1 Syx Sxx^-1/2, square-rooted."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    n = x.shape[0]
    sxx, syy, sxy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1), xc.T @ yc / (n - 1)

    def inv_sqrt(s):
        w, v = np.linalg.eigh(s)
        return (v / np.sqrt(w)) @ v.T

    ixx = inv_sqrt(sxx)
    m = ixx @ sxy @ np.linalg.inv(syy) @ sxy.T @ ixx
    eig = np.linalg.eigvalsh((m + m.T) / 2)[::-1]
    k = min(x.shape[1], y.shape[1])
    return np.sqrt(np.clip(eig[:k], 0, None))


def _correlated(n=600, dx=8, dy=6, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    x = z @ rng.standard_normal((4, dx)) + noise * rng.standard_normal((n, dx))
    y = z @ rng.standard_normal((4, dy)) + noise * rng.standard_normal((n, dy)) + 5.0
    return x, y


# ---------------------------------------------------------------- CCA
@pytest.mark.parametrize("method", ["auto", "qr", "gram"])
def test_cca_matches_textbook_reference(method):
    x, y = _correlated()
    got = cca_coefficients(x, y, method=method)
    ref = _reference_cca(x, y)
    assert got.shape == (6,)
    np.testing.assert_allclose(got, ref, atol=1e-8)
    assert np.all(np.diff(got) <= 0)  # sorted descending


def test_cca_self_similarity_is_one():
    x, _ = _correlated()
    np.testing.assert_allclose(cca_coefficients(x, x), 1.0, atol=1e-10)
    assert svcca(x, x) == pytest.approx(1.0, abs=1e-10)
    assert pwcca(x, x) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("method", ["auto", "qr"])
def test_invertible_linear_map_gives_all_ones(method):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 10))
    a = rng.standard_normal((10, 10)) + 3 * np.eye(10)
    coefs = cca_coefficients(x, x @ a + 7.0, method=method)
    np.testing.assert_allclose(coefs, 1.0, atol=1e-9)
    assert mean_cca(x, x @ a) == pytest.approx(1.0, abs=1e-9)


def test_independent_gaussians_are_near_zero_at_expected_bias():
    rng = np.random.default_rng(2)
    n, d = 4000, 10
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    rho = cca_coefficients(x, y)
    # under independence E[sum rho^2] ~ d_x d_y / n, i.e. mean rho^2 ~ d / n
    assert np.mean(rho**2) == pytest.approx(d / n, rel=0.5)
    assert rho.max() < 0.15
    assert abs(linear_cka(x, y, debiased=True)) < 0.01


def test_torch_and_numpy_inputs_agree():
    x, y = _correlated(seed=3)
    a = cca_coefficients(x, y)
    b = cca_coefficients(torch.from_numpy(x).float(), torch.from_numpy(y))
    np.testing.assert_allclose(a, b, atol=1e-5)  # float32 input rounding only
    c = cca_coefficients(torch.from_numpy(x), y)
    np.testing.assert_allclose(a, c, atol=1e-12)
    assert svcca(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(svcca(x, y), abs=1e-12)
    assert linear_cka(torch.from_numpy(x), y) == pytest.approx(linear_cka(x, y), abs=1e-12)


def test_rank_deficient_and_constant_columns_are_dropped():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((400, 5))
    x_def = np.hstack([x, x[:, :2] @ rng.standard_normal((2, 3)), np.zeros((400, 1)), np.full((400, 1), 3.0)])
    y = x @ rng.standard_normal((5, 4)) + 0.5 * rng.standard_normal((400, 4))
    coefs = cca_coefficients(x_def, y)  # auto falls back to qr for the singular block
    np.testing.assert_allclose(coefs, cca_coefficients(x, y), atol=1e-9)
    with pytest.raises(ValueError, match="method='gram' refused"):
        cca_coefficients(np.hstack([x, x[:, :1]]), y, method="gram")


def test_ill_conditioned_block_uses_qr_and_stays_accurate():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 4)) * np.array([1.0, 1e-3, 1e-6, 1e-7])
    y = x @ rng.standard_normal((4, 4))
    np.testing.assert_allclose(cca_coefficients(x, y), 1.0, atol=1e-6)


def test_epsilon_ridge_shrinks_correlations():
    x, y = _correlated(seed=6)
    plain = cca_coefficients(x, y)
    ridge = cca_coefficients(x, y, epsilon=1.0)
    assert np.all(ridge <= plain + 1e-12)
    assert ridge[0] < plain[0]
    with pytest.raises(ValueError, match="epsilon"):
        cca_coefficients(x, y, epsilon=-1.0)


def test_underdetermined_error_names_shapes_and_advice():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((50, 30)), rng.standard_normal((50, 30))
    with pytest.raises(UnderdeterminedError, match=r"50 samples.*\(50, 30\).*more datapoints"):
        cca_coefficients(x, y)
    assert issubclass(UnderdeterminedError, ValueError)
    # SVCCA's reduction makes the same data usable
    assert 0.0 <= svcca(x, y, keep=5) <= 1.0


def test_input_validation():
    with pytest.raises(ValueError, match="same samples"):
        cca_coefficients(np.ones((10, 2)), np.ones((11, 2)))
    with pytest.raises(ValueError, match="2-D"):
        cca_coefficients(np.ones(10), np.ones((10, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        cca_coefficients(np.full((10, 2), np.nan), np.ones((10, 2)))
    with pytest.raises(ValueError, match="no variance"):
        cca_coefficients(np.ones((10, 2)), np.random.default_rng(0).standard_normal((10, 2)))


# ---------------------------------------------------------------- SVCCA / PWCCA
def test_svcca_keep_share_and_count():
    rng = np.random.default_rng(8)
    # 3 strong directions + weak noise: 99% of the variance sits in 3 directions
    z = rng.standard_normal((800, 3))
    x = z @ rng.standard_normal((3, 12)) * 10 + 0.01 * rng.standard_normal((800, 12))
    y = z @ rng.standard_normal((3, 9)) * 10 + 0.01 * rng.standard_normal((800, 9))
    det = svcca_details(x, y, keep=0.99)
    assert (det.dims_x, det.dims_y) == (3, 3)
    assert det.mean == pytest.approx(1.0, abs=1e-3)
    det5 = svcca_details(x, y, keep=5)
    assert (det5.dims_x, det5.dims_y) == (5, 5) and det5.coefficients.shape == (5,)
    assert svcca_details(x, y, keep=100).dims_x == 12  # capped at the rank
    assert svcca_details(x, y, keep=1.0, method="qr").dims_x == 12
    with pytest.raises(ValueError, match="variance share"):
        svcca(x, y, keep=1.5)
    with pytest.raises(ValueError, match=">= 1"):
        svcca(x, y, keep=0)


def test_svcca_gram_and_qr_routes_agree_for_tall_and_wide_blocks():
    rng = np.random.default_rng(14)
    # n > d uses X^T X, n <= d uses X X^T; the last case mixes a wide x with a tall y
    for n, dx, dy in ((300, 20, 20), (40, 60, 60), (40, 60, 12)):
        z = rng.standard_normal((n, 4))
        x = z @ rng.standard_normal((4, dx)) + 0.3 * rng.standard_normal((n, dx))
        y = z @ rng.standard_normal((4, dy)) + 0.3 * rng.standard_normal((n, dy))
        auto = svcca_details(x, y, keep=6)
        qr = svcca_details(x, y, keep=6, method="qr")
        assert (auto.dims_x, auto.dims_y) == (qr.dims_x, qr.dims_y) == (6, 6)
        np.testing.assert_allclose(auto.coefficients, qr.coefficients, atol=1e-9)


def test_pwcca_weights_favour_directions_that_explain_neurons():
    rng = np.random.default_rng(9)
    n = 2000
    shared = rng.standard_normal((n, 1))
    # x: 9 neurons driven by the shared signal, 1 by private noise; y shares that signal
    x = np.hstack([shared + 0.1 * rng.standard_normal((n, 9)), rng.standard_normal((n, 1))])
    y = np.hstack([shared + 0.1 * rng.standard_normal((n, 1)), rng.standard_normal((n, 1))])
    coefs = cca_coefficients(x, y)
    assert pwcca(x, y) > coefs.mean()  # weight goes to the high-correlation pair
    assert 0.0 <= pwcca(x, y) <= 1.0


def test_pwcca_matches_explicit_canonical_variates():
    x, y = _correlated(n=500, dx=7, dy=5, seed=15)
    xc, yc = x - x.mean(0), y - y.mean(0)
    qx, qy = np.linalg.qr(xc)[0], np.linalg.qr(yc)[0]
    u, rho, _ = np.linalg.svd(qx.T @ qy, full_matrices=False)
    h = qx @ u  # x's canonical variates, unit norm, (n, 5)
    corr = (h.T @ xc) / (np.linalg.norm(h, axis=0)[:, None] * np.linalg.norm(xc, axis=0)[None, :])
    w = np.abs(corr).sum(axis=1)
    expected = float(np.sum(w / w.sum() * rho))
    assert pwcca(x, y) == pytest.approx(expected, abs=1e-10)
    assert pwcca(x, y, method="qr") == pytest.approx(expected, abs=1e-10)


# ---------------------------------------------------------------- CKA
def test_cka_known_values_and_invariances():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((300, 12))
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.5 * x @ q + 2.0) == pytest.approx(1.0)  # orthogonal, scale, shift
    assert linear_cka(x, x, debiased=True) == pytest.approx(1.0)
    y = rng.standard_normal((300, 12))
    biased = linear_cka(x, y)
    debiased = linear_cka(x, y, debiased=True)
    assert biased > 0.02  # the biased estimator inflates independent data at small n
    assert abs(debiased) < 0.02
    # a non-orthogonal map is not an invariance
    assert linear_cka(x, x @ np.diag(np.linspace(0.1, 10, 12))) < 0.9


def test_cka_feature_and_sample_space_forms_agree():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((20, 50))  # n < d: sample-space form
    y = x[:, :30] @ rng.standard_normal((30, 40)) + rng.standard_normal((20, 40))
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-10)


def test_debiased_cka_matches_song_unbiased_hsic():
    rng = np.random.default_rng(12)
    n = 15
    x, y = rng.standard_normal((n, 4)), rng.standard_normal((n, 3))
    x[:, 0] += y[:, 0]

    def hsic_u(k, l):  # Song et al. (2012), with zeroed diagonals
        k, l = k.copy(), l.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(l, 0)
        one = np.ones(n)
        return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))

    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l = xc @ xc.T, yc @ yc.T
    expected = hsic_u(k, l) / np.sqrt(hsic_u(k, k) * hsic_u(l, l))
    assert linear_cka(x, y, debiased=True) == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------- layerwise table
def test_layerwise_similarity_table():
    x, y = _correlated(seed=13)
    acts_a = {"conv1": x, "layer1": y}
    acts_b = {"conv1": x @ np.diag(np.arange(1.0, 9.0)), "layer1": y[::-1].copy()}
    df = layerwise_similarity(acts_a, acts_b, measures=("svcca", "cka"), keep=0.99)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["layer", "measure", "value"]
    assert df[["layer", "measure"]].values.tolist() == [
        ["conv1", "svcca"], ["conv1", "cka"], ["layer1", "svcca"], ["layer1", "cka"]
    ]
    assert df.iloc[0]["value"] == pytest.approx(1.0)
    assert df.iloc[2]["value"] < 0.3  # rows shuffled -> unpaired -> low
    with pytest.raises(ValueError, match="did you mean 'svcca'"):
        layerwise_similarity(acts_a, acts_b, measures=("svca",))
    with pytest.raises(ValueError, match="different layers"):
        layerwise_similarity(acts_a, {"conv1": x}, measures=("cka",))
