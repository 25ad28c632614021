"""Data layer: readers for the four datasets, image decoding, look-alike data,
preprocessing with an on-disk cache, and nested stratified splits."""

from tlcore.data.records import (
    DatasetError,
    Finding,
    ImageDecodeError,
    ImageRecord,
    ReadResult,
    Skipped,
    anonymous_id,
)
from tlcore.data.registry import get_reader, read_dataset, reader_names, register_reader

__all__ = [
    "DatasetError",
    "Finding",
    "ImageDecodeError",
    "ImageRecord",
    "ReadResult",
    "Skipped",
    "anonymous_id",
    "get_reader",
    "read_dataset",
    "reader_names",
    "register_reader",
]
