"""Start and stop a real ``mlflow server`` process (proxied artifacts).

Used by ``tlstudy server`` and by the tests. The server runs in its own process group
so that :meth:`ServerHandle.stop` ends the server and the workers it spawned, and
nothing else.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Mapping


_LIVE: "set[ServerHandle]" = set()


def _stop_live_servers() -> None:
    for handle in list(_LIVE):
        handle.stop(grace_s=2.0)


atexit.register(_stop_live_servers)  # never leave a server behind on a normal interpreter exit


class ServerError(RuntimeError):
    """The MLflow server could not be started or did not become healthy."""


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(eq=False)
class ServerHandle:
    """A running ``mlflow server``: its URL, process and log file."""

    url: str
    process: subprocess.Popen
    backend_uri: str
    artifacts_destination: str
    log_path: Path
    port: int
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def is_running(self) -> bool:
        """True while the server process has not exited."""
        return self.process.poll() is None

    def log_tail(self, n_chars: int = 4000) -> str:
        """The last characters of the server's combined stdout/stderr."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-n_chars:]

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the server and its worker processes (SIGTERM, SIGKILL after ``grace_s``). Idempotent."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(timeout=30)
        # Workers may outlive the main process for a moment; end the group for good.
        _signal_group(self.process, signal.SIGKILL)
        _wait_port_closed(self.port, timeout=10.0)
        _LIVE.discard(self)
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.close()

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the group this module created (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_port_closed(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)


def wait_healthy(url: str, timeout: float = 90.0, process: subprocess.Popen | None = None) -> bool:
    """Poll ``<url>/health`` until it answers 200; False on timeout or if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.25)
    return False


def start_server(
    backend_uri: str,
    artifacts_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    app_name: str | None = None,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    log_path: str | Path | None = None,
    timeout: float = 90.0,
    python: str | None = None,
    job_execution: bool = False,
) -> ServerHandle:
    """Start ``mlflow server`` with proxied artifacts and wait until ``/health`` answers.

    ``backend_uri`` is a SQLAlchemy URI (``sqlite:///...``, ``postgresql+psycopg2://...``).
    ``artifacts_dir`` is a local folder or a remote URI (``s3://bucket/path``) given to
    ``--artifacts-destination``. ``port=0`` picks a free port. ``app_name="basic-auth"``
    turns on authentication (configure it through ``env``). ``job_execution=False`` turns
    off MLflow's background job workers (seven ``huey`` processes for GenAI scoring jobs
    the study never uses), which makes the server start faster and idle lighter.
    Raises :class:`ServerError`
    with the server's own output when it exits or does not become healthy in ``timeout``.
    """
    if port == 0:
        port = free_port(host)
    dest = str(artifacts_dir)
    if "://" not in dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        dest = str(Path(dest).resolve())
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"mlflow-server-{port}-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)

    cmd = [
        python or sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        dest,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if app_name:
        cmd += ["--app-name", app_name]
    proc_env = dict(os.environ)
    # A client-side tracking URI in the environment must not leak into the server.
    proc_env.pop("MLFLOW_TRACKING_URI", None)
    proc_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true" if job_execution else "false"
    if env:
        proc_env.update(env)

    log_file = open(log_path, "ab")
    process = subprocess.Popen(
        cmd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=proc_env,
        start_new_session=True,
    )
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    handle = ServerHandle(
        url=f"http://{connect_host}:{port}",
        process=process,
        backend_uri=backend_uri,
        artifacts_destination=dest,
        log_path=log_path,
        port=port,
        _log_file=log_file,
    )
    _LIVE.add(handle)
    if not wait_healthy(handle.url, timeout=timeout, process=process):
        exited = process.poll()
        tail = handle.log_tail()
        handle.stop()
        state = f"exited with code {exited}" if exited is not None else f"not healthy after {timeout:.0f} s"
        raise ServerError(
            f"mlflow server on {handle.url} (backend {backend_uri}) {state}. "
            f"Server log {log_path}:\n{tail}"
        )
    return handle
