"""pydicom's own test corpus as a test of tlcore's DICOM decoding.

Every single-frame greyscale file pydicom decodes must be read by :func:`read_image` and
match pydicom's pixels after the normalisation ``read_image`` documents (Modality LUT /
rescale, VOI LUT or window through pydicom's own functions, divided by the output range,
MONOCHROME1 inverted). Every other file is either read or refused with one
:class:`ImageDecodeError` line naming the file. Files from ``pydicom-data`` and the JPEG
files the ``pylibjpeg`` decoders open join in when those packages are installed.

Run with ``-s`` to see the corpus table (files, read, matched, skipped with reason).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from tlcore.data.imageio import read_image
from tlcore.data.records import ImageDecodeError

ATOL = 1e-6  # float32 output of a float64 computation


def _reference(ds) -> np.ndarray:
    """pydicom's pixels in [0, 1] by the normalisation read_image documents."""
    arr = ds.pixel_array
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        lo, hi = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    else:
        lo, hi = 0.0, 2.0**bits - 1
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        a = lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        b = hi * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        lo, hi = min(a, b), max(a, b)
    values = apply_modality_lut(arr, ds)
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTData") is not None and voi[0].get("LUTDescriptor") is not None:
        lut = np.asarray(voi[0].LUTData).ravel()
        lo, hi = float(lut.min()), float(lut.max())
        values = apply_voi_lut(values, ds)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        # pydicom's windowing maps onto the same output range [lo, hi]
        values = apply_voi_lut(values, ds)
    out = (np.asarray(values, dtype=np.float64) - lo) / (hi - lo)
    if str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1":
        out = 1.0 - out
    return np.clip(out, 0.0, 1.0)


def _pydicom_decode(path: Path):
    """(dataset, pixels) when pydicom decodes the file, else (None, reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - any failure means "pydicom does not decode it"
        return None, f"{type(exc).__name__}"
    return ds, arr


def _is_single_frame_grey(ds, arr: np.ndarray) -> bool:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    frames = ds.get("NumberOfFrames", 1)
    return (
        int(ds.get("SamplesPerPixel", 1)) == 1
        and photometric in ("MONOCHROME1", "MONOCHROME2")
        and str(frames).strip() in ("", "1", "None")
        and arr.ndim == 2
    )


@dataclass
class CorpusTable:
    files: int = 0
    read: int = 0
    matched: int = 0
    compared: int = 0
    worst_diff: float = 0.0
    not_compared: Counter = field(default_factory=Counter)  # read, but not single-frame grey
    skipped: Counter = field(default_factory=Counter)  # refused by read_image, by reason
    failures: list[str] = field(default_factory=list)
    matched_names: set[str] = field(default_factory=set)

    def render(self, title: str) -> str:
        lines = [(
            f"{title}: {self.files} files, {self.read} read, "
            f"{self.matched} of {self.compared} single-frame greyscale matched "
            f"(max diff {self.worst_diff:.1e}), {sum(self.skipped.values())} skipped"
        )]
        for reason, n in sorted(self.not_compared.items()):
            lines.append(f"  read, not compared ({reason}): {n}")
        for reason, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  skipped ({reason}): {n}")
        return "\n".join(lines)


def _reason_class(reason: str) -> str:
    """Group refusals: drop numbers, quoted values and parenthesised detail."""
    text = re.sub(r"\(.*", "", reason)
    text = re.sub(r"'[^']*'|b'[^']*'|\d+", "#", text)
    return text.split(";")[0].strip(" :")


def survey(paths: list[Path]) -> CorpusTable:
    table = CorpusTable()
    for path in sorted(paths):
        table.files += 1
        ds, pyd = _pydicom_decode(path)
        try:
            image = read_image(path)
        except ImageDecodeError as exc:
            reason = exc.reason
            if "\n" in reason or not reason.strip() or str(path) not in str(exc):
                table.failures.append(f"{path.name}: unclear refusal {str(exc)!r}")
            if ds is not None and _is_single_frame_grey(ds, pyd):
                table.failures.append(f"{path.name}: pydicom decodes it but read_image says {reason}")
            table.skipped[_reason_class(reason)] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            table.failures.append(f"{path.name}: raw {type(exc).__name__}: {exc}")
            continue
        table.read += 1
        if ds is None:
            table.not_compared[f"pydicom cannot decode it: {pyd}"] += 1
            continue
        if not _is_single_frame_grey(ds, pyd):
            kind = str(ds.get("PhotometricInterpretation", "?")).strip()
            frames = ds.get("NumberOfFrames", 1)
            table.not_compared[f"{kind}, {frames} frame(s)" if str(frames) not in ("1", "None") else kind] += 1
            continue
        table.compared += 1
        expected = _reference(ds)
        if image.pixels.shape != expected.shape:
            table.failures.append(f"{path.name}: shape {image.pixels.shape} != {expected.shape}")
            continue
        diff = float(np.max(np.abs(image.pixels.astype(np.float64) - expected)))
        table.worst_diff = max(table.worst_diff, diff)
        if diff > ATOL:
            table.failures.append(f"{path.name}: max pixel difference {diff:.3g}")
            continue
        table.matched += 1
        table.matched_names.add(path.name)
    return table


def _files(paths) -> list[Path]:
    return [Path(p) for p in paths if Path(p).is_file()]


def test_pydicom_test_corpus():
    table = survey(_files(get_testdata_files()))
    print("\n" + table.render("pydicom test files"))
    assert not table.failures, "\n".join(table.failures)
    assert table.compared >= 30  # the corpus really was exercised
    assert {"image_dfl.dcm", "MR_small.dcm", "6154", "MR_small_bigendian.dcm"} <= table.matched_names


def test_pydicom_data_corpus():
    """The larger ``pydicom-data`` corpus, when installed."""
    pydicom_data = pytest.importorskip("pydicom_data")
    root = Path(pydicom_data.__file__).parent
    paths = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in ("", ".dcm")]
    table = survey(paths)
    print("\n" + table.render("pydicom-data files"))
    assert not table.failures, "\n".join(table.failures)


def test_jpeg_extra_decoders():
    """With pydicom's ``jpeg`` extra installed, the JPEG-LS / lossless JPEG greyscale files match."""
    pytest.importorskip("pylibjpeg")
    pytest.importorskip("libjpeg")
    table = survey(_files(get_testdata_files("MR_small_jpeg_ls_lossless.dcm")))
    assert not table.failures, "\n".join(table.failures)
    assert table.matched == 1


def test_deflated_file_reads():
    """Deflated Explicit VR Little Endian: the size check must use the inflated pixel bytes."""
    path = Path(get_testdata_files("image_dfl.dcm")[0])
    image = read_image(path)
    ds = pydicom.dcmread(path)
    assert image.pixels.shape == (int(ds.Rows), int(ds.Columns))
    np.testing.assert_allclose(image.pixels, _reference(ds), atol=ATOL)


def test_non_numeric_number_of_frames_names_the_tag():
    path = Path(get_testdata_files("badVR.dcm")[0])
    with pytest.raises(ImageDecodeError) as err:
        read_image(path)
    assert err.value.path == str(path)
    assert err.value.reason == "DICOM NumberOfFrames is not a number: '1A'"
