"""Canonical correlation analysis for representation similarity: CCA, SVCCA and PWCCA.

Inputs are activation matrices shaped ``(n_samples, n_features)`` (rows are datapoints,
columns are neurons -- the transpose of google/svcca's convention), as numpy arrays or
torch tensors. All work is done in float64 with torch, on the tensors' device when torch
tensors are given (so it runs on a GPU when the activations live there); results come
back as numpy / Python floats.

How the canonical correlations are computed (:func:`cca_coefficients`):

1. Centre each block and drop exactly constant columns (dead units carry no signal).
2. Whiten each block:

   * ``method="cholesky"``: the Gram matrices ``X^T X``, ``Y^T Y`` (symmetric rank-k
     updates) and ``X^T Y``, centred by subtracting ``n m m^T`` (no centred copies)
     unless the means are so large against the spread that this loses too many digits,
     in which case the blocks are centred first; each Gram matrix is scaled to unit
     diagonal and factored ``L L^T``, so ``B = X D^-1 L^-T`` is an orthonormal basis.
     Like every covariance method its error grows like ``eps * cond(X)^2``; it is used
     only when the Frobenius condition number of ``L`` (an upper bound on the 2-norm
     one), squared and times the centring loss ``1 + max n m_j^2 / G_jj``, is at most
     ``1 / GRAM_MIN_EIGEN_RATIO = 1e8`` (error ~1e-8 or better, ~1e-14 on
     well-conditioned data); otherwise it raises. The correlations then come from the
     eigenvalues of ``C C^T`` when that is accurate to 1e-10 (see
     :func:`_singular_values`), else from the SVD of ``C``. Fastest route.
   * ``method="qr"``: Householder QR of the centred block, ``X = Q R``, then the SVD of
     the small ``R = U S V^T``. Directions with ``s_i <= s_max * rank_tol`` are dropped
     (default ``rank_tol = max(n, d) * 2.2e-16``, numpy's ``matrix_rank`` rule), and
     ``B = Q U_k`` is an orthonormal basis of the block's column space. Accuracy is
     governed by cond(X), never its square.
   * ``method="gram"``: eigendecomposition of ``X^T X = V S^2 V^T`` and the implicit
     basis ``B = X V S^{-1}``; same accuracy rule as ``cholesky`` on the unscaled
     eigenvalues (every eigenvalue at least ``1e-8`` of the largest), otherwise it raises.
     It yields the singular directions that PWCCA and SVCCA need.
   * ``method="auto"`` (default): ``cholesky`` for :func:`cca_coefficients` (``gram``
     for :func:`pwcca`) when both blocks pass the check, else ``qr`` for both.

3. The canonical correlations are the singular values of ``B_x^T B_y`` (the cosines of
   the principal angles between the two column spaces), sorted descending, clipped to
   [0, 1].

Ridge regularisation: ``epsilon`` is added to the diagonal of each sample covariance
(``X^T X / (n-1)``), i.e. direction ``i`` is shrunk by ``s_i / sqrt(s_i^2 + epsilon (n-1))``.
``epsilon=0`` (default) is plain CCA. (google/svcca adds its epsilon after scaling each
covariance by its largest entry, so equal ``epsilon`` values are not the same ridge.)

SVCCA (:func:`svcca`) first keeps each block's top singular directions (from the
eigendecomposition of the smaller Gram matrix, or QR + SVD with ``method="qr"``); the
reduced block ``X V_k`` has orthogonal columns, so it is whitened by dividing by ``s_k``
and no second decomposition is needed.

Underdetermined problems: with ``k_x`` and ``k_y`` directions kept, the centred column
spaces live in an ``(n-1)``-dimensional space, so when ``n <= k_x + k_y`` they must share
directions and canonical correlations of exactly 1 appear by construction.
:class:`UnderdeterminedError` is raised in that case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from tlcore.similarity._common import Array, as_pair, centred, gram, non_constant_columns

Method = Literal["auto", "qr", "gram", "cholesky"]
_METHODS = ("auto", "qr", "gram", "cholesky")

_EPS64 = float(np.finfo(np.float64).eps)
# Smallest eigenvalue of X^T X, relative to the largest, for a Gram route to be trusted.
GRAM_MIN_EIGEN_RATIO = 1e-8


class UnderdeterminedError(ValueError):
    """CCA asked for more directions than the samples can support."""


class _IllConditioned(Exception):
    """Internal: a Gram route is not accurate enough for this block."""


@dataclass
class _Whitened:
    """One centred block reduced to its whitening data."""

    xc: torch.Tensor  # (n, d_used) centred, constant columns removed
    s: torch.Tensor  # (k,) singular values of xc kept, descending
    v: torch.Tensor  # (d_used, k) right singular vectors kept
    basis: torch.Tensor | None  # (n, k) orthonormal basis (qr route) or None (gram route)

    @property
    def k(self) -> int:
        return int(self.s.shape[0])


def _check_method(method: str, allowed: tuple[str, ...] = _METHODS) -> None:
    if method not in allowed:
        raise ValueError(f"method must be one of {', '.join(map(repr, allowed))}, got {method!r}")


def _whiten_qr(xc: torch.Tensor, rank_tol: float | None) -> _Whitened:
    n, d = xc.shape
    q, r = torch.linalg.qr(xc, mode="reduced")
    u_r, s, vh = torch.linalg.svd(r, full_matrices=False)
    tol = (max(n, d) * _EPS64) if rank_tol is None else rank_tol
    if s.numel() == 0 or float(s[0]) == 0.0:
        k = 0
    else:
        k = int((s > s[0] * tol).sum())
    return _Whitened(xc=xc, s=s[:k], v=vh[:k].T, basis=q @ u_r[:, :k])


def _whiten_gram(xc: torch.Tensor) -> _Whitened:
    n, d = xc.shape
    if n <= d:
        raise _IllConditioned("more features than samples")
    lam, vecs = torch.linalg.eigh(gram(xc))
    lam, vecs = lam.flip(0), vecs.flip(1)
    if d == 0 or float(lam[0]) <= 0.0 or float(lam[-1]) < GRAM_MIN_EIGEN_RATIO * float(lam[0]):
        raise _IllConditioned("Gram matrix too ill-conditioned")
    return _Whitened(xc=xc, s=lam.sqrt(), v=vecs, basis=None)


def _prepare(t: torch.Tensor, name: str) -> torch.Tensor:
    """Centred block without its exactly constant columns."""
    xc, mean = centred(t, name)
    keep = non_constant_columns(t, mean, torch.linalg.vector_norm(xc, dim=0) ** 2)
    return xc if bool(keep.all()) else xc[:, keep]


def _whiten_pair(
    tx: torch.Tensor, ty: torch.Tensor, method: Method, rank_tol: float | None
) -> tuple[_Whitened, _Whitened]:
    """Both blocks whitened with the eigendecomposition (``auto``/``gram``) or QR."""
    xc, yc = _prepare(tx, "x"), _prepare(ty, "y")
    if method in ("auto", "gram"):
        try:
            return _whiten_gram(xc), _whiten_gram(yc)
        except _IllConditioned as exc:
            if method == "gram":
                raise ValueError(
                    f"method='gram' refused: {exc} (need n_samples > n_features and every "
                    f"eigenvalue of X^T X >= {GRAM_MIN_EIGEN_RATIO:g} x the largest); use method='qr'"
                ) from exc
    return _whiten_qr(xc, rank_tol), _whiten_qr(yc, rank_tol)


def _underdetermined(n: int, kx: int, ky: int, shapes: tuple[tuple, tuple]) -> UnderdeterminedError:
    return UnderdeterminedError(
        f"CCA is underdetermined: {n} samples for {kx} + {ky} directions "
        f"(x {shapes[0]}, y {shapes[1]} after dropping constant/negligible directions); "
        f"need n_samples > dims_x + dims_y, ideally several times more. Use more "
        f"datapoints (more images or more spatial positions per image), fewer features "
        f"(average-pool, subsample channels, or SVCCA with a smaller keep)."
    )


def _check_determined(n: int, kx: int, ky: int, shapes: tuple[tuple, tuple]) -> None:
    if kx == 0 or ky == 0:
        which = "x" if kx == 0 else "y"
        raise ValueError(f"{which} has no variance (all columns constant); CCA is undefined")
    if n <= kx + ky:
        raise _underdetermined(n, kx, ky, shapes)


def _basis(w: _Whitened) -> torch.Tensor:
    return w.basis if w.basis is not None else (w.xc @ w.v) / w.s


def _cross(wx: _Whitened, wy: _Whitened, epsilon: float) -> torch.Tensor:
    """The whitened cross matrix whose singular values are the canonical correlations."""
    if wx.basis is None and wy.basis is None:
        c = (wx.v.T @ gram(wx.xc, wy.xc) @ wy.v) / (wx.s[:, None] * wy.s[None, :])
    else:
        c = _basis(wx).T @ _basis(wy)
    if epsilon:
        n = wx.xc.shape[0]
        dx = wx.s / torch.sqrt(wx.s**2 + epsilon * (n - 1))
        dy = wy.s / torch.sqrt(wy.s**2 + epsilon * (n - 1))
        c = dx[:, None] * c * dy[None, :]
    return c


def _check_epsilon(epsilon: float) -> None:
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")


def _cca(
    x: Array, y: Array, *, epsilon: float, method: Method, rank_tol: float | None, vectors: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, _Whitened, _Whitened]:
    """Canonical correlations, with both sides' singular directions (``u``, ``vh``) if asked."""
    _check_epsilon(epsilon)
    tx, ty = as_pair(x, y)
    wx, wy = _whiten_pair(tx, ty, method, rank_tol)
    _check_determined(wx.xc.shape[0], wx.k, wy.k, (tuple(tx.shape), tuple(ty.shape)))
    c = _cross(wx, wy, epsilon)
    if vectors:
        u, rho, vh = torch.linalg.svd(c, full_matrices=False)
    else:
        u, rho, vh = None, torch.linalg.svdvals(c), None
    return rho.clamp(0.0, 1.0), u, vh, wx, wy


