"""Independent, minimal writers of the four distributors' layouts, for acceptance tests.

Deliberately shares no code with ``tlcore.data.synth`` or the readers: every file is
written here from the notes in ``datasets.md`` (CSV text by hand with CRLF and quoted
newlines, PGM / BMP / PNG bytes by hand, a BIFF8 ``.xls`` by hand, DICOM through pydicom's
low-level data set). If the look-alike generator and the readers share a misreading of a
layout, tests built on these writers should catch it.

Each ``write_*`` function returns a :class:`Layout`: the root to hand to ``tlstudy data
check``, the label of every image (keyed by a short readable name) and the image file
behind each name, so tests can damage chosen files and predict the exact counts.
"""

from __future__ import annotations

import hashlib
import plistlib
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.data.dicom_factory import write_dicom as write_dicom_file

UID_ROOT = "1.3.6.1.4.1.9590.100.1.2"  # the root CBIS-DDSM UIDs use


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Counts:
    """Exact counts ``data check`` must report."""

    n_images: int
    n_malignant: int

    @property
    def n_benign(self) -> int:
        return self.n_images - self.n_malignant


@dataclass
class Layout:
    """A dataset written in ``root``: every image's label, file and (DDSM) split.

    ``missing_where`` maps an image name to where the reader is expected to report it when
    the file is missing and the reader only knows a metadata line (CBIS-DDSM: ``<csv>:<line>``
    of the image's first row).
    """

    dataset: str
    root: Path
    labels: dict[str, int]
    files: dict[str, Path]
    splits: dict[str, str] = field(default_factory=dict)
    metadata: list[Path] = field(default_factory=list)
    missing_where: dict[str, str] = field(default_factory=dict)

    def expected(self, broken: Iterable[str] = ()) -> Counts:
        """Counts once the images named in ``broken`` are unusable."""
        gone = set(broken)
        unknown = gone - set(self.labels)
        if unknown:
            raise KeyError(f"no such image in the {self.dataset} layout: {sorted(unknown)}")
        kept = [label for name, label in self.labels.items() if name not in gone]
        return Counts(n_images=len(kept), n_malignant=sum(kept))

    def expected_splits(self, broken: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Per official split: images and malignant counts (CBIS-DDSM only)."""
        gone = set(broken)
        out: dict[str, dict[str, int]] = {}
        for name, split in self.splits.items():
            if name in gone:
                continue
            c = out.setdefault(split, {"n_images": 0, "n_malignant": 0})
            c["n_images"] += 1
            c["n_malignant"] += self.labels[name]
        return dict(sorted(out.items()))


# --------------------------------------------------------------------------- damage


def truncate(path: Path, keep: float = 0.6) -> None:
    """Cut ``path`` to the first ``keep`` fraction of its bytes (at least one byte lost)."""
    data = path.read_bytes()
    path.write_bytes(data[: min(int(len(data) * keep), len(data) - 1)])


def truncate_tail(path: Path, n_bytes: int) -> None:
    """Drop the last ``n_bytes`` of ``path``."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - n_bytes])


def make_empty(path: Path) -> None:
    """Replace ``path`` with a zero-byte file."""
    path.write_bytes(b"")


def fill_with_garbage(path: Path, n_bytes: int = 700, seed: int = 7) -> None:
    """Replace ``path`` with random bytes (same name, so e.g. a ``.dcm`` that is not DICOM)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    if data[:1] in (b"P", b"B", b"\x89", b"\xff"):  # never a lucky PGM/BMP/PNG/JPEG magic
        data = b"\x00" + data[1:]
    path.write_bytes(data)


def remove(path: Path) -> None:
    """Delete ``path`` (a file the metadata still lists)."""
    path.unlink()


def break_png_pixels(path: Path) -> None:
    """Keep a PNG's chunk structure (signature, IHDR, IEND, valid CRCs) but make the IDAT
    payload undecodable: a header-only check passes, a full decode fails."""
    data = path.read_bytes()
    out = bytearray(data[:8])
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT":
            body = bytes(b ^ 0x5A for b in body)
            body = b"\x78\x9c" + body[2:]  # still looks like a zlib stream at first glance
        out += _png_chunk(kind, body)
        pos += 12 + length
    path.write_bytes(bytes(out))


# --------------------------------------------------------------------------- file formats


def _ramp(height: int, width: int, top: int, seed: int) -> np.ndarray:
    """A deterministic, non-constant test pattern with values in [0, top]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = (x * 3 + y * 5) % (top + 1)
    noise = rng.integers(0, max(top // 8, 1) + 1, size=(height, width))
    return np.clip(base + noise, 0, top)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    bits_stored: int | None = None,
    study_uid: str,
    series_uid: str,
    instance_uid: str,
    photometric: str = "MONOCHROME2",
) -> Path:
    """Write an uncompressed mammography DICOM file with the UIDs the layout's paths name."""
    return write_dicom_file(path, pixels, bits_stored=bits_stored, photometric=photometric, patient_id="ANON",
                            study_uid=study_uid, series_uid=series_uid, instance_uid=instance_uid)


def pgm_bytes(
    pixels: np.ndarray, comments: tuple[str, ...] = (), split_size: bool = False
) -> bytes:
    """Binary PGM (P5, maxval 255); comments go after the magic (and between width and
    height when ``split_size``)."""
    height, width = pixels.shape
    head = b"P5\n" + b"".join(f"# {c}\n".encode() for c in comments)
    if split_size:
        head += f"{width}\n# size continues\n{height}\n255\n".encode()
    else:
        head += f"{width} {height}\n255\n".encode()
    return head + pixels.astype(np.uint8).tobytes()


def bmp_bytes(pixels: np.ndarray) -> bytes:
    """8-bit BMP with a 256-entry grey palette, bottom-up rows padded to 4 bytes."""
    height, width = pixels.shape
    stride = (width + 3) // 4 * 4
    raster = b"".join(
        pixels[r].astype(np.uint8).tobytes() + b"\0" * (stride - width)
        for r in range(height - 1, -1, -1)
    )
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    file_header = struct.pack("<2sIHHI", b"BM", offset + len(raster), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, len(raster), 2835, 2835, 256, 0)
    return file_header + info + palette + raster


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(pixels: np.ndarray) -> bytes:
    """8-bit PNG: grey for (H, W), RGB for (H, W, 3); filter 0 on every row."""
    arr = pixels.astype(np.uint8)
    height, width = arr.shape[:2]
    colour_type = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\0" + arr[r].tobytes() for r in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )


# --- a one-sheet Excel 97 workbook: BIFF8 records inside an OLE2 compound file

_END_OF_CHAIN, _FREE, _FAT_SECTOR, _NO_STREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF


def _record(rid: int, body: bytes = b"") -> bytes:
    return struct.pack("<HH", rid, len(body)) + body


def _bof(kind: int) -> bytes:
    """BIFF8 beginning-of-file record (0x0005 workbook globals, 0x0010 worksheet)."""
    return _record(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0x0DBB, 0x07CC, 0, 6))


def _workbook_stream(rows: list[list[object]]) -> bytes:
    font = _record(
        0x0031,
        struct.pack("<HHHHHBBBBBB", 200, 0, 0x7FFF, 400, 0, 0, 0, 0, 0, 5, 1)
        + "Arial".encode("utf-16-le"),
    )
    xf = _record(0x00E0, struct.pack("<HHHBBBBIiH", 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0x20C0))
    globals_head = _bof(0x0005) + _record(0x0042, struct.pack("<H", 1200)) + font + xf
    sheet_name = b"INbreast"
    boundsheet_len = 4 + 8 + len(sheet_name)
    sheet_offset = len(globals_head) + boundsheet_len + 4
    boundsheet = _record(
        0x0085, struct.pack("<IBBBB", sheet_offset, 0, 0, len(sheet_name), 0) + sheet_name
    )
    sheet = [_bof(0x0010)]
    n_cols = max(len(r) for r in rows)
    sheet.append(_record(0x0200, struct.pack("<IIHHH", 0, len(rows), 0, n_cols, 0)))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, (int, float)):
                sheet.append(_record(0x0203, struct.pack("<HHHd", r, c, 0, float(value))))
            else:
                text = str(value)
                sheet.append(
                    _record(
                        0x0204,
                        struct.pack("<HHHHB", r, c, 0, len(text), 1) + text.encode("utf-16-le"),
                    )
                )
    sheet.append(_record(0x000A))
    return globals_head + boundsheet + _record(0x000A) + b"".join(sheet)


