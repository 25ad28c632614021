"""ResNet-50 (torchvision) cut into stem / block1..block4 / head."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.models.resnet import ResNet

from tlcore.models._registry import register_model
from tlcore.models.spec import ANALYSIS_LAYERS, IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from tlcore.models.transfer import Backbone, TransferModel
from tlcore.models.weights import load_into_torchvision

RESNET50_SPEC = ModelSpec(
    name="resnet50",
    input_size=(224, 224),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    analysis_layers=ANALYSIS_LAYERS,
    supports_imagenet=True,
    supports_hybrid=True,
    imagenet_weights="ResNet50_Weights.IMAGENET1K_V1",
    layer_notes=(
        ("conv1", "stem: conv1 + bn1 + relu (64 ch, stride 2)"),
        ("block1", "maxpool + layer1 (256 ch, stride 4)"),
        ("block2", "layer2 (512 ch, stride 8)"),
        ("block3", "layer3 (1024 ch, stride 16); hybrid: new bottleneck stage (512 ch)"),
        ("block4", "layer4 (2048 ch, stride 32); hybrid: new bottleneck stage (1024 ch)"),
    ),
)


def tv_resnet50(imagenet_state: Mapping[str, Tensor] | None = None, source: str = "ImageNet weights") -> ResNet:
    """A torchvision ResNet-50 (1000-class head), random or loaded strictly from ``imagenet_state``."""
    model = resnet50(weights=None)
    if imagenet_state is not None:
        load_into_torchvision(model, imagenet_state, source=source)
    return model


def resnet_backbone(tv: ResNet) -> Backbone:
    """Cut a torchvision ResNet into the five stages (modules are moved, not copied)."""
    return Backbone(
        stem=nn.Sequential(OrderedDict(conv1=tv.conv1, bn1=tv.bn1, relu=tv.relu)),
        block1=nn.Sequential(OrderedDict(maxpool=tv.maxpool, layer1=tv.layer1)),
        block2=nn.Sequential(OrderedDict(layer2=tv.layer2)),
        block3=nn.Sequential(OrderedDict(layer3=tv.layer3)),
        block4=nn.Sequential(OrderedDict(layer4=tv.layer4)),
        channels={"stem": 64, "block1": 256, "block2": 512, "block3": 1024, "block4": 2048},
        tv_prefix={s: "" for s in ("stem", "block1", "block2", "block3", "block4", "head")},
        arch="resnet50",
    )


@register_model("resnet50", RESNET50_SPEC)
def build_resnet50(
    *, num_outputs: int = 1, imagenet_state: Mapping[str, Tensor] | None = None, source: str = "ImageNet weights"
) -> TransferModel:
    """ResNet-50 with a new ``num_outputs`` head (the ImageNet fc is dropped after loading)."""
    tv = tv_resnet50(imagenet_state, source)
    head = nn.Sequential(
        OrderedDict(avgpool=tv.avgpool, flatten=nn.Flatten(1), fc=nn.Linear(tv.fc.in_features, num_outputs))
    )
    return TransferModel(RESNET50_SPEC, resnet_backbone(tv), head, head_names=("head.fc",))
