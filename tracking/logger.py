"""Run logging with batching, bounded retries and a local journal.

:class:`RunLogger` opens (or re-attaches to) one MLflow run per config hash. Everything
logged is first appended to a journal under ``<work_dir>/journal/<experiment>/<config_hash>/`` and then
sent by a background thread in batches (``log_batch``), so the training loop never waits
on HTTP and never sends one request per metric per step. If the server drops out, the
logger keeps journaling; at the end it raises :class:`TrackingUnavailableError` saying
where the results are kept. Running the same command again (same config hash) re-attaches
to the unfinished run, replays what the server lacks and finishes it, leaving exactly one
FINISHED run for that config.

Typical use (in ``pipelines``; ``tlcore`` only sees the plain callback)::

    with RunLogger(run_name(...), config_hash(cfg), stage="finetune") as run:
        if not run.completed:            # a previous attempt may have finished the work
            run.log_params(flatten_params(cfg))
            run.log_dict(to_jsonable(cfg), Artifact.CONFIG)
            result = train(..., on_epoch_end=run.on_epoch_end, checkpoint_dir=run.checkpoint_dir)
            run.log_metrics({"test_auc": result.auc})
            run.log_model(model, input_example)
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

from tracking.privacy import assert_no_patient_identifiers
from tracking.provenance import code_version
from tracking.schema import DEFAULT_EXPERIMENT, STAGES, Artifact, Tag
from tracking.serialize import to_jsonable
from tracking.store import get_client, get_or_create_experiment, resolve_tracking_uri

log = logging.getLogger(__name__)
T = TypeVar("T")

# MLflow's log_batch limits per request.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000

# MLflow error codes that retrying cannot fix.
_PERMANENT_CODES = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "INVALID_STATE",
    "BAD_REQUEST",
    "ENDPOINT_NOT_FOUND",
}


class TrackingError(RuntimeError):
    """The tracking server refused an operation (not an outage)."""


class TrackingUnavailableError(TrackingError):
    """The tracking server could not be reached; results are kept in the local journal."""

    def __init__(self, message: str, journal_dir: Path | None = None):
        super().__init__(message)
        self.journal_dir = journal_dir


class JournalBusyError(TrackingError):
    """Another process is logging the same config right now."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retry with exponential backoff for every call to the server."""

    attempts: int = 4
    initial_delay_s: float = 0.5
    backoff: float = 2.0
    max_delay_s: float = 8.0

    def delays(self) -> Iterable[float]:
        delay = self.initial_delay_s
        for _ in range(max(self.attempts - 1, 0)):
            yield min(delay, self.max_delay_s)
            delay *= self.backoff


@dataclass(frozen=True)
class LoggerSettings:
    """Tuning of a :class:`RunLogger` (journal location, batching, retries)."""

    work_dir: Path = Path(".tlstudy")
    flush_interval_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    keep_journal: bool = False  # keep the journal folder after the run FINISHED
    tag_code_version: bool = True
    pip_requirements: tuple[str, ...] | None = None  # for log_model; None = torch version pin


@dataclass
class LoggerStats:
    """Counters of what the logger sent (for tests and the overhead benchmark)."""

    batches_sent: int = 0
    metrics_sent: int = 0
    artifacts_sent: int = 0
    retries: int = 0
    replayed_events: int = 0


