"""The one place that names everything the study writes to MLflow.

Run names, params, tags, metrics and artifact paths are constants here; every other
module (and the report) refers to them by these names. ``python -m tracking.schema``
prints the schema as a Markdown table for the README.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

DEFAULT_EXPERIMENT: Final = "tlstudy"
TAG_PREFIX: Final = "tlstudy."

# --- stages -------------------------------------------------------------------------
STAGE_PRETRAIN: Final = "pretrain"
STAGE_FINETUNE: Final = "finetune"
STAGE_CCA: Final = "cca"
STAGE_REPORT: Final = "report"
STAGE_STUDY: Final = "study"
STAGES: Final = (STAGE_PRETRAIN, STAGE_FINETUNE, STAGE_CCA, STAGE_REPORT, STAGE_STUDY)

# Values the study uses for ``init`` and ``transfer`` (documented, not enforced here).
INITS: Final = ("random", "imagenet", "ddsm")
TRANSFERS: Final = ("all", "hybrid")
FT_FRACTIONS: Final = (0.0, 0.1, 0.2)


class Param:
    """Run parameter names (values are always strings on the server)."""

    DATASET: Final = "dataset"
    MODEL: Final = "model"
    INIT: Final = "init"
    FT_FRACTION: Final = "ft_fraction"
    TRANSFER: Final = "transfer"
    SEED: Final = "seed"


class Tag:
    """Run / model-version tag names, all under the ``tlstudy.`` prefix."""

    STAGE: Final = "tlstudy.stage"
    CODE_VERSION: Final = "tlstudy.code_version"
    CODE_DIRTY: Final = "tlstudy.code_dirty"
    DATASET_FINGERPRINT: Final = "tlstudy.dataset_fingerprint"
    SPLIT_HASH: Final = "tlstudy.split_hash"
    CONFIG_HASH: Final = "tlstudy.config_hash"
    DDSM_MODEL_NAME: Final = "tlstudy.ddsm_model_name"
    DDSM_MODEL_VERSION: Final = "tlstudy.ddsm_model_version"
    DDSM_SOURCE_RUN_ID: Final = "tlstudy.ddsm_source_run_id"
    DDSM_MODEL_URI: Final = "tlstudy.ddsm_model_uri"
    JOURNAL_ID: Final = "tlstudy.journal_id"
    # On a run `mlflow run` opened for work that was already done: the run holding it
    # (the pointer run is then deleted; see docs/mlflow-run.md).
    DUPLICATE_OF: Final = "tlstudy.duplicate_of"
    # MLflow's own tag that makes a run a child of another.
    PARENT_RUN_ID: Final = "mlflow.parentRunId"


class Metric:
    """Metric names. Per-epoch metrics use ``step = epoch``."""

    TEST_AUC: Final = "test_auc"
    TEST_AUC_CI_LOW: Final = "test_auc_ci_low"
    TEST_AUC_CI_HIGH: Final = "test_auc_ci_high"
    TRAIN_LOSS: Final = "train_loss"
    VAL_AUC: Final = "val_auc"


class Artifact:
    """Artifact paths inside a run."""

    CONFIG: Final = "config/resolved_config.json"
    SPLIT_MANIFEST: Final = "data/split_manifest.csv"
    PREDICTIONS: Final = "eval/predictions.csv"
    ROC_PLOT: Final = "eval/roc.png"
    MODEL: Final = "model"
    STATE_DICT: Final = "weights/state_dict.pt"


# Registered model names and the alias the fine-tune stage resolves.
REGISTERED_MODEL_PREFIX: Final = "ddsm-"
CHAMPION_ALIAS: Final = "champion"


def registered_model_name(model: str) -> str:
    """Registry name of the DDSM pre-trained checkpoint for ``model`` (``ddsm-resnet50``)."""
    return f"{REGISTERED_MODEL_PREFIX}{model}"


def format_fraction(fraction: float | str) -> str:
    """Canonical string of a fine-tune fraction: ``0.1 -> "0.1"``, ``0 -> "0.0"``.

    The same string is used in params and run names, so ``params.ft_fraction = '0.1'``
    filters work. Rejects values outside [0, 1].
    """
    value = float(fraction)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"ft_fraction must be within [0, 1], got {fraction!r}")
    text = repr(round(value, 6))
    return text if "." in text or "e" in text else f"{text}.0"


def run_name(
    stage: str,
    dataset: str | None = None,
    model: str | None = None,
    init: str | None = None,
    ft_fraction: float | str | None = None,
    transfer: str | None = None,
    seed: int | None = None,
) -> str:
    """Human-readable run name, e.g. ``finetune mias resnet50 ddsm ft0.1 all s0``.

    Parts that are None are left out (``pretrain ddsm resnet50 imagenet s0``).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGES)}")
    parts: list[str] = [stage]
    for part in (dataset, model, init):
        if part is not None:
            parts.append(str(part))
    if ft_fraction is not None:
        parts.append(f"ft{format_fraction(ft_fraction)}")
    if transfer is not None:
        parts.append(str(transfer))
    if seed is not None:
        parts.append(f"s{int(seed)}")
    return " ".join(parts)


@dataclass(frozen=True)
class SchemaEntry:
    """One documented name in the tracking schema."""

    kind: str  # run name | param | tag | metric | artifact | registry
    name: str
    description: str
    example: str = ""


