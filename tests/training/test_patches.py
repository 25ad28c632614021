from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from tests.data.dicom_factory import write_dicom
from tests.training.helpers import BlobDataset, TinyNet
from tlcore.data.records import Finding, ImageRecord
from tlcore.training.config import AugmentConfig, TrainConfig
from tlcore.training.patches import (
    BACKGROUND,
    BENIGN,
    MALIGNANT,
    PatchDataset,
    PatchSamplingConfig,
    patch_window,
    train_patch_classifier,
    train_whole_image,
    two_phase_configs,
)

FULL_H, FULL_W = 400, 300
SCALE = 2  # image_height 200 -> working scale is half the full size


def _breast(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:FULL_H, 0:FULL_W]
    inside = ((yy - FULL_H / 2) / (FULL_H * 0.48)) ** 2 + (xx / (FULL_W * 0.9)) ** 2 < 1
    img = np.where(inside, rng.normal(30000, 3000, size=(FULL_H, FULL_W)), 200)
    return np.clip(img, 0, 65535).astype(np.uint16)


def _mask(cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:FULL_H, 0:FULL_W]
    return (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).astype(np.uint8) * 255


@pytest.fixture
def ddsm_like(tmp_path):
    """Three usable images (two lesions on the first), one with a missing mask, one with a grey 'mask'."""
    rng = np.random.default_rng(0)
    records, masks = [], {}
    lesions = {
        0: [(120, 60, 20, True), (280, 150, 12, False)],
        1: [(200, 100, 25, False)],
        2: [(150, 80, 8, True)],
    }
    for i, found in lesions.items():
        img = write_dicom(tmp_path / f"Mass-Training_P_{i:05d}_LEFT_CC/1/1/000000.dcm", _breast(rng))
        findings = []
        for k, (cy, cx, r, malignant) in enumerate(found):
            m = _mask(cy, cx, r)
            path = write_dicom(tmp_path / f"Mass-Training_P_{i:05d}_LEFT_CC_{k + 1}/1/1/000001.dcm", m)
            masks[(i, k)] = m > 0
            findings.append(Finding(malignant=malignant, pathology="MALIGNANT" if malignant else "BENIGN",
                                    roi_mask_path=path))
        records.append(ImageRecord(image_id=f"ddsm-{i}", dataset="ddsm", path=img,
                                   label=int(any(f.malignant for f in findings)), findings=tuple(findings)))
    img = write_dicom(tmp_path / "Mass-Training_P_00010_LEFT_CC/1/1/000000.dcm", _breast(rng))
    records.append(ImageRecord(image_id="ddsm-missing", dataset="ddsm", path=img, label=0, findings=(
        Finding(malignant=False, pathology="BENIGN", roi_mask_path=tmp_path / "nope/000001.dcm"),)))
    grey = write_dicom(tmp_path / "Mass-Training_P_00011_LEFT_CC_1/1/1/000000.dcm", _breast(rng))
    records.append(ImageRecord(image_id="ddsm-crop", dataset="ddsm", path=img, label=1, findings=(
        Finding(malignant=True, pathology="MALIGNANT", roi_mask_path=grey),)))
    return records, masks


