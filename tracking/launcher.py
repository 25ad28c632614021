"""Working under `mlflow run`, and the checks every entry point makes before it opens a run.

`mlflow run . -e finetune` creates a run, logs the ``-P`` values as params (as typed) and
starts the entry point with ``MLFLOW_RUN_ID``, ``MLFLOW_EXPERIMENT_ID`` and
``MLFLOW_TRACKING_URI`` set. The entry point then

* logs into the launcher's experiment (``--experiment-name`` / ``--experiment-id``);
* adopts the launcher's run when it does the work (:class:`tracking.logger.RunLogger`);
* when the work is already done (a FINISHED run of the same config) or is completed into an
  earlier run from the local journal, ends the launcher's run as a *pointer*: tagged
  ``tlstudy.duplicate_of=<run id>`` and deleted, so the experiment keeps one run per
  configuration (:func:`end_launcher_run_as_pointer`; see docs/mlflow-run.md).

:func:`check_server` reports a dead server or refused credentials in one line, in seconds.
"""

from __future__ import annotations

import os
from typing import Any

from tracking.schema import Tag

PROBE_TIMEOUT_S = 5.0


class TrackingAuthError(RuntimeError):
    """The tracking server refused the credentials (401) or the user's permissions (403)."""


def _user() -> str:
    return os.environ.get("MLFLOW_TRACKING_USERNAME", "")


def auth_message(uri: str, status: int, detail: str = "") -> str:
    """One line naming the server, the user and what to set."""
    user = _user()
    who = f"user {user!r}" if user else "an anonymous client (MLFLOW_TRACKING_USERNAME is not set)"
    what = "rejected the credentials of" if status == 401 else "denied permission to"
    extra = f" ({detail})" if detail else ""
    hint = ("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account of that server"
            if status == 401 else
            "ask its admin for permission on the experiment, or set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to an account that has it")
    return f"the tracking server at {uri} {what} {who} (HTTP {status}){extra}: {hint}"


def check_server(uri: str) -> None:
    """For an HTTP tracking URI: ``/health`` answers and the credentials are accepted, else one-line error.

    Raises :class:`tracking.logger.TrackingUnavailableError` (nothing was run) or
    :class:`TrackingAuthError`. No-op for database and file URIs. One try, a few seconds.
    """
    from tracking.store import is_http_uri

    if not is_http_uri(uri):
        return
    import requests

    from tracking.logger import TrackingUnavailableError

    base = uri.rstrip("/")
    try:
        health = requests.get(f"{base}/health", timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.ConnectionError):
            reason = "connection refused or host unreachable"
        elif isinstance(exc, requests.Timeout):
            reason = f"no answer in {PROBE_TIMEOUT_S:.0f} s"
        raise TrackingUnavailableError(
            f"cannot reach the tracking server at {uri} ({reason}); nothing was run. Start it "
            "(`tlstudy server`) or point MLFLOW_TRACKING_URI at a running one."
        ) from None
    if health.status_code >= 500 or health.status_code == 404:
        raise TrackingUnavailableError(
            f"the tracking server at {uri} is not healthy (/health answered HTTP {health.status_code}); nothing was run."
        )
    auth = None
    headers = {}
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    try:
        probe = requests.get(f"{base}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                             auth=auth, headers=headers, timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as exc:
        raise TrackingUnavailableError(
            f"the tracking server at {uri} answered /health but not its API ({type(exc).__name__}); nothing was run."
        ) from None
    if probe.status_code in (401, 403):
        raise TrackingAuthError(auth_message(uri, probe.status_code))


def mlflow_auth_error(exc: BaseException, uri: str) -> str | None:
    """The one-line message for an MLflow 401/403 refusal, or None when ``exc`` is something else."""
    code = str(getattr(exc, "error_code", ""))
    text = str(exc)
    if code == "UNAUTHENTICATED" or "401" in text and "nauthori" in text:
        return auth_message(uri, 401)
    if code == "PERMISSION_DENIED" or text.startswith("403") or "Permission denied" in text:
        detail = text.splitlines()[0][:200] if text else ""
        return auth_message(uri, 403, detail)
    return None


def launcher_run(client: Any):
    """The RUNNING run `mlflow run` opened for this process (``MLFLOW_RUN_ID``), or None."""
    run_id = os.environ.get("MLFLOW_RUN_ID", "").strip()
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except Exception:  # a stale id from another store: not ours to adopt
        return None
    if run.info.status != "RUNNING" or run.info.lifecycle_stage != "active":
        return None
    return run


def resolve_experiment(client: Any, name: str, *, explicit: bool) -> str:
    """The experiment this process logs to.

    Under `mlflow run`, the launcher's run's experiment (an explicit, different ``--experiment``
    is an error: use ``mlflow run --experiment-name``). Otherwise the explicit ``name``, else
    ``MLFLOW_EXPERIMENT_ID`` (by id), else ``name`` (which already honours MLFLOW_EXPERIMENT_NAME).
    """
    run = launcher_run(client)
    if run is not None:
        launched = client.get_experiment(run.info.experiment_id).name
        if explicit and name != launched:
            raise ValueError(
                f"--experiment {name!r} differs from the experiment `mlflow run` opened the run in "
                f"({launched!r}); give mlflow run the option --experiment-name {name} instead"
            )
        return launched
    if explicit:
        return name
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID", "").strip()
    if experiment_id and not os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        try:
            return client.get_experiment(experiment_id).name
        except Exception as exc:
            if mlflow_auth_error(exc, client.tracking_uri):
                raise
            raise ValueError(f"MLFLOW_EXPERIMENT_ID={experiment_id}: no such experiment on {client.tracking_uri}") from None
    return name


def end_launcher_run_as_pointer(client: Any, target_run_id: str) -> str | None:
    """End this process's launcher run as a pointer to ``target_run_id``: tagged, then deleted.

    `mlflow run` marks its run FINISHED after the entry point exits (and fails on a run that is
    already deleted), so the deletion is left to a small detached process that waits for that
    (:func:`delete_when_terminated`). Returns the pointer run's id, or None when there is no
    launcher run, it is the target, or it already holds results of its own (left alone then).
    """
    run = launcher_run(client)
    if run is None or run.info.run_id == target_run_id:
        return None
    if run.data.metrics or Tag.STAGE in run.data.tags or Tag.DUPLICATE_OF in run.data.tags:
        return None
    import subprocess
    import sys

    run_id = run.info.run_id
    client.set_tag(run_id, Tag.DUPLICATE_OF, target_run_id)

    subprocess.Popen([sys.executable, "-m", "tracking.launcher", run_id], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    return run_id


def delete_when_terminated(run_id: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> bool:
    """Wait until `mlflow run` has ended run ``run_id`` (status no longer RUNNING), then delete it.

    Gives up (run left as it is, tagged as a duplicate) after ``timeout_s``, e.g. when the
    launcher was killed. Returns True when the run was deleted.
    """
    import time

    from tracking.store import get_client

    client = get_client()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            run = client.get_run(run_id)
            if run.info.lifecycle_stage != "active":
                return False
            if run.info.status != "RUNNING":
                client.delete_run(run_id)
                return True
        except Exception:  # server blip: try again until the deadline
            pass
        time.sleep(poll_s)
    return False


if __name__ == "__main__":  # pragma: no cover - started by end_launcher_run_as_pointer
    import sys

    delete_when_terminated(sys.argv[1])
