"""Anonymous image ids are keyed by a per-site secret kept outside the store."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from tlcore.data import site_key as site_key_module
from tlcore.data.records import anonymous_id
from tlcore.data.site_key import SiteKeyError, key_path, site_key


@pytest.fixture()
def fresh_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the key at a file that does not exist yet."""
    path = tmp_path / "site" / "id-key"
    monkeypatch.setenv("TLSTUDY_ID_KEY_FILE", str(path))
    site_key_module._load.cache_clear()
    yield path
    site_key_module._load.cache_clear()


def test_key_is_created_on_first_use_private_and_kept(fresh_key: Path) -> None:
    assert not fresh_key.exists()
    first = anonymous_id("ddsm", "Mass-Training_P_00001_LEFT_CC/1/2/000000.dcm")
    assert stat.S_IMODE(fresh_key.stat().st_mode) == 0o600
    assert len(bytes.fromhex(fresh_key.read_text().strip())) == 32
    site_key_module._load.cache_clear()  # a later process reads the same key: same id
    assert anonymous_id("ddsm", "Mass-Training_P_00001_LEFT_CC/1/2/000000.dcm") == first


def test_ids_cannot_be_recomputed_from_public_inputs(fresh_key: Path) -> None:
    csv_path = "Calc-Test_P_00038_LEFT_CC/1.3.6.1/1.3.6.2/000000.dcm"
    unkeyed = hashlib.sha256(f"tlstudy:ddsm:{csv_path}".encode()).hexdigest()[:16]
    ident = anonymous_id("ddsm", csv_path)
    assert ident.startswith("ddsm-") and len(ident) == len("ddsm-") + 16
    assert ident != f"ddsm-{unkeyed}"


def test_another_site_key_gives_other_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = []
    for site, hexkey in (("a", "11" * 32), ("b", "22" * 32)):
        path = tmp_path / site
        path.write_text(hexkey)
        path.chmod(0o600)
        monkeypatch.setenv("TLSTUDY_ID_KEY_FILE", str(path))
        site_key_module._load.cache_clear()
        ids.append(anonymous_id("inbreast", "20586908"))
    site_key_module._load.cache_clear()
    assert ids[0] != ids[1]


def test_default_location_is_the_user_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TLSTUDY_ID_KEY_FILE")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert key_path() == tmp_path / ".config" / "tlstudy" / "id-key"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert key_path() == tmp_path / "xdg" / "tlstudy" / "id-key"


@pytest.mark.parametrize(("content", "mode", "reason"), [
    ("not hex", 0o600, "not hex text"),
    ("abcd", 0o600, "expected at least 16"),
    ("33" * 32, 0o644, "readable by others"),
])
def test_bad_key_file_is_one_clear_line(fresh_key: Path, content: str, mode: int, reason: str) -> None:
    fresh_key.parent.mkdir(parents=True)
    fresh_key.write_text(content)
    fresh_key.chmod(mode)
    with pytest.raises(SiteKeyError) as err:
        site_key()
    assert str(err.value).startswith(f"{fresh_key}: ") and reason in str(err.value)
