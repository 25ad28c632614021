"""Server outage and hard crash mid-run: nothing lost, one FINISHED run per config after a re-run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from tests.servers import start_mlflow_server
from tracking.logger import RunLogger, TrackingUnavailableError
from tracking.query import eq, search_study_runs
from tracking.schema import Artifact, Metric, Tag

EXPERIMENT = "tlstudy-resilience"
ROOT = Path(__file__).resolve().parents[2]


def _runs_for(uri: str, config_hash: str):
    return search_study_runs(EXPERIMENT, eq("tags", Tag.CONFIG_HASH, config_hash), tracking_uri=uri)


def _assert_one_finished_run(uri: str, config_hash: str, run_id: str) -> MlflowClient:
    frame = _runs_for(uri, config_hash)
    assert list(frame["run_id"]) == [run_id]
    assert frame.loc[0, "status"] == "FINISHED"
    client = MlflowClient(uri)
    history = client.get_metric_history(run_id, Metric.VAL_AUC)
    assert sorted(m.step for m in history) == [0, 1, 2]  # every epoch, no duplicates
    return client


@pytest.mark.slow  # two server starts on purpose
def test_server_outage_mid_run_is_journaled_and_replayed(tmp_path, fast_settings, tiny_model, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    store = tmp_path / "store"
    config = "outage01"
    server = start_mlflow_server(store)
    try:
        with pytest.raises(TrackingUnavailableError) as err:
            with RunLogger("finetune mias tiny ddsm ft0.1 all s0", config, stage="finetune", experiment=EXPERIMENT,
                           tracking_uri=server.url, settings=fast_settings) as run:
                run.log_params({"dataset": "mias", "seed": 0})
                run.on_epoch_end({"epoch": 0, Metric.TRAIN_LOSS: 0.9, Metric.VAL_AUC: 0.6})
                run.flush(wait=True)
                assert not run.offline
                server.stop()  # the server drops out mid-run
                for epoch in (1, 2):
                    run.on_epoch_end({"epoch": epoch, Metric.TRAIN_LOSS: 0.9 - epoch / 10,
                                      Metric.VAL_AUC: 0.6 + epoch / 10})
                run.log_metrics({Metric.TEST_AUC: 0.77})
                run.log_model(tiny_model, torch.randn(2, 4))
                run.flush(wait=True)
                assert run.offline  # training went on; logging went to the journal
    finally:
        server.stop()
    message = str(err.value)
    journal = run.journal_dir
    assert "Nothing is lost" in message and str(journal) in message and "Re-run the same command" in message
    events = [json.loads(line) for line in (journal / "events.jsonl").read_text().splitlines()]
    assert {"body_done", "metrics", "artifact", "params"} <= {e["op"] for e in events}
    assert (journal / "artifacts" / Artifact.STATE_DICT).is_file()

    server = start_mlflow_server(store)  # back, on the same store (new port)
    try:
        before = _runs_for(server.url, config)
        assert list(before["status"]) == ["RUNNING"]
        assert len(MlflowClient(server.url).get_metric_history(run.run_id, Metric.VAL_AUC)) == 1
        with RunLogger("finetune mias tiny ddsm ft0.1 all s0", config, stage="finetune", experiment=EXPERIMENT,
                       tracking_uri=server.url, settings=fast_settings) as again:
            assert again.resumed and again.completed  # the pipeline skips training
        assert again.run_id == run.run_id
        client = _assert_one_finished_run(server.url, config, run.run_id)
        data = client.get_run(run.run_id).data
        assert data.metrics[Metric.TEST_AUC] == pytest.approx(0.77)
        assert data.params == {"dataset": "mias", "seed": "0"}
        paths = {a.path for a in client.list_artifacts(run.run_id, "weights")}
        assert paths == {Artifact.STATE_DICT}
        assert "MLmodel" in {Path(a.path).name for a in client.list_artifacts(run.run_id, Artifact.MODEL)}
        assert not journal.exists()
    finally:
        server.stop()


_CRASHING_CHILD = """
import os, sys
from pathlib import Path
from tracking.logger import LoggerSettings, RunLogger
settings = LoggerSettings(work_dir=Path(sys.argv[2]), flush_interval_s=0.5)
run = RunLogger("finetune mias tiny random ft0.2 all s0", "crash01", stage="finetune",
                experiment=sys.argv[3], tracking_uri=sys.argv[1], settings=settings).start()
