"""Step configs check types and ranges in __post_init__, one line naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from tlcore.analysis import CcaConfig
from tlcore.experiment import FinetuneConfig, PretrainConfig
from tlcore.params import options_of


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="resnet51"), "FinetuneConfig.model: unknown value 'resnet51'; valid: inception_v3, patch_cnn, "
                             "resnet50, vgg16. Did you mean 'resnet50'?"),
    (dict(epochs=0), "FinetuneConfig.epochs must be >= 1, got 0"),
    (dict(epochs=2.5), "FinetuneConfig.epochs must be an integer, got 2.5"),
    (dict(batch_size=0), "FinetuneConfig.batch_size must be >= 1, got 0"),
    (dict(seed=-1), "FinetuneConfig.seed must be >= 0, got -1"),
    (dict(seed=True), "FinetuneConfig.seed must be an integer, got True"),
    (dict(lr=0.0), "FinetuneConfig.lr must be > 0, got 0.0"),
    (dict(device="gpu"), "FinetuneConfig.device: unknown value 'gpu'"),
    (dict(dataset="mias2"), "FinetuneConfig.dataset: unknown value 'mias2'"),
    (dict(image_size=8), "FinetuneConfig.image_size must be >= 16, got 8"),
])
def test_finetune_config_refuses_bad_values(kwargs, message):
    with pytest.raises(ValueError) as info:
        FinetuneConfig(**kwargs)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_pretrain_and_cca_configs_run_the_same_checks():
    with pytest.raises(ValueError, match="PretrainConfig.init: unknown value 'ddsm'"):
        PretrainConfig(init="ddsm")
    with pytest.raises(ValueError, match="CcaConfig.epochs must be >= 1"):
        CcaConfig(epochs=0)
    with pytest.raises(ValueError, match="CcaConfig.mode: unknown value 'grid'"):
        CcaConfig(mode="grid")


def test_every_field_declares_its_help_text():
    for cls in (PretrainConfig, FinetuneConfig, CcaConfig):
        table = options_of(cls)
        assert list(table) == [f.name for f in dataclasses.fields(cls)]
        assert all(opt.help for _, opt in table.values())


def test_a_field_without_help_is_an_error():
    @dataclasses.dataclass(frozen=True)
    class Careless(FinetuneConfig):
        undocumented: int = 1

    with pytest.raises(TypeError, match="Careless.undocumented has no entry in OPTIONS"):
        options_of(Careless)
