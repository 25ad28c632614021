"""Inception-v3 (torchvision) cut into stem / block1..block4 / head, with its auxiliary head.

The model always applies torchvision's ``transform_input`` mapping after the ImageNet
normalisation (what the Google weights expect; a fixed affine map, harmless for random
init), whatever the initialisation, so that DDSM states move between inits unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from torch import Tensor, nn
from torchvision.models import inception_v3
from torchvision.models.inception import Inception3

from tlcore.models._registry import register_model
from tlcore.models.spec import ANALYSIS_LAYERS, IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from tlcore.models.transfer import Backbone, TransferModel
from tlcore.models.weights import load_into_torchvision

INCEPTION_V3_SPEC = ModelSpec(
    name="inception_v3",
    input_size=(299, 299),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    analysis_layers=ANALYSIS_LAYERS,
    supports_imagenet=True,
    supports_hybrid=True,
    imagenet_weights="Inception_V3_Weights.IMAGENET1K_V1",
    layer_notes=(
        ("conv1", "Conv2d_1a_3x3: conv + bn + relu (32 ch, stride 2)"),
        ("block1", "Conv2d_2a..Conv2d_4a incl. maxpool1: end of the stem (192 ch, ~stride 4)"),
        ("block2", "maxpool2 + Mixed_5b..Mixed_5d: 35x35 stage (288 ch, ~stride 8)"),
        ("block3", "Mixed_6a..Mixed_6e: 17x17 stage (768 ch, ~stride 16); hybrid: new bottleneck stage (512 ch)"),
        ("block4", "Mixed_7a..Mixed_7c: 8x8 stage (2048 ch, ~stride 32); hybrid: new bottleneck stage (1024 ch)"),
    ),
)

#: The auxiliary head needs a 17x17 block3 map (inputs of about 299 px).
AUX_MIN_SIZE = 17


def tv_inception_v3(imagenet_state: Mapping[str, Tensor] | None = None, source: str = "ImageNet weights") -> Inception3:
    """A torchvision Inception-v3 with aux head, random (truncated-normal init) or loaded
    strictly from ``imagenet_state``."""
    model = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=imagenet_state is None)
    if imagenet_state is not None:
        load_into_torchvision(model, imagenet_state, source=source)
    return model


def _seq(tv: Inception3, names: tuple[str, ...]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((n, getattr(tv, n)) for n in names))


def inception_backbone(tv: Inception3) -> Backbone:
    """Cut a torchvision Inception-v3 into the five stages (modules are moved)."""
    return Backbone(
        stem=_seq(tv, ("Conv2d_1a_3x3",)),
        block1=_seq(tv, ("Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3")),
        block2=_seq(tv, ("maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d")),
        block3=_seq(tv, ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")),
        block4=_seq(tv, ("Mixed_7a", "Mixed_7b", "Mixed_7c")),
        channels={"stem": 32, "block1": 192, "block2": 288, "block3": 768, "block4": 2048},
        tv_prefix={s: "" for s in ("stem", "block1", "block2", "block3", "block4", "head", "aux")},
        inception_transform=True,
        arch="inception_v3",
    )


@register_model("inception_v3", INCEPTION_V3_SPEC)
def build_inception_v3(
    *, num_outputs: int = 1, imagenet_state: Mapping[str, Tensor] | None = None, source: str = "ImageNet weights"
) -> TransferModel:
    """Inception-v3 with new ``num_outputs`` main and auxiliary classification layers."""
    tv = tv_inception_v3(imagenet_state, source)
    tv.fc = nn.Linear(tv.fc.in_features, num_outputs)
    assert tv.AuxLogits is not None
    tv.AuxLogits.fc = nn.Linear(tv.AuxLogits.fc.in_features, num_outputs)
    head = nn.Sequential(OrderedDict(avgpool=tv.avgpool, dropout=tv.dropout, flatten=nn.Flatten(1), fc=tv.fc))
    aux = nn.Sequential(OrderedDict(AuxLogits=tv.AuxLogits))
    return TransferModel(
        INCEPTION_V3_SPEC,
        inception_backbone(tv),
        head,
        head_names=("head.fc", "aux.AuxLogits.fc"),
        aux=aux,
        aux_min_size=AUX_MIN_SIZE,
    )