def xls_bytes(rows: list[list[object]]) -> bytes:
    """``rows`` (text, number or None cells) as a one-sheet ``.xls`` file."""
    stream = _workbook_stream(rows)
    padded = max(4096, -(-len(stream) // 512) * 512)  # >= the mini-stream cutoff
    stream_sectors = padded // 512
    if stream_sectors + 2 > 128:
        raise ValueError("test workbook too large for a single FAT sector")
    fat = (
        [_FAT_SECTOR, _END_OF_CHAIN] + [3 + i for i in range(stream_sectors - 1)] + [_END_OF_CHAIN]
    )
    fat += [_FREE] * (128 - len(fat))
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16
    header += struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
    # dir sectors, FAT sectors, first dir sector, txn, mini cutoff, mini FAT, n mini, DIFAT, n DIFAT
    header += struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, _END_OF_CHAIN, 0, _END_OF_CHAIN, 0)
    header += struct.pack("<109I", 0, *([_FREE] * 108))

    def entry(name: str, kind: int, child: int, start: int, size: int) -> bytes:
        raw = (name + "\0").encode("utf-16-le") if name else b""
        return (
            raw.ljust(64, b"\0")
            + struct.pack("<HBBIII", len(raw), kind, 1, _NO_STREAM, _NO_STREAM, child)
            + b"\0" * 36
            + struct.pack("<III", start, size, 0)
        )

    directory = (
        entry("Root Entry", 5, 1, _END_OF_CHAIN, 0)
        + entry("Workbook", 2, _NO_STREAM, 2, padded)  # below 4096 would mean the mini stream
        + entry("", 0, _NO_STREAM, 0, 0) * 2
    )
    return header + struct.pack("<128I", *fat) + directory + stream.ljust(padded, b"\0")


# --------------------------------------------------------------------------- CBIS-DDSM

DDSM_MASS_HEADER = (
    "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,"
    "mass shape,mass margins,assessment,pathology,subtlety,image file path,"
    "cropped image file path,ROI mask file path"
)
DDSM_CALC_HEADER = (
    "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
    "calc type,calc distribution,assessment,pathology,subtlety,image file path,"
    "cropped image file path,ROI mask file path"
)
DDSM_CSVS = {
    "mass_train": ("mass_case_description_train_set.csv", "Mass-Training", DDSM_MASS_HEADER),
    "mass_test": ("mass_case_description_test_set.csv", "Mass-Test", DDSM_MASS_HEADER),
    "calc_train": ("calc_case_description_train_set.csv", "Calc-Training", DDSM_CALC_HEADER),
    "calc_test": ("calc_case_description_test_set.csv", "Calc-Test", DDSM_CALC_HEADER),
}


@dataclass(frozen=True)
class _DdsmRow:
    csv: str
    patient: str
    side: str
    view: str
    abn: int
    pathology: str
    descriptors: tuple[str, str]
    density: str = "2"
    subtlety: str = "3"
    assessment: str = "4"
    split_series: bool = False  # crop and ROI mask in different series folders
    image_path_newline: bool = False  # a trailing newline on the full-image path too
    monochrome1: bool = False  # full image stored inverted (MONOCHROME1)


# One row per abnormality, in file order. Images (distinct full-mammogram files):
#   mass_train  P_00001 LEFT CC   MALIGNANT + BENIGN rows  -> 1 (once)
#               P_00001 LEFT MLO  BENIGN, NA / N/A, density 0, subtlety 0   -> 0
#               P_00002 RIGHT CC  BENIGN_WITHOUT_CALLBACK, quoted newline in margins -> 0
#   mass_test   P_00001 RIGHT MLO MALIGNANT (P_00001 is in both splits)    -> 1
#               P_00005 LEFT CC   BENIGN                                     -> 0
#   calc_train  P_00001 LEFT CC   BENIGN: the same mammogram as the mass one, but a
#                                 different file under Calc-Training       -> 0
#               P_00003 RIGHT MLO two MALIGNANT rows, crop/mask in two series -> 1
#   calc_test   P_00004 LEFT CC   BENIGN_WITHOUT_CALLBACK                    -> 0
#               P_00002 LEFT MLO  BENIGN then MALIGNANT (P_00002 in both splits) -> 1
DDSM_ROWS: tuple[_DdsmRow, ...] = (
    _DdsmRow("mass_train", "P_00001", "LEFT", "CC", 1, "MALIGNANT", ("IRREGULAR", "SPICULATED")),
    _DdsmRow(
        "mass_train",
        "P_00001",
        "LEFT",
        "CC",
        2,
        "BENIGN",
        ("OVAL", "CIRCUMSCRIBED"),
        assessment="3",
    ),
    _DdsmRow(
        "mass_train",
        "P_00001",
        "LEFT",
        "MLO",
        1,
        "BENIGN",
        ("NA", "N/A"),
        density="0",
        subtlety="0",
    ),
    _DdsmRow(
        "mass_train",
        "P_00002",
        "RIGHT",
        "CC",
        1,
        "BENIGN_WITHOUT_CALLBACK",
        ("LOBULATED", "ILL_DEFINED\nSPICULATED"),
    ),
    _DdsmRow(
        "mass_test",
        "P_00001",
        "RIGHT",
        "MLO",
        1,
        "MALIGNANT",
        ("IRREGULAR", "ILL_DEFINED"),
        assessment="5",
    ),
    _DdsmRow(
        "mass_test",
        "P_00005",
        "LEFT",
        "CC",
        1,
        "BENIGN",
        ("ROUND", "OBSCURED"),
        image_path_newline=True,
    ),
    _DdsmRow(
        "calc_train", "P_00001", "LEFT", "CC", 1, "BENIGN", ("PUNCTATE", "CLUSTERED"), density="3"
    ),
    _DdsmRow(
        "calc_train",
        "P_00003",
        "RIGHT",
        "MLO",
        1,
        "MALIGNANT",
        ("PLEOMORPHIC", "SEGMENTAL"),
        split_series=True,
    ),
    _DdsmRow(
        "calc_train", "P_00003", "RIGHT", "MLO", 2, "MALIGNANT", ("NA", "N/A"), assessment="5"
    ),
    _DdsmRow(
        "calc_test",
        "P_00004",
        "LEFT",
        "CC",
        1,
        "BENIGN_WITHOUT_CALLBACK",
        ("N/A", "NA"),
        subtlety="0",
        monochrome1=True,
    ),
    _DdsmRow("calc_test", "P_00002", "LEFT", "MLO", 1, "BENIGN", ("AMORPHOUS", "CLUSTERED")),
    _DdsmRow(
        "calc_test",
        "P_00002",
        "LEFT",
        "MLO",
        2,
        "MALIGNANT",
        ("FINE_LINEAR_BRANCHING", "LINEAR"),
        assessment="5",
    ),
)


def _ddsm_top(row: _DdsmRow) -> str:
    return f"{DDSM_CSVS[row.csv][1]}_{row.patient}_{row.side}_{row.view}"


def ddsm_image_name(row: _DdsmRow) -> str:
    """Key of an image in :attr:`Layout.labels`, e.g. ``Mass-Training_P_00001_LEFT_CC``."""
    return _ddsm_top(row)


class _Uids:
    """UIDs whose last five digits are unique (the descriptive layout keys on them)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{UID_ROOT}.{31 + self.n}{(10000 + 7919 * self.n) % 90000 + 10000:05d}"


def _tail5(uid: str) -> str:
    return uid[-5:]


def _csv_cell(value: str) -> str:
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_ddsm(root: Path, layout: str = "classic") -> Layout:
    """CBIS-DDSM with all four CSVs (both headers, CRLF, quoted newlines, NA / N/A, trailing
    newlines in the crop / mask paths) and DICOMs in the ``classic`` (CSV paths) or NBIA
    ``descriptive`` disk layout under ``root/CBIS-DDSM``."""
    if layout not in ("classic", "descriptive"):
        raise ValueError(f"unknown CBIS-DDSM layout {layout!r}")
    uid = _Uids()
    images_dir = root / "CBIS-DDSM"
    labels: dict[str, int] = {}
    files: dict[str, Path] = {}
    splits: dict[str, str] = {}
    full_uids: dict[str, tuple[str, str]] = {}
    csv_lines: dict[str, list[str]] = {k: [v[2]] for k, v in DDSM_CSVS.items()}
    line_no = {k: 2 for k in DDSM_CSVS}  # physical line where the next row starts
    missing_where: dict[str, str] = {}
    nbia_rows: list[str] = []

    def disk_path(top: str, study: str, series: str, index: int, description: str) -> Path:
        if layout == "classic":
            return images_dir / top / study / series / f"{index:06d}.dcm"
        return (
            images_dir
            / top
            / f"08-07-2016-DDSM-{_tail5(study)}"
            / f"1.000000-{description}-{_tail5(series)}"
            / f"1-{index + 1}.dcm"
        )

    for k, row in enumerate(DDSM_ROWS):
        name = ddsm_image_name(row)
        top = _ddsm_top(row)
        malignant = int(row.pathology == "MALIGNANT")
        if name not in labels:
            study, series = uid(), uid()
            full_uids[name] = (study, series)
            path = disk_path(top, study, series, 0, "full mammogram images")
            write_dicom(
                path,
                _ramp(40, 32, 4095, seed=k).astype(np.uint16),
                bits_stored=12,
                study_uid=study,
                series_uid=series,
                instance_uid=uid(),
                photometric="MONOCHROME1" if row.monochrome1 else "MONOCHROME2",
            )
            files[name] = path
            labels[name] = 0
            splits[name] = "train" if "-Training" in top else "test"
            missing_where[name] = f"{DDSM_CSVS[row.csv][0]}:{line_no[row.csv]}"
            nbia_rows.append(f"{series},CBIS-DDSM,{top},full mammogram images,1")
        labels[name] = max(labels[name], malignant)
        study, series = full_uids[name]
        full_csv_path = f"{top}/{study}/{series}/000000.dcm"

        # Crop (16-bit) and ROI mask (8-bit) under <top>_<abnormality id>.
        roi_top = f"{top}_{row.abn}"
        roi_study, roi_series = uid(), uid()
        mask_file = disk_path(roi_top, roi_study, roi_series, 0, "ROI mask images")
        write_dicom(
            mask_file,
            (np.arange(40 * 32).reshape(40, 32) % 7 == 0).astype(np.uint8) * 255,
            study_uid=roi_study,
            series_uid=roi_series,
            instance_uid=uid(),
        )
        mask_csv = f"{roi_top}/{roi_study}/{roi_series}/000000.dcm"
        if row.split_series:
            crop_series = uid()
            crop_file = disk_path(roi_top, roi_study, crop_series, 0, "cropped images")
            crop_csv = f"{roi_top}/{roi_study}/{crop_series}/000000.dcm"
        else:
            crop_series = roi_series
            crop_file = disk_path(roi_top, roi_study, roi_series, 1, "ROI mask images")
            crop_csv = f"{roi_top}/{roi_study}/{roi_series}/000001.dcm"
        write_dicom(
            crop_file,
            _ramp(12, 10, 4095, seed=100 + k).astype(np.uint16),
            bits_stored=12,
            study_uid=roi_study,
            series_uid=crop_series,
            instance_uid=uid(),
        )
        if row.csv.startswith("mass") and not row.split_series:
            # mass rows mostly name the files the other way round (decided by content)
            crop_csv, mask_csv = mask_csv, crop_csv
        cells = [
            row.patient,
            row.density,
            row.side,
            row.view,
            str(row.abn),
            "mass" if row.csv.startswith("mass") else "calcification",
            row.descriptors[0],
            row.descriptors[1],
            row.assessment,
            row.pathology,
            row.subtlety,
            full_csv_path + ("\n" if row.image_path_newline else ""),
            crop_csv + "\n",  # trailing newline inside the quoted path, as distributed
            mask_csv + "\n",
        ]
        text = ",".join(_csv_cell(c) for c in cells)
        csv_lines[row.csv].append(text)
        line_no[row.csv] += 1 + text.count("\n")

    metadata = []
    for key, (file_name, _, _) in DDSM_CSVS.items():
        path = root / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(("\r\n".join(csv_lines[key]) + "\r\n").encode("utf-8"))
        metadata.append(path)
    if layout == "descriptive":
        (images_dir / "metadata.csv").write_bytes(
            (
                "\r\n".join(
                    ["Series UID,Collection,Subject ID,Series Description,Number of Images"]
                    + nbia_rows
                )
                + "\r\n"
            ).encode()
        )
    return Layout("ddsm", root, labels, files, splits, metadata, missing_where)


# --------------------------------------------------------------------------- INbreast

INBREAST_HEADER = "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"
INBREAST_XLS_HEADER = [
    "Patient ID",
    "Patient age",
    "Laterality",
    "View",
    "Acquisition date",
    "File Name",
    "ACR",
    "Bi-Rads",
    "Mass ",
    "Micros",
    "Distortion",
    "Asymmetry",
    "Findings Notes (in Portuguese)",
    "Other Notes",
    "Other Annotations",
    "Lesion Annotation Status",
    "Pectoral Muscle Annotation",
]

# (File Name, laterality, view, date, ACR, Bi-Rads); ACR " " x3 is the run of blanks.
INBREAST_CASES: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("20586908", "R", "CC", "200701", "2", "1"),
    ("20586934", "L", "MLO", "200701", "1", "2"),
    ("22678670", "R", "MLO", "200904", "3", "3"),
    ("22678694", "L", "CC", "200904", "2", "4a"),
    ("24055274", "R", "CC", "201001", "4", "4b"),
    ("24055328", "L", "MLO", "201001", "3", "4c"),
    ("30011484", "R", "FB", "200805", "2", "5"),
    ("50993789", "L", "CC", "200611", "   ", "6"),
    ("53586896", "R", "MLO", "200611", "1", "2"),
)
_MALIGNANT_BIRADS = {"4a", "4b", "4c", "5", "6"}


def _inbreast_dicom_name(file_name: str, side: str, view: str) -> str:
    digest = hashlib.md5(file_name.encode()).hexdigest()[:16]
    shown_view = "ML" if view == "MLO" else view
    return f"{file_name}_{digest}_MG_{side}_{shown_view}_ANON.dcm"


def _osirix_plist(file_name: str) -> bytes:
    points = [f"({10 + i}.{i}, {12 + 2 * i}.5)" for i in range(4)]
    roi = {
        "Name": "Mass",
        "NumberOfPoints": len(points),
        "Point_px": points,
        "Point_mm": points,
        "Area": 12.5,
        "IndexInImage": 0,
    }
    return plistlib.dumps({"Images": [{"ImageIndex": 0, "NumberOfROIs": 1, "ROIs": [roi]}]})


def write_inbreast(root: Path, metadata: str = "csv") -> Layout:
    """INbreast wrapped in a release folder: ``INbreast.csv`` (``;``, CRLF) or ``INbreast.xls``
    (17 columns, float File Name, two footer rows), ``AllDICOMs`` with names that say ``ML``
    where the table says ``MLO``, and ``AllXML`` outlines for every image but BI-RADS 1."""
    if metadata not in ("csv", "xls"):
        raise ValueError(f"unknown INbreast metadata format {metadata!r}")
    release = root / "INbreast Release 1.0"
    uid = _Uids()
    labels: dict[str, int] = {}
    files: dict[str, Path] = {}
    for k, (file_name, side, view, _, _, birads) in enumerate(INBREAST_CASES):
        path = release / "AllDICOMs" / _inbreast_dicom_name(file_name, side, view)
        write_dicom(
            path,
            _ramp(48, 36, 16383, seed=200 + k).astype(np.uint16),
            bits_stored=14,
            study_uid=uid(),
            series_uid=uid(),
            instance_uid=uid(),
        )
        files[file_name] = path
        labels[file_name] = int(birads in _MALIGNANT_BIRADS)
        if birads != "1":
            xml = release / "AllXML" / f"{file_name}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_bytes(_osirix_plist(file_name))
    (release / "README.txt").write_text("INbreast look-alike written by tests/data/layouts.py\n")
    if metadata == "csv":
        meta_path = release / "INbreast.csv"
        lines = [INBREAST_HEADER] + [
            f"removed;removed;{side};{view};{date};{fn};{acr};{birads}"
            for fn, side, view, date, acr, birads in INBREAST_CASES
        ]
        meta_path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    else:
        meta_path = release / "INbreast.xls"
        rows: list[list[object]] = [list(INBREAST_XLS_HEADER)]
        for fn, side, view, date, acr, birads in INBREAST_CASES:
            rows.append(
                [
                    "removed",
                    "removed",
                    side,
                    view,
                    float(date),
                    float(fn),  # File Name reads back as a float
                    float(acr) if acr.strip() else acr,
                    float(birads) if birads.isdigit() else birads,
                    "X" if birads not in ("1", "2") else None,
                    None,
                    None,
                    None,
                    "nota" if birads == "5" else None,
                ]
                + [None] * 4
            )
        rows.append([None] * len(INBREAST_XLS_HEADER))
        rows.append(["*", "normal: BI-RADS 1"] + [None] * 15)  # footer rows
        rows.append(["Total", None, None, None, None, None, None, None, 7.0] + [None] * 8)
        meta_path.write_bytes(xls_bytes(rows))
    return Layout("inbreast", root, labels, files, metadata=[meta_path])


# --------------------------------------------------------------------------- MIAS

MIAS_HEADER = "REFNUM BG CLASS SEVERITY X Y RADIUS "
# Info.txt body lines exactly as written (trailing spaces included). 12 images:
# malignant mdb144 (B and M lines), mdb181, mdb233 (4 fields), mdb245 (4 fields).
MIAS_LINES: tuple[str, ...] = (
    "mdb001 G CIRC B 20 12 5",
    "mdb002 G CIRC B 22 14 3 ",
    "mdb003 D NORM ",
    "mdb004 D NORM",
    "mdb005 F CIRC B 10 20 4",
    "mdb005 F CIRC B 20 10 3 ",
    "mdb006 F NORM ",
    "mdb059 F CIRC B ",
    "mdb144 F MISC B 10 10 4",
    "mdb144 F MISC M 20 20 5 ",
    "mdb181 G SPIC M 16 16 6",
    "mdb226 D CALC B 5 5 2",
    "mdb226 D CALC B 6 7 2 ",
    "mdb226 D CALC B 9 8 3",
    "mdb233 G MISC M ",
    "mdb245 F CALC M",  # last line: no newline after it
)


def _mias_labels() -> dict[str, int]:
    labels: dict[str, int] = {}
    for line in MIAS_LINES:
        tokens = line.split()
        labels[tokens[0]] = max(labels.get(tokens[0], 0), int(len(tokens) > 3 and tokens[3] == "M"))
    return labels


def write_mias(root: Path, info_name: str = "info.txt", header: bool = True) -> Layout:
    """Flat MIAS folder (inside a ``all-mias`` wrapper): ``mdbNNN.pgm`` P5 files with header
    comments, ``info.txt`` (lower case by default) with the optional header line, 3/4/7-field
    lines, trailing spaces, repeated lines and no final newline; README and Licence.txt."""
    folder = root / "all-mias"
    folder.mkdir(parents=True, exist_ok=True)
    labels = _mias_labels()
    files: dict[str, Path] = {}
    for k, refnum in enumerate(sorted(labels)):
        path = folder / f"{refnum}.pgm"
        pixels = _ramp(32, 32, 255, seed=300 + k)
        path.write_bytes(
            pgm_bytes(pixels, comments=("CREATOR: look-alike", f"{refnum}"), split_size=k % 2 == 1)
        )
        files[refnum] = path
    lines = ([MIAS_HEADER] if header else []) + list(MIAS_LINES)
    info = folder / info_name
    info.write_bytes("\n".join(lines).encode("ascii"))  # last line lacks a newline
    (folder / "README").write_text("MIAS look-alike written by tests/data/layouts.py\n")
    (folder / "Licence.txt").write_text("for tests only\n")
    return Layout("mias", root, labels, files, metadata=[info])


# --------------------------------------------------------------------------- ultrasound


def write_rodrigues(
    root: Path,
    n_benign: int = 4,
    n_malignant: int = 6,
    wrappers: tuple[str, ...] = ("Breast Ultrasound Images (Mendeley)",),
) -> Layout:
    """Rodrigues breast ultrasound: ``<wrappers...>/benign/us1.bmp ...`` and
    ``<wrappers...>/malignant/us101.bmp ...``, 8-bit palette BMPs of odd widths (padded rows).
    The download's folder names above the class folders are unverified: ``wrappers`` sets them."""
    parent = root.joinpath(*wrappers)
    labels: dict[str, int] = {}
    files: dict[str, Path] = {}
    numbers = [("benign", i + 1) for i in range(n_benign)] + [
        ("malignant", 101 + i) for i in range(n_malignant)
    ]
    for k, (cls, number) in enumerate(numbers):
        path = parent / cls / f"us{number}.bmp"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bmp_bytes(_ramp(13 + k % 5, 17 + 2 * (k % 4), 255, seed=400 + k)))
        name = f"{cls}/us{number}.bmp"
        files[name] = path
        labels[name] = int(cls == "malignant")
    return Layout("ultrasound", root, labels, files)


