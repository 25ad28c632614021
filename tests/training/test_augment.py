from __future__ import annotations

import pytest
import torch

from tlcore.training.augment import BatchAugmenter, affine_matrices, augment_batch
from tlcore.training.config import AugmentConfig


def _batch(b=6, h=40, w=32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, h, w, generator=g)


@pytest.mark.parametrize("modality", ["mammogram", "ultrasound"])
def test_shape_dtype_range_and_determinism(modality):
    cfg = AugmentConfig.for_modality(modality)
    x = _batch()
    a = augment_batch(x, cfg, seed=5)
    b = augment_batch(x, cfg, seed=5)
    c = augment_batch(x, cfg, seed=6)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_stream_continues_and_reseed_restarts():
    aug = BatchAugmenter(AugmentConfig(), seed=1)
    x = _batch()
    first, second = aug(x), aug(x)
    assert not torch.equal(first, second)
    aug.reseed(1)
    assert torch.equal(aug(x), first)


def test_flips_only_are_exact_permutations():
    cfg = AugmentConfig(hflip=True, vflip=True, max_rotation_deg=0, scale_range=(1, 1),
                        brightness=0, contrast=0, gamma=0)
    x = _batch(b=32)
    y = augment_batch(x, cfg, seed=0)
    for xi, yi in zip(x, y):
        candidates = [xi, xi.flip(-1), xi.flip(-2), xi.flip(-1).flip(-2)]
        assert any(torch.equal(yi, c) for c in candidates)
    assert torch.equal(augment_batch(x, AugmentConfig.off(), seed=0), x)


def test_channels_last_and_uint8_rejection():
    x = _batch().contiguous(memory_format=torch.channels_last)
    y = augment_batch(x, AugmentConfig(), seed=0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="float"):
        augment_batch((x * 255).to(torch.uint8), AugmentConfig(), seed=0)


def test_rotation_is_a_true_rotation_on_non_square_images():
    # 90 degrees on a 2:1 image maps the normalised corner (1, 0) to (0, +-2) in the other axis' units
    mat = affine_matrices(torch.tensor([90.0]), torch.tensor([1.0]), height=20, width=40)[0]
    point = mat[:, :2] @ torch.tensor([0.0, 1.0])  # output (u, v) = (0, 1): bottom centre
    # pixel offset of the sampled point: u * W/2, v * H/2 -> must have length H/2 = 10
    px = torch.tensor([point[0] * 20, point[1] * 10])
    assert torch.linalg.norm(px).item() == pytest.approx(10.0, abs=1e-4)


def test_invalid_augment_config():
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="modality"):
        AugmentConfig.for_modality("xray")