run.log_params({"dataset": "mias"})
run.on_epoch_end({"epoch": 0, "train_loss": 0.9, "val_auc": 0.61})
run.flush(wait=True)
(run.checkpoint_dir / "epoch0.pt").write_bytes(b"checkpoint")
print(run.run_id, flush=True)
os._exit(9)  # killed: no clean-up runs
"""


def test_hard_crash_reattaches_to_the_same_run(mlflow_server, fast_settings):
    proc = subprocess.run([sys.executable, "-c", _CRASHING_CHILD, mlflow_server.url, str(fast_settings.work_dir),
                           EXPERIMENT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-3000:]
    crashed_run_id = proc.stdout.strip().splitlines()[-1]
    with RunLogger("finetune mias tiny random ft0.2 all s0", "crash01", stage="finetune", experiment=EXPERIMENT,
                   tracking_uri=mlflow_server.url, settings=fast_settings) as run:
        assert run.resumed and not run.completed  # training must run again (from its checkpoint)
        assert (run.checkpoint_dir / "epoch0.pt").read_bytes() == b"checkpoint"
        run.log_params({"dataset": "mias"})
        for epoch in range(3):  # epoch 0 again, with another value: the first one is kept
            run.on_epoch_end({"epoch": epoch, Metric.TRAIN_LOSS: 0.8, Metric.VAL_AUC: 0.7 + epoch / 10})
    assert run.run_id == crashed_run_id
    client = _assert_one_finished_run(mlflow_server.url, "crash01", crashed_run_id)
    first = [m for m in client.get_metric_history(crashed_run_id, Metric.VAL_AUC) if m.step == 0]
    assert [m.value for m in first] == [0.61]


def test_unreachable_server_at_start_fails_fast_before_any_work(fast_settings, monkeypatch):
    from tracking.server import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    logger = RunLogger("study down", "down01", stage="study", tracking_uri=url, settings=fast_settings)
    with pytest.raises(TrackingUnavailableError, match="cannot reach the tracking server .* nothing was run"):
        with logger:
            pytest.fail("the block must not run when the server is unreachable")
    # The journal lock is released: a later attempt can open it.
    logger.journal.open()
    logger.journal.close()


def test_killed_run_is_not_finished_by_a_rerun_under_another_experiment(mlflow_server, fast_settings):
    """The journal is keyed by experiment too: the same config rerun under Y starts a run in Y
    and leaves the killed run in X alone."""
    x, y = f"{EXPERIMENT}-x", f"{EXPERIMENT}-y"
    proc = subprocess.run([sys.executable, "-c", _CRASHING_CHILD, mlflow_server.url, str(fast_settings.work_dir), x],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-3000:]
    killed_run_id = proc.stdout.strip().splitlines()[-1]
    with RunLogger("finetune mias tiny random ft0.2 all s0", "crash01", stage="finetune", experiment=y,
                   tracking_uri=mlflow_server.url, settings=fast_settings) as run:
        assert not run.resumed and not run.completed
        assert not (run.checkpoint_dir / "epoch0.pt").exists()  # X's checkpoint is not Y's
        run.log_params({"dataset": "mias"})
    assert run.run_id != killed_run_id
    client = MlflowClient(mlflow_server.url)
    assert client.get_run(killed_run_id).info.status == "RUNNING"  # untouched in X
    assert client.get_experiment(client.get_run(killed_run_id).info.experiment_id).name == x
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FINISHED"
    assert client.get_experiment(finished.info.experiment_id).name == y
