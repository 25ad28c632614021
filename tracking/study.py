"""The study runner behind ``tlstudy study``: plan the paper's grid, skip what is done, launch, report.

One study is a parent MLflow run (stage ``study``) and one child run per configuration,
each launched in its own process through the child entry points
(``pipelines.pretrain``, ``pipelines.finetune``, ``pipelines.cca``):

1. :func:`plan_study` lists every configuration of the paper (pure, no I/O): DDSM
   pre-training per model; for each target dataset, model and initialisation the
   no-FT / 10% / 20% evaluations (ImageNet without fine-tuning and the patch CNN from
   ImageNet are NA by design); hybrid transfer for ResNet-50 at 10% / 20% from each
   initialisation; the CCA analysis per dataset and seed. Rows whose ImageNet weights are
   missing from torch's hub cache become NA with a note instead of children that fail.
2. :func:`mark_done` decides, from ONE paged search of the experiment, which
   configurations already have a FINISHED run with the same config hash, code version
   and dataset fingerprint (the child's own check stays as the safety net).
3. :func:`execute_plan` launches the rest, up to ``jobs`` at a time, with dependencies
   respected (pre-training of model M before any DDSM fine-tune of M; CCA after the
   ResNet-50 pre-training). Children are forked from a multiprocessing ``forkserver``
   that has torch and mlflow preloaded, so each is a fresh process that starts in
   milliseconds; a child calls its click command in-process with its output captured to
   a log file. A failed child is retried once; exit code 3 means "not applicable".
4. :func:`run_study` wires it together with the parent run, progress (done / total, the
   current runs, an ETA) and the report (:func:`tracking.report.build_report`).

Rerunning after a crash does only what is left: finished configurations are skipped,
and an interrupted child re-attaches to its unfinished run through its journal.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcore.design import PAPER_DESIGN, Cell
from tracking.schema import (
    DEFAULT_EXPERIMENT,
    STAGE_CCA,
    STAGE_FINETUNE,
    STAGE_PRETRAIN,
    STAGE_STUDY,
    Param,
    Tag,
    format_fraction,
    run_name,
)

# ------------------------------------------------------------------------------ constants
# The grid and its NA rules are the design's (tlcore.design); these names are views of it.
DESIGN = PAPER_DESIGN
TARGET_DATASETS: tuple[str, ...] = DESIGN.target_datasets
PRETRAIN_DATASET = DESIGN.pretrain_dataset
MODELS: tuple[str, ...] = DESIGN.models
# Pre-training durations, longest first, as measured on the demo profile (patch CNN: two
# stages; VGG-16: five times ResNet-50's compute per pixel).
PRETRAIN_LONGEST_FIRST: tuple[str, ...] = ("patch_cnn", "vgg16", "resnet50", "inception_v3")

# Plan statuses.
PLANNED = "planned"
DONE = "done"
NA = "NA"
# Outcome statuses after execution.
FAILED = "failed"
BLOCKED = "blocked"
NOT_RUN = "not run"

EXIT_NOT_APPLICABLE = 3
DEFAULT_CHILD_MODULES: dict[str, str] = {
    STAGE_PRETRAIN: "pipelines.pretrain",
    STAGE_FINETUNE: "pipelines.finetune",
    STAGE_CCA: "pipelines.cca",
}
# Imported once in the forkserver so every child starts with them loaded.
PRELOAD_MODULES: tuple[str, ...] = (
    "numpy",
    "pandas",
    "torch",
    "torchvision",
    "sklearn.metrics",
    "matplotlib.pyplot",
    "PIL.Image",
    "pydicom",
    "mlflow",
    "mlflow.pytorch",
    "mlflow.data",
    "mlflow.tracing",
    "mlflow.genai.scorers",
    "mlflow.store.db.utils",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "alembic.command",
    "alembic.runtime.migration",
    "alembic.autogenerate",
    "sqlalchemy.dialects.sqlite",
    "tlcore.data.readers",
    "tlcore.experiment",
    "tracking.logger",
    "tracking.registry",
    "tracking.study",
    "pipelines.pretrain",
    "pipelines.finetune",
    "pipelines.cca",
)

# Names the study writes on its parent run (params / metrics / artifacts).
STUDY_PARAM_PREFIX = "study."
METRIC_RUNS_DONE = "study.runs_done"
METRIC_RUNS_FAILED = "study.runs_failed"
METRIC_RUNS_TOTAL = "study.runs_total"
METRIC_DURATION = "study.duration_s"
ARTIFACT_PLAN = "study/plan.csv"
ARTIFACT_OUTCOME = "study/outcome.csv"
ARTIFACT_LOGS = "logs"

LOCK_MESSAGES = ("database is locked", "database table is locked")
MAX_LOCK_RETRIES = 3


class StudyError(RuntimeError):
    """The study cannot be planned or run (bad selection, missing data, unknown profile)."""


# ------------------------------------------------------------------------------ profiles
@dataclass(frozen=True)
class StudyProfile:
    """Settings of a whole study. Subclasses are the named profiles.

    ``image_sizes`` maps a model to the square side its images are resized to (0 = the
    model's own input size); ``model_seeds`` gives a model other seeds than ``seeds``
    (e.g. three seeds for ResNet-50 only) and ``hybrid_seeds`` restricts the hybrid-transfer
    cells to some of them (None: all); ``models`` is the profile's default model selection
    (None: the design's four); ``threads_per_run`` fixes each child's torch
    threads whatever ``jobs`` is, so ``--jobs 1`` and ``--jobs 2`` give bit-identical AUCs; ``learning_rates`` overrides ``lr`` per model (VGG-16, which
    has no batch norm, diverges at rates the others train well at); ``synth_scale`` names the look-alike data written under the
    data root when it is absent (None: real data is required). Pre-training always logs
    its model, because the registry (``ddsm-<model>@champion``) is how DDSM fine-tunes
    find it; fine-tunes log theirs only when ``log_finetune_models`` is set.
    """

    name: str = "base"
    image_sizes: tuple[tuple[str, int], ...] = ()
    pretrain_epochs: int = 10
    finetune_epochs: int = 10
    lr: float = 1e-4
    learning_rates: tuple[tuple[str, float], ...] = ()
    batch_size: int = 16
    seeds: tuple[int, ...] = (0,)
    model_seeds: tuple[tuple[str, tuple[int, ...]], ...] = ()
    hybrid_seeds: tuple[int, ...] | None = None
    models: tuple[str, ...] | None = None
    synth_scale: str | None = None
    jobs: int = 1
    threads_per_run: int = 1
    log_finetune_models: bool = True
    default_data_root: str | None = None  # None: $TLSTUDY_DATA, else ./data
    default_experiment: str = DEFAULT_EXPERIMENT

    def seeds_for(self, model: str) -> tuple[int, ...]:
        """The seeds ``model``'s cells run with: its override in ``model_seeds``, else ``seeds``."""
        return tuple(dict(self.model_seeds).get(model, self.seeds))

    def image_size(self, model: str) -> int:
        """Square image side for ``model`` (0 = the model's own input size)."""
        return dict(self.image_sizes).get(model, 0)

    def learning_rate(self, model: str) -> float:
        """Peak learning rate for ``model``: its override, else ``lr``."""
        return dict(self.learning_rates).get(model, self.lr)

    def data_root(self) -> Path:
        """Where this profile's data lives unless ``--data-root`` says otherwise."""
        if self.default_data_root is not None:
            return Path(self.default_data_root)
        return Path(os.environ.get("TLSTUDY_DATA", "data"))

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of every setting (for the parent run's config artifact)."""
        out = dataclasses.asdict(self)
        out["image_sizes"] = dict(self.image_sizes)
        out["learning_rates"] = dict(self.learning_rates)
        out["seeds"] = list(self.seeds)
        out["model_seeds"] = {m: list(v) for m, v in self.model_seeds}
        out["hybrid_seeds"] = None if self.hybrid_seeds is None else list(self.hybrid_seeds)
        out["models"] = None if self.models is None else list(self.models)
        return out


@dataclass(frozen=True)
class QuickProfile(StudyProfile):
    """Every table and the figure on tiny look-alike data in a few minutes on a CPU (tests use it).

    64 px images (Inception-v3 needs at least 75 px, so 80), one seed, one or two
    epochs, two children at a time. Fine-tunes run with ``--no-log-model`` (one 94 MB
    ResNet-50 per child would fill the disk); pre-training logs its model (the registry
    needs it).
    """

    name: str = "quick"
    image_sizes: tuple[tuple[str, int], ...] = (
        ("vgg16", 64), ("resnet50", 64), ("inception_v3", 80), ("patch_cnn", 64),
    )
    pretrain_epochs: int = 2
    finetune_epochs: int = 1
    lr: float = 1e-3
    learning_rates: tuple[tuple[str, float], ...] = (("vgg16", 1e-4),)
    batch_size: int = 16
    seeds: tuple[int, ...] = (0,)
    synth_scale: str | None = "tiny"
    jobs: int = 2
    log_finetune_models: bool = False
    default_data_root: str | None = "data/synth-tiny"
    default_experiment: str = "tlstudy-quick"


@dataclass(frozen=True)
class DemoProfile(StudyProfile):
    """The README's main job: the controls on small look-alike data, within 15 minutes on a 2-core CPU.

    Look-alike data at the targets' real counts (INbreast 410, MIAS 322, ultrasound 250
    images; 776 CBIS-DDSM images), calibrated with ``benchmarks/controls_check.py``: 64 px,
    six pre-training and six fine-tuning epochs at 5e-4. ResNet-50 only, with three seeds
    for every table cell and the Figure 1 analysis, the hybrid-transfer cells on the first
    seed: measured on a 2-core CPU, the four-model grid takes far longer than 15 minutes
    (VGG-16's pre-training alone about 9 CPU minutes), and Inception-v3 did not reach a DDSM
    test AUC of 0.80 in that budget. ``--models`` adds the others (image sizes and rates
    below are theirs). Fine-tunes run with ``--no-log-model`` (disk); pre-training logs its
    model (the registry needs it); the FT 0.2 cells the analysis compares keep their weights.
    """

    name: str = "demo"
    models: tuple[str, ...] | None = ("resnet50",)
    image_sizes: tuple[tuple[str, int], ...] = (
        ("vgg16", 64), ("resnet50", 64), ("inception_v3", 80), ("patch_cnn", 64),
    )
    pretrain_epochs: int = 6
    finetune_epochs: int = 6
    lr: float = 5e-4
    learning_rates: tuple[tuple[str, float], ...] = (("vgg16", 1e-4),)
    batch_size: int = 16
    seeds: tuple[int, ...] = (0, 1, 2)
    hybrid_seeds: tuple[int, ...] | None = (0,)
    synth_scale: str | None = "small"
    jobs: int = 2
    log_finetune_models: bool = False
    default_data_root: str | None = "data/synth-small"
    default_experiment: str = "tlstudy-demo"


@dataclass(frozen=True)
class PaperProfile(StudyProfile):
    """The paper's settings on the real data: each model's own input size, several seeds; meant for a GPU.

    Every run logs its model (pre-training for the registry, fine-tunes for reuse).
    """

    name: str = "paper"
    image_sizes: tuple[tuple[str, int], ...] = (
        ("vgg16", 224), ("resnet50", 224), ("inception_v3", 299), ("patch_cnn", 0),
    )
    pretrain_epochs: int = 30
    finetune_epochs: int = 20
    lr: float = 1e-4
    batch_size: int = 16
    seeds: tuple[int, ...] = (0, 1, 2)
    synth_scale: str | None = None
    jobs: int = 1
    log_finetune_models: bool = True
    default_data_root: str | None = None
    default_experiment: str = DEFAULT_EXPERIMENT


PROFILES: dict[str, type[StudyProfile]] = {"quick": QuickProfile, "demo": DemoProfile, "paper": PaperProfile}


def get_profile(name: str) -> StudyProfile:
    """The profile called ``name`` (``quick``, ``demo`` or ``paper``)."""
    try:
        return PROFILES[name]()
    except KeyError:
        raise StudyError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}") from None


# ------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class PlannedRun:
    """One configuration of the study (a child run), with its status in the plan.

    ``status`` is ``planned`` / ``done`` / ``NA`` when planned and, after execution,
    also ``failed`` / ``blocked`` / ``not run``. ``depends_on`` holds the keys of the
    runs that must finish first.
    """

    stage: str
    dataset: str
    model: str
    init: str
    seed: int
    image_size: int
    epochs: int
    lr: float
    batch_size: int
    ft_fraction: float | None = None
    transfer: str | None = None
    log_model: bool = True
    status: str = PLANNED
    note: str = ""
    depends_on: tuple[str, ...] = ()
    config_hash: str = ""
    fingerprint: str = ""
    run_id: str | None = None

    @property
    def key(self) -> str:
        """Unique name of the configuration (the child's run name)."""
        return run_name(self.stage, self.dataset, self.model, self.init, self.ft_fraction, self.transfer, self.seed)

    @property
    def slug(self) -> str:
        """File-name friendly form of :attr:`key`."""
        return "".join(c if c.isalnum() or c in "._-" else "_" for c in self.key)

    def row(self) -> dict[str, Any]:
        """The plan table's row: stage, dataset, model, init, ft, transfer, seed, status, note."""
        return {
            "stage": self.stage,
            "dataset": self.dataset,
            "model": self.model,
            "init": self.init,
            "ft": format_fraction(self.ft_fraction) if self.ft_fraction is not None else "",
            "transfer": self.transfer or "",
            "seed": self.seed,
            "status": self.status,
            "note": self.note,
        }

    def argv(self, data_root: str | Path, experiment: str | None = None, parent_run_id: str | None = None) -> list[str]:
        """The child entry point's arguments: its typed step config through the generated options.

        Every config field is rendered by ``pipelines._options.config_argv`` (the same
        declaration the options are generated from), then the runtime flags.
        """
        from pipelines._options import config_argv

        config = step_config(self, data_root)
        if config is None:  # pragma: no cover - plan_study never makes other stages
            raise StudyError(f"no child entry point for stage {self.stage!r}")
        args = config_argv(config)
        if self.stage != STAGE_CCA:
            args.append("--log-model" if self.log_model else "--no-log-model")
        args.append("--no-progress")
        if experiment:
            args += ["--experiment", experiment]
        if parent_run_id:
            args += ["--parent-run-id", parent_run_id]
        return args


def _check_selection(kind: str, chosen: Sequence[str] | None, valid: Sequence[str]) -> tuple[str, ...]:
    if not chosen:
        return tuple(valid)
    bad = [c for c in chosen if c not in valid]
    if bad:
        raise StudyError(f"unknown {kind} {', '.join(map(repr, bad))}; valid {kind}: {', '.join(valid)}")
    return tuple(v for v in valid if v in set(chosen))  # canonical order, no duplicates


def plan_study(
    profile: StudyProfile,
    *,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    imagenet_missing: Mapping[str, str] | None = None,
) -> list[PlannedRun]:
    """Every configuration of the study design for the selection, in launch order (pure, no I/O).

    The cells and their NA rules come from :data:`DESIGN`. ``imagenet_missing`` maps a
    model to a note when its ImageNet weights are absent; those rows become NA with the
    note. ``seeds`` overrides the profile's seeds for every model; otherwise each model
    runs :meth:`StudyProfile.seeds_for`. Pre-training runs once per model with its first
    seed (every fine-tune uses the registry's champion); fine-tunes, hybrid runs and the
    CCA analysis run for every seed. The CCA analysis of a dataset and seed waits for the
    fine-tune whose network it compares (:meth:`StudyDesign.cca_source`).
    """
    datasets = _check_selection("datasets", datasets, TARGET_DATASETS)
    models = _check_selection("models", models, MODELS)
    override = tuple(dict.fromkeys(int(s) for s in seeds)) if seeds else None
    seed_lists = {m: override or tuple(dict.fromkeys(int(s) for s in profile.seeds_for(m))) for m in models}
    if not all(seed_lists.values()):
        raise StudyError("no seeds to run")
    missing = dict(imagenet_missing or {})
    plan: list[PlannedRun] = []
    pretrain_key: dict[str, str] = {}

    def common(model: str, epochs: int, seed: int) -> dict[str, Any]:
        return {"model": model, "seed": seed, "image_size": profile.image_size(model), "epochs": epochs,
                "lr": profile.learning_rate(model), "batch_size": profile.batch_size}

    for model in models:
        item = PlannedRun(stage=STAGE_PRETRAIN, dataset=PRETRAIN_DATASET, init="random", log_model=True,
                          **common(model, profile.pretrain_epochs, seed_lists[model][0]))
        pretrain_key[model] = item.key
        plan.append(item)

    def finetune(cell: Cell, seed: int) -> PlannedRun:
        status, note = PLANNED, ""
        na = DESIGN.not_applicable(cell.model, cell.init, cell.ft_fraction, cell.transfer)
        if na:
            status, note = NA, f"NA by design: {na.removeprefix('not applicable: ')}"
        elif cell.init == "imagenet" and cell.model in missing:
            status, note = NA, missing[cell.model]
        deps = (pretrain_key[cell.model],) if cell.init == "ddsm" and status == PLANNED else ()
        return PlannedRun(stage=STAGE_FINETUNE, dataset=cell.dataset, init=cell.init, ft_fraction=cell.ft_fraction,
                          transfer=cell.transfer, log_model=profile.log_finetune_models, status=status, note=note,
                          depends_on=deps, **common(cell.model, profile.finetune_epochs, seed))

    all_seeds = tuple(dict.fromkeys(s for m in models for s in seed_lists[m]))
    for seed in all_seeds:
        with_seed = tuple(m for m in models if seed in seed_lists[m])
        keys: dict[Cell, str] = {}
        for dataset in datasets:
            for cell in DESIGN.table_cells(dataset, with_seed, with_na_rows=True):
                item = finetune(cell, seed)
                keys[cell] = item.key
                plan.append(item)
        if DESIGN.hybrid_model in with_seed and (profile.hybrid_seeds is None or seed in profile.hybrid_seeds):
            for dataset in datasets:
                plan.extend(finetune(cell, seed) for cell in DESIGN.hybrid_cells(dataset, with_na_rows=True))
        if DESIGN.cca_model in with_seed:
            for dataset in datasets:
                source = keys[DESIGN.cca_source(dataset)]
                plan.append(PlannedRun(stage=STAGE_CCA, dataset=dataset, init=DESIGN.cca_init,
                                       depends_on=(pretrain_key[DESIGN.cca_model], source),
                                       **common(DESIGN.cca_model, profile.finetune_epochs, seed)))
    keys_all = [p.key for p in plan]
    if len(set(keys_all)) != len(keys_all):  # pragma: no cover - guards the run-name scheme
        raise StudyError("two planned configurations share a run name")
    return plan


def count_by_stage(plan: Iterable[PlannedRun]) -> dict[str, dict[str, int]]:
    """``{stage: {status: n}}`` (hybrid fine-tunes counted under ``finetune-hybrid``)."""
    out: dict[str, dict[str, int]] = {}
    for item in plan:
        stage = f"{item.stage}-hybrid" if item.transfer == "hybrid" else item.stage
        out.setdefault(stage, {}).setdefault(item.status, 0)
        out[stage][item.status] += 1
    return out


def plan_frame(plan: Sequence[PlannedRun]):
    """The plan as a DataFrame (one row per configuration)."""
    import pandas as pd

    return pd.DataFrame([p.row() for p in plan],
                        columns=["stage", "dataset", "model", "init", "ft", "transfer", "seed", "status", "note"])


def format_plan(plan: Sequence[PlannedRun], *, notes: bool = True) -> str:
    """The plan as a fixed-width text table followed by per-stage counts."""
    columns = ["stage", "dataset", "model", "init", "ft", "transfer", "seed", "status"] + (["note"] if notes else [])
    rows = [{k: str(v) for k, v in p.row().items()} for p in plan]
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    lines.append("")
    for stage, counts in count_by_stage(plan).items():
        lines.append(f"{stage}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    totals: dict[str, int] = {}
    for p in plan:
        totals[p.status] = totals.get(p.status, 0) + 1
    lines.append(f"total: {len(plan)} configurations (" + ", ".join(f"{n} {s}" for s, n in sorted(totals.items())) + ")")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ checks before launching
def imagenet_availability(models: Iterable[str]) -> dict[str, str]:
    """``{model: note}`` for each model whose ImageNet weights are NOT in torch's hub cache.

    Looks files up with :func:`tlcore.models.resolve_imagenet_file`; never downloads.
    """
    from tlcore.models import (
        WeightsNotFoundError,
        get_spec,
        hub_checkpoint_dir,
        resolve_imagenet_file,
    )

    missing: dict[str, str] = {}
    for model in models:
        spec = get_spec(model)
        if not spec.supports_imagenet:
            continue
        try:
            resolve_imagenet_file(spec, download=False)  # planning never downloads: the study's size stays known
        except WeightsNotFoundError:
            from tlcore.models.weights import fetch_command, weights_file_name

            wanted = weights_file_name(spec.imagenet_weights) if spec.imagenet_weights else "?"
            missing[model] = (f"skipped: ImageNet weights for {model} not in the hub cache "
                              f"({wanted} in {hub_checkpoint_dir()}; `{fetch_command(model)}` fetches it)")
    return missing


def ensure_data(data_root: Path, datasets: Iterable[str], synth_scale: str | None,
                echo: Callable[[str], None] | None = None) -> bool:
    """Make sure each dataset folder exists under ``data_root``; returns True if look-alike data was written.

    With ``synth_scale`` set and none of the four folders present, writes look-alike
    data with :func:`tlcore.data.synth.generate`. Raises :class:`StudyError` naming the
    missing folders otherwise.
    """
    from tlcore.data.synth.config import DATASETS as SYNTH_DATASETS

    needed = list(dict.fromkeys(datasets))
    missing = [d for d in needed if not (data_root / d).is_dir()]
    if not missing:
        return False
    present = [d for d in SYNTH_DATASETS if (data_root / d).exists()]
    if synth_scale is not None and not present:
        from tlcore.data.synth import SynthConfig, generate

        if echo:
            echo(f"writing SYNTHETIC look-alike data (scale {synth_scale}) to {data_root} ...")
        generate(data_root, SynthConfig(scale=synth_scale, seed=0), progress=False)
        return True
    hint = (f" (the {synth_scale} look-alike data is only written into a folder that holds none of "
            f"{', '.join(SYNTH_DATASETS)})" if synth_scale else
            " Put the downloads there, pass --data-root, or use --profile quick/demo for look-alike data.")
    raise StudyError(f"{data_root}: dataset folder(s) missing: {', '.join(missing)}.{hint}")


def dataset_fingerprints(data_root: Path, datasets: Iterable[str]) -> dict[str, str]:
    """``{dataset: fingerprint}`` of the records each reader finds (metadata only, nothing decoded).

    The same digest the children tag: :func:`tlcore.data.cache.dataset_fingerprint` of
    :func:`tlcore.experiment.read_records`.
    """
    from tlcore.data.cache import dataset_fingerprint
    from tlcore.data.records import DatasetError
    from tlcore.experiment import read_records

    out: dict[str, str] = {}
    for name in dict.fromkeys(datasets):
        try:
            result = read_records(name, data_root)
        except DatasetError as exc:
            raise StudyError(f"cannot read dataset {name!r} under {data_root / name}: {exc}") from exc
        out[name] = dataset_fingerprint(result.records)
    return out


def step_config(item: PlannedRun, data_root: str | Path):
    """The typed step config the child builds from this configuration's arguments."""
    from tlcore.experiment import FinetuneConfig, PretrainConfig

    common = {"model": item.model, "seed": int(item.seed), "image_size": int(item.image_size) or None,
              "epochs": int(item.epochs), "lr": float(item.lr), "batch_size": int(item.batch_size),
              "data_root": str(data_root)}
    if item.stage == STAGE_PRETRAIN:
        return PretrainConfig(dataset=item.dataset, init=item.init, **common)
    if item.stage == STAGE_FINETUNE:
        return FinetuneConfig(dataset=item.dataset, init=item.init, ft_fraction=float(item.ft_fraction or 0.0),
                              transfer=item.transfer or "all", **common)
    if item.stage == STAGE_CCA:
        try:
            from tlcore.analysis import CcaConfig
        except ImportError:  # the analysis is optional: match finished runs on their params instead
            return None
        return CcaConfig(dataset=item.dataset, **common)  # the entry point's defaults (SVCCA, 99%)
    return None


def config_hash(item: PlannedRun, data_root: str | Path) -> str:
    """The ``tlstudy.config_hash`` the child will tag (empty when the stage has no step config)."""
    cfg = step_config(item, data_root)
    return cfg.config_hash() if cfg is not None else ""


def attach_identity(plan: Sequence[PlannedRun], data_root: str | Path,
                    fingerprints: Mapping[str, str]) -> list[PlannedRun]:
    """Fill in each configuration's config hash and dataset fingerprint."""
    return [dataclasses.replace(p, config_hash=config_hash(p, data_root),
                                fingerprint=fingerprints.get(p.dataset, "")) for p in plan]


def mark_missing_entry_points(plan: Sequence[PlannedRun], child_modules: Mapping[str, str],
                              sys_path: Sequence[str] = ()) -> list[PlannedRun]:
    """Make rows NA whose child entry point module cannot be found (e.g. an optional stage not installed)."""
    import importlib.util

    missing: dict[str, str] = {}
    saved = list(sys.path)
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    try:
        for stage in {p.stage for p in plan}:
            module = child_modules.get(stage)
            try:
                found = module is not None and importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing[stage] = f"skipped: the {stage} entry point ({module or 'none configured'}) is not installed"
    finally:
        sys.path[:] = saved
    return [dataclasses.replace(p, status=NA, note=missing[p.stage], depends_on=())
            if p.stage in missing and p.status == PLANNED else p for p in plan]


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def mark_done(plan: Sequence[PlannedRun], finished, code_version: str) -> list[PlannedRun]:
    """Mark ``planned`` rows ``done`` when ``finished`` (one search frame of FINISHED runs) has their match.

    A match has the same config hash, code version and dataset fingerprint (the
    fingerprint is compared only when both sides have one). Stages without a config hash
    (CCA) match on stage, dataset, model, seed and the ``epochs`` / ``image_size`` params.
    The newest matching run's id is kept.
    """
    if finished is None or len(finished) == 0:
        return list(plan)
    frame = finished.sort_values("start_time", ascending=False) if "start_time" in finished.columns else finished

    def col(name: str) -> list[str]:
        return [_text(v) for v in frame[name]] if name in frame.columns else [""] * len(frame)

    run_ids = list(frame["run_id"])
    hashes, versions = col(f"tags.{Tag.CONFIG_HASH}"), col(f"tags.{Tag.CODE_VERSION}")
    prints, stages = col(f"tags.{Tag.DATASET_FINGERPRINT}"), col(f"tags.{Tag.STAGE}")
    p_dataset, p_model, p_seed = col(f"params.{Param.DATASET}"), col(f"params.{Param.MODEL}"), col(f"params.{Param.SEED}")
    p_epochs, p_size = col("params.epochs"), col("params.image_size")
    by_hash: dict[str, list[int]] = {}
    by_params: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(frame)):
        if hashes[i]:
            by_hash.setdefault(hashes[i], []).append(i)
        by_params.setdefault((stages[i], p_dataset[i], p_model[i], p_seed[i]), []).append(i)

    def matches(i: int, item: PlannedRun) -> bool:
        if versions[i] != code_version:
            return False
        return not (item.fingerprint and prints[i] and prints[i] != item.fingerprint)

    out: list[PlannedRun] = []
    for item in plan:
        hit: int | None = None
        if item.status == PLANNED:
            if item.config_hash:
                candidates = by_hash.get(item.config_hash, [])
            else:
                candidates = [i for i in by_params.get((item.stage, item.dataset, item.model, str(item.seed)), [])
                              if p_epochs[i] in ("", str(item.epochs)) and p_size[i] in ("", str(item.image_size))]
            hit = next((i for i in candidates if matches(i, item)), None)
        if hit is not None:
            out.append(dataclasses.replace(item, status=DONE, run_id=run_ids[hit],
                                           note=f"already finished: {run_ids[hit]}"))
        else:
            out.append(item)
    return out


# ------------------------------------------------------------------------------ child processes
@dataclass(frozen=True)
class ChildSpec:
    """Everything a child process needs: which click command, its arguments, where its output goes."""

    module: str
    argv: tuple[str, ...]
    log_path: str
    env: tuple[tuple[str, str], ...]
    cwd: str
    threads: int = 1
    sys_path: tuple[str, ...] = ()


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent (the forkserver) goes away."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return


def child_main(spec: ChildSpec) -> None:
    """Body of a child process: call ``<module>.main(argv, standalone_mode=False)``, exit with its code.

    stdout and stderr (file descriptors 1 and 2, so library output is caught too) go to
    ``spec.log_path``. Exit 0 = success, 3 = not applicable, anything else = failure.
    """
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the forkserver died before prctl took effect
        os._exit(1)
    os.chdir(spec.cwd)
    for entry in reversed(spec.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    os.environ.clear()
    os.environ.update(dict(spec.env))
    log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    # SIGTERM (from the runner or the parent-death signal) ends the child like Ctrl-C would,
    # so its run is marked KILLED and its journal kept for a rerun to pick up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(max(1, spec.threads))
    code = _call_click_main(spec.module, list(spec.argv))
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def _call_click_main(module_name: str, argv: list[str]) -> int:
    import importlib
    import traceback

    import click

    try:
        module = importlib.import_module(module_name)
        command = module.main
    except (ImportError, AttributeError) as exc:
        sys.stderr.write(f"tlstudy study: cannot load the child entry point {module_name}.main: {exc}\n")
        return 1
    try:
        result = command.main(argv, prog_name=f"python -m {module_name}", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception:  # noqa: BLE001 - any crash of the child is reported through its log and exit code
        traceback.print_exc()
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


_CONTEXT: Any = None


def forkserver_context(preload: Sequence[str] = PRELOAD_MODULES):
    """The process-wide ``forkserver`` context, with the heavy modules preloaded (Linux/macOS)."""
    global _CONTEXT
    if _CONTEXT is None:
        methods = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(list(preload))
        _CONTEXT = ctx
    return _CONTEXT


def start_forkserver() -> None:
    """Start the forkserver now so that its imports run while the study is being planned."""
    ctx = forkserver_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


@dataclass
class Attempt:
    """One launch of one configuration."""

    item: PlannedRun
    number: int
    log_path: Path
    process: Any
    started: float
    ended: float | None = None
    exit_code: int | None = None

    @property
    def duration(self) -> float:
        return (self.ended or time.monotonic()) - self.started


@dataclass
class Outcome:
    """What happened to one configuration in this invocation."""

    item: PlannedRun
    status: str
    attempts: int = 0
    duration_s: float = 0.0
    exit_code: int | None = None
    log_paths: list[Path] = field(default_factory=list)
    note: str = ""


@dataclass
class ExecutionResult:
    """Outcomes of :func:`execute_plan` (one per configuration of the plan, in plan order)."""

    outcomes: list[Outcome]
    stopped_early: bool = False
    duration_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == FAILED]


def _log_tail(path: Path, n_chars: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - n_chars))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _eta_group(item: PlannedRun) -> str:
    return f"{item.stage}:{item.model}"


def estimate_eta(durations: Sequence[tuple[str, float]], remaining: Sequence[PlannedRun], jobs: int) -> float | None:
    """Seconds left: each remaining run costs the mean duration so far of its stage and model
    (else of everything so far), spread over ``jobs`` parallel slots. None before any run ended."""
    if not durations:
        return None
    if not remaining:
        return 0.0
    overall = sum(d for _, d in durations) / len(durations)
    groups: dict[str, list[float]] = {}
    for group, d in durations:
        groups.setdefault(group, []).append(d)
    means = {g: sum(v) / len(v) for g, v in groups.items()}
    work = sum(means.get(_eta_group(item), overall) for item in remaining)
    return work / max(1, min(jobs, len(remaining)))


@dataclass
class LaunchSettings:
    """How children are launched: entry modules, concurrency, logs, environment."""

    data_root: Path
    work_dir: Path
    experiment: str | None = None
    parent_run_id: str | None = None
    jobs: int = 2
    max_runs: int | None = None
    max_attempts: int = 2  # a failed child is retried once
    child_modules: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CHILD_MODULES))
    env: Mapping[str, str] | None = None  # full environment of the children (default: this process's)
    sys_path: tuple[str, ...] = ()
    poll_s: float = 0.5
    threads_per_run: int = 0  # torch threads per child; 0 = the CPUs shared out over ``jobs``