# --------------------------------------------------------------------------- Cholesky route
class _MeansTooLarge(_IllConditioned):
    """Internal: Gram matrices of uncentred data lose too many digits; centre first."""


def _column_means(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.device.type == "cpu":
        with np.errstate(all="ignore"):
            mean = torch.from_numpy(t.numpy().mean(axis=0))
    else:
        mean = t.mean(dim=0)
    if not bool(torch.isfinite(mean).all()):
        centred(t, name)  # raises the finite-values error
    return mean


def _blocks_uncentred(tx: torch.Tensor, ty: torch.Tensor, names=("x", "y")):
    """Centred Gram matrices without centred copies: ``X^T X - n m m^T`` and so on.

    Returns ``(gx, gy, gxy, keep_x, keep_y, loss)``; ``loss = 1 + max_j n m_j^2 / G_jj``
    is the factor by which the subtraction can magnify rounding errors. A column whose
    centred sum of squares is within rounding of zero is tested element-wise; if it is
    not constant after all, its mean swamps its spread and :class:`_MeansTooLarge` asks
    for the centred route.
    """
    n = tx.shape[0]
    out = []
    for t, name in zip((tx, ty), names):
        mean = _column_means(t, name)
        raw = gram(t)
        g = raw - n * torch.outer(mean, mean)
        diag = g.diagonal()
        suspect = diag <= 8.0 * n * _EPS64 * raw.diagonal()
        keep = torch.ones_like(suspect)
        if bool(suspect.any()):
            sub = t[:, suspect]
            keep[suspect] = sub.amax(dim=0) != sub.amin(dim=0)
            if bool(keep[suspect].any()):
                raise _MeansTooLarge(f"{name}: a column's mean swamps its spread")
        out.append((mean, g, keep))
    (mx, gx, kx), (my, gy, ky) = out
    gxy = gram(tx, ty) - n * torch.outer(mx, my)
    loss = 1.0
    for mean, g, keep in out:
        if bool(keep.any()):
            loss = max(loss, 1.0 + float((n * mean[keep] ** 2 / g.diagonal()[keep]).max()))
    return gx, gy, gxy, kx, ky, loss


def _blocks_centred(tx: torch.Tensor, ty: torch.Tensor):
    xc, mx = centred(tx, "x")
    yc, my = centred(ty, "y")
    gx, gy = gram(xc), gram(yc)
    kx = non_constant_columns(tx, mx, gx.diagonal())
    ky = non_constant_columns(ty, my, gy.diagonal())
    return gx, gy, gram(xc, yc), kx, ky, 1.0


def _cholesky_whitener(g: torch.Tensor, n: int, epsilon: float, loss: float) -> torch.Tensor:
    """``W`` with ``W G W^T = I`` (``G`` ridged by ``epsilon``): ``B = X W^T`` is orthonormal.

    Refused when ``cond_F(L)^2 * loss > 1 / GRAM_MIN_EIGEN_RATIO``; ``loss`` > 1 accounts for
    Gram matrices centred by subtraction (:class:`_MeansTooLarge` when centring would pass).
    """
    d = g.shape[0]
    if n <= d:
        raise _IllConditioned("more features than samples")
    if epsilon:
        g = g + (epsilon * (n - 1)) * torch.eye(d, dtype=g.dtype, device=g.device)
    scale = g.diagonal().sqrt()
    l, info = torch.linalg.cholesky_ex(g / (scale[:, None] * scale[None, :]))
    if int(info) != 0:
        if loss > 1.0:
            raise _MeansTooLarge("uncentred Gram matrix not positive definite after centring")
        raise _IllConditioned("scaled Gram matrix is not numerically positive definite")
    linv = torch.linalg.solve_triangular(l, torch.eye(d, dtype=g.dtype, device=g.device), upper=False)
    cond2 = float(torch.linalg.matrix_norm(l) * torch.linalg.matrix_norm(linv)) ** 2
    limit = 1.0 / GRAM_MIN_EIGEN_RATIO
    if not cond2 <= limit:  # also catches NaN
        raise _IllConditioned(f"scaled condition number up to {cond2 ** 0.5:.3g} (> 1e4)")
    if cond2 * loss > limit:
        raise _MeansTooLarge(f"means {loss:.3g}x the spread for condition {cond2 ** 0.5:.3g}")
    return linv / scale[None, :]


def _cca_cholesky(tx: torch.Tensor, ty: torch.Tensor, epsilon: float) -> torch.Tensor:
    n = tx.shape[0]
    try:
        blocks = _blocks_uncentred(tx, ty)
        return _cca_from_grams(n, *blocks, epsilon=epsilon, shapes=(tuple(tx.shape), tuple(ty.shape)))
    except _MeansTooLarge:
        blocks = _blocks_centred(tx, ty)
        return _cca_from_grams(n, *blocks, epsilon=epsilon, shapes=(tuple(tx.shape), tuple(ty.shape)))


def _cca_from_grams(n, gx, gy, gxy, kx, ky, loss, *, epsilon, shapes) -> torch.Tensor:
    if not (bool(kx.any()) and bool(ky.any())):
        raise _IllConditioned("a block has no variance")
    if not bool(kx.all()):
        gx, gxy = gx[kx][:, kx], gxy[kx]
    if not bool(ky.all()):
        gy, gxy = gy[ky][:, ky], gxy[:, ky]
    wx = _cholesky_whitener(gx, n, epsilon, loss)
    wy = _cholesky_whitener(gy, n, epsilon, loss)
    _check_determined(n, wx.shape[0], wy.shape[0], shapes)
    return _singular_values(wx @ gxy @ wy.T)


# Absolute error allowed when the canonical correlations come from eigenvalues of C C^T.
_SQUARED_ROUTE_ATOL = 1e-10


def _singular_values(c: torch.Tensor) -> torch.Tensor:
    """Singular values of ``c`` (descending, clipped to [0, 1]).

    The eigenvalues of the smaller of ``C C^T`` / ``C^T C`` (a quarter of the cost of an
    SVD) have absolute error ~``m eps`` (``||C|| <= 1``), so ``rho_i = sqrt(lambda_i)`` is
    off by ~``m eps / (2 rho_i)``; they are used only when that bound is below
    ``_SQUARED_ROUTE_ATOL`` for the smallest ``rho``, else the SVD is taken.
    """
    small = c if c.shape[0] <= c.shape[1] else c.T
    m = small.shape[0]
    lam = torch.linalg.eigvalsh(small @ small.T).flip(0).clamp(0.0, 1.0)
    rho_min = float(lam[-1]) ** 0.5
    if rho_min > 0 and m * _EPS64 / (2.0 * rho_min) <= _SQUARED_ROUTE_ATOL:
        return lam.sqrt()
    return torch.linalg.svdvals(c).clamp(0.0, 1.0)


def cca_coefficients(
    x: Array,
    y: Array,
    *,
    epsilon: float = 0.0,
    method: Method = "auto",
    rank_tol: float | None = None,
) -> np.ndarray:
    """All canonical correlations between ``x`` (n, d_x) and ``y`` (n, d_y), descending.

    ``epsilon`` is a ridge added to each covariance diagonal; ``method`` picks the
    whitening route (see the module docstring: ``auto`` tries the fast Cholesky route and
    falls back to QR when a block is ill-conditioned or rank deficient); ``rank_tol`` is
    the relative singular value below which a direction counts as negligible (qr route).
    Returns ``min(k_x, k_y)`` values in [0, 1]. Raises :class:`UnderdeterminedError` when
    ``n_samples <= k_x + k_y``.
    """
    _check_method(method)
    _check_epsilon(epsilon)
    if method in ("auto", "cholesky"):
        tx, ty = as_pair(x, y, check_finite=False)  # checked on the column means
        try:
            return _cca_cholesky(tx, ty, epsilon).cpu().numpy()
        except _IllConditioned as exc:
            if method == "cholesky":
                raise ValueError(
                    f"method='cholesky' refused: {exc} (need n_samples > n_features, non-constant "
                    f"columns and a scaled condition number <= 1e4); use method='qr'"
                ) from exc
        method = "qr"
    rho, _, _, _, _ = _cca(x, y, epsilon=epsilon, method=method, rank_tol=rank_tol, vectors=False)
    return rho.cpu().numpy()


def mean_cca(x: Array, y: Array, **kwargs) -> float:
    """Mean of all canonical correlations (plain CCA similarity)."""
    return float(np.mean(cca_coefficients(x, y, **kwargs)))


# --------------------------------------------------------------------------- SVCCA
@dataclass(frozen=True)
class SVCCAResult:
    """SVCCA outcome: the canonical correlations and how many SV directions were kept.

    ``wanted_dims_x`` / ``wanted_dims_y``: directions that ``keep`` asked for (e.g. 99 % of
    the variance); ``dims_x`` / ``dims_y``: directions actually used, smaller than the wanted
    ones only when ``min_samples_per_dim`` capped them at ``cap`` per side (``capped``).
    """

    coefficients: np.ndarray
    dims_x: int
    dims_y: int
    wanted_dims_x: int
    wanted_dims_y: int
    cap: int | None = None  # per-side cap applied, None when no cap was needed

    @property
    def mean(self) -> float:
        return float(np.mean(self.coefficients))

    @property
    def capped(self) -> bool:
        return self.dims_x < self.wanted_dims_x or self.dims_y < self.wanted_dims_y


def _n_keep(share: torch.Tensor, keep: float | int) -> int:
    rank = int(share.shape[0])
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.integer, np.floating)):
        raise TypeError(f"keep must be a float share in (0, 1] or an int count, got {keep!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 1:
            raise ValueError(f"keep={keep}: an integer keep must be >= 1")
        return min(int(keep), rank)
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep={keep}: a float keep is a variance share in (0, 1]")
    cum = torch.cumsum(share, 0) / share.sum()
    return min(rank, int((cum < keep - 1e-12).sum()) + 1)


@dataclass
class _Spectrum:
    """A centred block's singular directions (all of them, up to the rank)."""

    xc: torch.Tensor
    s: torch.Tensor  # (r,) descending
    v: torch.Tensor | None  # (d, r) right singular vectors (tall gram route, qr route)
    u: torch.Tensor | None  # (n, r) left singular vectors (wide gram route, qr route)
    exact: bool  # from QR + SVD (no conditioning limit)


def _spectrum(t: torch.Tensor, method: Method, rank_tol: float | None, name: str) -> _Spectrum:
    xc = _prepare(t, name)
    n, d = xc.shape
    if d == 0:
        raise ValueError(f"{name} has no variance (all columns constant); SVCCA is undefined")
    if method == "qr":
        w = _whiten_qr(xc, rank_tol)
        return _Spectrum(xc, w.s, w.v, w.basis, exact=True)
    tol = (max(n, d) * _EPS64) if rank_tol is None else rank_tol
    wide = n <= d
    lam, vecs = torch.linalg.eigh(xc @ xc.T if wide else gram(xc))
    lam, vecs = lam.flip(0).clamp_min(0.0), vecs.flip(1)
    s = lam.sqrt()
    r = int((s > s[0] * tol).sum()) if float(s[0]) > 0 else 0
    if wide:
        return _Spectrum(xc, s[:r], None, vecs[:, :r], exact=False)
    return _Spectrum(xc, s[:r], vecs[:, :r], None, exact=False)


def _reduce(sp: _Spectrum, k: int, method: Method, rank_tol: float | None, name: str) -> _Whitened:
    """The block reduced to its top ``k`` singular directions, already whitened.

    The reduced data ``X V_k`` has orthogonal columns of norms ``s_k``, so its
    orthonormal basis is ``X V_k / s_k`` (tall blocks, from the eigendecomposition of
    ``X^T X``) or ``U_k`` (wide blocks, n <= d, from ``X X^T``): no second whitening is
    needed. When the kept directions span more than ``1 / GRAM_MIN_EIGEN_RATIO`` in
    squared singular value, QR + SVD of R is used instead.
    """
    s = sp.s[:k]
    if sp.exact:
        return _Whitened(xc=sp.xc, s=s, v=sp.v[:, :k], basis=sp.u[:, :k])
    if k > 0 and float(s[-1]) ** 2 >= GRAM_MIN_EIGEN_RATIO * float(s[0]) ** 2:
        if sp.u is not None:
            return _Whitened(xc=sp.xc, s=s, v=(sp.xc.T @ sp.u[:, :k]) / s, basis=sp.u[:, :k])
        return _Whitened(xc=sp.xc, s=s, v=sp.v[:, :k], basis=None)
    if method == "gram":
        raise ValueError(
            f"method='gram' refused: {name}'s kept directions are too ill-conditioned; use method='qr'"
        )
    w = _whiten_qr(sp.xc, rank_tol)
    k = min(k, w.k)
    return _Whitened(xc=sp.xc, s=w.s[:k], v=w.v[:, :k], basis=w.basis[:, :k])


def svcca_details(
    x: Array,
    y: Array,
    keep: float | int = 0.99,
    *,
    epsilon: float = 0.0,
    method: Method = "auto",
    rank_tol: float | None = None,
    min_samples_per_dim: float | None = None,
) -> SVCCAResult:
    """SVCCA (Raghu et al. 2017): SVD-reduce each block, then CCA on the reduced blocks.

    ``keep`` float: the smallest number of top singular directions whose squared singular
    values reach that share of the total (0.99 in the paper); int: exactly that many
    (capped at the rank). ``min_samples_per_dim``: when given and the wanted directions
    leave fewer than that many samples per direction (``n < m (k_x + k_y)``), each side is
    capped at ``(n - 1) // (2 m)`` directions (a side that wanted fewer keeps its own
    count); the result records the wanted and the used counts and ``capped``.
    Raises :class:`UnderdeterminedError` when ``n_samples <= dims_x + dims_y`` (or the cap
    would be below one direction).
    """
    _check_method(method, ("auto", "qr", "gram"))
    _check_epsilon(epsilon)
    tx, ty = as_pair(x, y)
    shapes = (tuple(tx.shape), tuple(ty.shape))
    n = tx.shape[0]
    sx = _spectrum(tx, method, rank_tol, "x")
    sy = _spectrum(ty, method, rank_tol, "y")
    want_x, want_y = _n_keep(sx.s**2, keep), _n_keep(sy.s**2, keep)
    kx, ky, cap = want_x, want_y, None
    if min_samples_per_dim is not None:
        if not min_samples_per_dim >= 1.0:
            raise ValueError(f"min_samples_per_dim must be >= 1, got {min_samples_per_dim!r}")
        if n < min_samples_per_dim * (want_x + want_y):
            cap = int((n - 1) // (2 * min_samples_per_dim))
            if cap < 1:
                raise UnderdeterminedError(
                    f"SVCCA: {n} samples are too few for any direction at "
                    f"min_samples_per_dim={min_samples_per_dim:g} (x {shapes[0]}, y {shapes[1]})"
                )
            kx, ky = min(want_x, cap), min(want_y, cap)
    wx = _reduce(sx, kx, method, rank_tol, "x")
    wy = _reduce(sy, ky, method, rank_tol, "y")
    _check_determined(n, wx.k, wy.k, shapes)
    rho = torch.linalg.svdvals(_cross(wx, wy, epsilon)).clamp(0.0, 1.0)
    return SVCCAResult(
        coefficients=rho.cpu().numpy(), dims_x=wx.k, dims_y=wy.k,
        wanted_dims_x=want_x, wanted_dims_y=want_y, cap=cap,
    )


def svcca(x: Array, y: Array, keep: float | int = 0.99, **kwargs) -> float:
    """SVCCA similarity: mean canonical correlation after the SV reduction."""
    return svcca_details(x, y, keep, **kwargs).mean


# --------------------------------------------------------------------------- PWCCA
def pwcca(
    x: Array,
    y: Array,
    *,
    epsilon: float = 0.0,
    method: Method = "auto",
    rank_tol: float | None = None,
) -> float:
    """Projection-weighted CCA (Morcos et al. 2018) as google/svcca's ``compute_pwcca`` computes it.

    The weighting side is the block with fewer (non-constant) neurons, ``x`` on a tie: the
    reference's own rule. With ``M = S_xx^-1/2 S_xy S_yy^-1/2 = U diag(rho) W^T``, the
    reference's directions are the centred activations on the singular vectors,
    ``X u_i``, orthonormalised in order (QR, i.e. Gram-Schmidt) into ``p_i``; the weight
    of ``rho_i`` is ``sum_j |<p_i, x_j>|`` over that side's neurons ``x_j``, normalised to
    sum 1; the result is ``sum_i w_i rho_i``. (These ``p_i`` are not the canonical variates
    ``X S_xx^-1/2 u_i`` unless ``S_xx`` is a multiple of the identity; this is the code
    the published PWCCA numbers come from.)

    Where it differs from the reference: (1) means are removed first. The reference adds
    neuron ``i``'s mean to direction ``i`` and projects the uncentred activations, so on
    uncentred data its value depends on the arbitrary signs LAPACK gives the singular
    vectors; on centred data the two agree (to ~1e-12 on well-conditioned problems, see
    tests/similarity). tlcore's PWCCA is therefore invariant to shifting either block.
    (2) When ``x`` has more neurons than ``y`` the reference raises ``IndexError``
    (google/svcca PR #9, unmerged); tlcore does what that fix does and weights by ``y``'s
    neurons, so the measure is symmetric whenever the widths differ. (3) Exactly constant
    neurons are dropped before anything (the reference keeps them at ``epsilon=0`` and
    inverts a singular covariance with a pseudo-inverse).
    """
    _check_method(method, ("auto", "qr", "gram"))
    rho, u, vh, wx, wy = _cca(x, y, epsilon=epsilon, method=method, rank_tol=rank_tol, vectors=True)
    m = int(rho.shape[0])
    w, dirs = (wx, u) if wx.xc.shape[1] <= wy.xc.shape[1] else (wy, vh.T)
    # With X = B S V^T (B orthonormal): X u_i = B (S u_i); QR of the small S U gives
    # p = B Q, and the projections of the neurons are p^T X = Q^T S V^T.
    q, _ = torch.linalg.qr(w.s[:, None] * dirs[:, :m])
    weights = (q.T @ (w.s[:, None] * w.v.T)).abs().sum(dim=1)
    weights = weights / weights.sum()
    return float((weights * rho).sum())
