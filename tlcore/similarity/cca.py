"""Canonical correlation analysis for representation similarity: CCA, SVCCA and PWCCA.

Inputs are activation matrices shaped ``(n_samples, n_features)`` (rows are datapoints,
columns are neurons -- the transpose of google/svcca's convention), as numpy arrays or
torch tensors. All work is done in float64 with torch, on the tensors' device when torch
tensors are given (so it runs on a GPU when the activations live there); results come
back as numpy / Python floats.

How the canonical correlations are computed (:func:`cca_coefficients`):

1. Centre each block and drop exactly constant columns (dead units carry no signal).
2. Whiten each block without inverting a covariance matrix:

   * ``method="qr"``: Householder QR of the centred block, ``X = Q R``, then the SVD of
     the small ``R = U S V^T``. Directions with ``s_i <= s_max * rank_tol`` are dropped
     (default ``rank_tol = max(n, d) * 2.2e-16``, numpy's ``matrix_rank`` rule), and
     ``B = Q U_k`` is an orthonormal basis of the block's column space. Accuracy is
     governed by cond(X), never its square.
   * ``method="gram"``: eigendecomposition of ``X^T X = V S^2 V^T`` and the implicit
     basis ``B = X V S^{-1}``. It is about as fast as the classic covariance approach
     (matrix products instead of QR) but its error grows like ``eps * cond(X)^2``, so it
     is only used when every eigenvalue is at least ``1e-8`` of the largest
     (cond(X) <= 1e4, error ~1e-8 or better); otherwise it raises.
   * ``method="auto"`` (default): ``gram`` when both blocks pass that check, else ``qr``
     for both.

3. The canonical correlations are the singular values of ``B_x^T B_y`` (the cosines of
   the principal angles between the two column spaces), sorted descending, clipped to
   [0, 1].

Ridge regularisation: ``epsilon`` is added to the diagonal of each sample covariance
(``X^T X / (n-1)``, as in google/svcca), i.e. direction ``i`` is shrunk by
``s_i / sqrt(s_i^2 + epsilon (n-1))``. ``epsilon=0`` (default) is plain CCA.

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

from tlcore.similarity._common import Array, as_pair, centre, non_constant_columns

Method = Literal["auto", "qr", "gram"]

_EPS64 = float(np.finfo(np.float64).eps)
# Smallest eigenvalue of X^T X, relative to the largest, for the Gram route to be trusted.
GRAM_MIN_EIGEN_RATIO = 1e-8


class UnderdeterminedError(ValueError):
    """CCA asked for more directions than the samples can support."""


class _IllConditioned(Exception):
    """Internal: the Gram route is not accurate enough for this block."""


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
    lam, vecs = torch.linalg.eigh(xc.T @ xc)
    lam, vecs = lam.flip(0), vecs.flip(1)
    if d == 0 or float(lam[0]) <= 0.0 or float(lam[-1]) < GRAM_MIN_EIGEN_RATIO * float(lam[0]):
        raise _IllConditioned("Gram matrix too ill-conditioned")
    return _Whitened(xc=xc, s=lam.sqrt(), v=vecs, basis=None)


def _prepare(t: torch.Tensor) -> torch.Tensor:
    keep = non_constant_columns(t)
    return centre(t if bool(keep.all()) else t[:, keep])


def _whiten_pair(
    tx: torch.Tensor, ty: torch.Tensor, method: Method, rank_tol: float | None
) -> tuple[_Whitened, _Whitened]:
    if method not in ("auto", "qr", "gram"):
        raise ValueError(f"method must be 'auto', 'qr' or 'gram', got {method!r}")
    xc, yc = _prepare(tx), _prepare(ty)
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


def _check_determined(wx: _Whitened, wy: _Whitened, shapes: tuple[tuple, tuple]) -> None:
    n = wx.xc.shape[0]
    if wx.k == 0 or wy.k == 0:
        which = "x" if wx.k == 0 else "y"
        raise ValueError(f"{which} has no variance (all columns constant); CCA is undefined")
    if n <= wx.k + wy.k:
        raise UnderdeterminedError(
            f"CCA is underdetermined: {n} samples for {wx.k} + {wy.k} directions "
            f"(x {shapes[0]}, y {shapes[1]} after dropping constant/negligible directions); "
            f"need n_samples > dims_x + dims_y, ideally several times more. Use more "
            f"datapoints (more images or more spatial positions per image), fewer features "
            f"(average-pool, subsample channels, or SVCCA with a smaller keep)."
        )


def _basis(w: _Whitened) -> torch.Tensor:
    return w.basis if w.basis is not None else (w.xc @ w.v) / w.s


def _cross(wx: _Whitened, wy: _Whitened, epsilon: float) -> torch.Tensor:
    """The whitened cross matrix whose singular values are the canonical correlations."""
    if wx.basis is None and wy.basis is None:
        c = (wx.v.T @ (wx.xc.T @ wy.xc) @ wy.v) / (wx.s[:, None] * wy.s[None, :])
    else:
        c = _basis(wx).T @ _basis(wy)
    if epsilon:
        n = wx.xc.shape[0]
        dx = wx.s / torch.sqrt(wx.s**2 + epsilon * (n - 1))
        dy = wy.s / torch.sqrt(wy.s**2 + epsilon * (n - 1))
        c = dx[:, None] * c * dy[None, :]
    return c


def _cca(
    x: Array, y: Array, *, epsilon: float, method: Method, rank_tol: float | None, need_u: bool
) -> tuple[torch.Tensor, torch.Tensor | None, _Whitened, _Whitened]:
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    tx, ty = as_pair(x, y)
    wx, wy = _whiten_pair(tx, ty, method, rank_tol)
    _check_determined(wx, wy, (tuple(tx.shape), tuple(ty.shape)))
    c = _cross(wx, wy, epsilon)
    if need_u:
        u, rho, _ = torch.linalg.svd(c, full_matrices=False)
    else:
        u, rho = None, torch.linalg.svdvals(c)
    return rho.clamp(0.0, 1.0), u, wx, wy


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
    whitening route (see the module docstring); ``rank_tol`` is the relative singular
    value below which a direction counts as negligible (qr route). Returns
    ``min(k_x, k_y)`` values in [0, 1]. Raises :class:`UnderdeterminedError` when
    ``n_samples <= k_x + k_y``.
    """
    rho, _, _, _ = _cca(x, y, epsilon=epsilon, method=method, rank_tol=rank_tol, need_u=False)
    return rho.cpu().numpy()


