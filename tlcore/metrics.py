"""Classification metrics for the study: ROC AUC, confidence intervals and DeLong's test.

Everything here is plain numpy / pandas / scikit-learn and knows nothing of tracking.
Labels are binary (1 = malignant, 0 = not malignant); scores are any real numbers where a
larger value means "more likely malignant".

* :func:`roc_auc` -- the AUC, refusing (``ValueError``) when a class is absent instead
  of returning NaN.
* :func:`bootstrap_auc_ci` -- stratified percentile bootstrap, vectorised over resamples.
* :func:`delong_test` / :func:`delong_ci` -- DeLong et al. (1988) variance of one AUC or of
  the difference of two correlated AUCs measured on the same cases, computed with the
  midrank algorithm of Sun & Xu (2014), O(n log n).
* :func:`combine_differences` -- inverse-variance combination of several seeds' DeLong
  differences (each on its own seed's test set); :func:`holm` -- Holm's step-down
  adjustment over a family of tests.
* :func:`evaluate_scores` -- the bundle a training run reports (AUC, CI, counts, and the
  per-image prediction table).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

ArrayLike = Sequence[float] | np.ndarray

# Bootstrap work is done in blocks of at most this many (resample x distinct value) cells.
_BOOT_BLOCK_CELLS = 4_000_000


# --------------------------------------------------------------------------- validation
def _check_inputs(labels: Any, scores: Any, *, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Return (labels as int8 0/1, scores as float64), both 1-D and of equal length."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and {name} must be 1-D; got shapes {y.shape} and {s.shape}")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"labels and {name} differ in length: {y.shape[0]} labels vs {s.shape[0]} {name}")
    if y.shape[0] == 0:
        raise ValueError("no cases: labels and scores are empty")
    if not np.all(np.isfinite(s)):
        bad = int(np.sum(~np.isfinite(s)))
        raise ValueError(f"{name} contain {bad} non-finite value(s) (NaN or inf)")
    try:
        yf = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"labels must be 0/1 numbers, got dtype {y.dtype}") from exc
    if not np.all((yf == 0) | (yf == 1)):
        odd = sorted({float(v) for v in np.unique(yf) if v not in (0.0, 1.0)})[:5]
        raise ValueError(f"labels must be 0 or 1; found other values {odd}")
    return yf.astype(np.int8), s


def _require_both_classes(y: np.ndarray) -> tuple[int, int]:
    n_pos = int(y.sum())
    n_neg = int(y.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        present = 1 if n_pos else 0
        raise ValueError(
            f"test set has only class {present} (n={y.shape[0]}); AUC is undefined"
        )
    return n_pos, n_neg


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # rank of the last member of each tie group
    mid = upper - (counts - 1) / 2.0
    return mid[inverse]


# --------------------------------------------------------------------------- AUC
def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (ties count one half).

    Raises ``ValueError`` when only one class is present rather than returning NaN.
    """
    y, s = _check_inputs(labels, scores)
    _require_both_classes(y)
    return float(roc_auc_score(y, s))


