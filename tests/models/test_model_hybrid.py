"""Hybrid transfer (Transfusion): keep up to block2, new light top."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet50

from tlcore.models import NotApplicableError, create_model, parameter_report

KEPT = ("stem.", "block1.", "block2.")


@pytest.fixture(scope="module")
def ddsm_resnet(tmp_path_factory):
    source = create_model("resnet50", seed=1)
    with torch.no_grad():
        for key, value in source.state_dict().items():
            if "running_var" in key:
                value.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("ddsm") / "resnet50_ddsm.pt"
    torch.save(source.state_dict(), path)
    return source, path


def test_hybrid_keeps_exactly_up_to_block2(ddsm_resnet):
    source, path = ddsm_resnet
    hybrid = create_model("resnet50", init="ddsm", transfer="hybrid", ddsm_state=path, seed=2)
    assert hybrid.transfer == "hybrid" and hybrid.init == "ddsm"
    src, dst = source.state_dict(), hybrid.state_dict()
    kept = [k for k in dst if k.startswith(KEPT)]
    assert kept and set(kept) == {k for k in src if k.startswith(KEPT)}
    assert all(torch.equal(dst[k], src[k]) for k in kept)
    rest = [k for k in dst if not k.startswith(KEPT)]
    assert rest and all(k.startswith(("block3.", "block4.", "head.")) for k in rest)
    for key in rest:  # new modules: no tensor of the source reappears
        assert key not in src or src[key].shape != dst[key].shape or not torch.equal(src[key], dst[key]), key
    assert hybrid.head.fc.weight.shape == (1, 1024)
    x = torch.rand(2, 3, 64, 64)
    hybrid.train()
    logits, aux = hybrid.forward_train(x)
    assert logits.shape == (2, 1) and aux is None
    logits.sum().backward()
    assert hybrid.block3.conv1.weight.grad is not None


def test_hybrid_parameter_report(ddsm_resnet):
    source, path = ddsm_resnet
    hybrid = create_model("resnet50", init="ddsm", transfer="hybrid", ddsm_state=path)
    report, full = parameter_report(hybrid), parameter_report(source)
    kept = sum(p.numel() for n, p in hybrid.named_parameters() if n.startswith(KEPT))
    assert report["pretrained_kept"] == kept
    assert report["new"] == report["part_block3"] + report["part_block4"] + report["part_head"]
    assert report["total"] == report["pretrained_kept"] + report["new"]
    assert full["part_block3"] + full["part_block4"] > 20_000_000  # layer3 + layer4 of ResNet-50
    assert report["new"] < 3_000_000 and report["total"] < full["total"] / 4
    random_hybrid = parameter_report(create_model("resnet50", transfer="hybrid"))
    assert random_hybrid["pretrained_kept"] == 0 and random_hybrid["new"] == random_hybrid["total"] == report["total"]


def test_hybrid_from_imagenet_keeps_the_imagenet_tensors(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    saved = resnet50(weights=None).state_dict()
    torch.save(saved, folder / "resnet50-0676ba61.pth")
    hybrid = create_model("resnet50", init="imagenet", transfer="hybrid")
    for key, value in hybrid.state_dict().items():
        tv_key = hybrid.torchvision_key(key)
        if key.startswith(KEPT):
            assert torch.equal(value, saved[tv_key]), key
        else:
            assert tv_key is None  # new part, no torchvision counterpart


@pytest.mark.parametrize("name,size", [("vgg16", 32), ("inception_v3", 75)])
def test_hybrid_vgg_and_inception(name, size):
    full = create_model(name, seed=0)
    hybrid = create_model(name, transfer="hybrid", seed=0)
    for key, value in hybrid.state_dict().items():  # same seed: the kept stages are built identically
        if key.startswith(KEPT):
            assert torch.equal(value, full.state_dict()[key])
    assert hybrid.aux is None
    assert parameter_report(hybrid)["total"] < parameter_report(full)["total"] / 5
    hybrid.train()
    logits, aux = hybrid.forward_train(torch.rand(2, 3, size, size))
    assert logits.shape == (2, 1) and aux is None
    assert set(hybrid.analysis_modules()) == {"conv1", "block1", "block2", "block3", "block4"}
    top = {id(p) for p in hybrid.top_parameters()}
    assert {id(p) for p in hybrid.block3.parameters()} <= top and not top & {id(p) for p in hybrid.block2.parameters()}


def test_hybrid_patch_cnn_is_not_supported():
    with pytest.raises(NotApplicableError, match="hybrid transfer is not defined for 'patch_cnn'"):
        create_model("patch_cnn", transfer="hybrid")
