"""Breast-ultrasound look-alike: Rodrigues (8-bit palette BMP) or BUSI (RGB PNG + masks).

Images are speckle fields (Rayleigh-distributed multiplicative speckle over layered tissue
echo, depth attenuation, log-like compression) with a dark hypoechoic lesion.

The malignancy signal is *orientation*, and only orientation: a malignant lesion is a
smooth oval that is taller than wide (its long axis within 15 degrees of vertical, "not
parallel to the skin"), a benign one is the same kind of oval wider than tall. That makes
this set the *negative control* of the transfer study: its signal is independently
learnable (a network trained on these images learns it), but it has nothing in common
with the mammogram-like sets' signal (radiating lines, see ``phantoms``), so a network
pre-trained on the CBIS-DDSM look-alike must not score it better than an untrained one.
Everything else -- margins (smooth for both), lesion size, aspect ratio, echo level and
texture, posterior shadowing or enhancement (drawn independently of the label), gain,
noise -- has the same distribution in both classes, so neither brightness nor texture nor
a spiculation-like margin gives the label away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tlcore.data.synth.config import SynthConfig, image_rng, plan_rng
from tlcore.data.synth.phantoms import box_blur, sigmoid, smooth_noise

NAME = "ultrasound"
RODRIGUES = {
    "paper": (100, 150),
    "small": (100, 150),
    "tiny": (10, 14),
}  # benign, malignant
BUSI = {
    "paper": (437, 210, 133),
    "small": (437, 210, 133),
    "tiny": (13, 6, 5),
}  # benign, malignant, normal
BUSI_SECOND_MASKS = {"paper": 16, "small": 2, "tiny": 1}
BUSI_WIDTH = {"paper": (450, 560), "small": (112, 144), "tiny": (96, 128)}


@dataclass
class UltrasoundPhantom:
    """A rendered ultrasound image (float [0, 1]) and its lesion masks."""

    image: np.ndarray
    masks: list[np.ndarray]  # one bool mask per lesion (empty for normal)


def _lesion_field(
    rng: np.random.Generator,
    h: int,
    w: int,
    malignant: bool,
    size: float,
    cx: float,
    cy: float,
) -> np.ndarray:
    """Soft inside-ness (0..1) of a lesion centred at (cx, cy)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = size  # semi-axis along the long axis
    b = size * rng.uniform(0.45, 0.68)  # short semi-axis
    tilt = rng.uniform(-0.26, 0.26)
    rot = tilt + (np.pi / 2 if malignant else 0.0)  # malignant: long axis vertical
    c, s = np.cos(rot), np.sin(rot)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return sigmoid((1.0 - rho) / 0.06)


