"""VGG-16 (torchvision, no batch norm) cut into stem / block1..block4 / head.

``features`` indices: stage1 0-4 (pool1 = 4), stage2 5-9, stage3 10-16, stage4 17-23,
stage5 24-30. conv1 = features[0:2] (conv1_1 + ReLU); block1 = features[2:10] (to pool2);
block2 = [10:17] (pool3); block3 = [17:24] (pool4); block4 = [24:31] (pool5). The block
strides (4, 8, 16, 32) match ResNet-50's.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torchvision.models import vgg16
from torchvision.models.vgg import VGG

from tlcore.models._registry import register_model
from tlcore.models.spec import ANALYSIS_LAYERS, IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from tlcore.models.transfer import Backbone, TransferModel
from tlcore.models.weights import load_into_torchvision

VGG16_SPEC = ModelSpec(
    name="vgg16",
    input_size=(224, 224),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    analysis_layers=ANALYSIS_LAYERS,
    supports_imagenet=True,
    supports_hybrid=True,
    imagenet_weights="VGG16_Weights.IMAGENET1K_V1",
    layer_notes=(
        ("conv1", "features[0:2]: conv1_1 + ReLU (64 ch, stride 1)"),
        ("block1", "features[2:10]: rest of stage 1, stage 2, pool2 (128 ch, stride 4)"),
        ("block2", "features[10:17]: stage 3 + pool3 (256 ch, stride 8)"),
        ("block3", "features[17:24]: stage 4 + pool4 (512 ch, stride 16); hybrid: new bottleneck stage (512 ch)"),
        ("block4", "features[24:31]: stage 5 + pool5 (512 ch, stride 32); hybrid: new bottleneck stage (1024 ch)"),
    ),
)

_CUTS = {"stem": (0, 2), "block1": (2, 10), "block2": (10, 17), "block3": (17, 24), "block4": (24, 31)}


def tv_vgg16(imagenet_state: Mapping[str, Tensor] | None = None, source: str = "ImageNet weights") -> VGG:
    """A torchvision VGG-16, random or loaded strictly from ``imagenet_state``.

    The ``IMAGENET1K_FEATURES`` weights carry NaN classifier layers; those layers are
    re-initialised (with a warning) so that the model is usable.
    """
    model = vgg16(weights=None)
    if imagenet_state is not None:
        load_into_torchvision(model, imagenet_state, source=source)
        bad = [m for m in model.classifier if isinstance(m, nn.Linear) and not torch.isfinite(m.weight).all()]
        if bad:
            warnings.warn(f"{source}: VGG-16 classifier weights are not finite; re-initialising them", stacklevel=2)
            for m in bad:
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
    return model


def _slice(features: nn.Sequential, start: int, stop: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict((str(i), features[i]) for i in range(start, stop)))


def vgg_backbone(tv: VGG) -> Backbone:
    """Cut a torchvision VGG-16 ``features`` into the five stages (modules are moved)."""
    parts = {name: _slice(tv.features, a, b) for name, (a, b) in _CUTS.items()}
    return Backbone(
        **parts,
        channels={"stem": 64, "block1": 128, "block2": 256, "block3": 512, "block4": 512},
        tv_prefix={**{s: "features." for s in _CUTS}, "head": ""},
        arch="vgg16",
    )


@register_model("vgg16", VGG16_SPEC)
def build_vgg16(
    *, num_outputs: int = 1, imagenet_state: Mapping[str, Tensor] | None = None, source: str = "ImageNet weights"
) -> TransferModel:
    """VGG-16 with its classifier kept (fc6, fc7) and the last layer replaced by ``num_outputs``."""
    tv = tv_vgg16(imagenet_state, source)
    tv.classifier[6] = nn.Linear(tv.classifier[6].in_features, num_outputs)
    head = nn.Sequential(OrderedDict(avgpool=tv.avgpool, flatten=nn.Flatten(1), classifier=tv.classifier))
    return TransferModel(VGG16_SPEC, vgg_backbone(tv), head, head_names=("head.classifier.6",))
