"""Tiny models and learnable datasets for fast, deterministic training tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset


class TinyNet(nn.Module):
    """A small CNN that follows the TransferModel interface (forward, forward_train, parameter groups)."""

    def __init__(self, num_outputs: int = 1, aux: bool = False, dropout: float = 0.0):
        super().__init__()
        self.spec = SimpleNamespace(name="tiny", input_size=(32, 32))
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        )
        self.head = nn.Linear(16, num_outputs)
        self.aux = nn.Linear(16, num_outputs) if aux else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def forward_train(self, x: torch.Tensor):
        f = self.body(x)
        aux = self.aux(f) if (self.aux is not None and self.training) else None
        return self.head(f), aux

    def head_parameters(self):
        return list(self.head.parameters())

    def top_parameters(self):
        return self.head_parameters() + (list(self.aux.parameters()) if self.aux is not None else [])

    def body_parameters(self):
        return list(self.body.parameters())


class BlobDataset(Dataset):
    """uint8 (1, S, S) noise images; label 1 images carry a bright blob somewhere."""

    def __init__(self, n: int, size: int = 32, seed: int = 0, pos_fraction: float = 0.5):
        rng = np.random.default_rng(seed)
        self.labels = (rng.random(n) < pos_fraction).astype(np.float32)
        if self.labels.sum() == 0:
            self.labels[0] = 1
        yy, xx = np.mgrid[0:size, 0:size]
        images = rng.normal(70, 20, size=(n, size, size))
        for i in np.flatnonzero(self.labels):
            cy, cx = rng.uniform(size * 0.25, size * 0.75, size=2)
            images[i] += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 10) ** 2))
        self.images = torch.from_numpy(np.clip(images, 0, 255).astype(np.uint8)).unsqueeze(1)
        self.image_ids = [f"img{i:04d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], torch.tensor(self.labels[i])