def is_transient(exc: BaseException) -> bool:
    """True when retrying may help (connection errors, 5xx); False for refusals."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        code = str(getattr(exc, "error_code", ""))
        return code not in _PERMANENT_CODES
    return isinstance(exc, (OSError, ConnectionError, TimeoutError)) or type(exc).__module__.startswith(
        ("requests", "urllib3")
    )


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, what: str, stats: LoggerStats | None = None) -> T:
    """Run ``fn`` with bounded retries on transient errors; raise the last error otherwise."""
    delays = iter(policy.delays())
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            if stats is not None:
                stats.retries += 1
            log.warning("%s failed (%s); retrying in %.1f s", what, _short(exc), delay)
            time.sleep(delay)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------
# Journal
# --------------------------------------------------------------------------------------

_REPLAYABLE = {"params", "tags", "metrics", "artifact", "inputs"}


class Journal:
    """Append-only JSON-lines record of one config's run, plus local artifact copies.

    Layout of ``root``: ``events.jsonl`` (one event per line, with ``seq``; ``ack`` lines
    name the events the server has), ``artifacts/`` (files as uploaded), ``checkpoint/``
    (for the training loop), ``.lock`` (held while a logger uses it).
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.events_path = self.root / "events.jsonl"
        self.artifacts_dir = self.root / "artifacts"
        self.checkpoint_dir = self.root / "checkpoint"
        self.events: list[dict[str, Any]] = []
        self.acked: set[int] = set()
        self._lock_fh: Any = None
        self._write_lock = threading.Lock()
        self._fh: Any = None

    @property
    def exists(self) -> bool:
        return self.events_path.exists()

    def open(self) -> None:
        """Create the folder, take the lock (fail fast if held) and load existing events."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(exist_ok=True)
        self.checkpoint_dir.mkdir(exist_ok=True)
        self._lock_fh = open(self.root / ".lock", "a+")
        try:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            raise JournalBusyError(
                f"journal {self.root} is in use by another process logging the same config"
            ) from None
        self._load()
        self._fh = open(self.events_path, "a", encoding="utf-8")

    def _load(self) -> None:
        if not self.events_path.exists():
            return
        with open(self.events_path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                if lineno == len(lines):  # a torn last line from a crash: drop it
                    log.warning("%s: ignoring a truncated last line", self.events_path)
                    continue
                raise TrackingError(f"{self.events_path}: line {lineno} is not valid JSON") from None
            if event.get("op") == "ack":
                self.acked.update(event["seqs"])
            else:
                self.events.append(event)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _write(self, obj: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._fh.flush()

    def append(self, op: str, **payload: Any) -> dict[str, Any]:
        """Append an event and return it (with its ``seq``)."""
        with self._write_lock:
            event = {"seq": len(self.events), "op": op, **payload}
            self._write(event)
            self.events.append(event)
            return event

    def ack(self, seqs: Iterable[int]) -> None:
        """Record that the server has these events."""
        seqs = sorted(set(seqs) - self.acked)
        if not seqs:
            return
        with self._write_lock:
            self._write({"op": "ack", "seqs": seqs})
            self.acked.update(seqs)

    def first(self, op: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["op"] == op), None)

    def has(self, op: str) -> bool:
        return any(e["op"] == op for e in self.events)

    def pending(self) -> list[dict[str, Any]]:
        """Replayable events the server does not have yet, in order."""
        return [e for e in self.events if e["op"] in _REPLAYABLE and e["seq"] not in self.acked]

    def logged_params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        for e in self.events:
            if e["op"] == "params":
                params.update(e["params"])
        return params

    def metric_steps(self) -> set[tuple[str, int]]:
        return {(m[0], m[3]) for e in self.events if e["op"] == "metrics" for m in e["metrics"]}


# --------------------------------------------------------------------------------------
# The logger
# --------------------------------------------------------------------------------------


def _journal_root(work_dir: Path, config_hash: str, experiment: str) -> Path:
    """``<work_dir>/journal/<experiment>-<digest>/<config_hash>``: one journal per config and
    experiment, so a config killed under one experiment is never finished under another."""
    safe = "".join(c for c in config_hash if c.isalnum() or c in "-_")
    if not safe or safe != config_hash:
        raise ValueError(f"config_hash {config_hash!r} must be non-empty and alphanumeric")
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)[:40]
    digest = hashlib.sha256(experiment.encode("utf-8")).hexdigest()[:8]
    return Path(work_dir) / "journal" / f"{readable}-{digest}" / safe


def _as_text(data: bytes) -> str | None:
    """The file's text when it is a text file (UTF-8 without NUL bytes), else None."""
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _filter_eq(key: str, value: str) -> str:
    return f"tags.`{key}` = '{value}'"


