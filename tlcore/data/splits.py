"""Seeded, stratified, nested, patient-grouped splits of a target dataset.

:func:`make_target_split` divides a dataset into a fine-tuning *pool* (``pool_fraction``,
20 %) and a *test* set (the rest), stratified by label. Smaller fine-tuning portions are
nested inside the pool: with the default fractions ``(0.1, 0.2)``, ``ft_0.1`` is a
stratified half of the pool and ``ft_0.2`` is the whole pool, so ``ft_0.1`` is a subset
of ``ft_0.2``. Each *ring* (``ft_0.1``, then ``ft_0.2`` minus ``ft_0.1``) is further split
into training and validation (``val_fraction``, for early stopping), so training and
validation sets are nested too. The test set depends only on the records, the seed and
``pool_fraction``: every fine-tuning configuration of one seed is scored on the same images.

Patient grouping: where records carry ``patient`` (CBIS-DDSM, INbreast), all images of
one patient land on the same side of every boundary (pool/test, ring/ring, train/val).
The assignment is greedy: patient groups, largest first (ties in seeded random order),
go to the side whose per-class targets they overshoot least; the best of
``SplitConfig.attempts`` seeded orderings is kept.

Tolerance: without patient groups every part gets exactly ``round(fraction * n_class)``
images of each class (raised to the per-class minimum). With groups a class count can
miss its target by at most the size of the largest patient group in practice (0 to 2
images on INbreast-like data, 1 to 5 images per patient).

Minimums: the test set and both the training and the validation part of the smallest
fine-tuning portion hold at least ``min_per_class`` images of every class (so AUC is
defined on each); a dataset that cannot give that raises ValueError naming the class
and its counts. Records are put in ``image_id`` order first, so the result does not
depend on the order a reader lists files in.

Manifests (:meth:`TargetSplit.manifest`) hold only anonymous image ids, never patients.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tlcore.data.records import MALIGNANT, ImageRecord

_TRAIN_SPLITS = {"train", "training"}
_TEST_SPLITS = {"test", "testing"}


@dataclass(frozen=True)
class SplitConfig:
    """Settings of :func:`make_target_split` and :func:`official_split`."""

    seed: int = 0
    pool_fraction: float = 0.2
    val_fraction: float = 0.25  # share of a fine-tuning portion held out for early stopping
    ft_fractions: tuple[float, ...] = (0.1, 0.2)  # nested portions; the largest equals pool_fraction
    min_per_class: int = 1
    attempts: int = 16

    def __post_init__(self) -> None:
        fr = tuple(sorted(float(f) for f in self.ft_fractions))
        object.__setattr__(self, "ft_fractions", fr)
        if not 0.0 < self.pool_fraction < 1.0:
            raise ValueError(f"SplitConfig.pool_fraction must be in (0, 1), got {self.pool_fraction!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"SplitConfig.val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if not fr or fr[0] <= 0.0 or len(set(fr)) != len(fr):
            raise ValueError(f"SplitConfig.ft_fractions must be distinct positive fractions, got {self.ft_fractions!r}")
        if not math.isclose(fr[-1], self.pool_fraction):
            raise ValueError(
                f"SplitConfig: the largest fine-tuning fraction ({fr[-1]}) must equal pool_fraction "
                f"({self.pool_fraction})"
            )
        if self.min_per_class < 0 or self.attempts < 1:
            raise ValueError("SplitConfig.min_per_class must be >= 0 and attempts >= 1")


@dataclass
class FineTuneSplit:
    """The images of one fine-tuning configuration: ``train`` and early-stopping ``val``."""

    fraction: float
    train: list[ImageRecord]
    val: list[ImageRecord]

    @property
    def is_empty(self) -> bool:
        return not self.train and not self.val


@dataclass
class _Ring:
    name: str  # manifest role: "ft_0.1", "ft_0.2_only"
    fraction: float
    train: list[ImageRecord]
    val: list[ImageRecord]


def _fmt(f: float) -> str:
    return f"{f:g}"


def _manifest_hash(rows: list[dict[str, str]]) -> str:
    ordered = sorted(rows, key=lambda r: r["image_id"])
    return hashlib.sha256(json.dumps(ordered, sort_keys=True).encode("utf-8")).hexdigest()[:12]


@dataclass
class TargetSplit:
    """Test set, fine-tuning pool and the nested fine-tuning portions of one seed."""

    config: SplitConfig
    test: list[ImageRecord]
    pool: list[ImageRecord]
    rings: list[_Ring] = field(repr=False)

    @property
    def fractions(self) -> tuple[float, ...]:
        """The fine-tuning fractions :meth:`finetune` accepts (besides 0)."""
        return tuple(r.fraction for r in self.rings)

    def finetune(self, fraction: float) -> FineTuneSplit:
        """Training and validation images of the ``fraction`` configuration (0 gives an empty split)."""
        if fraction == 0:
            return FineTuneSplit(0.0, [], [])
        for k, ring in enumerate(self.rings):
            if math.isclose(ring.fraction, fraction):
                inner = self.rings[: k + 1]
                return FineTuneSplit(
                    ring.fraction,
                    [r for g in inner for r in g.train],
                    [r for g in inner for r in g.val],
                )
        valid = ", ".join(["0"] + [_fmt(f) for f in self.fractions])
        raise ValueError(f"no fine-tuning portion of fraction {fraction!r}; valid fractions: {valid}")

    def manifest(self) -> list[dict[str, str]]:
        """One row per image: ``image_id``, ``role`` (``test``, ``ft_0.1``, ``ft_0.2_only``...)
        and ``part`` (``test``, ``train`` or ``val``). No patient identifiers."""
        rows = [{"image_id": r.image_id, "role": "test", "part": "test"} for r in self.test]
        for ring in self.rings:
            rows += [{"image_id": r.image_id, "role": ring.name, "part": "train"} for r in ring.train]
            rows += [{"image_id": r.image_id, "role": ring.name, "part": "val"} for r in ring.val]
        return rows

    @property
    def split_hash(self) -> str:
        """Short hash (12 hex) of the manifest: equal hashes mean identical splits."""
        return _manifest_hash(self.manifest())

    def summary(self) -> dict[str, dict[str, int]]:
        """Image counts per part and label (safe to log)."""
        out = {"test": _counts(self.test), "pool": _counts(self.pool)}
        for f in self.fractions:
            ft = self.finetune(f)
            out[f"ft_{_fmt(f)}_train"] = _counts(ft.train)
            out[f"ft_{_fmt(f)}_val"] = _counts(ft.val)
        return out


@dataclass
class OfficialSplit:
    """The distributor's train/test split plus a patient-grouped validation subset of train."""

    config: SplitConfig
    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]

    def manifest(self) -> list[dict[str, str]]:
        """One row per image: ``image_id``, ``role`` (``official``) and ``part``."""
        return [
            {"image_id": r.image_id, "role": "official", "part": part}
            for part, recs in (("train", self.train), ("val", self.val), ("test", self.test))
            for r in recs
        ]

    @property
    def split_hash(self) -> str:
        return _manifest_hash(self.manifest())

    def summary(self) -> dict[str, dict[str, int]]:
        return {"train": _counts(self.train), "val": _counts(self.val), "test": _counts(self.test)}


