"""Models of the study: registry, the four architectures, initialisations, hybrid transfer.

``create_model(name, init=..., transfer=...)`` returns a :class:`TransferModel` (binary
logit head, normalisation inside, named analysis layers conv1/block1..block4).
"""

from __future__ import annotations

from tlcore.models._builder import create_model
from tlcore.models._registry import get_spec, model_names, register_model
from tlcore.models.errors import NotApplicableError, StateDictMismatchError, WeightsNotFoundError
from tlcore.models.hybrid import HybridConfig, make_hybrid, parameter_report
from tlcore.models.patch_cnn import PATCH_CLASSES, PatchClassifier, create_patch_classifier, whole_image_from_patch
from tlcore.models.spec import ANALYSIS_LAYERS, IMAGENET_MEAN, IMAGENET_STD, INIT_MODES, TRANSFER_MODES, ModelSpec
from tlcore.models.transfer import TransferModel, count_parameters
from tlcore.models.weights import hub_checkpoint_dir, resolve_imagenet_file, weights_file_name

__all__ = [
    "ANALYSIS_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INIT_MODES",
    "PATCH_CLASSES",
    "TRANSFER_MODES",
    "HybridConfig",
    "ModelSpec",
    "NotApplicableError",
    "PatchClassifier",
    "StateDictMismatchError",
    "TransferModel",
    "WeightsNotFoundError",
    "count_parameters",
    "create_model",
    "create_patch_classifier",
    "get_spec",
    "hub_checkpoint_dir",
    "make_hybrid",
    "model_names",
    "parameter_report",
    "register_model",
    "resolve_imagenet_file",
    "weights_file_name",
    "whole_image_from_patch",
]
