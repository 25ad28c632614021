"""The shape of a per-layer similarity curve in one honest word or phrase."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Steps smaller than this (in similarity units) count as flat.
TREND_TOLERANCE = 0.02


def describe_trend(values: Sequence[float], layers: Sequence[str] | None = None,
                   tolerance: float = TREND_TOLERANCE) -> str:
    """``"decreasing"``, ``"increasing"``, ``"flat"``, ``"U-shaped (minimum at block2)"``,
    ``"inverted U (maximum at block2)"`` or ``"mixed"`` for a curve over successive layers.

    Successive differences within ``tolerance`` are flat steps; the curve is monotone when
    every other step has one sign, U-shaped when it falls then rises (one change of sign),
    inverted U when it rises then falls, mixed otherwise. A U is never called decreasing.
    """
    v = np.asarray(values, dtype=float)
    names = list(layers) if layers is not None else [str(i) for i in range(len(v))]
    if v.size < 2 or not np.all(np.isfinite(v)):
        return "undetermined (fewer than two finite layers)"
    steps = np.diff(v)
    signs = [int(np.sign(d)) for d in steps if abs(d) > tolerance]
    if not signs:
        return "flat"
    changes = sum(1 for a, b in zip(signs, signs[1:]) if a != b)
    if changes == 0:
        return "decreasing" if signs[0] < 0 else "increasing"
    if changes == 1:
        if signs[0] < 0:
            return f"U-shaped (minimum at {names[int(np.argmin(v))]})"
        return f"inverted U (maximum at {names[int(np.argmax(v))]})"
    return "mixed"
