"""Read the study's runs back as one table, with paged searches only (no per-run calls)."""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from tracking.schema import DEFAULT_EXPERIMENT, Tag
from tracking.store import display_uri, get_client

_BASE_COLUMNS = ["run_id", "run_name", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
PAGE_SIZE = 1000


def quote(value: str) -> str:
    """Quote a value for an MLflow filter string."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def eq(kind: str, key: str, value: Any) -> str:
    """One ``=`` clause: ``eq("tags", "tlstudy.stage", "finetune")`` -> ``tags.`tlstudy.stage` = 'finetune'``."""
    if kind not in ("params", "tags", "attributes", "metrics"):
        raise ValueError(f"filter kind must be params, tags, attributes or metrics, not {kind!r}")
    if kind == "metrics":
        return f"metrics.`{key}` = {float(value)}"
    return f"{kind}.`{key}` = {quote(value)}"


def and_(clauses: Iterable[str]) -> str:
    """Join clauses with AND (MLflow filters are AND-only)."""
    return " and ".join(c for c in clauses if c)


def runs_to_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """Turn MLflow ``Run`` objects into a ``mlflow.search_runs``-style DataFrame."""
    rows = []
    for run in runs:
        info, data = run.info, run.data
        row: dict[str, Any] = {
            "run_id": info.run_id,
            "run_name": info.run_name,
            "experiment_id": info.experiment_id,
            "status": info.status,
            "artifact_uri": info.artifact_uri,
            "start_time": pd.to_datetime(info.start_time, unit="ms", utc=True) if info.start_time else pd.NaT,
            "end_time": pd.to_datetime(info.end_time, unit="ms", utc=True) if info.end_time else pd.NaT,
        }
        row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
        row.update({f"params.{k}": v for k, v in data.params.items()})
        row.update({f"tags.{k}": v for k, v in data.tags.items()})
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=_BASE_COLUMNS)
    frame = pd.DataFrame(rows)
    ordered = _BASE_COLUMNS + sorted(c for c in frame.columns if c not in _BASE_COLUMNS)
    return frame[ordered]


def search_study_runs(
    experiment: str = DEFAULT_EXPERIMENT,
    filter_string: str = "",
    *,
    stage: str | None = None,
    finished_only: bool = False,
    tracking_uri: str | None = None,
    order_by: list[str] | None = None,
) -> pd.DataFrame:
    """All runs of ``experiment`` matching the filter, as one DataFrame.

    Uses ``MlflowClient.search_runs`` with page tokens (one request per 1000 runs), never
    a request per run. ``stage`` adds ``tags.`tlstudy.stage` = <stage>``;
    ``finished_only`` keeps FINISHED runs. A missing experiment gives an empty frame.
    """
    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return runs_to_frame([])
    clauses = [filter_string.strip()]
    if stage:
        clauses.append(eq("tags", Tag.STAGE, stage))
    if finished_only:
        clauses.append("attributes.status = 'FINISHED'")
    filt = and_(clauses)
    runs: list[Any] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            filter_string=filt,
            max_results=PAGE_SIZE,
            order_by=order_by or ["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs_to_frame(runs)


class NoStudyError(LookupError):
    """The store holds no study run the report could default to (the message lists the experiments)."""


def latest_study_experiment(tracking_uri: str | None = None) -> tuple[str, str]:
    """Name of the experiment to report when none is given, and why it was chosen.

    The experiment whose most recent study parent run (``tlstudy.stage = 'study'``) started
    last wins; failing any study run, the single experiment holding tlstudy runs. Raises
    :class:`NoStudyError` listing the active experiments when neither decides.
    """
    from tracking.schema import STAGE_STUDY

    client = get_client(tracking_uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}

    def latest(clause: str) -> list[tuple[int, str]]:
        """(start time of the newest matching run, experiment id), newest first."""
        newest = []
        for experiment_id in experiments:
            runs = client.search_runs([experiment_id], filter_string=clause, max_results=1,
                                      order_by=["attributes.start_time DESC"])
            if runs:
                newest.append((runs[0].info.start_time or 0, experiment_id))
        return sorted(newest, reverse=True)

    studies = latest(eq("tags", Tag.STAGE, STAGE_STUDY))
    if studies and (len(studies) == 1 or studies[0][0] > studies[1][0]):
        return experiments[studies[0][1]], "most recent study"
    if not studies:
        tagged = latest(f"tags.`{Tag.STAGE}` LIKE '%'")  # any run a tlstudy stage logged
        if len(tagged) == 1:
            return experiments[tagged[0][1]], "the only experiment with tlstudy runs"
    names = ", ".join(sorted(experiments.values())) or "none"
    why = ("several studies started at the same time" if studies
           else "no study run (tag tlstudy.stage = 'study') in any experiment")
    raise NoStudyError(f"cannot choose an experiment to report ({why}); pass --experiment NAME; "
                       f"experiments on {display_uri(client.tracking_uri)}: {names}")