# ---------------------------------------------------------------------- public functions


def make_target_split(records: Sequence[ImageRecord], config: SplitConfig | None = None) -> TargetSplit:
    """Split a target dataset into test / nested fine-tuning portions (see the module docs)."""
    config = config or SplitConfig()
    recs = _canonical(records)
    labels = np.asarray([r.label for r in recs], dtype=np.int64)
    groups = _group_ids(recs)
    m = config.min_per_class
    need_val = config.val_fraction > 0
    inner_min = m * (2 if need_val else 1)  # the smallest portion must feed train and val
    _check_counts(recs, labels, needed=m + inner_min, what=_needs_text(config, m))

    all_idx = np.arange(len(recs))
    in_pool = _group_split(
        labels, groups, all_idx, config.pool_fraction, config, stage=0, min_a=inner_min, min_b=m,
        what="fine-tuning pool / test set", dataset=_name(recs),
    )
    pool_idx, test_idx = all_idx[in_pool], all_idx[~in_pool]

    # Nested levels, largest first: each level is a stratified part of the one above.
    fr = config.ft_fractions
    levels = [pool_idx]
    for k in range(len(fr) - 2, -1, -1):
        parent = levels[0]
        sel = _group_split(
            labels, groups, parent, fr[k] / fr[k + 1], config, stage=10 + k, min_a=inner_min, min_b=0,
            what=f"ft_{_fmt(fr[k])} portion", dataset=_name(recs),
        )
        levels.insert(0, parent[sel])
    rings: list[_Ring] = []
    prev: np.ndarray = np.zeros(0, dtype=np.int64)
    for k, (f, level) in enumerate(zip(fr, levels, strict=True)):
        ring_idx = np.setdiff1d(level, prev)
        first = k == 0
        if need_val:
            is_val = _group_split(
                labels, groups, ring_idx, config.val_fraction, config, stage=100 + k,
                min_a=m if first else 0, min_b=m if first else 0,
                what=f"ft_{_fmt(f)} validation", dataset=_name(recs),
            )
        else:
            is_val = np.zeros(ring_idx.size, dtype=bool)
        name = f"ft_{_fmt(f)}" if first else f"ft_{_fmt(f)}_only"
        rings.append(
            _Ring(name, f, [recs[i] for i in ring_idx[~is_val]], [recs[i] for i in ring_idx[is_val]])
        )
        prev = level
    return TargetSplit(
        config=config,
        test=[recs[i] for i in test_idx],
        pool=[recs[i] for i in pool_idx],
        rings=rings,
    )


