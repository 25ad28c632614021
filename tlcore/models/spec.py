"""The model specification: what the data pipeline and the analysis need to know about a model."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: The layers compared by the representational analysis (paper section 3.3), for every model.
ANALYSIS_LAYERS: tuple[str, ...] = ("conv1", "block1", "block2", "block3", "block4")

#: ``init`` values accepted by :func:`tlcore.models.create_model`.
INIT_MODES: tuple[str, ...] = ("random", "imagenet", "ddsm")
#: ``transfer`` values accepted by :func:`tlcore.models.create_model`.
TRANSFER_MODES: tuple[str, ...] = ("all", "hybrid")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that travels with a registered model.

    ``input_size`` is (H, W) of the images the model is trained on; ``mean``/``std`` are
    the normalisation the model applies itself to inputs in [0, 1] (ImageNet statistics).
    ``analysis_layers`` are the names :meth:`TransferModel.analysis_modules` returns; each
    model maps them onto its own modules as ``layer_notes`` explains:

    * resnet50: conv1 = stem after ReLU (conv1+bn1+relu, stride 2); block1..block4 =
      layer1..layer4 (strides 4, 8, 16, 32).
    * vgg16: conv1 = first conv + ReLU (conv1_1); block1..block4 = ends of conv stages
      2..5 after their max-pool (pool2..pool5; strides 4, 8, 16, 32, like ResNet's blocks).
    * inception_v3: conv1 = Conv2d_1a_3x3 (conv+bn+relu, stride 2); block1 = end of the
      stem (Conv2d_4a_3x3, stride ~4); block2 = Mixed_5d (35x35 stage); block3 = Mixed_6e
      (17x17 stage); block4 = Mixed_7c (8x8 stage).
    * patch_cnn: the same five points inside its ResNet-50 patch body; the new top blocks
      come after block4.

    ``imagenet_weights`` names the default torchvision weights enum member
    (e.g. ``"ResNet50_Weights.IMAGENET1K_V1"``); None when ImageNet init does not apply.
    """

    name: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    analysis_layers: tuple[str, ...]
    supports_imagenet: bool
    supports_hybrid: bool
    imagenet_weights: str | None
    # Extra (defaulted) field: one (layer, module description) pair per analysis layer.
    layer_notes: tuple[tuple[str, str], ...] = ()
