"""Session-wide test settings shared by every test package."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Anonymous image ids are keyed by a per-site secret (tlcore.data.site_key). Tests use a
# fixed key in a private temp folder, so they never create ~/.config/tlstudy/id-key and
# ids are the same in every test process (subprocesses inherit the variable).
if "TLSTUDY_ID_KEY_FILE" not in os.environ:
    _dir = Path(tempfile.mkdtemp(prefix="tlstudy-test-key-"))
    _key = _dir / "id-key"
    _key.write_text("5e" * 32 + "\n", encoding="ascii")
    _key.chmod(0o600)
    os.environ["TLSTUDY_ID_KEY_FILE"] = str(_key)