def official_split(records: Sequence[ImageRecord], config: SplitConfig | None = None) -> OfficialSplit:
    """CBIS-DDSM: train/test from ``record.split``; validation carved from train by patient.

    The distributor's split is kept as is (a few patients occur in both train and test);
    the validation subset is stratified, patient-grouped and ``val_fraction`` of train.
    """
    config = config or SplitConfig()
    recs = _canonical(records)
    unknown = [r for r in recs if (r.split or "").lower() not in _TRAIN_SPLITS | _TEST_SPLITS]
    if unknown:
        raise ValueError(
            f"official_split: {len(unknown)} of {len(recs)} records have no train/test split "
            f"(e.g. {unknown[0].image_id} has split={unknown[0].split!r})"
        )
    train = [r for r in recs if r.split.lower() in _TRAIN_SPLITS]  # type: ignore[union-attr]
    test = [r for r in recs if r.split.lower() in _TEST_SPLITS]  # type: ignore[union-attr]
    if not train:
        raise ValueError(f"official_split: no record of {_name(recs)} is in the training split")
    labels = np.asarray([r.label for r in train], dtype=np.int64)
    groups = _group_ids(train)
    m = config.min_per_class
    if config.val_fraction > 0:
        _check_counts(train, labels, needed=2 * m, what=f"{m} for training and {m} for validation")
        idx = np.arange(len(train))
        is_val = _group_split(
            labels, groups, idx, config.val_fraction, config, stage=200, min_a=m, min_b=m,
            what="official train / validation", dataset=_name(recs),
        )
    else:
        is_val = np.zeros(len(train), dtype=bool)
    return OfficialSplit(
        config=config,
        train=[r for r, v in zip(train, is_val, strict=True) if not v],
        val=[r for r, v in zip(train, is_val, strict=True) if v],
        test=test,
    )


# ---------------------------------------------------------------------- helpers


