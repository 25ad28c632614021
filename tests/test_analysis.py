"""Tests of the representational analysis step (`tlcore.analysis`): run_cca on tiny look-alike data.

Real pieces only: look-alike images written by ``tlcore.data.synth`` in their real formats,
a ResNet-50 DDSM state saved to a tensors file, the network the real fine-tuning step
(``run_finetune`` of the CCA's source cell) trained from it, and the real activation hooks,
at 64 px and one epoch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tlcore.analysis import (
    CCA_MEASURES,
    TABLE_COLUMNS,
    CcaConfig,
    collect_activations,
    compare_layers,
    run_cca,
    similarity_metrics,
)
from tlcore.data.splits import SplitConfig, make_target_split
from tlcore.experiment import prepare_data, run_finetune
from tlcore.models import ANALYSIS_LAYERS, create_model

LAYERS = ("conv1", "block1", "block2", "block3", "block4")
MAX_POSITIONS = 600


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data, a DDSM-like ResNet-50 state file, the fine-tuned state of the source cell, a config."""
    from tlcore.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("cca-lib")
    generate(root / "data", SynthConfig(scale="tiny", seed=0))
    state_path = root / "ddsm_resnet50.pt"
    # Seed differs from the config's, so the "DDSM" weights are not the random baseline's.
    torch.save(create_model("resnet50", seed=1234).state_dict(), state_path)
    config = CcaConfig(dataset="ultrasound", image_size=64, epochs=1, batch_size=8, measures=("cka",),
                       max_positions=MAX_POSITIONS, data_root=str(root / "data"), cache_dir=str(root / "cache"),
                       device="cpu")
    tuned = run_finetune(config.source_finetune_config(), ddsm_state=state_path, progress=False)
    tuned_path = root / "finetuned_resnet50.pt"
    torch.save(tuned.model.state_dict(), tuned_path)
    return config, state_path, tuned_path


@pytest.fixture(scope="module")
def result(setup):
    config, state_path, tuned_path = setup
    return run_cca(config, state_path, tuned_path, progress=False)


def test_run_cca_gives_every_layer_with_values_and_baselines_in_range(result):
    table = result.table
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert ANALYSIS_LAYERS == LAYERS
    assert list(dict.fromkeys(table["layer"])) == list(LAYERS)
    assert set(table["measure"]) == {"svcca", "cka"}
    assert len(table) == 2 * len(LAYERS)
    for col in ("value", "baseline"):
        values = table[col].to_numpy(dtype=float)
        assert np.isfinite(values).all(), table[["layer", "measure", col, "note"]]
        assert ((values >= 0.0) & (values <= 1.0 + 1e-9)).all(), values
    # Fine-tuning changed the network: it is not identical to the DDSM model everywhere.
    assert table["value"].min() < 0.999
    # Bounded, paired datapoints: never more than the budget; channels as ResNet-50's stages.
    assert (table["n_samples"] <= MAX_POSITIONS).all()
    channels = table.drop_duplicates("layer").set_index("layer")["channels"].to_dict()
    assert channels == {"conv1": 64, "block1": 256, "block2": 512, "block3": 1024, "block4": 2048}
    sv = table[table["measure"] == "svcca"]
    assert (sv["dims_a"] >= 1).all() and (sv["dims_b"] >= 1).all()
    # SVCCA never uses more directions than the samples support (guard of 2 samples per direction).
    assert (sv["n_samples"] >= 2 * (sv["dims_a"] + sv["dims_b"])).all()
    # block4 at 64 px has 2x2 positions per image: too few for 99 % of the variance, so it is capped.
    assert "capped" in sv.set_index("layer").at["block4", "note"]


def test_run_cca_split_provenance_and_metrics(result, setup):
    config, _, _ = setup
    data = prepare_data(config.dataset, config, progress=False)
    split = make_target_split(data.records, SplitConfig(seed=config.seed))
    assert result.split_hash == split.split_hash
    assert result.dataset_fingerprint == data.fingerprint
    assert result.n_test_images == len(split.test)
    portion = split.finetune(0.2)
    assert (result.n_finetune_train, result.n_finetune_val) == (len(portion.train), len(portion.val))
    assert result.n_finetune_train + result.n_finetune_val == len(split.pool)
    assert {row["part"] for row in result.manifest} == {"test", "train", "val"}

    metrics = result.metrics()
    expected = {f"{p}_{layer}" for p in ("cca", "cca_baseline", "cka", "cka_baseline") for layer in LAYERS}
    assert set(metrics) == expected
    sv = result.table[result.table["measure"] == "svcca"].set_index("layer")
    assert metrics["cca_block2"] == pytest.approx(sv.at["block2", "value"])
    assert metrics["cca_baseline_block2"] == pytest.approx(sv.at["block2", "baseline"])

    fig = result.figure_table()
    assert list(fig.columns) == ["dataset", "layer", "similarity", "baseline"]
    assert list(fig["layer"]) == list(LAYERS) and set(fig["dataset"]) == {"ultrasound"}


