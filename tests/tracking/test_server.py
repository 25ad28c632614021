"""tracking.server: a failing start reports the server's output; basic auth as in the compose stack."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.servers import start_mlflow_server
from tracking.logger import RunLogger
from tracking.server import ServerError, start_server

ROOT = Path(__file__).resolve().parents[2]


def test_failed_start_names_the_backend_and_shows_the_log(tmp_path):
    with pytest.raises(ServerError) as err:
        start_server("nosuchdb://nowhere", tmp_path / "art", timeout=120, log_path=tmp_path / "server.log")
    message = str(err.value)
    assert "nosuchdb://nowhere" in message and "exited with code" in message
    assert str(tmp_path / "server.log") in message


@pytest.mark.slow  # its own server with the auth app
def test_basic_auth_server_with_the_stack_config(tmp_path, fast_settings, monkeypatch):
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs mlflow[auth] (Flask-WTF)")
    ini = (ROOT / "docker" / "basic_auth.ini").read_text()
    ini = ini.replace("sqlite:////mlflow/auth/basic_auth.db", f"sqlite:///{tmp_path / 'auth.db'}")
    (tmp_path / "auth.ini").write_text(ini)
    password = secrets.token_urlsafe(16)  # generated per test: no literal anywhere
    server = start_mlflow_server(
        tmp_path, app_name="basic-auth",
        env={"MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini"), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
             "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)},
    )
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30)
        assert err.value.code == 401
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        with RunLogger("study auth", "authrun", stage="study", tracking_uri=server.url, settings=fast_settings) as run:
            run.log_metrics({"x": 1.0})
        assert MlflowClient(server.url).get_run(run.run_id).info.status == "FINISHED"
    finally:
        server.stop()
