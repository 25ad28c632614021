"""Benchmark of ``tlstudy report``'s query: one paged search vs. one request per run.

Run from the repository root::

    python benchmarks/report_query.py [--runs 10000] [--hyper-params 20] [--sample 200] [--server]

It creates a fresh SQLite tracking store in a temporary folder (schema and experiment via
MLflow itself), bulk-inserts ``--runs`` FINISHED runs in the study's schema straight into
MLflow's tables (``runs``, ``params``, ``tags``, ``metrics``, ``latest_metrics``) with
SQLAlchemy in a few transactions, then measures, all in this run:

* ``build_report(..., figures=False, predictions=False)``: the tables, CSVs, report.md and
  report.html, reading the runs once (target: under 10 s for 10,000 runs), with both read
  methods of :func:`tracking.report.load_runs`: ``sql`` (four SELECTs on MLflow's tables,
  the default for database URIs) and ``api`` (``search_runs`` with page tokens, what an
  HTTP server gets);
* the naive approach: the same paged search for run ids, then ``get_run`` per run. Only
  ``--sample`` runs are fetched; the per-run cost is extrapolated to all runs (said so in
  the output), plus the search time.

``--server`` repeats both measurements through a real ``mlflow server`` on the same store
(HTTP, where every per-run request is a round trip).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

try:
    import tracking  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracking.report import (
    FT_COLUMNS,
    HYBRID_DATASETS,
    HYBRID_FRACTIONS,
    PAPER_INITS,
    PAPER_MODELS,
    TARGET_DATASETS,
    build_report,
    not_applicable,
)
from tracking.schema import STAGE_CCA, STAGE_FINETUNE, Metric, Param, Tag, run_name
from tracking.store import ensure_store, get_client, get_or_create_experiment

EXPERIMENT = "tlstudy-bench"
LAYERS = ("conv1", "block1", "block2", "block3", "block4")
CHUNK = 20_000  # rows per executemany


def _cells() -> list[tuple[str, str, str, str, str]]:
    """Every (dataset, model, init, transfer, ft_fraction) cell of Tables 1-4."""
    cells = [(d, m, i, "all", f) for d in TARGET_DATASETS for m in PAPER_MODELS for i in PAPER_INITS
             for f in FT_COLUMNS if not not_applicable(m, i, f)]
    cells += [(d, "resnet50", i, "hybrid", f) for d in HYBRID_DATASETS for i in PAPER_INITS for f in HYBRID_FRACTIONS]
    return cells


def fill_store(uri: str, experiment_id: str, artifact_root: str, n_runs: int, n_hyper: int, n_cca: int,
               seed: int = 0) -> dict[str, int]:
    """Bulk-insert ``n_runs`` FINISHED fine-tune runs (+ ``n_cca`` cca runs) into MLflow's tables."""
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from sqlalchemy import create_engine, insert

    rng = random.Random(seed)
    now = int(time.time() * 1000) - n_runs * 1000
    cells = _cells()
    runs, params, tags, metrics, latest = [], [], [], [], []
    for k in range(n_runs + n_cca):
        run_id = uuid.uuid4().hex
        start = now + k * 1000
        if k < n_runs:
            dataset, model, init, transfer, frac = cells[k % len(cells)]
            run_seed = str(k // len(cells))
            name = run_name(STAGE_FINETUNE, dataset, model, init, frac, transfer, int(run_seed))
            p = {Param.DATASET: dataset, Param.MODEL: model, Param.INIT: init, Param.FT_FRACTION: frac,
                 Param.TRANSFER: transfer, Param.SEED: run_seed}
            auc = rng.uniform(0.3, 0.99)
            m = {Metric.TEST_AUC: auc, Metric.TEST_AUC_CI_LOW: auc - 0.07, Metric.TEST_AUC_CI_HIGH: min(auc + 0.06, 1.0)}
            stage = STAGE_FINETUNE
            history = {Metric.TRAIN_LOSS: [rng.uniform(0.1, 1.0) for _ in range(3)],
                       Metric.VAL_AUC: [rng.uniform(0.5, 0.9) for _ in range(3)]}
        else:
            dataset = TARGET_DATASETS[k % len(TARGET_DATASETS)]
            name = run_name(STAGE_CCA, dataset, "resnet50")
            p = {Param.DATASET: dataset, Param.MODEL: "resnet50", Param.SEED: str(k)}
            m = {}
            for i, layer in enumerate(LAYERS):
                m[f"cca_{layer}"] = rng.uniform(0.2, 0.95)
                m[f"cca_baseline_{layer}"] = rng.uniform(0.05, 0.2)
                m[f"pwcca_{layer}"] = rng.uniform(0.2, 0.95)
            stage = STAGE_CCA
            history = {}
        p.update({f"hp.field_{j:02d}": str(rng.random()) for j in range(n_hyper)})
        runs.append({"run_uuid": run_id, "name": name, "source_type": "LOCAL", "source_name": "", "entry_point_name": "",
                     "user_id": "bench", "status": "FINISHED", "start_time": start, "end_time": start + 900,
                     "source_version": "", "lifecycle_stage": "active",
                     "artifact_uri": f"{artifact_root}/{run_id}/artifacts", "experiment_id": int(experiment_id)})
        params += [{"key": key, "value": value, "run_uuid": run_id} for key, value in p.items()]
        t = {Tag.STAGE: stage, Tag.CONFIG_HASH: uuid.uuid4().hex[:16], Tag.CODE_VERSION: "bench",
             "mlflow.runName": name, "mlflow.user": "bench"}
        tags += [{"key": key, "value": value, "run_uuid": run_id} for key, value in t.items()]
        for key, value in m.items():
            row = {"key": key, "value": value, "timestamp": start + 800, "step": 0, "is_nan": False, "run_uuid": run_id}
            metrics.append(row)
            latest.append(dict(row))
        for key, values in history.items():
            for step, value in enumerate(values):
                metrics.append({"key": key, "value": value, "timestamp": start + step, "step": step,
                                "is_nan": False, "run_uuid": run_id})
            latest.append({"key": key, "value": values[-1], "timestamp": start + len(values) - 1,
                           "step": len(values) - 1, "is_nan": False, "run_uuid": run_id})
    engine = create_engine(uri)
    with engine.begin() as conn:  # one transaction per table
        for model, rows in ((SqlRun, runs), (SqlParam, params), (SqlTag, tags), (SqlMetric, metrics),
                            (SqlLatestMetric, latest)):
            for i in range(0, len(rows), CHUNK):
                conn.execute(insert(model.__table__), rows[i:i + CHUNK])
    engine.dispose()
    return {"runs": len(runs), "params": len(params), "tags": len(tags), "metrics": len(metrics),
            "latest_metrics": len(latest)}


def time_report(uri: str, out_dir: Path, method: str) -> tuple[float, float, dict[str, float]]:
    """(wall seconds, CPU seconds of this process, build_report's own timings)."""
    t, c = time.perf_counter(), time.process_time()
    result = build_report(EXPERIMENT, out_dir, tracking_uri=uri, figures=False, predictions=False, method=method)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    filled = int(result.tables["inbreast"][list(FT_COLUMNS.values())].notna().to_numpy().sum())
    assert filled > 0, "the benchmark report has an empty Table 1"
    return elapsed, cpu, result.timings


def time_naive(uri: str, sample: int, seed: int = 0) -> tuple[float, float, int]:
    """(search seconds for ids, mean seconds per get_run on a sample, number of runs)."""
    client = get_client(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    t = time.perf_counter()
    ids: list[str] = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        ids += [r.info.run_id for r in page]
        token = page.token
        if not token:
            break
    search_s = time.perf_counter() - t
    picked = random.Random(seed).sample(ids, min(sample, len(ids)))
    per_run = []
    for run_id in picked:
        t = time.perf_counter()
        client.get_run(run_id)
        per_run.append(time.perf_counter() - t)
    return search_s, statistics.fmean(per_run), len(ids)


def report_line(label: str, uri: str, out_dir: Path, sample: int, methods: list[str]) -> None:
    search_s, per_run, n = time_naive(uri, sample)
    naive = search_s + per_run * n
    print(f"[{label}] naive: search ids {search_s:.2f} s + get_run {per_run * 1000:.1f} ms/run measured on "
          f"{min(sample, n)} runs, EXTRAPOLATED to {n} runs = {naive:.1f} s")
    for method in methods:
        ours, cpu, timings = time_report(uri, out_dir / method, method)
        parts = ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
        print(f"[{label}] build_report method={method} (tables only, no per-run requests): {ours:.2f} s wall, "
              f"{cpu:.2f} s CPU of this process  ({parts})")
        print(f"[{label}]   naive / build_report = {naive / ours:.1f}x; target build_report < 10 s: "
              f"{'met' if ours < 10 else 'NOT met'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="FINISHED fine-tune runs to insert")
    parser.add_argument("--cca-runs", type=int, default=15)
    parser.add_argument("--hyper-params", type=int, default=20, help="extra params per run (flattened config)")
    parser.add_argument("--sample", type=int, default=200, help="runs fetched one by one for the naive estimate")
    parser.add_argument("--server", action="store_true", help="also measure through a real `mlflow server`")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store here (default: a temp folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tlstudy-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "mlflow.db"
        if db.exists():
            raise SystemExit(f"{db} exists; the benchmark needs a fresh store")
        uri = f"sqlite:///{db.resolve()}"
        ensure_store(uri)
        client = get_client(uri)
        exp_id = get_or_create_experiment(client, EXPERIMENT)
        artifact_root = client.get_experiment(exp_id).artifact_location
        t = time.perf_counter()
        counts = fill_store(uri, exp_id, artifact_root, args.runs, args.hyper_params, args.cca_runs)
        print(f"filled {db} in {time.perf_counter() - t:.1f} s: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        report_line("sqlite", uri, work / "report-sqlite", args.sample, ["sql", "api"])
        if args.server:
            from tracking.server import start_server

            t = time.perf_counter()
            with start_server(uri, work / "mlartifacts", log_path=work / "server.log") as server:
                print(f"mlflow server up in {time.perf_counter() - t:.1f} s at {server.url}")
                report_line("http", server.url, work / "report-http", args.sample, ["api"])
        print(f"(machine load average at the end: {' '.join(f'{x:.1f}' for x in _loadavg())})")


def _loadavg() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


if __name__ == "__main__":
    main()
