"""Registry round trip on the shared SQLite-backed server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from tests.tracking.helpers import log_pretrain_run, registry_round_trip
from tracking.registry import (
    RegistryError,
    file_sha256,
    load_state_dict,
    register_checkpoint,
    resolve_ddsm_model,
    store_key,
)
from tracking.schema import Artifact, Tag, registered_model_name


def test_register_promote_resolve_round_trip(mlflow_server, fast_settings, tmp_path):
    registry_round_trip(mlflow_server.url, fast_settings, tmp_path, model_key="tinynet")


class NotATensor:
    """A pickled object that weights_only loading must refuse."""

    def __init__(self):
        self.payload = [1, 2, 3]


def test_weights_are_loaded_tensors_only(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    assert torch.equal(load_state_dict(good)["w"], torch.ones(2))
    bad = tmp_path / "bad.pt"
    torch.save({"w": NotATensor()}, bad)
    with pytest.raises(RegistryError, match="not a tensors-only state dict"):
        load_state_dict(bad)
    with pytest.raises(RegistryError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pt")


def _sqlite_store(path: Path) -> str:
    from tracking.store import ensure_store

    uri = f"sqlite:///{path / 'mlflow.db'}"
    ensure_store(uri)
    return uri


def _store_with_model(tmp_path: Path, settings, store: str, seed: int) -> tuple[str, str, dict]:
    uri = _sqlite_store(tmp_path / store)
    run_id, weights = log_pretrain_run(uri, settings, "tinynet", seed, 0.8, "tlstudy-registry-cache")
    assert register_checkpoint(run_id, Artifact.MODEL, registered_model_name("tinynet"), tracking_uri=uri) == "1"
    return uri, run_id, weights


def _same_weights(path: Path, weights: dict) -> bool:
    state = load_state_dict(path)
    return set(state) == set(weights) and all(torch.equal(state[k], v) for k, v in weights.items())


def test_weights_cache_is_keyed_by_store_and_checked_by_digest(tmp_path, fast_settings, monkeypatch):
    """Two stores each hold a different ``ddsm-tinynet/1``: each store's fine-tune gets its own
    weights; a cached file that is not the registered one is never served."""
    monkeypatch.chdir(tmp_path)  # the default cache .tlstudy/models/ lives in the working folder
    uri_a, run_a, weights_a = _store_with_model(tmp_path, fast_settings, "a", seed=1)
    uri_b, run_b, weights_b = _store_with_model(tmp_path, fast_settings, "b", seed=2)

    from_a = resolve_ddsm_model("tinynet", version=1, tracking_uri=uri_a)
    from_b = resolve_ddsm_model("tinynet", version=1, tracking_uri=uri_b)
    assert (from_a.source_run_id, from_b.source_run_id) == (run_a, run_b)
    assert from_a.state_dict_path != from_b.state_dict_path
    assert _same_weights(from_a.state_dict_path, weights_a)
    assert _same_weights(from_b.state_dict_path, weights_b)
    assert from_b.state_dict_path.resolve().is_relative_to((tmp_path / ".tlstudy" / "models").resolve())
    mv = MlflowClient(uri_b).get_model_version(registered_model_name("tinynet"), "1")
    assert mv.tags[Tag.STATE_DICT_SHA256] == file_sha256(from_b.state_dict_path) == from_b.sha256

    # A cached file that does not match the record is replaced by the store's file.
    shutil.copyfile(from_a.state_dict_path, from_b.state_dict_path)
    again = resolve_ddsm_model("tinynet", version=1, tracking_uri=uri_b)
    assert again.state_dict_path == from_b.state_dict_path
    assert _same_weights(again.state_dict_path, weights_b)

    # The store's own file changed after registration: refuse, in one line.
    artifact = Path(MlflowClient(uri_b).get_run(run_b).info.artifact_uri.removeprefix("file://")) / Artifact.STATE_DICT
    shutil.copyfile(from_a.state_dict_path, artifact)
    again.state_dict_path.unlink()
    with pytest.raises(RegistryError) as err:
        resolve_ddsm_model("tinynet", version=1, tracking_uri=uri_b)
    message = str(err.value)
    assert "registry recorded" in message and run_b in message and "\n" not in message
    assert not again.state_dict_path.exists()  # nothing was served


def test_store_key_drops_credentials():
    assert store_key("http://alice:s3cret@mlflow.example:5000") == store_key("http://mlflow.example:5000")
    assert store_key("http://mlflow.example:5000") != store_key("http://other.example:5000")
    assert "s3cret" not in store_key("http://alice:s3cret@mlflow.example:5000")
