"""Torch dataset over a consolidated cache array (see :mod:`tlcore.data.cache`).

Items are ``(uint8 tensor (1, H, W), float32 label scalar)``. Reading an item is a
memory-map slice and a copy of ``H*W`` bytes; conversion to float, the three-channel
expansion (:func:`tlcore.data.preprocess.to_model_batch`) and augmentation happen on
the device, batched, in the training engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tlcore.data.cache import CachedArray, ImageCache
from tlcore.data.preprocess import PreprocessConfig
from tlcore.data.records import ImageRecord


class CachedImageDataset(Dataset):
    """Images of a :class:`CachedArray`, optionally restricted to ``indices`` (rows of the array).

    Picklable for DataLoader workers: a memory-mapped array travels as its file path and is
    reopened lazily in the worker.
    """

    def __init__(self, cached: CachedArray, indices: Sequence[int] | np.ndarray | None = None):
        n = len(cached.records)
        if cached.images.shape[0] != n:
            raise ValueError(f"cached array holds {cached.images.shape[0]} images for {n} records")
        idx = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"dataset indices must lie in [0, {n}); got min {idx.min()}, max {idx.max()}")
        self._indices = idx
        self.skipped = list(cached.skipped)
        self.records: list[ImageRecord] = [cached.records[i] for i in idx]
        self.labels: np.ndarray = np.asarray([r.label for r in self.records], dtype=np.int64)
        self.image_ids: list[str] = [r.image_id for r in self.records]
        self.config = cached.config
        self._label_t = torch.from_numpy(self.labels.astype(np.float32))
        self._path: Path | None = cached.path if isinstance(cached.images, np.memmap) else None
        self._images: np.ndarray | None = cached.images

    @classmethod
    def from_records(
        cls,
        records: Sequence[ImageRecord],
        config: PreprocessConfig,
        cache: ImageCache | None = None,
        **build_kwargs: Any,
    ) -> CachedImageDataset:
        """Build (or reuse) the cache for ``records`` and wrap it; skipped images are left out.

        ``build_kwargs`` go to :meth:`ImageCache.build`; the build's skip list is kept in
        ``skipped``.
        """
        return cls((cache or ImageCache()).build(records, config, **build_kwargs))

    def subset(self, positions: Sequence[int] | np.ndarray) -> CachedImageDataset:
        """A dataset over some of this dataset's items (positions relative to this dataset)."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        new = object.__new__(CachedImageDataset)
        new.__dict__.update(self.__dict__)
        new._indices = self._indices[pos]
        new.records = [self.records[i] for i in pos]
        new.labels = self.labels[pos]
        new.image_ids = [self.image_ids[i] for i in pos]
        new._label_t = self._label_t[torch.from_numpy(pos)] if pos.size else self._label_t[:0]
        return new

    # ------------------------------------------------------------------ torch API
    def __len__(self) -> int:
        return int(self._indices.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self._indices[i])
        img = torch.from_numpy(np.array(self._array()[row], copy=True))
        return img.unsqueeze(0), self._label_t[i]

    def __getitems__(self, positions: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batched fetch used by DataLoader: one fancy-indexed read for the whole batch."""
        pos = np.asarray(positions, dtype=np.int64)
        rows = self._indices[pos]
        block = torch.from_numpy(np.ascontiguousarray(self._array()[rows])).unsqueeze(1)
        labels = self._label_t[torch.from_numpy(pos)]
        return [(block[k], labels[k]) for k in range(len(pos))]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All items at once: uint8 ``(N, 1, H, W)`` and float32 labels ``(N,)``."""
        block = np.ascontiguousarray(self._array()[self._indices])
        return torch.from_numpy(block).unsqueeze(1), self._label_t.clone()

    # ------------------------------------------------------------------ pickling
    def _array(self) -> np.ndarray:
        if self._images is None:
            assert self._path is not None
            self._images = np.load(self._path, mmap_mode="r", allow_pickle=False)
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._path is not None:
            state["_images"] = None  # reopen the memory map in the receiving process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
