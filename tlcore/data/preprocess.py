"""Image preprocessing: breast crop, orientation, robust intensity window, resize-with-pad.

:func:`preprocess_image` turns one decoded image (float32 ``(H, W)`` in ``[0, 1]``, 1 =
bright tissue, as :func:`tlcore.data.imageio.read_image` returns it) into a compact
``uint8`` array of the model's input size. It is deterministic and depends only on the
pixels, the optional laterality and a :class:`PreprocessConfig`, whose
:meth:`~PreprocessConfig.fingerprint` keys the on-disk cache (:mod:`tlcore.data.cache`).

Mammograms:

1. A coarse copy (block mean, at most ``mask_size`` px a side) is thresholded halfway
   (``crop_threshold``) between the background level and Otsu's threshold, opened to cut
   noise and thin bridges, and the largest connected component is kept. Its bounding box
   (plus ``crop_margin``) is the crop: background and burnt-in labels that do not touch
   the breast are dropped, and with ``zero_outside_breast`` anything inside the box that
   is not part of the breast is set to black.
2. Orientation: after the flip, the chest wall sits on the ``flip_to`` side of the image
   (``"left"``: tissue bulk on the left, nipple pointing right; this is how a left breast is
   shown in the usual back-to-back display). See ``flip_source`` for how the current
   orientation is decided.
3. Intensity: the ``intensity_window`` percentiles of the breast pixels map to 0 and 1,
   which makes 8-, 12-, 14- and 16-bit sources alike.
4. Resize keeping the aspect ratio (bilinear with antialiasing) and pad with black to
   ``image_size``; the chest wall is kept against its edge, the rest is centred.

Ultrasound images skip the crop and the flip: window, resize, centred pad.
The three-channel expansion and the move to the device happen in :func:`to_model_batch`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

# Bump when the algorithm changes in a way that changes outputs: it is part of the
# fingerprint, so old cache entries are not reused.
PREPROCESS_VERSION = 1

_MODALITIES = ("mammogram", "ultrasound")
_SIDES = ("left", "right")
_FLIP_SOURCES = ("auto", "side", "content")
_INTENSITY = ("percentile", "minmax", "none")


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of :func:`preprocess_image`; hashable, and fingerprinted for the cache.

    ``flip_source`` decides which way a mammogram currently faces:
    ``"content"`` always from the pixels (the chest-wall half holds more tissue);
    ``"side"`` from the record's laterality when it is known (``L`` = chest wall on the
    image's left, the standard display), else from the pixels;
    ``"auto"`` (default) from the pixels unless they are ambiguous (the two halves differ by
    less than ``flip_margin`` of the tissue), then from the laterality. The default trusts
    the pixels first because the datasets' display conventions per side are unverified.
    """

    image_size: tuple[int, int] = (224, 224)  # (H, W)
    modality: str = "mammogram"  # or "ultrasound"
    crop_breast: bool = True
    flip_to: str = "left"  # side where the chest wall ends up
    flip_source: str = "auto"
    flip_margin: float = 0.1
    intensity: str = "percentile"  # "percentile" | "minmax" | "none"
    intensity_window: tuple[float, float] = (0.5, 99.5)
    crop_threshold: float = 0.5  # position between background level (0) and Otsu (1)
    crop_margin: float = 0.01  # fraction of the image size added around the breast box
    zero_outside_breast: bool = True
    mask_size: int = 512  # longest side of the coarse copy used for the mask

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(
                f"PreprocessConfig.image_size must be two positive ints (H, W), got {self.image_size!r}"
            )
        object.__setattr__(self, "image_size", size)
        window = tuple(float(v) for v in self.intensity_window)
        if len(window) != 2 or not 0.0 <= window[0] < window[1] <= 100.0:
            raise ValueError(
                "PreprocessConfig.intensity_window must be two percentiles 0 <= lo < hi <= 100, "
                f"got {self.intensity_window!r}"
            )
        object.__setattr__(self, "intensity_window", window)
        for name, value, valid in (
            ("modality", self.modality, _MODALITIES),
            ("flip_to", self.flip_to, _SIDES),
            ("flip_source", self.flip_source, _FLIP_SOURCES),
            ("intensity", self.intensity, _INTENSITY),
        ):
            if value not in valid:
                raise ValueError(f"PreprocessConfig.{name} must be one of {', '.join(valid)}; got {value!r}")
        if not 0.0 < self.crop_threshold <= 1.0:
            raise ValueError(f"PreprocessConfig.crop_threshold must be in (0, 1], got {self.crop_threshold!r}")
        if not 0.0 <= self.crop_margin < 0.5:
            raise ValueError(f"PreprocessConfig.crop_margin must be in [0, 0.5), got {self.crop_margin!r}")
        if self.mask_size < 16:
            raise ValueError(f"PreprocessConfig.mask_size must be at least 16, got {self.mask_size!r}")

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-friendly dict of the settings (for logging as run parameters)."""
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["intensity_window"] = list(self.intensity_window)
        return d

    def fingerprint(self) -> str:
        """Short stable hash (16 hex) of the settings and the algorithm version."""
        payload = json.dumps({"version": PREPROCESS_VERSION, **self.as_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def preprocess_image(pixels: np.ndarray, config: PreprocessConfig, side: str | None = None) -> np.ndarray:
    """Preprocess one decoded image into ``uint8`` of shape ``config.image_size``.

    ``pixels`` is a 2-D float array, nominally in ``[0, 1]`` with bright tissue high;
    ``side`` is the record's laterality (``L``/``R``, or ``LEFT``/``RIGHT``) when known.
    """
    img = np.asarray(pixels)
    if img.ndim != 2 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"preprocess_image expects a non-empty 2-D (H, W) array, got shape {img.shape}")
    img = np.ascontiguousarray(img, dtype=np.float32)
    if not np.isfinite(img).all():
        img = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)

    if config.modality == "mammogram":
        region, mask, chest_left = _mammogram_region(img, config, side)
    else:
        region, mask, chest_left = img, None, None

    lo, hi = _intensity_range(region, mask, config)
    h_out, w_out = config.image_size
    h, w = region.shape
    scale = min(h_out / h, w_out / w)
    nh = min(h_out, max(1, int(round(h * scale))))
    nw = min(w_out, max(1, int(round(w * scale))))

    x = torch.from_numpy(region)[None, None]
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=nh < h or nw < w)
    x = x[0, 0]
    if config.intensity == "none":
        x = x.clamp(0.0, 1.0)
    else:
        x = ((x - lo) / (hi - lo)).clamp_(0.0, 1.0) if hi > lo else torch.zeros_like(x)

    if mask is not None and config.zero_outside_breast:
        grown = ndimage.binary_dilation(mask, iterations=2)  # keep the skin line
        m = torch.from_numpy(grown.astype(np.float32))[None, None]
        m = F.interpolate(m, size=(nh, nw), mode="bilinear", align_corners=False)[0, 0]
        x = x * (m > 0.5)

    top = (h_out - nh) // 2
    if chest_left is None:
        left = (w_out - nw) // 2
    else:
        if chest_left != (config.flip_to == "left"):
            x = torch.flip(x, dims=(1,))
        left = 0 if config.flip_to == "left" else w_out - nw

    out = torch.zeros((h_out, w_out), dtype=torch.uint8)
    out[top : top + nh, left : left + nw] = (x * 255.0 + 0.5).to(torch.uint8)
    return out.numpy()


def to_model_batch(
    x: torch.Tensor,
    device: torch.device | str,
    channels_last: bool = False,
    non_blocking: bool = True,
) -> torch.Tensor:
    """Move a ``uint8`` batch ``(B, 1, H, W)`` to ``device`` and return float32 ``(B, 3, H, W)`` in ``[0, 1]``.

    The transfer happens on the compact ``uint8`` data; the conversion and the
    replication to three channels run on the device. A ``(B, H, W)`` batch is accepted,
    and a batch that already has three channels is only converted.
    """
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"to_model_batch expects (B, 1, H, W) or (B, 3, H, W), got shape {tuple(x.shape)}")
    x = x.to(device, non_blocking=non_blocking)
    if x.dtype == torch.uint8:
        x = x.to(torch.float32).div_(255.0)
    else:
        x = x.to(torch.float32)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=fmt)


# --------------------------------------------------------------------------- helpers


def _mammogram_region(
    img: np.ndarray, config: PreprocessConfig, side: str | None
) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Crop box view of ``img``, its coarse breast mask, and whether the chest wall is on the left."""
    h, w = img.shape
    k = max(1, math.ceil(max(h, w) / config.mask_size))
    small = _block_mean(img, k)
    mask = _breast_mask(small, config.crop_threshold)
    if mask is None:  # nothing that looks like a breast: keep the whole image
        full = np.ones(small.shape, dtype=bool)
        return img, None, _chest_left(full, side, config)

    if config.crop_breast:
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        pad_r = int(math.ceil(config.crop_margin * small.shape[0]))
        pad_c = int(math.ceil(config.crop_margin * small.shape[1]))
        r0, r1 = max(0, rows[0] - pad_r), min(small.shape[0], rows[-1] + 1 + pad_r)
        c0, c1 = max(0, cols[0] - pad_c), min(small.shape[1], cols[-1] + 1 + pad_c)
        mask = mask[r0:r1, c0:c1]
        region = img[r0 * k : min(h, r1 * k), c0 * k : min(w, c1 * k)]
    else:
        region = img
    return region, mask, _chest_left(mask, side, config)


