"""Real servers for tests: an ``mlflow server`` subprocess and a throw-away PostgreSQL 15.

Plain functions (no fixtures) so any test module can build its own fixtures on them.
Missing PostgreSQL binaries skip the calling test with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from tracking.server import ServerHandle, free_port, start_server

__all__ = ["free_port", "start_mlflow_server", "start_postgres", "PostgresHandle"]

PG_BIN = Path(os.environ.get("TLSTUDY_PG_BIN", "/usr/lib/postgresql/15/bin"))


def start_mlflow_server(
    tmp_path: str | Path,
    backend_uri: str | None = None,
    *,
    port: int = 0,
    artifacts_dir: str | Path | None = None,
    app_name: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 240.0,
) -> ServerHandle:
    """Start ``python -m mlflow server`` (this interpreter) on a free loopback port.

    The backend defaults to ``sqlite:///<tmp_path>/mlflow.db`` and artifacts to
    ``<tmp_path>/mlartifacts``; passing the same ones again restarts on the same store.
    The caller stops it with ``handle.stop()``.
    """
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    backend_uri = backend_uri or f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    artifacts = Path(artifacts_dir) if artifacts_dir is not None else tmp_path / "mlartifacts"
    port = port or free_port()
    return start_server(
        backend_uri,
        artifacts,
        port=port,
        app_name=app_name,
        env=env,
        log_path=tmp_path / f"mlflow-server-{port}.log",
        timeout=timeout,  # generous: a loaded CI machine can take a minute or more
    )


@dataclass
class PostgresHandle:
    """A running PostgreSQL cluster in a temp folder."""

    uri: str  # postgresql+psycopg2://user@127.0.0.1:port/db
    port: int
    data_dir: Path
    _stop: Callable[[], None] = field(repr=False)

    def stop(self) -> None:
        """Stop the cluster and delete its folder. Idempotent."""
        self._stop()


def _run(cmd: list[str], user: str | None, what: str) -> None:
    full = ["runuser", "-u", user, "--", *cmd] if user else cmd
    proc = subprocess.run(full, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def start_postgres(tmp_path: str | Path | None = None, database: str = "mlflow") -> PostgresHandle:
    """Start a PostgreSQL 15 cluster (``initdb`` + ``pg_ctl``) on a free loopback port.

    Runs as the unprivileged ``postgres`` (or ``nobody``) user when the tests run as
    root; the cluster lives in a fresh folder under the system temp dir (``tmp_path`` is
    only used for the server log) with its unix socket there too. Trust auth on
    loopback only. Skips the test if the binaries are missing.
    """
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not (initdb.exists() and pg_ctl.exists()):
        pytest.skip(f"PostgreSQL 15 binaries not found in {PG_BIN} (set TLSTUDY_PG_BIN)")
    try:
        import psycopg2
    except ImportError:
        pytest.skip("psycopg2 is not installed (pip install psycopg2-binary)")

    user: str | None = None
    base = Path(tempfile.mkdtemp(prefix="tlpg-"))  # short path: unix socket names are limited
    if os.geteuid() == 0:
        for candidate in ("postgres", "nobody"):
            try:
                pw = pwd.getpwnam(candidate)
            except KeyError:
                continue
            user = candidate
            os.chown(base, pw.pw_uid, pw.pw_gid)
            break
        if user is None or shutil.which("runuser") is None:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip("running as root without a 'postgres'/'nobody' user or runuser to start PostgreSQL")
    data_dir = base / "data"
    log_file = base / "server.log"
    port = free_port()
    db_user = "tlstudy"
    _run([str(initdb), "-D", str(data_dir), "-U", db_user, "--auth=trust", "-E", "UTF8", "--no-sync"],
         user, "initdb")
    opts = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB "
        "-c max_connections=50"
    )
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        try:
            _run([str(pg_ctl), "-D", str(data_dir), "-m", "immediate", "-w", "stop"], user, "pg_ctl stop")
        except RuntimeError:
            pass
        if tmp_path is not None and log_file.exists():
            try:
                shutil.copyfile(log_file, Path(tmp_path) / "postgres.log")
            except OSError:
                pass
        shutil.rmtree(base, ignore_errors=True)

    try:
        _run([str(pg_ctl), "-D", str(data_dir), "-l", str(log_file), "-o", opts, "-w", "-t", "60", "start"],
             user, "pg_ctl start")
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user=db_user, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()
    except Exception as exc:
        log_tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        stop()
        raise RuntimeError(f"PostgreSQL did not start ({exc}); server log:\n{log_tail}") from exc
    except BaseException:
        stop()
        raise
    return PostgresHandle(
        uri=f"postgresql+psycopg2://{db_user}@127.0.0.1:{port}/{database}",
        port=port,
        data_dir=data_dir,
        _stop=stop,
    )
