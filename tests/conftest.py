"""Suite-wide settings: tests never reach the network."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_weight_downloads(monkeypatch):
    """ImageNet weights come only from the (temporary) torch hub cache a test fills itself."""
    monkeypatch.setenv("TLSTUDY_WEIGHTS_DOWNLOAD", "0")
    monkeypatch.delenv("TLSTUDY_WEIGHTS_MIRROR", raising=False)
