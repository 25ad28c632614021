"""Registry of dataset readers by name (``ddsm``, ``inbreast``, ``mias``, ``ultrasound``).

A reader is a class with a ``name``, a ``modality`` (``mammogram`` or ``ultrasound``)
and ``read(root) -> ReadResult``. Readers register themselves with
:func:`register_reader`; :func:`get_reader` looks one up and lists the valid names
when the name is unknown.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Protocol

from tlcore.data.records import ReadResult


class DatasetReader(Protocol):
    name: str
    modality: str  # "mammogram" | "ultrasound"

    def read(self, root: Path) -> ReadResult:
        """Parse the metadata under ``root`` into records; raise DatasetError if impossible."""
        ...


_READERS: dict[str, type] = {}


def register_reader(cls: type) -> type:
    """Class decorator: register a reader under ``cls.name``. Duplicate names are an error."""
    name = cls.name
    if name in _READERS and _READERS[name] is not cls:
        raise ValueError(f"dataset reader {name!r} is already registered by {_READERS[name]!r}")
    _READERS[name] = cls
    return cls


def _ensure_loaded() -> None:
    # Importing the readers package registers the built-in readers.
    import tlcore.data.readers  # noqa: F401


def reader_names() -> list[str]:
    """Names of all registered readers, sorted."""
    _ensure_loaded()
    return sorted(_READERS)


def get_reader(name: str) -> DatasetReader:
    """Return a new reader instance for ``name``; unknown names list the valid ones."""
    _ensure_loaded()
    try:
        return _READERS[name]()
    except KeyError:
        close = difflib.get_close_matches(name, list(_READERS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(
            f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(_READERS))}.{hint}"
        ) from None


def read_dataset(name: str, root: str | Path) -> ReadResult:
    """Shortcut: ``get_reader(name).read(Path(root))``."""
    return get_reader(name).read(Path(root))


ReaderFactory = Callable[[], DatasetReader]
