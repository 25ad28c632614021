"""Where runs go: tracking URI resolution, safe SQLite initialisation, experiments.

``MLFLOW_TRACKING_URI`` wins when set (an HTTP server or PostgreSQL); otherwise the
embedded default is ``sqlite:///<cwd>/mlflow.db`` with artifacts in ``<cwd>/mlartifacts``.
Many child processes may start on a fresh SQLite file at once; the schema is created
once under a file lock before anyone else touches it.
"""

from __future__ import annotations

import os
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlparse

from tlcore.locking import file_lock
from tracking.schema import DEFAULT_EXPERIMENT, experiment_tags

# Bounded HTTP retries inside the MLflow client. The logger adds its own retry with
# backoff and a local journal, so the client must fail in seconds, not minutes
# (MLflow's own default retries with backoff factor 2 take several minutes on a dead
# server). Only applied when the user has not set them.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}

_initialised: set[str] = set()
_init_guard = threading.Lock()


class TrackingConfigError(RuntimeError):
    """The tracking store is misconfigured (bad URI, unwritable SQLite location)."""


def configure_http_defaults() -> None:
    """Set MLflow's HTTP retry/timeout env vars to bounded values unless already set."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    """The embedded default: ``sqlite:///<cwd>/mlflow.db`` (absolute path)."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    return f"sqlite:///{(base / 'mlflow.db').resolve()}"


def resolve_tracking_uri(uri: str | None = None, cwd: str | Path | None = None) -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else :func:`default_tracking_uri`."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return env or default_tracking_uri(cwd)


def display_uri(uri: str) -> str:
    """A tracking URI fit for messages: credentials dropped (scheme, host, port and path kept)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https") or "@" in parsed.netloc:
        port = f":{parsed.port}" if parsed.port else ""
        return f"{parsed.scheme}://{parsed.hostname or ''}{port}{parsed.path}"
    return uri


def is_http_uri(uri: str) -> bool:
    """True for ``http://`` / ``https://`` tracking URIs."""
    return uri.startswith(("http://", "https://"))


def is_sqlite_uri(uri: str) -> bool:
    """True for ``sqlite:`` SQLAlchemy URIs."""
    return uri.startswith("sqlite:")


def sqlite_path(uri: str) -> Path:
    """The database file of a ``sqlite:///...`` URI (in-memory URIs are rejected)."""
    parsed = urlparse(uri)
    path = unquote(parsed.path)
    if not path or path in ("/", "/:memory:") or ":memory:" in uri:
        raise TrackingConfigError(f"tracking URI {uri!r}: an in-memory SQLite store cannot be shared")
    # sqlite:///rel.db -> path "/rel.db" is relative; sqlite:////abs.db -> "//abs.db".
    if uri.startswith("sqlite:////"):
        return Path(path[1:]) if path.startswith("//") else Path(path)
    return Path(path.lstrip("/")) if uri.startswith("sqlite:///") else Path(path)


def default_artifact_root(uri: str) -> str | None:
    """Artifact root for experiments created on an embedded SQLite store (``<db dir>/mlartifacts``)."""
    if not is_sqlite_uri(uri):
        return None
    return (sqlite_path(uri).resolve().parent / "mlartifacts").as_uri()


def _init_lock_path(uri: str) -> Path:
    """The lock file that serialises schema and experiment creation on a SQLite store."""
    db_path = sqlite_path(uri).resolve()
    return db_path.with_name(db_path.name + ".init.lock")


def ensure_store(uri: str) -> None:
    """Create the SQLite schema once, under a file lock, before concurrent use.

    A no-op for HTTP and other database URIs (their server / migration step owns the
    schema) and for stores this process has already initialised.
    """
    if not is_sqlite_uri(uri):
        return
    with _init_guard:
        if uri in _initialised:
            return
        db_path = sqlite_path(uri).resolve()
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingConfigError(f"cannot create the folder for tracking database {db_path}: {exc}") from exc
        with file_lock(_init_lock_path(uri)):
            from mlflow.store.model_registry.sqlalchemy_store import (
                SqlAlchemyStore as RegistryStore,
            )
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            try:
                SqlAlchemyStore(uri, default_artifact_root(uri))
                RegistryStore(uri)
            except Exception as exc:  # surface the file and cause
                raise TrackingConfigError(f"cannot initialise tracking database {db_path}: {exc}") from exc
        _initialised.add(uri)


def get_client(uri: str | None = None):
    """An ``MlflowClient`` on the resolved URI (tracking and registry), store initialised."""
    from mlflow import MlflowClient

    resolved = resolve_tracking_uri(uri)
    configure_http_defaults()
    ensure_store(resolved)
    return MlflowClient(tracking_uri=resolved, registry_uri=resolved)


def ensure_experiment_tags(client, experiment) -> None:
    """Set :func:`tracking.schema.experiment_tags` that ``experiment`` lacks (a user's own values are kept).

    Covers experiments tlstudy did not create itself (``mlflow run --experiment-name X``,
    ``mlflow experiments create``): they get the model-training kind and a description
    the first time tlstudy uses them.
    """
    have = experiment.tags or {}
    for key, value in experiment_tags(experiment.name).items():
        if key not in have:
            client.set_experiment_tag(experiment.experiment_id, key, value)


def get_or_create_experiment(client, name: str = DEFAULT_EXPERIMENT) -> str:
    """Experiment id for ``name``, creating it (with its tags) if needed; safe when several processes race."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise TrackingConfigError(
                f"experiment {name!r} is deleted on {display_uri(client.tracking_uri)}; restore it "
                f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) or pick another name"
            )
        ensure_experiment_tags(client, experiment)
        return experiment.experiment_id
    uri = client.tracking_uri
    artifact_location = default_artifact_root(uri)
    with file_lock(_init_lock_path(uri)) if is_sqlite_uri(uri) else nullcontext():
        if is_sqlite_uri(uri):  # another local process may have created it meanwhile
            experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_location, tags=experiment_tags(name))
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "already exists" not in str(exc):
                raise
    experiment = client.get_experiment_by_name(name)
    if experiment is None:  # pragma: no cover - defensive
        raise TrackingConfigError(f"experiment {name!r} could not be created on {display_uri(uri)}")
    ensure_experiment_tags(client, experiment)
    return experiment.experiment_id


#: Query string that opens the MLflow 3.x UI on its model-training view. MLflow 3.17's UI
#: picks the view from a browser-wide "GenAI / Model training" switch (default GenAI), which
#: this URL parameter sets; older 3.x UIs read the experiment tag ``mlflow.experimentKind``.
UI_TRAINING_VIEW: Final = "workflowType=machine_learning"
MLFLOW_UI_DEFAULT: Final = "http://127.0.0.1:5000"


def experiment_ui_url(uri: str, experiment_id: str) -> str:
    """Link to the runs of ``experiment_id`` in the MLflow UI, on the model-training view.

    For an HTTP tracking server it is that server; for a database store it is where
    ``mlflow ui --backend-store-uri <uri>`` listens by default.
    """
    base = display_uri(uri).rstrip("/") if is_http_uri(uri) else MLFLOW_UI_DEFAULT
    return f"{base}/#/experiments/{experiment_id}/runs?{UI_TRAINING_VIEW}"


def browse_hint(uri: str, experiment_id: str) -> str:
    """One line telling the user how to see ``experiment_id``'s runs in the MLflow UI."""
    url = experiment_ui_url(uri, experiment_id)
    if is_http_uri(uri):
        return f"browse the runs: {url}"
    return f"browse the runs: `mlflow ui --backend-store-uri {uri}`, then open {url}"