def _block_mean(img: np.ndarray, k: int) -> np.ndarray:
    """Mean over ``k x k`` blocks (partial edge blocks included)."""
    if k == 1:
        return img
    x = torch.from_numpy(img)[None, None]
    return F.avg_pool2d(x, kernel_size=k, stride=k, ceil_mode=True, count_include_pad=False)[0, 0].numpy()


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _breast_mask(small: np.ndarray, position: float) -> np.ndarray | None:
    """Largest bright connected component of the coarse image, holes filled; None if empty."""
    background = float(np.percentile(small, 1.0))
    threshold = background + position * (_otsu(small.ravel()) - background)
    mask = small > threshold
    if min(small.shape) >= 16:
        mask = ndimage.binary_opening(mask, structure=np.ones((3, 3), dtype=bool), iterations=2)
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    biggest = labels == int(np.argmax(sizes))
    if biggest.sum() < max(4, 0.001 * small.size):
        return None
    return ndimage.binary_fill_holes(biggest)


def _chest_left(mask: np.ndarray, side: str | None, config: PreprocessConfig) -> bool:
    """Whether the chest wall (the half with more tissue) is currently on the image's left."""
    known = _normalise_side(side)
    if config.flip_source == "side" and known is not None:
        return known == "L"
    half = mask.shape[1] / 2
    cols = mask.sum(axis=0).astype(np.float64)
    centers = np.arange(mask.shape[1]) + 0.5
    left = float(cols[centers < half].sum())
    right = float(cols[centers > half].sum())
    total = left + right
    ambiguous = total == 0 or abs(left - right) / total < config.flip_margin
    if ambiguous and known is not None:
        return known == "L"
    return left >= right


