"""Input handling shared by the similarity measures: numpy or torch in, torch float64 inside."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

Array = Any  # numpy.ndarray or torch.Tensor of shape (n_samples, n_features)


def _as_float64(a: Array, device: torch.device | None) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach()
        if device is not None and t.device != device:
            t = t.to(device)
        return t.to(torch.float64)
    arr = np.asarray(a, dtype=np.float64)
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.to(device) if device is not None and device.type != "cpu" else t


def _check_finite(t: torch.Tensor, name: str) -> None:
    # One cheap pass: a NaN or inf anywhere makes its column sum non-finite. Only then is
    # the element-wise test run, to tell bad values from a sum that overflows.
    if bool(torch.isfinite(t.sum(dim=0)).all()):
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values")
    raise ValueError(f"{name} has values so large that their column sums overflow float64")


def as_pair(
    x: Array, y: Array, *, names: tuple[str, str] = ("x", "y"), check_finite: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both inputs as float64 tensors on one device (a torch input's device wins).

    Checks: 2-D, the same number of rows (samples), at least 2 rows, finite values (unless
    ``check_finite=False``: then the caller checks, e.g. with :func:`centred`).
    """
    device = None
    for a in (x, y):
        if isinstance(a, torch.Tensor):
            device = a.device
            break
    tx, ty = _as_float64(x, device), _as_float64(y, device)
    for t, name in zip((tx, ty), names):
        if t.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D (n_samples, n_features); got shape {tuple(t.shape)}"
            )
        if check_finite:
            _check_finite(t, name)
    if tx.shape[0] != ty.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must hold the same samples (rows): "
            f"{names[0]} is {tuple(tx.shape)}, {names[1]} is {tuple(ty.shape)}"
        )
    if tx.shape[0] < 2:
        raise ValueError(f"need at least 2 samples, got {tx.shape[0]}")
    return tx, ty


def centred(t: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t - mean, mean)`` over the columns, raising the finite-values error of
    :func:`as_pair` when a column mean is not finite (numpy on the CPU: one pass cheaper)."""
    if t.device.type == "cpu":
        a = t.numpy()
        with np.errstate(all="ignore"):  # non-finite input is reported below, not warned about
            m = a.mean(axis=0)
            xc, mean = torch.from_numpy(a - m), torch.from_numpy(m)
    else:
        mean = t.mean(dim=0)
        xc = t - mean
    if not bool(torch.isfinite(mean).all()):
        _check_finite(t, name)
    return xc, mean


def centre(t: torch.Tensor) -> torch.Tensor:
    """Subtract each column's mean."""
    return t - t.mean(dim=0, keepdim=True)


def non_constant_columns(
    t: torch.Tensor, mean: torch.Tensor | None = None, sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Boolean mask of columns that are not exactly constant (e.g. dead ReLU units).

    With the column ``mean`` and the centred columns' sums of squares ``sq`` known, only
    the columns whose ``sq`` is small enough to come from a constant column (rounding of
    the mean: ``sq <= n (2 n eps |mean|)^2``) are compared element-wise; the verdict is
    the same as the direct ``max != min`` test, without a pass over every column.
    """
    if mean is None or sq is None:
        return t.amax(dim=0) != t.amin(dim=0)
    n = t.shape[0]
    eps = torch.finfo(torch.float64).eps
    suspect = sq <= n * (2.0 * n * eps * mean.abs()) ** 2
    keep = torch.ones_like(suspect)
    if bool(suspect.any()):
        sub = t[:, suspect]
        keep[suspect] = sub.amax(dim=0) != sub.amin(dim=0)
    return keep


def gram(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``a^T a`` (or ``a^T b``) in float64.

    On the CPU this goes through numpy's BLAS, which computes ``a^T a`` with a symmetric
    rank-k update (half the flops of a general product), limited to torch's intra-op
    thread count (``torch.set_num_threads``) so that one setting governs both libraries.
    Elsewhere (GPU) it is a torch matmul.
    """
    if a.device.type != "cpu" or (b is not None and b.device.type != "cpu"):
        return a.T @ (a if b is None else b)
    an = a.numpy()
    with _blas_threads(torch.get_num_threads()):
        out = an.T @ an if b is None else an.T @ b.numpy()
    return torch.from_numpy(out)


def _blas_threads(n: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl ships with scikit-learn; without it numpy keeps its own count
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")
