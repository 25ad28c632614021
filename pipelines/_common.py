"""Shared wiring of the entry points: common options, skip-if-done, and recording a step result."""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from pipelines._options import runtime_option
from tlcore.experiment import StepConfig, StepResult
from tracking.schema import DEFAULT_EXPERIMENT

# Exit status of a child that could not run for a reason that is not a failure
# (e.g. ImageNet weights absent from the hub cache): the study runner records it as NA.
EXIT_NOT_APPLICABLE = 3


def runtime_options(*, log_model: bool) -> Callable:
    """Options of every step command that are not step parameters (where and how to log)."""
    options = [
        runtime_option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True, envvar="MLFLOW_EXPERIMENT_NAME",
                       mlproject=False,
                       help="MLflow experiment name (env MLFLOW_EXPERIMENT_NAME; under `mlflow run`, the "
                            "experiment of --experiment-name / --experiment-id)."),
        runtime_option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", mlproject=False,
                       help="Tracking store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here."),
        runtime_option("--parent-run-id", default="", mlproject=False, help="Nest this run under a study run."),
        runtime_option("--progress/--no-progress", default=True, show_default=True, mlproject=False),
    ]
    if log_model:
        options.append(runtime_option("--log-model/--no-log-model", default=True, show_default=True, mlproject=False,
                                      help="Log the checkpoint as an MLflow model (plus a tensors-only state dict)."))

    def decorate(func: Callable) -> Callable:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


@dataclass
class Session:
    """Where this command logs: the resolved tracking URI and experiment name."""

    tracking_uri: str
    experiment: str


def open_session(tracking_uri: str | None, experiment: str, parent_run_id: str = "") -> Session:
    """Check the server (one line in seconds if down or refusing) and resolve the experiment.

    Under `mlflow run` the experiment is the launcher's (``--experiment-name`` / ``-id``); a
    study's child (``parent_run_id``) logs where the study tells it.
    """
    from tracking.launcher import check_server, resolve_experiment
    from tracking.store import configure_http_defaults, get_client, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # every client of this process, MLflow's fluent API included
    configure_http_defaults()
    check_server(uri)
    if parent_run_id:
        return Session(tracking_uri=uri, experiment=experiment)
    ctx = click.get_current_context(silent=True)
    explicit = bool(ctx) and ctx.get_parameter_source("experiment") == click.core.ParameterSource.COMMANDLINE
    return Session(tracking_uri=uri, experiment=resolve_experiment(get_client(uri), experiment, explicit=explicit))


def check_split(dataset: str, records: list, seed: int, ft_fraction: float | None = None) -> None:
    """The dataset has both classes and enough images per class for the split (before any run is opened)."""
    from tlcore.data.splits import SplitConfig, make_target_split

    try:
        split = make_target_split(records, SplitConfig(seed=seed))
        if ft_fraction:
            split.finetune(ft_fraction)
    except ValueError as exc:
        raise click.ClickException(f"{dataset}: cannot split the dataset: {exc}") from None


def check_model_weights(config: Any, *, ddsm_state: Any = None, imagenet_weights: Any = None) -> None:
    """Build the model once with the given weights, so that weights that do not fit fail before a run opens."""
    from tlcore.models import create_model

    create_model(config.model, init=config.init, transfer=getattr(config, "transfer", "all"),
                 imagenet_weights=imagenet_weights, ddsm_state=ddsm_state)


def friendly_errors(func: Callable) -> Callable:
    """Turn the library's expected errors into one clear line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        from tlcore.data.records import DatasetError
        from tlcore.models import NotApplicableError, StateDictMismatchError, WeightsNotFoundError
        from tracking.launcher import TrackingAuthError, mlflow_auth_error
        from tracking.logger import TrackingError
        from tracking.registry import RegistryError
        from tracking.store import TrackingConfigError, resolve_tracking_uri

        try:
            return func(*args, **kwargs)
        except (WeightsNotFoundError, NotApplicableError) as exc:
            click.echo(f"not applicable: {exc}", err=True)
            sys.exit(EXIT_NOT_APPLICABLE)
        except (DatasetError, RegistryError, TrackingError, TrackingAuthError, TrackingConfigError,
                StateDictMismatchError, ValueError) as exc:
            raise click.ClickException(one_line(exc)) from exc
        except KeyError as exc:  # unknown name in a registry: the message lists the valid ones
            raise click.ClickException(one_line(exc.args[0] if exc.args else exc)) from exc
        except MlflowException as exc:
            auth = mlflow_auth_error(exc, resolve_tracking_uri())
            if auth is None:
                raise
            raise click.ClickException(auth) from exc

    return wrapper


def one_line(exc: Any) -> str:
    """The first line of an error message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    """Say that the configuration already has a FINISHED run (the study runner reads this line).

    Under `mlflow run`, the launcher's run is ended as a pointer to it (tagged, deleted).
    """
    from tracking.launcher import end_launcher_run_as_pointer
    from tracking.store import get_client

    click.echo(f"already finished: {run.info.run_id} ({run.info.run_name})")
    pointer = end_launcher_run_as_pointer(get_client(), run.info.run_id)
    if pointer:
        click.echo(f"the run that mlflow run opened ({pointer}) was deleted, tagged as a duplicate of {run.info.run_id}")


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
