from __future__ import annotations

import dataclasses

import pytest

from tlcore.models import ANALYSIS_LAYERS, create_model, get_spec, model_names, register_model, weights_file_name


def test_model_names_are_the_four_models():
    assert model_names() == ["inception_v3", "patch_cnn", "resnet50", "vgg16"]


def test_specs_carry_input_size_normalisation_and_layers():
    sizes = {"resnet50": (224, 224), "vgg16": (224, 224), "inception_v3": (299, 299), "patch_cnn": (1152, 896)}
    for name, size in sizes.items():
        spec = get_spec(name)
        assert spec.name == name
        assert spec.input_size == size
        assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
        assert spec.analysis_layers == ANALYSIS_LAYERS == ("conv1", "block1", "block2", "block3", "block4")
        assert [layer for layer, _ in spec.layer_notes] == list(ANALYSIS_LAYERS)
    assert get_spec("patch_cnn").supports_imagenet is False
    assert get_spec("patch_cnn").imagenet_weights is None
    assert get_spec("resnet50").supports_hybrid is True


def test_imagenet_weights_names_resolve_to_torchvision_files():
    assert weights_file_name(get_spec("resnet50").imagenet_weights) == "resnet50-0676ba61.pth"
    assert weights_file_name(get_spec("vgg16").imagenet_weights) == "vgg16-397923af.pth"
    assert weights_file_name(get_spec("inception_v3").imagenet_weights) == "inception_v3_google-0cc3c7bd.pth"


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(KeyError) as info:
        get_spec("resnet5")
    message = str(info.value)
    for name in model_names():
        assert name in message
    assert "Did you mean 'resnet50'" in message
    with pytest.raises(KeyError, match="valid models"):
        create_model("alexnet")


def test_duplicate_registration_is_an_error():
    spec = get_spec("resnet50")
    with pytest.raises(ValueError, match="already registered"):

        @register_model("resnet50", spec)
        def _builder(**kwargs):  # pragma: no cover - never called
            raise AssertionError

    assert model_names() == ["inception_v3", "patch_cnn", "resnet50", "vgg16"]


def test_spec_name_must_match_registered_name():
    spec = dataclasses.replace(get_spec("resnet50"), name="other")
    with pytest.raises(ValueError, match="must match"):
        register_model("resnet50_copy", spec)


def test_unknown_init_and_transfer_suggest_valid_values():
    with pytest.raises(ValueError, match="Did you mean 'imagenet'"):
        create_model("resnet50", init="imagenett")
    with pytest.raises(ValueError, match="valid: all, hybrid"):
        create_model("resnet50", transfer="partial")
