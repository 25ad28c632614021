"""Batched, seeded, on-device image augmentation for float images in [0, 1].

All random parameters are drawn on the CPU from a ``torch.Generator`` (so a seed gives the
same augmentation on every device) and moved to the batch's device in one copy; the work
itself (flips, one ``grid_sample`` for rotation + scale, intensity jitter) runs where the
batch lives, with no host synchronisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tlcore.training.config import AugmentConfig


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def affine_matrices(angles_deg: torch.Tensor, scales: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling matrices (B, 2, 3) for ``affine_grid`` that rotate by ``angles_deg`` and zoom by ``scales``.

    The rotation is a true rotation in pixel space for non-square images (normalised
    coordinates are corrected for the aspect ratio). A scale above 1 zooms in.
    """
    theta = torch.deg2rad(angles_deg.double())
    cos, sin = torch.cos(theta), torch.sin(theta)
    inv = 1.0 / scales.double()
    ratio_hw = height / width
    mat = torch.zeros(angles_deg.shape[0], 2, 3, dtype=torch.float64)
    mat[:, 0, 0] = cos * inv
    mat[:, 0, 1] = -sin * inv * ratio_hw
    mat[:, 1, 0] = sin * inv / ratio_hw
    mat[:, 1, 1] = cos * inv
    return mat.float()


class BatchAugmenter:
    """Applies an :class:`AugmentConfig` to batches; seeded and reproducible.

    ``augmenter(x)`` takes float (B, C, H, W) in [0, 1] on any device and returns a tensor of
    the same shape, dtype, device and memory format, clamped to [0, 1]. The random stream
    comes from ``seed``; :meth:`reseed` starts a new stream (the engine reseeds every epoch
    from (seed, epoch), so a resumed run sees exactly the same augmentations).
    """

    def __init__(self, config: AugmentConfig, seed: int = 0):
        self.config = config
        self.generator = torch.Generator(device="cpu")
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random stream from ``seed``."""
        self.generator.manual_seed(int(seed) % (2**63))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not cfg.enabled:
            return x
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"augmentation needs a float (B, C, H, W) batch, got {tuple(x.shape)} {x.dtype}")
        b, _, h, w = x.shape
        g = self.generator
        # Draw every parameter on the CPU in a fixed order, whatever is enabled later.
        flips = torch.rand(b, 2, generator=g) < 0.5
        angles = _uniform(b, -cfg.max_rotation_deg, cfg.max_rotation_deg, g)
        scales = _uniform(b, cfg.scale_range[0], cfg.scale_range[1], g)
        photo = torch.rand(b, 3, generator=g) * 2 - 1  # brightness, contrast, gamma in [-1, 1]

        memory_format = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format
        out = x
        if cfg.hflip or cfg.vflip:
            fl = flips.to(x.device, non_blocking=True)
            if cfg.hflip:
                out = torch.where(fl[:, 0].view(b, 1, 1, 1), out.flip(-1), out)
            if cfg.vflip:
                out = torch.where(fl[:, 1].view(b, 1, 1, 1), out.flip(-2), out)
        if cfg.is_geometric:
            theta = affine_matrices(angles, scales, h, w).to(device=x.device, dtype=out.dtype, non_blocking=True)
            grid = F.affine_grid(theta, list(out.shape), align_corners=False)
            out = F.grid_sample(out, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if cfg.brightness > 0 or cfg.contrast > 0 or cfg.gamma > 0:
            p = photo.to(device=x.device, dtype=out.dtype, non_blocking=True)
            if cfg.contrast > 0:
                factor = (1 + cfg.contrast * p[:, 1]).view(b, 1, 1, 1)
                mean = out.mean(dim=(1, 2, 3), keepdim=True)
                out = (out - mean) * factor + mean
            if cfg.brightness > 0:
                out = out + (cfg.brightness * p[:, 0]).view(b, 1, 1, 1)
            out = out.clamp(0.0, 1.0)
            if cfg.gamma > 0:
                # gamma = exp(g * u): symmetric in log space, always positive.
                gamma = torch.exp(math.log1p(cfg.gamma) * p[:, 2]).view(b, 1, 1, 1)
                out = out.clamp_min(1e-6).pow(gamma)
        out = out.clamp(0.0, 1.0)
        return out.contiguous(memory_format=memory_format)


def augment_batch(x: torch.Tensor, config: AugmentConfig, seed: int) -> torch.Tensor:
    """One-off augmentation of a batch with a fresh stream from ``seed``."""
    return BatchAugmenter(config, seed)(x)
