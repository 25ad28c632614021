"""Shared helpers of the dataset readers."""

from __future__ import annotations

from pathlib import Path

from tlcore.data.records import DatasetError


def read_metadata_text(path: Path) -> str:
    """Text of a metadata file: UTF-8 (BOM dropped), else Latin-1; unreadable -> DatasetError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read metadata file ({exc})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")
