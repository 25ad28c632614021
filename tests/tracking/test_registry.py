"""Registry round trip on the shared SQLite-backed server."""

from __future__ import annotations

import torch

from tests.tracking.helpers import registry_round_trip
from tracking.registry import RegistryError, load_state_dict

import pytest


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
