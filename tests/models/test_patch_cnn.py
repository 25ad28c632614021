"""Patch classifier (stage 1) and whole-image model (stage 2, ``patch_cnn``)."""

from __future__ import annotations

import pytest
import torch

from tlcore.models import PATCH_CLASSES, create_model, create_patch_classifier, parameter_report, whole_image_from_patch


def test_patch_classifier_three_classes_on_small_patches():
    patch = create_patch_classifier(patch_size=32)
    assert patch.patch_size == 32 and patch.num_classes == 3 and PATCH_CLASSES == ("background", "benign", "malignant")
    logits = patch(torch.rand(4, 3, 32, 32))
    assert logits.shape == (4, 3)
    logits.sum().backward()
    assert patch.head.fc.weight.grad is not None
    assert {id(p) for p in patch.head_parameters()}.isdisjoint({id(p) for p in patch.body_parameters()})


def test_whole_image_copies_the_patch_body_and_accepts_any_size():
    patch = create_patch_classifier("resnet50", patch_size=32)
    whole = whole_image_from_patch(patch)
    assert whole.spec.name == "patch_cnn" and whole.init == "patch"
    for stage in ("stem", "block1", "block2", "block3", "block4"):
        src = getattr(patch, stage).state_dict()
        dst = getattr(whole, stage).state_dict()
        assert all(torch.equal(src[k], dst[k]) for k in src)
    with torch.no_grad():  # a copy: training the whole model leaves the patch classifier alone
        whole.stem.conv1.weight.add_(1.0)
    assert not torch.equal(whole.stem.conv1.weight, patch.stem.conv1.weight)
    whole.eval()
    with torch.no_grad():
        assert whole(torch.rand(1, 3, 96, 64)).shape == (1, 1)
        assert whole(torch.rand(2, 3, 64, 80)).shape == (2, 1)
    top = {id(p) for p in whole.top_parameters()}
    assert top == {id(p) for p in whole.top.parameters()} | {id(p) for p in whole.head.parameters()}
    report = parameter_report(whole)
    assert report["new"] == report["part_top"] + report["part_head"]


def test_vgg_body_whole_image_model():
    patch = create_patch_classifier("vgg16", patch_size=32)
    assert patch(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    whole = whole_image_from_patch(patch).eval()
    assert whole.patch_body == "vgg16"
    with torch.no_grad():
        assert whole(torch.rand(1, 3, 48, 32)).shape == (1, 1)
        assert whole(torch.rand(1, 3, 64, 96)).shape == (1, 1)
    assert set(whole.analysis_modules()) == {"conv1", "block1", "block2", "block3", "block4"}


def test_registered_patch_cnn_random_init_groups():
    model = create_model("patch_cnn", seed=0)
    assert model.patch_body == "resnet50" and model.init == "random"
    top = {id(p) for p in model.top_parameters()}
    assert {id(p) for p in model.top.parameters()} <= top
    assert top.isdisjoint({id(p) for p in model.block4.parameters()})
    assert len(model.body_parameters()) + len(model.top_parameters()) == len(list(model.parameters()))


def test_unknown_patch_body():
    with pytest.raises(ValueError, match="valid bodies: resnet50, vgg16"):
        create_patch_classifier("alexnet")
