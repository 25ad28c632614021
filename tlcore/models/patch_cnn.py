"""Patch-based CNN (Shen et al. 2019, "end2end-all-conv"): patch classifier and whole-image model.

Stage 1, :class:`PatchClassifier`: a ResNet-50 (default) or VGG-16 body + global average
pooling + a 3-class head (background / benign / malignant), trained on patches (224 px by
default). Stage 2, the whole-image model registered as ``patch_cnn``: the patch body
applied to the whole image (1152x896), two new top blocks, global average pooling and a
binary head. Everything after the body is convolutional, so any input size works.

Top blocks: for a ResNet body two bottleneck blocks 2048 -> [512, 512, 2048] (stride 1,
identity shortcuts); for a VGG body two VGG blocks of 512 channels (2 x conv3x3-BN-ReLU +
2x2 max-pool with ceil mode). ``top_parameters()`` (new top + head) is what phase-1
training updates; phase 2 trains everything.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace

from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from tlcore.models._registry import get_spec, register_model
from tlcore.models.errors import NotApplicableError
from tlcore.models.hybrid import init_conv_bn
from tlcore.models.resnet import resnet_backbone, tv_resnet50
from tlcore.models.spec import ANALYSIS_LAYERS, IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from tlcore.models.transfer import Backbone, Normalize, TransferModel
from tlcore.models.vgg import tv_vgg16, vgg_backbone
from tlcore.models.weights import load_imagenet_state

PATCH_CLASSES: tuple[str, ...] = ("background", "benign", "malignant")
PATCH_BODIES: tuple[str, ...] = ("resnet50", "vgg16")

PATCH_CNN_SPEC = ModelSpec(
    name="patch_cnn",
    input_size=(1152, 896),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    analysis_layers=ANALYSIS_LAYERS,
    supports_imagenet=False,
    supports_hybrid=False,
    imagenet_weights=None,
    layer_notes=(
        ("conv1", "patch body (ResNet-50) stem: conv1 + bn1 + relu"),
        ("block1", "patch body maxpool + layer1"),
        ("block2", "patch body layer2"),
        ("block3", "patch body layer3"),
        ("block4", "patch body layer4 (before the two new top blocks)"),
    ),
)


def _backbone(body: str, imagenet_state: Mapping[str, Tensor] | None, source: str) -> Backbone:
    if body == "resnet50":
        return resnet_backbone(tv_resnet50(imagenet_state, source))
    if body == "vgg16":
        return vgg_backbone(tv_vgg16(imagenet_state, source))
    raise ValueError(f"unknown patch body {body!r}; valid bodies: {', '.join(PATCH_BODIES)}")


class PatchClassifier(nn.Module):
    """Stage-1 patch classifier: body + global average pooling + ``num_classes`` head.

    ``forward`` takes patches (B, 3, h, w) in [0, 1] (normalised inside) and returns
    logits (B, num_classes); classes are :data:`PATCH_CLASSES` by default.
    """

    def __init__(self, backbone: Backbone, num_classes: int = 3, patch_size: int = 224):
        super().__init__()
        self.body_name = backbone.arch
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.channels = dict(backbone.channels)
        self.tv_prefix = dict(backbone.tv_prefix)
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD, backbone.inception_transform)
        self.stem = backbone.stem
        self.block1 = backbone.block1
        self.block2 = backbone.block2
        self.block3 = backbone.block3
        self.block4 = backbone.block4
        self.head = nn.Sequential(
            OrderedDict(
                avgpool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(1),
                fc=nn.Linear(backbone.channels["block4"], num_classes),
            )
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """Body output (after block4)."""
        h = self.normalize(x)
        for stage in (self.stem, self.block1, self.block2, self.block3, self.block4):
            h = stage(h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, num_classes)."""
        return self.head(self.forward_features(x))

    def analysis_modules(self) -> dict[str, nn.Module]:
        """Same five analysis points as the whole-image model's body."""
        return {
            "conv1": self.stem,
            "block1": self.block1,
            "block2": self.block2,
            "block3": self.block3,
            "block4": self.block4,
        }

    def head_parameters(self) -> list[nn.Parameter]:
        """The classification layer."""
        return list(self.head.parameters())

    def body_parameters(self) -> list[nn.Parameter]:
        """Everything but the classification layer."""
        head = {id(p) for p in self.head.parameters()}
        return [p for p in self.parameters() if id(p) not in head]


