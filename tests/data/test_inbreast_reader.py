"""INbreast reader: CSV and XLS metadata, DICOM name matching, OsiriX XML outlines."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from tests.data.dicom_factory import write_mammogram
from tests.data.layouts import INBREAST_HEADER as CSV_HEADER
from tests.data.layouts import INBREAST_XLS_HEADER as XLS_HEADER
from tests.data.layouts import xls_bytes
from tlcore.data.readers.inbreast import InbreastReader
from tlcore.data.records import DatasetError, anonymous_id
from tlcore.data.registry import get_reader

# (file name, 16-hex hash, laterality, metadata view, view in the file name, ACR, Bi-Rads)
CASES = [
    ("20586908", "6c613a14b80a8591", "R", "CC", "CC", "2", "1"),
    ("22678670", "61b13c59bcba149e", "R", "MLO", "ML", "1", "2"),
    ("22580192", "5530d5782fc89dd7", "L", "CC", "CC", "   ", "3"),  # ACR a run of blanks
    ("22614074", "d1a5f0a5e9ca2e5c", "L", "MLO", "ML", "3", "4a"),
    ("22614097", "d1a5f0a5e9ca2e5c", "L", "CC", "CC", "3", "4B"),
    ("24055274", "c9da2ed7a76dd8ef", "R", "MLO", "ML", "4", " 4c "),
    ("50995789", "0a57bd5c15c9ab6c", "L", "FB", "FB", "2", "5"),
    ("53586896", "1e9fd8b25ea3b8e5", "R", "CC", "CC", "1", "6"),
]
EXPECTED_LABELS = {
    "20586908": 0,
    "22678670": 0,
    "22580192": 0,
    "22614074": 1,
    "22614097": 1,
    "24055274": 1,
    "50995789": 1,
    "53586896": 1,
}


def dicom_name(file_name: str, hash16: str, side: str, view: str) -> str:
    return f"{file_name}_{hash16}_MG_{side}_{view}_ANON.dcm"


def write_dicoms(folder: Path, cases=CASES) -> None:
    for fn, h, side, _, file_view, _, _ in cases:
        write_mammogram(folder / dicom_name(fn, h, side, file_view), size=8, bits_stored=14)


def roi(name: str, points: list[tuple[float, float]]) -> dict:
    return {
        "Name": name,
        "NumberOfPoints": len(points),
        "Point_px": [f"({x}, {y})" for x, y in points],
        "Point_mm": [f"({x / 10}, {y / 10}, 0)" for x, y in points],
        "Area": 1.0,
    }


def write_plist(path: Path, rois: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": rois}]}
    path.write_bytes(plistlib.dumps(doc, fmt=plistlib.FMT_XML))


def csv_rows(cases=CASES) -> list[str]:
    return [
        f"removed;removed;{lat};{view};201001;{fn};{acr};{birads}"
        for fn, _, lat, view, _, acr, birads in cases
    ]


def write_csv(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join([CSV_HEADER] + lines) + "\r\n").encode())


def write_xls(path: Path, rows: list[list[object]]) -> None:
    """Write ``rows`` (str / number / None cells) as a one-sheet Excel 97 workbook."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(xls_bytes(rows))


def xls_rows(cases=CASES) -> list[list[object]]:
    rows: list[list[object]] = [XLS_HEADER]
    for fn, _, lat, view, _, acr, birads in cases:
        acr_cell: object = float(acr) if acr.strip() else acr
        birads_cell: object = float(birads) if birads.strip().isdigit() else birads
        rows.append(
            [
                "removed",
                "removed",
                lat,
                view,
                201001.0,
                float(fn),
                acr_cell,
                birads_cell,
                "X" if birads_cell != 1.0 else None,
            ]
            + [None] * 8
        )
    rows.append([None] * len(XLS_HEADER))
    rows.append(["*", "see notes", None, None, None, None, None, None] + [None] * 9)  # footer
    rows.append(["Total", None, None, None, None, None, None, None, 3.0] + [None] * 8)  # footer
    return rows


# --- tests


def by_name(result, file_name: str):
    matches = [r for r in result.records if r.image_id == anonymous_id("inbreast", file_name)]
    assert len(matches) == 1, file_name
    return matches[0]


def check_records(result) -> None:
    assert len(result.records) == len(CASES)
    assert {fn: by_name(result, fn).label for fn, *_ in CASES} == EXPECTED_LABELS
    assert result.n_malignant == 5 and result.n_benign == 3
    for fn, h, lat, view, _, acr, birads in CASES:
        record = by_name(result, fn)
        assert record.patient == h
        assert record.side == lat and record.meta["laterality"] == lat
        assert record.view == view  # ML in the file name -> MLO
        assert record.split is None and record.dataset == "inbreast"
        assert record.meta["birads"] == birads.strip().lower()
        assert record.meta["acr"] == (int(acr) if acr.strip() else None)
        assert record.path.name.startswith(fn + "_")
    file_names = [int(r.path.name.split("_")[0]) for r in result.records]
    assert file_names == sorted(file_names)


