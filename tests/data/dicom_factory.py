"""Test helper: write tiny but real DICOM files with pydicom.

Used by reader and image-decoding tests to build look-alike datasets in ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

# Digital Mammography X-Ray Image Storage - For Presentation
MAMMOGRAPHY_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"
SECONDARY_CAPTURE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def write_dicom(
    path: str | Path,
    pixels: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    patient_id: str | None = None,
    patient_name: str | None = None,
    sop_class_uid: str = MAMMOGRAPHY_SOP_CLASS,
    extra: dict[str, Any] | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    instance_uid: str | None = None,
) -> Path:
    """Write ``pixels`` as an uncompressed (explicit VR little endian) DICOM file.

    ``pixels`` is 2-D (rows, cols) for MONOCHROME1/2 or 3-D (rows, cols, 3) for RGB.
    Its dtype fixes BitsAllocated (uint8/int8 -> 8, uint16/int16 -> 16) and
    PixelRepresentation (signed -> 1); ``bits_stored`` defaults to BitsAllocated.
    ``extra`` sets further data elements by keyword (e.g. ``{"WindowCenter": 40}``).
    The study, series and instance UIDs are generated unless given.
    Parent folders are created. Returns the path written.
    """
    path = Path(path)
    arr = np.ascontiguousarray(pixels)
    if arr.dtype.itemsize not in (1, 2) or arr.dtype.kind not in "ui":
        raise ValueError(f"{path}: pixels must be 8- or 16-bit integers, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 3:
        samples = 3
    elif arr.ndim == 2:
        samples = 1
    else:
        raise ValueError(f"{path}: pixels must be (rows, cols) or (rows, cols, 3), got {arr.shape}")
    bits_allocated = 8 * arr.dtype.itemsize
    bits_stored = bits_allocated if bits_stored is None else bits_stored
    if not 1 <= bits_stored <= bits_allocated:
        raise ValueError(f"{path}: bits_stored {bits_stored} does not fit {bits_allocated} bits")

    sop_instance = instance_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "MG" if sop_class_uid == MAMMOGRAPHY_SOP_CLASS else "OT"
    if patient_id is not None:
        ds.PatientID = patient_id
    if patient_name is not None:
        ds.PatientName = patient_name
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()

    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_mammogram(
    path: str | Path, size: int = 16, *, bits_stored: int = 12, **kwargs: Any
) -> Path:
    """A small 16-bit grayscale 'mammogram' (a ramp) with ``bits_stored`` significant bits."""
    top = (1 << bits_stored) - 1
    ramp = np.linspace(0, top, size * size).reshape(size, size).astype(np.uint16)
    return write_dicom(path, ramp, bits_stored=bits_stored, **kwargs)


def write_mask(path: str | Path, size: int = 16, **kwargs: Any) -> Path:
    """A small 8-bit binary ROI mask (0 / 255, a square in the middle)."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    return write_dicom(
        path, mask, bits_stored=8, sop_class_uid=SECONDARY_CAPTURE_SOP_CLASS, **kwargs
    )
