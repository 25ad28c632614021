"""Per-layer similarity tables from two dictionaries of paired activations."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping

import pandas as pd

from tlcore.similarity._common import Array
from tlcore.similarity.cca import mean_cca, pwcca, svcca
from tlcore.similarity.cka import linear_cka


def _measures(keep: float | int, epsilon: float) -> dict[str, Callable[[Array, Array], float]]:
    return {
        "svcca": lambda a, b: svcca(a, b, keep, epsilon=epsilon),
        "pwcca": lambda a, b: pwcca(a, b, epsilon=epsilon),
        "cca": lambda a, b: mean_cca(a, b, epsilon=epsilon),
        "cka": lambda a, b: linear_cka(a, b),
        "cka_debiased": lambda a, b: linear_cka(a, b, debiased=True),
    }


MEASURES = ("svcca", "pwcca", "cca", "cka", "cka_debiased")


def layerwise_similarity(
    acts_a: Mapping[str, Array],
    acts_b: Mapping[str, Array],
    measures: Iterable[str] = ("svcca",),
    keep: float | int = 0.99,
    *,
    epsilon: float = 0.0,
) -> pd.DataFrame:
    """Similarity of each layer under conditions A and B: DataFrame(layer, measure, value).

    ``acts_a`` and ``acts_b`` map the same layer names to paired ``(n_samples, C)``
    activations (row ``i`` is the same datapoint in both). ``measures`` are any of
    ``svcca`` (with ``keep``), ``pwcca``, ``cca`` (mean of all canonical correlations),
    ``cka``, ``cka_debiased``. Layers appear in ``acts_a``'s order.
    """
    table = _measures(keep, epsilon)
    measures = list(measures)
    for m in measures:
        if m not in table:
            close = difflib.get_close_matches(m, MEASURES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown measure {m!r}{hint}; valid: {', '.join(MEASURES)}")
    if set(acts_a) != set(acts_b):
        raise ValueError(
            f"acts_a and acts_b name different layers: only in A {sorted(set(acts_a) - set(acts_b))}, "
            f"only in B {sorted(set(acts_b) - set(acts_a))}"
        )
    rows = []
    for layer in acts_a:
        a, b = acts_a[layer], acts_b[layer]
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                f"layer {layer!r}: A has {a.shape[0]} samples and B has {b.shape[0]}; they must be paired"
            )
        for m in measures:
            rows.append({"layer": layer, "measure": m, "value": float(table[m](a, b))})
    return pd.DataFrame(rows, columns=["layer", "measure", "value"])
