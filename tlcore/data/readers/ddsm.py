"""CBIS-DDSM reader (Lee et al. 2017, distributed by TCIA).

Metadata: up to four CSV files (``mass_case_description_{train,test}_set.csv``,
``calc_case_description_{train,test}_set.csv``), one row per abnormality, found anywhere
under the root. One :class:`ImageRecord` is produced per distinct full-mammogram path;
each CSV row becomes a :class:`Finding` on it.

Quirks handled (see ``datasets.md``): CRLF line ends and quoted fields holding bare
newlines, ``breast_density`` vs ``breast density`` and mass vs calc descriptor headers,
literal ``NA`` / ``N/A`` strings (kept as text, mapped to ``None``), whitespace and
trailing newlines around every path, crop vs ROI-mask naming mixed up in the CSVs
(decided from the DICOM header: masks are 8-bit, crops 16-bit), and both disk layouts
written by the NBIA retriever: *classic* (files at the CSV paths) and *descriptive*
(``<top>/<MM-DD-YYYY-DDSM-NNNNN>/<N.000000-description-NNNNN>/1-1.dcm``).
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from tlcore.data.imageio import detect_format
from tlcore.data.readers._text import read_metadata_text
from tlcore.data.records import (
    DatasetError,
    Finding,
    ImageDecodeError,
    ImageRecord,
    ReadResult,
    Skipped,
    anonymous_id,
    require_usable,
)
from tlcore.data.registry import register_reader

DATASET = "ddsm"

#: The four metadata files: lower-case name -> (abnormality kind, split named by the file).
CSV_FILES: dict[str, tuple[str, str]] = {
    "mass_case_description_train_set.csv": ("mass", "train"),
    "mass_case_description_test_set.csv": ("mass", "test"),
    "calc_case_description_train_set.csv": ("calcification", "train"),
    "calc_case_description_test_set.csv": ("calcification", "test"),
}

PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")
_MISSING = {"", "NA", "N/A"}
_SIDES = {"LEFT": "L", "RIGHT": "R", "L": "L", "R": "R"}
_VIEWS = {"CC", "MLO"}

# Canonical (normalised) column names.
_COL_PATIENT = "patient id"
_COL_DENSITY = "breast density"
_COL_SIDE = "left or right breast"
_COL_VIEW = "image view"
_COL_ABN_ID = "abnormality id"
_COL_ABN_TYPE = "abnormality type"
_COL_ASSESSMENT = "assessment"
_COL_PATHOLOGY = "pathology"
_COL_SUBTLETY = "subtlety"
_COL_IMAGE = "image file path"
_COL_CROP = "cropped image file path"
_COL_MASK = "roi mask file path"
_REQUIRED = (
    _COL_PATIENT,
    _COL_DENSITY,
    _COL_SIDE,
    _COL_VIEW,
    _COL_ABN_ID,
    _COL_ABN_TYPE,
    _COL_ASSESSMENT,
    _COL_PATHOLOGY,
    _COL_SUBTLETY,
    _COL_IMAGE,
    _COL_CROP,
    _COL_MASK,
)
#: Descriptor columns: normalised CSV name -> attribute key.
_DESCRIPTORS = {
    "mass shape": "mass_shape",
    "mass margins": "mass_margins",
    "calc type": "calc_type",
    "calc distribution": "calc_distribution",
}

_SPLIT_PREFIX = re.compile(r"^(mass|calc)-(training|test)_", re.IGNORECASE)
_TRAILING_DIGITS = re.compile(r"(\d+)$")
_CLASSIC_FILE = re.compile(r"^(\d+)\.dcm$", re.IGNORECASE)
_DESCRIPTIVE_FILE = re.compile(r"^\d+-(\d+)\.dcm$", re.IGNORECASE)


def _norm_header(name: str) -> str:
    """``breast_density`` / ``Breast Density `` -> ``breast density``."""
    return " ".join(name.replace("_", " ").strip().lower().split())


def _norm_csv_path(value: str) -> str:
    """Strip whitespace / newlines, use forward slashes, drop leading ``./`` and ``/``."""
    text = value.strip().replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _missing_to_none(value: str) -> str | None:
    text = value.strip()
    return None if text.upper() in _MISSING else text


def _int_or_text(value: str) -> int | str | None:
    """``'3'`` -> 3, ``'NA'`` -> None, anything else kept as (stripped) text."""
    text = _missing_to_none(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else text


def _uid_tail(text: str) -> int | None:
    """Last five digits of a UID or of an NBIA folder name, as an int (None if absent)."""
    match = _TRAILING_DIGITS.search(text)
    if match is None:
        return None
    return int(match.group(1)[-5:])


@dataclass
class _DicomIndex:
    """Every ``.dcm`` file under the root, keyed for both NBIA layouts (one tree walk)."""

    classic: dict[tuple[str, str, str, str], Path] = field(default_factory=dict)
    descriptive: dict[tuple[str, int, int, int], Path] = field(default_factory=dict)

    def add(self, path: Path, rel_parts: tuple[str, ...]) -> None:
        if len(rel_parts) < 4:
            return
        top, study, series, name = (p.lower() for p in rel_parts[-4:])
        self.classic.setdefault((top, study, series, name), path)
        match = _DESCRIPTIVE_FILE.match(name)
        study_tail, series_tail = _uid_tail(study), _uid_tail(series)
        if match and study_tail is not None and series_tail is not None:
            key = (top, study_tail, series_tail, int(match.group(1)) - 1)
            self.descriptive.setdefault(key, path)

    def resolve(self, csv_path: str, data_dirs: list[Path]) -> Path | None:
        """The file on disk for a CSV path: classic layout first, then descriptive."""
        parts = csv_path.split("/")
        if len(parts) < 4:
            for folder in data_dirs:
                candidate = folder / csv_path
                if candidate.is_file():
                    return candidate
            return None
        top, study, series, name = (p.lower() for p in parts[-4:])
        found = self.classic.get((top, study, series, name))
        if found is not None:
            return found
        match = _CLASSIC_FILE.match(name)
        study_tail, series_tail = _uid_tail(study), _uid_tail(series)
        if match is None or study_tail is None or series_tail is None:
            return None
        return self.descriptive.get((top, study_tail, series_tail, int(match.group(1))))


def _walk(root: Path) -> tuple[dict[str, list[Path]], _DicomIndex]:
    """One walk of the tree: the metadata CSVs found (by lower-case name) and the DICOM index.

    Symlinked folders are followed unless they point back into a folder already walked.
    """
    csvs: dict[str, list[Path]] = {}
    index = _DicomIndex()
    followed = [os.path.realpath(root)]
    stack: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    while stack:
        folder, rel = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[tuple[Path, tuple[str, ...]]] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
                if is_dir and entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if any(real == f or real.startswith(f + os.sep) for f in followed):
                        continue  # a loop or a second view of walked files
                    followed.append(real)
            except OSError:
                continue
            if is_dir:
                subdirs.append((Path(entry.path), rel + (entry.name,)))
                continue
            lower = entry.name.lower()
            if lower.endswith(".dcm"):
                index.add(Path(entry.path), rel + (entry.name,))
            elif lower in CSV_FILES:
                csvs.setdefault(lower, []).append(Path(entry.path))
        stack.extend(reversed(subdirs))
    return csvs, index


def _header_role(path: Path, cache: dict[Path, str | None]) -> str | None:
    """``'mask'`` for an 8-bit DICOM, ``'crop'`` for a 16-bit one, None if the header can't tell."""
    if path in cache:
        return cache[path]
    role: str | None = None
    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["BitsAllocated", "BitsStored"]
        )
        allocated = ds.get("BitsAllocated")
        stored = ds.get("BitsStored")
        bits = allocated if allocated is not None else stored
        if bits is not None:
            bits = int(bits)
            if bits <= 8:
                role = "mask"
            elif bits >= 16:
                role = "crop"
    except Exception:  # noqa: BLE001 - any unreadable header: fall back to the CSV column
        role = None
    cache[path] = role
    return role


