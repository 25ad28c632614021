"""Fixtures for the training tests."""

from __future__ import annotations

import pytest
import torch

from tests.training.helpers import BlobDataset


@pytest.fixture(autouse=True)
def _restore_determinism():
    """Tests may flip global determinism flags; leave them as found."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


@pytest.fixture
def blob_data():
    return BlobDataset(96, seed=1), BlobDataset(48, seed=2)
