"""An exclusive advisory file lock shared by the image cache and the tracking store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCKS_AVAILABLE = fcntl is not None


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created, with its folder, if missing) for the block.

    Raises ``OSError`` where ``fcntl`` is missing; callers for whom the lock is only an
    optimisation check :data:`LOCKS_AVAILABLE` first.
    """
    if fcntl is None:  # pragma: no cover - Windows
        raise OSError(f"cannot lock {path}: file locks need fcntl (POSIX)")
    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
