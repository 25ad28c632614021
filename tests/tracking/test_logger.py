"""RunLogger against a real MLflow server: params, metrics, artifacts, model, inputs, batching."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from tracking.logger import RunLogger, TrackingError, find_finished_run  # noqa: E402
from tracking.query import eq, search_study_runs  # noqa: E402
from tracking.schema import Artifact, Metric, Param, Tag, format_fraction, run_name  # noqa: E402
from tracking.serialize import config_hash, flatten_params  # noqa: E402

EXPERIMENT = "tlstudy-logger"
N_EPOCHS, STEPS_PER_EPOCH = 3, 10


def _log_batch_calls(server) -> int:
    return server.log_path.read_text(errors="replace").count("/api/2.0/mlflow/runs/log-batch")


@pytest.fixture(scope="module")
def logged(mlflow_server, tmp_path_factory):
    """One fine-tune-like run logged through the server; returns (run_id, log-batch calls, stats, model)."""
    from tracking.logger import LoggerSettings, RetryPolicy

    settings = LoggerSettings(work_dir=tmp_path_factory.mktemp("work"), flush_interval_s=60.0,
                              retry=RetryPolicy(attempts=2, initial_delay_s=0.1))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    cfg = {"dataset": "mias", "model": "tiny", "init": "ddsm", "ft_fraction": 0.1, "transfer": "all",
           "seed": 0, "optim": {"lr": 0.001, "epochs": N_EPOCHS}}
    params = flatten_params(cfg) | {Param.FT_FRACTION: format_fraction(0.1)}
    before = _log_batch_calls(mlflow_server)
    with RunLogger(run_name("finetune", "mias", "tiny", "ddsm", 0.1, "all", 0), config_hash(cfg),
                   stage="finetune", experiment=EXPERIMENT, tracking_uri=mlflow_server.url,
                   tags={Tag.DATASET_FINGERPRINT: "fp-mias-01", Tag.SPLIT_HASH: "split-01"},
                   settings=settings) as run:
        assert not run.completed and not run.resumed
        run.log_params(params)
        run.log_dict(cfg, Artifact.CONFIG)
        manifest = pd.DataFrame({"image_id": ["mias-a", "mias-b", "mias-c"], "label": [0, 1, 0],
                                 "split": ["train", "val", "test"]})
        run.log_dataframe(manifest, Artifact.SPLIT_MANIFEST)
        run.log_dataset(manifest, name="mias", digest="fp-mias-01", source="/data/mias", context="train")
        for epoch in range(N_EPOCHS):
            for step in range(STEPS_PER_EPOCH):  # per-step metrics stay in the buffer
                run.log_metric("step_loss", 1.0 / (1 + epoch * STEPS_PER_EPOCH + step),
                               step=epoch * STEPS_PER_EPOCH + step)
            run.on_epoch_end({"epoch": epoch, Metric.TRAIN_LOSS: 0.9 - 0.1 * epoch,
                              Metric.VAL_AUC: 0.6 + 0.1 * epoch, "note": "ignored"})
        run.log_metrics({Metric.TEST_AUC: 0.81, Metric.TEST_AUC_CI_LOW: 0.72, Metric.TEST_AUC_CI_HIGH: 0.9})
        pd_pred = pd.DataFrame({"image_id": ["mias-c"], "label": [0], "score": [0.2]})
        run.log_dataframe(pd_pred, Artifact.PREDICTIONS)
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        run.log_figure(fig, Artifact.ROC_PLOT)
        plt.close(fig)
        run.log_model(model, torch.randn(2, 4))
    return run.run_id, _log_batch_calls(mlflow_server) - before, run.stats, model, cfg


def test_run_is_queryable_with_search_runs(mlflow_server, logged):
    run_id, *_ = logged
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        frame = mlflow.search_runs(
            experiment_names=[EXPERIMENT],
            filter_string=f"params.ft_fraction = '0.1' and {eq('tags', Tag.STAGE, 'finetune')}",
        )
    finally:
        mlflow.set_tracking_uri(previous)
    assert list(frame["run_id"]) == [run_id]
    row = frame.iloc[0]
    assert row["status"] == "FINISHED"
    assert row["tags.mlflow.runName"] == "mias·tiny·ddsm·ft10·s0"
    assert row["params.dataset"] == "mias" and row["params.optim.lr"] == "0.001"
    assert row["metrics.test_auc"] == pytest.approx(0.81)
    assert row["metrics.val_auc"] == pytest.approx(0.8)  # latest epoch
    for tag in (Tag.CODE_VERSION, Tag.CODE_DIRTY, Tag.CONFIG_HASH, Tag.DATASET_FINGERPRINT, Tag.SPLIT_HASH):
        assert row[f"tags.{tag}"], tag
    assert not any(c.startswith("metrics.note") for c in frame.columns)

    ours = search_study_runs(EXPERIMENT, stage="finetune", finished_only=True, tracking_uri=mlflow_server.url)
    assert list(ours["run_id"]) == [run_id]
    assert ours.loc[0, "params.ft_fraction"] == "0.1"
    assert find_finished_run(EXPERIMENT, row["tags.tlstudy.config_hash"], tracking_uri=mlflow_server.url).info.run_id == run_id


def test_metrics_are_sent_in_batches_with_full_history(mlflow_server, logged):
    run_id, batch_calls, stats, *_ = logged
    client = MlflowClient(mlflow_server.url)
    history = client.get_metric_history(run_id, Metric.VAL_AUC)
    assert [(m.step, round(m.value, 6)) for m in history] == [(0, 0.6), (1, 0.7), (2, 0.8)]
    assert len(client.get_metric_history(run_id, "step_loss")) == N_EPOCHS * STEPS_PER_EPOCH
    n_values = N_EPOCHS * (STEPS_PER_EPOCH + 2) + 3
    assert stats.metrics_sent == n_values
    # Far fewer requests than values: at most one flush per epoch plus set-up and the end.
    assert 1 <= batch_calls == stats.batches_sent <= N_EPOCHS + 3
    assert batch_calls < n_values / 5


def test_artifacts_model_and_inputs(mlflow_server, logged, tmp_path):
    run_id, _, _, model, cfg = logged
    client = MlflowClient(mlflow_server.url)
    cfg_path = client.download_artifacts(run_id, Artifact.CONFIG, str(tmp_path))
    assert json.loads(open(cfg_path).read()) == json.loads(json.dumps(cfg))
    manifest = pd.read_csv(client.download_artifacts(run_id, Artifact.SPLIT_MANIFEST, str(tmp_path)))
    assert list(manifest.columns) == ["image_id", "label", "split"]
    png = client.download_artifacts(run_id, Artifact.ROC_PLOT, str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(client.download_artifacts(run_id, Artifact.PREDICTIONS, str(tmp_path)))) == 1

    mlmodel = yaml.safe_load(open(client.download_artifacts(run_id, f"{Artifact.MODEL}/MLmodel", str(tmp_path))))
    assert "pytorch" in mlmodel["flavors"]
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert inputs[0]["tensor-spec"]["shape"] == [-1, 4]
    assert mlmodel["saved_input_example_info"]["artifact_path"] == "input_example.json"

    weights = client.download_artifacts(run_id, Artifact.STATE_DICT, str(tmp_path))
    state = torch.load(weights, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())

    dataset_inputs = client.get_run(run_id).inputs.dataset_inputs
    assert [(d.dataset.name, d.dataset.digest) for d in dataset_inputs] == [("mias", "fp-mias-01")]
    assert dataset_inputs[0].tags[0].value == "train"


def test_changing_a_logged_param_is_refused(mlflow_server, fast_settings):
    with RunLogger("study params", "paramclash", stage="study", experiment=EXPERIMENT,
                   tracking_uri=mlflow_server.url, settings=fast_settings) as run:
        run.log_params({"lr": 0.1})
        run.log_params({"lr": 0.1})  # same value again is fine
        with pytest.raises(TrackingError, match="params already logged"):
            run.log_params({"lr": 0.2})


def test_child_runs_point_to_their_parent(mlflow_server, fast_settings):
    with RunLogger("study", "parentrun", stage="study", experiment=EXPERIMENT,
                   tracking_uri=mlflow_server.url, settings=fast_settings) as parent:
        with RunLogger("cca mias resnet50 ddsm s0", "childrun", stage="cca", experiment=EXPERIMENT,
                       parent_run_id=parent.run_id, tracking_uri=mlflow_server.url, settings=fast_settings) as child:
            child.log_metrics({"cca_block1": 0.9})
    run = MlflowClient(mlflow_server.url).get_run(child.run_id)
    assert run.data.tags[Tag.PARENT_RUN_ID] == parent.run_id


def test_failure_in_the_block_marks_the_run_failed(mlflow_server, fast_settings):
    with pytest.raises(RuntimeError, match="boom"):
        with RunLogger("study failing", "failing", stage="study", experiment=EXPERIMENT,
                       tracking_uri=mlflow_server.url, settings=fast_settings) as run:
            run.on_epoch_end({"epoch": 0, "train_loss": 1.0})
            raise RuntimeError("boom")
    assert MlflowClient(mlflow_server.url).get_run(run.run_id).info.status == "FAILED"
    assert not run.journal_dir.exists()
    assert list(run.journal_dir.parent.glob("failing.failed-*"))


def test_log_file_applies_the_patient_identifier_check(mlflow_server, fast_settings, tmp_path):
    """A child log uploaded with log_file gets the same check as log_text; binary files pass."""
    from tracking.privacy import PrivacyError

    child_log = tmp_path / "child.log"
    child_log.write_text("epoch 0 done\nskipped Mass-Training_P_00001_LEFT_CC/1.dcm: truncated\n")
    clean_log = tmp_path / "clean.log"
    clean_log.write_text("epoch 0 done\nskipped ddsm-0a1b2c3d4e5f6a7b: truncated\n")
    figure = tmp_path / "roc.png"
    figure.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00P_00001 in a binary chunk")
    with RunLogger("log file privacy", "logfile01", stage="finetune", experiment=EXPERIMENT,
                   tracking_uri=mlflow_server.url, settings=fast_settings) as run:
        with pytest.raises(PrivacyError, match="logs/child.log"):
            run.log_file(child_log, "logs/child.log")
        run.log_file(clean_log, "logs/clean.log")
        run.log_file(figure, "eval/roc.png")
    names = {a.path for a in MlflowClient(mlflow_server.url).list_artifacts(run.run_id, "logs")}
    assert names == {"logs/clean.log"}
