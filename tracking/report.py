"""The study report (``tlstudy report``): the paper's Tables 1-4 and Figure 1 from tracked runs.

Everything in the tables comes from ONE read of the experiment's runs (:func:`load_runs`):
``MlflowClient.search_runs`` with page tokens against an HTTP server (one request per 5000
runs), or, for a database tracking URI, four SELECTs on MLflow's own tables that return the
same content much faster. Never one request per run. Prediction artifacts
(``eval/predictions.csv``) are downloaded only for the ROC figures and the DeLong tests, at
most one download per plotted run, and never to build a table.

Conventions (also written into ``report.md``):

* Only FINISHED runs count. When several FINISHED runs share dataset, model, init,
  ft_fraction, transfer *and* seed, the newest one (latest start time) is used.
* A table cell is the mean ``test_auc`` over seeds. ``<col>_ci_low`` / ``<col>_ci_high``
  are the means of the per-seed bootstrap 95% CI bounds (``test_auc_ci_low/high``), so a
  one-seed cell carries exactly that run's bootstrap CI; they describe test-set sampling
  uncertainty. Seed-to-seed spread is reported separately as ``<col>_sd`` (sample SD,
  NA with one seed) and ``<col>_n_seeds``.
* NA means "not run" or "not applicable": ImageNet without fine-tuning (a 1000-class head
  cannot score the task) and the patch CNN from ImageNet (row omitted, as in the paper).
  The ``notes`` column and the report's "Missing results" section say which, and why.
* DeLong tests compare DDSM vs random initialisation (transfer ``all``) for each dataset,
  model and fine-tuning fraction on ONE seed: the smallest seed both have. The two runs'
  predictions are joined on ``image_id``. ``p_holm`` is the Holm-adjusted p-value over all
  comparisons in the report; "significant" means unadjusted p < 0.05.
* CCA runs (stage ``cca``) carry ``<measure>_<layer>`` metrics (``cca``, ``pwcca``, ``cka``,
  ...) and ``<measure>_baseline_<layer>`` (a random-network baseline) for layers
  conv1, block1..block4; ``cca.csv`` averages them over the FINISHED runs of each dataset.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from tlcore.design import PAPER_DESIGN, fraction_key
from tlcore.metrics import holm  # noqa: F401 - re-exported for report users
from tlcore.similarity import describe_trend
from tracking.tables import (
    ALPHA,
    CCA_BLOCKS,
    NOT_LEARNT,
    PRETRAINING_COLUMNS,
    controls_table,
    delong_tables,
    models_not_learnt,
    pretraining_table,
)
from tracking.schema import (
    CHAMPION_ALIAS,
    DEFAULT_EXPERIMENT,
    STAGE_CCA,
    STAGE_FINETUNE,
    STAGE_REPORT,
    Artifact,
    Metric,
    Param,
    Tag,
    format_fraction,
    run_name,
)

# Views of the study design (tlcore.design): the report asks it, it keeps no lists of its own.
DESIGN = PAPER_DESIGN
TARGET_DATASETS: tuple[str, ...] = DESIGN.target_datasets  # Tables 1, 2, 3
HYBRID_DATASETS: tuple[str, ...] = DESIGN.hybrid_table_order  # Table 4 order
PAPER_MODELS: tuple[str, ...] = DESIGN.models
PAPER_INITS: tuple[str, ...] = DESIGN.inits
FT_COLUMNS: dict[str, str] = {fraction_key(f): ("no_ft" if f == 0 else f"ft_{fraction_key(f)}")
                              for f in DESIGN.ft_fractions}
HYBRID_FRACTIONS: tuple[str, ...] = tuple(fraction_key(f) for f in DESIGN.hybrid_fractions)
HYBRID_MODEL = DESIGN.hybrid_model
CCA_LAYERS: tuple[str, ...] = DESIGN.cca_layers
PRIMARY_CCA_MEASURE = "cca"
PAPER_AUC_FILE = "paper_auc.csv"

_CCA_METRIC = re.compile(r"^metrics\.(?P<measure>[a-z0-9_]+?)(?P<base>_baseline)?_(?P<layer>conv1|block[1-4])$")
_REASON_TAG = re.compile(r"(error|reason|failure)", re.IGNORECASE)
_BASE_COLUMNS = ["run_id", "status", "start_time", "artifact_uri"]
_TABLE_PARAMS = frozenset({Param.DATASET, Param.MODEL, Param.INIT, Param.FT_FRACTION, Param.TRANSFER, Param.SEED})
_TABLE_METRICS = frozenset({Metric.TEST_AUC, Metric.TEST_AUC_CI_LOW, Metric.TEST_AUC_CI_HIGH})
_REPORT_TAGS = frozenset({Tag.DDSM_MODEL_NAME, Tag.DDSM_MODEL_VERSION, Tag.DDSM_SOURCE_RUN_ID, Tag.DDSM_MODEL_URI,
                        Tag.SYNTHETIC_DATA, Tag.CCA_RANK_CAP, Tag.CCA_SOURCE_RUN_ID})  # tags the report reads
_KEY = ["dataset", "model", "init", "transfer", "ft_fraction"]
_FT_LABELS = {"0.0": "No FT", "0.1": "FT 0.1", "0.2": "FT 0.2"}
_IMAGENET_HINT = (
    "ImageNet runs need torchvision's weight files in $TORCH_HOME/hub/checkpoints; the study plans them only "
    "when they are there (`tlstudy weights fetch --model <model>` downloads them)"
)


class ReportError(RuntimeError):
    """The report cannot be built (unknown experiment, unreadable paper values...)."""


# ------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class MissingCell:
    """A result the paper has that the tracking server does not (or that cannot exist)."""

    table: str
    dataset: str
    model: str
    init: str
    transfer: str
    ft_fraction: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class ReportResult:
    """What :func:`build_report` wrote and computed.

    ``tables`` maps ``inbreast``/``mias``/``ultrasound``/``hybrid``/``cca``/``delong``/
    ``paper_comparison``/``missing`` to DataFrames (the CSVs' content); ``files`` maps a
    short name to each written file; ``digest`` identifies the tables' content.
    """

    experiment: str
    tracking_uri: str
    out_dir: Path
    files: dict[str, Path]
    tables: dict[str, pd.DataFrame]
    missing: list[MissingCell]
    notes: list[str]
    findings: list[str]
    n_runs: int
    n_finetune_runs: int
    n_cca_runs: int
    n_downloads: int
    digest: str
    timings: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None


# ------------------------------------------------------------------------------ loading
SEARCH_PAGE_SIZE = 5000  # runs per search request (MLflow allows up to 50,000)
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def load_runs(
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    *,
    method: str = "auto",
    page_size: int = SEARCH_PAGE_SIZE,
) -> pd.DataFrame:
    """Every active run of ``experiment`` (any status) as one frame, without per-run requests.

    ``method="api"``: ``MlflowClient.search_runs`` with page tokens (one request per
    ``page_size`` runs). ``method="sql"`` (database URIs only): four SELECTs on MLflow's
    own tables (runs, params, tags, latest_metrics) restricted to the keys the report
    reads; same content, about an order of magnitude faster on large stores because it
    skips building an ORM object per param. ``"auto"`` uses ``sql`` for database URIs and
    ``api`` otherwise (HTTP servers). The frame has ``mlflow.search_runs``-style columns
    (``run_id``, ``status``, ``start_time``, ``artifact_uri``, ``params.*``, ``tags.*``,
    ``metrics.*``) for the report's keys only. Raises :class:`ReportError` when the
    experiment does not exist.
    """
    from tracking.store import get_client, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if method not in ("auto", "api", "sql"):
        raise ValueError(f"method must be 'auto', 'api' or 'sql', not {method!r}")
    is_db = uri.split(":", 1)[0].split("+", 1)[0] in _DB_SCHEMES
    if method == "sql" and not is_db:
        raise ValueError(f"method='sql' needs a database tracking URI, not {_safe_uri(uri)}")
    if method == "sql" or (method == "auto" and is_db):
        frame = _load_runs_sql(uri, experiment)
    else:
        client = get_client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise ReportError(f"experiment {experiment!r} does not exist on {_safe_uri(uri)}")
        frame = _load_runs_api(client, exp.experiment_id, page_size)
    frame["start_time"] = pd.to_datetime(frame["start_time"], unit="ms", utc=True)
    return frame


def _wanted_param(key: str) -> bool:
    return key in _TABLE_PARAMS


def _wanted_tag(key: str) -> bool:
    return key == Tag.STAGE or key in _REPORT_TAGS or bool(_REASON_TAG.search(key))


def _wanted_metric(key: str) -> bool:
    return key in _TABLE_METRICS or bool(_CCA_METRIC.match(f"metrics.{key}"))


def _load_runs_api(client: Any, experiment_id: str, page_size: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = client.search_runs([experiment_id], filter_string="", max_results=page_size, page_token=token)
        for run in page:
            info, data = run.info, run.data
            row: dict[str, Any] = {"run_id": info.run_id, "status": info.status, "start_time": info.start_time,
                                   "artifact_uri": info.artifact_uri}
            row.update({f"params.{k}": v for k, v in data.params.items() if _wanted_param(k)})
            row.update({f"tags.{k}": v for k, v in data.tags.items() if _wanted_tag(k)})
            row.update({f"metrics.{k}": v for k, v in data.metrics.items() if _wanted_metric(k)})
            rows.append(row)
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows, columns=None if rows else _BASE_COLUMNS)


def _load_runs_sql(uri: str, experiment: str) -> pd.DataFrame:
    """The experiment's active runs read straight from MLflow's tables (same content as the API).

    Read-only: nothing is created or migrated (a missing SQLite file is an error).
    """
    from mlflow.store.tracking.dbmodels.models import (
        SqlExperiment,
        SqlLatestMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from sqlalchemy import create_engine, func, or_, select
    from sqlalchemy.exc import SQLAlchemyError

    from tracking.store import is_sqlite_uri, sqlite_path

    if is_sqlite_uri(uri) and not sqlite_path(uri).is_file():
        raise ReportError(f"tracking database {sqlite_path(uri)} does not exist")
    exp_t = SqlExperiment.__table__
    runs_t, params_t, tags_t, metrics_t = (m.__table__ for m in (SqlRun, SqlParam, SqlTag, SqlLatestMetric))
    engine = create_engine(uri)
    try:
        with engine.connect() as conn:
            try:
                found = conn.execute(select(exp_t.c.experiment_id).where(
                    (exp_t.c.name == experiment) & (exp_t.c.lifecycle_stage == "active"))).all()
            except SQLAlchemyError as exc:
                raise ReportError(f"{_safe_uri(uri)} is not a readable MLflow tracking database "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
            if not found:
                raise ReportError(f"experiment {experiment!r} does not exist on {_safe_uri(uri)}")
            experiment_id = found[0][0]
            in_experiment = (runs_t.c.experiment_id == experiment_id) & (runs_t.c.lifecycle_stage == "active")
            runs = [tuple(row) for row in conn.execute(select(runs_t.c.run_uuid, runs_t.c.status,
                                                              runs_t.c.start_time, runs_t.c.artifact_uri)
                                                       .where(in_experiment))]

            def pairs(table: Any, value_cols: Sequence[Any], where: Any) -> list[Any]:
                query = (select(table.c.run_uuid, table.c.key, *value_cols)
                         .join(runs_t, runs_t.c.run_uuid == table.c.run_uuid).where(in_experiment & where))
                return [tuple(row) for row in conn.execute(query)]  # plain tuples: fast DataFrame build

            params = pairs(params_t, [params_t.c.value], params_t.c.key.in_(sorted(_TABLE_PARAMS)))
            lowered = func.lower(tags_t.c.key)
            tag_where = or_(tags_t.c.key == Tag.STAGE, tags_t.c.key.in_(sorted(_REPORT_TAGS)),
                            lowered.like("%error%"), lowered.like("%reason%"), lowered.like("%failure%"))
            tags = pairs(tags_t, [tags_t.c.value], tag_where)
            metric_where = or_(metrics_t.c.key.in_(sorted(_TABLE_METRICS)), metrics_t.c.key.like("%conv1"),
                               metrics_t.c.key.like("%block%"))
            metrics = pairs(metrics_t, [metrics_t.c.value, metrics_t.c.is_nan], metric_where)
    finally:
        engine.dispose()
    frame = pd.DataFrame(runs, columns=_BASE_COLUMNS)
    wide: list[pd.DataFrame] = []
    for prefix, rows, keep in (("params", params, _wanted_param), ("tags", tags, _wanted_tag)):
        long = pd.DataFrame(rows, columns=["run_id", "key", "value"])
        long = long[long["key"].map(keep)] if len(long) else long
        if len(long):
            wide.append(long.pivot(index="run_id", columns="key", values="value").add_prefix(f"{prefix}."))
    long = pd.DataFrame(metrics, columns=["run_id", "key", "value", "is_nan"])
    if len(long):
        long = long[long["key"].map(_wanted_metric)]
        long["value"] = long["value"].astype(float).where(~long["is_nan"].astype(bool), np.nan)
        if len(long):
            wide.append(long.pivot(index="run_id", columns="key", values="value").add_prefix("metrics."))
    for part in wide:
        part.columns.name = None
        frame = frame.join(part, on="run_id")
    return frame


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([np.nan] * len(frame), index=frame.index, dtype=object)


def _fraction(value: Any) -> str | None:
    try:
        return format_fraction(value)
    except (TypeError, ValueError):
        return None


def finetune_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Fine-tune runs of a search frame as tidy columns (any status).

    Columns: run_id, status, start_time, artifact_uri, dataset, model, init, transfer
    (``all`` when not logged), ft_fraction (canonical string), seed, test_auc, ci_low,
    ci_high, plus every ``tags.*`` column that looks like an error or reason.
    """
    stage = _col(frame, f"tags.{Tag.STAGE}")
    sub = frame[stage == STAGE_FINETUNE]
    out = pd.DataFrame(
        {
            "run_id": _col(sub, "run_id"),
            "status": _col(sub, "status"),
            "start_time": _col(sub, "start_time"),
            "artifact_uri": _col(sub, "artifact_uri"),
            "dataset": _col(sub, f"params.{Param.DATASET}"),
            "model": _col(sub, f"params.{Param.MODEL}"),
            "init": _col(sub, f"params.{Param.INIT}"),
            "transfer": _col(sub, f"params.{Param.TRANSFER}").fillna("all"),
            "ft_fraction": _col(sub, f"params.{Param.FT_FRACTION}").map(_fraction),
            "seed": _col(sub, f"params.{Param.SEED}").fillna("?").astype(str),
            "test_auc": pd.to_numeric(_col(sub, f"metrics.{Metric.TEST_AUC}"), errors="coerce"),
            "ci_low": pd.to_numeric(_col(sub, f"metrics.{Metric.TEST_AUC_CI_LOW}"), errors="coerce"),
            "ci_high": pd.to_numeric(_col(sub, f"metrics.{Metric.TEST_AUC_CI_HIGH}"), errors="coerce"),
        },
        index=sub.index,
    )
    for col in sub.columns:
        if col.startswith("tags.") and _REASON_TAG.search(col):
            out[col] = sub[col]
    return out.reset_index(drop=True)


DDSM_CHECKPOINT_COLUMNS = ["model", "requested", "registered_model", "version", "source_run_id",
                           "source_test_auc", "finished_runs", "stages", "champion_now"]


def ddsm_checkpoints(frame: pd.DataFrame, champions: dict[str, str] | None = None) -> pd.DataFrame:
    """Which DDSM checkpoint the DDSM-initialised runs started from, traced through their tags.

    One row per (model, requested reference, registered model, version, source run) over the
    FINISHED fine-tune and CCA runs: how many runs used it and in which stages, the test AUC
    of the pre-training run that produced it (when that run is in this experiment), and
    ``champion_now``, the version the ``champion`` alias points to now (``champions`` maps
    registered model -> version; looked up by the caller, NA when unknown).
    """
    stage = _col(frame, f"tags.{Tag.STAGE}")
    used = frame[(frame["status"] == "FINISHED") & stage.isin([STAGE_FINETUNE, STAGE_CCA])
                 & _col(frame, f"tags.{Tag.DDSM_SOURCE_RUN_ID}").notna()]
    if used.empty:
        return pd.DataFrame(columns=DDSM_CHECKPOINT_COLUMNS)
    source_auc = pd.to_numeric(_col(frame, f"metrics.{Metric.TEST_AUC}"), errors="coerce")
    auc_by_run = dict(zip(frame["run_id"], source_auc))
    tidy = pd.DataFrame({
        "model": _col(used, f"params.{Param.MODEL}").fillna("?"),
        "requested": _col(used, f"tags.{Tag.DDSM_MODEL_URI}").fillna("(not recorded)"),
        "registered_model": _col(used, f"tags.{Tag.DDSM_MODEL_NAME}").fillna(""),
        "version": _col(used, f"tags.{Tag.DDSM_MODEL_VERSION}").fillna(""),
        "source_run_id": _col(used, f"tags.{Tag.DDSM_SOURCE_RUN_ID}"),
        "stage": stage[used.index],
    })
    keys = ["model", "requested", "registered_model", "version", "source_run_id"]
    rows = []
    for key, group in tidy.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key))
        row["source_test_auc"] = auc_by_run.get(row["source_run_id"], np.nan)
        row["finished_runs"] = len(group)
        row["stages"] = ", ".join(f"{s} {n}" for s, n in sorted(group["stage"].value_counts().items()))
        row["champion_now"] = (champions or {}).get(row["registered_model"], "NA")
        rows.append(row)
    return pd.DataFrame(rows, columns=DDSM_CHECKPOINT_COLUMNS)


