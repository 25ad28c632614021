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
    assert "`tlstudy weights fetch --model resnet50`" in message and "TLSTUDY_WEIGHTS_DOWNLOAD=0" in message
    assert "\n" not in message


def test_download_goes_through_the_enum_url_and_checks_the_hash(torch_home, tmp_path, monkeypatch, resnet_state):
    """A mirror folder (file://) stands in for download.pytorch.org; the file is a real state dict
    of the right shapes, so its sha256 cannot match the prefix torchvision's name carries."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("TLSTUDY_WEIGHTS_DOWNLOAD", "1")
    monkeypatch.setenv("TLSTUDY_WEIGHTS_MIRROR", mirror.as_uri())
    with pytest.raises(WeightsNotFoundError) as info:  # not on the mirror
        create_model("resnet50", init="imagenet")
    message = str(info.value)
    assert f"cannot download {mirror.as_uri()}/resnet50-0676ba61.pth" in message
    assert "`tlstudy weights fetch --model resnet50`" in message and "\n" not in message
    torch.save(resnet_state, mirror / "resnet50-0676ba61.pth")
    with pytest.raises(WeightsNotFoundError, match="does not start with 0676ba61 .* the file was discarded"):
        create_model("resnet50", init="imagenet")
    assert list(_checkpoints(torch_home).iterdir()) == []  # neither the file nor a partial one stays


def test_weights_cli_lists_and_fetches_from_the_cache(torch_home, resnet_state):
    from click.testing import CliRunner

    from pipelines.cli import main

    runner = CliRunner()
    listed = runner.invoke(main, ["weights", "list"])
    assert listed.exit_code == 0, listed.output
    assert str(torch_home / "hub" / "checkpoints") in listed.output
    row = next(line for line in listed.output.splitlines() if "ResNet50_Weights.IMAGENET1K_V1" in line)
    assert row.split()[2:] == ["no", "resnet50-0676ba61.pth"]
    missing = runner.invoke(main, ["weights", "fetch", "--model", "resnet50"], env={"TLSTUDY_WEIGHTS_MIRROR": (
        torch_home / "nowhere").as_uri()})
    assert missing.exit_code == 1 and missing.output.startswith("Error: resnet50: cannot download file://")
    torch.save(resnet_state, _checkpoints(torch_home) / "resnet50-0676ba61.pth")
    row = next(line for line in runner.invoke(main, ["weights", "list"]).output.splitlines()
               if "ResNet50_Weights.IMAGENET1K_V1" in line)
    assert row.split()[2] == "yes"
    fetched = runner.invoke(main, ["weights", "fetch", "--model", "resnet50"])
    assert fetched.exit_code == 0 and "already cached at" in fetched.output
    model = create_model("resnet50", init="imagenet")  # what the fetch left is what a fine-tune loads
    assert torch.equal(model.stem.conv1.weight, resnet_state["conv1.weight"])
    refused = runner.invoke(main, ["weights", "fetch", "--model", "patch_cnn"])
    assert refused.exit_code == 2 and "'patch_cnn' has no ImageNet weights" in refused.output
    assert runner.invoke(main, ["weights", "fetch"]).exit_code == 2


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
