"""Preprocessing: crop, flip, intensity window across bit depths, resize-with-pad, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.data.dicom_factory import write_dicom
from PIL import Image

from tlcore.data.imageio import read_image
from tlcore.data.preprocess import PreprocessConfig, preprocess_image, to_model_batch
from tlcore.data.synth.phantoms import render_mammogram


def phantom(h: int = 300, w: int = 240, chest: str = "right", label: bool = True, seed: int = 0) -> np.ndarray:
    """Float image in [0, 1]: dark noisy background, a half-ellipse breast on the ``chest`` edge
    (brighter towards the chest wall, with a bright blob), optionally a saturated label rectangle
    in the opposite top corner, not touching the breast."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (w - 1 - xx) if chest == "right" else xx  # distance from the chest wall
    inside = (d / (0.55 * w)) ** 2 + ((yy - 0.55 * h) / (0.38 * h)) ** 2 < 1.0
    img = np.full((h, w), 0.04, dtype=np.float32)
    blob = np.exp(-((d - 0.2 * w) ** 2 + (yy - 0.5 * h) ** 2) / (0.002 * w * h))
    tissue = 0.35 + 0.3 * np.exp(-d / (0.3 * w)) + 0.25 * blob
    img[inside] = tissue[inside]
    if label:
        x0 = 6 if chest == "right" else w - 6 - 60
        img[6:30, x0 : x0 + 60] = 1.0
    img += rng.normal(0.0, 0.01, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def tissue_share_left(out: np.ndarray) -> float:
    """Share of the brightness in the left half of the content (the non-black columns)."""
    cols = np.flatnonzero(out.max(axis=0) > 0)
    content = out[:, cols[0] : cols[-1] + 1].astype(float)
    half = content.shape[1] / 2
    centers = np.arange(content.shape[1]) + 0.5
    left, right = content[:, centers < half].sum(), content[:, centers > half].sum()
    return float(left / (left + right))


# --------------------------------------------------------------------------- config


def test_config_is_hashable_normalised_and_fingerprinted():
    a = PreprocessConfig(image_size=[64, 48])  # type: ignore[arg-type]
    b = PreprocessConfig(image_size=(64, 48))
    assert a == b and hash(a) == hash(b)
    assert a.image_size == (64, 48)
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 16
    assert PreprocessConfig(image_size=(64, 49)).fingerprint() != a.fingerprint()
    assert PreprocessConfig(modality="ultrasound").fingerprint() != PreprocessConfig().fingerprint()
    assert a.as_dict()["image_size"] == [64, 48]


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"modality": "ct"}, "modality"),
        ({"flip_to": "up"}, "flip_to"),
        ({"intensity": "zscore"}, "intensity"),
        ({"image_size": (0, 10)}, "image_size"),
        ({"intensity_window": (99.0, 1.0)}, "intensity_window"),
    ],
)
def test_config_rejects_bad_values_by_name(kwargs, word):
    with pytest.raises(ValueError, match=word):
        PreprocessConfig(**kwargs)


# --------------------------------------------------------------------------- geometry