def champion_versions(tracking_uri: str, names: Iterable[str]) -> dict[str, str]:
    """Version each registered model's ``champion`` alias points to now (one request per model)."""
    from mlflow.exceptions import MlflowException

    from tracking.store import get_client

    client = get_client(tracking_uri)
    out: dict[str, str] = {}
    for name in sorted({n for n in names if n}):
        try:
            out[name] = str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)
        except MlflowException:
            out[name] = "none"
    return out


def finished_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """FINISHED runs with a test AUC, newest run per (cell, seed)."""
    ok = runs[(runs["status"] == "FINISHED") & runs["test_auc"].notna() & runs["ft_fraction"].notna()]
    ok = ok.dropna(subset=["dataset", "model", "init"])
    ok = ok.sort_values("start_time", kind="stable", na_position="first")
    return ok.drop_duplicates(subset=_KEY + ["seed"], keep="last").reset_index(drop=True)


def aggregate_cells(finished: pd.DataFrame) -> dict[tuple[str, ...], dict[str, Any]]:
    """Per cell (dataset, model, init, transfer, ft_fraction): mean, CI, SD, n_seeds, seeds."""
    if finished.empty:
        return {}
    grouped = finished.groupby(_KEY, sort=False)
    agg = grouped.agg(
        mean=("test_auc", "mean"),
        sd=("test_auc", "std"),
        n=("test_auc", "size"),
        ci_low=("ci_low", "mean"),
        ci_high=("ci_high", "mean"),
    )
    seeds = grouped["seed"].agg(lambda s: ",".join(sorted(s, key=_seed_key)))
    cells: dict[tuple[str, ...], dict[str, Any]] = {}
    for key, row in agg.iterrows():
        cells[tuple(key)] = {
            "mean": float(row["mean"]),
            "sd": float(row["sd"]) if pd.notna(row["sd"]) else math.nan,
            "n": int(row["n"]),
            "ci_low": float(row["ci_low"]) if pd.notna(row["ci_low"]) else math.nan,
            "ci_high": float(row["ci_high"]) if pd.notna(row["ci_high"]) else math.nan,
            "seeds": seeds.loc[key],
        }
    return cells


