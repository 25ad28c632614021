"""tracking.launcher: the server check before a run opens (dead server, basic-auth 401 / 403)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port, start_mlflow_server
from tracking.launcher import TrackingAuthError, check_server
from tracking.logger import TrackingUnavailableError

ROOT = Path(__file__).resolve().parents[2]


def test_dead_server_is_one_line(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingUnavailableError) as info:
        check_server(uri)
    message = str(info.value)
    assert "\n" not in message and uri in message and "nothing was run" in message


def test_non_http_stores_are_not_probed(tmp_path):
    check_server(f"sqlite:///{tmp_path / 'x.db'}")
    assert not (tmp_path / "x.db").exists()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs mlflow[auth] (Flask-WTF)")
    tmp = tmp_path_factory.mktemp("auth")
    ini = (ROOT / "docker" / "basic_auth.ini").read_text()  # default_permission = READ
    (tmp / "auth.ini").write_text(ini.replace("sqlite:////mlflow/auth/basic_auth.db", f"sqlite:///{tmp / 'auth.db'}"))
    password = secrets.token_urlsafe(16)
    server = start_mlflow_server(tmp, app_name="basic-auth", env={
        "MLFLOW_AUTH_CONFIG_PATH": str(tmp / "auth.ini"), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)})
    yield server, password
    server.stop()


@pytest.mark.slow  # its own server with the auth app
def test_wrong_password_names_the_server_the_user_and_what_to_set(auth_server, monkeypatch):
    server, password = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password + "x")
    with pytest.raises(TrackingAuthError) as info:
        check_server(server.url)
    message = str(info.value)
    assert server.url in message and "user 'admin'" in message and "HTTP 401" in message
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in message
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    with pytest.raises(TrackingAuthError, match="anonymous client"):
        check_server(server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    check_server(server.url)  # the right credentials pass


@pytest.mark.slow  # its own server with the auth app
def test_403_from_the_entry_point_is_one_line(auth_server, tmp_path):
    from mlflow.server import get_app_client

    from tlcore.data.synth import SynthConfig, generate

    server, password = auth_server
    env = {**os.environ, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password,
           "MLFLOW_TRACKING_URI": server.url}
    user_password = secrets.token_urlsafe(16)
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password)
    try:
        from mlflow import MlflowClient

        MlflowClient(server.url).create_experiment("guarded")
        get_app_client("basic-auth", tracking_uri=server.url).create_user("reader", user_password)
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    generate(tmp_path / "data", SynthConfig(scale="tiny", seed=0))
    env.update(MLFLOW_TRACKING_USERNAME="reader", MLFLOW_TRACKING_PASSWORD=user_password,
               TLSTUDY_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "pipelines.finetune", "--data-root", str(tmp_path / "data"),
                           "--experiment", "guarded", "--no-progress"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert server.url in lines[0] and "user 'reader'" in lines[0] and "HTTP 403" in lines[0]


def _launcher_run(server_url: str, experiment: str, params: dict[str, str]):
    """A run as `mlflow run` leaves it for the entry point: RUNNING, -P values logged shell-quoted."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient(server_url)
    exp_id = client.create_experiment(experiment)
    run = client.create_run(exp_id)
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return client, run.info.run_id


def test_adopted_run_keeps_the_launchers_spelling_of_equal_params(mlflow_server, fast_settings, monkeypatch):
    from tracking.logger import RunLogger

    client, run_id = _launcher_run(mlflow_server.url, "launcher-spelling",
                                   {"ft_fraction": "0", "lr": "1e-3", "data_root": "''", "epochs": "2.0"})
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    same = {("data_root", ""): True}.get
    with RunLogger("finetune x", "hashspell", stage="finetune", experiment="launcher-spelling",
                   tracking_uri=mlflow_server.url, settings=fast_settings) as run:
        run.log_params({"ft_fraction": 0.0, "lr": 0.001, "data_root": "/data", "epochs": 2, "model": "vgg16"},
                       same=lambda key, text: bool(same((key, text))))
    assert run.run_id == run_id  # adopted
    params = client.get_run(run_id).data.params
    assert params == {"ft_fraction": "0", "lr": "1e-3", "data_root": "''", "epochs": "2.0", "model": "vgg16"}
    assert client.get_run(run_id).info.status == "FINISHED"


def test_adopted_run_with_a_different_value_is_a_clear_error(mlflow_server, fast_settings, monkeypatch):
    from tracking.logger import RunLogger, TrackingError

    client, run_id = _launcher_run(mlflow_server.url, "launcher-conflict", {"lr": "1e-3"})
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    with pytest.raises(TrackingError, match=r"`mlflow run` logged params that differ .*'lr': \('1e-3', '0.01'\)"):
        with RunLogger("finetune y", "hashconf", stage="finetune", experiment="launcher-conflict",
                       tracking_uri=mlflow_server.url, settings=fast_settings) as run:
            run.log_params({"lr": 0.01})
    assert client.get_run(run_id).data.params == {"lr": "1e-3"}


def test_pointer_run_is_tagged_and_deleted_after_the_launcher_ends_it(mlflow_server, monkeypatch):
    from mlflow import MlflowClient

    from tracking.launcher import delete_when_terminated, end_launcher_run_as_pointer
    from tracking.schema import Tag

    client = MlflowClient(mlflow_server.url)
    exp_id = client.create_experiment("pointer")
    target = client.create_run(exp_id).info.run_id
    launcher = client.create_run(exp_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: None)  # the helper is run in-process below
    assert end_launcher_run_as_pointer(client, target) == launcher
    assert client.get_run(launcher).data.tags[Tag.DUPLICATE_OF] == target
    assert end_launcher_run_as_pointer(client, target) is None  # once
    client.set_terminated(launcher, "FINISHED")  # what `mlflow run` does after the entry point exits
    assert delete_when_terminated(launcher, timeout_s=30)
    assert client.get_run(launcher).info.lifecycle_stage == "deleted"
    assert client.get_run(target).info.lifecycle_stage == "active"
