"""The study's steps as library functions: pre-train on CBIS-DDSM, fine-tune/evaluate on a target.

Each step takes one typed config object and returns a result object; nothing here knows
MLflow. The ``pipelines`` entry points call these with callbacks that the ``tracking`` layer
provides (per-epoch metrics) and then record the returned results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd

from tlcore.data.cache import ImageCache, dataset_fingerprint, default_cache_dir
from tlcore.data.dataset import CachedImageDataset
from tlcore.data.preprocess import PreprocessConfig
from tlcore.data.records import DatasetError, ImageRecord, ReadResult, Skipped
from tlcore.data.registry import get_reader
from tlcore.data.splits import OfficialSplit, SplitConfig, TargetSplit, make_target_split, official_split
from tlcore.metrics import EvalResult, roc_points
from tlcore.models import count_parameters, create_model, get_spec
from tlcore.params import DEVICES, Opt, check_int, check_number, check_options, dataset_choices, model_choices
from tlcore.training.config import OPTIMIZERS, AugmentConfig, TrainConfig
from tlcore.training.engine import EpochRecord, FitResult, evaluate, fit

INITS = ("random", "imagenet", "ddsm")
TRANSFERS = ("all", "hybrid")
FT_FRACTIONS = (0.0, 0.1, 0.2)


def default_data_root() -> Path:
    """``$TLSTUDY_DATA`` if set, else ``./data``."""
    return Path(os.environ.get("TLSTUDY_DATA", "data"))


@dataclass(frozen=True)
class StepConfig:
    """Settings shared by pre-training and fine-tuning."""

    model: str = "resnet50"
    seed: int = 0
    image_size: int | None = None  # square side; None = the model's own input size
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 16
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    early_stopping_patience: int = 5
    num_workers: int = 0
    deterministic: bool = False
    device: str = "auto"
    data_root: str = field(default_factory=lambda: str(default_data_root()))
    cache_dir: str | None = None
    # Training checkpoints are written at most this often (seconds of training a crash may
    # lose); short runs skip checkpoints that would cost more than the epochs they protect.
    # The first epoch is always saved, and SIGTERM saves the epoch in progress (engine.fit).
    checkpoint_interval_s: float = 60.0

    # Help text and valid values of each field (see tlcore.params); the click options and
    # MLproject are generated from the fields and these.
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "model": Opt("Model architecture (from the model registry).", choices=model_choices),
        "seed": Opt("Seed of the split, the initialisation and the training order."),
        "image_size": Opt("Square input side in pixels; 0 = the model's own size (224, 299, 1152x896).",
                          zero_is_none=True),
        "epochs": Opt("Training epochs (early stopping may end sooner)."),
        "lr": Opt("Learning rate."),
        "batch_size": Opt("Images per training batch."),
        "optimizer": Opt("Optimiser.", choices=OPTIMIZERS),
        "weight_decay": Opt("Weight decay."),
        "early_stopping_patience": Opt("Epochs without a better validation AUC before training stops."),
        "num_workers": Opt("DataLoader worker processes."),
        "deterministic": Opt("Deterministic cuDNN kernels (slower)."),
        "device": Opt("Where to train: auto = CUDA when available, else CPU.", choices=DEVICES),
        "data_root": Opt("Folder holding ddsm/ inbreast/ mias/ ultrasound/; empty = $TLSTUDY_DATA, else ./data."),
        "cache_dir": Opt("Preprocessed-image cache; empty = $TLSTUDY_CACHE, else the user cache folder.", cli=False),
        "checkpoint_interval_s": Opt("Seconds of training a crash may lose.", cli=False),
    }

    def __post_init__(self) -> None:
        """Types and ranges only (one-line ValueError naming the field); the study's grid is not checked here."""
        owner = type(self).__name__
        check_options(self)
        check_int(owner, "seed", self.seed, minimum=0)
        check_int(owner, "image_size", self.image_size, minimum=16, optional=True)
        check_int(owner, "epochs", self.epochs, minimum=1)
        check_int(owner, "batch_size", self.batch_size, minimum=1)
        check_int(owner, "early_stopping_patience", self.early_stopping_patience, minimum=1)
        check_int(owner, "num_workers", self.num_workers, minimum=0)
        check_number(owner, "lr", self.lr, positive=True)
        check_number(owner, "weight_decay", self.weight_decay, minimum=0.0)
        check_number(owner, "checkpoint_interval_s", self.checkpoint_interval_s, minimum=0.0)
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"{owner}.deterministic must be true or false, got {self.deterministic!r}")
        if not str(self.data_root):
            raise ValueError(f"{owner}.data_root is empty (leave it out to use $TLSTUDY_DATA or ./data)")

    def input_size(self) -> tuple[int, int]:
        """(H, W) fed to the model: ``image_size`` squared, or the model spec's default."""
        if self.image_size:
            return (int(self.image_size), int(self.image_size))
        return tuple(get_spec(self.model).input_size)  # type: ignore[return-value]

    def train_config(self, modality: str, **overrides: Any) -> TrainConfig:
        """The engine's TrainConfig for this step."""
        values = dict(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            optimizer=self.optimizer,
            early_stopping_patience=self.early_stopping_patience,
            seed=self.seed,
            deterministic=self.deterministic,
            device=self.device,
            num_workers=self.num_workers,
            augment=AugmentConfig.for_modality(modality),
        )
        values.update(overrides)
        return TrainConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # Settings that change where things are read from or how fast, not what is computed.
    HASH_EXCLUDES = ("data_root", "cache_dir", "num_workers", "checkpoint_interval_s")

    def config_hash(self) -> str:
        """Short hash of the settings that determine the result: identifies 'the same
        configuration' for resume and skip logic (data identity is the dataset fingerprint)."""
        values = {k: v for k, v in self.to_dict().items() if k not in self.HASH_EXCLUDES}
        blob = json.dumps({"step": type(self).__name__, **values}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PretrainConfig(StepConfig):
    """Pre-training on the CBIS-DDSM training split (official Training/Test prefixes)."""

    dataset: str = "ddsm"
    init: str = "random"  # DDSM pre-training starts from random (or ImageNet) weights

    OPTIONS: ClassVar[dict[str, Opt]] = {
        "dataset": Opt("Pre-training dataset.", choices=("ddsm",), cli=False),
        "init": Opt("Starting weights of the DDSM pre-training.", choices=("random", "imagenet")),
    }


@dataclass(frozen=True)
class FinetuneConfig(StepConfig):
    """Evaluate (ft_fraction 0) or fine-tune then evaluate a model on one target dataset."""

    dataset: str = "mias"
    init: str = "random"
    ft_fraction: float = 0.1
    transfer: str = "all"

    OPTIONS: ClassVar[dict[str, Opt]] = {
        "dataset": Opt("Target dataset (from the reader registry).", choices=dataset_choices),
        "init": Opt("Initialisation: random, ImageNet weights, or the DDSM-pretrained model.", choices=INITS),
        "ft_fraction": Opt("Share of the dataset used for fine-tuning: 0 (evaluate as is), 0.1 or 0.2."),
        "transfer": Opt("all: every layer transferred; hybrid: weights up to block2, light random top.",
                        choices=TRANSFERS),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(type(self).__name__, "ft_fraction", self.ft_fraction, minimum=0.0)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.transfer not in TRANSFERS:
            raise ValueError(f"transfer must be one of {TRANSFERS}, got {self.transfer!r}")
        if self.ft_fraction not in FT_FRACTIONS:
            raise ValueError(f"ft_fraction must be one of {FT_FRACTIONS}, got {self.ft_fraction!r}")
        if self.transfer == "hybrid" and self.ft_fraction == 0.0:
            raise ValueError("hybrid transfer has a randomly initialised top: it needs ft_fraction 0.1 or 0.2")


@dataclass
class PreparedData:
    """A dataset read, preprocessed through the cache, with its provenance."""

    dataset: str
    modality: str
    records: list[ImageRecord]
    images: Any  # CachedArray
    preprocess: PreprocessConfig
    fingerprint: str
    skipped: list[Skipped]

    def subset(self, records: list[ImageRecord]) -> CachedImageDataset:
        """A torch Dataset over ``records`` (which must come from this data)."""
        return CachedImageDataset(self.images, indices=self.images.indices_of(records))


def dataset_root(dataset: str, data_root: str | Path) -> Path:
    """``<data_root>/<dataset>``, or a clear error saying how to get the data there."""
    root = Path(data_root) / dataset
    if not root.exists():
        raise DatasetError(
            f"{root}: dataset folder not found. Put the {dataset} download there, point TLSTUDY_DATA / "
            f"--data-root at the folder holding it, or write look-alike data with "
            f"`tlstudy synth --out {data_root}`."
        )
    return root


def read_records(dataset: str, data_root: str | Path) -> ReadResult:
    """Parse a dataset's metadata (no image decoding)."""
    return get_reader(dataset).read(dataset_root(dataset, data_root))


def prepare_data(dataset: str, config: StepConfig, *, progress: bool = True) -> PreparedData:
    """Read ``dataset`` under ``config.data_root`` and build/read its preprocessing cache."""
    reader = get_reader(dataset)
    result = read_records(dataset, config.data_root)
    preprocess = PreprocessConfig(image_size=config.input_size(), modality=reader.modality)
    cache = ImageCache(config.cache_dir) if config.cache_dir else ImageCache()
    cached = cache.build(result.records, preprocess, num_workers=config.num_workers, progress=progress)
    return PreparedData(
        dataset=dataset,
        modality=reader.modality,
        records=list(cached.records),
        images=cached,
        preprocess=preprocess,
        fingerprint=dataset_fingerprint(result.records),
        skipped=list(result.skipped) + list(cached.skipped),
    )


@dataclass
class StepResult:
    """What a pre-training or fine-tuning step produced, ready to be recorded."""

    config: StepConfig
    model: Any  # TransferModel
    evaluation: EvalResult
    predictions: pd.DataFrame
    roc: pd.DataFrame
    manifest: list[dict[str, str]]
    split_hash: str
    dataset_fingerprint: str
    skipped: list[Skipped]
    fit: FitResult | None = None
    extra_fits: dict[str, FitResult] = field(default_factory=dict)
    parameter_counts: dict[str, int] = field(default_factory=dict)


EpochCallback = Callable[[EpochRecord], None]


def _manifest_hash(manifest: list[dict[str, str]]) -> str:
    blob = json.dumps(sorted((m["image_id"], m["role"]) for m in manifest)).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def run_finetune(
    config: FinetuneConfig,
    *,
    ddsm_state: str | Path | dict | None = None,
    imagenet_weights: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    on_epoch_end: EpochCallback | None = None,
    progress: bool = True,
) -> StepResult:
    """Fine-tune (or not, for ft_fraction 0) a model on a target dataset and evaluate on its test split.

    ``ddsm_state`` is required for ``init="ddsm"``: a state dict or a tensors-only file.
    Every configuration of one seed is evaluated on the same test images.
    """
    if config.init == "ddsm" and ddsm_state is None:
        raise ValueError("init='ddsm' needs a DDSM-pretrained state (ddsm_state); none was given")
    data = prepare_data(config.dataset, config, progress=progress)
    split = make_target_split(data.records, SplitConfig(seed=config.seed))
    torch_seed(config.seed)
    model = create_model(
        config.model,
        init=config.init,
        transfer=config.transfer,
        imagenet_weights=imagenet_weights,
        ddsm_state=ddsm_state,
    )
    fit_result = None
    if config.ft_fraction > 0:
        portion = split.finetune(config.ft_fraction)
        fit_result = fit(
            model,
            data.subset(portion.train),
            data.subset(portion.val),
            config.train_config(data.modality),
            checkpoint_dir=checkpoint_dir,
            resume=checkpoint_dir is not None,
            progress=progress,
            on_epoch_end=on_epoch_end,
            checkpoint_interval_s=config.checkpoint_interval_s,
        )
    return _evaluated_step(config, model, data, split, fit_result)


def run_pretrain(
    config: PretrainConfig,
    *,
    imagenet_weights: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    on_epoch_end: EpochCallback | None = None,
    progress: bool = True,
) -> StepResult:
    """Train a model on the CBIS-DDSM training split and evaluate it on the official test split.

    The patch CNN is trained as Shen et al. do: stage 1 a patch classifier on lesion and
    background patches, stage 2 the whole-image model in two phases (top, then all layers).
    Per-epoch records of the extra stages reach ``on_epoch_end`` as mappings whose metric
    names carry the stage as a prefix (``patch_train_loss``, ``top_val_auc``...).
    """
    data = prepare_data(config.dataset, config, progress=progress)
    split = official_split(data.records, SplitConfig(seed=config.seed))
    torch_seed(config.seed)
    train_ds, val_ds = data.subset(split.train), data.subset(split.val)
    extra_fits: dict[str, FitResult] = {}
    if config.model == "patch_cnn":
        model, fit_result, extra_fits = _pretrain_patch_cnn(
            config, split, train_ds, val_ds, data.modality,
            imagenet_weights=imagenet_weights, checkpoint_dir=checkpoint_dir,
            on_epoch_end=on_epoch_end, progress=progress,
        )
    else:
        model = create_model(config.model, init=config.init, imagenet_weights=imagenet_weights)
        fit_result = fit(
            model, train_ds, val_ds, config.train_config(data.modality),
            checkpoint_dir=checkpoint_dir, resume=checkpoint_dir is not None,
            progress=progress, on_epoch_end=on_epoch_end, checkpoint_interval_s=config.checkpoint_interval_s,
        )
    return _evaluated_step(config, model, data, split, fit_result, extra_fits)


def _evaluated_step(config: StepConfig, model: Any, data: PreparedData, split: TargetSplit | OfficialSplit,
                    fit_result: FitResult | None,
                    extra_fits: dict[str, FitResult] | None = None) -> StepResult:
    """Evaluate ``model`` on the split's test images and gather everything a step returns."""
    evaluation, predictions = evaluate(model, data.subset(split.test), seed=config.seed,
                                       batch_size=max(config.batch_size, 32))
    return StepResult(
        config=config,
        model=model,
        evaluation=evaluation,
        predictions=predictions,
        roc=roc_points(predictions["label"].to_numpy(), predictions["score"].to_numpy()),
        manifest=split.manifest(),
        split_hash=split.split_hash,
        dataset_fingerprint=data.fingerprint,
        skipped=data.skipped,
        fit=fit_result,
        extra_fits=extra_fits if extra_fits is not None else {},
        parameter_counts={"total": count_parameters(model)},
    )


def patch_size_for(input_size: tuple[int, int]) -> int:
    """Patch side at the whole-image working height: 224 px at 1152 rows, as Shen et al.; >= 32."""
    return max(32, int(round(input_size[0] * 224 / 1152)))


def _prefixed(callback: EpochCallback | None, prefix: str, offset: int) -> Callable[[Any], None] | None:
    """Forward an EpochRecord as a mapping with prefixed metric names and a global epoch step."""
    if callback is None:
        return None

    def forward(record: EpochRecord) -> None:
        values = {f"{prefix}_{k}": v for k, v in record.as_dict().items() if k != "epoch"}
        callback({"epoch": offset + record.epoch, **values})  # type: ignore[arg-type]

    return forward


def _pretrain_patch_cnn(config, split, train_ds, val_ds, modality, *, imagenet_weights, checkpoint_dir,
                        on_epoch_end, progress):
    from tlcore.models import create_patch_classifier, whole_image_from_patch
    from tlcore.training.patches import (
        PatchDataset,
        PatchSamplingConfig,
        train_patch_classifier,
        train_whole_image,
        two_phase_configs,
    )

    height = config.input_size()[0]
    sampling = PatchSamplingConfig(patch_size=patch_size_for(config.input_size()), image_height=height,
                                   seed=config.seed)
    patch_cache = Path(config.cache_dir or default_cache_dir()) / "patches"
    patch_train = PatchDataset(split.train, sampling, cache_dir=patch_cache, progress=progress)
    patch_val = PatchDataset(split.val, sampling, cache_dir=patch_cache, progress=progress)
    if len(patch_train) == 0:
        raise DatasetError("no CBIS-DDSM training image has a usable ROI mask: the patch CNN's stage 1 needs them")
    patch_model = create_patch_classifier(patch_size=sampling.patch_size, init=config.init,
                                          imagenet_weights=imagenet_weights)
    base = config.train_config(modality)
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    stage1 = train_patch_classifier(
        patch_model, patch_train, patch_val if len(patch_val) else None, base,
        checkpoint_dir=None if ckpt is None else ckpt / "patch", resume=ckpt is not None,
        progress=progress, on_epoch_end=_prefixed(on_epoch_end, "patch", 0),
        checkpoint_interval_s=config.checkpoint_interval_s,
    )
    model = whole_image_from_patch(patch_model)
    top_cfg, all_cfg = two_phase_configs(base, top_epochs=max(1, config.epochs // 2),
                                         all_epochs=max(1, config.epochs - config.epochs // 2))
    offset = len(stage1.history)

    def phase_callback(phase: str, record: EpochRecord) -> None:
        if on_epoch_end is None:
            return
        if phase == "all":
            on_epoch_end(dataclasses.replace(record, epoch=record.epoch))
        else:
            _prefixed(on_epoch_end, "top", offset)(record)

    top_fit, all_fit = train_whole_image(
        model, train_ds, val_ds, top_cfg, all_cfg,
        checkpoint_dir=None if ckpt is None else ckpt / "whole", resume=ckpt is not None,
        progress=progress, on_epoch_end=phase_callback, checkpoint_interval_s=config.checkpoint_interval_s,
    )
    return model, all_fit, {"patch": stage1, "top": top_fit}


def torch_seed(seed: int) -> None:
    """Seed torch, numpy and random so model initialisation is reproducible."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
