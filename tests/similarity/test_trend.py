from __future__ import annotations

import math

import pytest

from tlcore.similarity import TREND_TOLERANCE, describe_trend

LAYERS = ["conv1", "block1", "block2", "block3", "block4"]


def test_monotone_and_flat_curves():
    assert describe_trend([0.9, 0.8, 0.7, 0.6, 0.5], LAYERS) == "decreasing"
    assert describe_trend([0.5, 0.6, 0.6, 0.7, 0.9], LAYERS) == "increasing"  # a level step is fine
    assert describe_trend([0.70, 0.705, 0.70, 0.695, 0.70], LAYERS) == "flat"  # steps within tol
    assert TREND_TOLERANCE == 0.01


def test_u_shape_is_not_called_decreasing():
    # the Figure 1: minimum at block2, then up again
    curve = dict(zip(LAYERS, [0.95, 0.70, 0.55, 0.62, 0.71]))
    assert describe_trend(curve) == "U-shaped (minimum at block2)"
    assert describe_trend([0.4, 0.6, 0.8, 0.7, 0.5], LAYERS) == "inverted U (maximum at block2)"
    assert describe_trend([0.9, 0.6, 0.8, 0.5, 0.7], LAYERS) == "mixed"


def test_tolerance_decides_what_counts_as_a_step():
    values = [0.90, 0.80, 0.70, 0.705, 0.60]  # +0.005 at block3
    assert describe_trend(values, LAYERS) == "decreasing"
    assert describe_trend(values, LAYERS, tol=0.001) == "mixed"
    assert describe_trend([0.9, 0.5]) == "decreasing"  # default names layer0, layer1


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="block3.*NaN"):
        describe_trend([0.9, 0.8, 0.7, math.nan, 0.5], LAYERS)
    with pytest.raises(ValueError, match="at least two"):
        describe_trend([0.9])
    with pytest.raises(ValueError, match="5 values but 4 layer names"):
        describe_trend([0.9, 0.8, 0.7, 0.6, 0.5], LAYERS[:4])
    with pytest.raises(ValueError, match="tol"):
        describe_trend([0.9, 0.8], tol=-1)