def test_self_similarity_is_one_through_the_same_machinery(setup, result):
    """A against A (two passes of the DDSM model, paired positions): 1 at every layer."""
    config, state_path, _ = setup
    data = prepare_data(config.dataset, config, progress=False)
    split = make_target_split(data.records, SplitConfig(seed=config.seed))
    model = create_model("resnet50", init="ddsm", ddsm_state=state_path)
    acts = collect_activations({"a": model, "a_again": model}, data.subset(split.test), mode=config.mode,
                               max_positions=config.max_positions, seed=config.seed, batch_size=32, device="cpu")
    assert list(acts["a"]) == list(LAYERS)
    for layer in LAYERS:
        np.testing.assert_array_equal(acts["a"][layer], acts["a_again"][layer])
    table = compare_layers(acts["a"], acts["a_again"], measures=("svcca", "cka"), keep=config.keep)
    assert len(table) == 2 * len(LAYERS)
    np.testing.assert_allclose(table["value"].to_numpy(dtype=float), 1.0, atol=1e-6)
    # The same positions as run_cca used: identical sample counts per layer.
    counts = result.table.drop_duplicates("layer").set_index("layer")["n_samples"]
    assert table.drop_duplicates("layer").set_index("layer")["n_samples"].equals(counts)


def test_compare_layers_records_why_a_measure_is_undefined():
    rng = np.random.default_rng(0)
    a = {"wide": rng.standard_normal((20, 50)), "tall": rng.standard_normal((400, 5))}
    b = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in a.items()}
    table = compare_layers(a, b, measures=("svcca", "pwcca", "cka")).set_index(["layer", "measure"])
    # 20 samples, 50 features: plain CCA (PWCCA) is underdetermined -> NaN and the reason.
    assert math.isnan(table.at[("wide", "pwcca"), "value"])
    assert "underdetermined" in table.at[("wide", "pwcca"), "note"]
    # SVCCA is capped to (20 - 1) // 4 = 4 directions per side and says so.
    assert table.at[("wide", "svcca"), "dims_a"] == 4
    assert "capped at 4 directions" in table.at[("wide", "svcca"), "note"]
    assert 0.0 <= table.at[("wide", "cka"), "value"] <= 1.0
    # Plenty of samples: every measure defined, no note, high similarity of the noisy copy.
    for m in ("svcca", "pwcca", "cka"):
        assert table.at[("tall", m), "note"] == ""
        assert 0.9 < table.at[("tall", m), "value"] <= 1.0
    with pytest.raises(ValueError, match="unknown measure 'cca_mean'"):
        compare_layers(a, b, measures=("cca_mean",))
    with pytest.raises(ValueError, match="must be paired"):
        compare_layers({"x": a["tall"]}, {"x": a["tall"][:100]})


def test_similarity_metrics_names_and_nan_left_out():
    table = pd.DataFrame([
        {"layer": "conv1", "measure": "svcca", "value": 0.9, "baseline": 0.4},
        {"layer": "conv1", "measure": "pwcca", "value": float("nan"), "baseline": 0.5},
        {"layer": "conv1", "measure": "cka_debiased", "value": 0.7, "baseline": 0.1},
    ])
    assert similarity_metrics(table) == {
        "cca_conv1": 0.9, "cca_baseline_conv1": 0.4, "pwcca_baseline_conv1": 0.5,
        "cka_debiased_conv1": 0.7, "cka_debiased_baseline_conv1": 0.1,
    }


def test_cca_config_validation_and_svcca_always_first():
    assert CcaConfig(measures=("cka", "pwcca")).measures == ("svcca", "cka", "pwcca")
    assert CcaConfig(measures=("CKA", "svcca", "cka")).measures == ("svcca", "cka")
    assert set(CCA_MEASURES) >= {"svcca", "pwcca", "cka"}
    with pytest.raises(ValueError, match="unknown"):
        CcaConfig(measures=("svcca", "cca"))
    with pytest.raises(ValueError, match="mode"):
        CcaConfig(mode="spatial")
    with pytest.raises(ValueError, match="keep"):
        CcaConfig(keep=1.5)
    with pytest.raises(ValueError, match="ft_fraction"):
        CcaConfig(ft_fraction=0.5)
    # Measures, keep and mode are part of the run identity (skip-if-done).
    assert CcaConfig(measures=("cka",)).config_hash() != CcaConfig().config_hash()
    assert CcaConfig(mode="pool").config_hash() != CcaConfig().config_hash()


def test_run_cca_refuses_to_start_without_ddsm_weights(setup):
    config, _, tuned_path = setup
    with pytest.raises(ValueError, match="DDSM-pretrained and the fine-tuned states"):
        run_cca(config, None, tuned_path)  # type: ignore[arg-type]


def test_b_is_the_network_it_is_given(setup):
    """Handing the DDSM state as B makes A and B the same network: similarity 1 at every layer."""
    config, state_path, _ = setup
    same = run_cca(config, state_path, state_path, progress=False)
    sv = same.table[same.table["measure"] == "svcca"]
    np.testing.assert_allclose(sv["value"].to_numpy(dtype=float), 1.0, atol=1e-6)


def test_source_cell_is_the_ddsm_ft_0_2_fine_tune_with_the_same_settings(setup):
    config, _, _ = setup
    source = config.source_finetune_config()
    assert (source.dataset, source.init, source.ft_fraction, source.transfer) == ("ultrasound", "ddsm", 0.2, "all")
    assert (source.model, source.seed, source.image_size, source.epochs, source.lr, source.batch_size) == (
        config.model, config.seed, config.image_size, config.epochs, config.lr, config.batch_size)
