"""Suite-wide test settings: a fixed id key, and tests never reach the network."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Anonymous image ids are keyed by a per-site secret (tlcore.data.site_key). Tests use a
# fixed key in a private temp folder, so they never create ~/.config/tlstudy/id-key and
# ids are the same in every test process (subprocesses inherit the variable).
if "TLSTUDY_ID_KEY_FILE" not in os.environ:
    _dir = Path(tempfile.mkdtemp(prefix="tlstudy-test-key-"))
    _key = _dir / "id-key"
    _key.write_text("5e" * 32 + "\n", encoding="ascii")
    _key.chmod(0o600)
    os.environ["TLSTUDY_ID_KEY_FILE"] = str(_key)


@pytest.fixture(autouse=True)
def no_weight_downloads(monkeypatch):
    """ImageNet weights come only from the (temporary) torch hub cache a test fills itself."""
    monkeypatch.setenv("TLSTUDY_WEIGHTS_DOWNLOAD", "0")
    monkeypatch.delenv("TLSTUDY_WEIGHTS_MIRROR", raising=False)
