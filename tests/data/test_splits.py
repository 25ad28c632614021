"""Nested, stratified, patient-grouped splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tlcore.data.records import ImageRecord
from tlcore.data.splits import SplitConfig, make_target_split, official_split


def flat_records(n: int = 322, malignant_every: int = 6, dataset: str = "mias") -> list[ImageRecord]:
    return [
        ImageRecord(image_id=f"{dataset}-{i:04d}", dataset=dataset, path=Path(f"/d/{i}.pgm"),
                    label=int(i % malignant_every == 0))
        for i in range(n)
    ]


def grouped_records(n_patients: int = 115, seed: int = 1, max_per_patient: int = 5) -> list[ImageRecord]:
    """INbreast-like: 1..max images per patient; labels mostly shared within a patient."""
    rng = np.random.default_rng(seed)
    recs, k = [], 0
    for p in range(n_patients):
        sick = rng.random() < 0.3
        for _ in range(int(rng.integers(1, max_per_patient + 1))):
            label = int(sick and rng.random() < 0.7)
            recs.append(ImageRecord(image_id=f"inbreast-{k:04d}", dataset="inbreast", path=Path(f"/d/{k}.dcm"),
                                    label=label, patient=f"PAT{p:03d}"))
            k += 1
    return recs


def ids(recs) -> set[str]:
    return {r.image_id for r in recs}


def n_malignant(recs) -> int:
    return sum(r.label for r in recs)


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("records", [flat_records(), grouped_records()], ids=["flat", "patients"])
def test_parts_are_disjoint_nested_and_cover_everything(records):
    s = make_target_split(records, SplitConfig(seed=0))
    ft1, ft2 = s.finetune(0.1), s.finetune(0.2)
    assert ids(s.test).isdisjoint(ids(s.pool))
    assert ids(s.test) | ids(s.pool) == ids(records)
    assert ids(ft2.train) | ids(ft2.val) == ids(s.pool)
    assert ids(ft1.train) <= ids(ft2.train) and ids(ft1.val) <= ids(ft2.val)  # nested
    for ft in (ft1, ft2):
        assert ids(ft.train).isdisjoint(ids(ft.val))
        assert ids(ft.train + ft.val).isdisjoint(ids(s.test))  # validation never from test
        assert 0 < n_malignant(ft.val) < len(ft.val) and 0 < n_malignant(ft.train) < len(ft.train)
    assert 0 < n_malignant(s.test) < len(s.test)
    assert s.finetune(0.0).is_empty
    with pytest.raises(ValueError, match="valid fractions: 0, 0.1, 0.2"):
        s.finetune(0.15)


def test_sizes_and_stratification_without_patients_are_exact():
    records = flat_records(322, malignant_every=6)  # 54 malignant, 268 not
    s = make_target_split(records)
    assert n_malignant(s.pool) == round(0.2 * 54) and len(s.pool) - n_malignant(s.pool) == round(0.2 * 268)
    ft1 = s.finetune(0.1)
    n1 = len(ft1.train) + len(ft1.val)
    assert abs(n1 - 0.1 * 322) <= 2
    assert abs(n_malignant(ft1.train + ft1.val) - 0.1 * 54) <= 1
    assert abs(len(ft1.val) - 0.25 * n1) <= 2


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_patient_groups_never_cross_a_boundary_and_stay_close_to_targets(seed):
    records = grouped_records(seed=seed)
    s = make_target_split(records, SplitConfig(seed=seed))
    patient = {r.image_id: r.patient for r in records}
    parts = {
        "test": s.test,
        "ft0.1/train": s.finetune(0.1).train,
        "ft0.1/val": s.finetune(0.1).val,
        "ft0.2only/train": [r for r in s.finetune(0.2).train if r.image_id not in ids(s.finetune(0.1).train)],
        "ft0.2only/val": [r for r in s.finetune(0.2).val if r.image_id not in ids(s.finetune(0.1).val)],
    }
    owner: dict[str, str] = {}
    for name, recs in parts.items():
        for r in recs:
            assert owner.setdefault(patient[r.image_id], name) == name, f"patient split across {name}"
    # Documented tolerance: each class within the largest patient group of its target.
    largest = max(sum(1 for r in records if r.patient == p) for p in set(patient.values()))
    for label in (0, 1):
        n_c = sum(r.label == label for r in records)
        in_pool = sum(r.label == label for r in s.pool)
        assert abs(in_pool - 0.2 * n_c) <= largest


def test_deterministic_per_seed_and_independent_of_input_order():
    records = grouped_records()
    a = make_target_split(records, SplitConfig(seed=5))
    b = make_target_split(list(reversed(records)), SplitConfig(seed=5))
    assert a.manifest() == b.manifest() and a.split_hash == b.split_hash
    c = make_target_split(records, SplitConfig(seed=6))
    assert c.split_hash != a.split_hash and ids(c.test) != ids(a.test)


def test_test_set_is_shared_by_every_finetuning_configuration():
    records = flat_records()
    base = make_target_split(records, SplitConfig(seed=3))
    other_val = make_target_split(records, SplitConfig(seed=3, val_fraction=0.4))
    assert ids(base.test) == ids(other_val.test)
    assert ids(base.finetune(0.1).train) != ids(other_val.finetune(0.1).train)


def test_manifest_roles_and_no_patient_ids():
    records = grouped_records()
    s = make_target_split(records)
    rows = s.manifest()
    assert len(rows) == len(records) and {r["image_id"] for r in rows} == ids(records)
    assert {(r["role"], r["part"]) for r in rows} == {
        ("test", "test"), ("ft_0.1", "train"), ("ft_0.1", "val"), ("ft_0.2_only", "train"), ("ft_0.2_only", "val"),
    }
    text = json.dumps(rows) + json.dumps(s.summary())
    assert "PAT" not in text
    assert len(s.split_hash) == 12
    assert sum(1 for r in rows if r["role"] == "ft_0.1") == len(s.finetune(0.1).train) + len(s.finetune(0.1).val)


def test_three_nested_levels():
    s = make_target_split(flat_records(600), SplitConfig(pool_fraction=0.3, ft_fractions=(0.3, 0.1, 0.2)))
    sizes = [len(s.finetune(f).train) + len(s.finetune(f).val) for f in (0.1, 0.2, 0.3)]
    assert [abs(n - f * 600) <= 3 for n, f in zip(sizes, (0.1, 0.2, 0.3), strict=True)] == [True] * 3
    assert ids(s.finetune(0.2).train) <= ids(s.finetune(0.3).train)
    assert {r["role"] for r in s.manifest()} == {"test", "ft_0.1", "ft_0.2_only", "ft_0.3_only"}


# --------------------------------------------------------------------------- errors


def test_too_few_images_of_a_class_is_a_clear_error():
    records = flat_records(40, malignant_every=1000)  # exactly one malignant image (index 0)
    records += [ImageRecord(image_id="mias-9999", dataset="mias", path=Path("/d/x"), label=1)]
    with pytest.raises(ValueError, match=r"class 1 \(malignant\) has 2 images, fewer than the 3 needed"):
        make_target_split(records)


def test_one_patient_holding_a_whole_class_is_a_clear_error():
    records = [ImageRecord(image_id=f"i-{k}", dataset="inbreast", path=Path("/d"), label=0, patient=f"P{k}")
               for k in range(40)]
    records += [ImageRecord(image_id=f"m-{k}", dataset="inbreast", path=Path("/d"), label=1, patient="PONLY")
                for k in range(5)]
    with pytest.raises(ValueError, match=r"class 1 \(malignant\) has 5 images in 1 patient group"):
        make_target_split(records)


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        make_target_split([])
    dup = flat_records(30) + flat_records(1)
    with pytest.raises(ValueError, match="duplicate image_id"):
        make_target_split(dup)
    with pytest.raises(ValueError, match="both classes"):
        make_target_split(flat_records(30, malignant_every=10**6)[1:])
    with pytest.raises(ValueError, match="pool_fraction"):
        SplitConfig(pool_fraction=0.3)  # the largest ft fraction must equal it


# --------------------------------------------------------------------------- official split


def test_official_split_keeps_train_test_and_groups_validation_by_patient():
    records = []
    for k, r in enumerate(grouped_records(n_patients=120, seed=4)):
        split = "test" if int(r.patient[3:]) % 5 == 0 else "train"
        records.append(ImageRecord(image_id=f"ddsm-{k:04d}", dataset="ddsm", path=r.path, label=r.label,
                                   patient=r.patient, split=split))
    o = official_split(records, SplitConfig(seed=2))
    assert ids(o.test) == {r.image_id for r in records if r.split == "test"}
    assert ids(o.train) | ids(o.val) == {r.image_id for r in records if r.split == "train"}
    assert ids(o.train).isdisjoint(ids(o.val))
    pat = {r.image_id: r.patient for r in records}
    assert {pat[i] for i in ids(o.train)}.isdisjoint({pat[i] for i in ids(o.val)})
    train_side = len(o.train) + len(o.val)
    assert abs(len(o.val) - 0.25 * train_side) <= 5
    assert 0 < n_malignant(o.val) < len(o.val)
    assert {r["part"] for r in o.manifest()} == {"train", "val", "test"} and "PAT" not in json.dumps(o.manifest())
    assert official_split(records, SplitConfig(seed=2)).split_hash == o.split_hash

    with pytest.raises(ValueError, match="no train/test split"):
        official_split(flat_records(20))