def _seed_key(seed: str) -> tuple[int, float, str]:
    try:
        return (0, float(seed), seed)
    except ValueError:
        return (1, 0.0, seed)


# ------------------------------------------------------------------------------ tables
def not_applicable(model: str, init: str, ft_fraction: str, transfer: str = "all") -> str | None:
    """Why a cell cannot exist, or None (the study design's rule)."""
    return DESIGN.not_applicable(model, init, ft_fraction, transfer)


def table_rows(cells: dict[tuple[str, ...], dict[str, Any]], dataset: str) -> list[tuple[str, str]]:
    """(model, init) rows of a dataset table: the paper's rows in its order, then extras."""
    rows = DESIGN.table_rows()
    extras = sorted(
        {(k[1], k[2]) for k in cells if k[0] == dataset and k[3] == "all" and k[4] in FT_COLUMNS
         and k[1] in PAPER_MODELS and not DESIGN.row_not_applicable(k[1], k[2])}
        - set(rows)
    )
    return rows + extras


def performance_table(cells: dict[tuple[str, ...], dict[str, Any]], dataset: str,
                      not_learnt: Iterable[str] = ()) -> pd.DataFrame:
    """Table 1/2/3 for ``dataset``: ``model, init, no_ft, ft_0.1, ft_0.2`` (mean test AUC over
    seeds, transfer=all), then ``<col>_ci_low``, ``<col>_ci_high``, ``<col>_sd``,
    ``<col>_n_seeds`` and ``notes``. DDSM rows of the ``not_learnt`` models say that they
    are not interpretable."""
    not_learnt = set(not_learnt)
    records = []
    for model, init in table_rows(cells, dataset):
        rec: dict[str, Any] = {"model": model, "init": init}
        notes = []
        for frac, col in FT_COLUMNS.items():
            na = not_applicable(model, init, frac)
            cell = None if na else cells.get((dataset, model, init, "all", frac))
            rec[col] = cell["mean"] if cell else math.nan
            rec[f"{col}_ci_low"] = cell["ci_low"] if cell else math.nan
            rec[f"{col}_ci_high"] = cell["ci_high"] if cell else math.nan
            rec[f"{col}_sd"] = cell["sd"] if cell else math.nan
            rec[f"{col}_n_seeds"] = cell["n"] if cell else 0
            if na:
                notes.append(f"{col}: not applicable")
            elif not cell:
                notes.append(f"{col}: not run")
        if init == "ddsm" and model in not_learnt:
            notes.append(f"{model} {NOT_LEARNT}")
        rec["notes"] = "; ".join(notes)
        records.append(rec)
    cols = ["model", "init", *FT_COLUMNS.values()]
    for suffix in ("ci_low", "ci_high", "sd", "n_seeds"):
        cols += [f"{c}_{suffix}" for c in FT_COLUMNS.values()]
    return pd.DataFrame(records, columns=cols + ["notes"])


def hybrid_table(cells: dict[tuple[str, ...], dict[str, Any]]) -> pd.DataFrame:
    """Table 4: ``dataset, init, ft_fraction, all, hybrid`` for ResNet-50 (+ CI and n_seeds)."""
    records = []
    for dataset in HYBRID_DATASETS:
        for init in (i for i in PAPER_INITS if not DESIGN.row_not_applicable(HYBRID_MODEL, i)):
            for frac in HYBRID_FRACTIONS:
                rec: dict[str, Any] = {"dataset": dataset, "init": init, "ft_fraction": frac}
                for transfer in ("all", "hybrid"):
                    cell = cells.get((dataset, HYBRID_MODEL, init, transfer, frac))
                    rec[transfer] = cell["mean"] if cell else math.nan
                    rec[f"{transfer}_ci_low"] = cell["ci_low"] if cell else math.nan
                    rec[f"{transfer}_ci_high"] = cell["ci_high"] if cell else math.nan
                    rec[f"{transfer}_n_seeds"] = cell["n"] if cell else 0
                records.append(rec)
    cols = ["dataset", "init", "ft_fraction", "all", "hybrid", "all_ci_low", "all_ci_high",
            "hybrid_ci_low", "hybrid_ci_high", "all_n_seeds", "hybrid_n_seeds"]
    return pd.DataFrame(records, columns=cols)


