"""Two-stage training of the patch-based CNN (Shen et al. 2019, "end2end-all-conv").

Stage 1 trains a patch classifier on patches sampled from CBIS-DDSM full mammograms,
downscaled to a working height: patches centred inside an ROI-mask lesion get that
lesion's class (1 benign, 2 malignant), patches of breast tissue that touch no lesion get
class 0 (background). Stage 2 puts the patch body under new top blocks and trains the
whole-image model in two phases: new top only, then all layers at a lower rate.

Both stages run on :func:`tlcore.training.engine.fit`; only the objective differs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from tlcore.data.imageio import is_binary_mask, read_image
from tlcore.data.records import ImageDecodeError, ImageRecord, Skipped
from tlcore.training.config import TrainConfig
from tlcore.training.engine import EpochRecord, FitResult, MulticlassObjective, fit

BACKGROUND, BENIGN, MALIGNANT = 0, 1, 2
_CACHE_VERSION = 1


@dataclass(frozen=True)
class PatchSamplingConfig:
    """How patches are cut from full mammograms.

    Images (and their ROI masks) are resized to ``image_height`` rows, keeping the aspect
    ratio; patches are ``patch_size`` square at that scale. For every lesion,
    ``patches_per_lesion`` centres are drawn uniformly from its mask pixels. For every
    image, ``background_per_image`` centres are drawn from breast tissue (pixels above
    ``tissue_threshold``) such that the patch touches no lesion mask and holds at least
    ``min_tissue_fraction`` tissue; after ``max_background_tries`` failed draws fewer are
    kept. ``seed`` makes the sampling reproducible (per image, independently of the others).
    """

    patch_size: int = 224
    patches_per_lesion: int = 4
    background_per_image: int = 4
    image_height: int = 1152
    tissue_threshold: float = 0.05
    min_tissue_fraction: float = 0.5
    max_background_tries: int = 200
    max_aspect_mismatch: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("patch_size", "image_height", "max_background_tries"):
            if getattr(self, name) < 1:
                raise ValueError(f"PatchSamplingConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("patches_per_lesion", "background_per_image"):
            if getattr(self, name) < 0:
                raise ValueError(f"PatchSamplingConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("tissue_threshold", "min_tissue_fraction", "max_aspect_mismatch"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"PatchSamplingConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PatchInfo(NamedTuple):
    """Where one patch comes from: image position in ``PatchDataset.source_ids``, centre
    (row, col) at the working scale, class, and the finding index (-1 for background)."""

    image: int
    row: int
    col: int
    label: int
    finding: int


# --------------------------------------------------------------------------------------------
# Decoding, downscaling and caching of full images with their masks
# --------------------------------------------------------------------------------------------


def _resize(pixels: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None, None]
    if mode == "area":
        out = F.interpolate(t, size=shape, mode="area")
    else:
        out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].numpy()


def _working_shape(h: int, w: int, height: int) -> tuple[int, int]:
    return height, max(1, round(w * height / h))


def _load_image_and_masks(record: ImageRecord, config: PatchSamplingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Decode, check and downscale one image and its lesion masks.

    Returns (image uint8 (H, W), masks uint8 (F, H, W) with 0/1). Raises ``_Skip`` with the
    reason when the image cannot be used.
    """
    for k, finding in enumerate(record.findings):
        if finding.roi_mask_path is None:
            raise _Skip(str(record.path), f"finding {k} has no ROI mask path")
        if not Path(finding.roi_mask_path).is_file():
            raise _Skip(str(finding.roi_mask_path), f"ROI mask of finding {k} not found on disk")
    try:
        image = read_image(record.path).pixels
    except ImageDecodeError as exc:
        raise _Skip(str(record.path), f"cannot decode image: {exc.reason}") from exc
    h, w = image.shape
    shape = _working_shape(h, w, config.image_height)
    small = np.clip(np.rint(_resize(image, shape, "bilinear") * 255), 0, 255).astype(np.uint8)
    masks = np.zeros((len(record.findings), *shape), dtype=np.uint8)
    for k, finding in enumerate(record.findings):
        path = Path(finding.roi_mask_path)
        try:
            decoded = read_image(path)
        except ImageDecodeError as exc:
            raise _Skip(str(path), f"cannot decode ROI mask of finding {k}: {exc.reason}") from exc
        if not is_binary_mask(decoded):
            raise _Skip(str(path), f"ROI mask of finding {k} is not binary (a cropped image instead of a mask?)")
        mh, mw = decoded.pixels.shape
        if abs(mw / mh - w / h) > config.max_aspect_mismatch * (w / h):
            raise _Skip(str(path), f"ROI mask of finding {k} is {mw}x{mh}, image is {w}x{h} (aspect ratios differ)")
        binary = (decoded.pixels > 0).astype(np.float32)
        if not binary.any():
            raise _Skip(str(path), f"ROI mask of finding {k} is empty")
        masks[k] = _resize(binary, shape, "area") > 0  # any coverage counts: keeps small calcifications
    return small, masks