SCHEMA: Final[tuple[SchemaEntry, ...]] = (
    SchemaEntry("run name", "<stage> <dataset> <model> <init> ft<fraction> <transfer> s<seed>",
                "Parts that do not apply are left out.", "finetune mias resnet50 ddsm ft0.1 all s0"),
    SchemaEntry("param", Param.DATASET, "Target (or pre-training) dataset.", "mias"),
    SchemaEntry("param", Param.MODEL, "Model architecture name.", "resnet50"),
    SchemaEntry("param", Param.INIT, "Initialisation: " + " / ".join(INITS) + ".", "ddsm"),
    SchemaEntry("param", Param.FT_FRACTION, "Share of the target set used for fine-tuning, as a string.", "0.1"),
    SchemaEntry("param", Param.TRANSFER, "Weights reused: " + " / ".join(TRANSFERS) + " (hybrid = up to block2).", "all"),
    SchemaEntry("param", Param.SEED, "Random seed.", "0"),
    SchemaEntry("param", "<hyper-parameter>", "Every other field of the resolved config (nested fields joined with dots).", "lr"),
    SchemaEntry("tag", Tag.STAGE, "Pipeline stage: " + " / ".join(STAGES) + ".", "finetune"),
    SchemaEntry("tag", Tag.CODE_VERSION, "Git commit, or package version when not in a git checkout.", "3f2a1c9"),
    SchemaEntry("tag", Tag.CODE_DIRTY, "'true' when the checkout had uncommitted changes.", "false"),
    SchemaEntry("tag", Tag.DATASET_FINGERPRINT, "Digest of the dataset records used.", "a1b2c3d4e5f60718"),
    SchemaEntry("tag", Tag.SPLIT_HASH, "Digest of the train/val/test split manifest.", "0f1e2d3c4b5a6978"),
    SchemaEntry("tag", Tag.CONFIG_HASH, "Digest of the resolved config; one FINISHED run per value.", "9a8b7c6d5e4f3021"),
    SchemaEntry("tag", Tag.DDSM_MODEL_NAME, "Registered DDSM model a fine-tune started from.", "ddsm-resnet50"),
    SchemaEntry("tag", Tag.DDSM_MODEL_VERSION, "Its version.", "3"),
    SchemaEntry("tag", Tag.DDSM_SOURCE_RUN_ID, "The pre-training run that produced it.", "4ec614b2..."),
    SchemaEntry("tag", Tag.DDSM_MODEL_URI, "The reference the fine-tune asked for (alias, version or run).",
                "models:/ddsm-resnet50@champion"),
    SchemaEntry("tag", Tag.JOURNAL_ID, "Local journal that created the run (used to re-attach after an outage).", "uuid"),
    SchemaEntry("tag", Tag.DUPLICATE_OF, "On a deleted `mlflow run` launcher run whose work was already done: "
                "the run that holds it.", "4ec614b2..."),
    SchemaEntry("tag", Tag.PARENT_RUN_ID, "Parent (study) run of a nested child run.", "run id"),
    SchemaEntry("metric", Metric.TEST_AUC, "ROC AUC on the held-out test split.", "0.91"),
    SchemaEntry("metric", Metric.TEST_AUC_CI_LOW, "Lower bound of the bootstrap 95% CI of test_auc.", "0.85"),
    SchemaEntry("metric", Metric.TEST_AUC_CI_HIGH, "Upper bound of the bootstrap 95% CI of test_auc.", "0.96"),
    SchemaEntry("metric", Metric.TRAIN_LOSS, "Mean training loss of the epoch (step = epoch).", "0.42"),
    SchemaEntry("metric", Metric.VAL_AUC, "Validation ROC AUC after the epoch (step = epoch).", "0.88"),
    SchemaEntry("artifact", Artifact.CONFIG, "The resolved run config (JSON).", ""),
    SchemaEntry("artifact", Artifact.SPLIT_MANIFEST, "Split manifest: anonymous image_id, role (test, ft_0.1, ft_0.2_only, official) and part (train/val/test).", ""),
    SchemaEntry("artifact", Artifact.PREDICTIONS, "Test predictions: image_id, label, score (the logit, ranked for AUC), probability.", ""),
    SchemaEntry("artifact", Artifact.ROC_PLOT, "ROC curve of the test predictions (PNG).", ""),
    SchemaEntry("artifact", Artifact.MODEL, "The checkpoint as an MLflow pytorch model (signature, input example).", ""),
    SchemaEntry("artifact", Artifact.STATE_DICT, "Tensors-only state dict, loaded with weights_only=True for reuse.", ""),
    SchemaEntry("registry", f"{REGISTERED_MODEL_PREFIX}<model>", f"Registered DDSM checkpoint; alias '{CHAMPION_ALIAS}' = best test_auc.",
                "models:/ddsm-resnet50@champion"),
)


def schema_markdown() -> str:
    """Render :data:`SCHEMA` as a Markdown table."""
    lines = ["| kind | name | meaning | example |", "|---|---|---|---|"]
    for entry in SCHEMA:
        cells = [entry.kind, f"`{entry.name}`", entry.description, f"`{entry.example}`" if entry.example else ""]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


SCHEMA_DOC: Final = schema_markdown()


if __name__ == "__main__":
    import sys

    sys.stdout.write(SCHEMA_DOC)
