"""ImageNet loading from a fake torch hub cache, DDSM state round trips, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import inception_v3, resnet50

from tlcore.models import (
    NotApplicableError,
    StateDictMismatchError,
    WeightsNotFoundError,
    create_model,
    create_patch_classifier,
    parameter_report,
)


def _checkpoints(torch_home: Path) -> Path:
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(11)
    return resnet50(weights=None).state_dict()


@pytest.fixture()
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _assert_loaded(model, saved: dict[str, torch.Tensor], head_prefixes: tuple[str, ...]) -> None:
    mapped = set()
    for key, value in model.state_dict().items():
        tv_key = model.torchvision_key(key)
        assert tv_key is not None and tv_key in saved, key
        mapped.add(tv_key)
        if tv_key.startswith(head_prefixes):
            assert value.shape[0] == 1  # the new binary head
        else:
            assert torch.equal(value, saved[tv_key]), key
    assert mapped == set(saved)  # every saved tensor landed somewhere


def test_imagenet_weights_load_from_hub_cache(torch_home, resnet_state):
    torch.save(resnet_state, _checkpoints(torch_home) / "resnet50-0676ba61.pth")
    model = create_model("resnet50", init="imagenet", seed=0)
    _assert_loaded(model, resnet_state, ("fc.",))
    assert model.head.fc.weight.shape == (1, 2048)
    report = parameter_report(model)
    assert report["new"] == 2049 and report["pretrained_kept"] == report["total"] - 2049


def test_missing_imagenet_file_says_where_to_put_which_file(torch_home):
    with pytest.raises(WeightsNotFoundError) as info:
        create_model("resnet50", init="imagenet")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(torch_home / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "ResNet50_Weights.IMAGENET1K_V1" in message
    assert "resnet50-11ad3fa6.pth" in message  # the other accepted member


def test_other_enum_member_file_is_accepted(torch_home, resnet_state):
    torch.save(resnet_state, _checkpoints(torch_home) / "resnet50-11ad3fa6.pth")
    model = create_model("resnet50", init="imagenet")
    assert torch.equal(model.stem.conv1.weight, resnet_state["conv1.weight"])
    named = create_model("resnet50", init="imagenet", imagenet_weights="IMAGENET1K_V2")
    assert torch.equal(named.block2.layer2[0].conv2.weight, resnet_state["layer2.0.conv2.weight"])
    with pytest.raises(WeightsNotFoundError, match="resnet50-0676ba61.pth"):
        create_model("resnet50", init="imagenet", imagenet_weights="ResNet50_Weights.IMAGENET1K_V1")


def test_explicit_weights_path(tmp_path, torch_home, resnet_state):
    path = tmp_path / "my_resnet.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet_state.items()}}, path)
    model = create_model("resnet50", init="imagenet", imagenet_weights=path)
    assert torch.equal(model.block4.layer4[2].bn3.running_mean, resnet_state["layer4.2.bn3.running_mean"])
    with pytest.raises(WeightsNotFoundError, match="nowhere.pt"):
        create_model("resnet50", init="imagenet", imagenet_weights=tmp_path / "nowhere.pt")


def test_wrong_imagenet_file_names_the_mismatched_keys(tmp_path, torch_home, resnet_state):
    bad = dict(resnet_state)
    bad.pop("layer3.1.conv2.weight")
    bad["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(StateDictMismatchError) as info:
        create_model("resnet50", init="imagenet", imagenet_weights=path)
    message = str(info.value)
    assert "layer3.1.conv2.weight" in message and "extra.weight" in message and str(path) in message


def test_inception_imagenet_keeps_aux_body_and_replaces_both_heads(torch_home):
    torch.manual_seed(5)
    saved = inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    torch.save(saved, _checkpoints(torch_home) / "inception_v3_google-0cc3c7bd.pth")
    model = create_model("inception_v3", init="imagenet")
    _assert_loaded(model, saved, ("fc.", "AuxLogits.fc."))
    assert {id(p) for p in model.head_parameters()} == {
        id(model.head.fc.weight),
        id(model.head.fc.bias),
        id(model.aux.AuxLogits.fc.weight),
        id(model.aux.AuxLogits.fc.bias),
    }


def test_imagenet_for_patch_cnn_is_not_applicable(torch_home):
    with pytest.raises(NotApplicableError, match="NA"):
        create_model("patch_cnn", init="imagenet")
    assert issubclass(NotApplicableError, ValueError)


def test_patch_classifier_imagenet_body(torch_home, resnet_state):
    torch.save(resnet_state, _checkpoints(torch_home) / "resnet50-0676ba61.pth")
    patch = create_patch_classifier("resnet50", init="imagenet")
    assert torch.equal(patch.block3.layer3[0].conv1.weight, resnet_state["layer3.0.conv1.weight"])
    assert patch.head.fc.out_features == 3


@pytest.mark.parametrize("name", ["resnet50", "patch_cnn"])
def test_ddsm_round_trip_keeps_everything_including_head(tmp_path, name):
    source = create_model(name, seed=3)
    with torch.no_grad():  # make BN statistics non-trivial so they are checked too
        for key, value in source.state_dict().items():
            if "running_mean" in key:
                value.normal_()
    path = tmp_path / f"{name}_ddsm.pt"
    torch.save(source.state_dict(), path)
    loaded = create_model(name, init="ddsm", ddsm_state=path, seed=4)
    assert loaded.init == "ddsm" and loaded.transfer == "all"
    src, dst = source.state_dict(), loaded.state_dict()
    assert set(src) == set(dst)
    assert all(torch.equal(src[k], dst[k]) for k in src)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(source.eval()(x), loaded.eval()(x))
    from_dict = create_model(name, init="ddsm", ddsm_state=source.state_dict())
    assert torch.equal(from_dict.head.fc.weight, source.head.fc.weight)
    report = parameter_report(loaded)
    assert report["new"] == 0 and report["pretrained_kept"] == report["total"]


def test_ddsm_state_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(create_model("resnet50", seed=0).state_dict(), path)
    with pytest.raises(StateDictMismatchError) as info:
        create_model("patch_cnn", init="ddsm", ddsm_state=path)
    message = str(info.value)
    assert "missing keys: top." in message and str(path) in message
    with pytest.raises(
        StateDictMismatchError, match=r"shape mismatches: .*head.fc.weight \(1, 2048\) vs model \(2, 2048\)"
    ):
        create_model("resnet50", init="ddsm", ddsm_state=path, num_outputs=2)


def test_ddsm_needs_a_state(tmp_path):
    with pytest.raises(ValueError, match="needs ddsm_state"):
        create_model("resnet50", init="ddsm")
    with pytest.raises(WeightsNotFoundError, match="missing.pt"):
        create_model("resnet50", init="ddsm", ddsm_state=tmp_path / "missing.pt")
