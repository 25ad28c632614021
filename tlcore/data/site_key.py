"""The per-deployment secret behind anonymous image ids.

Image ids are ``HMAC-SHA256(key, "<dataset>:<path>")``: stable for one site (one key), and
meaningless to anyone who reads the tracking store without the key, even with the public
dataset tables in hand. The key lives outside the store, in ``$TLSTUDY_ID_KEY_FILE`` or
else ``$XDG_CONFIG_HOME/tlstudy/id-key`` (``~/.config/tlstudy/id-key``). It is created on
first use (32 random bytes, hex, mode 0600). Keep it, back it up, never log it: a new key
gives every image a new id (and so new splits). See docs/server.md.
"""

from __future__ import annotations

import os
import secrets
import stat
from functools import cache
from pathlib import Path

from tlcore.data.records import DatasetError

KEY_FILE_ENV = "TLSTUDY_ID_KEY_FILE"
_KEY_BYTES = 32


class SiteKeyError(DatasetError):
    """The anonymous-id key cannot be created or read; the message names the file."""


def key_path() -> Path:
    """Where the site key lives: ``$TLSTUDY_ID_KEY_FILE``, else the user's config folder."""
    explicit = os.environ.get(KEY_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "tlstudy" / "id-key"


def _create(path: Path) -> None:
    """Write a fresh key atomically; a key another process made first wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(_KEY_BYTES) + "\n")
        try:
            os.link(tmp, path)  # fails if the key exists: never overwrite a site's key
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


@cache
def _load(path: str) -> bytes:
    p = Path(path)
    if not p.exists():
        try:
            _create(p)
        except OSError as exc:
            raise SiteKeyError(f"{p}: cannot create the anonymous-id key ({exc.strerror or exc})") from None
    try:
        text = p.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteKeyError(f"{p}: cannot read the anonymous-id key ({exc})") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SiteKeyError(f"{p}: the anonymous-id key is not hex text") from None
    if len(key) < 16:
        raise SiteKeyError(f"{p}: the anonymous-id key is {len(key)} bytes, expected at least 16")
    if os.name == "posix" and stat.S_IMODE(p.stat().st_mode) & 0o077:
        raise SiteKeyError(f"{p}: the anonymous-id key is readable by others; run `chmod 600 {p}`")
    return key


def site_key() -> bytes:
    """The site's anonymous-id key (created on first use). Raises :class:`SiteKeyError`."""
    return _load(str(key_path()))