class _Skip(Exception):
    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.entry = Skipped(path=path, reason=reason)


def _cache_key(record: ImageRecord, config: PatchSamplingConfig) -> str:
    parts = [f"v{_CACHE_VERSION}", str(config.image_height), str(config.max_aspect_mismatch)]
    for path in [record.path, *(f.roi_mask_path for f in record.findings)]:
        p = Path(path) if path is not None else None
        if p is not None and p.is_file():
            st = p.stat()
            parts.append(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
        else:
            parts.append(f"{p}:missing")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _integral(a: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.int64)
    out[1:, 1:] = a.astype(np.int64).cumsum(0).cumsum(1)
    return out


def _window_sum(integral: np.ndarray, top: int, left: int, size: int) -> int:
    """Sum of the original array over rows [top, top+size) x cols [left, left+size), clipped to it."""
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    r0, r1 = max(0, top), min(h, top + size)
    c0, c1 = max(0, left), min(w, left + size)
    if r0 >= r1 or c0 >= c1:
        return 0
    return int(integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0])


def patch_window(row: int, col: int, size: int) -> tuple[int, int]:
    """(top, left) of the ``size`` square patch centred at (row, col)."""
    return row - size // 2, col - size // 2


def extract_patch(image: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    """The ``size`` square around (row, col); parts outside the image are zero."""
    top, left = patch_window(row, col, size)
    out = np.zeros((size, size), dtype=image.dtype)
    h, w = image.shape
    r0, r1 = max(0, top), min(h, top + size)
    c0, c1 = max(0, left), min(w, left + size)
    if r0 < r1 and c0 < c1:
        out[r0 - top:r1 - top, c0 - left:c1 - left] = image[r0:r1, c0:c1]
    return out


def sample_patch_centres(record: ImageRecord, masks: np.ndarray, image: np.ndarray,
                         config: PatchSamplingConfig, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """(row, col, label, finding) for the lesion and background patches of one image."""
    out: list[tuple[int, int, int, int]] = []
    for k, finding in enumerate(record.findings):
        rows, cols = np.nonzero(masks[k])
        label = MALIGNANT if finding.malignant else BENIGN
        for j in rng.integers(0, rows.size, size=config.patches_per_lesion):
            out.append((int(rows[j]), int(cols[j]), label, k))
    if config.background_per_image == 0:
        return out
    lesions = masks.any(axis=0) if masks.shape[0] else np.zeros(image.shape, dtype=bool)
    tissue = image > round(config.tissue_threshold * 255)
    lesion_int, tissue_int = _integral(lesions), _integral(tissue)
    t_rows, t_cols = np.nonzero(tissue & ~lesions)
    if t_rows.size == 0:
        return out
    size = config.patch_size
    needed = config.min_tissue_fraction * size * size
    kept = 0
    for _ in range(config.max_background_tries):
        j = int(rng.integers(0, t_rows.size))
        row, col = int(t_rows[j]), int(t_cols[j])
        top, left = patch_window(row, col, size)
        if _window_sum(lesion_int, top, left, size) == 0 and _window_sum(tissue_int, top, left, size) >= needed:
            out.append((row, col, BACKGROUND, -1))
            kept += 1
            if kept == config.background_per_image:
                break
    return out


class PatchDataset(Dataset):
    """Patches from full mammograms with ROI masks (CBIS-DDSM), for the stage-1 classifier.

    Items are ``(uint8 tensor (1, P, P), int64 class)`` with classes 0 background, 1 benign,
    2 malignant. Images are decoded once through :func:`tlcore.data.imageio.read_image`,
    downscaled, and kept in memory, or with ``cache_dir`` stored there as ``.npy`` files and
    memory-mapped (a later dataset over the same files skips decoding). Images that cannot be
    used (a mask missing on disk, unreadable, not binary, empty, of another shape) are left
    out and listed in ``skipped`` with the reason. Sampling is reproducible for a given
    ``config.seed`` and the same images.
    """

    def __init__(self, records: Sequence[ImageRecord], config: PatchSamplingConfig | None = None, *,
                 cache_dir: str | Path | None = None, progress: bool = False):
        self.config = config or PatchSamplingConfig()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.skipped: list[Skipped] = []
        self.source_ids: list[str] = []
        self._images: list[np.ndarray | None] = []
        self._image_files: list[Path | None] = []
        patches: list[PatchInfo] = []
        for record in tqdm(records, desc="patch images", disable=not progress, unit="image"):
            try:
                image, masks = self._load(record)
            except _Skip as skip:
                self.skipped.append(skip.entry)
                continue
            rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, _stable_int(record.image_id)]))
            index = len(self.source_ids)
            for row, col, label, finding in sample_patch_centres(record, masks, image, self.config, rng):
                patches.append(PatchInfo(index, row, col, label, finding))
            self.source_ids.append(record.image_id)
        self.patches: list[PatchInfo] = patches
        self.labels: np.ndarray = np.asarray([p.label for p in patches], dtype=np.int64)
        self.image_ids: list[str] = [f"{self.source_ids[p.image]}#{i}" for i, p in enumerate(patches)]

    def _load(self, record: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
        if self.cache_dir is None:
            image, masks = _load_image_and_masks(record, self.config)
            self._images.append(image)
            self._image_files.append(None)
            return image, masks
        key = _cache_key(record, self.config)
        img_path = self.cache_dir / f"{key}_image.npy"
        mask_path = self.cache_dir / f"{key}_masks.npy"
        if not (img_path.is_file() and mask_path.is_file()):
            image, masks = _load_image_and_masks(record, self.config)
            _save_npy(mask_path, masks)
            _save_npy(img_path, image)
        self._images.append(None)
        self._image_files.append(img_path)
        return np.load(img_path, mmap_mode="r"), np.load(mask_path)

    def image(self, index: int) -> np.ndarray:
        """The downscaled uint8 image ``source_ids[index]`` (memory-mapped when cached on disk)."""
        array = self._images[index]
        if array is None:
            array = np.load(self._image_files[index], mmap_mode="r")
            self._images[index] = array
        return array

    def __getstate__(self) -> dict[str, Any]:
        # Disk-backed images travel to DataLoader workers as paths, not copies.
        state = self.__dict__.copy()
        state["_images"] = [None if f is not None else a for a, f in zip(self._images, self._image_files)]
        return state

    def class_counts(self) -> dict[str, int]:
        """Number of patches per class name."""
        counts = np.bincount(self.labels, minlength=3)
        return {"background": int(counts[0]), "benign": int(counts[1]), "malignant": int(counts[2])}

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.patches[i]
        patch = extract_patch(self.image(p.image), p.row, p.col, self.config.patch_size)
        return torch.from_numpy(patch).unsqueeze(0), torch.tensor(p.label, dtype=torch.int64)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def train_patch_classifier(
    patch_model: nn.Module,
    patch_ds: Dataset,
    val_ds: Dataset | None,
    config: TrainConfig,
    **fit_kwargs: Any,
) -> FitResult:
    """Stage 1: train the patch classifier with cross entropy over its classes.

    ``val_auc`` in the history is the macro one-vs-rest AUC over the patch classes.
    ``fit_kwargs`` (checkpoint_dir, resume, progress, on_epoch_end, ...) go to :func:`fit`.
    """
    num_classes = int(getattr(patch_model, "num_classes", 3))
    return fit(patch_model, patch_ds, val_ds, config, objective=MulticlassObjective(num_classes), **fit_kwargs)


def two_phase_configs(base: TrainConfig, *, top_epochs: int | None = None, all_epochs: int | None = None,
                      all_lr_factor: float = 0.1) -> tuple[TrainConfig, TrainConfig]:
    """Phase configs for :func:`train_whole_image`: the top at ``base.lr``, then all layers at
    ``base.lr * all_lr_factor``."""
    top = base.replace(trainable="top", epochs=top_epochs or base.epochs)
    everything = base.replace(trainable="all", epochs=all_epochs or base.epochs, lr=base.lr * all_lr_factor)
    return top, everything


def train_whole_image(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None,
    config_top: TrainConfig,
    config_all: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    on_epoch_end: Callable[[str, EpochRecord], None] | None = None,
    checkpoint_interval_s: float = 0.0,
) -> tuple[FitResult, FitResult]:
    """Stage 2: train the whole-image model in two phases, ``top`` then ``all``.

    Phase ``top`` trains only ``model.top_parameters()`` (new top blocks and head) with
    ``config_top``; phase ``all`` starts from its best weights and trains every layer with
    ``config_all`` (normally a lower rate). The ``trainable`` field of each config is set
    accordingly whatever it says. Checkpoints go to ``checkpoint_dir/top`` and
    ``checkpoint_dir/all``; ``on_epoch_end(phase, record)`` is called after every epoch;
    ``checkpoint_interval_s`` goes to :func:`fit`.
    """
    results = []
    for phase, cfg in (("top", config_top.replace(trainable="top")), ("all", config_all.replace(trainable="all"))):
        callback = None if on_epoch_end is None else functools.partial(on_epoch_end, phase)
        results.append(fit(
            model, train_ds, val_ds, cfg,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / phase,
            resume=resume, progress=progress, on_epoch_end=callback, checkpoint_interval_s=checkpoint_interval_s,
        ))
    return results[0], results[1]