def _assign_crop_mask(
    csv_crop: Path | None, csv_mask: Path | None, cache: dict[Path, str | None]
) -> tuple[Path | None, Path | None]:
    """Decide which resolved file is the crop and which the mask; returns (crop, mask)."""
    if csv_crop is not None and csv_crop == csv_mask:
        role = _header_role(csv_crop, cache)
        if role == "mask":
            return None, csv_mask
        if role == "crop":
            return csv_crop, None
        return csv_crop, csv_mask
    roles = {
        "crop": _header_role(csv_crop, cache) if csv_crop is not None else None,
        "mask": _header_role(csv_mask, cache) if csv_mask is not None else None,
    }
    files = {"crop": csv_crop, "mask": csv_mask}
    result: dict[str, Path | None] = {"crop": None, "mask": None}
    known = {col: role for col, role in roles.items() if files[col] is not None and role}
    if len(set(known.values())) < len(known):
        # both files claim the same kind: the header cannot tell, trust the CSV
        return csv_crop, csv_mask
    other = {"crop": "mask", "mask": "crop"}
    for col, path in files.items():
        if path is None:
            continue
        role = roles[col]
        if role is None:
            # undetermined: the opposite of what the other file is, else the CSV column
            other_role = known.get(other[col])
            role = other[other_role] if other_role else col
        result[role] = path
    return result["crop"], result["mask"]


