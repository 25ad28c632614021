"""INbreast reader (Moreira et al. 2012).

Metadata: ``INbreast.csv`` (``;`` separated, CRLF) or, when there is no CSV,
``INbreast.xls`` (read with xlrd; ``File Name`` comes back as a float, header names carry
stray spaces, footer rows follow the table). Images:
``AllDICOMs/<File Name>_<16 hex>_MG_<L|R>_<CC|ML|FB>_ANON.dcm``, matched on the leading
number. Lesion outlines: ``AllXML/<File Name>.xml`` (OsiriX plist). The folders may sit at
the root or one or two levels down (downloads are often wrapped in a release folder).

Label: BI-RADS 1, 2, 3 -> 0; 4 (4a, 4b, 4c), 5, 6 -> 1. INbreast gives pathology per image,
so every outline's ``malignant`` follows the image BI-RADS.
"""

from __future__ import annotations

import csv
import io
import os
import plistlib
import re
import xml.parsers.expat
from dataclasses import dataclass
from pathlib import Path

import xlrd

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

DATASET = "inbreast"

#: BI-RADS category (normalised, lower case) -> study label.
BIRADS_LABELS: dict[str, int] = {
    "1": 0,
    "2": 0,
    "3": 0,
    "4": 1,
    "4a": 1,
    "4b": 1,
    "4c": 1,
    "5": 1,
    "6": 1,
}

_SEARCH_DEPTH = 2  # root, its sub-folders and their sub-folders
_FILE_NAME = re.compile(r"^(\d+)(?:\.0*)?$")
_DICOM_NAME = re.compile(r"^(\d+)_", re.IGNORECASE)
_DICOM_PARTS = re.compile(
    r"^\d+_(?P<hash>[0-9a-f]{16})_MG_(?P<side>[LR])_(?P<view>[A-Z]+)_ANON\.dcm$", re.IGNORECASE
)
_POINT = re.compile(r"^\s*\(?\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*(?:,[^)]*)?\)?\s*$")
_VIEWS = {"ML": "MLO", "MLO": "MLO", "CC": "CC", "FB": "FB"}