def bootstrap_auc_ci(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified percentile bootstrap confidence interval for the AUC.

    Positives and negatives are resampled separately (each with replacement, keeping the
    class counts), so every resample has both classes. Each resample's AUC is computed
    exactly, ties included, from per-resample histograms over the distinct score values;
    the work is vectorised over blocks of resamples (no Python loop per resample).
    Returns ``(low, high)``, the ``(1-level)/2`` and ``(1+level)/2`` quantiles.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    y, s = _check_inputs(labels, scores)
    _require_both_classes(y)
    aucs = _bootstrap_aucs(s[y == 1], s[y == 0], n_boot=n_boot, seed=seed)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(aucs, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _bootstrap_aucs(pos: np.ndarray, neg: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """AUC of ``n_boot`` stratified resamples (vectorised, exact with ties)."""
    rng = np.random.default_rng(seed)
    n_pos, n_neg = pos.shape[0], neg.shape[0]
    # Dense codes of every score among all distinct values: ties stay ties.
    values, codes = np.unique(np.concatenate([pos, neg]), return_inverse=True)
    k = values.shape[0]
    pos_codes, neg_codes = codes[:n_pos], codes[n_pos:]
    block = max(1, min(n_boot, _BOOT_BLOCK_CELLS // max(k, n_pos, n_neg)))
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        pi = rng.integers(0, n_pos, size=(b, n_pos))
        ni = rng.integers(0, n_neg, size=(b, n_neg))
        # Histogram of resampled negatives over the distinct values, one row per resample.
        flat = neg_codes[ni] + (np.arange(b)[:, None] * k)
        hist = np.bincount(flat.ravel(), minlength=b * k).reshape(b, k).astype(np.float64)
        below = np.cumsum(hist, axis=1) - hist  # negatives strictly below each value
        pc = pos_codes[pi]
        wins = np.take_along_axis(below, pc, axis=1) + 0.5 * np.take_along_axis(hist, pc, axis=1)
        out[start : start + b] = wins.sum(axis=1) / (n_pos * n_neg)
    return out


# --------------------------------------------------------------------------- DeLong
@dataclass(frozen=True)
class DelongResult:
    """DeLong comparison of two correlated AUCs (``diff = auc_a - auc_b``)."""

    auc_a: float
    auc_b: float
    diff: float
    se: float
    z: float
    p_value: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _structural_components(
    y: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong structural components for ``scores`` of shape (k, n).

    Returns ``(aucs (k,), v10 (k, n_pos), v01 (k, n_neg))`` where ``v10[r, i]`` is the
    fraction of negatives that positive ``i`` beats under classifier ``r`` (ties 1/2)
    and ``v01[r, j]`` the fraction of positives that beat negative ``j``. Computed from
    midranks (Sun & Xu 2014) instead of the O(n_pos * n_neg) pairwise comparison.
    """
    pos_mask = y == 1
    m = int(pos_mask.sum())
    n = int(y.shape[0] - m)
    k = scores.shape[0]
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    aucs = np.empty(k)
    for r in range(k):
        x = scores[r, pos_mask]
        z = scores[r, ~pos_mask]
        tz = _midranks(np.concatenate([x, z]))
        tx = _midranks(x)
        ty = _midranks(z)
        v10[r] = (tz[:m] - tx) / n
        v01[r] = 1.0 - (tz[m:] - ty) / m
        aucs[r] = (tz[:m].sum() / m - (m + 1) / 2.0) / n
    return aucs, v10, v01


def _delong_covariance(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = int(y.sum())
    n = int(y.shape[0] - m)
    if m < 2 or n < 2:
        raise ValueError(
            f"DeLong variance needs at least 2 cases of each class; got {m} positive and {n} negative"
        )
    aucs, v10, v01 = _structural_components(y, scores)
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return aucs, s10 / m + s01 / n


_Z95 = NormalDist().inv_cdf(0.975)


def _z_score(estimate: float, se: float) -> float:
    """``estimate / se``; with ``se == 0``: 0 for no difference (identical rankings), else +-inf."""
    if se > 0.0:
        return estimate / se
    if abs(estimate) < 1e-15:
        return 0.0
    return math.copysign(math.inf, estimate)


def _two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def delong_test(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> DelongResult:
    """DeLong's test for two correlated AUCs measured on the same cases.

    ``z = (auc_a - auc_b) / se`` with the DeLong (1988) covariance of the two AUCs;
    ``p_value`` is two-sided. Identical scores give ``diff = 0``, ``z = 0``, ``p = 1``.
    Needs at least two cases of each class.
    """
    y, sa = _check_inputs(labels, scores_a, name="scores_a")
    _, sb = _check_inputs(labels, scores_b, name="scores_b")
    _require_both_classes(y)
    aucs, cov = _delong_covariance(y, np.vstack([sa, sb]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    z = _z_score(diff, se)
    return DelongResult(
        auc_a=float(aucs[0]), auc_b=float(aucs[1]), diff=diff, se=se, z=z, p_value=_two_sided_p(z)
    )


def delong_contrast(labels: ArrayLike, scores: ArrayLike, weights: Sequence[float]) -> DelongResult:
    """DeLong test of a linear contrast of several correlated AUCs measured on the same cases.

    ``scores`` has shape (k, n): one row per classifier; the estimate is
    ``sum(weights * aucs)`` with the DeLong covariance of all k AUCs, so classifiers that
    share test cases (several models' DDSM and random runs on one seed's test set) are
    compared without assuming independence. ``auc_a`` / ``auc_b`` are the weighted means
    of the AUCs with positive / negative weights. ``weights = (1, -1)`` is
    :func:`delong_test`.
    """
    matrix = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    w = np.asarray(weights, dtype=np.float64)
    if matrix.shape[0] != w.size:
        raise ValueError(f"{matrix.shape[0]} score rows but {w.size} weights")
    y, _ = _check_inputs(labels, matrix[0], name="scores")
    for row in matrix[1:]:
        _check_inputs(labels, row, name="scores")
    _require_both_classes(y)
    aucs, cov = _delong_covariance(y, matrix)
    estimate = float(w @ aucs)
    se = math.sqrt(max(float(w @ cov @ w), 0.0))
    z = _z_score(estimate, se)
    pos, neg = w > 0, w < 0
    auc_a = float(np.average(aucs[pos], weights=w[pos])) if pos.any() else math.nan
    auc_b = float(np.average(aucs[neg], weights=-w[neg])) if neg.any() else math.nan
    return DelongResult(auc_a=auc_a, auc_b=auc_b, diff=estimate, se=se, z=z, p_value=_two_sided_p(z))


@dataclass(frozen=True)
class CombinedDifference:
    """AUC differences of several strata (e.g. seeds) combined by inverse-variance weighting.

    ``diff`` is the weighted mean difference, ``se`` its standard error, ``z``/``p_value``
    the two-sided test of no difference, ``ci_low``/``ci_high`` the 95% normal interval;
    ``n`` the number of strata combined.
    """

    diff: float
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def combine_differences(diffs: Sequence[float], ses: Sequence[float]) -> CombinedDifference:
    """Fixed-effect (inverse-variance) combination of independent strata's AUC differences.

    Each stratum is one seed's DeLong comparison on that seed's test set. With every
    ``se > 0`` the weights are ``1 / se**2``; when some stratum has ``se == 0`` (identical
    rankings) the plain mean is used with ``var = sum(se**2) / n**2``. One stratum gives
    back its own difference and standard error.
    """
    d = np.asarray(diffs, dtype=float)
    v = np.asarray(ses, dtype=float) ** 2
    if d.size == 0 or d.size != v.size or not np.all(np.isfinite(d)) or not np.all(np.isfinite(v)):
        raise ValueError(f"need matching finite differences and standard errors, got {list(diffs)} / {list(ses)}")
    if np.all(v > 0):
        w = 1.0 / v
        diff = float(np.sum(w * d) / np.sum(w))
        se = float(math.sqrt(1.0 / np.sum(w)))
    else:
        diff = float(d.mean())
        se = float(math.sqrt(v.sum()) / d.size)
    z = _z_score(diff, se)
    half = _Z95 * se
    return CombinedDifference(diff=diff, se=se, z=z, p_value=_two_sided_p(z), ci_low=diff - half,
                              ci_high=diff + half, n=int(d.size))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaN entries stay NaN and are not counted)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def delong_ci(labels: ArrayLike, scores: ArrayLike, *, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation CI for one AUC using the DeLong variance, clipped to [0, 1].

    Returns ``(low, high)``. Needs at least two cases of each class.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    y, s = _check_inputs(labels, scores)
    _require_both_classes(y)
    aucs, cov = _delong_covariance(y, s[None, :])
    se = math.sqrt(max(float(cov[0, 0]), 0.0))
    half = NormalDist().inv_cdf(0.5 + level / 2.0) * se
    auc = float(aucs[0])
    return max(0.0, auc - half), min(1.0, auc + half)


# --------------------------------------------------------------------------- tables
def roc_points(labels: ArrayLike, scores: ArrayLike) -> pd.DataFrame:
    """ROC curve as a DataFrame with columns ``fpr``, ``tpr``, ``threshold``.

    One row per distinct score plus the starting point (0, 0) whose threshold is ``inf``
    (scikit-learn's convention).
    """
    y, s = _check_inputs(labels, scores)
    _require_both_classes(y)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


def predictions_table(image_ids: Sequence[str], labels: ArrayLike, scores: ArrayLike) -> pd.DataFrame:
    """Per-image predictions: columns ``image_id`` (str), ``label`` (int), ``score`` (float)."""
    y, s = _check_inputs(labels, scores)
    ids = [str(i) for i in image_ids]
    if len(ids) != y.shape[0]:
        raise ValueError(f"image_ids differ in length from labels: {len(ids)} ids vs {y.shape[0]} labels")
    return pd.DataFrame({"image_id": ids, "label": y.astype(np.int64), "score": s})


@dataclass(frozen=True)
class EvalResult:
    """Test-set summary: AUC with its bootstrap CI and the class counts."""

    auc: float
    ci_low: float
    ci_high: float
    n: int
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def evaluate_scores(
    image_ids: Sequence[str],
    labels: ArrayLike,
    scores: ArrayLike,
    seed: int = 0,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
) -> tuple[EvalResult, pd.DataFrame]:
    """AUC, stratified bootstrap CI and counts, plus the per-image prediction table."""
    table = predictions_table(image_ids, labels, scores)
    y = table["label"].to_numpy()
    s = table["score"].to_numpy()
    auc = roc_auc(y, s)
    low, high = bootstrap_auc_ci(y, s, n_boot=n_boot, level=level, seed=seed)
    n_pos = int(y.sum())
    result = EvalResult(
        auc=auc, ci_low=low, ci_high=high, n=int(y.shape[0]), n_pos=n_pos, n_neg=int(y.shape[0] - n_pos)
    )
    return result, table
