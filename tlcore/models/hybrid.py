"""Hybrid transfer (Raghu et al. 2019, "Transfusion"; paper section 3.4 / Table 4).

Pre-trained weights are kept up to block2; block3 and block4 (which hold the bulk of the
parameters) are replaced by a lighter top initialised at random: two ResNet bottleneck
stages with stride 2 (``HybridConfig.widths`` output channels, default 512 and 1024),
then global average pooling and a new binary head. For ResNet-50 this swaps layer3 +
layer4 (~22M parameters) for ~2M; for VGG-16 stages 4-5 and the 120M-parameter
classifier; for Inception-v3 Mixed_6a..Mixed_7c and the auxiliary head.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn
from torchvision.models.resnet import Bottleneck

from tlcore.models.errors import NotApplicableError
from tlcore.models.transfer import STAGES, TransferModel, count_parameters

#: Stages whose weights a hybrid model keeps from its source.
KEPT_STAGES: tuple[str, ...] = ("stem", "block1", "block2")


@dataclass(frozen=True)
class HybridConfig:
    """Output channels of the two new stages replacing block3 and block4."""

    widths: tuple[int, int] = (512, 1024)


def init_conv_bn(module: nn.Module) -> None:
    """He-normal (fan_out) convolutions, unit/zero batch-norm, as torchvision's ResNet does."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def bottleneck_stage(in_channels: int, out_channels: int, stride: int = 2) -> Bottleneck:
    """One ResNet bottleneck block ``in -> out`` (bottleneck width out/4) with a projection shortcut."""
    if out_channels % Bottleneck.expansion:
        raise ValueError(f"bottleneck output channels must be a multiple of {Bottleneck.expansion}, got {out_channels}")
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    block = Bottleneck(in_channels, out_channels // Bottleneck.expansion, stride=stride, downsample=downsample)
    init_conv_bn(block)
    return block


def _num_outputs(model: TransferModel) -> int:
    layer = model.get_submodule(model.head_names[0])
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"{model.spec.name}: head layer {model.head_names[0]!r} is not nn.Linear")
    return layer.out_features


def make_hybrid(model: TransferModel, config: HybridConfig = HybridConfig()) -> TransferModel:
    """Replace block3, block4, head (and aux head) of ``model`` in place by the light random top.

    stem, block1 and block2 are left untouched (same tensors). Returns ``model``.
    """
    if not model.spec.supports_hybrid:
        raise NotApplicableError(
            f"hybrid transfer is not defined for {model.spec.name!r} (supported: models whose spec has supports_hybrid)"
        )
    if model.transfer == "hybrid":
        return model
    w3, w4 = config.widths
    num_outputs = _num_outputs(model)
    model.block3 = bottleneck_stage(model.channels["block2"], w3, stride=2)
    model.block4 = bottleneck_stage(w3, w4, stride=2)
    model.top = None
    model.head = nn.Sequential(
        OrderedDict(avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=nn.Linear(w4, num_outputs))
    )
    model.aux = None
    model.channels.update(block3=w3, block4=w4)
    for part in ("block3", "block4", "head", "aux", "top"):
        model.tv_prefix.pop(part, None)
    model.head_names = ("head.fc",)
    model.new_top_names = ("block3", "block4")
    model.transfer = "hybrid"
    model.fresh_names = ("",) if model.init == "random" else ("block3", "block4", "head")
    return model


def parameter_report(model: TransferModel) -> dict[str, int]:
    """Parameter counts: ``total``, ``pretrained_kept`` (taken from a pre-trained source),
    ``new`` (freshly initialised), ``trainable``, and one ``part_<name>`` per part
    (stem, block1..block4, top, head, aux)."""
    fresh: dict[int, int] = {}
    for name in getattr(model, "fresh_names", ("",)):
        for p in model.get_submodule(name).parameters():
            fresh[id(p)] = p.numel()
    total = count_parameters(model)
    new = sum(fresh.values())
    report = {
        "total": total,
        "pretrained_kept": total - new,
        "new": new,
        "trainable": count_parameters(model, trainable_only=True),
    }
    for name in (*STAGES, "top", "head", "aux"):
        module = getattr(model, name, None)
        report[f"part_{name}"] = count_parameters(module) if module is not None else 0
    return report
