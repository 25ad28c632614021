"""The docker-compose stack parses and is complete (no Docker engine here: static checks)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER = ROOT / "docker"
LONG_RUNNING = ("postgres", "minio", "mlflow")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services_volumes_and_healthchecks(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "minio-create-bucket", "mlflow"}
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["minio-create-bucket"]["image"].startswith("minio/mc")
    for name, svc in services.items():
        check = svc["healthcheck"]
        assert check["test"] and check["interval"] and check["retries"], name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])

    named = set(compose["volumes"])
    assert named == {"postgres-data", "minio-data", "mlflow-auth"}
    for name in LONG_RUNNING:
        mounts = [v.split(":", 1)[0] for v in services[name]["volumes"]]
        assert all(m in named for m in mounts), (name, mounts)

    deps = services["mlflow"]["depends_on"]
    assert deps["postgres"]["condition"] == deps["minio"]["condition"] == "service_healthy"
    assert deps["minio-create-bucket"]["condition"] == "service_completed_successfully"
    assert "mc mb --ignore-existing" in " ".join(services["minio-create-bucket"]["entrypoint"])


def test_mlflow_server_configuration(compose):
    mlflow = compose["services"]["mlflow"]
    assert mlflow["build"]["dockerfile"] == "docker/mlflow.Dockerfile"
    env = mlflow["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/mlflow/basic_auth.ini"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_AUTH_ADMIN_PASSWORD")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"].startswith("${MLFLOW_FLASK_SERVER_SECRET_KEY")
    dockerfile = (DOCKER / "mlflow.Dockerfile").read_text()
    assert re.search(r"pip install .*mlflow\[auth\]==.*psycopg2-binary.*boto3", dockerfile)  # basic-auth needs Flask-WTF
    entry = (DOCKER / "mlflow-entrypoint.sh").read_text()
    for flag in ("--app-name basic-auth", "--artifacts-destination \"s3://", "postgresql+psycopg2://"):
        assert flag in entry
    ini = (DOCKER / "basic_auth.ini").read_text()
    assert "authenticate_request_basic_auth" in ini and "admin_password" not in ini.replace("# ", "")


_SECRET_KEY = re.compile(r"(?i)^\s*-?\s*([A-Z0-9_]*(PASSWORD|SECRET)[A-Z0-9_]*)\s*[:=]\s*(.*?)\s*$")


def test_no_password_literal_in_the_stack():
    files = [COMPOSE, *sorted(p for p in DOCKER.rglob("*") if p.is_file())]
    for path in files:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            m = _SECRET_KEY.match(line)
            if not m:
                continue
            value = m.group(3).strip("\"'")
            ok = value.startswith("${") or value.startswith("CHANGE_ME") or value == ""
            assert ok, f"{path.relative_to(ROOT)}:{lineno} holds a password literal"
    for word in ("password1234", "minioadmin", "mlflow_password"):
        for path in files:
            assert word not in path.read_text(), f"{path} contains the default credential {word!r}"
    example = (DOCKER / ".env.example").read_text()
    assert "POSTGRES_PASSWORD=CHANGE_ME" in example and "MLFLOW_AUTH_ADMIN_PASSWORD=CHANGE_ME" in example


def test_a_local_env_file_is_git_ignored():
    env_file = ROOT / ".env"
    if not env_file.exists():
        assert not (ROOT / "docker" / ".env").exists()
        return
    out = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert out.returncode == 0, ".env exists but is not git-ignored: add it to .gitignore"
