"""The train / fine-tune / evaluate engine (no MLflow: callers log through ``on_epoch_end``).

:func:`fit` runs the epoch loop for any model that maps float (B, 3, H, W) images in [0, 1]
to logits; what the logits mean is an :class:`Objective` (binary malignant-vs-not by
default, several classes for the patch classifier). It handles class imbalance, seeded
on-device augmentation, AdamW/SGD with a per-step schedule, gradient clipping, the Inception
auxiliary loss, early stopping on validation AUC (best weights restored), bf16 autocast and
channels_last on CUDA, a deterministic CPU mode, and an atomic checkpoint every epoch from
which ``resume=True`` continues exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, WeightedRandomSampler
from tqdm.auto import tqdm

from tlcore.data.preprocess import to_model_batch
from tlcore.metrics import evaluate_scores, roc_auc
from tlcore.training.augment import BatchAugmenter
from tlcore.training.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    SigtermCheckpoint,
    capture_rng_state,
    cpu_state_dict,
    cpu_state_view,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from tlcore.training.config import TrainConfig

# Settings that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "early_stopping_patience", "early_stopping_min_delta", "device", "num_workers", "amp", "channels_last"}
)
_POSTFIX_EVERY = 25  # steps between progress-bar loss updates (each one reads the loss back from the device)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch produced. ``epoch`` counts from 1; ``val_auc`` is None when the
    validation set holds a single class (or there is none); ``lr`` is the rate in effect at
    the start of the epoch; ``images_per_s`` measures the training pass only."""

    epoch: int
    train_loss: float
    val_auc: float | None
    val_loss: float | None
    lr: float
    seconds: float
    images_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    """Outcome of :func:`fit`. The model holds the weights of ``best_epoch`` afterwards.

    ``monitor`` is what early stopping watched: ``val_auc``, or ``val_loss`` when the
    validation set has a single class, or ``none`` without a validation set (best = last).
    ``resumed_from`` is the number of epochs already done in the checkpoint this call
    continued from. ``finished`` is False when ``stop_after_epoch`` ended the call early.
    """

    history: list[EpochRecord]
    best_epoch: int
    best_val_auc: float | None
    stopped_early: bool
    resumed_from: int | None
    monitor: str = "val_auc"
    finished: bool = True
    checkpoint_path: Path | None = None


# --------------------------------------------------------------------------------------------
# Objectives: how logits, labels and the loss relate
# --------------------------------------------------------------------------------------------


