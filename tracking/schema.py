"""The one place that names everything the study writes to MLflow.

Run names, params, tags, metrics and artifact paths are constants here; every other
module (and the report) refers to them by these names. ``python -m tracking.schema``
prints the schema as a Markdown table for docs/schema.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tlcore.design import fraction_key

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
    CCA_SOURCE_RUN_ID: Final = "tlstudy.cca_source_run_id"
    CCA_RANK_CAP: Final = "tlstudy.cca_rank_cap"
    SYNTHETIC_DATA: Final = "tlstudy.synthetic_data"
    # sha256 of the run's weights/state_dict.pt, recorded when it is registered (run and version).
    STATE_DICT_SHA256: Final = "tlstudy.state_dict_sha256"
    # On a run `mlflow run` opened for work that was already done: the run holding it
    # (the pointer run is then deleted; see docs/mlflow-run.md).
    DUPLICATE_OF: Final = "tlstudy.duplicate_of"
    # MLflow's own tag that makes a run a child of another.
    PARENT_RUN_ID: Final = "mlflow.parentRunId"


class MlflowTag:
    """MLflow's own experiment / registered-model tags that tlstudy sets (not prefixed)."""

    #: Read by the MLflow 3.x UI to choose between its GenAI and model-training views.
    EXPERIMENT_KIND: Final = "mlflow.experimentKind"
    #: The description shown on the experiment and registered-model pages (Markdown).
    NOTE: Final = "mlflow.note.content"


#: ``mlflow.experimentKind`` value of a model-training experiment (MLflow 3.x UI).
EXPERIMENT_KIND_TRAINING: Final = "custom_model_development"
#: tlstudy tag on experiments and registered models it creates.
TAG_PROJECT: Final = "tlstudy.project"


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


format_fraction = fraction_key  # one definition: tlcore.design.fraction_key


#: Separator of run-name parts; run names are read in the MLflow UI, which cuts them short.
RUN_NAME_SEP: Final = "\u00b7"  # middle dot
#: Short forms used in run names only (params keep the full names).
RUN_NAME_MODELS: Final = {"resnet50": "r50", "vgg16": "vgg16", "inception_v3": "incv3", "patch_cnn": "patch"}
RUN_NAME_INITS: Final = {"random": "rand", "imagenet": "inet", "ddsm": "ddsm"}
#: The dataset every pre-training run uses; left out of pretrain run names.
PRETRAIN_DATASET: Final = "ddsm"


def format_fraction_percent(fraction: float | str) -> str:
    """``0.1 -> "10"``, ``0.0 -> "0"``, ``0.125 -> "12.5"`` (the run-name form of a fraction)."""
    return f"{round(float(format_fraction(fraction)) * 100, 4):g}"