def _key(name: str) -> str:
    """Header key: lower case, letters and digits only (``' Bi-Rads '`` -> ``birads``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _find(root: Path, names: tuple[str, ...], want_dir: bool) -> Path | None:
    """First entry named one of ``names`` (case-insensitive), shallowest first, by name order."""
    wanted = [n.lower() for n in names]
    level = [root]
    for _ in range(_SEARCH_DEPTH + 1):
        matches: dict[str, Path] = {}
        next_level: list[Path] = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    continue
                lower = entry.name.lower()
                if lower in wanted and is_dir == want_dir:
                    matches.setdefault(lower, Path(entry.path))
                if is_dir:
                    next_level.append(Path(entry.path))
        for name in wanted:  # earlier names win at the same depth
            if name in matches:
                return matches[name]
        level = next_level
    return None


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class _MetaRow:
    where: str  # "<metadata file>:<row or line>"
    values: dict[str, str]  # header key -> stripped text


def _check_header(path: Path, header: list[str]) -> None:
    missing = [name for name in ("File Name", "Bi-Rads") if _key(name) not in header]
    if missing:
        raise DatasetError(
            f"{path}: not the INbreast table (missing columns: {', '.join(missing)})"
        )


def _read_csv(path: Path, shown: str) -> list[_MetaRow]:
    text = read_metadata_text(path)
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first_line or "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [_key(h) for h in next(reader)]
    except StopIteration:
        raise DatasetError(f"{path}: metadata file is empty") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: cannot parse the header ({exc})") from exc
    _check_header(path, header)
    rows: list[_MetaRow] = []
    line = reader.line_num
    while True:
        start = line + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = reader.line_num
            rows.append(_MetaRow(f"{shown}:{start}", {"__error__": f"unparseable CSV ({exc})"}))
            continue
        line = reader.line_num
        cells = {k: v.strip() for k, v in zip(header, values)}
        if len(values) > len(header) and any(v.strip() for v in values[len(header) :]):
            cells["__error__"] = f"expected {len(header)} fields, found {len(values)}"
        rows.append(_MetaRow(f"{shown}:{start}", cells))
    return rows


def _cell_text(cell: xlrd.sheet.Cell) -> str:
    if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return ""
    if cell.ctype == xlrd.XL_CELL_NUMBER:
        value = float(cell.value)
        return str(int(value)) if value.is_integer() else repr(value)
    if cell.ctype == xlrd.XL_CELL_ERROR:
        return ""
    return str(cell.value).strip()


def _read_xls(path: Path, shown: str) -> list[_MetaRow]:
    try:
        book = xlrd.open_workbook(str(path), logfile=io.StringIO())
        sheet = book.sheet_by_index(0)
    except Exception as exc:  # xlrd raises many types for damaged files
        raise DatasetError(f"{path}: cannot read the spreadsheet ({exc})") from exc
    header_row = None
    for r in range(min(sheet.nrows, 20)):
        keys = [_key(_cell_text(c)) for c in sheet.row(r)]
        if _key("File Name") in keys:
            header_row = r
            break
    if header_row is None:
        raise DatasetError(f"{path}: no header row with a 'File Name' column in the first sheet")
    header = [_key(_cell_text(c)) for c in sheet.row(header_row)]
    _check_header(path, header)
    rows = []
    for r in range(header_row + 1, sheet.nrows):
        cells = {k: _cell_text(c) for k, c in zip(header, sheet.row(r)) if k}
        rows.append(_MetaRow(f"{shown}:row {r + 1}", cells))
    return rows


def _drop_footer(rows: list[_MetaRow]) -> list[_MetaRow]:
    """Drop blank rows and the footer: every row after the last one with a File Name."""
    last = -1
    for i, row in enumerate(rows):
        if row.values.get("filename"):
            last = i
    return [r for r in rows[: last + 1] if any(r.values.values())]


def _parse_birads(text: str) -> str | None:
    value = "".join(text.split()).lower()
    value = value.removesuffix(".0")
    return value if value in BIRADS_LABELS else None


def _parse_acr(text: str) -> int | str | None:
    value = text.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else value


def _parse_point(text: object) -> tuple[float, float]:
    match = _POINT.match(str(text))
    if match is None:
        raise ValueError(f"cannot read point {text!r}")
    return float(match.group(1)), float(match.group(2))


def read_outlines(path: Path, malignant: bool, pathology: str) -> tuple[Finding, ...]:
    """Findings from one OsiriX plist (``Images[0].ROIs``).

    Raises ValueError (unreadable file, missing keys, bad points) or TypeError (wrong
    structure) when the file is broken.

    Each ROI gives a Finding with ``kind`` = ROI ``Name``, ``outline`` = its ``Point_px``
    points and ``center`` = their mean. Malignancy follows the image BI-RADS.
    """
    try:
        with open(path, "rb") as handle:
            plist = plistlib.load(handle)
    except (
        plistlib.InvalidFileException,
        xml.parsers.expat.ExpatError,
        ValueError,
        OSError,
    ) as exc:
        raise ValueError(f"not a readable plist ({exc})") from exc
    try:
        rois = plist["Images"][0]["ROIs"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"no Images[0].ROIs in the plist ({type(exc).__name__}: {exc})") from exc
    if not isinstance(rois, list):
        raise TypeError("Images[0].ROIs is not a list")
    findings = []
    for i, roi in enumerate(rois):
        if not isinstance(roi, dict):
            raise TypeError(f"ROI {i} is not a dictionary")
        points = tuple(_parse_point(p) for p in roi.get("Point_px", []) or [])
        center = None
        if points:
            center = (
                sum(p[0] for p in points) / len(points),
                sum(p[1] for p in points) / len(points),
            )
        name = str(roi.get("Name", "")).strip() or None
        attributes: dict[str, object] = {"roi_index": i}
        if "NumberOfPoints" in roi:
            attributes["number_of_points"] = roi["NumberOfPoints"]
        findings.append(
            Finding(
                malignant=malignant,
                pathology=pathology,
                kind=name,
                center=center,
                outline=points or None,
                attributes=attributes,
            )
        )
    return tuple(findings)


def _index_dicoms(folder: Path | None) -> tuple[dict[str, list[Path]], list[Path]]:
    """``.dcm`` files by their leading File Name number, plus those without one."""
    index: dict[str, list[Path]] = {}
    unnamed: list[Path] = []
    if folder is None:
        return index, unnamed
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return index, unnamed
    for name in names:
        if not name.lower().endswith(".dcm") or name.startswith("."):
            continue
        match = _DICOM_NAME.match(name)
        if match:
            index.setdefault(match.group(1), []).append(folder / name)
        else:
            unnamed.append(folder / name)
    return index, unnamed


def _index_xml(folder: Path | None) -> dict[str, Path]:
    if folder is None:
        return {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return {}
    return {n[:-4]: folder / n for n in names if n.lower().endswith(".xml")}


@register_reader
class InbreastReader:
    """Reader for INbreast (``INbreast.csv`` or ``INbreast.xls``, ``AllDICOMs``, ``AllXML``)."""

    name = DATASET
    modality = "mammogram"

    def read(self, root: Path) -> ReadResult:
        """Parse the metadata table under ``root`` and match each row to its DICOM and XML."""
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: INbreast root folder does not exist")
        meta_path = _find(root, ("INbreast.csv",), want_dir=False)
        if meta_path is not None:
            rows = _read_csv(meta_path, _rel(meta_path, root))
        else:
            meta_path = _find(root, ("INbreast.xls",), want_dir=False)
            if meta_path is None:
                raise DatasetError(
                    f"{root}: no INbreast metadata found (INbreast.csv or INbreast.xls, "
                    f"searched the root and {_SEARCH_DEPTH} levels below)"
                )
            rows = _read_xls(meta_path, _rel(meta_path, root))
        rows = _drop_footer(rows)
        if not rows:
            raise DatasetError(f"{meta_path}: lists no images (a header without rows)")

        dicom_dir = _find(root, ("AllDICOMs",), want_dir=True)
        xml_dir = _find(root, ("AllXML",), want_dir=True)
        dicoms, unnamed = _index_dicoms(dicom_dir)
        xmls = _index_xml(xml_dir)
        dicom_shown = _rel(dicom_dir, root) if dicom_dir is not None else "AllDICOMs"

        skipped: list[Skipped] = []
        records: list[tuple[int, ImageRecord]] = []
        seen: set[str] = set()
        for row in rows:
            values = row.values
            if "__error__" in values:
                skipped.append(Skipped(row.where, values["__error__"]))
                continue
            raw_name = values.get("filename", "")
            match = _FILE_NAME.match(raw_name)
            if match is None:
                skipped.append(Skipped(row.where, f"bad File Name {raw_name!r}"))
                continue
            file_name = match.group(1)
            if file_name in seen:
                skipped.append(Skipped(row.where, f"duplicate row for File Name {file_name}"))
                continue
            seen.add(file_name)
            birads = _parse_birads(values.get("birads", ""))
            if birads is None:
                skipped.append(
                    Skipped(row.where, f"bad Bi-Rads {values.get('birads', '')!r} for {file_name}")
                )
                continue
            candidates = dicoms.get(file_name)
            if not candidates:
                where = "AllDICOMs folder not found" if dicom_dir is None else "no such file"
                skipped.append(
                    Skipped(f"{dicom_shown}/{file_name}_*.dcm", f"{where} (metadata {row.where})")
                )
                continue
            dicom = candidates[0]
            try:
                detect_format(dicom)  # magic bytes: a renamed PNG is not a mammogram
            except ImageDecodeError as exc:
                skipped.append(Skipped(str(dicom), exc.reason))
                continue
            parts = _DICOM_PARTS.match(dicom.name)
            side = values.get("laterality", "").upper() or None
            if side not in ("L", "R"):
                side = parts.group("side").upper() if parts else None
            view_text = values.get("view", "").upper() or (
                parts.group("view").upper() if parts else ""
            )
            view = _VIEWS.get(view_text, view_text or None)
            label = BIRADS_LABELS[birads]
            findings: tuple[Finding, ...] = ()
            xml_path = xmls.get(file_name)
            if xml_path is not None:
                try:
                    findings = read_outlines(xml_path, bool(label), birads)
                except (ValueError, TypeError) as exc:
                    skipped.append(Skipped(_rel(xml_path, root), f"broken outline file: {exc}"))
            record = ImageRecord(
                image_id=anonymous_id(DATASET, file_name),
                dataset=DATASET,
                path=dicom,
                label=label,
                split=None,
                patient=parts.group("hash").lower() if parts else None,
                side=side,
                view=view,
                findings=findings,
                meta={
                    "birads": birads,
                    "acr": _parse_acr(values.get("acr", "")),
                    "laterality": side,
                },
            )
            records.append((int(file_name), record))
        unlisted = [p for key in sorted(set(dicoms) - seen) for p in dicoms[key]] + unnamed
        for path in sorted(unlisted):
            skipped.append(Skipped(str(path), f"not listed in {meta_path.name}"))
        records.sort(key=lambda item: item[0])
        result = ReadResult(
            dataset=DATASET,
            root=root,
            records=[r for _, r in records],
            skipped=skipped,
            metadata=meta_path,
        )
        require_usable(result)
        return result