class Objective(Protocol):
    """Pluggable target/loss handling for :func:`fit` (binary and multi-class are provided)."""

    name: str

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Dataset labels (on the device) -> what the loss expects."""
        ...

    def make_loss(self, train_labels: np.ndarray, weighted: bool, device: torch.device
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The training loss; ``weighted`` asks it to compensate class imbalance."""
        ...

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> ranking scores for the metric (binary: (N,), K classes: (N, K)).

        Monotone in the class probabilities, so AUCs are the same, but computed from the
        logits so that they do not tie where float probabilities saturate at 0 or 1 (a
        randomly initialised Inception-v3 in eval mode gives logits around 1e6).
        """
        ...

    def metric(self, labels: np.ndarray, scores: np.ndarray) -> float | None:
        """Validation AUC, or None when it is undefined."""
        ...


def _class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels.astype(np.int64), minlength=num_classes)[:num_classes]


def _binary_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc(labels, scores))


class BinaryObjective:
    """One logit per image; BCE-with-logits; malignant = 1. Weighted: ``pos_weight`` = neg/pos."""

    name = "binary"
    num_classes = 2

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(-1).float()

    @staticmethod
    def _flat(logits: torch.Tensor) -> torch.Tensor:
        if logits.ndim == 2 and logits.shape[1] == 1:
            return logits[:, 0]
        if logits.ndim == 1:
            return logits
        raise ValueError(
            f"the binary objective needs logits of shape (B, 1); the model returned {tuple(logits.shape)} "
            "(use MulticlassObjective for several classes)"
        )

    def make_loss(self, train_labels, weighted, device):
        pos_weight = None
        if weighted:
            counts = _class_counts(np.asarray(train_labels), 2)
            if counts[0] > 0 and counts[1] > 0:
                pos_weight = torch.tensor(counts[0] / counts[1], dtype=torch.float32, device=device)

        def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(self._flat(logits).float(), targets, pos_weight=pos_weight)

        return loss

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return self._flat(logits).double()

    def metric(self, labels, scores):
        return _binary_auc(labels, scores)


class MulticlassObjective:
    """K logits per image; cross entropy. Weighted: class weights n / (K * count_k).

    The validation metric is the macro average of one-vs-rest AUCs over the classes that
    occur (with at least one other class present)."""

    name = "multiclass"

    def __init__(self, num_classes: int):
        if num_classes < 2:
            raise ValueError(f"MulticlassObjective needs >= 2 classes, got {num_classes}")
        self.num_classes = num_classes

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(-1).long()

    def _check(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the {self.num_classes}-class objective needs logits of shape (B, {self.num_classes}); "
                f"the model returned {tuple(logits.shape)}"
            )
        return logits.float()

    def make_loss(self, train_labels, weighted, device):
        weight = None
        if weighted:
            counts = _class_counts(np.asarray(train_labels), self.num_classes).astype(np.float64)
            present = counts > 0
            w = np.zeros(self.num_classes)
            w[present] = counts.sum() / (present.sum() * counts[present])
            weight = torch.tensor(w, dtype=torch.float32, device=device)

        def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(self._check(logits), targets, weight=weight)

        return loss

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self._check(logits).double(), dim=1)

    def metric(self, labels, scores):
        labels = np.asarray(labels).astype(int)
        aucs = []
        for k in range(self.num_classes):
            is_k = labels == k
            if 0 < is_k.sum() < len(labels):
                auc = _binary_auc(is_k.astype(int), scores[:, k])
                if auc is not None:
                    aucs.append(auc)
        return float(np.mean(aucs)) if aucs else None


# --------------------------------------------------------------------------------------------
# Dataset and device helpers
# --------------------------------------------------------------------------------------------


def dataset_labels(ds: Dataset) -> np.ndarray:
    """The labels of ``ds`` in order: its ``.labels`` if it has them, else read item by item."""
    labels = getattr(ds, "labels", None)
    if labels is not None:
        return labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        return ds.tensors[1].detach().cpu().numpy().reshape(len(ds), -1)[:, 0]
    if isinstance(ds, Subset):
        return dataset_labels(ds.dataset)[np.asarray(ds.indices)]
    return np.asarray([float(ds[i][1]) for i in range(len(ds))])


def dataset_ids(ds: Dataset) -> list[str]:
    """Image ids of ``ds`` (its ``.image_ids``) or, failing that, the positions as strings."""
    ids = getattr(ds, "image_ids", None)
    if ids is not None:
        return [str(i) for i in ids]
    if isinstance(ds, Subset):
        parent = getattr(ds.dataset, "image_ids", None)
        if parent is not None:
            return [str(parent[i]) for i in ds.indices]
    return [str(i) for i in range(len(ds))]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return dev


def _autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _use_channels_last(flag: str, device: torch.device) -> bool:
    return flag == "on" or (flag == "auto" and device.type == "cuda")


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_batch(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A loader batch (uint8 or float, 1 or 3 channels) -> float (B, 3, H, W) in [0, 1] on ``device``."""
    return to_model_batch(x, device, channels_last=channels_last)


