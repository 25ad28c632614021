"""Shared wiring of the entry points: common options, skip-if-done, and recording a step result."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from tlcore.experiment import StepConfig, StepResult, default_data_root

# Exit status of a child that could not run for a reason that is not a failure
# (e.g. ImageNet weights absent from the hub cache): the study runner records it as NA.
EXIT_NOT_APPLICABLE = 3


def common_options(func: Callable) -> Callable:
    """Options every training entry point takes (MLproject passes floats for numbers)."""
    options = [
        click.option("--model", default="resnet50", show_default=True, help="vgg16 | resnet50 | inception_v3 | patch_cnn"),
        click.option("--seed", type=float, default=0, show_default=True),
        click.option("--image-size", type=float, default=0, show_default=True,
                     help="Square input side in pixels; 0 = the model's own size (224, 299, 1152x896)."),
        click.option("--epochs", type=float, default=10, show_default=True),
        click.option("--lr", type=float, default=1e-4, show_default=True),
        click.option("--batch-size", type=float, default=16, show_default=True),
        click.option("--data-root", default="", help="Folder holding ddsm/ inbreast/ mias/ ultrasound/ "
                     "(default: $TLSTUDY_DATA, else ./data)."),
        click.option("--num-workers", type=int, default=0, show_default=True, help="DataLoader workers."),
        click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda"),
        click.option("--experiment", default="tlstudy", show_default=True, envvar="MLFLOW_EXPERIMENT_NAME",
                     help="MLflow experiment name (env MLFLOW_EXPERIMENT_NAME)."),
        click.option("--parent-run-id", default="", help="Nest this run under a study run."),
        click.option("--log-model/--no-log-model", default=True, show_default=True,
                     help="Log the checkpoint as an MLflow model (plus a tensors-only state dict)."),
        click.option("--progress/--no-progress", default=True, show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def step_kwargs(model: str, seed: float, image_size: float, epochs: float, lr: float, batch_size: float,
                data_root: str, num_workers: int, device: str) -> dict[str, Any]:
    """Typed StepConfig fields from the command-line values."""
    return dict(
        model=model,
        seed=int(seed),
        image_size=int(image_size) or None,
        epochs=int(epochs),
        lr=float(lr),
        batch_size=int(batch_size),
        data_root=data_root or str(default_data_root()),
        num_workers=num_workers,
        device=device,
    )


def friendly_errors(func: Callable) -> Callable:
    """Turn the library's expected errors into one clear line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tlcore.data.records import DatasetError
        from tlcore.models import NotApplicableError, WeightsNotFoundError
        from tracking.logger import TrackingError
        from tracking.registry import RegistryError

        try:
            return func(*args, **kwargs)
        except (WeightsNotFoundError, NotApplicableError) as exc:
            click.echo(f"not applicable: {exc}", err=True)
            sys.exit(EXIT_NOT_APPLICABLE)
        except (DatasetError, RegistryError, TrackingError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def finished_run_for(config: StepConfig, experiment: str, fingerprint: str):
    """A FINISHED run with the same config hash, code version and dataset fingerprint, or None."""
    from tracking.logger import find_finished_run
    from tracking.provenance import code_version
    from tracking.schema import Tag

    run = find_finished_run(experiment, config.config_hash())
    if run is None:
        return None
    tags = run.data.tags
    if tags.get(Tag.DATASET_FINGERPRINT) != fingerprint:
        return None
    if tags.get(Tag.CODE_VERSION) != code_version().as_tags().get(Tag.CODE_VERSION):
        return None
    return run


def announce_finished(run: Any) -> None:
    """Say that the configuration already has a FINISHED run (the study runner reads this line)."""
    click.echo(f"already finished: {run.info.run_id} ({run.info.run_name})")


def data_tags(data_root: str | Path) -> dict[str, str]:
    """Tags every step sets about its data: whether it is tlstudy's look-alike data."""
    from tlcore.data.synth import is_synthetic
    from tracking.schema import Tag

    return {Tag.SYNTHETIC_DATA: "true" if is_synthetic(data_root) else "false"}


def record_result(run: Any, result: StepResult, *, log_model: bool, log_weights: bool = False) -> None:
    """Log everything a pre-training or fine-tuning step produced to an open RunLogger.

    ``log_model`` logs an MLflow model plus a tensors-only state dict; ``log_weights``
    logs only the tensors-only state dict (for a run whose network a later analysis loads).
    """
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    import torch
    from matplotlib import pyplot as plt

    from tracking.schema import Artifact, Metric, Tag

    ev = result.evaluation
    run.set_tags({Tag.SPLIT_HASH: result.split_hash, Tag.DATASET_FINGERPRINT: result.dataset_fingerprint,
                  **data_tags(result.config.data_root)})
    metrics = {
        Metric.TEST_AUC: ev.auc,
        Metric.TEST_AUC_CI_LOW: ev.ci_low,
        Metric.TEST_AUC_CI_HIGH: ev.ci_high,
        "test_n": ev.n,
        "test_n_malignant": ev.n_pos,
        "n_skipped_images": len(result.skipped),
    }
    metrics.update({f"n_parameters_{k}": v for k, v in result.parameter_counts.items()})
    if result.fit is not None:
        metrics["best_epoch"] = result.fit.best_epoch
        if result.fit.best_val_auc is not None:
            metrics["best_val_auc"] = result.fit.best_val_auc
    run.log_metrics(metrics)

    manifest = pd.DataFrame(result.manifest)
    run.log_dataframe(manifest, Artifact.SPLIT_MANIFEST)
    run.log_dataframe(result.predictions, Artifact.PREDICTIONS)
    if result.skipped:
        run.log_dataframe(anonymous_skips(result), "data/skipped.csv")
    for part, rows in manifest.groupby("part"):
        run.log_dataset(rows.reset_index(drop=True), name=f"{result.config.dataset}-{part}",
                        digest=result.dataset_fingerprint,
                        source=str((Path(result.config.data_root) / result.config.dataset).resolve()),
                        context=str(part), targets=None)

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot(result.roc["fpr"], result.roc["tpr"], lw=2, label=f"AUC {ev.auc:.3f} [{ev.ci_low:.3f}, {ev.ci_high:.3f}]")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{result.config.dataset}: test ROC", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    run.log_figure(fig, Artifact.ROC_PLOT)
    plt.close(fig)

    if log_model:
        height, width = result.config.input_size()
        if height * width > 320 * 320 and result.config.model == "patch_cnn":
            # All-convolutional: any size works, and the example is stored as JSON.
            height, width = height // 4, width // 4
        example = torch.rand(1, 3, height, width)
        run.log_model(result.model, example)
    elif log_weights:
        run.log_state_dict(result.model.state_dict())


def anonymous_skips(result: StepResult):
    """Skip entries safe to log: file paths (which hold patient ids in CBIS-DDSM and INbreast
    names) replaced by an anonymous id of the path; the reason kept."""
    import pandas as pd

    from tlcore.data.records import anonymous_id

    root = Path(result.config.data_root) / getattr(result.config, "dataset", "")
    rows = []
    for entry in result.skipped:
        try:
            key = Path(entry.path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            key = entry.path
        rows.append({"file_id": anonymous_id(getattr(result.config, "dataset", "data"), key),
                     "reason": entry.reason})
    return pd.DataFrame(rows, columns=["file_id", "reason"])


def data_root_note(data_root: str | Path) -> str:
    return f"data root: {Path(data_root).resolve()}"