def _normalise_side(side: str | None) -> str | None:
    if side is None:
        return None
    s = str(side).strip().upper()
    if s in ("L", "LEFT"):
        return "L"
    if s in ("R", "RIGHT"):
        return "R"
    return None


def _intensity_range(region: np.ndarray, mask: np.ndarray | None, config: PreprocessConfig) -> tuple[float, float]:
    """(lo, hi) that map to 0 and 1, from a strided sample of the region (breast pixels if masked)."""
    if config.intensity == "none":
        return 0.0, 1.0
    h, w = region.shape
    if mask is not None:
        # Nearest-neighbour sample: one full-resolution pixel per coarse mask cell.
        rows = np.minimum((np.arange(mask.shape[0]) + 0.5) * h / mask.shape[0], h - 1).astype(np.intp)
        cols = np.minimum((np.arange(mask.shape[1]) + 0.5) * w / mask.shape[1], w - 1).astype(np.intp)
        sample = region[np.ix_(rows, cols)][mask]
        if sample.size < 16:
            sample = region.ravel()
    else:
        step = max(1, int(math.sqrt(region.size / 262_144)))
        sample = region[::step, ::step].ravel()
    if config.intensity == "minmax":
        return float(sample.min()), float(sample.max())
    lo, hi = np.percentile(sample, config.intensity_window)
    return float(lo), float(hi)