def _canonical(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    recs = sorted(records, key=lambda r: r.image_id)
    if not recs:
        raise ValueError("cannot split an empty list of records")
    for a, b in zip(recs, recs[1:], strict=False):
        if a.image_id == b.image_id:
            raise ValueError(f"duplicate image_id {a.image_id!r}: every record must have its own id")
    return recs


def _name(recs: Sequence[ImageRecord]) -> str:
    names = sorted({r.dataset for r in recs})
    return names[0] if len(names) == 1 else "+".join(names)


def _group_ids(recs: Sequence[ImageRecord]) -> np.ndarray:
    """Integer group per record: one per (dataset, patient); records without patient are alone."""
    ids: dict[tuple[str, str], int] = {}
    out = np.empty(len(recs), dtype=np.int64)
    for i, r in enumerate(recs):
        key = (r.dataset, r.patient) if r.patient else ("\0image", r.image_id)
        out[i] = ids.setdefault(key, len(ids))
    return out


def _class_name(c: int) -> str:
    return f"{c} (malignant)" if c == MALIGNANT else f"{c} (not malignant)" if c == 0 else str(c)


def _counts(recs: Sequence[ImageRecord]) -> dict[str, int]:
    out = {"n": len(recs), "malignant": sum(r.label == MALIGNANT for r in recs)}
    out["not_malignant"] = out["n"] - out["malignant"]
    return out


def _needs_text(config: SplitConfig, m: int) -> str:
    smallest = _fmt(config.ft_fractions[0])
    if config.val_fraction > 0:
        return f"{m} for the test set and {m} each for training and validation in ft_{smallest}"
    return f"{m} for the test set and {m} for training in ft_{smallest}"


def _check_counts(recs: Sequence[ImageRecord], labels: np.ndarray, needed: int, what: str) -> None:
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise ValueError(
            f"{_name(recs)}: all {len(recs)} images have label {_class_name(int(classes[0]))}; "
            "a stratified split needs both classes"
        )
    for c, n in zip(classes, counts, strict=True):
        if n < needed:
            raise ValueError(
                f"{_name(recs)}: class {_class_name(int(c))} has {n} images, fewer than the {needed} "
                f"needed ({what})"
            )


def _group_split(
    labels: np.ndarray,
    groups: np.ndarray,
    idx: np.ndarray,
    fraction: float,
    config: SplitConfig,
    *,
    stage: int,
    min_a: int,
    min_b: int,
    what: str,
    dataset: str,
) -> np.ndarray:
    """Boolean mask over ``idx``: True for side A (about ``fraction`` of each class), groups intact."""
    if idx.size == 0:
        return np.zeros(0, dtype=bool)
    classes = np.unique(labels)
    lab = np.searchsorted(classes, labels[idx])
    grp_u, grp_inv = np.unique(groups[idx], return_inverse=True)
    n_cls = classes.size
    gcount = np.zeros((grp_u.size, n_cls), dtype=np.int64)
    np.add.at(gcount, (grp_inv, lab), 1)
    total = gcount.sum(axis=0)
    target = np.floor(fraction * total + 0.5).astype(np.int64)
    present = total > 0
    lo_a = np.where(present, min_a, 0)
    lo_b = np.where(present, min_b, 0)
    for c in range(n_cls):
        if present[c] and lo_a[c] + lo_b[c] > total[c]:
            raise ValueError(
                f"{dataset}: class {_class_name(int(classes[c]))} has {total[c]} images at the {what} split; "
                f"at least {lo_a[c] + lo_b[c]} are needed ({lo_a[c]} + {lo_b[c]})"
            )
    target = np.clip(target, lo_a, total - lo_b)
    target_b = total - target
    sizes = gcount.sum(axis=1)

    best: np.ndarray | None = None
    best_score = None
    for attempt in range(config.attempts):
        rng = np.random.default_rng([config.seed, stage, attempt])
        order = rng.permutation(grp_u.size)
        if attempt % 2 == 0:  # largest groups first, random among equals
            order = order[np.argsort(-sizes[order], kind="stable")]
        in_a = np.zeros(grp_u.size, dtype=bool)
        a = np.zeros(n_cls, dtype=np.int64)
        b = np.zeros(n_cls, dtype=np.int64)
        for g in order:
            v = gcount[g]
            over_a = int(np.maximum(a + v - target, 0).sum())
            over_b = int(np.maximum(b + v - target_b, 0).sum())
            if over_a == over_b:
                need_a = (target.sum() - a.sum()) / max(int(target.sum()), 1)
                need_b = (target_b.sum() - b.sum()) / max(int(target_b.sum()), 1)
                go_a = need_a > need_b
            else:
                go_a = over_a < over_b
            if go_a:
                in_a[g] = True
                a += v
            else:
                b += v
        feasible = bool(np.all(a >= lo_a) and np.all(b >= lo_b))
        score = (not feasible, int(np.abs(a - target).sum()))
        if best_score is None or score < best_score:
            best, best_score = in_a, score
        if best_score == (False, 0):
            break
    assert best is not None and best_score is not None
    if best_score[0]:
        a = gcount[best].sum(axis=0)
        b = total - a
        bad = [c for c in range(n_cls) if a[c] < lo_a[c] or b[c] < lo_b[c]]
        c = bad[0]
        n_groups = int((gcount[:, c] > 0).sum())
        raise ValueError(
            f"{dataset}: cannot make the {what} split without splitting a patient: class "
            f"{_class_name(int(classes[c]))} has {total[c]} images in {n_groups} patient group(s), and each side "
            f"needs at least {lo_a[c]} and {lo_b[c]}"
        )
    return best[grp_inv]