def render_ultrasound(
    rng: np.random.Generator,
    h: int,
    w: int,
    lesion: str | None,
    extra_lesions: int = 0,
    sector: bool = False,
    size_frac: tuple[float, float] = (0.2, 0.34),
) -> UltrasoundPhantom:
    """Render one B-mode-like image; ``lesion`` is ``"benign"``, ``"malignant"`` or None."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = yy / h
    # layered tissue echo: horizontally stretched noise, bright skin line, fat lobules
    layer = np.asarray(
        Image.fromarray(
            smooth_noise(rng, h, max(4, w // 5), max(2.0, h / 14)), mode="F"
        ).resize((w, h), Image.BILINEAR)
    )
    echo = 0.55 + 0.16 * layer + 0.08 * smooth_noise(rng, h, w, max(2.0, h / 8))
    echo += 0.5 * np.exp(-(((depth - rng.uniform(0.02, 0.06)) / 0.02) ** 2))
    echo *= np.exp(-rng.uniform(0.2, 0.7) * depth)
    echo = np.clip(echo, 0.05, None)

    masks: list[np.ndarray] = []
    kinds = ([lesion] if lesion else []) + [lesion or "benign"] * extra_lesions
    for i, kind in enumerate(kinds):
        malignant = kind == "malignant"
        lo, hi = size_frac if i == 0 else (size_frac[0] * 0.4, size_frac[0] * 0.6)
        size = min(h, w) * rng.uniform(lo, hi)
        if i == 0:
            cx = w * rng.uniform(0.35, 0.65)
            cy = h * rng.uniform(0.38, 0.55)
        else:
            cx = w * rng.choice([rng.uniform(0.12, 0.25), rng.uniform(0.75, 0.88)])
            cy = h * rng.uniform(0.3, 0.45)
        inside = _lesion_field(rng, h, w, malignant, size, cx, cy)
        # posterior acoustic feature below the lesion: shadowing or enhancement, drawn
        # independently of the label (a nuisance, not a signal)
        below = np.maximum.accumulate(inside, axis=0) * (1.0 - inside)
        fade = np.exp(-np.clip(yy - cy, 0, None) / (0.45 * h))
        if rng.random() < 0.5:
            echo *= 1.0 - rng.uniform(0.3, 0.7) * below * fade
        else:
            echo *= 1.0 + rng.uniform(0.3, 0.8) * below * fade
        level = rng.uniform(0.06, 0.28)
        texture = 1.0 + rng.uniform(0.1, 0.3) * smooth_noise(rng, h, w, max(1.5, size / 3))
        echo = (
            echo * (1.0 - inside) + echo * level * np.clip(texture, 0.2, None) * inside
        )
        masks.append(inside > 0.5)

    speckle = rng.rayleigh(1.0, (h, w)).astype(np.float32)
    speckle = box_blur(speckle, 1, passes=1) * 0.6 + speckle * 0.4
    speckle /= speckle.mean()
    inten = echo * speckle
    gain = rng.uniform(8.0, 20.0)
    img = np.log1p(gain * inten) / np.log1p(gain * float(np.percentile(inten, 99.5)))
    img = np.clip(
        img * rng.uniform(0.8, 1.0) + 0.02 * rng.standard_normal((h, w)), 0.0, 1.0
    )
    if sector:
        apex_x, apex_y = w / 2.0, -0.35 * h
        ang = np.degrees(np.arctan2(xx - apex_x, yy - apex_y))
        rad = np.hypot(xx - apex_x, yy - apex_y)
        fan = (np.abs(ang) < rng.uniform(30, 40)) & (rad > 0.4 * h)
        img = img * fan
        masks = [m & fan for m in masks]
    return UltrasoundPhantom(img.astype(np.float32), masks)


def _to8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


@dataclass
class _Item:
    index: int
    label: str  # benign | malignant | normal
    number: int  # number in the file name
    second_mask: bool = False
    duplicate_of: int | None = None  # index of an item whose image is copied


def _write_rodrigues(
    root: Path, config: SynthConfig, progress: Callable | None
) -> dict:
    n_b, n_m = RODRIGUES[config.scale]
    items = [_Item(i, "benign", i + 1) for i in range(n_b)] + [
        _Item(n_b + i, "malignant", n_b + i + 1) for i in range(n_m)
    ]
    for sub in ("benign", "malignant"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for it in progress(items, "ultrasound") if progress else items:
        rng = image_rng(config.seed, NAME, it.index)
        w = int(rng.integers(75, 200))
        h = int(np.clip(round(w * rng.uniform(0.6, 0.95)), 57, 161))
        ph = render_ultrasound(rng, h, w, it.label, size_frac=(0.25, 0.4))
        Image.fromarray(_to8(ph.image), mode="L").save(
            root / it.label / f"us{it.number}.bmp", format="BMP"
        )
    return {
        "n_images": n_b + n_m,
        "n_malignant": n_m,
        "n_benign": n_b,
        "layout": "rodrigues",
    }


def _write_busi(root: Path, config: SynthConfig, progress: Callable | None) -> dict:
    rng_plan = plan_rng(config.seed, NAME)
    n_b, n_m, n_n = BUSI[config.scale]
    items: list[_Item] = []
    for label, n in (("benign", n_b), ("malignant", n_m), ("normal", n_n)):
        items.extend(_Item(len(items) + i, label, i + 1) for i in range(n))
    lesion_items = [it for it in items if it.label != "normal"]
    for k in rng_plan.permutation(len(lesion_items))[: BUSI_SECOND_MASKS[config.scale]]:
        lesion_items[int(k)].second_mask = True
    benign = [it for it in items if it.label == "benign"]
    benign[-1].duplicate_of = benign[0].index  # the real set contains duplicates
    base = root / "Dataset_BUSI_with_GT"
    for label in ("benign", "malignant", "normal"):
        (base / label).mkdir(parents=True, exist_ok=True)
    lo, hi = BUSI_WIDTH[config.scale]
    by_index = {it.index: it for it in items}
    n_masks = 0
    for it in progress(items, "ultrasound") if progress else items:
        src = by_index[it.duplicate_of] if it.duplicate_of is not None else it
        rng = image_rng(config.seed, NAME, src.index)
        w = int(rng.integers(lo, hi + 1))
        h = int(np.rint(w * rng.uniform(0.8, 1.05)))
        lesion = None if src.label == "normal" else src.label
        ph = render_ultrasound(
            rng,
            h,
            w,
            lesion,
            extra_lesions=int(src.second_mask),
            sector=rng.random() < 0.3,
        )
        stem = f"{it.label} ({it.number})"
        grey = _to8(ph.image)
        Image.fromarray(np.stack([grey] * 3, axis=-1), mode="RGB").save(
            base / it.label / f"{stem}.png"
        )
        masks = ph.masks or [np.zeros((h, w), dtype=bool)]
        for j, m in enumerate(masks):
            suffix = "_mask" if j == 0 else f"_mask_{j}"
            Image.fromarray(m.astype(np.uint8) * 255, mode="L").save(
                base / it.label / f"{stem}{suffix}.png"
            )
            n_masks += 1
    return {
        "n_images": len(items),
        "n_malignant": n_m,
        "n_benign": n_b + n_n,
        "n_normal": n_n,
        "n_masks": n_masks,
        "n_duplicates": 1,
        "layout": "busi",
    }


def generate_ultrasound(
    root: Path, config: SynthConfig, progress: Callable[[list, str], list] | None = None
) -> dict:
    """Write the ultrasound look-alike under ``root`` in ``config.ultrasound_layout``."""
    root.mkdir(parents=True, exist_ok=True)
    if config.ultrasound_layout == "busi":
        return _write_busi(root, config, progress)
    return _write_rodrigues(root, config, progress)
