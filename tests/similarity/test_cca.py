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


@pytest.mark.parametrize("dims", [(8, 6), (40, 40), (3, 25)])
def test_cholesky_route_agrees_with_qr_on_well_conditioned_data(dims):
    x, y = _correlated(n=3000, dx=dims[0], dy=dims[1], seed=19)
    x = x + 50.0  # large means: centring happens before the Gram products
    chol = cca_coefficients(x, y, method="cholesky")
    np.testing.assert_allclose(chol, cca_coefficients(x, y, method="qr"), atol=1e-10)
    np.testing.assert_allclose(cca_coefficients(x, y), chol, atol=0)  # auto takes this route
    ridge = cca_coefficients(x, y, epsilon=0.5, method="cholesky")
    np.testing.assert_allclose(ridge, cca_coefficients(x, y, epsilon=0.5, method="qr"), atol=1e-10)


def test_cholesky_route_keeps_tiny_correlations_accurate():
    # orthogonal centred column spaces: every canonical correlation is 0. Squaring C would
    # give ~1e-8 (sqrt of rounding); the route must notice and take the SVD.
    rng = np.random.default_rng(22)
    z = rng.standard_normal((500, 6))
    q = np.linalg.qr(z - z.mean(0))[0]
    x, y = q[:, :3] @ rng.standard_normal((3, 3)), q[:, 3:] @ rng.standard_normal((3, 4))[:, :3]
    np.testing.assert_allclose(cca_coefficients(x, y, method="cholesky"), 0.0, atol=1e-12)


def test_cholesky_route_drops_constant_columns_and_refuses_ill_conditioned_blocks():
    rng = np.random.default_rng(20)
    x = rng.standard_normal((500, 5)) + 1e6  # large mean, unit spread: not constant
    y = x @ rng.standard_normal((5, 4)) + rng.standard_normal((500, 4))
    x_dead = np.hstack([x, np.zeros((500, 1)), np.full((500, 1), 1e6 + 0.1)])
    np.testing.assert_allclose(cca_coefficients(x_dead, y, method="cholesky"),
                               cca_coefficients(x, y, method="qr"), atol=1e-9)
    # column scales do not matter (the Gram matrix is scaled to unit diagonal) ...
    scaled = x * np.array([1.0, 1e-3, 1e-6, 1e-7, 1e3])
    np.testing.assert_allclose(cca_coefficients(scaled, y, method="cholesky"),
                               cca_coefficients(x, y, method="qr"), atol=1e-9)
    # ... near-collinear columns do: refused here, and auto takes QR and stays accurate
    bad = np.hstack([x, x[:, :1] + 1e-6 * rng.standard_normal((500, 1))])
    with pytest.raises(ValueError, match="method='cholesky' refused"):
        cca_coefficients(bad, y, method="cholesky")
    np.testing.assert_allclose(cca_coefficients(bad, y), cca_coefficients(bad, y, method="qr"), atol=0)
    with pytest.raises(ValueError, match="method='cholesky' refused"):
        cca_coefficients(bad, y, method="cholesky")
    with pytest.raises(ValueError, match="method='cholesky' refused"):
        cca_coefficients(np.hstack([x, x[:, :1]]), y, method="cholesky")


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
    with_inf = np.random.default_rng(0).standard_normal((10, 2))
    with_inf[3, 1] = -np.inf
    for fn in (cca_coefficients, pwcca, svcca, linear_cka):
        with pytest.raises(ValueError, match="y contains NaN or inf"):
            fn(np.random.default_rng(1).standard_normal((10, 2)), with_inf)
    with pytest.raises(ValueError, match="overflow float64"):
        cca_coefficients(np.full((10, 2), 1e308), with_inf[:, :1] * 0 + 1.0)
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


def test_svcca_reports_wanted_and_kept_directions_when_capped():
    rng = np.random.default_rng(21)
    n = 60
    x = rng.standard_normal((n, 40))  # isotropic: 99 % of the variance needs ~38 directions
    y = x[:, :10] @ rng.standard_normal((10, 12)) + 0.1 * rng.standard_normal((n, 12))
    free = svcca_details(x, y, keep=0.99, min_samples_per_dim=1.0)  # 60 >= 37 + 9: no cap
    assert free.cap is None and not free.capped and (free.dims_x, free.dims_y) == (37, 9)
    assert svcca_details(x, y, keep=0.99).wanted_dims_x == 37  # no guard asked for
    res = svcca_details(x, y, keep=0.99, min_samples_per_dim=2.0)
    assert res.wanted_dims_x > 30 and res.cap == (n - 1) // 4 == 14
    assert (res.dims_x, res.dims_y) == (14, min(res.wanted_dims_y, 14)) and res.capped
    assert res.coefficients.shape == (min(res.dims_x, res.dims_y),)
    uncapped = svcca_details(x[:, :3], y[:, :3], keep=0.99, min_samples_per_dim=2.0)
    assert uncapped.cap is None and not uncapped.capped
    assert (uncapped.dims_x, uncapped.dims_y) == (uncapped.wanted_dims_x, uncapped.wanted_dims_y)
    with pytest.raises(UnderdeterminedError, match="too few for any direction"):
        svcca_details(x[:4], y[:4], keep=0.99, min_samples_per_dim=2.0)
    with pytest.raises(ValueError, match="min_samples_per_dim"):
        svcca_details(x, y, min_samples_per_dim=0.5)


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


