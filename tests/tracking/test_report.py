"""The study report against a real ``mlflow server`` filled through the real client."""

from __future__ import annotations

import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric as MlMetric
from mlflow.entities import Param as MlParam

from tlcore.metrics import delong_test
from tracking.logger import LoggerSettings
from tracking.report import (
    FT_COLUMNS,
    ReportError,
    build_report,
    cca_table,
    holm,
    load_runs,
    log_report,
    not_applicable,
    read_predictions,
)
from tracking.schema import Artifact, Metric, Param, Tag

EXPERIMENT = "report-test"
LAYERS = ("conv1", "block1", "block2", "block3", "block4")
ROWS = [(m, i) for m in ("vgg16", "resnet50", "inception_v3", "patch_cnn")
        for i in ("random", "imagenet", "ddsm") if not (m == "patch_cnn" and i == "imagenet")]


def _predictions(rng: np.random.Generator, strength: float, n: int = 40) -> pd.DataFrame:
    labels = np.array([0, 1] * (n // 2))
    scores = 1.0 / (1.0 + np.exp(-(strength * (labels - 0.5) + rng.normal(0, 1, n))))
    return pd.DataFrame({"image_id": [f"inbreast-{i:04d}" for i in range(n)], "label": labels, "score": scores})


class Store:
    """What the fixture logged, so tests can check the report against it."""

    def __init__(self, url: str, tmp: Path, experiment: str = EXPERIMENT):
        self.url = url
        self.tmp = tmp
        self.client = MlflowClient(tracking_uri=url)
        self.exp_id = self.client.create_experiment(experiment)
        self.clock = int(time.time() * 1000) - 10_000_000
        self.predictions: dict[str, pd.DataFrame] = {}

    def run(self, stage: str, params: dict[str, str], metrics: dict[str, float], *, start: int,
            status: str = "FINISHED", tags: dict[str, str] | None = None,
            predictions: pd.DataFrame | None = None) -> str:
        run = self.client.create_run(self.exp_id, start_time=start, tags={Tag.STAGE: stage, **(tags or {})})
        run_id = run.info.run_id
        self.client.log_batch(
            run_id,
            metrics=[MlMetric(k, float(v), start, 0) for k, v in metrics.items()],
            params=[MlParam(k, str(v)) for k, v in params.items()],
        )
        if predictions is not None:
            path = self.tmp / run_id / "predictions.csv"
            path.parent.mkdir(parents=True)
            predictions.to_csv(path, index=False)
            self.client.log_artifact(run_id, str(path), artifact_path=Path(Artifact.PREDICTIONS).parent.as_posix())
            self.predictions[run_id] = predictions
        self.client.set_terminated(run_id, status)
        return run_id

    def finetune(self, dataset, model, init, frac, seed, auc, *, start, transfer="all", status="FINISHED",
                 tags=None, predictions=None) -> str:
        params = {Param.DATASET: dataset, Param.MODEL: model, Param.INIT: init, Param.FT_FRACTION: frac,
                  Param.TRANSFER: transfer, Param.SEED: seed, "optim.lr": "0.0001"}
        metrics = {Metric.TEST_AUC: auc, Metric.TEST_AUC_CI_LOW: auc - 0.08, Metric.TEST_AUC_CI_HIGH: min(auc + 0.07, 1.0),
                   Metric.VAL_AUC: 0.5}
        return self.run("finetune", params, metrics, start=start, status=status, tags=tags, predictions=predictions)


@pytest.fixture(scope="module")
def store(mlflow_server, tmp_path_factory):
    """The session's real MLflow server, with a small grid of runs in its own experiment."""
    s = Store(mlflow_server.url, tmp_path_factory.mktemp("report-uploads"))
    rng = np.random.default_rng(0)
    strength = {"random": 0.3, "imagenet": 2.0, "ddsm": 3.0}
    jobs: list[tuple[tuple, dict]] = []

    def finetune(*args, **kwargs):
        s.clock += 1000
        jobs.append((args, {"start": s.clock, **kwargs}))

    # INbreast: ResNet-50 on the full grid with 2 seeds (seed 0 with predictions); VGG-16 partly.
    for init in ("random", "imagenet", "ddsm"):
        for frac in ("0.0", "0.1", "0.2"):
            if init == "imagenet" and frac == "0.0":
                continue
            for seed in ("0", "1"):
                pred = _predictions(rng, strength[init] + float(frac) * 10) if seed == "0" else None
                finetune("inbreast", "resnet50", init, frac, seed, float(rng.uniform(0.3, 0.95)), predictions=pred)
    for init in ("random", "ddsm"):
        finetune("inbreast", "vgg16", init, "0.0", "0", float(rng.uniform(0.3, 0.95)),
                 predictions=_predictions(rng, strength[init]))
        finetune("inbreast", "vgg16", init, "0.1", "0", float(rng.uniform(0.3, 0.95)))  # no predictions
    # MIAS: a stale run logged *before* a newer run of the same cell and seed (the newer one counts).
    finetune("mias", "resnet50", "ddsm", "0.1", "0", 0.11, start=s.clock - 10_000_000)
    finetune("mias", "resnet50", "ddsm", "0.1", "0", 0.88)
    finetune("mias", "resnet50", "random", "0.0", "0", 0.41)
    finetune("mias", "resnet50", "ddsm", "0.0", "0", 0.86)
    for seed, auc in (("0", 0.87), ("1", 0.90)):
        finetune("mias", "resnet50", "ddsm", "0.1", seed, auc, transfer="hybrid")
    # Not-applicable, failed and unfinished runs must not reach the tables.
    finetune("mias", "resnet50", "imagenet", "0.0", "0", 0.77)
    finetune("mias", "vgg16", "imagenet", "0.1", "0", 0.5, status="FAILED",
             tags={"tlstudy.error": "ImageNet weights vgg16-397923af.pth not found in hub cache"})
    finetune("mias", "vgg16", "random", "0.1", "0", 0.99, status="KILLED")
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(s.finetune, *args, **kwargs) for args, kwargs in jobs]
        futures.append(pool.submit(s.run, "pretrain", {Param.DATASET: "ddsm", Param.MODEL: "resnet50"},
                                   {Metric.TEST_AUC: 0.8}, start=s.clock + 1000))
        for k, (dataset, top) in enumerate((("inbreast", 0.9), ("ultrasound", 0.2))):
            for seed in ("0", "1"):
                metrics = {}
                for i, layer in enumerate(LAYERS):
                    metrics[f"cca_{layer}"] = top - 0.1 * i * (1 if dataset == "inbreast" else -0.5) + 0.01 * int(seed)
                    metrics[f"cca_baseline_{layer}"] = 0.1 + 0.01 * i
                    metrics[f"pwcca_{layer}"] = top - 0.05 * i
                futures.append(pool.submit(s.run, "cca", {Param.DATASET: dataset, Param.MODEL: "resnet50",
                                                          Param.SEED: seed}, metrics, start=s.clock + 2000 + k))
        for future in futures:
            future.result()
    return s


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-out")
    return build_report(EXPERIMENT, out, tracking_uri=store.url)


def _expected_cells(store: Store) -> pd.DataFrame:
    """Recompute every cell straight from mlflow.search_runs: newest FINISHED run per seed, mean over seeds."""
    import mlflow

    mlflow.set_tracking_uri(store.url)
    df = mlflow.search_runs(experiment_names=[EXPERIMENT], max_results=10_000)
    df = df[(df["tags.tlstudy.stage"] == "finetune") & (df["status"] == "FINISHED")]
    df = df.sort_values("start_time").drop_duplicates(
        ["params.dataset", "params.model", "params.init", "params.ft_fraction", "params.transfer", "params.seed"],
        keep="last")
    return df.groupby(["params.dataset", "params.model", "params.init", "params.transfer", "params.ft_fraction"])[
        ["metrics.test_auc", "metrics.test_auc_ci_low"]].agg(["mean", "size"])


def test_dataset_tables_match_tracked_runs(store, report):
    expected = _expected_cells(store)
    for dataset in ("inbreast", "mias", "ultrasound"):
        table = pd.read_csv(report.files[f"table_{dataset}"])
        assert list(table.columns[:5]) == ["model", "init", "no_ft", "ft_0.1", "ft_0.2"]
        assert {"no_ft_ci_low", "ft_0.1_ci_high", "ft_0.2_n_seeds", "notes"} <= set(table.columns)
        assert list(zip(table["model"], table["init"])) == ROWS
        checked = 0
        for row in table.to_dict("records"):
            for frac, col in FT_COLUMNS.items():
                key = (dataset, row["model"], row["init"], "all", frac)
                if not_applicable(row["model"], row["init"], frac):
                    assert math.isnan(row[col]), key
                elif key in expected.index:
                    assert row[col] == pytest.approx(expected.loc[key, ("metrics.test_auc", "mean")], abs=1e-9), key
                    assert row[f"{col}_ci_low"] == pytest.approx(
                        expected.loc[key, ("metrics.test_auc_ci_low", "mean")], abs=1e-9)
                    assert row[f"{col}_n_seeds"] == expected.loc[key, ("metrics.test_auc", "size")]
                    checked += 1
                else:
                    assert math.isnan(row[col]), f"{key} was never run but has a value"
        if dataset == "inbreast":
            assert checked == 8 + 4  # ResNet-50: 3 + 2 + 3 cells; VGG-16: random/ddsm at 0.0 and 0.1
        if dataset == "mias":
            assert checked == 3
        if dataset == "ultrasound":
            assert checked == 0


def test_newest_run_wins_and_unfinished_runs_are_ignored(report):
    mias = report.tables["mias"].set_index(["model", "init"])
    assert mias.loc[("resnet50", "ddsm"), "ft_0.1"] == pytest.approx(0.88)  # not the stale 0.11
    assert math.isnan(mias.loc[("vgg16", "random"), "ft_0.1"])  # only a KILLED run
    assert math.isnan(mias.loc[("resnet50", "imagenet"), "no_ft"])  # run exists, cell not applicable
    assert "not applicable" in mias.loc[("resnet50", "imagenet"), "notes"]


def test_hybrid_table(report):
    hyb = pd.read_csv(report.files["table_hybrid"], dtype={"ft_fraction": str})
    assert list(hyb.columns[:5]) == ["dataset", "init", "ft_fraction", "all", "hybrid"]
    assert len(hyb) == 3 * 3 * 2
    assert list(hyb["dataset"].drop_duplicates()) == ["mias", "inbreast", "ultrasound"]
    row = hyb[(hyb["dataset"] == "mias") & (hyb["init"] == "ddsm") & (hyb["ft_fraction"] == "0.1")].iloc[0]
    assert row["hybrid"] == pytest.approx((0.87 + 0.90) / 2)
    assert row["all"] == pytest.approx(0.88)
    assert row["hybrid_n_seeds"] == 2
    assert hyb["hybrid"].notna().sum() == 1


def test_cca_table_and_figure(report):
    cca = pd.read_csv(report.files["cca"])
    assert list(cca.columns[:4]) == ["dataset", "layer", "similarity", "baseline"]
    assert "pwcca" in cca.columns
    assert list(cca["dataset"].drop_duplicates()) == ["inbreast", "ultrasound"]
    ib = cca[cca["dataset"] == "inbreast"].set_index("layer")
    assert list(ib.index) == list(LAYERS)
    assert ib.loc["conv1", "similarity"] == pytest.approx(0.905)  # mean of seeds 0.90 and 0.91
    assert ib.loc["block4", "baseline"] == pytest.approx(0.14)
    assert (cca["n_runs"] == 2).all()
    for key in ("figure1_cca", "roc_inbreast"):
        assert report.files[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "roc_ultrasound" not in report.files  # nothing ran there, no artifact to plot


def test_delong_pvalues_match_the_logged_predictions(store, report):
    delong = pd.read_csv(report.files["delong_seeds"], dtype={"ft_fraction": str, "seed": str})
    tested = delong[delong["p_value"].notna()]
    # resnet50 at three fractions and vgg16 without fine-tuning have predictions for seed 0.
    assert set(zip(tested["model"], tested["ft_fraction"])) == {
        ("resnet50", "0.0"), ("resnet50", "0.1"), ("resnet50", "0.2"), ("vgg16", "0.0")}
    assert tested["p_value"].between(0, 1).all()
    for row in tested.itertuples(index=False):
        a, b = store.predictions[row.run_id_ddsm], store.predictions[row.run_id_random]
        ref = delong_test(a["label"], a["score"], b["score"])
        assert row.p_value == pytest.approx(ref.p_value, rel=1e-6)
        assert row.auc_ddsm == pytest.approx(ref.auc_a, rel=1e-6)
        assert row.seed == "0" and row.n_images == 40
    # vgg16 at 0.1 and resnet50's seed 1 have runs but no predictions: listed with the reason.
    untested = delong[delong["p_value"].isna()]
    assert len(untested) and untested["note"].str.contains("predictions").all()
    # Bounded downloads: at most one per compared run (each FINISHED ddsm/random run of the grid).
    assert report.n_downloads <= 22


def test_seeds_are_combined_and_holm_runs_over_the_family(store, report):
    per_seed = pd.read_csv(report.files["delong_seeds"], dtype={"ft_fraction": str, "seed": str})
    combined = pd.read_csv(report.files["delong"], dtype={"ft_fraction": str, "seeds": str})
    tested = combined[combined["p_value"].notna()]
    assert set(zip(tested["model"], tested["ft_fraction"])) == {
        ("resnet50", "0.0"), ("resnet50", "0.1"), ("resnet50", "0.2"), ("vgg16", "0.0")}
    for row in tested.itertuples(index=False):  # one tested seed each: the combination is that seed's test
        seed = per_seed[(per_seed["model"] == row.model) & (per_seed["ft_fraction"] == row.ft_fraction)
                        & (per_seed["dataset"] == row.dataset) & per_seed["p_value"].notna()]
        assert row.n_seeds == len(seed) == 1 and row.seeds == "0"
        assert row.diff == pytest.approx(float(seed["diff"].iloc[0]), abs=1e-12)
        assert row.p_value == pytest.approx(float(seed["p_value"].iloc[0]), rel=1e-9)
        assert row.ci_low < row.diff < row.ci_high
    assert (tested["p_holm"] >= tested["p_value"] - 1e-12).all()
    assert combined["p_holm"].tolist() == pytest.approx(holm(combined["p_value"].tolist()), nan_ok=True)
    assert (tested["significant"] == (tested["p_holm"] < 0.05)).all()
    pooled = pd.read_csv(report.files["delong_pooled"], dtype={"ft_fraction": str, "seeds": str})
    no_ft = pooled[(pooled["dataset"] == "inbreast") & (pooled["ft_fraction"] == "0.0")].iloc[0]
    # Two models (resnet50, vgg16) have seed-0 predictions without fine-tuning: the pooled gap is their mean.
    pair = tested[(tested["dataset"] == "inbreast") & (tested["ft_fraction"] == "0.0")]
    assert no_ft["n_models"] == 2 and no_ft["diff"] == pytest.approx(pair["diff"].mean(), abs=1e-12)
    assert no_ft["se"] > 0 and no_ft["p_holm"] >= no_ft["p_value"]


def test_html_is_self_contained_and_markdown_has_everything(report):
    text = report.files["report_html"].read_text(encoding="utf-8")
    assert "<table>" in text and text.count("data:image/png;base64,") >= 2
    for ref in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text, flags=re.IGNORECASE):
        assert ref.startswith("data:"), ref
    assert "<link" not in text and "@import" not in text and "url(" not in text and "<script" not in text
    md = report.files["report_md"].read_text(encoding="utf-8")
    assert "![Figure 1" in md and "(figure1_cca.png)" in md
    assert "paper" in md and "0.833" in md  # the paper's INbreast ResNet-50 DDSM no-FT value
    assert "mean of the per-seed bootstrap 95% CI bounds" in md
    assert any("DDSM over random" in f for f in report.findings)
    assert "ImageNet weights vgg16-397923af.pth not found in hub cache" in md  # the failed run's reason
    assert "FAILED" in md


def test_missing_rows_are_listed_with_reasons(report):
    missing = pd.read_csv(report.files["missing"], dtype=str, keep_default_na=False)
    row = missing[(missing["table"] == "table_ultrasound") & (missing["model"] == "vgg16")
                  & (missing["init"] == "ddsm") & (missing["ft_fraction"] == "0.1")]
    assert row["reason"].item().startswith("not run")
    imagenet = missing[(missing["table"] == "table_mias") & (missing["model"] == "vgg16")
                       & (missing["init"] == "imagenet") & (missing["ft_fraction"] == "0.1")]
    assert "1 FAILED" in imagenet["reason"].item() and "hub/checkpoints" in imagenet["reason"].item()
    assert ((missing["init"] == "imagenet") & (missing["ft_fraction"] == "0.0")
            & missing["reason"].str.startswith("not applicable")).sum() == 3 * 3
    cca = missing[missing["table"] == "cca"]
    assert list(cca["dataset"]) == ["mias"]
    comp = report.tables["paper_comparison"]
    row = comp[(comp["dataset"] == "mias") & (comp["model"] == "resnet50") & (comp["init"] == "ddsm")
               & (comp["ft_fraction"] == "0.1") & (comp["transfer"] == "all")].iloc[0]
    assert row["paper"] == pytest.approx(0.881) and row["diff"] == pytest.approx(0.88 - 0.881)


def test_log_report_logs_files_once(store, report, tmp_path):
    settings = LoggerSettings(work_dir=tmp_path / "wd", tag_code_version=False)
    run_id = log_report(report, tracking_uri=store.url, settings=settings)
    run = store.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[Tag.STAGE] == "report"
    names = {f.path for f in store.client.list_artifacts(run_id, "report")}
    assert {"report/report.html", "report/table_inbreast.csv", "report/figure1_cca.png", "report/delong.csv"} <= names
    assert log_report(report, tracking_uri=store.url, settings=settings) == run_id  # unchanged -> same run
    # The report run itself is not a fine-tune run: a second report sees the same tables.
    again = build_report(EXPERIMENT, tmp_path / "again", tracking_uri=store.url, figures=False, predictions=False)
    assert again.tables["inbreast"].equals(report.tables["inbreast"])
    assert "figure1_cca" not in again.files and again.n_downloads == 0


def test_sql_read_matches_the_api_search(store, mlflow_server):
    api = load_runs(EXPERIMENT, store.url, method="api")
    sql = load_runs(EXPERIMENT, mlflow_server.backend_uri, method="sql")
    assert len(api) >= 34 and sorted(api.columns) == sorted(sql.columns)  # + the report run, if logged
    assert "params.optim.lr" not in api.columns and "metrics.val_auc" not in api.columns  # keys the report reads
    cols = sorted(api.columns)
    pd.testing.assert_frame_equal(api[cols].sort_values("run_id").reset_index(drop=True),
                                  sql[cols].sort_values("run_id").reset_index(drop=True), check_dtype=False)
    with pytest.raises(ValueError, match="database tracking URI"):
        load_runs(EXPERIMENT, store.url, method="sql")


def test_unknown_experiment_is_an_error(store, tmp_path):
    with pytest.raises(ReportError, match="no-such-experiment"):
        build_report("no-such-experiment", tmp_path, tracking_uri=store.url)


def test_holm_adjustment():
    adj = holm([0.01, 0.04, math.nan, 0.03])
    assert adj[0] == pytest.approx(0.03) and adj[3] == pytest.approx(0.06) and adj[1] == pytest.approx(0.06)
    assert math.isnan(adj[2])


def test_cca_metric_names_are_parsed_by_measure_and_layer():
    frame = pd.DataFrame({
        "status": ["FINISHED"], f"tags.{Tag.STAGE}": ["cca"], "params.dataset": ["mias"],
        "metrics.cka_debiased_block2": [0.4], "metrics.cca_block2": [0.7], "metrics.cca_baseline_block2": [0.2],
    })
    table, n = cca_table(frame)
    row = table[table["layer"] == "block2"].iloc[0]
    assert n == 1 and row["similarity"] == 0.7 and row["baseline"] == 0.2 and row["cka_debiased"] == 0.4
    assert math.isnan(table[table["layer"] == "conv1"].iloc[0]["similarity"])


def test_bad_predictions_file_names_the_problem(tmp_path):
    path = tmp_path / "predictions.csv"
    path.write_text("image_id,score\na,0.1\n", encoding="utf-8")
    with pytest.raises(ReportError, match=r"run abc .*lacks columns \['label'\]"):
        read_predictions(path, "run abc eval/predictions.csv")


def test_ddsm_checkpoint_table_traces_each_run_to_its_registry_version():
    from tracking.report import ddsm_checkpoints

    def run(run_id, stage, status="FINISHED", model="resnet50", auc=None, **tags):
        row = {"run_id": run_id, "status": status, f"tags.{Tag.STAGE}": stage, "params.model": model,
               "metrics.test_auc": auc}
        row.update({f"tags.{k}": v for k, v in tags.items()})
        return row

    v1 = {Tag.DDSM_MODEL_NAME: "ddsm-resnet50", Tag.DDSM_MODEL_VERSION: "1", Tag.DDSM_SOURCE_RUN_ID: "pre1",
          Tag.DDSM_MODEL_URI: "models:/ddsm-resnet50@champion"}
    v2 = {**v1, Tag.DDSM_MODEL_VERSION: "2", Tag.DDSM_SOURCE_RUN_ID: "pre2",
          Tag.DDSM_MODEL_URI: "models:/ddsm-resnet50/2"}
    frame = pd.DataFrame([
        run("pre1", "pretrain", auc=0.71),
        run("pre2", "pretrain", auc=0.74),
        run("a", "finetune", auc=0.6, **v1),
        run("b", "finetune", auc=0.6, **v1),
        run("c", "cca", **v1),
        run("d", "finetune", auc=0.6, **v2),
        run("e", "finetune", status="FAILED", **v2),  # not counted
        run("f", "finetune", auc=0.5),  # random init: no checkpoint
    ])
    table = ddsm_checkpoints(frame, {"ddsm-resnet50": "2"})
    assert table.to_dict("records") == [
        {"model": "resnet50", "requested": "models:/ddsm-resnet50/2", "registered_model": "ddsm-resnet50",
         "version": "2", "source_run_id": "pre2", "source_test_auc": 0.74, "finished_runs": 1,
         "stages": "finetune 1", "champion_now": "2"},
        {"model": "resnet50", "requested": "models:/ddsm-resnet50@champion", "registered_model": "ddsm-resnet50",
         "version": "1", "source_run_id": "pre1", "source_test_auc": 0.71, "finished_runs": 3,
         "stages": "cca 1, finetune 2", "champion_now": "2"},
    ]
    assert ddsm_checkpoints(frame[frame["run_id"] == "f"]).empty


def test_synthetic_banner_and_models_that_did_not_learn(mlflow_server, tmp_path):
    """Runs tagged as look-alike data open the report with the banner; a pre-training whose CI covers 0.5 is flagged."""
    s = Store(mlflow_server.url, tmp_path / "uploads", experiment="report-banner-test")
    synthetic = {Tag.SYNTHETIC_DATA: "true"}
    start = s.clock
    for model, (auc, lo, hi) in {"resnet50": (0.86, 0.81, 0.90), "vgg16": (0.55, 0.47, 0.63)}.items():
        start += 1000
        s.run("pretrain", {Param.DATASET: "ddsm", Param.MODEL: model, Param.SEED: "0"},
              {Metric.TEST_AUC: auc, Metric.TEST_AUC_CI_LOW: lo, Metric.TEST_AUC_CI_HIGH: hi}, start=start,
              tags=synthetic)
        for init in ("random", "ddsm"):
            start += 1000
            s.finetune("mias", model, init, "0.0", "0", 0.6, start=start, tags=synthetic)
    report = build_report(s.client.get_experiment(s.exp_id).name, tmp_path / "out", tracking_uri=s.url)
    md = report.files["report_md"].read_text(encoding="utf-8")
    assert md.splitlines()[2].startswith("> **SYNTHETIC LOOK-ALIKE DATA. 6 of 6 runs")
    assert "positive control" in md and "negative control" in md
    html_text = report.files["report_html"].read_text(encoding="utf-8")
    assert '<div class="banner"' in html_text
    pre = pd.read_csv(report.files["pretraining"]).set_index("model")
    assert bool(pre.loc["resnet50", "learnt"]) and not bool(pre.loc["vgg16", "learnt"])
    assert "did not learn" in pre.loc["vgg16", "note"]
    table = pd.read_csv(report.files["table_mias"], keep_default_na=False).set_index(["model", "init"])
    assert "did not learn" in table.loc[("vgg16", "ddsm"), "notes"]
    assert "did not learn" not in table.loc[("resnet50", "ddsm"), "notes"]
    assert any(f.startswith("vgg16 did not learn") for f in report.findings)


def test_no_banner_without_lookalike_data(report):
    assert "SYNTHETIC" not in report.files["report_md"].read_text(encoding="utf-8")
