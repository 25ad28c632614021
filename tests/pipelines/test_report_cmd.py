"""`tlstudy report` without --experiment picks the most recent study of a real SQLite store."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import Metric as MlMetric
from mlflow.entities import Param as MlParam

from pipelines.cli import main
from tracking.schema import STAGE_FINETUNE, STAGE_STUDY, Metric, Param, Tag
from tracking.store import get_client, get_or_create_experiment


def _log(client: MlflowClient, experiment: str, stage: str, start: int, **params: str) -> str:
    exp_id = get_or_create_experiment(client, experiment)
    run = client.create_run(exp_id, start_time=start, tags={Tag.STAGE: stage})
    metrics = [MlMetric(Metric.TEST_AUC, 0.8, start, 0)] if stage == STAGE_FINETUNE else []
    client.log_batch(run.info.run_id, metrics=metrics, params=[MlParam(k, v) for k, v in params.items()])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def _finetune(client: MlflowClient, experiment: str, start: int) -> str:
    return _log(client, experiment, STAGE_FINETUNE, start, **{
        Param.DATASET: "mias", Param.MODEL: "resnet50", Param.INIT: "random", Param.FT_FRACTION: "0.0",
        Param.TRANSFER: "all", Param.SEED: "0"})


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return get_client(uri)


def _report(*args: str):
    return CliRunner().invoke(main, ["report", "--no-log", "--no-figures", "--no-predictions", *args])


def test_bare_report_takes_the_most_recent_study(store, tmp_path):
    for experiment, start in (("tlstudy-demo", 1_000_000), ("tlstudy-quick", 2_000_000)):
        _log(store, experiment, STAGE_STUDY, start)
        _finetune(store, experiment, start + 10)
    _finetune(store, "scratch", 3_000_000)  # newer, but not a study
    result = _report()
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("reporting experiment 'tlstudy-quick' (most recent study")
    assert "report of experiment 'tlstudy-quick': 1 fine-tune runs" in result.output
    assert (tmp_path / "reports" / "tlstudy-quick" / "report.md").is_file()
    # an explicit --experiment is honoured as before
    explicit = _report("--experiment", "tlstudy-demo")
    assert explicit.exit_code == 0, explicit.output
    assert "reporting experiment" not in explicit.output
    assert "report of experiment 'tlstudy-demo'" in explicit.output


def test_without_a_study_the_single_tlstudy_experiment_is_used(store):
    _finetune(store, "tlstudy", 1_000_000)
    get_or_create_experiment(store, "unrelated")
    result = _report()
    assert result.exit_code == 0, result.output
    assert result.output.startswith("reporting experiment 'tlstudy' (the only experiment with tlstudy runs")


def test_cannot_choose_lists_the_experiments_in_one_line(store):
    _finetune(store, "tlstudy-a", 1_000_000)
    _finetune(store, "tlstudy-b", 2_000_000)
    result = _report()
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: cannot choose an experiment to report (no study run")
    assert "--experiment NAME" in lines[0]
    assert "Default, tlstudy-a, tlstudy-b" in lines[0]
    assert "Traceback" not in result.output


def test_no_store_here_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    result = _report()
    assert result.exit_code == 1
    assert result.output == (f"Error: no tracking database at {tmp_path.resolve() / 'mlflow.db'}: run a study first "
                             "(`tlstudy study --profile quick`), or pass --tracking-uri\n")
    assert not (tmp_path / "mlflow.db").exists()
