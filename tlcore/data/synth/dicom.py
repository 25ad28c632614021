"""Writing deterministic, uncompressed grayscale DICOM files with pydicom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DIGITAL_MAMMOGRAPHY_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
IMPLEMENTATION_UID = "2.25.314159265358979323846264338327950288"
SYNTHETIC_COMMENT = (
    "SYNTHETIC look-alike image written by tlstudy synth; not patient data"
)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    study_uid: str,
    series_uid: str,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    tags: dict[str, Any] | None = None,
) -> None:
    """Write a single-frame grayscale image as Explicit VR Little Endian DICOM.

    ``pixels`` is uint8 (8-bit) or uint16 (16-bit words); ``bits_stored`` the significant
    bits. ``tags`` adds or overrides attributes by keyword. No time-dependent value is
    written, so the same inputs give the same bytes.
    """
    if pixels.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D image, got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        bits_allocated = 8
    elif pixels.dtype == np.uint16:
        bits_allocated = 16
    else:
        raise ValueError(f"{path}: pixels must be uint8 or uint16, got {pixels.dtype}")
    if not 1 <= bits_stored <= bits_allocated:
        raise ValueError(
            f"{path}: bits_stored {bits_stored} does not fit {bits_allocated} bits"
        )
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(
            f"{path}: unsupported photometric interpretation {photometric!r}"
        )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "TLSTUDY_SYNTH"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "MG"
    ds.ImageComments = SYNTHETIC_COMMENT
    for key, value in (tags or {}).items():
        setattr(ds, key, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    data = (
        np.ascontiguousarray(pixels)
        .astype(pixels.dtype.newbyteorder("<"), copy=False)
        .tobytes()
    )
    if len(data) % 2:
        data += b"\x00"
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
