"""Fixtures for the tracking tests: one real MLflow server per session, fast logger settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests.servers` must import however pytest is started
    sys.path.insert(0, str(_ROOT))

from tests.servers import start_mlflow_server  # noqa: E402
from tracking.logger import LoggerSettings, RetryPolicy  # noqa: E402


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, proxied artifacts) shared by the session."""
    handle = start_mlflow_server(tmp_path_factory.mktemp("mlflow-shared"))
    yield handle
    handle.stop()


@pytest.fixture()
def fast_settings(tmp_path) -> LoggerSettings:
    """Logger settings with a journal in tmp_path, quick flushes and short retries."""
    return LoggerSettings(
        work_dir=tmp_path / ".tlstudy",
        flush_interval_s=0.5,
        retry=RetryPolicy(attempts=2, initial_delay_s=0.1, backoff=2.0),
    )


@pytest.fixture()
def tiny_model():
    """A two-layer torch model with a handful of parameters."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