@dataclass
class _Row:
    """One parsed abnormality row."""

    where: str  # "<csv>:<line>"
    kind: str
    csv_split: str
    patient: str
    side: str
    view: str
    pathology: str
    image_key: str
    crop: str
    mask: str
    attributes: dict[str, object]
    density: int | str | None


@dataclass
class _Image:
    rows: list[_Row] = field(default_factory=list)


class _RowError(ValueError):
    pass


def _parse_row(values: list[str], header: list[str], kind: str, csv_split: str, where: str) -> _Row:
    if len(values) != len(header):
        raise _RowError(f"expected {len(header)} fields, found {len(values)}")
    row = dict(zip(header, values))
    image_key = _norm_csv_path(row[_COL_IMAGE])
    if not image_key:
        raise _RowError("empty 'image file path'")
    patient = row[_COL_PATIENT].strip()
    if not patient:
        raise _RowError("empty 'patient_id'")
    pathology = row[_COL_PATHOLOGY].strip()
    if pathology.upper() not in PATHOLOGIES:
        raise _RowError(
            f"unknown pathology {pathology!r} (expected one of {', '.join(PATHOLOGIES)})"
        )
    side = _SIDES.get(row[_COL_SIDE].strip().upper())
    if side is None:
        raise _RowError(f"unknown breast side {row[_COL_SIDE].strip()!r}")
    view = row[_COL_VIEW].strip().upper()
    if view not in _VIEWS:
        raise _RowError(f"unknown image view {row[_COL_VIEW].strip()!r}")
    abn_type = (_missing_to_none(row[_COL_ABN_TYPE]) or kind).lower()
    if abn_type.startswith("calc"):
        abn_type = "calcification"
    density = _int_or_text(row[_COL_DENSITY])
    attributes: dict[str, object] = {
        "abnormality_id": _int_or_text(row[_COL_ABN_ID]),
        "assessment": _int_or_text(row[_COL_ASSESSMENT]),
        "subtlety": _int_or_text(row[_COL_SUBTLETY]),
        "breast_density": density,
    }
    for column, key in _DESCRIPTORS.items():
        if column in row:
            attributes[key] = _missing_to_none(row[column])
    return _Row(
        where=where,
        kind=abn_type,
        csv_split=csv_split,
        patient=patient,
        side=side,
        view=view,
        pathology=pathology,
        image_key=image_key,
        crop=_norm_csv_path(row[_COL_CROP]),
        mask=_norm_csv_path(row[_COL_MASK]),
        attributes=attributes,
        density=density,
    )


def _split_of(image_key: str, csv_split: str) -> str:
    parts = image_key.split("/")
    top = parts[-4] if len(parts) >= 4 else parts[0]
    match = _SPLIT_PREFIX.match(top)
    if match is None:
        return csv_split
    return "train" if match.group(2).lower() == "training" else "test"


@dataclass(frozen=True)
class DdsmReaderConfig:
    """Options of the CBIS-DDSM reader.

    ``check_crop_mask_headers``: read the DICOM header of every crop / ROI-mask file to tell
    them apart (8-bit mask, 16-bit crop); when False the CSV columns are trusted as written
    (faster, but mass rows then mostly swap crop and mask).
    """

    check_crop_mask_headers: bool = True