def mean_cca(x: Array, y: Array, **kwargs) -> float:
    """Mean of all canonical correlations (plain CCA similarity)."""
    return float(np.mean(cca_coefficients(x, y, **kwargs)))


# --------------------------------------------------------------------------- SVCCA
@dataclass(frozen=True)
class SVCCAResult:
    """SVCCA outcome: the canonical correlations and how many SV directions were kept."""

    coefficients: np.ndarray
    dims_x: int
    dims_y: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.coefficients))


def _n_keep(share: torch.Tensor, keep: float | int, name: str) -> int:
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


def _sv_reduce(
    t: torch.Tensor, keep: float | int, method: Method, rank_tol: float | None, name: str
) -> _Whitened:
    """The block reduced to its top ``k`` singular directions, already whitened.

    The reduced data ``X V_k`` has orthogonal columns of norms ``s_k``, so its
    orthonormal basis is ``X V_k / s_k`` (tall blocks, from the eigendecomposition of
    ``X^T X``) or ``U_k`` (wide blocks, n <= d, from ``X X^T``): no second whitening is
    needed. When the kept directions span more than ``1 / GRAM_MIN_EIGEN_RATIO`` in
    squared singular value, or with ``method="qr"``, QR + SVD of R is used instead.
    """
    xc = _prepare(t)
    n, d = xc.shape
    if d == 0:
        raise ValueError(f"{name} has no variance (all columns constant); SVCCA is undefined")
    tol = (max(n, d) * _EPS64) if rank_tol is None else rank_tol
    if method != "qr":
        wide = n <= d
        lam, vecs = torch.linalg.eigh(xc @ xc.T if wide else xc.T @ xc)
        lam, vecs = lam.flip(0).clamp_min(0.0), vecs.flip(1)
        s = lam.sqrt()
        r = int((s > s[0] * tol).sum()) if float(s[0]) > 0 else 0
        k = _n_keep(lam[:r], keep, name)
        if k > 0 and float(lam[k - 1]) >= GRAM_MIN_EIGEN_RATIO * float(lam[0]):
            if wide:
                return _Whitened(xc=xc, s=s[:k], v=(xc.T @ vecs[:, :k]) / s[:k], basis=vecs[:, :k])
            return _Whitened(xc=xc, s=s[:k], v=vecs[:, :k], basis=None)
        if method == "gram":
            raise ValueError(
                f"method='gram' refused: {name}'s kept directions are too ill-conditioned; use method='qr'"
            )
    w = _whiten_qr(xc, rank_tol)
    k = _n_keep(w.s**2, keep, name)
    return _Whitened(xc=xc, s=w.s[:k], v=w.v[:, :k], basis=w.basis[:, :k])


def svcca_details(
    x: Array,
    y: Array,
    keep: float | int = 0.99,
    *,
    epsilon: float = 0.0,
    method: Method = "auto",
    rank_tol: float | None = None,
) -> SVCCAResult:
    """SVCCA (Raghu et al. 2017): SVD-reduce each block, then CCA on the reduced blocks.

    ``keep`` float: the smallest number of top singular directions whose squared singular
    values reach that share of the total (0.99 in the paper); int: exactly that many
    (capped at the rank). Raises :class:`UnderdeterminedError` when
    ``n_samples <= dims_x + dims_y``.
    """
    if method not in ("auto", "qr", "gram"):
        raise ValueError(f"method must be 'auto', 'qr' or 'gram', got {method!r}")
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    tx, ty = as_pair(x, y)
    wx = _sv_reduce(tx, keep, method, rank_tol, "x")
    wy = _sv_reduce(ty, keep, method, rank_tol, "y")
    _check_determined(wx, wy, (tuple(tx.shape), tuple(ty.shape)))
    rho = torch.linalg.svdvals(_cross(wx, wy, epsilon)).clamp(0.0, 1.0)
    return SVCCAResult(coefficients=rho.cpu().numpy(), dims_x=wx.k, dims_y=wy.k)


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
    """Projection-weighted CCA (Morcos et al. 2018), weighted from ``x``'s side.

    Weight of canonical pair ``i``: ``sum_j |corr(h_i, x_j)|`` over ``x``'s (non-constant)
    neurons ``x_j``, where ``h_i`` is ``x``'s i-th canonical variate; weights are
    normalised to sum to 1 and the result is ``sum_i w_i rho_i``. Asymmetric by design:
    swap the arguments to weight by ``y``'s neurons.
    """
    rho, u, wx, _ = _cca(x, y, epsilon=epsilon, method=method, rank_tol=rank_tol, need_u=True)
    # h = B_x u has unit norm and B_x^T X = S V^T, so h^T x_j = (u^T S V^T)_j.
    proj = u.T @ (wx.s[:, None] * wx.v.T)  # (n_pairs, d_used)
    norms = torch.linalg.vector_norm(wx.xc, dim=0)
    corr = proj / norms[None, :]
    weights = corr.abs().sum(dim=1)
    weights = weights / weights.sum()
    return float((weights * rho).sum())
