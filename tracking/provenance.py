"""Code version of the running checkout, for the ``tlstudy.code_version`` tags."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tracking.schema import Tag


@dataclass(frozen=True)
class CodeVersion:
    """Git commit (or package version) and whether the checkout had local changes."""

    version: str
    dirty: bool | None  # None when unknown (not a git checkout)
    source: str  # "git" | "package"

    def as_tags(self) -> dict[str, str]:
        """Tags for the run: code version and dirty flag."""
        return {
            Tag.CODE_VERSION: self.version,
            Tag.CODE_DIRTY: "unknown" if self.dirty is None else str(self.dirty).lower(),
        }


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version(repo_dir: str | Path | None = None) -> CodeVersion:
    """Read-only look at git (``rev-parse HEAD``, ``status --porcelain``); else the package version."""
    cwd = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent.parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit:
        status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
        return CodeVersion(version=commit, dirty=None if status is None else bool(status), source="git")
    try:
        version = metadata.version("tlstudy")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return CodeVersion(version=f"tlstudy=={version}", dirty=None, source="package")