def cca_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``dataset, layer, similarity, baseline`` (+ other measures) from FINISHED cca runs.

    ``similarity``/``baseline`` are ``cca_<layer>``/``cca_baseline_<layer>`` averaged over
    the dataset's runs; other measures (``pwcca``, ``cka``...) get their own columns
    (``<measure>``, ``<measure>_baseline``). Returns the table and the number of runs used.
    """
    stage = _col(frame, f"tags.{Tag.STAGE}")
    runs = frame[(stage == STAGE_CCA) & (_col(frame, "status") == "FINISHED")]
    datasets = _col(runs, f"params.{Param.DATASET}")
    parsed = [(c, _CCA_METRIC.match(c)) for c in runs.columns]
    metric_cols = [(c, m.group("measure"), bool(m.group("base")), m.group("layer")) for c, m in parsed if m]
    measures = list(dict.fromkeys(m for _, m, _, _ in metric_cols))
    primary = PRIMARY_CCA_MEASURE if PRIMARY_CCA_MEASURE in measures else (measures[0] if measures else None)
    others = [m for m in measures if m != primary]
    present = [d for d in dict.fromkeys(datasets.dropna()) if isinstance(d, str)]
    order = [d for d in TARGET_DATASETS if d in present] + sorted(d for d in present if d not in TARGET_DATASETS)
    records = []
    for dataset in order:
        sub = runs[datasets == dataset]
        for layer in CCA_LAYERS:
            rec: dict[str, Any] = {"dataset": dataset, "layer": layer}

            def mean_of(measure: str | None, base: bool, sub: pd.DataFrame = sub, layer: str = layer) -> float:
                if measure is None:
                    return math.nan
                name = f"metrics.{measure}{'_baseline' if base else ''}_{layer}"
                if name not in sub.columns:
                    return math.nan
                vals = pd.to_numeric(sub[name], errors="coerce").dropna()
                return float(vals.mean()) if len(vals) else math.nan

            rec["similarity"] = mean_of(primary, False)
            rec["baseline"] = mean_of(primary, True)
            for measure in others:
                rec[measure] = mean_of(measure, False)
                rec[f"{measure}_baseline"] = mean_of(measure, True)
            rec["n_runs"] = len(sub)
            capped = [n for n in (_rank_caps(v).get(layer) for v in _col(sub, f"tags.{Tag.CCA_RANK_CAP}")) if n]
            rec["rank_cap"] = (f"{len(capped)} of {len(sub)} run(s): {capped[0]}" if capped else "")
            records.append(rec)
    cols = ["dataset", "layer", "similarity", "baseline"]
    for measure in others:
        cols += [measure, f"{measure}_baseline"]
    table = pd.DataFrame(records, columns=cols + ["n_runs", "rank_cap"])
    # Drop measure columns that no dataset filled (e.g. a measure only logged as a baseline).
    empty = [c for c in cols[4:] if table[c].isna().all()]  # rank_cap and n_runs always stay
    table = table.drop(columns=empty)
    table.attrs["measure"] = primary or PRIMARY_CCA_MEASURE
    return table, len(runs)


def _rank_caps(tag: Any) -> dict[str, str]:
    """``{layer: note}`` from a CCA run's ``tlstudy.cca_rank_cap`` tag (``"block4: <note> | ..."``)."""
    if not isinstance(tag, str) or not tag:
        return {}
    out = {}
    for part in tag.split(" | "):
        layer, _, note = part.partition(": ")
        if note:
            out[layer.strip()] = note.strip()
    return out