def execute_plan(
    plan: Sequence[PlannedRun],
    settings: LaunchSettings,
    *,
    echo: Callable[[str], None] | None = None,
    on_finished: Callable[[Attempt, Outcome | None], None] | None = None,
) -> ExecutionResult:
    """Launch every ``planned`` configuration as a child process, dependencies respected.

    Up to ``settings.jobs`` children run at once. A child that exits non-zero is retried
    once (``max_attempts``), one that fails on a locked SQLite database up to
    :data:`MAX_LOCK_RETRIES` more times; exit 3 makes the row NA with the child's last
    output line as the note; dependants of a row that ends failed / NA are ``blocked``.
    ``max_runs`` stops launching after that many launches (a rerun continues).
    ``on_finished`` is called after every attempt (with the final outcome when the row is
    settled).
    """
    say = echo or (lambda _msg: None)
    t0 = time.monotonic()
    ctx = forkserver_context()
    logs_dir = settings.work_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    env = dict(settings.env if settings.env is not None else os.environ)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, settings.threads_per_run) if settings.threads_per_run else max(1, cpus // max(1, settings.jobs))
    outcomes: dict[str, Outcome] = {p.key: Outcome(item=p, status=p.status, note=p.note) for p in plan}
    settled_ok = {p.key for p in plan if p.status == DONE}
    settled_bad: dict[str, str] = {p.key: p.status for p in plan if p.status == NA}
    queue: list[PlannedRun] = [p for p in plan if p.status == PLANNED]
    # Pre-training first (it unblocks the most work), the longest first, so that the long
    # pole starts at once and the other slots fill up with runs that need no pre-training.
    queue.sort(key=lambda p: (0, PRETRAIN_LONGEST_FIRST.index(p.model)) if p.stage == STAGE_PRETRAIN else (1, 0))
    total = len(queue)
    running: dict[str, Attempt] = {}
    attempts: dict[str, int] = {}
    launches: dict[str, int] = {}
    lock_retries: dict[str, int] = {}
    durations: list[tuple[str, float]] = []
    launched = 0
    finished_count = 0
    stopped_early = False

    def progress(prefix: str) -> None:
        current = ", ".join(a.item.key for a in running.values()) or "-"
        eta = estimate_eta(durations, [*queue, *(a.item for a in running.values())], settings.jobs)
        say(f"[{finished_count}/{total}] {prefix} | running: {current} | ETA {_fmt_duration(eta) if eta is not None else '?'}")

    def launch(item: PlannedRun) -> None:
        nonlocal launched
        number = attempts.get(item.key, 0) + 1
        attempts[item.key] = number
        module = settings.child_modules.get(item.stage)
        if module is None:
            raise StudyError(f"no child entry point configured for stage {item.stage!r}")
        launches[item.key] = launches.get(item.key, 0) + 1
        log_path = logs_dir / f"{item.slug}.attempt{launches[item.key]}.log"
        argv = item.argv(settings.data_root, settings.experiment, settings.parent_run_id)
        log_path.write_text(f"$ python -m {module} {' '.join(argv)}\n")
        spec = ChildSpec(
            module=module,
            argv=tuple(argv),
            log_path=str(log_path),
            env=tuple(sorted(env.items())),
            cwd=os.getcwd(),
            threads=threads,
            sys_path=settings.sys_path,
        )
        process = ctx.Process(target=child_main, args=(spec,), name=f"tlstudy-{item.slug}", daemon=False)
        process.start()
        running[item.key] = Attempt(item=item, number=number, log_path=log_path, process=process,
                                    started=time.monotonic())
        launched += 1
        outcomes[item.key].log_paths.append(log_path)

    def block_reason(item: PlannedRun) -> str | None:
        for dep in item.depends_on:
            if dep in settled_bad:
                return f"blocked: prerequisite {dep} {settled_bad[dep]}"
        return None

    def ready(item: PlannedRun) -> bool:
        return all(dep in settled_ok for dep in item.depends_on)

    try:
        while queue or running:
            # Settle rows whose prerequisites can no longer succeed.
            for item in list(queue):
                reason = block_reason(item)
                if reason:
                    queue.remove(item)
                    outcome = outcomes[item.key]
                    outcome.status, outcome.note = BLOCKED, reason
                    settled_bad[item.key] = BLOCKED
                    finished_count += 1
                    say(f"[{finished_count}/{total}] blocked {item.key}: {reason}")
            while len(running) < settings.jobs and not stopped_early:
                if settings.max_runs is not None and launched >= settings.max_runs:
                    if queue:
                        stopped_early = True
                    break
                nxt = next((p for p in queue if ready(p)), None)
                if nxt is None:
                    break
                queue.remove(nxt)
                launch(nxt)
                progress(f"start {nxt.key}" + (f" (attempt {attempts[nxt.key]})" if attempts[nxt.key] > 1 else ""))
            if not running:
                if stopped_early or not queue:
                    break
                # Nothing runnable and nothing running: the rest waits on prerequisites outside the plan.
                for item in queue:
                    outcome = outcomes[item.key]
                    outcome.status = BLOCKED
                    outcome.note = "blocked: prerequisite " + ", ".join(d for d in item.depends_on if d not in settled_ok) + " not in this study"
                    finished_count += 1
                queue.clear()
                break
            sentinels = {a.process.sentinel: key for key, a in running.items()}
            multiprocessing.connection.wait(list(sentinels), timeout=settings.poll_s)
            for key, attempt in list(running.items()):
                if attempt.process.is_alive():
                    continue
                attempt.process.join()
                attempt.ended = time.monotonic()
                attempt.exit_code = attempt.process.exitcode
                attempt.process.close()
                del running[key]
                item = attempt.item
                outcome = outcomes[key]
                outcome.attempts = attempt.number
                outcome.duration_s += attempt.duration
                outcome.exit_code = attempt.exit_code
                tail = _log_tail(attempt.log_path)
                code = attempt.exit_code
                settled: Outcome | None = outcome
                if code == 0:
                    outcome.status = DONE
                    outcome.note = _last_line(tail) if "already finished" in tail else ""
                    settled_ok.add(key)
                    durations.append((_eta_group(item), attempt.duration))
                    verdict = "ok"
                elif code == EXIT_NOT_APPLICABLE:
                    outcome.status = NA
                    outcome.note = _last_line(tail) or "not applicable (exit 3)"
                    settled_bad[key] = NA
                    verdict = "NA"
                else:
                    locked = any(m in tail for m in LOCK_MESSAGES)
                    if locked and lock_retries.get(key, 0) < MAX_LOCK_RETRIES:
                        lock_retries[key] = lock_retries.get(key, 0) + 1
                        attempts[key] -= 1  # a lock is not the configuration's fault
                        queue.insert(0, item)
                        settled = None
                        verdict = f"database locked, relaunching (exit {code})"
                    elif attempt.number < settings.max_attempts:
                        queue.insert(0, item)
                        settled = None
                        verdict = f"failed (exit {code}), retrying; log {attempt.log_path}"
                    else:
                        outcome.status = FAILED
                        outcome.note = f"exit {code}: {_last_line(tail)} (log {attempt.log_path})"
                        settled_bad[key] = FAILED
                        verdict = f"FAILED (exit {code}); log {attempt.log_path}"
                if settled is not None:
                    finished_count += 1
                if on_finished is not None:
                    on_finished(attempt, settled)
                progress(f"{verdict} {item.key} ({_fmt_duration(attempt.duration)})")
    except BaseException:
        for attempt in running.values():
            if attempt.process.is_alive():
                attempt.process.terminate()
        for attempt in running.values():
            attempt.process.join(timeout=30)
            if attempt.process.is_alive():
                attempt.process.kill()
                attempt.process.join()
        raise
    for item in queue:
        outcome = outcomes[item.key]
        if outcome.status == PLANNED:
            outcome.status, outcome.note = NOT_RUN, "not run: stopped early (--max-runs); rerun to continue"
    for outcome in outcomes.values():
        if outcome.status == PLANNED:  # pragma: no cover - defensive
            outcome.status = NOT_RUN
    return ExecutionResult(outcomes=[outcomes[p.key] for p in plan], stopped_early=stopped_early,
                           duration_s=time.monotonic() - t0)


# ------------------------------------------------------------------------------ the whole study
@dataclass(frozen=True)
class StudyOptions:
    """What ``tlstudy study`` was asked to do."""

    profile: str = "quick"
    datasets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    data_root: Path | None = None
    experiment: str | None = None
    jobs: int | None = None
    out_dir: Path | None = None
    dry_run: bool = False
    max_runs: int | None = None
    tracking_uri: str | None = None
    work_dir: Path | None = None
    report: bool = True
    child_modules: Mapping[str, str] | None = None
    child_sys_path: tuple[str, ...] = ()


@dataclass
class StudyResult:
    """What :func:`run_study` did."""

    profile: StudyProfile
    experiment: str
    tracking_uri: str
    plan: list[PlannedRun]
    execution: ExecutionResult | None = None
    parent_run_id: str | None = None
    report_dir: Path | None = None
    report_run_id: str | None = None
    report_files: dict[str, Path] = field(default_factory=dict)
    work_dir: Path | None = None

    @property
    def ok(self) -> bool:
        """True when nothing failed (NA and blocked-by-NA rows are fine)."""
        if self.execution is None:
            return True
        return not any(o.status == FAILED or (o.status == BLOCKED and FAILED in o.note) for o in self.execution.outcomes)


def _safe_uri(uri: str) -> str:
    """The tracking URI without a password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def browse_hint(tracking_uri: str) -> str:
    """How to look at the runs: ``mlflow ui ...`` for a database store, the URL for a server."""
    from tracking.store import is_http_uri, is_sqlite_uri, sqlite_path

    if is_http_uri(tracking_uri):
        return f"open {tracking_uri} in a browser (the tracking server's UI)"
    if is_sqlite_uri(tracking_uri):
        db = sqlite_path(tracking_uri).resolve()
        if db == (Path.cwd() / "mlflow.db").resolve():
            return "mlflow ui --backend-store-uri sqlite:///mlflow.db"
        return f"mlflow ui --backend-store-uri sqlite:///{db}"
    return f"mlflow ui --backend-store-uri '{_safe_uri(tracking_uri)}'"


def _study_hash(profile: StudyProfile, plan: Sequence[PlannedRun], data_root: Path, code: str) -> str:
    blob = json.dumps({
        "profile": profile.as_dict(),
        "data_root": str(data_root),
        "code_version": code,
        "plan": [(p.key, p.status if p.status == NA else "", p.config_hash, p.fingerprint) for p in plan],
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare_plan(options: StudyOptions, echo: Callable[[str], None] | None = None
                 ) -> tuple[StudyProfile, list[PlannedRun], Path, str, str]:
    """Resolve the profile and data, plan, and mark what is done. Returns (profile, plan, data_root, experiment, uri).

    Touches the tracking store only for the one paged search of the experiment.
    """
    from tracking.provenance import code_version
    from tracking.query import search_study_runs
    from tracking.store import resolve_tracking_uri

    profile = get_profile(options.profile)
    data_root = Path(options.data_root if options.data_root is not None else profile.data_root()).expanduser().resolve()
    experiment = options.experiment or profile.default_experiment
    uri = resolve_tracking_uri(options.tracking_uri)
    models = _check_selection("models", options.models or profile.models, MODELS)
    datasets = _check_selection("datasets", options.datasets, TARGET_DATASETS)
    plan = plan_study(profile, datasets=datasets, models=models, seeds=options.seeds or None,
                      imagenet_missing=imagenet_availability(models))
    needed = [PRETRAIN_DATASET] + list(datasets)
    if options.dry_run and not all((data_root / d).is_dir() for d in needed):
        fingerprints: dict[str, str] = {}
        if echo:
            echo(f"note: data not found under {data_root}; statuses ignore dataset fingerprints")
    else:
        ensure_data(data_root, needed, profile.synth_scale, echo)
        fingerprints = dataset_fingerprints(data_root, needed)
    plan = mark_missing_entry_points(plan, options.child_modules or DEFAULT_CHILD_MODULES, options.child_sys_path)
    plan = attach_identity(plan, data_root, fingerprints)
    finished = search_study_runs(experiment, finished_only=True, tracking_uri=uri)
    plan = mark_done(plan, finished, code_version().version)
    return profile, plan, data_root, experiment, uri


def run_study(options: StudyOptions, echo: Callable[[str], None] | None = None) -> StudyResult:
    """Plan, skip what is done, launch the rest under a parent run, then build and log the report."""
    from tracking.logger import LoggerSettings, RunLogger, find_finished_run
    from tracking.privacy import PrivacyError
    from tracking.provenance import code_version
    from tracking.store import get_client

    say = echo or (lambda _msg: None)
    # Under `mlflow run . -e study` the launcher opened a run for this process. The study keeps its
    # parent run in its own experiment (with its children), and its report logs a run of its own, so
    # neither may take the launcher's run over: it ends as a pointer to the study run (tagged, deleted).
    launcher_run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    if not options.dry_run:
        start_forkserver()  # its preload (torch, mlflow, ...) overlaps with planning
    profile, plan, data_root, experiment, uri = prepare_plan(options, say)
    result = StudyResult(profile=profile, experiment=experiment, tracking_uri=uri, plan=plan)
    say(format_plan(plan))
    if options.dry_run:
        return result

    get_client(uri)  # creates the SQLite schema once, before any child touches the file
    work_dir = Path(options.work_dir or Path(".tlstudy") / "study" / experiment).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    result.work_dir = work_dir
    code = code_version().version
    study_hash = _study_hash(profile, plan, data_root, code)
    todo = [p for p in plan if p.status == PLANNED]
    if todo and find_finished_run(experiment, study_hash, uri) is not None:
        # The same study finished before, yet something is left (runs deleted, or it stopped early).
        study_hash = hashlib.sha256(f"{study_hash}:{time.time_ns()}".encode()).hexdigest()[:16]
    t0 = time.monotonic()
    settings = LoggerSettings(work_dir=work_dir / "tracking", flush_interval_s=5.0)
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = uri
    with RunLogger(run_name(STAGE_STUDY), study_hash, stage=STAGE_STUDY, experiment=experiment,
                   tracking_uri=uri, settings=settings) as parent:
        result.parent_run_id = parent.run_id
        if launcher_run_id:
            from tracking.launcher import end_launcher_run_as_pointer

            os.environ["MLFLOW_RUN_ID"] = launcher_run_id
            try:
                if end_launcher_run_as_pointer(get_client(uri), parent.run_id):
                    say(f"the run that mlflow run opened ({launcher_run_id}) points to the study run and is deleted "
                        "when it ends")
            finally:
                os.environ.pop("MLFLOW_RUN_ID", None)
        say(f"study run {parent.run_id} in experiment {experiment!r} ({_safe_uri(uri)}); "
            f"{len(todo)} to run, {sum(p.status == DONE for p in plan)} already done, "
            f"{sum(p.status == NA for p in plan)} NA; child logs in {work_dir / 'logs'}")
        params = {f"{STUDY_PARAM_PREFIX}profile": profile.name,
                  f"{STUDY_PARAM_PREFIX}datasets": ",".join(sorted({p.dataset for p in plan if p.stage != STAGE_PRETRAIN})),
                  f"{STUDY_PARAM_PREFIX}models": ",".join(dict.fromkeys(p.model for p in plan)),
                  f"{STUDY_PARAM_PREFIX}seeds": ",".join(str(s) for s in dict.fromkeys(p.seed for p in plan if p.stage != STAGE_PRETRAIN)),
                  f"{STUDY_PARAM_PREFIX}n_configurations": len(plan)}
        if not parent.completed:
            parent.log_params(params)
            parent.log_dict({"profile": profile.as_dict(), "data_root": str(data_root), "experiment": experiment},
                            "config/resolved_config.json")
            parent.log_dataframe(plan_frame(plan), ARTIFACT_PLAN)
        parent.log_metrics({METRIC_RUNS_TOTAL: float(len(todo)), METRIC_RUNS_DONE: 0.0}, step=0)
        counters = {"done": 0, "failed": 0, "step": 0}

        def on_finished(attempt: Attempt, outcome: Outcome | None) -> None:
            try:
                parent.log_file(attempt.log_path, f"{ARTIFACT_LOGS}/{attempt.log_path.name}")
            except PrivacyError as exc:  # the log stays on this machine; the store never sees it
                say(f"note: child log {attempt.log_path.name} not uploaded: {exc}")
            if outcome is None:
                return
            counters["step"] += 1
            if outcome.status == DONE:
                counters["done"] += 1
            elif outcome.status == FAILED:
                counters["failed"] += 1
            parent.log_metrics({METRIC_RUNS_DONE: float(counters["done"]),
                                METRIC_RUNS_FAILED: float(counters["failed"])}, step=counters["step"])

        launch = LaunchSettings(
            data_root=data_root, work_dir=work_dir, experiment=experiment, parent_run_id=parent.run_id,
            jobs=max(1, options.jobs or profile.jobs), max_runs=options.max_runs,
            child_modules=dict(options.child_modules or DEFAULT_CHILD_MODULES), env=env,
            sys_path=tuple(options.child_sys_path), threads_per_run=profile.threads_per_run,
        )
        execution = execute_plan(plan, launch, echo=say, on_finished=on_finished)
        result.execution = execution
        outcome_rows = [{**o.item.row(), "status": o.status, "note": o.note, "attempts": o.attempts,
                         "duration_s": round(o.duration_s, 2)} for o in execution.outcomes]
        import pandas as pd

        parent.log_dataframe(pd.DataFrame(outcome_rows), ARTIFACT_OUTCOME)
        parent.log_metrics({METRIC_DURATION: time.monotonic() - t0}, step=0)
        say(summary_text(execution))
        if options.report and not execution.stopped_early:
            _report(options, result, parent, say)
        elif execution.stopped_early:
            say(f"stopped after {options.max_runs} launches (--max-runs); run the same command again to continue")
    say(f"browse the runs: {browse_hint(uri)}")
    return result


def _report(options: StudyOptions, result: StudyResult, parent: Any, say: Callable[[str], None]) -> None:
    from tracking.report import build_report, log_report

    out = Path(options.out_dir or Path("reports") / result.experiment)
    report = build_report(result.experiment, out, tracking_uri=result.tracking_uri)
    result.report_dir = out
    result.report_files = dict(report.files)
    result.report_run_id = log_report(report, experiment=result.experiment, tracking_uri=result.tracking_uri,
                                      settings=parent.settings)
    for name in ("report.md", "report.html"):
        path = out / name
        if path.is_file():
            parent.log_file(path, f"report/{name}")
    main = out / "report.html"
    say(f"report: {main if main.is_file() else out} (report run {result.report_run_id})")


def summary_text(execution: ExecutionResult) -> str:
    """One paragraph: how many ran, were skipped, NA, failed; the failures with their logs."""
    counts: dict[str, int] = {}
    for o in execution.outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    lines = [f"study finished in {_fmt_duration(execution.duration_s)}: "
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    for o in execution.outcomes:
        if o.status in (FAILED, BLOCKED) or (o.status == NA and o.attempts):
            lines.append(f"  {o.status}: {o.item.key}: {o.note}")
    return "\n".join(lines)