def find_finished_run(
    experiment: str = DEFAULT_EXPERIMENT, config_hash: str = "", tracking_uri: str | None = None
):
    """The newest FINISHED run of ``experiment`` tagged with ``config_hash``, or None.

    One search request; use it for skip-if-done logic before opening a :class:`RunLogger`.
    """
    if not config_hash:
        raise ValueError("config_hash is required")
    client = get_client(tracking_uri)
    experiment_obj = client.get_experiment_by_name(experiment)
    if experiment_obj is None:
        return None
    runs = client.search_runs(
        [experiment_obj.experiment_id],
        filter_string=f"{_filter_eq(Tag.CONFIG_HASH, config_hash)} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def record_to_metrics(record: Any) -> tuple[int, dict[str, float]]:
    """Split an epoch record (mapping or dataclass) into ``(epoch, {metric: value})``.

    The step is ``record["epoch"]`` (or ``step``); every other finite-or-NaN number
    (not bool) becomes a metric; other fields are ignored.
    """
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        data = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    elif isinstance(record, Mapping):
        data = dict(record)
    elif hasattr(record, "__dict__"):
        data = dict(vars(record))
    else:
        raise TypeError(f"epoch record must be a mapping or dataclass, got {type(record).__name__}")
    step_key = "epoch" if "epoch" in data else "step" if "step" in data else None
    if step_key is None:
        raise ValueError(f"epoch record has no 'epoch' (or 'step') field: {sorted(data)}")
    step = int(data.pop(step_key))
    metrics: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or value is None:
            continue
        if hasattr(value, "item") and getattr(value, "shape", None) == ():
            value = value.item()
        if isinstance(value, (int, float)):
            metrics[str(key)] = float(value)
    return step, metrics


class RunLogger:
    """One MLflow run, journaled locally and sent in batches by a background thread.

    Use as a context manager. ``completed`` is True when a previous attempt already did
    the work (its results are in the journal or on the server): skip training then.
    ``checkpoint_dir`` is a folder that survives until the run FINISHED, for resumable
    training checkpoints. Exiting normally finishes the run; an exception in the block
    marks it FAILED (KILLED on Ctrl-C) and moves the journal aside, so the next attempt
    starts a fresh run.
    """

    def __init__(
        self,
        run_name: str,
        config_hash: str,
        *,
        stage: str,
        experiment: str = DEFAULT_EXPERIMENT,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        tracking_uri: str | None = None,
        settings: LoggerSettings | None = None,
    ):
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGES)}")
        self.run_name = run_name
        self.config_hash = config_hash
        self.stage = stage
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.settings = settings or LoggerSettings()
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.stats = LoggerStats()
        self.journal = Journal(_journal_root(self.settings.work_dir, config_hash, experiment))
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.resumed = False
        self.completed = False
        self._already_finished = False
        self._initial_tags = {Tag.STAGE: stage, Tag.CONFIG_HASH: config_hash}
        if self.settings.tag_code_version:
            self._initial_tags.update(code_version().as_tags())
        if tags:
            self._initial_tags.update({k: str(v) for k, v in tags.items()})
        self._prior_metric_steps: set[tuple[str, int]] = set()
        # Params the server already holds on an adopted `mlflow run` run, in the launcher's spelling.
        self._server_params: dict[str, str] = {}
        self._client: Any = None
        self._cond = threading.Condition()
        self._queue: list[dict[str, Any]] = []
        self._flush_requested = False
        self._stop = False
        self._in_flight = False
        self._offline: BaseException | None = None
        self._fatal: BaseException | None = None
        self._worker: threading.Thread | None = None
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        """Folder for training checkpoints; kept until the run FINISHED."""
        return self.journal.checkpoint_dir

    @property
    def journal_dir(self) -> Path:
        return self.journal.root

    def __enter__(self) -> "RunLogger":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self._fail(exc_type)

    def start(self) -> "RunLogger":
        """Open the journal, reach the server (fail fast) and create or re-attach the run."""
        self.journal.open()
        try:
            self._start_online()
        except BaseException:
            self.journal.close()
            raise
        self._started = True
        return self

    def _start_online(self) -> None:
        policy = self.settings.retry
        # Resumed: an earlier attempt at this config got as far as opening its journal.
        self.resumed = self.journal.has("open")
        try:
            self._client = get_client(self.tracking_uri)
            self.experiment_id = call_with_retry(
                lambda: get_or_create_experiment(self._client, self.experiment), policy, "get experiment", self.stats
            )
        except Exception as exc:
            if is_transient(exc):
                raise TrackingUnavailableError(
                    f"cannot reach the tracking server at {self.tracking_uri} ({_short(exc)}); "
                    "nothing was run. Start the server (`tlstudy server`) or unset MLFLOW_TRACKING_URI "
                    "to log to the local SQLite store."
                ) from exc
            raise
        opened = self.journal.first("open")
        if opened is None:
            opened = self.journal.append(
                "open",
                journal_id=uuid.uuid4().hex,
                experiment=self.experiment,
                run_name=self.run_name,
                config_hash=self.config_hash,
                created_ms=_now_ms(),
            )
        journal_id = opened["journal_id"]
        run_event = self.journal.first("run")
        run = None
        if run_event is not None:
            run_id = run_event["run_id"]
            try:
                run = call_with_retry(lambda: self._client.get_run(run_id), policy, "get run", self.stats)
            except Exception as exc:
                if is_transient(exc):
                    raise self._unavailable(exc) from exc
                raise TrackingError(
                    f"journal {self.journal.root} belongs to run {run_id}, which the server at "
                    f"{self.tracking_uri} does not have ({_short(exc)}). If it was deleted on purpose, "
                    f"clear the journal (`{clear_command(self.config_hash)}`) to start afresh."
                ) from exc
            if self.parent_run_id is None:
                # Completing an earlier run: the run `mlflow run` opened for this attempt points to it.
                from tracking.launcher import end_launcher_run_as_pointer

                end_launcher_run_as_pointer(self._client, run_id)
        else:
            run = self._adopt_launcher_run(journal_id) or self._find_or_create_run(journal_id)
            self.journal.append("run", run_id=run.info.run_id, experiment_id=self.experiment_id)
        self.run_id = run.info.run_id
        if run.info.lifecycle_stage != "active":
            raise TrackingError(
                f"run {self.run_id} (journal {self.journal.root}) is deleted on {self.tracking_uri}; "
                f"restore it (`mlflow runs restore --run-id {self.run_id}`) or clear the journal "
                f"(`{clear_command(self.config_hash)}`)"
            )
        status = run.info.status
        if status == "FINISHED":
            self._already_finished = True
        elif status != "RUNNING":
            call_with_retry(lambda: self._client.update_run(self.run_id, status="RUNNING"), policy, "reopen run")
        self.completed = self._already_finished or self.journal.has("body_done")
        self._prior_metric_steps = self.journal.metric_steps()
        pending = self.journal.pending()
        self.stats.replayed_events = len(pending)
        self._worker = threading.Thread(target=self._work, name=f"tlstudy-logger-{self.run_id[:8]}", daemon=True)
        self._worker.start()
        with self._cond:
            self._queue.extend(pending)
        if not self.completed:
            self.set_tags(self._initial_tags)
        self.flush(wait=False)

    def _adopt_launcher_run(self, journal_id: str):
        """The run `mlflow run` created for this process (``MLFLOW_RUN_ID``), if any.

        `mlflow run . -e finetune` opens a run before it starts the entry point; logging
        into that run (and its experiment) instead of a second one keeps one run per command.
        """
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if not run_id or self.parent_run_id:  # a study's child never takes over the launcher's run
            return None
        policy = self.settings.retry
        try:
            run = call_with_retry(lambda: self._client.get_run(run_id), policy, "get launcher run", self.stats)
        except Exception as exc:
            if is_transient(exc):
                raise self._unavailable(exc) from exc
            raise TrackingError(f"MLFLOW_RUN_ID={run_id} names a run the server does not have ({_short(exc)})") from exc
        if run.info.status != "RUNNING":
            return None  # a stale variable from an earlier launch: open a run of our own
        self.experiment_id = run.info.experiment_id
        self._server_params = dict(run.data.params)
        tags = {Tag.JOURNAL_ID: journal_id, Tag.CONFIG_HASH: self.config_hash, Tag.STAGE: self.stage}
        if self.parent_run_id:
            tags[Tag.PARENT_RUN_ID] = self.parent_run_id
        from mlflow.entities import RunTag

        call_with_retry(
            lambda: self._client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()]),
            policy, "tag launcher run", self.stats,
        )
        if run.info.run_name != self.run_name:
            call_with_retry(lambda: self._client.update_run(run_id, name=self.run_name), policy, "name run")
        return run

    def _find_or_create_run(self, journal_id: str):
        policy = self.settings.retry
        client = self._client

        def search():
            return client.search_runs(
                [self.experiment_id], filter_string=_filter_eq(Tag.JOURNAL_ID, journal_id), max_results=1
            )

        try:
            tags = {Tag.JOURNAL_ID: journal_id, Tag.CONFIG_HASH: self.config_hash, Tag.STAGE: self.stage}
            if self.parent_run_id:
                tags[Tag.PARENT_RUN_ID] = self.parent_run_id
            # A create whose response was lost (here or in an earlier attempt) left a run
            # tagged with this journal id: look for it before creating another.
            may_exist = [self.resumed]

            def find_or_create():
                found = search() if may_exist[0] else []
                may_exist[0] = True
                return found[0] if found else client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)

            return call_with_retry(find_or_create, policy, "create run", self.stats)
        except Exception as exc:
            if is_transient(exc):
                raise self._unavailable(exc) from exc
            raise

    def _unavailable(self, exc: BaseException | None) -> TrackingUnavailableError:
        cause = f" ({_short(exc)})" if exc is not None else ""
        return TrackingUnavailableError(
            f"the tracking server at {self.tracking_uri} is unreachable{cause}. Nothing is lost: "
            f"the run's params, metrics and artifacts are kept locally in {self.journal.root}. "
            "Re-run the same command once the server is back to upload them and finish the run "
            f"(run {self.run_id or 'not yet created'}).",
            journal_dir=self.journal.root,
        )

    def _refused(self, exc: BaseException) -> str:
        return (
            f"the tracking server refused part of run {self.run_id}: {_short(exc)}. The journal "
            f"{self.journal.root} is kept; rerunning replays it and will be refused again unless the "
            f"cause is fixed: clear it with `{clear_command(self.config_hash)}` to start afresh"
        )

    def finish(self) -> None:
        """Send everything, mark the run FINISHED and remove the journal.

        Raises :class:`TrackingUnavailableError` (journal kept) when the server cannot be
        reached, :class:`TrackingError` when it refused something.
        """
        if not self._started:
            raise TrackingError("RunLogger.finish() called before start()")
        try:
            if not self.journal.has("body_done"):
                self.journal.append("body_done")
            self._stop_worker()
            if self._fatal is not None:
                raise TrackingError(self._refused(self._fatal)) from self._fatal
            # Last chance for anything the worker could not send (server back, or never down).
            self._offline = None
            try:
                self._send(self.journal.pending())
                if not self._already_finished:
                    call_with_retry(
                        lambda: self._client.set_terminated(self.run_id, "FINISHED"),
                        self.settings.retry,
                        "finish run",
                        self.stats,
                    )
            except Exception as exc:
                if is_transient(exc):
                    raise self._unavailable(exc) from exc
                raise TrackingError(self._refused(exc)) from exc
            self.journal.append("finished")
        finally:
            self.journal.close()
        if not self.settings.keep_journal:
            shutil.rmtree(self.journal.root, ignore_errors=True)

    def _fail(self, exc_type: type[BaseException]) -> None:
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self._stop_worker(timeout=30.0)
            if self._offline is None and self.run_id is not None:
                try:
                    call_with_retry(
                        lambda: self._client.set_terminated(self.run_id, status),
                        RetryPolicy(attempts=2, initial_delay_s=0.5),
                        "mark run failed",
                    )
                except Exception as exc:  # the body's exception matters more
                    log.warning("could not mark run %s %s: %s", self.run_id, status, _short(exc))
        finally:
            self.journal.close()
        if status == "KILLED":
            # An interruption, not a failure: keep the journal and its training checkpoint so
            # that rerunning the same command re-attaches and resumes where training stopped.
            log.warning("run %s interrupted; rerun the same command to resume it (journal %s)",
                        self.run_id, self.journal.root)
            return
        # The next attempt starts a fresh run rather than mixing in metrics of a failed one.
        aside = self.journal.root.with_name(f"{self.journal.root.name}.{status.lower()}-{int(time.time())}")
        try:
            self.journal.root.rename(aside)
            log.warning("run %s %s; its journal was moved to %s", self.run_id, status, aside)
        except OSError as exc:
            log.warning("could not move journal %s aside: %s", self.journal.root, exc)

    # -- logging API ---------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any], same: Callable[[str, str], bool] | None = None) -> None:
        """Log params (values become strings) in one batch. Changing a logged value is an error.

        Params the server already holds on an adopted `mlflow run` run (``-P`` values as typed)
        are not sent again when they mean the same: equal strings, equal numbers (``'1e-3'`` and
        0.001, ``'0'`` and 0.0), or ``same(key, server_value)`` true (the entry point parses the
        text as its option does). A different meaning is an error before anything is sent.
        """
        if not params:
            return
        clean = {str(k): _param_value(v) for k, v in params.items()}
        assert_no_patient_identifiers(clean, "params")
        differ = {}
        for key in [k for k in clean if k in self._server_params]:
            server = _unquoted(self._server_params[key])
            if server == clean[key] or _same_number(server, clean[key]) or (same is not None and same(key, server)):
                del clean[key]
            else:
                differ[key] = (server, clean[key])
        if differ:
            raise TrackingError(
                f"run {self.run_id}: `mlflow run` logged params that differ from the resolved config "
                f"{ {k: v for k, v in differ.items()} } (server value, resolved value)"
            )
        known = self.journal.logged_params()
        conflicts = {k: (known[k], v) for k, v in clean.items() if k in known and known[k] != v}
        if conflicts:
            raise TrackingError(
                f"run {self.run_id}: params already logged with other values {conflicts} "
                "(MLflow params cannot change; the config hash should differ)"
            )
        new = {k: v for k, v in clean.items() if k not in known}
        if new:
            self._enqueue(self.journal.append("params", params=new), urgent=True)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values become strings)."""
        if not tags:
            return
        clean = {str(k): str(v) for k, v in tags.items()}
        assert_no_patient_identifiers(clean, "tags")
        self._enqueue(self.journal.append("tags", tags=clean), urgent=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Buffer metrics at ``step``; they are sent with the next batch (no HTTP call here).

        After a re-attach, a (metric, step) the previous attempt already logged is kept
        as it was and the new value is dropped, so histories never hold duplicates.
        """
        ts = _now_ms()
        rows = []
        for key, value in metrics.items():
            if (key, int(step)) in self._prior_metric_steps:
                continue
            rows.append([str(key), _metric_value(key, value), ts, int(step)])
        if rows:
            self._enqueue(self.journal.append("metrics", metrics=rows), urgent=False)

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Buffer one metric (see :meth:`log_metrics`)."""
        self.log_metrics({key: value}, step=step)

    def on_epoch_end(self, record: Any) -> None:
        """Callback for the training loop: log the record's numbers at ``step = epoch`` and flush.

        ``record`` is a mapping or dataclass with an ``epoch`` field (e.g.
        ``{"epoch": 2, "train_loss": 0.41, "val_auc": 0.87}``). The flush happens in the
        background; the training loop does not wait.
        """
        step, metrics = record_to_metrics(record)
        self.log_metrics(metrics, step=step)
        self.flush(wait=False)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """Log a JSON-serialisable object (dataclasses allowed) as a JSON artifact."""
        data = to_jsonable(obj)
        assert_no_patient_identifiers(data, artifact_file)
        path = self._artifact_local_path(artifact_file)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        self._enqueue_artifact(path, artifact_file)

    def log_dataframe(self, df: Any, artifact_file: str) -> None:
        """Log a pandas DataFrame as a CSV artifact (no index)."""
        assert_no_patient_identifiers(df, artifact_file)
        path = self._artifact_local_path(artifact_file)
        df.to_csv(path, index=False)
        self._enqueue_artifact(path, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str, dpi: int = 120) -> None:
        """Log a matplotlib figure as a PNG artifact."""
        path = self._artifact_local_path(artifact_file)
        figure.savefig(path, format="png", dpi=dpi, bbox_inches="tight")
        self._enqueue_artifact(path, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log a text artifact."""
        assert_no_patient_identifiers(text, artifact_file)
        path = self._artifact_local_path(artifact_file)
        path.write_text(text, encoding="utf-8")
        self._enqueue_artifact(path, artifact_file)

    def log_file(self, local_path: str | Path, artifact_file: str | None = None) -> None:
        """Log a local file (copied into the journal first) at ``artifact_file``.

        A text file (UTF-8, no NUL bytes: logs, CSV, JSON, HTML...) passes the same
        patient-identifier check as :meth:`log_text`.
        """
        src = Path(local_path)
        if not src.is_file():
            raise FileNotFoundError(f"cannot log artifact {src}: not a file")
        artifact_file = artifact_file or src.name
        text = _as_text(src.read_bytes())
        if text is not None:
            assert_no_patient_identifiers(text, artifact_file)
        path = self._artifact_local_path(artifact_file)
        if src.resolve() != path.resolve():
            shutil.copyfile(src, path)
        self._enqueue_artifact(path, artifact_file)

    def log_model(
        self,
        model: Any,
        input_example: Any,
        name: str = Artifact.MODEL,
        *,
        serialization_format: str = "pickle",
        state_dict_file: str = Artifact.STATE_DICT,
    ) -> str:
        """Log a torch ``nn.Module`` as an MLflow pytorch model plus a tensors-only state dict.

        The MLflow model (``<name>/``) carries a signature inferred from ``input_example``
        (a small batch: tensor or array) and the example itself. Reuse goes through
        ``state_dict_file`` (``weights/state_dict.pt``), loadable with
        ``torch.load(..., weights_only=True)``. Returns the model's artifact path.
        """
        import mlflow.pytorch
        import numpy as np
        import torch
        from mlflow.models import infer_signature

        example = input_example.detach().cpu().numpy() if torch.is_tensor(input_example) else np.asarray(input_example)
        cpu_model = copy.deepcopy(model).cpu().eval()
        with torch.no_grad():
            output = cpu_model(torch.from_numpy(example))
        if isinstance(output, (tuple, list)):
            output = output[0]
        if hasattr(output, "logits"):  # torchvision InceptionOutputs / GoogLeNetOutputs
            output = output.logits
        signature = infer_signature(example, output.detach().cpu().numpy())
        target = self._artifact_local_path(name, is_dir=True)
        if target.exists():
            shutil.rmtree(target)
        requirements = self.settings.pip_requirements or (f"torch=={torch.__version__.split('+')[0]}",)
        with _quiet("mlflow.pytorch"):
            mlflow.pytorch.save_model(
                cpu_model,
                str(target),
                signature=signature,
                input_example=example,
                serialization_format=serialization_format,
                pip_requirements=list(requirements),
            )
        for file in sorted(p for p in target.rglob("*") if p.is_file()):
            self._enqueue_artifact(file, f"{name}/{file.relative_to(target).as_posix()}")
        self.log_state_dict(cpu_model.state_dict(), state_dict_file)
        return name

    def log_state_dict(self, state_dict: Mapping[str, Any], artifact_file: str = Artifact.STATE_DICT) -> None:
        """Log a tensors-only state dict (``torch.save`` of CPU tensors)."""
        import torch

        tensors = {}
        for key, value in state_dict.items():
            if not torch.is_tensor(value):
                raise TypeError(f"state dict entry {key!r} is {type(value).__name__}, not a tensor")
            tensors[key] = value.detach().cpu().clone()
        path = self._artifact_local_path(artifact_file)
        torch.save(tensors, path)
        self._enqueue_artifact(path, artifact_file)

    def log_dataset(
        self,
        df: Any,
        name: str,
        digest: str,
        source: str,
        context: str = "train",
        targets: str | None = "label",
    ) -> None:
        """Record a dataset input (``mlflow.log_input`` equivalent) with our own digest.

        ``df`` is the split's manifest (anonymous ids only); ``digest`` the dataset
        fingerprint; ``context`` e.g. ``train``/``val``/``test``.
        """
        import warnings

        import mlflow.data

        assert_no_patient_identifiers(df, f"dataset {name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = mlflow.data.from_pandas(
                df, source=source, targets=targets if targets in getattr(df, "columns", []) else None,
                name=name, digest=digest,
            )
            entity = dataset._to_mlflow_entity()
        payload = {
            "name": entity.name,
            "digest": entity.digest,
            "source_type": entity.source_type,
            "source": entity.source,
            "schema": entity.schema,
            "profile": entity.profile,
            "context": context,
        }
        self._enqueue(self.journal.append("inputs", dataset=payload), urgent=True)

    def flush(self, wait: bool = True, timeout: float | None = None) -> None:
        """Ask the background thread to send what is buffered; optionally wait for it."""
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            if wait:
                self._cond.wait_for(
                    lambda: (not self._queue and not self._in_flight) or self._offline is not None
                    or self._fatal is not None or self._stop,
                    timeout=timeout,
                )

    @property
    def offline(self) -> bool:
        """True once the server could not be reached; logging continues into the journal."""
        return self._offline is not None

    # -- internals -----------------------------------------------------------------------

    def _artifact_local_path(self, artifact_file: str, is_dir: bool = False) -> Path:
        rel = Path(artifact_file)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"artifact path {artifact_file!r} must be relative, without '..'")
        path = self.journal.artifacts_dir / rel
        (path if is_dir else path.parent).mkdir(parents=True, exist_ok=True)
        return path

    def _enqueue_artifact(self, path: Path, artifact_file: str) -> None:
        local = path.relative_to(self.journal.root).as_posix()
        self._enqueue(self.journal.append("artifact", local=local, artifact_file=artifact_file), urgent=True)

    def _enqueue(self, event: dict[str, Any], urgent: bool) -> None:
        if not self._started and self._worker is None:
            raise TrackingError("RunLogger used before start() (use it as a context manager)")
        with self._cond:
            self._queue.append(event)
            if urgent:
                self._flush_requested = True
                self._cond.notify_all()

    def _work(self) -> None:
        interval = self.settings.flush_interval_s
        last_send = time.monotonic()
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda last_send=last_send: self._stop
                    or (self._queue and (self._flush_requested or time.monotonic() - last_send >= interval)),
                    timeout=interval,
                )
                if self._offline is not None or self._fatal is not None:
                    if self._stop:
                        return
                    self._queue.clear()  # stays in the journal for the next attempt
                    self._cond.notify_all()
                    continue
                if not self._queue:
                    if self._stop:
                        return
                    continue
                batch, self._queue = self._queue, []
                self._flush_requested = False
                self._in_flight = True
            try:
                self._send(batch)
            except Exception as exc:
                with self._cond:
                    if is_transient(exc):
                        self._offline = exc
                        log.error("%s", self._unavailable(exc))
                    else:
                        self._fatal = exc
                        log.error("tracking server refused part of run %s: %s", self.run_id, _short(exc))
            finally:
                last_send = time.monotonic()
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()

    def _stop_worker(self, timeout: float | None = None) -> None:
        if self._worker is None:
            return
        with self._cond:
            self._stop = True
            self._flush_requested = True
            self._cond.notify_all()
        self._worker.join(timeout)
        self._worker = None

    def _send(self, events: list[dict[str, Any]]) -> None:
        """Send events to the server (coalesced into as few requests as limits allow), ack them."""
        if not events:
            return
        from mlflow.entities import Metric as MlMetric
        from mlflow.entities import Param as MlParam
        from mlflow.entities import RunTag

        policy, client, run_id = self.settings.retry, self._client, self.run_id
        scalar = [e for e in events if e["op"] in ("params", "tags", "metrics")]
        metrics: list[Any] = []
        params: dict[str, str] = {}
        tags: dict[str, str] = {}
        for e in scalar:
            if e["op"] == "params":
                params.update(e["params"])
            elif e["op"] == "tags":
                tags.update(e["tags"])
            else:
                metrics.extend(MlMetric(k, v, ts, step) for k, v, ts, step in e["metrics"])
        param_list = [MlParam(k, v) for k, v in params.items()]
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        while param_list or tag_list or metrics:
            p, param_list = param_list[:MAX_PARAMS_PER_BATCH], param_list[MAX_PARAMS_PER_BATCH:]
            t, tag_list = tag_list[:MAX_TAGS_PER_BATCH], tag_list[MAX_TAGS_PER_BATCH:]
            room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(p) - len(t))
            m, metrics = metrics[:room], metrics[room:]
            call_with_retry(
                lambda m=m, p=p, t=t: client.log_batch(run_id, metrics=m, params=p, tags=t, synchronous=True),
                policy,
                "log_batch",
                self.stats,
            )
            self.stats.batches_sent += 1
            self.stats.metrics_sent += len(m)
        self.journal.ack(e["seq"] for e in scalar)
        for e in events:
            if e["op"] == "artifact":
                local = self.journal.root / e["local"]
                if not local.is_file():
                    raise TrackingError(f"journal {self.journal.root}: artifact file {local} is missing")
                folder = str(Path(e["artifact_file"]).parent.as_posix())
                folder = None if folder in ("", ".") else folder
                call_with_retry(
                    lambda local=local, folder=folder: client.log_artifact(run_id, str(local), folder),
                    policy,
                    "log_artifact",
                    self.stats,
                )
                self.stats.artifacts_sent += 1
                self.journal.ack([e["seq"]])
            elif e["op"] == "inputs":
                self._send_dataset(e)
                self.journal.ack([e["seq"]])

    def _send_dataset(self, event: dict[str, Any]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        d = event["dataset"]
        dataset = Dataset(
            name=d["name"], digest=d["digest"], source_type=d["source_type"], source=d["source"],
            schema=d["schema"], profile=d["profile"],
        )
        inp = DatasetInput(dataset=dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, d["context"])])
        call_with_retry(
            lambda: self._client.log_inputs(self.run_id, datasets=[inp]), self.settings.retry, "log_inputs", self.stats
        )


def clear_command(config_hash: str) -> str:
    """The command that removes a config's journal."""
    return f"tlstudy journal clear --config-hash {config_hash}"


def _unquoted(value: str) -> str:
    """A param as `mlflow run` logged it (shell-quoted: ``''`` for empty) back to the value typed."""
    import shlex

    try:
        parts = shlex.split(value)
    except ValueError:
        return value
    return parts[0] if len(parts) == 1 else "" if not parts else value


def _same_number(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return x == y or (math.isnan(x) and math.isnan(y))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    data = to_jsonable(value)
    if isinstance(data, (dict, list)):
        return json.dumps(data, sort_keys=True)
    return str(data)


def _metric_value(key: str, value: Any) -> float:
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"metric {key!r} must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isinf(value):
        raise ValueError(f"metric {key!r} is infinite")
    return value


class _quiet:
    """Raise a logger's level to ERROR for a block (MLflow's pickle warning is expected here)."""

    def __init__(self, name: str):
        self.logger = logging.getLogger(name)
        self.level = self.logger.level

    def __enter__(self) -> None:
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)