def create_patch_classifier(
    body: str = "resnet50",
    num_classes: int = 3,
    *,
    patch_size: int = 224,
    init: str = "random",
    imagenet_weights: str | os.PathLike | None = None,
) -> PatchClassifier:
    """Build a stage-1 patch classifier with a ``body`` ("resnet50" or "vgg16") body.

    ``init="imagenet"`` starts the body from torchvision ImageNet weights (as Shen et al.
    do), found as :func:`tlcore.models.create_model` finds them; default "random".
    """
    if body not in PATCH_BODIES:
        raise ValueError(f"unknown patch body {body!r}; valid bodies: {', '.join(PATCH_BODIES)}")
    if init not in ("random", "imagenet"):
        raise ValueError(f"patch classifier init must be 'random' or 'imagenet', got {init!r}")
    state = None
    source = "ImageNet weights"
    if init == "imagenet":
        state, path = load_imagenet_state(get_spec(body), imagenet_weights)
        source = str(path)
    return PatchClassifier(_backbone(body, state, source), num_classes=num_classes, patch_size=patch_size)


def _vgg_top_block(channels: int) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(2):
        layers[f"conv{i + 1}"] = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        layers[f"bn{i + 1}"] = nn.BatchNorm2d(channels)
        layers[f"relu{i + 1}"] = nn.ReLU(inplace=True)
    layers["pool"] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
    return nn.Sequential(layers)


def _new_top(arch: str, in_channels: int) -> tuple[nn.Module, int]:
    if arch == "resnet50":
        top = nn.Sequential(
            OrderedDict(
                block5=Bottleneck(in_channels, 512),
                block6=Bottleneck(in_channels, 512),
            )
        )
        out = in_channels
    else:
        top = nn.Sequential(OrderedDict(block5=_vgg_top_block(in_channels), block6=_vgg_top_block(in_channels)))
        out = in_channels
    init_conv_bn(top)
    return top, out


_VGG_NOTES = (
    ("conv1", "patch body (VGG-16) features[0:2]"),
    ("block1", "patch body features[2:10] (pool2)"),
    ("block2", "patch body features[10:17] (pool3)"),
    ("block3", "patch body features[17:24] (pool4)"),
    ("block4", "patch body features[24:31] (pool5, before the two new top blocks)"),
)


def _whole_image(backbone: Backbone, num_outputs: int) -> TransferModel:
    spec = PATCH_CNN_SPEC if backbone.arch == "resnet50" else replace(PATCH_CNN_SPEC, layer_notes=_VGG_NOTES)
    top, out = _new_top(backbone.arch, backbone.channels["block4"])
    head = nn.Sequential(
        OrderedDict(avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=nn.Linear(out, num_outputs))
    )
    model = TransferModel(spec, backbone, head, head_names=("head.fc",), top=top, new_top_names=("top",))
    model.patch_body = backbone.arch
    return model


def whole_image_from_patch(patch_classifier: PatchClassifier, *, num_outputs: int = 1) -> TransferModel:
    """Stage-2 whole-image model: a copy of the patch body + new top blocks + binary head.

    The body weights are copied (the patch classifier is not modified); top and head are
    new and random. ``init`` of the result is ``"patch"``.
    """
    src = patch_classifier
    backbone = Backbone(
        stem=copy.deepcopy(src.stem),
        block1=copy.deepcopy(src.block1),
        block2=copy.deepcopy(src.block2),
        block3=copy.deepcopy(src.block3),
        block4=copy.deepcopy(src.block4),
        channels=dict(src.channels),
        tv_prefix={k: v for k, v in src.tv_prefix.items() if k != "head"},
        inception_transform=src.normalize.inception_transform,
        arch=src.body_name,
    )
    model = _whole_image(backbone, num_outputs)
    model.init = "patch"
    model.fresh_names = ("top", "head")
    return model


@register_model("patch_cnn", PATCH_CNN_SPEC)
def build_patch_cnn(
    *, num_outputs: int = 1, imagenet_state: Mapping[str, Tensor] | None = None, source: str = ""
) -> TransferModel:
    """Whole-image patch CNN with a random ResNet-50 body (the "Random Ini" row)."""
    if imagenet_state is not None:
        raise NotApplicableError("ImageNet init does not apply to patch_cnn (NA in the paper's tables)")
    backbone = _backbone("resnet50", None, source)
    backbone.tv_prefix.pop("head", None)
    return _whole_image(backbone, num_outputs)