def _inv_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v / np.sqrt(w)) @ v.T


def _reference_pwcca(x: np.ndarray, y: np.ndarray, *, flip: int | None = None) -> float:
    """google/svcca ``compute_pwcca`` (Morcos et al. 2018), transcribed for (samples, neurons).

    SVD of the whitened cross-covariance ``M = Sxx^-1/2 Sxy Syy^-1/2 = U diag(rho) W^T``;
    on the side with fewer neurons (x on a tie; the y branch is upstream PR #9's fix of an
    IndexError), directions ``centred @ U`` plus each neuron's mean added to the direction
    of the same index, orthonormalised by QR; weights = summed |projections| of that side's
    raw activations, normalised; result ``sum(w * rho)``. ``flip`` negates one singular
    vector (an equally valid SVD) to expose the reference's sign dependence.
    """
    n = x.shape[0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1), xc.T @ yc / (n - 1)
    u, rho, wt = np.linalg.svd(_inv_sqrt(sxx) @ sxy @ _inv_sqrt(syy))
    if x.shape[1] <= y.shape[1]:
        acts, centred, vecs = x, xc, u
    else:
        acts, centred, vecs = y, yc, wt.T
    if flip is not None:
        vecs = vecs.copy()
        vecs[:, flip] *= -1
    dirns = centred @ vecs + acts.mean(0)
    p, _ = np.linalg.qr(dirns)
    w = np.abs(p.T @ acts).sum(axis=1)
    w = w / w.sum()
    return float(np.sum(w * rho))


@pytest.mark.parametrize("dx,dy", [(5, 8), (8, 8), (16, 40), (3, 3)])
def test_pwcca_matches_google_svcca_formula(dx, dy):
    worst = 0.0
    for seed in range(4):
        x, y = _correlated(n=3000, dx=dx, dy=dy, seed=100 + seed)
        x = x - x.mean(0)  # the reference is only well defined on centred x (next test)
        expected = _reference_pwcca(x, y)
        for method in ("auto", "qr"):
            worst = max(worst, abs(pwcca(x, y, method=method) - expected))
    assert worst < 1e-6, worst  # measured ~2e-13


def test_pwcca_is_shift_invariant_where_the_reference_depends_on_svd_signs():
    x, y = _correlated(n=2000, dx=8, dy=8, seed=16)
    x = x + 2.0  # uncentred activations, as after a ReLU
    # Two equally valid SVDs give the reference two different answers on uncentred x ...
    spread = abs(_reference_pwcca(x, y) - _reference_pwcca(x, y, flip=0))
    assert spread > 1e-3
    # ... while on centred x the sign does not matter and tlcore agrees.
    xc = x - x.mean(0)
    assert _reference_pwcca(xc, y, flip=0) == pytest.approx(_reference_pwcca(xc, y), abs=1e-12)
    assert pwcca(x, y) == pytest.approx(_reference_pwcca(xc, y), abs=1e-10)
    assert pwcca(x - 7.0, y + 3.0) == pytest.approx(pwcca(x, y), abs=1e-12)


def test_pwcca_wider_x_weights_by_y_as_upstream_pr9():
    # google/svcca raises IndexError here (x has more neurons than y); tlcore weights by y.
    x, y = _correlated(n=3000, dx=9, dy=4, seed=17)
    y = y - y.mean(0)
    assert pwcca(x, y) == pytest.approx(_reference_pwcca(x, y), abs=1e-10)
    assert pwcca(x, y) == pytest.approx(pwcca(y, x), abs=1e-12)  # symmetric when widths differ
    # equal widths: weighted from x, so the order of the arguments matters
    a, b = _correlated(n=3000, dx=6, dy=6, seed=18)
    assert abs(pwcca(a, b) - pwcca(b, a)) > 1e-6


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
