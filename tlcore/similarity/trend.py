"""A word for the shape of a per-layer similarity curve (e.g. conv1, block1..block4)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# Steps smaller than this (in similarity units, 0..1) count as flat.
TREND_TOLERANCE = 0.01


def describe_trend(
    values: Mapping[str, float] | Sequence[float],
    layers: Sequence[str] | None = None,
    *,
    tol: float = TREND_TOLERANCE,
) -> str:
    """``"decreasing"``, ``"increasing"``, ``"U-shaped (minimum at L)"``,
    ``"inverted U (maximum at L)"``, ``"flat"`` or ``"mixed"`` for values in layer order.

    ``values``: a mapping layer -> value (its order is the layer order) or a sequence with
    ``layers`` naming its entries (default ``layer0, layer1, ...``). Each step between
    neighbouring layers is up (``> tol``), down (``< -tol``) or level (``|step| <= tol``).
    Level steps are ignored; with only level steps the curve is ``flat``. The remaining
    steps are ``decreasing`` if all down, ``increasing`` if all up, a U if downs then ups
    (one change of direction, named at the smallest value), an inverted U if ups then
    downs, and ``mixed`` otherwise. Raises ValueError for fewer than two values, a NaN,
    or a ``layers`` list of the wrong length.
    """
    if isinstance(values, Mapping):
        if layers is not None:
            raise ValueError("give layers either as the mapping's keys or as `layers`, not both")
        names, vals = [str(k) for k in values], [float(v) for v in values.values()]
    else:
        vals = [float(v) for v in values]
        names = list(layers) if layers is not None else [f"layer{i}" for i in range(len(vals))]
        if len(names) != len(vals):
            raise ValueError(f"{len(vals)} values but {len(names)} layer names")
    if len(vals) < 2:
        raise ValueError(f"a trend needs at least two layers, got {len(vals)}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    for name, v in zip(names, vals):
        if math.isnan(v):
            raise ValueError(f"no trend: the value at layer {name!r} is NaN")
    steps = [b - a for a, b in zip(vals, vals[1:])]
    signs = [1 if s > tol else -1 for s in steps if abs(s) > tol]
    if not signs:
        return "flat"
    changes = sum(1 for a, b in zip(signs, signs[1:]) if a != b)
    if changes == 0:
        return "increasing" if signs[0] > 0 else "decreasing"
    if changes == 1 and signs[0] < 0:
        return f"U-shaped (minimum at {names[vals.index(min(vals))]})"
    if changes == 1 and signs[0] > 0:
        return f"inverted U (maximum at {names[vals.index(max(vals))]})"
    return "mixed"