def write_busi(root: Path) -> Layout:
    """BUSI: ``Dataset_BUSI_with_GT/{benign,malignant,normal}/<cls> (N).png`` RGB images with
    ``_mask.png`` / ``_mask_1.png`` masks (never images) and one byte-identical duplicate."""
    parent = root / "Dataset_BUSI_with_GT"
    plan = {
        "benign": [(1, 1), (2, 2), (3, 1)],  # (N, number of masks)
        "malignant": [(1, 1), (2, 3)],
        "normal": [(1, 1), (2, 1)],
    }
    labels: dict[str, int] = {}
    files: dict[str, Path] = {}
    k = 0
    first_benign = b""
    for cls, items in plan.items():
        for number, n_masks in items:
            k += 1
            stem = f"{cls} ({number})"
            path = parent / cls / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            grey = _ramp(24, 20, 255, seed=500 + k)
            rgb = np.stack([grey, grey, np.clip(grey + 3, 0, 255)], axis=-1)
            data = png_bytes(rgb)
            if cls == "benign" and number == 1:
                first_benign = data
            if cls == "benign" and number == 3:
                data = first_benign  # BUSI contains duplicates: still two image files
            path.write_bytes(data)
            for m in range(n_masks):
                suffix = "_mask" if m == 0 else f"_mask_{m}"
                mask = np.zeros((24, 20), np.uint8)
                if cls != "normal":
                    mask[4 + m : 12 + m, 5:15] = 255
                (path.parent / f"{stem}{suffix}.png").write_bytes(png_bytes(mask))
            name = f"{cls}/{stem}.png"
            files[name] = path
            labels[name] = int(cls == "malignant")
    return Layout("ultrasound", root, labels, files)
