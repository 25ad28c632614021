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
    # check-secrets added deliberately (issue 12): it runs first and has nothing to health-check.
    assert set(services) == {"check-secrets", "postgres", "minio", "minio-create-bucket", "mlflow"}
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["minio-create-bucket"]["image"].startswith("minio/mc")
    for name, svc in services.items():
        if name == "check-secrets":
            continue
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


# --------------------------------------------------------------------------- hardening (issue 12)

SECRETS = ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
_DEFAULT = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")


def _example_env() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


def _check(env: dict[str, str], *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(DOCKER / "check-secrets.sh"), *names], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("value", "words"), [
    ("CHANGE_ME", "CHANGE_ME placeholder"),
    ("longer-but-CHANGE_ME-inside", "CHANGE_ME placeholder"),
    ("short-pw", "8 characters long; secrets need at least 12"),
    ("", "0 characters long"),
])
def test_secret_check_refuses_placeholders_and_short_values_in_one_line(value, words):
    out = _check({"POSTGRES_PASSWORD": value}, "POSTGRES_PASSWORD")
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "POSTGRES_PASSWORD" in lines[0] and words in lines[0]
    assert value in ("", "CHANGE_ME") or value not in lines[0]  # never echoes the value


def test_secret_check_accepts_real_secrets_and_refuses_the_example_file():
    good = {name: f"{name.lower()}-7f3a9c1e5b" for name in SECRETS}
    assert _check(good, *SECRETS).returncode == 0
    example = _example_env()
    assert all(example[name] == "CHANGE_ME" for name in SECRETS)
    assert _check(example, *SECRETS).returncode == 1


def test_every_store_waits_for_the_secret_check_and_the_server_checks_again(compose):
    services = compose["services"]
    check = services["check-secrets"]
    assert check["entrypoint"][-len(SECRETS):] == list(SECRETS)
    assert set(check["environment"]) == set(SECRETS)
    for name in ("postgres", "minio"):  # before PostgreSQL or MinIO initialise with a placeholder
        assert services[name]["depends_on"]["check-secrets"]["condition"] == "service_completed_successfully"
    assert "COPY --chmod=0755 docker/check-secrets.sh /usr/local/bin/check-secrets.sh" in (
        DOCKER / "mlflow.Dockerfile").read_text()


def test_server_entrypoint_refuses_a_placeholder_before_starting_mlflow(tmp_path):
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "POSTGRES_USER": "mlflow", "POSTGRES_DB": "mlflow",
           "MLFLOW_BUCKET": "mlflow", "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000", "AWS_ACCESS_KEY_ID": "minio",
           "POSTGRES_PASSWORD": "pg-7f3a9c1e5b22", "AWS_SECRET_ACCESS_KEY": "minio-7f3a9c1e5b",
           "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-7f3a9c1e5b", "MLFLOW_FLASK_SERVER_SECRET_KEY": "CHANGE_ME"}
    marker = tmp_path / "mlflow-started"
    (tmp_path / "mlflow").write_text(f"#!/bin/sh\ntouch {marker}\n")  # stands in for the server binary
    (tmp_path / "mlflow").chmod(0o755)
    out = subprocess.run(["sh", str(DOCKER / "mlflow-entrypoint.sh")], env=env, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in out.stderr and not marker.exists()
    env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "flask-7f3a9c1e5b"
    assert subprocess.run(["sh", str(DOCKER / "mlflow-entrypoint.sh")], env=env, check=False).returncode == 0
    assert marker.exists()  # with real secrets it goes on to start the server


def test_images_are_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc["image"]
        if "build" in svc:
            continue  # built here from the pinned Dockerfile
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
    assert re.fullmatch(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", compose["services"]["minio"]["image"])
    assert re.fullmatch(r"minio/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ",
                        compose["services"]["minio-create-bucket"]["image"])


def test_server_is_published_on_loopback_unless_configured(compose):
    (published,) = compose["services"]["mlflow"]["ports"]
    assert _DEFAULT.sub(lambda m: m.group(2), published) == "127.0.0.1:5000:5000"
    assert "${MLFLOW_BIND_ADDRESS:-127.0.0.1}" in published
    assert _example_env()["MLFLOW_BIND_ADDRESS"] == "127.0.0.1"


def test_server_docs_cover_compose_v2_tls_and_secrets():
    text = (ROOT / "docs" / "server.md").read_text()
    for phrase in ("Compose v2", "reverse proxy", "TLS", "MLFLOW_BIND_ADDRESS", "CHANGE_ME", "12 characters",
                   "TLSTUDY_ID_KEY_FILE"):
        assert phrase in text, phrase
