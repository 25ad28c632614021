"""Embedded SQLite store: URI resolution, concurrent first use, a run without any server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tracking.logger import RunLogger, find_finished_run
from tracking.privacy import PrivacyError
from tracking.query import search_study_runs
from tracking.schema import Artifact
from tracking.store import default_tracking_uri, resolve_tracking_uri, sqlite_path

ROOT = Path(__file__).resolve().parents[2]


def test_tracking_uri_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert sqlite_path(default_tracking_uri(tmp_path)) == tmp_path.resolve() / "mlflow.db"
    assert sqlite_path("sqlite:///rel/x.db") == Path("rel/x.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:////tmp/other.db") == "sqlite:////tmp/other.db"


_CHILD = """
import sys
from tracking.store import get_client, get_or_create_experiment
client = get_client(sys.argv[1])
exp = get_or_create_experiment(client, "tlstudy")
run = client.create_run(exp, run_name="child " + sys.argv[2])
client.log_metric(run.info.run_id, "x", float(sys.argv[2]))
client.set_terminated(run.info.run_id)
print(exp)
"""


def test_concurrent_processes_share_a_fresh_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD, uri, str(i)], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    assert len({out.strip() for out, _ in results}) == 1  # one experiment, created once
    frame = search_study_runs("tlstudy", tracking_uri=uri)
    assert sorted(frame["run_name"]) == ["child 0", "child 1", "child 2"]
    assert (frame["status"] == "FINISHED").all()


def test_logger_on_embedded_sqlite_without_server(tmp_path, fast_settings):
    uri = default_tracking_uri(tmp_path)
    with RunLogger("report study", "cfgsqlite", stage="report", tracking_uri=uri, settings=fast_settings) as run:
        run.log_params({"dataset": "mias"})
        run.on_epoch_end({"epoch": 0, "train_loss": 0.5})
        run.log_dataframe(pd.DataFrame({"image_id": ["mias-1"], "label": [0]}), Artifact.PREDICTIONS)
        with pytest.raises(PrivacyError):
            run.log_dataframe(pd.DataFrame({"patient": ["P_00001"]}), "eval/bad.csv")
    found = find_finished_run("tlstudy", "cfgsqlite", tracking_uri=uri)
    assert found is not None and found.data.params == {"dataset": "mias"}
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts next to the database, not in cwd
    assert not run.journal_dir.exists()  # journal removed once FINISHED
