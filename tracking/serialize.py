"""Stable JSON, config hashes and flattened params for MLflow."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from pathlib import Path, PurePath
from typing import Any, Mapping

MAX_PARAM_LENGTH = 6000  # MLflow's limit for one param value


def to_jsonable(obj: Any) -> Any:
    """Turn dataclasses, paths, enums, tuples, sets and numpy scalars into plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_jsonable(v) for v in obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():
        return to_jsonable(obj.item())  # numpy / torch scalar
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot serialise {type(obj).__name__} value {obj!r} to JSON")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) of ``obj``."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short sha256 hex digest of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def config_hash(config: Any, exclude: tuple[str, ...] = ()) -> str:
    """Digest of a resolved config (dataclass or mapping), ignoring top-level ``exclude`` keys.

    Use it as the run's identity: the same config gives the same hash, so a finished run
    can be found and an interrupted one re-attached.
    """
    data = to_jsonable(config)
    if exclude:
        if not isinstance(data, dict):
            raise TypeError("exclude needs a mapping or dataclass config")
        data = {k: v for k, v in data.items() if k not in exclude}
    return stable_hash(data)


def flatten_params(config: Any, prefix: str = "") -> dict[str, str]:
    """Flatten a nested config into ``{"a.b": "value"}`` strings for ``log_params``.

    Lists become JSON strings; values longer than MLflow's limit raise ``ValueError``.
    """
    data = to_jsonable(config)
    out: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
            return
        if isinstance(value, (dict, list)):
            text = json.dumps(value, sort_keys=True)
        elif value is None:
            text = "None"
        else:
            text = str(value)
        if len(text) > MAX_PARAM_LENGTH:
            raise ValueError(f"param {key!r} is {len(text)} characters long (MLflow allows {MAX_PARAM_LENGTH})")
        out[key] = text

    if not isinstance(data, dict):
        raise TypeError(f"flatten_params needs a mapping or dataclass, got {type(config).__name__}")
    walk(data, prefix)
    return out


def file_digest(path: str | Path, length: int = 16) -> str:
    """Short sha256 digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
