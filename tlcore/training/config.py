"""Typed configuration for the training engine: augmentation and optimisation settings.

Both configs are frozen dataclasses made of plain values, so ``to_dict()`` can be logged
whole as a run artifact and ``from_dict()`` rebuilds the exact object. Invalid values
raise ``ValueError`` naming the field; unknown keys in ``from_dict`` get a "did you mean".
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
IMBALANCE = ("weighted_loss", "balanced_sampler", "none")
TRAINABLE = ("all", "top")
AUTO_FLAGS = ("auto", "on", "off")
AMP_MODES = ("auto", "bf16", "fp16", "off")
MODALITIES = ("mammogram", "ultrasound")


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{owner}.{name} must be one of {choices}, got {value!r}.{hint}")


def _check_keys(cls: type, data: Mapping[str, Any]) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {cls.__name__} option {key!r}.{hint} Valid options: {', '.join(names)}")


@dataclass(frozen=True)
class AugmentConfig:
    """Batched on-device augmentation, applied to float images in [0, 1] during training only.

    Geometric: random horizontal/vertical flips (probability 0.5 each when enabled), a rotation
    drawn uniformly in +-``max_rotation_deg`` and an isotropic scale drawn uniformly in
    ``scale_range``. Photometric: brightness offset in +-``brightness``, contrast factor in
    1 +- ``contrast``, gamma in [1/(1 + ``gamma``), 1 + ``gamma``]. A zero disables a jitter.
    """

    hflip: bool = True
    vflip: bool = False
    max_rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.1

    def __post_init__(self) -> None:
        scale = tuple(float(s) for s in self.scale_range)
        if len(scale) != 2 or not (0 < scale[0] <= scale[1]):
            raise ValueError(f"AugmentConfig.scale_range must be (low, high) with 0 < low <= high, got {self.scale_range!r}")
        object.__setattr__(self, "scale_range", scale)
        if not 0 <= self.max_rotation_deg <= 180:
            raise ValueError(f"AugmentConfig.max_rotation_deg must be in [0, 180], got {self.max_rotation_deg!r}")
        for name in ("brightness", "contrast", "gamma"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1), got {value!r}")

    @property
    def is_geometric(self) -> bool:
        """True when rotation or scaling is enabled (needs resampling with grid_sample)."""
        return self.max_rotation_deg > 0 or self.scale_range != (1.0, 1.0)

    @property
    def enabled(self) -> bool:
        """True when any augmentation is on."""
        return (
            self.hflip or self.vflip or self.is_geometric
            or self.brightness > 0 or self.contrast > 0 or self.gamma > 0
        )

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all."""
        return cls(hflip=False, vflip=False, max_rotation_deg=0.0, scale_range=(1.0, 1.0),
                   brightness=0.0, contrast=0.0, gamma=0.0)

    @classmethod
    def for_modality(cls, modality: str) -> AugmentConfig:
        """Preset for ``"mammogram"`` or ``"ultrasound"``.

        Mammograms: both flips (left/right breasts and view orientation vary), rotation up
        to 15 degrees, zoom 0.9-1.1. Ultrasound: the transducer is always at the top, so no
        vertical flip; milder rotation, stronger intensity jitter (gain varies by machine).
        """
        _check_choice("AugmentConfig.for_modality", "modality", modality, MODALITIES)
        if modality == "mammogram":
            return cls(hflip=True, vflip=True, max_rotation_deg=15.0, scale_range=(0.9, 1.1),
                       brightness=0.1, contrast=0.1, gamma=0.1)
        return cls(hflip=True, vflip=False, max_rotation_deg=10.0, scale_range=(0.9, 1.1),
                   brightness=0.15, contrast=0.15, gamma=0.1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-value dictionary (JSON-serialisable apart from tuples becoming lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        _check_keys(cls, data)
        values = dict(data)
        if "scale_range" in values:
            values["scale_range"] = tuple(values["scale_range"])
        return cls(**values)


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`tlcore.training.engine.fit` needs to train one model.

    ``schedule``: ``cosine`` decays to zero over all epochs, ``step`` multiplies the rate by
    ``step_gamma`` every ``step_every`` epochs, ``constant`` keeps it; a linear warm-up over
    ``warmup_epochs`` precedes any of them. The rate is updated every optimiser step.
    ``imbalance``: ``weighted_loss`` (BCE ``pos_weight`` = negatives/positives, or inverse class
    frequency for several classes), ``balanced_sampler`` (WeightedRandomSampler) or ``none``.
    ``early_stopping_patience``: epochs without validation-AUC improvement before stopping
    (0 turns early stopping off); the best weights are restored either way.
    ``trainable="top"`` trains only ``model.top_parameters()`` and keeps the body frozen
    (its BatchNorm statistics included). ``deterministic`` seeds everything, forces
    ``num_workers=0`` and turns on ``torch.use_deterministic_algorithms`` during the fit.
    ``amp``: ``auto`` = bf16 autocast on CUDA, off elsewhere. ``channels_last``: ``auto`` = on
    CUDA only.
    """

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 0
    step_every: int = 3
    step_gamma: float = 0.1
    imbalance: str = "weighted_loss"
    early_stopping_patience: int = 5
    early_stopping_min_delta: float = 0.0
    grad_clip_norm: float | None = 1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    num_workers: int = 0
    trainable: str = "all"
    aux_loss_weight: float = 0.4
    drop_last: bool = False

    def __post_init__(self) -> None:
        _check_choice("TrainConfig", "optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("TrainConfig", "schedule", self.schedule, SCHEDULES)
        _check_choice("TrainConfig", "imbalance", self.imbalance, IMBALANCE)
        _check_choice("TrainConfig", "trainable", self.trainable, TRAINABLE)
        _check_choice("TrainConfig", "amp", self.amp, AMP_MODES)
        if isinstance(self.channels_last, bool):
            object.__setattr__(self, "channels_last", "on" if self.channels_last else "off")
        _check_choice("TrainConfig", "channels_last", self.channels_last, AUTO_FLAGS)
        if isinstance(self.augment, Mapping):
            object.__setattr__(self, "augment", AugmentConfig.from_dict(self.augment))
        if not isinstance(self.augment, AugmentConfig):
            raise TypeError(f"TrainConfig.augment must be an AugmentConfig, got {type(self.augment).__name__}")
        positive_ints = ("epochs", "batch_size", "step_every")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        for name in ("weight_decay", "momentum", "warmup_epochs", "aux_loss_weight", "early_stopping_min_delta"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.step_gamma <= 1:
            raise ValueError(f"TrainConfig.step_gamma must be in (0, 1], got {self.step_gamma!r}")
        if self.early_stopping_patience < 0:
            raise ValueError(f"TrainConfig.early_stopping_patience must be >= 0, got {self.early_stopping_patience!r}")
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise ValueError(f"TrainConfig.grad_clip_norm must be > 0 or None, got {self.grad_clip_norm!r}")
        if self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be >= 0, got {self.num_workers!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        _check_keys(type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-value dictionary, augmentation nested; suitable for logging as an artifact."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error that names close matches."""
        _check_keys(cls, data)
        values = dict(data)
        if isinstance(values.get("augment"), Mapping):
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        return cls(**values)
