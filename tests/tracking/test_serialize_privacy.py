from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from tracking.privacy import PrivacyError, assert_no_patient_identifiers
from tracking.serialize import canonical_json, config_hash, flatten_params


@dataclass
class Optim:
    lr: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Cfg:
    dataset: str = "mias"
    root: Path = Path("/data/mias")
    optim: Optim = field(default_factory=Optim)


def test_config_hash_is_stable_and_key_order_free():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash(Cfg()) != config_hash(Cfg(optim=Optim(lr=0.02)))
    assert config_hash(Cfg(), exclude=("root",)) == config_hash(Cfg(root=Path("/elsewhere")), exclude=("root",))
    assert canonical_json(Cfg()) == '{"dataset":"mias","optim":{"betas":[0.9,0.999],"lr":0.01},"root":"/data/mias"}'


def test_flatten_params_dots_nested_fields():
    assert flatten_params(Cfg()) == {
        "dataset": "mias", "root": "/data/mias", "optim.lr": "0.01", "optim.betas": "[0.9, 0.999]",
    }
    with pytest.raises(ValueError, match="'big' is 7000 characters"):
        flatten_params({"big": "x" * 7000})


def test_privacy_guard_rejects_patient_fields_and_ids():
    assert_no_patient_identifiers(pd.DataFrame({"image_id": ["ddsm-0a1b"], "label": [1]}))
    with pytest.raises(PrivacyError, match="'patient_id'"):
        assert_no_patient_identifiers(pd.DataFrame({"image_id": ["a"], "patient_id": ["x"]}), "manifest")
    with pytest.raises(PrivacyError, match="patient id"):
        assert_no_patient_identifiers(pd.DataFrame({"image_id": ["Mass-Training_P_00001_LEFT_CC"]}))
    with pytest.raises(PrivacyError):
        assert_no_patient_identifiers({"cfg": {"ids": ["P_01234"]}})
    with pytest.raises(PrivacyError):
        assert_no_patient_identifiers({"Patient ID": "removed"})
