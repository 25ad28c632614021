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


def as_pair(x: Array, y: Array, *, names: tuple[str, str] = ("x", "y")) -> tuple[torch.Tensor, torch.Tensor]:
    """Both inputs as float64 tensors on one device (a torch input's device wins).

    Checks: 2-D, the same number of rows (samples), at least 2 rows, finite values.
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
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf values")
    if tx.shape[0] != ty.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must hold the same samples (rows): "
            f"{names[0]} is {tuple(tx.shape)}, {names[1]} is {tuple(ty.shape)}"
        )
    if tx.shape[0] < 2:
        raise ValueError(f"need at least 2 samples, got {tx.shape[0]}")
    return tx, ty


def centre(t: torch.Tensor) -> torch.Tensor:
    """Subtract each column's mean."""
    return t - t.mean(dim=0, keepdim=True)


def non_constant_columns(t: torch.Tensor) -> torch.Tensor:
    """Boolean mask of columns that are not exactly constant (e.g. dead ReLU units)."""
    return t.amax(dim=0) != t.amin(dim=0)
