"""Model registry: register DDSM checkpoints, keep a ``champion`` alias, resolve weights.

Reuse never unpickles the MLflow model: the pre-training run logs a tensors-only
``weights/state_dict.pt`` next to it, and :func:`load_state_dict` reads that file with
``torch.load(..., weights_only=True)``.

Registering records the file's sha256 (tag ``tlstudy.state_dict_sha256`` on the model
version and on the run). The local weights cache is
``.tlstudy/models/<store>/<source run id>/`` (``<store>``: a hash of the tracking URI
without credentials), and a cached or downloaded file is only served when its digest is
the recorded one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tracking.schema import (
    CHAMPION_ALIAS,
    REGISTERED_MODEL_PREFIX,
    TAG_PROJECT,
    Artifact,
    Metric,
    Param,
    Tag,
    registered_model_description,
    registered_model_name,
)
from tracking.store import get_client, resolve_tracking_uri


class RegistryError(RuntimeError):
    """A registered model, version, alias or weights file is missing or unusable."""


@dataclass(frozen=True)
class ResolvedModel:
    """A DDSM checkpoint ready for reuse: where it came from and its local weights file."""

    name: str | None
    version: str | None
    source_run_id: str
    state_dict_path: Path
    requested: str = ""  # the reference asked for: models:/name@alias, models:/name/N or runs:/id
    sha256: str = ""  # digest of state_dict_path (checked against the registry's record)

    def as_tags(self) -> dict[str, str]:
        """Tags a fine-tune run records about the checkpoint it started from."""
        return {
            Tag.DDSM_MODEL_NAME: self.name or "",
            Tag.DDSM_MODEL_VERSION: self.version or "",
            Tag.DDSM_SOURCE_RUN_ID: self.source_run_id,
            Tag.DDSM_MODEL_URI: self.requested,
        }


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


def _missing_model_message(name: str) -> str:
    model = name.removeprefix("ddsm-")
    return (
        f"no registered model {name!r}: run `tlstudy pretrain --model {model}` "
        f"(or `mlflow run . -e pretrain -P model={model}`) first"
    )


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _redacted(tracking_uri: str) -> str:
    """A tracking URI without credentials (``user:password@``) or query string."""
    parts = urlsplit(tracking_uri)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def store_key(tracking_uri: str) -> str:
    """A short stable name for a tracking store: sha256 of its URI without credentials."""
    return hashlib.sha256(_redacted(tracking_uri).encode("utf-8")).hexdigest()[:16]


def _download_state_dict(client, run_id: str, into: Path, what: str) -> Path:
    from mlflow.exceptions import MlflowException

    try:
        return Path(client.download_artifacts(run_id, Artifact.STATE_DICT, str(into)))
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"run {run_id} ({what}) has no tensors file {Artifact.STATE_DICT!r} to load: {exc}") from exc


def _recorded_sha256(client, run_id: str) -> str:
    """The weights digest tagged on the run at registration ('' when none was recorded)."""
    return client.get_run(run_id).data.tags.get(Tag.STATE_DICT_SHA256, "")


def _model_of(registered_name: str) -> str:
    """``ddsm-resnet50`` -> ``resnet50`` (other names are returned as they are)."""
    return registered_name.removeprefix(REGISTERED_MODEL_PREFIX)


def register_checkpoint(
    run_id: str,
    artifact_path: str = Artifact.MODEL,
    model_name: str = "",
    *,
    tracking_uri: str | None = None,
    tags: dict[str, Any] | None = None,
) -> str:
    """Register the MLflow model at ``runs:/<run_id>/<artifact_path>`` under ``model_name``.

    Creates the registered model if needed. Registering the same run and path twice
    returns the existing version instead of adding a duplicate. Returns the version.
    """
    from mlflow.exceptions import MlflowException

    if not model_name:
        raise ValueError("model_name is required (e.g. registered_model_name('resnet50'))")
    client = get_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise RegistryError(f"cannot register {model_name!r}: run {run_id} not found ({exc})") from exc
    source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    digest = run.data.tags.get(Tag.STATE_DICT_SHA256, "")
    if not digest:  # what fine-tunes will check the weights against
        staging = Path(tempfile.mkdtemp(prefix="tlstudy-register-"))
        try:
            digest = file_sha256(_download_state_dict(client, run_id, staging, model_name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        client.set_tag(run_id, Tag.STATE_DICT_SHA256, digest)
    try:
        client.create_registered_model(
            model_name, tags={TAG_PROJECT: "tlstudy", Param.MODEL: _model_of(model_name)},
            description=registered_model_description(_model_of(model_name)),
        )
    except MlflowException as exc:
        if _code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    for mv in existing:
        if mv.source.rstrip("/") == source:
            if not mv.tags.get(Tag.STATE_DICT_SHA256):
                client.set_model_version_tag(model_name, str(mv.version), Tag.STATE_DICT_SHA256, digest)
            return str(mv.version)
    version_tags = {k: str(v) for k, v in (tags or {}).items()} | {Tag.STATE_DICT_SHA256: digest}
    mv = client.create_model_version(model_name, source=source, run_id=run_id, tags=version_tags)
    return str(mv.version)


def _version_metric(client, name: str, version: str, metric: str) -> float:
    mv = client.get_model_version(name, version)
    if not mv.run_id:
        raise RegistryError(f"version {version} of {name!r} has no source run, so no {metric!r} to compare")
    value = client.get_run(mv.run_id).data.metrics.get(metric)
    if value is None:
        raise RegistryError(f"version {version} of {name!r}: its run {mv.run_id} has no metric {metric!r}")
    return float(value)


def promote_if_better(
    model_name: str,
    version: str | int,
    metric: str = Metric.TEST_AUC,
    *,
    alias: str = CHAMPION_ALIAS,
    tracking_uri: str | None = None,
) -> bool:
    """Move ``alias`` to ``version`` when its run's ``metric`` beats the current holder's.

    Also moves it when no version holds the alias yet. Returns True when the alias moved.
    Ties keep the current champion.
    """
    from mlflow.exceptions import MlflowException

    client = get_client(tracking_uri)
    version = str(version)
    new_value = _version_metric(client, model_name, version, metric)
    try:
        current = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if _code(exc) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        current = None
    if current is not None:
        if str(current.version) == version:
            return False
        try:
            current_value = _version_metric(client, model_name, str(current.version), metric)
        except RegistryError:
            current_value = float("-inf")  # a champion without the metric loses to one with it
        if not new_value > current_value:
            return False
    client.set_registered_model_alias(model_name, alias, version)
    return True


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-zA-Z]+)(?:/.*)?$")


def resolve_ddsm_model(
    model: str,
    uri: str | None = None,
    version: str | int | None = None,
    *,
    tracking_uri: str | None = None,
    dst_dir: str | Path | None = None,
    alias: str = CHAMPION_ALIAS,
) -> ResolvedModel:
    """Find the DDSM checkpoint for ``model`` and download only its tensors file.

    Resolution order: ``uri`` (``models:/name@alias``, ``models:/name/3`` or
    ``runs:/<run_id>``), else ``version`` of ``ddsm-<model>``, else
    ``models:/ddsm-<model>@champion``. Raises :class:`RegistryError` (never falls back)
    when the model, version, alias or weights file is missing, or when the file's sha256
    is not the one recorded at registration. The cache is keyed by store and source run.
    """
    from mlflow.exceptions import MlflowException

    resolved_uri = resolve_tracking_uri(tracking_uri)
    client = get_client(resolved_uri)
    name: str | None = registered_model_name(model)
    resolved_version: str | None = None
    expected = ""
    if uri:
        if m := _MODELS_URI.match(uri):
            name = m["name"]
            mv = _get_version(client, name, version=m["version"], alias=m["alias"])
            run_id, resolved_version = mv.run_id, str(mv.version)
            expected = (mv.tags or {}).get(Tag.STATE_DICT_SHA256, "")
        elif m := _RUNS_URI.match(uri):
            name, run_id = None, m["run_id"]
        else:
            raise RegistryError(
                f"unsupported model URI {uri!r}: use models:/<name>@<alias>, models:/<name>/<version> "
                "or runs:/<run_id>"
            )
    else:
        mv = _get_version(client, name, version=None if version is None else str(version), alias=alias)
        run_id, resolved_version = mv.run_id, str(mv.version)
        expected = (mv.tags or {}).get(Tag.STATE_DICT_SHA256, "")
    if not run_id:
        raise RegistryError(f"version {resolved_version} of {name!r} has no source run; cannot find its weights")
    if not expected:
        try:
            expected = _recorded_sha256(client, run_id)
        except MlflowException as exc:
            raise RegistryError(f"run {run_id} ({name or uri}) not found on {_redacted(resolved_uri)}: {exc}") from exc

    # Keyed by store and source run: another store's "ddsm-x/1" is another cache entry.
    cache = Path(dst_dir) if dst_dir is not None else (
        Path(".tlstudy") / "models" / store_key(resolved_uri) / run_id)
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / Artifact.STATE_DICT
    what = f"{name or uri} version {resolved_version}" if resolved_version else (name or uri or run_id)
    # A cached file is served only when it is the recorded file; without a record, fetch afresh.
    digest = file_sha256(final) if final.is_file() and expected else ""
    if not digest or digest != expected:
        # Download into a private folder, then rename: concurrent fine-tunes resolving the
        # same run must never read a half-written file.
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
        try:
            local = _download_state_dict(client, run_id, staging, what)
            digest = file_sha256(local)
            if expected and digest != expected:
                raise RegistryError(
                    f"weights of run {run_id} ({what}) on {_redacted(resolved_uri)} have sha256 {digest[:12]}..., "
                    f"but the registry recorded {expected[:12]}...; refusing to load them"
                )
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if uri:
        requested = uri
    elif version is not None:
        requested = f"models:/{name}/{version}"
    else:
        requested = f"models:/{name}@{alias}"
    return ResolvedModel(name=name, version=resolved_version, source_run_id=run_id, state_dict_path=final,
                         requested=requested, sha256=digest)


def _get_version(client, name: str, version: str | None, alias: str | None):
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(_missing_model_message(name)) from None
        raise
    try:
        if version is not None:
            return client.get_model_version(name, version)
        return client.get_model_version_by_alias(name, alias or CHAMPION_ALIAS)
    except MlflowException as exc:
        if _code(exc) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise RegistryError(
            f"registered model {name!r} has no {what}; see the MLflow UI (Model registry) for its versions "
            f"(`tlstudy pretrain` promotes the best one to '{CHAMPION_ALIAS}')"
        ) from None


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """Load a tensors-only state dict with ``torch.load(weights_only=True)`` onto the CPU."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise RegistryError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RegistryError(f"{path}: not a tensors-only state dict ({exc})") from exc
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise RegistryError(f"{path}: expected a dict of tensors")
    return state
