"""pretrain -> registry -> finetune through the `champion` alias, against a real `mlflow server`.

The entry points run as real subprocesses (as `mlflow run` and the study runner start
them) on tiny look-alike data; the assertions query the server like a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pydicom
import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import start_mlflow_server, start_postgres  # noqa: E402
from tracking.schema import Artifact, Metric, Tag  # noqa: E402

SMALL = ["--image-size", "64", "--epochs", "1", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from tlcore.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("data")
    generate(root, SynthConfig(scale="tiny", seed=0))
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_mlflow_server(tmp_path_factory.mktemp("server"))
    yield handle
    handle.stop()


def run_entry(module: str, args: list[str], *, uri: str, cwd: Path, cache: Path, check: bool = True):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TLSTUDY_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


def planted_patient_identifiers(data_root: Path) -> set[str]:
    """Patient names and ids the look-alike DICOM headers carry (must never reach the server)."""
    found: set[str] = set()
    for path in list((data_root / "ddsm").rglob("*.dcm"))[:40] + list((data_root / "inbreast").rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for tag in ("PatientName", "PatientID"):
            value = str(ds.get(tag, "")).strip()
            if len(value) >= 5:
                found.add(value)
    return found


def all_logged_text(client: MlflowClient, run, dst: Path) -> str:
    """Params, tags and the text artifacts of a run, as one string to search."""
    parts = [f"{k}={v}" for k, v in {**run.data.params, **run.data.tags}.items()]
    local = Path(client.download_artifacts(run.info.run_id, "", str(dst)))
    for file in local.rglob("*"):
        if file.is_file() and file.suffix in {".csv", ".json", ".txt", ".yaml", ".md", ""}:
            parts.append(file.read_text(errors="ignore"))
    return "\n".join(parts)


def pretrain_then_finetune(uri: str, data: Path, work: Path, experiment: str):
    cache = work / "cache"
    common = ["--data-root", str(data), "--experiment", experiment, *SMALL]
    run_entry("pipelines.pretrain", ["--model", "resnet50", *common], uri=uri, cwd=work, cache=cache)
    out = run_entry("pipelines.finetune", ["--dataset", "mias", "--model", "resnet50", "--init", "ddsm",
                                           "--ft-fraction", "0.2", *common], uri=uri, cwd=work, cache=cache)
    return out


def test_pretrain_registers_and_finetune_uses_champion(server, tiny_data, tmp_path):
    uri = server.url
    pretrain_then_finetune(uri, tiny_data, tmp_path, "entry-points")
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)

    champion = client.get_model_version_by_alias("ddsm-resnet50", "champion")
    runs = mlflow.search_runs(experiment_names=["entry-points"], output_format="list")
    by_stage = {r.data.tags[Tag.STAGE]: r for r in runs}
    assert set(by_stage) == {"pretrain", "finetune"}
    pre, ft = by_stage["pretrain"], by_stage["finetune"]
    assert champion.run_id == pre.info.run_id

    # Schema: run name, params, metrics, tags, artifacts.
    assert ft.info.run_name == "mias·r50·ddsm·ft20·s0"
    assert ft.info.status == "FINISHED"
    for key, value in {"dataset": "mias", "model": "resnet50", "init": "ddsm", "ft_fraction": "0.2",
                       "transfer": "all", "seed": "0", "epochs": "1", "batch_size": "8", "image_size": "64"}.items():
        assert ft.data.params[key] == value, key
    for metric in (Metric.TEST_AUC, Metric.TEST_AUC_CI_LOW, Metric.TEST_AUC_CI_HIGH):
        assert 0.0 <= ft.data.metrics[metric] <= 1.0
    assert ft.data.metrics[Metric.TEST_AUC_CI_LOW] <= ft.data.metrics[Metric.TEST_AUC] <= ft.data.metrics[Metric.TEST_AUC_CI_HIGH]
    history = client.get_metric_history(ft.info.run_id, Metric.TRAIN_LOSS)
    assert [m.step for m in history] == [1]
    assert ft.data.tags[Tag.DDSM_MODEL_NAME] == "ddsm-resnet50"
    assert ft.data.tags[Tag.DDSM_MODEL_VERSION] == str(champion.version)
    assert ft.data.tags[Tag.DDSM_SOURCE_RUN_ID] == pre.info.run_id
    for tag in (Tag.CODE_VERSION, Tag.DATASET_FINGERPRINT, Tag.SPLIT_HASH, Tag.CONFIG_HASH):
        assert ft.data.tags.get(tag), tag
    artifacts = {a.path for a in client.list_artifacts(ft.info.run_id)}
    assert {"config", "data", "eval", "model", "weights"} <= artifacts
    eval_files = {a.path for a in client.list_artifacts(ft.info.run_id, "eval")}
    assert {Artifact.PREDICTIONS, Artifact.ROC_PLOT} <= eval_files
    full = client.get_run(ft.info.run_id)
    assert {d.dataset.digest for d in full.inputs.dataset_inputs} == {ft.data.tags[Tag.DATASET_FINGERPRINT]}

    # No patient identifier planted in the DICOM headers reached the server.
    planted = planted_patient_identifiers(tiny_data)
    assert planted, "the look-alike data should carry patient tags to test against"
    for run in (pre, ft):
        text = all_logged_text(client, run, tmp_path / f"dl-{run.info.run_id}")
        leaked = [p for p in planted if p in text]
        assert not leaked, f"patient identifiers logged: {leaked[:3]}"

    # Rerunning the same command finds the finished run and adds nothing.
    again = run_entry("pipelines.finetune", ["--dataset", "mias", "--model", "resnet50", "--init", "ddsm",
                                             "--ft-fraction", "0.2", "--data-root", str(tiny_data),
                                             "--experiment", "entry-points", *SMALL],
                      uri=uri, cwd=tmp_path, cache=tmp_path / "cache")
    assert "already finished" in again.stdout
    assert len(mlflow.search_runs(experiment_names=["entry-points"], output_format="list")) == 2


def test_finetune_from_ddsm_without_registered_model_is_a_clear_error(server, tiny_data, tmp_path):
    proc = run_entry("pipelines.finetune", ["--dataset", "mias", "--model", "vgg16", "--init", "ddsm",
                                            "--data-root", str(tiny_data), "--experiment", "no-model", *SMALL],
                     uri=server.url, cwd=tmp_path, cache=tmp_path / "cache", check=False)
    assert proc.returncode != 0
    assert "no registered model 'ddsm-vgg16'" in proc.stderr
    assert "tlstudy pretrain --model vgg16" in proc.stderr
    mlflow.set_tracking_uri(server.url)
    assert mlflow.search_runs(experiment_names=["no-model"], output_format="list") == []


def test_mlflow_run_finetune_entry_point(server, tiny_data, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "TLSTUDY_CACHE": str(tmp_path / "cache"),
           "MLFLOW_EXPERIMENT_NAME": "mlflow-run"}
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(bin_dir / "mlflow"), "run", str(ROOT), "-e", "finetune", "--env-manager", "local",
           "-P", "dataset=mias", "-P", "image_size=64", "-P", "epochs=1", "-P", "batch_size=8",
           "-P", f"data_root={tiny_data}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    mlflow.set_tracking_uri(server.url)
    runs = mlflow.search_runs(experiment_names=["mlflow-run"], output_format="list")
    assert len(runs) == 1, [r.info.run_name for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset"] == "mias" and run.data.params["ft_fraction"] == "0.1"
    assert Metric.TEST_AUC in run.data.metrics
    assert run.data.tags[Tag.STAGE] == "finetune"


def test_pretrain_and_finetune_on_postgresql(tiny_data, tmp_path):
    pg = start_postgres(tmp_path / "pg")
    try:
        handle = start_mlflow_server(tmp_path / "server", backend_uri=pg.uri)
        try:
            pretrain_then_finetune(handle.url, tiny_data, tmp_path, "postgres")
            client = MlflowClient(handle.url)
            champion = client.get_model_version_by_alias("ddsm-resnet50", "champion")
            mlflow.set_tracking_uri(handle.url)
            runs = mlflow.search_runs(experiment_names=["postgres"], output_format="list")
            ft = [r for r in runs if r.data.tags[Tag.STAGE] == "finetune"]
            assert len(ft) == 1 and ft[0].info.status == "FINISHED"
            assert ft[0].data.tags[Tag.DDSM_MODEL_VERSION] == str(champion.version)
        finally:
            handle.stop()
    finally:
        pg.stop()