CFG = PatchSamplingConfig(patch_size=32, patches_per_lesion=5, background_per_image=6, image_height=FULL_H // SCALE)


def test_patch_labels_follow_masks_and_background_avoids_lesions(ddsm_like):
    records, masks = ddsm_like
    ds = PatchDataset(records, CFG)
    assert ds.source_ids == ["ddsm-0", "ddsm-1", "ddsm-2"]
    reasons = {s.reason for s in ds.skipped}
    assert any("not found" in r for r in reasons) and any("not binary" in r for r in reasons)
    counts = ds.class_counts()
    assert counts["malignant"] == 10 and counts["benign"] == 10 and counts["background"] > 0
    image_index = {name: int(name.split("-")[1]) for name in ds.source_ids}
    for p in ds.patches:
        src = image_index[ds.source_ids[p.image]]
        if p.label == BACKGROUND:
            top, left = patch_window(p.row, p.col, CFG.patch_size)
            r0, c0 = max(0, top * SCALE), max(0, left * SCALE)
            r1, c1 = (top + CFG.patch_size) * SCALE, (left + CFG.patch_size) * SCALE
            for (i, _k), m in masks.items():
                if i == src:
                    assert not m[r0:r1, c0:c1].any(), "background patch overlaps a lesion"
        else:
            m = masks[(src, p.finding)]
            cell = m[p.row * SCALE:(p.row + 1) * SCALE, p.col * SCALE:(p.col + 1) * SCALE]
            assert cell.any(), "lesion patch is not centred on its lesion"
            finding = records[src].findings[p.finding]
            assert p.label == (MALIGNANT if finding.malignant else BENIGN)
    x, y = ds[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert len(ds.image_ids) == len(ds) == len(set(ds.image_ids))


def test_sampling_is_deterministic_per_seed_and_cache_gives_same_patches(ddsm_like, tmp_path):
    records, _ = ddsm_like
    a = PatchDataset(records, CFG)
    b = PatchDataset(records, CFG, cache_dir=tmp_path / "cache")
    c = PatchDataset(records, CFG, cache_dir=tmp_path / "cache")  # read back from the cache
    other = PatchDataset(records, PatchSamplingConfig(**{**CFG.to_dict(), "seed": 1}))
    assert a.patches == b.patches == c.patches
    assert a.patches != other.patches
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 6
    for i in (0, len(a) // 2, len(a) - 1):
        assert torch.equal(a[i][0], c[i][0])
    clone = pickle.loads(pickle.dumps(c))
    assert torch.equal(clone[3][0], c[3][0])
    # dropping one image does not change the patches of the others
    fewer = PatchDataset(records[1:], CFG)
    assert [p[1:] for p in fewer.patches] == [p[1:] for p in a.patches if p.image > 0]


def test_train_patch_classifier_with_tiny_model(ddsm_like):
    records, _ = ddsm_like
    ds = PatchDataset(records, CFG)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, device="cpu", deterministic=True,
                      augment=AugmentConfig.for_modality("mammogram"), early_stopping_patience=0)
    result = train_patch_classifier(TinyNet(num_outputs=3), ds, ds, cfg, progress=False)
    assert len(result.history) == 2 and result.monitor == "val_auc"
    assert result.history[-1].val_auc is not None


def test_train_whole_image_two_phases(tmp_path):
    model = TinyNet()
    images = BlobDataset(32, seed=4)
    base = TrainConfig(epochs=2, batch_size=8, lr=1e-3, device="cpu", deterministic=True,
                       augment=AugmentConfig.off(), early_stopping_patience=0)
    cfg_top, cfg_all = two_phase_configs(base, top_epochs=1, all_lr_factor=0.1)
    assert (cfg_top.trainable, cfg_top.epochs, cfg_all.trainable, cfg_all.epochs) == ("top", 1, "all", 2)
    assert cfg_all.lr == pytest.approx(1e-4)
    body_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("body.")}
    seen: list[tuple[str, int]] = []
    after_top: dict[str, torch.Tensor] = {}

    def record(phase, rec):
        seen.append((phase, rec.epoch))
        if phase == "top":
            after_top.update({k: v.clone() for k, v in model.state_dict().items() if k.startswith("body.")})

    r_top, r_all = train_whole_image(model, images, images, cfg_top.replace(trainable="all"), cfg_all,
                                     checkpoint_dir=tmp_path, progress=False, on_epoch_end=record)
    assert seen == [("top", 1), ("all", 1), ("all", 2)]
    assert all(torch.equal(body_before[k], after_top[k]) for k in body_before)  # phase 1 froze the body
    after = model.state_dict()
    assert any(not torch.equal(body_before[k], after[k]) for k in body_before)  # phase 2 trained it
    assert (tmp_path / "top" / "last.pt").is_file() and (tmp_path / "all" / "last.pt").is_file()
    assert len(r_top.history) == 1 and len(r_all.history) == 2
    # a second call finds both phases finished in their checkpoints
    again = train_whole_image(model, images, images, cfg_top, cfg_all, checkpoint_dir=tmp_path, progress=False)
    assert again[0].resumed_from == 1 and again[1].resumed_from == 2


def test_two_stage_smoke_with_registered_patch_model(ddsm_like):
    models = pytest.importorskip("tlcore.models")
    records, _ = ddsm_like
    patches = PatchDataset(records, CFG)
    base = TrainConfig(epochs=1, batch_size=8, lr=1e-4, device="cpu", augment=AugmentConfig.off(),
                       early_stopping_patience=0)
    torch.manual_seed(0)
    patch_model = models.create_patch_classifier("resnet50", num_classes=3, patch_size=32)
    stage1 = train_patch_classifier(patch_model, torch.utils.data.Subset(patches, range(8)), None, base,
                                    progress=False)
    assert np.isfinite(stage1.history[0].train_loss)
    whole = models.whole_image_from_patch(patch_model)
    images = BlobDataset(4, size=32, seed=4)
    cfg_top, cfg_all = two_phase_configs(base.replace(batch_size=4))
    r_top, r_all = train_whole_image(whole, images, images, cfg_top, cfg_all, progress=False)
    assert np.isfinite(r_top.history[0].train_loss) and np.isfinite(r_all.history[0].train_loss)
    assert r_all.history[0].val_auc is not None


def test_patches_from_look_alike_cbis_ddsm(tmp_path):
    """End to end with the CBIS-DDSM reader on look-alike files: every image has usable masks."""
    from tlcore.data.registry import read_dataset
    from tlcore.data.synth import SynthConfig
    from tlcore.data.synth.ddsm import generate_ddsm

    generate_ddsm(tmp_path / "ddsm", SynthConfig(scale="tiny"))
    records = read_dataset("ddsm", tmp_path / "ddsm").records[:12]
    cfg = PatchSamplingConfig(patch_size=24, patches_per_lesion=2, background_per_image=2, image_height=96)
    ds = PatchDataset(records, cfg, cache_dir=tmp_path / "cache")
    assert ds.skipped == [] and len(ds.source_ids) == len(records)
    counts = ds.class_counts()
    n_findings = sum(len(r.findings) for r in records)
    assert counts["benign"] + counts["malignant"] == 2 * n_findings
    assert counts["malignant"] == 2 * sum(f.malignant for r in records for f in r.findings)
    assert counts["background"] > 0
