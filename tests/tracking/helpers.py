"""Fixture-free helpers shared by the tracking tests (registry round trip on any store)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tracking.logger import LoggerSettings, RunLogger
from tracking.registry import (
    RegistryError,
    load_state_dict,
    promote_if_better,
    register_checkpoint,
    resolve_ddsm_model,
)
from tracking.schema import Artifact, Metric, registered_model_name, run_name
from tracking.serialize import config_hash


def log_pretrain_run(uri: str, settings: LoggerSettings, model_key: str, seed: int, test_auc: float,
                     experiment: str) -> tuple[str, dict[str, torch.Tensor]]:
    """Log a tiny 'pretrain' run with ``test_auc``; return its run id and the model's weights."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    cfg = {"stage": "pretrain", "model": model_key, "seed": seed, "experiment": experiment}
    with RunLogger(run_name("pretrain", "ddsm", model_key, "imagenet", seed=seed), config_hash(cfg),
                   stage="pretrain", experiment=experiment, tracking_uri=uri, settings=settings) as run:
        run.log_params({"dataset": "ddsm", "model": model_key, "seed": seed})
        run.log_metrics({Metric.TEST_AUC: test_auc})
        run.log_model(model, torch.randn(2, 4))
    return run.run_id, {k: v.clone() for k, v in model.state_dict().items()}


def registry_round_trip(uri: str, settings: LoggerSettings, tmp_path: Path, model_key: str,
                        experiment: str = "tlstudy-registry") -> None:
    """Register three checkpoints (AUC 0.70, 0.90, 0.80); the champion must end on the 0.90 one."""
    name = registered_model_name(model_key)
    with pytest.raises(RegistryError) as err:
        resolve_ddsm_model(model_key, tracking_uri=uri, dst_dir=tmp_path / "none")
    assert str(err.value) == (
        f"no registered model '{name}': run `tlstudy pretrain --model {model_key}` "
        f"(or `mlflow run . -e pretrain -P model={model_key}`) first"
    )

    runs = [log_pretrain_run(uri, settings, model_key, seed, auc, experiment)
            for seed, auc in ((1, 0.70), (2, 0.90), (3, 0.80))]
    versions = [register_checkpoint(run_id, Artifact.MODEL, name, tracking_uri=uri) for run_id, _ in runs]
    assert versions == ["1", "2", "3"]
    # Registering the same run again does not add a version.
    assert register_checkpoint(runs[0][0], Artifact.MODEL, name, tracking_uri=uri) == "1"

    with pytest.raises(RegistryError, match="has no alias 'champion'"):  # registered, never promoted
        resolve_ddsm_model(model_key, tracking_uri=uri, dst_dir=tmp_path / "unpromoted")
    assert promote_if_better(name, versions[0], tracking_uri=uri) is True  # no champion yet
    assert promote_if_better(name, versions[1], tracking_uri=uri) is True  # 0.90 > 0.70
    assert promote_if_better(name, versions[2], tracking_uri=uri) is False  # 0.80 < 0.90

    resolved = resolve_ddsm_model(model_key, tracking_uri=uri, dst_dir=tmp_path / "champion")
    assert (resolved.name, resolved.version, resolved.source_run_id) == (name, "2", runs[1][0])
    assert resolved.state_dict_path.name == "state_dict.pt"
    state = load_state_dict(resolved.state_dict_path)
    assert set(state) == set(runs[1][1])
    for key, tensor in runs[1][1].items():
        assert torch.equal(state[key], tensor)
    assert resolved.as_tags()["tlstudy.ddsm_model_version"] == "2"

    by_version = resolve_ddsm_model(model_key, version=3, tracking_uri=uri, dst_dir=tmp_path / "v3")
    assert by_version.source_run_id == runs[2][0]
    by_uri = resolve_ddsm_model(model_key, uri=f"models:/{name}/1", tracking_uri=uri, dst_dir=tmp_path / "v1")
    assert (by_uri.version, by_uri.source_run_id) == ("1", runs[0][0])
    by_run = resolve_ddsm_model(model_key, uri=f"runs:/{runs[2][0]}", tracking_uri=uri, dst_dir=tmp_path / "r3")
    assert (by_run.version, by_run.source_run_id) == (None, runs[2][0])
    with pytest.raises(RegistryError, match="unsupported model URI"):
        resolve_ddsm_model(model_key, uri="s3://bucket/model", tracking_uri=uri)
    with pytest.raises(RegistryError, match="has no version 9"):
        resolve_ddsm_model(model_key, version=9, tracking_uri=uri, dst_dir=tmp_path / "v9")