def test_csv_wrapped_in_release_folder_with_outlines(tmp_path: Path) -> None:
    base = tmp_path / "INbreast Release 1.0"
    write_dicoms(base / "AllDICOMs")
    write_csv(base / "INbreast.csv", csv_rows())
    write_plist(
        base / "AllXML" / "22614074.xml",
        [
            roi("Mass", [(10.0, 20.0), (14.0, 20.0), (14.0, 26.0), (10.0, 26.0)]),
            roi("Calcification", [(5.5, 6.25)]),
        ],
    )
    (base / "AllXML" / "24055274.xml").write_text("<?xml version='1.0'?><plist><dict><key>Im")
    write_plist(base / "AllXML" / "22678670.xml", [roi("Cluster", [(1.0, 2.0), (3.0, 4.0)])])

    result = InbreastReader().read(tmp_path)
    check_records(result)

    two = by_name(result, "22614074")
    assert len(two.findings) == 2
    mass, calc = two.findings
    assert mass.kind == "Mass" and calc.kind == "Calcification"
    assert mass.outline == ((10.0, 20.0), (14.0, 20.0), (14.0, 26.0), (10.0, 26.0))
    assert mass.center == (12.0, 23.0)
    assert calc.outline == ((5.5, 6.25),)
    assert mass.malignant and calc.malignant and mass.pathology == "4a"

    benign_roi = by_name(result, "22678670").findings
    assert len(benign_roi) == 1 and not benign_roi[0].malignant

    broken = by_name(result, "24055274")  # broken XML: record kept, no outlines
    assert broken.findings == () and broken.label == 1
    assert [s.path for s in result.skipped] == [
        str(Path("INbreast Release 1.0/AllXML/24055274.xml"))
    ]
    assert "broken outline" in result.skipped[0].reason
    assert by_name(result, "20586908").findings == ()  # BI-RADS 1: no XML


def test_xls_when_no_csv(tmp_path: Path) -> None:
    write_dicoms(tmp_path / "AllDICOMs")
    write_xls(tmp_path / "INbreast.xls", xls_rows())
    result = InbreastReader().read(tmp_path)
    check_records(result)
    assert result.skipped == []  # the blank and footer rows are ignored


def test_csv_preferred_over_xls(tmp_path: Path) -> None:
    write_dicoms(tmp_path / "AllDICOMs")
    write_csv(tmp_path / "INbreast.csv", csv_rows(CASES[:3]))
    write_xls(tmp_path / "INbreast.xls", xls_rows())
    result = InbreastReader().read(tmp_path)
    assert len(result.records) == 3 and result.n_malignant == 0


def test_missing_dicom_and_malformed_rows_are_skipped(tmp_path: Path) -> None:
    write_dicoms(tmp_path / "AllDICOMs", CASES[:4])
    lines = csv_rows(CASES[:4]) + [
        "removed;removed;L;CC;201001;;2;2",  # no file name          (line 6)
        "removed;removed;L;CC;201001;22678670;2;4a",  # duplicate    (line 7)
        "removed;removed;L;CC;201001;11111111;2;0",  # BI-RADS 0     (line 8)
        "removed;removed;L;CC;201001;22222222;2;2",  # no DICOM      (line 9)
        "removed;removed;L;CC;201001;abc;2;2",  # bad file name      (line 10)
        ";;;;;;;",  # blank trailing row, ignored
    ]
    write_csv(tmp_path / "INbreast.csv", lines)
    result = InbreastReader().read(tmp_path)
    assert len(result.records) == 4 and result.n_malignant == 1
    assert [s.path for s in result.skipped] == [
        "INbreast.csv:6",
        "INbreast.csv:7",
        "INbreast.csv:8",
        "AllDICOMs/22222222_*.dcm",
        "INbreast.csv:10",
    ]
    assert "duplicate" in result.skipped[1].reason
    assert "Bi-Rads" in result.skipped[2].reason
    assert "INbreast.csv:9" in result.skipped[3].reason


def test_missing_dicom_folder_is_an_error_naming_the_metadata(tmp_path: Path) -> None:
    # Behaviour changed deliberately (issue 12): no usable image is an error, not "0 of 2".
    write_csv(tmp_path / "INbreast.csv", csv_rows(CASES[:2]))
    with pytest.raises(DatasetError) as err:
        InbreastReader().read(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'INbreast.csv'}: no usable image (2 skipped; first reason: ")
    assert "AllDICOMs folder not found" in message and "\n" not in message


def test_nonexistent_root_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        InbreastReader().read(tmp_path / "missing")


def test_missing_metadata_raises(tmp_path: Path) -> None:
    write_dicoms(tmp_path / "AllDICOMs", CASES[:1])
    with pytest.raises(DatasetError, match=r"INbreast\.csv or INbreast\.xls"):
        InbreastReader().read(tmp_path)


def test_bad_header_and_bad_xls_raise(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "INbreast.csv").write_text("Name;Value\r\nx;1\r\n")
    with pytest.raises(DatasetError, match=r"INbreast\.csv.*missing columns: File Name, Bi-Rads"):
        InbreastReader().read(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "INbreast.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1not a workbook")
    with pytest.raises(DatasetError, match=r"INbreast\.xls: cannot read the spreadsheet"):
        InbreastReader().read(tmp_path / "b")


def test_registered_by_name(tmp_path: Path) -> None:
    write_dicoms(tmp_path / "AllDICOMs")
    write_csv(tmp_path / "INbreast.csv", csv_rows())
    reader = get_reader("inbreast")
    assert reader.modality == "mammogram"
    assert len(reader.read(tmp_path).records) == len(CASES)