@register_reader
class DdsmReader:
    """Reader for CBIS-DDSM in either NBIA download layout (see module docstring)."""

    name = DATASET
    modality = "mammogram"

    def __init__(self, config: DdsmReaderConfig | None = None) -> None:
        self.config = config or DdsmReaderConfig()

    def read(self, root: Path) -> ReadResult:
        """Parse the CSVs under ``root`` and resolve every listed file on disk."""
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: CBIS-DDSM root folder does not exist")
        csvs, index = _walk(root)
        if not csvs:
            raise DatasetError(
                f"{root}: no CBIS-DDSM metadata found (expected at least one of "
                f"{', '.join(CSV_FILES)} anywhere under the root)"
            )
        skipped: list[Skipped] = []
        images: dict[str, _Image] = {}
        used: list[Path] = []
        for name in CSV_FILES:  # fixed order: deterministic findings and skip lists
            if name not in csvs:
                continue
            # the shallowest copy wins when a CSV appears twice
            path = min(csvs[name], key=lambda p: (len(p.parts), str(p)))
            used.append(path)
            self._read_csv(path, root, images, skipped)
        metadata = used[0] if len(used) == 1 else used[0].parent
        if not images and not skipped:
            names = ", ".join(str(p) for p in used)
            raise DatasetError(f"{names}: list no images (headers without rows)")

        data_dirs = [root, root / "CBIS-DDSM"] + sorted(
            {p.parent for v in csvs.values() for p in v}
        )
        header_cache: dict[Path, str | None] = {}
        records: list[ImageRecord] = []
        for image_key in sorted(images):
            rows = images[image_key].rows
            first = rows[0]
            image_id = anonymous_id(DATASET, image_key)
            image_path = index.resolve(image_key, data_dirs)
            if image_path is None:
                skipped.append(
                    Skipped(
                        path=first.where,
                        reason=(
                            f"full image {image_id} not found under the root (looked for the "
                            "CSV path and the NBIA descriptive layout)"
                        ),
                    )
                )
                continue
            try:
                detect_format(image_path)  # magic bytes: a renamed PNG is not a mammogram
            except ImageDecodeError as exc:
                skipped.append(Skipped(str(image_path), exc.reason))
                continue
            findings = []
            for row in rows:
                crop = index.resolve(row.crop, data_dirs) if row.crop else None
                mask = index.resolve(row.mask, data_dirs) if row.mask else None
                if self.config.check_crop_mask_headers:
                    crop, mask = _assign_crop_mask(crop, mask, header_cache)
                findings.append(
                    Finding(
                        malignant=row.pathology.upper() == "MALIGNANT",
                        pathology=row.pathology,
                        kind=row.kind,
                        roi_mask_path=mask,
                        crop_path=crop,
                        attributes=dict(row.attributes),
                    )
                )
            label = int(any(f.malignant for f in findings))
            records.append(
                ImageRecord(
                    image_id=image_id,
                    dataset=DATASET,
                    path=image_path,
                    label=label,
                    split=_split_of(image_key, first.csv_split),
                    patient=first.patient,
                    side=first.side,
                    view=first.view,
                    findings=tuple(findings),
                    meta={
                        "breast_density": first.density,
                        "abnormality_types": sorted({r.kind for r in rows}),
                    },
                )
            )
        result = ReadResult(
            dataset=DATASET, root=root, records=records, skipped=skipped, metadata=metadata
        )
        require_usable(result)
        return result

    @staticmethod
    def _read_csv(
        path: Path, root: Path, images: dict[str, _Image], skipped: list[Skipped]
    ) -> None:
        kind, csv_split = CSV_FILES[path.name.lower()]
        try:
            shown = str(path.relative_to(root))
        except ValueError:
            shown = str(path)
        text = read_metadata_text(path)
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            raw_header = next(reader)
        except StopIteration:
            raise DatasetError(f"{path}: metadata file is empty") from None
        except csv.Error as exc:
            raise DatasetError(f"{path}: cannot parse the header ({exc})") from exc
        header = [_norm_header(h) for h in raw_header]
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise DatasetError(
                f"{path}: not a CBIS-DDSM case description (missing columns: {', '.join(missing)})"
            )
        line = reader.line_num
        row_no = 0
        while True:
            start = line + 1
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                line = reader.line_num
                row_no += 1
                skipped.append(
                    Skipped(f"{shown}:{start}", f"row {row_no}: unparseable CSV ({exc})")
                )
                continue
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue  # blank line (e.g. trailing newlines at the end of the file)
            row_no += 1
            where = f"{shown}:{start}"
            try:
                row = _parse_row(values, header, kind, csv_split, where)
            except _RowError as exc:
                skipped.append(Skipped(where, f"row {row_no}: {exc}"))
                continue
            images.setdefault(row.image_key, _Image()).rows.append(row)
