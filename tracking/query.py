"""Read the study's runs back as one table, with paged searches only (no per-run calls)."""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from tracking.schema import DEFAULT_EXPERIMENT, Tag
from tracking.store import get_client

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