def run_name(
    stage: str,
    dataset: str | None = None,
    model: str | None = None,
    init: str | None = None,
    ft_fraction: float | str | None = None,
    transfer: str | None = None,
    seed: int | None = None,
) -> str:
    """Run name whose first characters tell runs apart in the MLflow UI's run list.

    Fine-tune runs lead with the dataset: ``mias·r50·ddsm·ft10·s0`` (``·hyb`` before the
    seed for hybrid transfer); other stages lead with the stage:
    ``pretrain·r50·inet·s0`` (DDSM implied), ``cca·inbreast·r50·ddsm·s0``, ``study``.
    Parts that are None are left out; models and inits are shortened
    (:data:`RUN_NAME_MODELS`, :data:`RUN_NAME_INITS`); the params keep the full names.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGES)}")
    parts: list[str] = [] if stage == STAGE_FINETUNE else [stage]
    if dataset is not None and not (stage == STAGE_PRETRAIN and dataset == PRETRAIN_DATASET):
        parts.append(str(dataset))
    if model is not None:
        parts.append(RUN_NAME_MODELS.get(str(model), str(model)))
    if init is not None:
        parts.append(RUN_NAME_INITS.get(str(init), str(init)))
    if ft_fraction is not None:
        parts.append(f"ft{format_fraction_percent(ft_fraction)}")
    if transfer is not None and transfer != "all":
        parts.append("hyb" if transfer == "hybrid" else str(transfer))
    if seed is not None:
        parts.append(f"s{int(seed)}")
    return RUN_NAME_SEP.join(parts) if parts else stage


def experiment_tags(name: str) -> dict[str, str]:
    """Tags tlstudy sets on an experiment it creates or first uses (kind, description, project)."""
    example = run_name(STAGE_FINETUNE, "mias", "resnet50", "ddsm", 0.1, "all", 0)
    note = (
        f"**tlstudy** transfer-learning study `{name}`: pre-training on DDSM, fine-tuning on INbreast, "
        f"MIAS and ultrasound, SVCCA between the models (paper: *Transfer Learning Pre-training Dataset "
        f"Effect Analysis for Breast Cancer Imaging*).\n\n"
        f"Run names read `<dataset>·<model>·<init>·ft<percent>[·hyb]·s<seed>` (e.g. `{example}`); "
        f"other stages start with the stage (`pretrain·…`, `cca·…`, `study`, `report`). "
        f"Filter with the params `{Param.DATASET}`, `{Param.MODEL}`, `{Param.INIT}`, `{Param.FT_FRACTION}`, "
        f"`{Param.TRANSFER}`, `{Param.SEED}` or the tag `{Tag.STAGE}`. The `study` run is the parent of "
        f"every run it launched; `report` runs hold the tables (report.html)."
    )
    return {MlflowTag.EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING, MlflowTag.NOTE: note, TAG_PROJECT: "tlstudy"}


def registered_model_description(model: str) -> str:
    """Description of the registered DDSM checkpoint of ``model``."""
    return (
        f"{model} pre-trained on DDSM by `tlstudy pretrain --model {model}`; each version is one "
        f"pre-training run. Alias `{CHAMPION_ALIAS}` = the version with the best `{Metric.TEST_AUC}`. "
        f"Fine-tunes reuse it with `-P init=ddsm` (`models:/{REGISTERED_MODEL_PREFIX}{model}@{CHAMPION_ALIAS}`)."
    )


@dataclass(frozen=True)
class SchemaEntry:
    """One documented name in the tracking schema."""

    kind: str  # run name | param | tag | metric | artifact | registry
    name: str
    description: str
    example: str = ""


SCHEMA: Final[tuple[SchemaEntry, ...]] = (
    SchemaEntry("run name", "<dataset>·<model>·<init>·ft<percent>[·hyb]·s<seed> (fine-tune); <stage>·... (others)",
                "Short forms: r50, vgg16, incv3, patch; rand, inet, ddsm. Pretrain names leave DDSM out; "
                "parts that do not apply are left out.", "mias·r50·ddsm·ft10·s0, pretrain·r50·inet·s0"),
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
    SchemaEntry("tag", Tag.CCA_SOURCE_RUN_ID, "CCA: the fine-tune run whose network was compared.", "7d1c09e3..."),
    SchemaEntry("tag", Tag.CCA_RANK_CAP, "CCA: layers whose SVCCA directions were capped by the datapoints.",
                "block4: svcca: ... capped at 199 directions per side (800 samples)"),
    SchemaEntry("tag", Tag.SYNTHETIC_DATA, "'true' when the data root holds tlstudy's look-alike marker.", "true"),
    SchemaEntry("tag", Tag.STATE_DICT_SHA256, "sha256 of weights/state_dict.pt, set on the run and the model version "
                "at registration; reuse refuses a file that differs.", "5d41402abc4b2a76..."),
    SchemaEntry("experiment tag", MlflowTag.EXPERIMENT_KIND, "Set by tlstudy so MLflow 3.x UI versions that read it open the "
                "model-training view.", EXPERIMENT_KIND_TRAINING),
    SchemaEntry("experiment tag", MlflowTag.NOTE, "Description of the experiment (and of each registered model).", ""),
    SchemaEntry("experiment tag", TAG_PROJECT, "Marks experiments and registered models tlstudy created.", "tlstudy"),
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
