"""Linear centred kernel alignment (Kornblith et al. 2019).

``CKA(X, Y) = HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y))`` with linear kernels on centred
activations. The biased estimator reduces to ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``
(feature-space form, used when ``n`` is large against the widths; the sample-space Gram
form ``<XX^T, YY^T>`` is used otherwise -- they are equal). The biased estimator inflates
the similarity of independent data at small ``n``.

``debiased=True`` uses the unbiased HSIC estimator of Song et al. (2012). For centred
data (so ``K 1 = 0``) with row norms ``a_i = |x_i|^2``, ``b_i = |y_i|^2`` and totals
``A``, ``B``, its numerator (up to a factor that cancels in CKA) is
``||Y^T X||_F^2 - n/(n-2) a.b + A B / ((n-1)(n-2))``. It is near 0 for independent data
and can be negative.
"""

from __future__ import annotations

import torch

from tlcore.similarity._common import Array, as_pair, centre


def _cross_sq(x: torch.Tensor, y: torch.Tensor, feature_space: bool) -> torch.Tensor:
    """||Y^T X||_F^2 computed in feature space or through the n x n Gram matrices."""
    if feature_space:
        return torch.linalg.matrix_norm(x.T @ y) ** 2
    return ((x @ x.T) * (y @ y.T)).sum()


def _hsic(
    x: torch.Tensor, y: torch.Tensor, debiased: bool, feature_space: bool
) -> torch.Tensor:
    value = _cross_sq(x, y, feature_space)
    if not debiased:
        return value
    n = x.shape[0]
    a = (x * x).sum(dim=1)
    b = (y * y).sum(dim=1)
    return value - n / (n - 2) * (a @ b) + a.sum() * b.sum() / ((n - 1) * (n - 2))


def linear_cka(x: Array, y: Array, debiased: bool = False) -> float:
    """Linear CKA between ``x`` (n, d_x) and ``y`` (n, d_y); 1 means identical up to
    rotation and isotropic scaling. ``debiased=True`` needs at least 4 samples."""
    tx, ty = as_pair(x, y)
    n, dx = tx.shape
    dy = ty.shape[1]
    if debiased and n < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, got {n}")
    xc, yc = centre(tx), centre(ty)
    feature_space = dx * dy + dx * dx + dy * dy <= n * (dx + dy + 1)
    xy = _hsic(xc, yc, debiased, feature_space)
    xx = _hsic(xc, xc, debiased, feature_space)
    yy = _hsic(yc, yc, debiased, feature_space)
    for val, name in ((xx, "x"), (yy, "y")):
        if not float(val) > 0.0:
            raise ValueError(
                f"{name} has no usable variance (HSIC({name},{name}) = {float(val):.3g}); CKA is undefined"
            )
    return float(xy / torch.sqrt(xx * yy))