def load_paper_auc() -> pd.DataFrame:
    """The paper's AUCs (Tables 1-4) shipped as ``tracking/paper_auc.csv``."""
    try:
        text = resources.files("tracking").joinpath(PAPER_AUC_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise ReportError(f"cannot read the paper's values tracking/{PAPER_AUC_FILE}: {exc}") from exc
    paper = pd.read_csv(io.StringIO(text), dtype={"ft_fraction": str})
    expected = {"dataset", "model", "init", "transfer", "ft_fraction", "auc"}
    if not expected <= set(paper.columns):
        raise ReportError(f"tracking/{PAPER_AUC_FILE}: expected columns {sorted(expected)}, got {list(paper.columns)}")
    paper["ft_fraction"] = paper["ft_fraction"].map(format_fraction)
    return paper


def paper_comparison(cells: dict[tuple[str, ...], dict[str, Any]], paper: pd.DataFrame) -> pd.DataFrame:
    """Our mean AUC next to the paper's for every cell the paper reports."""
    records = []
    for row in paper.itertuples(index=False):
        cell = cells.get((row.dataset, row.model, row.init, row.transfer, row.ft_fraction))
        ours = cell["mean"] if cell else math.nan
        records.append({
            "dataset": row.dataset, "model": row.model, "init": row.init, "transfer": row.transfer,
            "ft_fraction": row.ft_fraction, "ours": ours, "n_seeds": cell["n"] if cell else 0,
            "paper": float(row.auc), "diff": ours - float(row.auc),
        })
    return pd.DataFrame(records, columns=["dataset", "model", "init", "transfer", "ft_fraction",
                                          "ours", "n_seeds", "paper", "diff"])


def missing_cells(
    runs: pd.DataFrame, cells: dict[tuple[str, ...], dict[str, Any]], cca: pd.DataFrame
) -> list[MissingCell]:
    """Every expected result that is absent, with the reason the tracked runs give."""
    out: list[MissingCell] = []
    expected: list[tuple[str, str, str, str, str, str]] = []
    for dataset in TARGET_DATASETS:
        for model, init in table_rows(cells, dataset):
            for frac in FT_COLUMNS:
                expected.append((f"table_{dataset}", dataset, model, init, "all", frac))
    for dataset in HYBRID_DATASETS:
        for cell in DESIGN.hybrid_cells(dataset):
            expected.append(("table_hybrid", *cell.key))
    key_frame = runs.set_index(_KEY).sort_index() if not runs.empty else None
    for table, dataset, model, init, transfer, frac in expected:
        na = not_applicable(model, init, frac, transfer)
        if na:
            out.append(MissingCell(table, dataset, model, init, transfer, frac, na))
            continue
        if (dataset, model, init, transfer, frac) in cells:
            continue
        out.append(MissingCell(table, dataset, model, init, transfer, frac,
                               _why_missing(key_frame, (dataset, model, init, transfer, frac))))
    for dataset in TARGET_DATASETS:  # rows the paper (and our tables) leave out
        for model in PAPER_MODELS:
            for init in PAPER_INITS:
                reason = DESIGN.row_not_applicable(model, init)
                if reason:
                    out.append(MissingCell(f"table_{dataset}", dataset, model, init, "all", "-", reason))
    present = set(cca["dataset"]) if len(cca) else set()
    for dataset in TARGET_DATASETS:
        if dataset not in present:
            out.append(MissingCell("cca", dataset, HYBRID_MODEL, "ddsm", "-", "0.2",
                                   "not run: no FINISHED cca run for this dataset"))
    return out


def _why_missing(key_frame: pd.DataFrame | None, key: tuple[str, ...]) -> str:
    init = key[2]
    parts = ["not run: no FINISHED run with a test_auc"]
    if key_frame is not None:
        try:
            found = key_frame.loc[[key]]
        except KeyError:
            found = None
        if found is not None and len(found):
            counts = found["status"].value_counts()
            parts.append("tracked: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
            if ((found["status"] == "FINISHED") & found["test_auc"].isna()).any():
                parts.append("a FINISHED run lacks the test_auc metric")
            for col in (c for c in found.columns if c.startswith("tags.")):
                vals = [str(v) for v in found[col].dropna().unique()][:2]
                if vals:
                    parts.append(f"{col[5:]}: " + " | ".join(v[:160] for v in vals))
    if init == "imagenet":
        parts.append(_IMAGENET_HINT)
    return "; ".join(parts)


# ------------------------------------------------------------------------------ DeLong / ROC
@dataclass(frozen=True)
class _Pick:
    dataset: str
    model: str
    ft_fraction: str
    seed: str
    runs: dict[str, tuple[str, str]]  # init -> (run_id, artifact_uri)


def plan_prediction_runs(finished: pd.DataFrame) -> list[_Pick]:
    """One seed per (dataset, model, fraction) with transfer=all: the smallest seed that has
    both a DDSM and a random run (else the smallest seed of any init), and that seed's run
    for each init."""
    picks: list[_Pick] = []
    applicable = [not_applicable(m, i, f) is None for m, i, f in
                  zip(finished["model"], finished["init"], finished["ft_fraction"])]
    allruns = finished[(finished["transfer"] == "all") & np.array(applicable, dtype=bool)]
    if allruns.empty:
        return picks
    for (dataset, model, frac), grp in allruns.groupby(["dataset", "model", "ft_fraction"], sort=False):
        by_init = {init: dict(zip(g["seed"], zip(g["run_id"], g["artifact_uri"]))) for init, g in grp.groupby("init")}
        common = set(by_init.get("ddsm", {})) & set(by_init.get("random", {}))
        pool = common or set().union(*[set(v) for v in by_init.values()])
        seed = min(pool, key=_seed_key)
        chosen = {init: runs[seed] for init, runs in by_init.items() if seed in runs}
        # An init without that seed still gets its smallest seed for the ROC figure.
        for init, runs in by_init.items():
            if init not in chosen:
                chosen[init] = runs[min(runs, key=_seed_key)]
        picks.append(_Pick(str(dataset), str(model), str(frac), seed, chosen))
    return picks


def read_predictions(path: str | Path, where: str) -> pd.DataFrame:
    """Read and check an ``eval/predictions.csv`` (columns image_id, label, score)."""
    try:
        table = pd.read_csv(path, dtype={"image_id": str})
    except Exception as exc:  # pandas raises several types for bad files
        raise ReportError(f"{where}: cannot read predictions CSV ({exc})") from exc
    missing = {"image_id", "label", "score"} - set(table.columns)
    if missing:
        raise ReportError(f"{where}: predictions CSV lacks columns {sorted(missing)} (has {list(table.columns)})")
    if table["image_id"].duplicated().any():
        raise ReportError(f"{where}: predictions CSV repeats image_id values")
    return table[["image_id", "label", "score"]]


def _downloader(tracking_uri: str, tmp: Path) -> Callable[[str, str], pd.DataFrame]:
    def fetch(run_id: str, artifact_uri: str) -> pd.DataFrame:
        import mlflow.artifacts

        dst = tmp / run_id
        dst.mkdir(parents=True, exist_ok=True)
        uri = f"{str(artifact_uri).rstrip('/')}/{Artifact.PREDICTIONS}"
        try:
            with _no_progress_bar():
                local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                            tracking_uri=tracking_uri)
        except Exception as exc:  # MLflow raises several types for a missing or unreachable artifact
            raise ReportError(f"run {run_id} has no downloadable {Artifact.PREDICTIONS} "
                              f"({type(exc).__name__})") from exc
        return read_predictions(local, f"run {run_id} {Artifact.PREDICTIONS}")

    return fetch




@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """Silence MLflow's per-download progress bar (restores the previous setting)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


# ------------------------------------------------------------------------------ findings
def _fmt(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, (float, np.floating)) and math.isnan(x)):
        return "NA"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _gap_text(diff: float) -> str:
    return f"DDSM over random initialisation by {diff:+.3f}" if diff >= 0 else \
        f"random over DDSM initialisation by {-diff:+.3f}"


def _p(p: float) -> str:
    return "NA" if p is None or math.isnan(p) else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


def cca_trend(cca: pd.DataFrame, dataset: str) -> str:
    """The honest shape of a dataset's per-layer similarity curve (see :func:`describe_trend`)."""
    sims = cca[cca["dataset"] == dataset].set_index("layer")["similarity"].reindex(CCA_LAYERS).dropna()
    if len(sims) < 2:
        return "too few layers"
    return describe_trend(sims.to_numpy(dtype=float), list(sims.index))


def write_findings(tables: dict[str, pd.DataFrame], cca: pd.DataFrame) -> list[str]:
    """Findings computed from the tables: only effects that survive Holm's adjustment, each with its p-values.

    A model whose pre-training did not learn is named first; its comparisons are marked
    as not interpretable. The CCA curves are described by their measured shape.
    """
    out: list[str] = []
    pre = tables.get("pretraining", pd.DataFrame(columns=PRETRAINING_COLUMNS))
    not_learnt = models_not_learnt(pre)
    for row in pre[pre["model"].isin(not_learnt)].itertuples(index=False):
        out.append(f"{row.model} {NOT_LEARNT}; DDSM test AUC {_fmt(row.test_auc)} "
                   f"[{_fmt(row.ci_low)}, {_fmt(row.ci_high)}].")
    pooled, combined = tables["delong_pooled"], tables["delong"]
    for row in pooled[pooled["significant"].fillna(False).astype(bool)].itertuples(index=False):
        out.append(f"{row.dataset} {_FT_LABELS.get(row.ft_fraction, row.ft_fraction)}: {_gap_text(row.diff)} "
                   f"on average over {row.n_models} model(s) [{_fmt(row.ci_low, True)}, {_fmt(row.ci_high, True)}] "
                   f"(seeds {row.seeds}; DeLong contrast p={_p(row.p_value)}, Holm p={_p(row.p_holm)}).")
    for row in combined[combined["significant"].fillna(False).astype(bool)].itertuples(index=False):
        caveat = " -- not interpretable: the model did not learn the DDSM task" if row.model in not_learnt else ""
        out.append(f"{row.dataset} {row.model} {_FT_LABELS.get(row.ft_fraction, row.ft_fraction)}: "
                   f"{_gap_text(row.diff)} [{_fmt(row.ci_low, True)}, {_fmt(row.ci_high, True)}] "
                   f"({row.n_seeds} seed(s), DeLong p={_p(row.p_value)}, Holm p={_p(row.p_holm)}){caveat}.")
    n_c, n_p = int(combined["p_value"].notna().sum()), int(pooled["p_value"].notna().sum())
    s_c = int(combined["significant"].fillna(False).astype(bool).sum())
    s_p = int(pooled["significant"].fillna(False).astype(bool).sum())
    out.append(f"{s_c} of {n_c} per-model and {s_p} of {n_p} pooled DDSM-vs-random comparisons survive Holm's "
               f"adjustment at {ALPHA}; no other difference between initialisations is claimed.")
    for dataset in dict.fromkeys(cca["dataset"]) if len(cca) else ():
        grp = cca[cca["dataset"] == dataset]
        blocks = grp[grp["layer"].isin(CCA_BLOCKS)]
        capped = [r.layer for r in grp.itertuples(index=False) if getattr(r, "rank_cap", "")]
        out.append(
            f"CCA {dataset}: per-layer similarity is {cca_trend(cca, dataset)}; mean over "
            f"{', '.join(CCA_BLOCKS)} {_fmt(float(blocks['similarity'].mean()))} against a random-network baseline "
            f"of {_fmt(float(blocks['baseline'].mean()))}"
            + (f"; SVCCA rank capped by the datapoints at {', '.join(capped)}" if capped else "") + ".")
    return out


# ------------------------------------------------------------------------------ document
@dataclass(frozen=True)
class _Block:
    kind: str  # h1 | h2 | banner | p | ul | table | img
    text: str = ""
    items: tuple[str, ...] = ()
    frame: pd.DataFrame | None = None
    path: Path | None = None


def _cell_text(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "NA"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.3f}"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    return str(v)


def _md_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(" ".join(_cell_text(v).split()).replace("|", "\\|") for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell_text(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}img{max-width:100%;margin:.5em 0}
p.small,li{font-size:.92em}
div.banner{border:2px solid #b8860b;background:#fff8dc;padding:.7em 1em;margin:1em 0;font-weight:600}
"""


def render_markdown(blocks: Iterable[_Block]) -> str:
    """The report as Markdown (images referenced by file name)."""
    out = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "banner":
            out.append(f"> **{b.text}**")
        elif b.kind == "ul":
            out.append("\n".join(f"- {i}" for i in b.items) if b.items else "- (none)")
        elif b.kind == "table" and b.frame is not None:
            out.append(_md_table(b.frame) if len(b.frame) else "(no rows)")
        elif b.kind == "img" and b.path is not None:
            out.append(f"![{b.text}]({b.path.name})")
    return "\n\n".join(out) + "\n"


def render_html(blocks: Iterable[_Block], title: str) -> str:
    """The report as one self-contained HTML page (inline CSS, images as base64 data URIs)."""
    head = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>")
    parts = [head]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            parts.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "banner":
            parts.append(f"<div class=\"banner\" role=\"note\">{html.escape(b.text)}</div>")
        elif b.kind == "ul":
            items = b.items or ("(none)",)
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        elif b.kind == "table" and b.frame is not None:
            parts.append(_html_table(b.frame) if len(b.frame) else "<p>(no rows)</p>")
        elif b.kind == "img" and b.path is not None:
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt=\"{html.escape(b.text)}\" src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _display_table(table: pd.DataFrame, paper: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Human table: mean [CI] (n) per column, with the paper's value beside it."""
    pv = paper[(paper["dataset"] == dataset) & (paper["transfer"] == "all")]
    pmap = {(r.model, r.init, r.ft_fraction): float(r.auc) for r in pv.itertuples(index=False)}
    rows = []
    for r in table.to_dict("records"):
        rec = {"model": r["model"], "init": r["init"]}
        for frac, col in FT_COLUMNS.items():
            na = not_applicable(r["model"], r["init"], frac)
            if na:
                rec[_FT_LABELS[frac]] = "NA (n/a)"
            elif r[f"{col}_n_seeds"] == 0:
                rec[_FT_LABELS[frac]] = "NA (not run)"
            else:
                sd = r[f"{col}_sd"]
                spread = f" ±{sd:.3f}" if r[f"{col}_n_seeds"] > 1 and not math.isnan(sd) else ""
                rec[_FT_LABELS[frac]] = (f"{r[col]:.3f}{spread} [{_cell_text(r[f'{col}_ci_low'])}, "
                                         f"{_cell_text(r[f'{col}_ci_high'])}] n={r[f'{col}_n_seeds']}")
            p = pmap.get((r["model"], r["init"], frac))
            rec[f"{_FT_LABELS[frac]} paper"] = "NA" if p is None else f"{p:.3f}"
        rows.append(rec)
    return pd.DataFrame(rows)


def _display_hybrid(hyb: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    pv = paper[paper["model"] == HYBRID_MODEL]
    pmap = {(r.dataset, r.init, r.transfer, r.ft_fraction): float(r.auc) for r in pv.itertuples(index=False)}
    rows = []
    for r in hyb.to_dict("records"):
        key = (r["dataset"], r["init"])
        pa, ph = pmap.get((*key, "all", r["ft_fraction"])), pmap.get((*key, "hybrid", r["ft_fraction"]))
        rows.append({
            "dataset": r["dataset"], "init": r["init"], "ft_fraction": r["ft_fraction"],
            "all VS hybrid": f"{_cell_text(r['all'])} VS {_cell_text(r['hybrid'])}",
            "n seeds": f"{r['all_n_seeds']} / {r['hybrid_n_seeds']}",
            "paper": f"{_cell_text(pa)} VS {_cell_text(ph)}",
        })
    return pd.DataFrame(rows)


def _safe_uri(uri: str) -> str:
    """A tracking URI without credentials (scheme, host and port, or the file path)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https") or "@" in parsed.netloc:
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
        return f"{parsed.scheme}://{host}{port}{parsed.path}"
    return uri


# ------------------------------------------------------------------------------ main entry
def build_report(
    experiment: str = DEFAULT_EXPERIMENT,
    out_dir: str | Path = "report",
    *,
    tracking_uri: str | None = None,
    figures: bool = True,
    predictions: bool = True,
    runs: pd.DataFrame | None = None,
    method: str = "auto",
) -> ReportResult:
    """Build the study report of ``experiment`` into ``out_dir``.

    One paged search gives every table (``table_<dataset>.csv``, ``table_hybrid.csv``,
    ``cca.csv``, ``paper_comparison.csv``, ``missing.csv``, ``ddsm_checkpoints.csv``); ``predictions`` downloads the
    ``eval/predictions.csv`` of the plotted runs (one per run) for ``roc_<dataset>.png`` and
    ``delong.csv``; ``figures`` draws the PNGs. ``report.md`` and a self-contained
    ``report.html`` assemble it all. ``method`` picks how runs are read (see
    :func:`load_runs`); ``runs`` lets a caller pass an already fetched frame instead. Raises :class:`ReportError` if the experiment does not exist.
    """
    from tracking.store import resolve_tracking_uri

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    uri = resolve_tracking_uri(tracking_uri)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    frame = runs if runs is not None else load_runs(experiment, uri, method=method)
    timings["search_s"] = time.perf_counter() - t_start

    t = time.perf_counter()
    ft = finetune_runs(frame)
    finished = finished_cells(ft)
    cells = aggregate_cells(finished)
    pretraining = pretraining_table(frame)
    not_learnt = set(models_not_learnt(pretraining))
    tables: dict[str, pd.DataFrame] = {d: performance_table(cells, d, not_learnt) for d in TARGET_DATASETS}
    tables["pretraining"] = pretraining
    tables["hybrid"] = hybrid_table(cells)
    cca, n_cca = cca_table(frame)
    tables["cca"] = cca
    paper = load_paper_auc()
    tables["paper_comparison"] = paper_comparison(cells, paper)
    missing = missing_cells(ft, cells, cca)
    tables["missing"] = pd.DataFrame([m.as_dict() for m in missing],
                                     columns=["table", "dataset", "model", "init", "transfer", "ft_fraction", "reason"])
    notes = _notes(frame, ft, finished, cca)
    names = _col(frame, f"tags.{Tag.DDSM_MODEL_NAME}").dropna().unique().tolist()
    tables["ddsm_checkpoints"] = ddsm_checkpoints(frame, champion_versions(uri, names) if names else {})
    timings["tables_s"] = time.perf_counter() - t

    t = time.perf_counter()
    picks = plan_prediction_runs(finished) if predictions else []
    cache: dict[str, pd.DataFrame | Exception] = {}
    roc_curves: dict[str, list[Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tlstudy-report-") if predictions else nullcontext() as tmp:
        fetch = _downloader(uri, Path(tmp or "."))

        def cached(run_id: str, artifact_uri: str) -> pd.DataFrame:
            if run_id not in cache:
                try:
                    cache[run_id] = fetch(run_id, artifact_uri)
                except ReportError as exc:
                    cache[run_id] = exc
            hit = cache[run_id]
            if isinstance(hit, Exception):
                raise ValueError(str(hit))
            return hit

        stats = delong_tables(finished if predictions else finished.iloc[0:0], cached)
        if figures and picks:
            from tracking.figures import RocCurve

            for pick in picks:
                for init in PAPER_INITS + tuple(sorted(set(pick.runs) - set(PAPER_INITS))):
                    if init not in pick.runs:
                        continue
                    try:
                        pred = cached(*pick.runs[init])
                    except ValueError:
                        continue
                    y = pred["label"].to_numpy()
                    if len(set(y.tolist())) < 2:
                        continue
                    roc_curves.setdefault(pick.dataset, []).append(
                        RocCurve(panel=pick.model, init=init, ft_fraction=pick.ft_fraction,
                                 labels=y, scores=pred["score"].to_numpy(), seed=pick.seed))
    tables["delong"] = stats["combined"]
    tables["delong_seeds"] = stats["per_seed"]
    tables["delong_pooled"] = stats["pooled"]
    tables["controls"] = controls_table(stats["pooled"], stats["combined"], cells, cca)
    failed = sorted(str(v) for v in cache.values() if isinstance(v, Exception))
    if failed:
        notes.append(f"{len(failed)} prediction artifact(s) could not be used: " + " / ".join(failed[:5]))
    timings["artifacts_s"] = time.perf_counter() - t

    files: dict[str, Path] = {}
    for dataset in TARGET_DATASETS:
        files[f"table_{dataset}"] = _write_csv(tables[dataset], out / f"table_{dataset}.csv")
    for name in ("hybrid",):
        files[f"table_{name}"] = _write_csv(tables[name], out / f"table_{name}.csv")
    for name in ("cca", "delong", "delong_seeds", "delong_pooled", "controls", "pretraining", "paper_comparison",
                 "missing", "ddsm_checkpoints"):
        files[name] = _write_csv(tables[name], out / f"{name}.csv")
    digest = _digest(experiment, [files[k] for k in sorted(files)])

    t = time.perf_counter()
    if figures:
        from tracking.figures import plot_cca, plot_roc

        files["figure1_cca"] = plot_cca(cca, out / "figure1_cca.png")
        for dataset in TARGET_DATASETS + tuple(sorted(set(roc_curves) - set(TARGET_DATASETS))):
            if dataset in roc_curves:
                path = plot_roc(roc_curves[dataset], out / f"roc_{dataset}.png",
                                title=f"ROC curves on {dataset} (one seed per cell)", panel_order=PAPER_MODELS)
                files[f"roc_{dataset}"] = path
    timings["figures_s"] = time.perf_counter() - t

    findings = write_findings(tables, cca)
    notes.extend(_paper_notes(tables["hybrid"], tables["paper_comparison"]))
    synthetic = synthetic_share(frame)
    blocks = _document(experiment, uri, tables, paper, missing, notes, findings, files,
                       n_runs=len(frame), n_ft=len(ft), n_cca=n_cca, predictions=predictions, synthetic=synthetic)
    md_path = out / "report.md"
    md_path.write_text(render_markdown(blocks), encoding="utf-8")
    files["report_md"] = md_path
    html_path = out / "report.html"
    html_path.write_text(render_html(blocks, f"tlstudy report: {experiment}"), encoding="utf-8")
    files["report_html"] = html_path
    timings["total_s"] = time.perf_counter() - t_start
    return ReportResult(
        experiment=experiment, tracking_uri=uri, out_dir=out, files=files, tables=tables, missing=missing,
        notes=notes, findings=findings, n_runs=len(frame), n_finetune_runs=len(ft), n_cca_runs=n_cca,
        n_downloads=len(cache), digest=digest, timings=timings,
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False, na_rep="NA")
    return path


def _digest(experiment: str, paths: Sequence[Path]) -> str:
    h = hashlib.sha256(experiment.encode("utf-8"))
    for p in paths:
        h.update(p.name.encode("utf-8"))
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _notes(frame: pd.DataFrame, ft: pd.DataFrame, finished: pd.DataFrame, cca: pd.DataFrame) -> list[str]:
    notes = []
    counts = ft["status"].value_counts()
    notes.append(f"{len(frame)} runs searched; {len(ft)} fine-tune runs (" +
                 (", ".join(f"{n} {s}" for s, n in counts.items()) or "none") + ").")
    ok = ft[ft["status"] == "FINISHED"]
    dup = len(ok.dropna(subset=["test_auc"])) - len(finished)
    if dup > 0:
        notes.append(f"{dup} older FINISHED run(s) repeating a (cell, seed) were ignored: the newest one counts.")
    no_auc = int(ok["test_auc"].isna().sum())
    if no_auc:
        notes.append(f"{no_auc} FINISHED fine-tune run(s) have no test_auc metric and were ignored.")
    other_ds = sorted(set(finished["dataset"]) - set(TARGET_DATASETS))
    if other_ds:
        notes.append("runs on datasets outside the paper's tables were left out of Tables 1-3: " + ", ".join(other_ds))
    other_ft = sorted(set(finished["ft_fraction"]) - set(FT_COLUMNS))
    if other_ft:
        notes.append("fine-tuning fractions outside the paper's (0.0, 0.1, 0.2) were left out: " + ", ".join(other_ft))
    na_runs = finished[(finished["init"] == "imagenet") & ((finished["ft_fraction"] == "0.0") |
                                                          (finished["model"] == "patch_cnn"))]
    if len(na_runs):
        notes.append(f"{len(na_runs)} run(s) in not-applicable cells (ImageNet without fine-tuning, patch CNN "
                     "from ImageNet) were left out, as in the paper.")
    measure = cca.attrs.get("measure", PRIMARY_CCA_MEASURE)
    if len(cca) and measure != PRIMARY_CCA_MEASURE:
        notes.append(f"no cca_<layer> metrics were tracked; Figure 1 shows {measure}_<layer> instead.")
    return notes


def synthetic_share(frame: pd.DataFrame) -> tuple[int, int]:
    """(runs on look-alike data, runs that say either way), from the runs' ``tlstudy.synthetic_data`` tag."""
    tag = _col(frame, f"tags.{Tag.SYNTHETIC_DATA}").dropna().astype(str)
    return int((tag == "true").sum()), int(len(tag))


SYNTHETIC_BANNER = (
    "SYNTHETIC LOOK-ALIKE DATA. {n} of {m} runs of this report were trained and scored on tlstudy's look-alike "
    "data (the data root holds SYNTHETIC_DATA.txt), not on patient images. They are controls with a known "
    "answer, built by tlcore.data.synth: the CBIS-DDSM-, INbreast- and MIAS-like sets share one malignancy "
    "signal, so DDSM pre-training should help the two mammogram-like targets without fine-tuning (positive "
    "control); the ultrasound-like set carries a different, independently learnable signal, so it should not "
    "(negative control), while fine-tuning from random weights should learn every target. What they can show: "
    "whether this pipeline detects a transfer effect that is there, reports none where there is none, and "
    "separates the two with its statistics. What they cannot show: anything about real mammography or "
    "ultrasound, or about the paper's clinical numbers."
)


def _paper_notes(hybrid: pd.DataFrame, comparison: pd.DataFrame) -> list[str]:
    """Descriptive comparisons (no test behind them), kept out of the findings."""
    out = []
    hyb = hybrid.dropna(subset=["all", "hybrid"])
    if len(hyb):
        d = hyb["hybrid"] - hyb["all"]
        out.append(f"Descriptive, untested: hybrid minus all (ResNet-50) {_fmt(float(d.mean()), True)} on average, "
                   f"largest |difference| {_fmt(float(d.abs().max()))} over {len(hyb)} cells.")
    both = comparison.dropna(subset=["ours"])
    if len(both):
        out.append(f"Descriptive: mean |ours - paper| {_fmt(float(both['diff'].abs().mean()))} over {len(both)} of "
                   f"{len(comparison)} reported cells; ours higher in {int((both['diff'] > 0).sum())}.")
    return out


def _display_pretraining(pre: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "model": r.model, "seed": r.seed,
        "DDSM test AUC [95% CI]": f"{r.test_auc:.3f} [{_cell_text(r.ci_low)}, {_cell_text(r.ci_high)}]",
        "learnt": "unknown" if pd.isna(r.learnt) else ("yes" if r.learnt else "NO"), "note": r.note,
    } for r in pre.itertuples(index=False)], columns=["model", "seed", "DDSM test AUC [95% CI]", "learnt", "note"])


def _display_controls(controls: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in controls.to_dict("records"):
        rows.append({
            "target": r["dataset"],
            "No-FT gap DDSM-random [95% CI], Holm p": f"{_fmt(r['no_ft_gap'], True)} [{_fmt(r['no_ft_ci_low'], True)}, "
                                                       f"{_fmt(r['no_ft_ci_high'], True)}], {_p(r['no_ft_p_holm'])}",
            "DDSM No-FT AUC": _fmt(r["ddsm_no_ft_auc"]),
            "models with gap >= 0.10": f"{r['models_gap_ge_0.10']} of {int(r['models'])}",
            "FT 0.2 gap [95% CI], Holm p": f"{_fmt(r['ft_0.2_gap'], True)} [{_fmt(r['ft_0.2_ci_low'], True)}, "
                                           f"{_fmt(r['ft_0.2_ci_high'], True)}], {_p(r['ft_0.2_p_holm'])}",
            "random FT 0.2 AUC (min over models)": _fmt(r["random_ft_0.2_auc_min"]),
            "SVCCA block1-4 mean (random net)": f"{_fmt(r['svcca_block_mean'])} ({_fmt(r['svcca_block_baseline'])})",
        })
    return pd.DataFrame(rows)


def _display_delong(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    rows = []
    for r in table.to_dict("records"):
        rec = {k: r[k] for k in keys}
        rec.update({"AUC DDSM / random": f"{_fmt(r['auc_ddsm'])} / {_fmt(r['auc_random'])}",
                    "diff [95% CI]": f"{_fmt(r['diff'], True)} [{_fmt(r['ci_low'], True)}, {_fmt(r['ci_high'], True)}]",
                    "p": _p(r["p_value"]), "Holm p": _p(r["p_holm"]),
                    "survives Holm": "" if pd.isna(r["significant"]) else ("yes" if r["significant"] else "no"),
                    "note": r["note"]})
        rows.append(rec)
    return pd.DataFrame(rows)


def _document(
    experiment: str,
    uri: str,
    tables: dict[str, pd.DataFrame],
    paper: pd.DataFrame,
    missing: list[MissingCell],
    notes: list[str],
    findings: list[str],
    files: dict[str, Path],
    *,
    n_runs: int,
    n_ft: int,
    n_cca: int,
    predictions: bool,
    synthetic: tuple[int, int] = (0, 0),
) -> list[_Block]:
    b: list[_Block] = [_Block("h1", f"Transfer-learning study report: experiment {experiment}")]
    if synthetic[0]:
        b.append(_Block("banner", SYNTHETIC_BANNER.format(n=synthetic[0], m=synthetic[1])))
    b += [
        _Block("p", f"Built {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {n_runs} runs of tracking store "
                    f"{_safe_uri(uri)} ({n_ft} fine-tune, {n_cca} finished CCA runs). The tables come from one "
                    "read of the experiment's runs (no per-run requests); prediction artifacts are used only for "
                    "the ROC curves and DeLong tests."),
        _Block("h2", "Findings (computed from the tables; only effects that survive Holm's adjustment)"),
        _Block("ul", items=tuple(findings)),
        _Block("h2", "Pre-training on DDSM: did each model learn the source task?"),
        _Block("table", frame=_display_pretraining(tables["pretraining"])),
        _Block("h2", "Controls summary: DDSM minus random initialisation per target"),
        _Block("p", "Gaps are the mean over models of DDSM-init AUC minus random-init AUC, tested as one DeLong "
                    "contrast of all those AUCs on each seed's shared test set (seeds combined by inverse-variance "
                    "weighting; Holm over the targets and fractions). SVCCA: mean over block1-block4 of the "
                    "similarity between the DDSM model and the network the FT 0.2 cell fine-tuned."),
        _Block("table", frame=_display_controls(tables["controls"])),
        _Block("h2", "How to read the tables"),
        _Block("ul", items=(
            "Cell = mean test AUC over seeds (FINISHED runs; the newest run per seed), transfer = all.",
            ("+-sd = seed-to-seed sample SD (with more than one seed); [low, high] = mean of the per-seed "
             "bootstrap 95% CI bounds (test_auc_ci_low/high), the test-set sampling uncertainty; with one seed "
             "it is that run's bootstrap CI. n = number of seeds."),
            ("NA (n/a) = not applicable: ImageNet without fine-tuning (1000-class head) and the patch CNN from "
             "ImageNet (row omitted as in the paper). NA (not run) = no FINISHED run; see Missing results."),
            (f"DeLong: DDSM vs random per model and fraction on every seed both have (delong_seeds.csv), "
             f"predictions joined on image_id; seeds combined by inverse-variance weighting (delong.csv); "
             f"p_holm = Holm-adjusted over all those comparisons, significant = p_holm < {ALPHA}."),
        )),
    ]
    titles = {"inbreast": "Table 1: INbreast", "mias": "Table 2: MIAS", "ultrasound": "Table 3: breast ultrasound"}
    for dataset in TARGET_DATASETS:
        b.append(_Block("h2", f"{titles[dataset]} (AUC; ours next to the paper's)"))
        b.append(_Block("table", frame=_display_table(tables[dataset], paper, dataset)))
    b.append(_Block("h2", "Table 4: ResNet-50, all weights VS hybrid (up to block2), ours and the paper's"))
    b.append(_Block("table", frame=_display_hybrid(tables["hybrid"], paper)))
    b.append(_Block("h2", "DeLong tests: DDSM vs random initialisation (the masking effect)"))
    if predictions:
        b.append(_Block("table", frame=_display_delong(tables["delong"], ("dataset", "model", "ft_fraction", "seeds",
                                                                           "n_images"))))
        b.append(_Block("h2", "Pooled over models: mean DDSM - random gap per target and fraction"))
        b.append(_Block("table", frame=_display_delong(tables["delong_pooled"], ("dataset", "ft_fraction", "models",
                                                                                  "seeds", "n_images"))))
    else:
        b.append(_Block("p", "Skipped: the report was built without prediction artifacts."))
    b.append(_Block("h2", "Figure 1: per-layer CCA similarity (ResNet-50, DDSM pre-trained, before vs after "
                          "fine-tuning on 20%)"))
    if "figure1_cca" in files:
        b.append(_Block("img", "Figure 1: per-layer CCA similarity", path=files["figure1_cca"]))
    b.append(_Block("table", frame=tables["cca"]))
    rocs = [k for k in files if k.startswith("roc_")]
    if rocs:
        b.append(_Block("h2", "ROC curves (test predictions, one seed per cell)"))
        for key in rocs:
            b.append(_Block("img", f"ROC curves: {key[4:]}", path=files[key]))
    b.append(_Block("h2", "DDSM checkpoints used (model registry)"))
    b.append(_Block("p", "Every DDSM-initialised run records which checkpoint it loaded: the reference it asked "
                         "for (by default the registry alias models:/ddsm-<model>@champion), the registered "
                         "version that resolved to, and the pre-training run behind it. champion_now is where the "
                         "alias points today; a later, better pre-training moves it, and the runs keep their "
                         "record."))
    b.append(_Block("table", frame=tables["ddsm_checkpoints"]))
    b.append(_Block("h2", "Missing results"))
    not_run = [m for m in missing if m.reason.startswith("not run")]
    na = [m for m in missing if not m.reason.startswith("not run")]
    b.append(_Block("p", f"{len(not_run)} expected result(s) are not tracked; {len(na)} cell(s) are not "
                         "applicable by design. Full list: missing.csv."))
    b.append(_Block("ul", items=tuple(
        f"{m.table} {m.dataset} {m.model} {m.init} transfer={m.transfer} ft={m.ft_fraction}: {m.reason}"
        for m in not_run[:60]
    ) + ((f"... and {len(not_run) - 60} more (missing.csv)",) if len(not_run) > 60 else ())))
    b.append(_Block("h2", "Notes"))
    b.append(_Block("ul", items=tuple(notes)))
    return b


# ------------------------------------------------------------------------------ logging
def log_report(
    result: ReportResult,
    *,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    settings: Any = None,
) -> str:
    """Log the report as a run (stage ``report``) with every written file as an artifact.

    The run's config hash is :attr:`ReportResult.digest`, so logging an unchanged report
    again returns the existing FINISHED run instead of adding a duplicate. Returns the run id.
    """
    from tracking.logger import RunLogger, find_finished_run

    experiment = experiment or result.experiment
    uri = tracking_uri or result.tracking_uri
    existing = find_finished_run(experiment, result.digest, uri)
    if existing is not None:
        result.run_id = existing.info.run_id
        return result.run_id
    with RunLogger(run_name(STAGE_REPORT), result.digest, stage=STAGE_REPORT, experiment=experiment,
                   tracking_uri=uri, settings=settings) as run:
        if not run.completed:
            run.log_params({
                "report.source_experiment": result.experiment,
                "report.n_runs": result.n_runs,
                "report.n_finetune_runs": result.n_finetune_runs,
                "report.n_cca_runs": result.n_cca_runs,
            })
            delong = result.tables["delong"]
            run.log_metrics({
                "report.n_missing": float(sum(m.reason.startswith("not run") for m in result.missing)),
                "report.n_delong_tests": float(delong["p_value"].notna().sum()),
                "report.n_delong_significant": float(delong["significant"].fillna(False).astype(bool).sum()),
            })
            for path in result.files.values():
                run.log_file(path, f"report/{Path(path).name}")
    result.run_id = run.run_id
    return run.run_id