def _forward_train(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    fn = getattr(model, "forward_train", None)
    out = fn(x) if callable(fn) else model(x)
    if isinstance(out, (tuple, list)):
        return out[0], (out[1] if len(out) > 1 else None)
    return out, None


def _derive_seed(seed: int, *parts: Any) -> int:
    blob = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Turn on deterministic algorithms for the duration (restoring the previous settings)."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        if enabled:
            cuda = device.type == "cuda"
            if cuda:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            # Some CUDA kernels (e.g. adaptive pooling backward) have no deterministic version:
            # there the mode is best effort (a warning), on the CPU it is strict.
            torch.use_deterministic_algorithms(True, warn_only=cuda)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic = previous[2]
        torch.backends.cudnn.benchmark = previous[3]


def _select_parameters(model: nn.Module, trainable: str) -> list[nn.Parameter]:
    """Set ``requires_grad`` for ``trainable`` and return the parameters to optimise."""
    if trainable == "all":
        params = list(model.parameters())
        for p in params:
            p.requires_grad_(True)
        return params
    top_fn = getattr(model, "top_parameters", None)
    if not callable(top_fn):
        raise TypeError(f"trainable='top' needs a model with top_parameters(); {type(model).__name__} has none")
    top = list(top_fn())
    if not top:
        raise ValueError(f"trainable='top': {type(model).__name__}.top_parameters() is empty")
    wanted = {id(p) for p in top}
    for p in model.parameters():
        p.requires_grad_(id(p) in wanted)
    return top


def _train_mode(model: nn.Module) -> None:
    """``model.train()``, but BatchNorm layers whose parameters are all frozen keep their statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def _make_optimizer(params: Sequence[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def lr_factor(step: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` for optimiser step ``step`` (0-based): warm-up, then the schedule."""
    total = config.epochs * steps_per_epoch
    warm = round(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.step_gamma ** ((step // steps_per_epoch) // config.step_every)
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _make_loader(ds: Dataset, batch_size: int, *, shuffle: bool, sampler=None, generator=None,
                 num_workers: int, device: torch.device, drop_last: bool = False) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
    )


def _infer(model: nn.Module, loader: DataLoader, device: torch.device, amp_dtype, channels_last: bool,
           progress: bool = False, desc: str = "predict") -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) for a whole loader, on the CPU. One device->host copy at the end."""
    was_training = model.training
    model.eval()
    outs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
                xb = model_batch(x, device, channels_last)
                with _autocast(device, amp_dtype):
                    out = model(xb)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                outs.append(out.float())
                labels.append(torch.as_tensor(y).reshape(-1))
    finally:
        model.train(was_training)
    if not outs:
        raise ValueError("cannot run the model on an empty dataset")
    return torch.cat(outs).cpu(), torch.cat(labels)


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


@dataclass
class _State:
    """Mutable loop state that goes into every checkpoint."""

    epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    # True while the model's own weights are the best ones (the best epoch is the last one
    # trained): the copy into ``best_state`` is then deferred until training changes them,
    # so a run whose last epoch is its best never copies or checkpoints the weights twice.
    best_is_current: bool = False
    best_epoch: int = 0
    best_score: float | None = None
    bad_epochs: int = 0
    stopped_early: bool = False


def _check_resume_config(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    differing = sorted(
        k for k in set(saved) | set(current)
        if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k)
    )
    if differing:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differing)
        raise ValueError(
            f"{path}: checkpoint was written with a different training config ({detail}); "
            "use another checkpoint_dir or resume=False"
        )


def fit(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None,
    config: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
    objective: Objective | None = None,
    stop_after_epoch: int | None = None,
    checkpoint_interval_s: float = 0.0,
) -> FitResult:
    """Train ``model`` on ``train_ds``, validating on ``val_ds`` after every epoch.

    Datasets yield ``(image, label)``: uint8 (1|3, H, W) images (converted with
    ``to_model_batch``) or float images in [0, 1]. ``objective`` defaults to
    :class:`BinaryObjective`. With ``checkpoint_dir`` a checkpoint is written atomically after
    every epoch (before ``on_epoch_end`` is called); with ``resume=True`` an existing one is
    continued so that the result equals an uninterrupted run (changing ``config.epochs``
    extends or shortens the schedule instead). ``stop_after_epoch`` ends this call once that
    many epochs are done (for time-sliced jobs; ``FitResult.finished`` is then False).
    ``checkpoint_interval_s`` > 0 writes the checkpoint only after epochs that end at least
    that many seconds after the previous one (or the call's start), bounding the work a crash
    loses while sparing short runs a checkpoint that costs more than the epoch (VGG-16 with
    its optimiser state is 1.6 GB); the first epoch of a fresh run, the epoch a
    ``stop_after_epoch`` call ends on, and (on SIGTERM) the epoch in progress are always
    saved: SIGTERM with unsaved epochs finishes the current epoch, saves it, then lets the
    signal take its course (see :class:`~tlcore.training.checkpoint.SigtermCheckpoint`).
    The model is left on the training device holding the best-validation weights.
    """
    objective = objective or BinaryObjective()
    if len(train_ds) == 0:
        raise ValueError("fit: the training dataset is empty")
    device = resolve_device(config.device)
    amp_dtype = _autocast_dtype(config.amp, device)
    channels_last = _use_channels_last(config.channels_last, device)
    num_workers = 0 if config.deterministic else config.num_workers
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = _select_parameters(model, config.trainable)
    optimizer = _make_optimizer(params, config)

    train_labels = dataset_labels(train_ds)
    loss_fn = objective.make_loss(train_labels, config.imbalance == "weighted_loss", device)
    val_loss_fn = objective.make_loss(train_labels, False, device)

    loader_gen = torch.Generator()
    sampler = None
    if config.imbalance == "balanced_sampler":
        counts = _class_counts(train_labels, getattr(objective, "num_classes", 2)).astype(np.float64)
        weights = 1.0 / counts[train_labels.astype(np.int64)]
        sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(train_ds),
                                        replacement=True, generator=loader_gen)
    train_loader = _make_loader(train_ds, config.batch_size, shuffle=True, sampler=sampler, generator=loader_gen,
                                num_workers=num_workers, device=device, drop_last=config.drop_last)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"fit: no full batch of {config.batch_size} in {len(train_ds)} training images (drop_last)")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config, steps_per_epoch)
    )
    val_loader = None
    val_labels = None
    monitor = "none"
    if val_ds is not None and len(val_ds) > 0:
        val_loader = _make_loader(val_ds, max(2 * config.batch_size, 32), shuffle=False,
                                  num_workers=num_workers, device=device)
        val_labels = dataset_labels(val_ds)
        monitor = "val_auc" if len(np.unique(val_labels.astype(int))) > 1 else "val_loss"
    augmenter = BatchAugmenter(config.augment, config.seed) if config.augment.enabled else None

    state = _State()
    resumed_from: int | None = None
    if ckpt_path is not None and resume and ckpt_path.is_file():
        saved = load_checkpoint(ckpt_path)
        _check_resume_config(ckpt_path, saved["config"], config.to_dict())
        if saved.get("objective") != objective.name:
            raise ValueError(f"{ckpt_path}: checkpoint is for the {saved.get('objective')!r} objective, "
                             f"not {objective.name!r}")
        try:
            model.load_state_dict(saved["model"])
        except RuntimeError as exc:
            raise ValueError(f"{ckpt_path}: checkpoint does not fit this model: {exc}") from exc
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        restore_rng_state(saved["rng"])
        state = _State(
            epoch=int(saved["epoch"]),
            history=[EpochRecord(**r) for r in saved["history"]],
            best_state=saved["best_state"],
            best_is_current=bool(saved.get("best_is_current", False)),
            best_epoch=int(saved["best_epoch"]),
            best_score=saved["best_score"],
            bad_epochs=int(saved["bad_epochs"]),
            stopped_early=bool(saved["stopped_early"]),
        )
        resumed_from = state.epoch
    else:
        _seed_everything(config.seed)

    def result(finished: bool) -> FitResult:
        best_auc = None
        if state.best_epoch:
            best_auc = state.history[state.best_epoch - 1].val_auc
        return FitResult(
            history=list(state.history),
            best_epoch=state.best_epoch,
            best_val_auc=best_auc,
            stopped_early=state.stopped_early,
            resumed_from=resumed_from,
            monitor=monitor,
            finished=finished,
            checkpoint_path=ckpt_path,
        )

    last_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    last_saved = time.perf_counter()
    saved_epoch = state.epoch  # the epoch the checkpoint on disk holds (for this call)

    def save() -> None:
        nonlocal last_saved, saved_epoch
        save_checkpoint(ckpt_path, {
            "format_version": FORMAT_VERSION,
            "objective": objective.name,
            "config": config.to_dict(),
            "epoch": state.epoch,
            "model": cpu_state_view(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": capture_rng_state(),
            "history": [r.as_dict() for r in state.history],
            "best_state": state.best_state,
            "best_is_current": state.best_is_current,
            "best_epoch": state.best_epoch,
            "best_score": state.best_score,
            "bad_epochs": state.bad_epochs,
            "stopped_early": state.stopped_early,
        })
        last_saved = time.perf_counter()
        saved_epoch = state.epoch

    guard = SigtermCheckpoint(lambda: ckpt_path is not None and state.epoch > saved_epoch)
    with _determinism(config.deterministic, device), guard:
        while state.epoch < last_epoch and not state.stopped_early:
            epoch = state.epoch + 1
            started = time.perf_counter()
            if state.best_is_current:  # this epoch changes the weights: keep the best ones first
                state.best_state = cpu_state_dict(model)
                state.best_is_current = False
            lr_now = optimizer.param_groups[0]["lr"]
            loader_gen.manual_seed(_derive_seed(config.seed, "loader", epoch))
            if augmenter is not None:
                augmenter.reseed(_derive_seed(config.seed, "augment", epoch))

            _train_mode(model)
            loss_sum = torch.zeros((), device=device)
            seen = 0
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", disable=not progress,
                       leave=False, unit="batch")
            train_started = time.perf_counter()
            for step, (x, y) in enumerate(train_loader):
                xb = model_batch(x, device, channels_last)
                if augmenter is not None:
                    xb = augmenter(xb)
                targets = objective.targets(torch.as_tensor(y).to(device, non_blocking=True))
                with _autocast(device, amp_dtype):
                    logits, aux = _forward_train(model, xb)
                loss = loss_fn(logits, targets)
                if aux is not None and config.aux_loss_weight > 0:
                    loss = loss + config.aux_loss_weight * loss_fn(aux, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip_norm)
                optimizer.step()
                scheduler.step()
                n = xb.shape[0]
                loss_sum += loss.detach() * n
                seen += n
                if progress:
                    bar.update(1)
                    if (step + 1) % _POSTFIX_EVERY == 0:
                        rate = seen / max(time.perf_counter() - train_started, 1e-9)
                        bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", img_s=f"{rate:.1f}")
            train_loss = float(loss_sum.item()) / max(seen, 1)  # the epoch's one host sync
            train_seconds = time.perf_counter() - train_started
            if progress:
                bar.set_postfix(loss=f"{train_loss:.4f}", img_s=f"{seen / max(train_seconds, 1e-9):.1f}")
            bar.close()
            if not math.isfinite(train_loss):
                raise FloatingPointError(
                    f"training loss became {train_loss} in epoch {epoch} (lr {lr_now:g}); lower the learning rate"
                )

            val_auc = val_loss = None
            if val_loader is not None:
                logits, _ = _infer(model, val_loader, device, amp_dtype, channels_last)
                val_targets = objective.targets(torch.as_tensor(val_labels))
                val_loss = float(val_loss_fn(logits.to(device), val_targets.to(device)).item())
                val_auc = objective.metric(val_labels, objective.scores(logits).numpy())

            record = EpochRecord(
                epoch=epoch,
                train_loss=train_loss,
                val_auc=val_auc,
                val_loss=val_loss,
                lr=float(lr_now),
                seconds=time.perf_counter() - started,
                images_per_s=seen / max(train_seconds, 1e-9),
            )
            state.history.append(record)
            state.epoch = epoch

            score = {"val_auc": val_auc, "val_loss": None if val_loss is None else -val_loss, "none": 0.0}[monitor]
            if score is None:
                score = -math.inf
            if (state.best_score is None or monitor == "none"
                    or score > state.best_score + config.early_stopping_min_delta):
                state.best_score = score
                state.best_epoch = epoch
                state.best_state = None
                state.best_is_current = True
                state.bad_epochs = 0
            else:
                state.bad_epochs += 1
                if config.early_stopping_patience and state.bad_epochs >= config.early_stopping_patience:
                    state.stopped_early = True

            slice_ends = stop_after_epoch is not None and (state.epoch >= last_epoch or state.stopped_early)
            first_epoch = resumed_from is None and state.epoch == 1  # a short run killed early resumes
            checkpoint_due = (slice_ends or first_epoch or guard.requested
                              or time.perf_counter() - last_saved >= checkpoint_interval_s)
            if ckpt_path is not None and checkpoint_due:
                save()
            if progress:
                tqdm.write(
                    f"epoch {epoch}/{config.epochs}: loss {train_loss:.4f}"
                    + (f", val_auc {val_auc:.4f}" if val_auc is not None else "")
                    + (f", val_loss {val_loss:.4f}" if val_loss is not None else "")
                    + f", {record.images_per_s:.1f} img/s, {record.seconds:.1f} s"
                )
            if on_epoch_end is not None:
                on_epoch_end(record)
            if guard.requested:  # SIGTERM during this epoch: it is saved, now stop
                if ckpt_path is not None and state.epoch > saved_epoch:
                    save()
                guard.stop()

    finished = state.epoch >= config.epochs or state.stopped_early
    if state.best_state is not None and not state.best_is_current:
        model.load_state_dict(state.best_state)
    return result(finished)


# --------------------------------------------------------------------------------------------
# predict / evaluate
# --------------------------------------------------------------------------------------------


def predict(
    model: nn.Module,
    ds: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    progress: bool = False,
    amp: str = "auto",
    channels_last: str = "auto",
    num_workers: int = 0,
    output: str = "probability",
) -> np.ndarray:
    """Scores for every item of ``ds`` in dataset order.

    ``output="probability"``: one-logit models give sigmoid scores (N,), K-logit models
    softmax probabilities (N, K). ``output="logit"``: the raw logits as float64, (N,) or
    (N, K): the same ranking without the ties of saturated probabilities.
    The model is moved to ``device`` and evaluated in eval mode (auxiliary heads unused).
    """
    if output not in ("probability", "logit"):
        raise ValueError(f"predict: output must be 'probability' or 'logit', got {output!r}")
    dev = resolve_device(device)
    model.to(dev)
    use_cl = _use_channels_last(channels_last, dev)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    loader = _make_loader(ds, batch_size, shuffle=False, num_workers=num_workers, device=dev)
    logits, _ = _infer(model, loader, dev, _autocast_dtype(amp, dev), use_cl, progress=progress)
    if output == "logit":
        logits = logits.double()
        return (logits if logits.ndim == 2 and logits.shape[1] > 1 else logits.reshape(-1)).numpy()
    if logits.ndim == 2 and logits.shape[1] > 1:
        return torch.softmax(logits, dim=1).numpy()
    return torch.sigmoid(logits.reshape(-1)).numpy()


def evaluate(
    model: nn.Module,
    ds: Dataset,
    *,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    progress: bool = False,
    amp: str = "auto",
    channels_last: str = "auto",
    num_workers: int = 0,
):
    """Predict on ``ds`` and score it with ``tlcore.metrics.evaluate_scores``.

    Returns ``(EvalResult, predictions)`` where ``predictions`` is a DataFrame with one row
    per image: ``image_id``, ``label``, ``score`` (the malignancy logit, which AUC, ROC and
    DeLong rank: unlike the probability it does not saturate into ties) and ``probability``
    (its sigmoid).
    """
    logits = predict(model, ds, batch_size=batch_size, device=device, progress=progress, amp=amp,
                     channels_last=channels_last, num_workers=num_workers, output="logit")
    if logits.ndim != 1:
        raise ValueError(f"evaluate needs a one-logit (binary) model; it returned {logits.shape[1]} scores per image")
    labels = dataset_labels(ds).astype(int)
    ids = dataset_ids(ds)
    result, table = evaluate_scores(ids, labels, logits, seed)
    table["probability"] = scipy.special.expit(table["score"].to_numpy())
    return result, table
