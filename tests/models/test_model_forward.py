"""Smoke tests for every registered model at small input sizes."""

from __future__ import annotations

import pytest
import torch

from tlcore.models import count_parameters, create_model, model_names

SIZES = {"resnet50": 64, "vgg16": 32, "inception_v3": 75, "patch_cnn": 64}
STAGE_OF = {"conv1": "stem", "block1": "block1", "block2": "block2", "block3": "block3", "block4": "block4"}


@pytest.fixture(scope="module", params=sorted(SIZES))
def built(request):
    name = request.param
    return name, create_model(name, seed=0)


def test_every_registered_model_has_a_size():
    assert sorted(SIZES) == model_names()


def test_forward_backward_and_output_shape(built):
    name, model = built
    model.train()
    model.zero_grad()
    x = torch.rand(2, 3, SIZES[name], SIZES[name])
    logits = model(x)
    assert logits.shape == (2, 1)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    main_head = model.get_submodule(model.head_names[0])  # the aux head gets no gradient here
    assert main_head.weight.grad is not None
    first_conv = next(model.stem.parameters())
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_analysis_hooks_fire_with_sensible_shapes(built):
    name, model = built
    model.eval()
    modules = model.analysis_modules()
    assert list(modules) == ["conv1", "block1", "block2", "block3", "block4"]
    seen: dict[str, torch.Size] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, key=key: seen.__setitem__(key, out.shape))
        for key, m in modules.items()
    ]
    try:
        with torch.no_grad():
            model(torch.rand(2, 3, SIZES[name], SIZES[name]))
    finally:
        for h in handles:
            h.remove()
    assert list(seen) == list(modules)
    sides = []
    for layer, shape in seen.items():
        assert len(shape) == 4 and shape[0] == 2
        assert shape[1] == model.channels[STAGE_OF[layer]], (layer, shape)
        sides.append(shape[2])
    assert sides == sorted(sides, reverse=True)  # resolution never grows with depth
    assert sides[0] < SIZES[name] or name == "vgg16"  # VGG's conv1 keeps full resolution


def test_parameter_groups_partition_the_model(built):
    _, model = built
    top = {id(p) for p in model.top_parameters()}
    body = {id(p) for p in model.body_parameters()}
    head = {id(p) for p in model.head_parameters()}
    assert head <= top
    assert not top & body
    assert top | body == {id(p) for p in model.parameters()}
    assert sum(p.numel() for p in model.parameters()) == count_parameters(model)


def test_forward_train_without_aux_for_non_inception(built):
    name, model = built
    if name == "inception_v3":
        pytest.skip("covered by the inception aux test")
    model.train()
    logits, aux = model.forward_train(torch.rand(2, 3, SIZES[name], SIZES[name]))
    assert logits.shape == (2, 1) and aux is None


def test_inception_aux_logits_in_train_mode_only():
    model = create_model("inception_v3", seed=0)
    x = torch.rand(2, 3, 299, 299)  # the aux head needs about 299 px (and batch > 1: its BN sees 1x1 maps)
    model.train()
    model.requires_grad_(False)
    model.aux.requires_grad_(True)
    logits, aux = model.forward_train(x)
    assert logits.shape == (2, 1) and aux is not None and aux.shape == (2, 1)
    aux.sum().backward()
    assert model.aux.AuxLogits.fc.weight.grad is not None
    model.eval()
    with torch.no_grad():
        logits, aux = model.forward_train(x[:1, :, :120, :120])
    assert logits.shape == (1, 1) and aux is None
    model.train()
    with pytest.warns(UserWarning, match="auxiliary head"), torch.no_grad():
        _, aux = model.forward_train(torch.rand(2, 3, 75, 75))
    assert aux is None


def test_normalisation_buffers_and_grayscale_input():
    model = create_model("resnet50", seed=0).eval()
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor(model.spec.mean))
    assert torch.allclose(model.normalize.std.flatten(), torch.tensor(model.spec.std))
    assert "normalize.mean" not in model.state_dict()  # the spec, not the state, owns them
    gray = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(gray), model(gray.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match="expected images shaped"):
        model(torch.rand(2, 4, 64, 64))


def test_seed_makes_weights_reproducible_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = create_model("resnet50", seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = create_model("resnet50", seed=7)
    c = create_model("resnet50", seed=8)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.stem.conv1.weight, c.stem.conv1.weight)
