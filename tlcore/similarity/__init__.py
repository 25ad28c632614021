"""Representation similarity: CCA / SVCCA / PWCCA, linear CKA, and activation capture."""

from __future__ import annotations

from tlcore.similarity.activations import (
    ActivationSampler,
    PairedActivationSampler,
    stream_activations,
)
from tlcore.similarity.cca import (
    SVCCAResult,
    UnderdeterminedError,
    cca_coefficients,
    mean_cca,
    pwcca,
    svcca,
    svcca_details,
)
from tlcore.similarity.cka import linear_cka
from tlcore.similarity.layerwise import MEASURES, layerwise_similarity
from tlcore.similarity.trend import TREND_TOLERANCE, describe_trend

__all__ = [
    "MEASURES",
    "ActivationSampler",
    "PairedActivationSampler",
    "SVCCAResult",
    "TREND_TOLERANCE",
    "UnderdeterminedError",
    "cca_coefficients",
    "describe_trend",
    "layerwise_similarity",
    "linear_cka",
    "mean_cca",
    "pwcca",
    "stream_activations",
    "svcca",
    "svcca_details",
]