def test_output_shape_dtype_and_aspect_ratio_kept():
    cfg = PreprocessConfig(image_size=(64, 48), modality="ultrasound")
    rng = np.random.default_rng(0)
    wide = rng.uniform(0.2, 1.0, size=(50, 100)).astype(np.float32)  # aspect 2:1
    out = preprocess_image(wide, cfg)
    assert out.shape == (64, 48) and out.dtype == np.uint8
    rows = np.flatnonzero(out.max(axis=1) > 0)
    cols = np.flatnonzero(out.max(axis=0) > 0)
    assert cols[0] == 0 and cols[-1] == 47  # full width
    assert rows[-1] - rows[0] + 1 == 24  # 48 * 50 / 100, centred
    assert abs(rows[0] - (64 - 24) // 2) <= 1


def test_crop_fills_output_with_the_breast_and_drops_the_label():
    cfg = PreprocessConfig(image_size=(96, 96))
    with_label = preprocess_image(phantom(label=True), cfg)
    without = preprocess_image(phantom(label=False), cfg)
    # The label rectangle is not connected to the breast: it must not change the crop.
    assert np.abs(with_label.astype(int) - without.astype(int)).mean() < 1.0
    # Breast box 0.76 H x 0.55 W of the source: height-limited, so it spans the full height.
    rows = np.flatnonzero(with_label.max(axis=1) > 0)
    assert rows[0] <= 2 and rows[-1] >= 93
    # No saturated label block left in the top corner opposite the chest wall.
    assert with_label[:12, 48:].max() < 250


def test_realistic_phantom_label_box_removed():
    rng = np.random.default_rng(3)
    ph = render_mammogram(rng, 320, 240, "L", "CC", density=2, label_box=True)
    cfg = PreprocessConfig(image_size=(128, 128))
    out = preprocess_image(ph.image, cfg, side="L")
    # Label sits in a top or bottom corner opposite the chest wall: the right side of the image
    # (only the bands at the top and bottom edge are searched: dense tissue can be as bright).
    band = int(ph.image.shape[0] * 0.12)
    edges = np.concatenate([ph.image[:band], ph.image[-band:]])
    x_label = np.flatnonzero((edges > 0.85).mean(axis=0) > 0.04)
    assert x_label.size and x_label.min() > 120  # sanity of the phantom itself
    # After the crop the breast touches the left edge and the label is gone: no more saturated pixels than
    # the same phantom drawn without a label (dense tissue saturates too), and none where the label sat.
    plain = render_mammogram(np.random.default_rng(3), 320, 240, "L", "CC", density=2, label_box=False)
    baseline = (preprocess_image(plain.image, cfg, side="L") > 240).mean()
    assert out[:, :4].mean() > 40
    assert (out > 240).mean() <= baseline + 0.005
    assert out[:16, 64:].max() < 240


@pytest.mark.parametrize("flip_to", ["left", "right"])
def test_flip_puts_the_chest_wall_on_the_requested_side(flip_to):
    cfg = PreprocessConfig(image_size=(64, 64), flip_to=flip_to, flip_source="content")
    a = preprocess_image(phantom(chest="right"), cfg)
    b = preprocess_image(phantom(chest="left"), cfg)
    share = tissue_share_left(a)
    assert (share > 0.6) if flip_to == "left" else (share < 0.4)
    # Mirrored inputs give the same output.
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0


def test_flip_source_side_trusts_the_laterality():
    img = phantom(chest="right")
    side_cfg = PreprocessConfig(image_size=(64, 64), flip_source="side")
    # "R" = chest wall on the right in the standard display: flipped to the left.
    assert tissue_share_left(preprocess_image(img, side_cfg, side="R")) > 0.6
    # A (wrong) "L" is obeyed with flip_source="side" ...
    assert tissue_share_left(preprocess_image(img, side_cfg, side="LEFT")) < 0.4
    # ... but the default ("auto") trusts clear image content over it.
    assert tissue_share_left(preprocess_image(img, PreprocessConfig(image_size=(64, 64)), side="L")) > 0.6


def test_ultrasound_is_not_cropped_or_flipped():
    img = np.zeros((60, 60), dtype=np.float32)
    img[:, 40:] = 0.8  # content only on the right
    img[0, 0] = 0.3
    out = preprocess_image(img, PreprocessConfig(image_size=(60, 60), modality="ultrasound"))
    assert out[:, 45:].mean() > 200 and out[:, :35].max() < 128


def test_degenerate_images_do_not_crash():
    cfg = PreprocessConfig(image_size=(32, 32))
    assert preprocess_image(np.zeros((40, 30), np.float32), cfg).max() == 0
    assert preprocess_image(np.ones((1, 1), np.float32), cfg).shape == (32, 32)
    with pytest.raises(ValueError, match="2-D"):
        preprocess_image(np.zeros((3, 4, 4), np.float32), cfg)


# --------------------------------------------------------------------------- real files, bit depths


def _write_pgm8(path: Path, img: np.ndarray) -> Path:
    data = np.round(img * 255).astype(np.uint8)
    path.write_bytes(b"P5\n# mias-like\n%d %d\n255\n" % (img.shape[1], img.shape[0]) + data.tobytes())
    return path


def _write_png16(path: Path, img: np.ndarray) -> Path:
    data = np.round(img * 65535).astype(np.uint16)
    Image.fromarray(data).save(path)  # 16-bit greyscale PNG
    return path


def test_same_image_from_8_14_16_bit_files_and_monochrome1(tmp_path):
    img = phantom(h=200, w=160, chest="left", label=True, seed=1)
    files = {
        "pgm8": _write_pgm8(tmp_path / "a.pgm", img),
        "png16": _write_png16(tmp_path / "b.png", img),
        "dcm14": write_dicom(tmp_path / "c.dcm", np.round(img * 16383).astype(np.uint16), bits_stored=14),
        # MONOCHROME1: low values are bright; the decoder must invert.
        "dcm16_mono1": write_dicom(
            tmp_path / "d.dcm", np.round((1.0 - img) * 65535).astype(np.uint16), photometric="MONOCHROME1"
        ),
        # 12 bits of a 16-bit word used, narrow range: the window must stretch it.
        "dcm12_narrow": write_dicom(
            tmp_path / "e.dcm", np.round(1000 + img * 2000).astype(np.uint16), bits_stored=12
        ),
    }
    cfg = PreprocessConfig(image_size=(64, 64))
    reference = preprocess_image(img, cfg).astype(int)
    for name, path in files.items():
        decoded = read_image(path)
        out = preprocess_image(decoded.pixels, cfg)
        assert out.shape == (64, 64) and out.dtype == np.uint8, name
        assert out.max() == 255, name  # windowed to the full range whatever the depth
        diff = np.abs(out.astype(int) - reference).mean()
        assert diff < 3.0, f"{name}: mean abs difference {diff:.2f} from the float reference"
        assert tissue_share_left(out) > 0.6, name


# --------------------------------------------------------------------------- batches


def test_to_model_batch_expands_and_scales():
    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.uint8).reshape(2, 1, 4, 5) * 2
    y = to_model_batch(x, "cpu")
    assert y.shape == (2, 3, 4, 5) and y.dtype == torch.float32
    assert torch.allclose(y[:, 0], x[:, 0].float() / 255)
    assert torch.equal(y[:, 0], y[:, 2])
    assert y.is_contiguous()
    z = to_model_batch(x[:, 0], torch.device("cpu"), channels_last=True)
    assert z.shape == (2, 3, 4, 5)
    assert z.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="B, 1, H, W"):
        to_model_batch(torch.zeros(2, 2, 4, 4, dtype=torch.uint8), "cpu")
