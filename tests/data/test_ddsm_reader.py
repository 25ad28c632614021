"""CBIS-DDSM reader: every metadata and layout quirk, on tiny real CSV and DICOM files."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tlcore.data.readers.ddsm import DdsmReader
from tlcore.data.records import DatasetError, anonymous_id
from tlcore.data.registry import get_reader

try:
    from tests.data.dicom_factory import write_mammogram, write_mask
except ImportError:  # tests/ is not a package: pytest puts tests/data on sys.path
    from dicom_factory import write_mammogram, write_mask

MASS_HEADER = (
    "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,"
    "mass shape,mass margins,assessment,pathology,subtlety,image file path,"
    "cropped image file path,ROI mask file path"
)
CALC_HEADER = (
    "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
    "calc type,calc distribution,assessment,pathology,subtlety,image file path,"
    "cropped image file path,ROI mask file path"
)
MASS_TRAIN = "mass_case_description_train_set.csv"
MASS_TEST = "mass_case_description_test_set.csv"
CALC_TRAIN = "calc_case_description_train_set.csv"
CALC_TEST = "calc_case_description_test_set.csv"


def uid(n: int) -> str:
    """A DICOM-looking UID whose last five digits are ``n`` (zero padded)."""
    return f"1.3.6.1.4.1.9590.100.1.2.3141592653{n:05d}"


@dataclass
class Abn:
    """One abnormality row and the files behind it."""

    prefix: str  # Mass-Training / Calc-Test ...
    patient: str
    side: str
    view: str
    abn_id: int
    pathology: str
    full_study: int
    full_series: int
    roi_study: int
    roi_series: int
    descr: tuple[str, str] = ("IRREGULAR", "SPICULATED")
    density: str = "3"
    # which file name holds the mask on disk ("000000" or "000001"); the CSV says the reverse
    mask_file: str = "000000"
    crop_series: int | None = None  # crop in another series folder (about 100 real rows)

    @property
    def top(self) -> str:
        return f"{self.prefix}_{self.patient}_{self.side}_{self.view}"

    @property
    def full_path(self) -> str:
        return f"{self.top}/{uid(self.full_study)}/{uid(self.full_series)}/000000.dcm"

    @property
    def mask_path(self) -> str:
        series = f"{uid(self.roi_study)}/{uid(self.roi_series)}"
        return f"{self.top}_{self.abn_id}/{series}/{self.mask_file}.dcm"

    @property
    def crop_path(self) -> str:
        if self.crop_series is not None:
            return (
                f"{self.top}_{self.abn_id}/{uid(self.roi_study)}/{uid(self.crop_series)}/000000.dcm"
            )
        other = "000001" if self.mask_file == "000000" else "000000"
        return f"{self.top}_{self.abn_id}/{uid(self.roi_study)}/{uid(self.roi_series)}/{other}.dcm"

    def csv_fields(self, *, swap_crop_mask: bool = True) -> list[str]:
        kind = "mass" if self.prefix.startswith("Mass") else "calcification"
        crop, mask = self.crop_path, self.mask_path
        if swap_crop_mask:  # the CSV naming mix-up: crop column names the mask file
            crop, mask = mask, crop
        return [
            self.patient,
            self.density,
            self.side,
            self.view,
            str(self.abn_id),
            kind,
            self.descr[0],
            self.descr[1],
            "4",
            self.pathology,
            "5",
            self.full_path,
            crop + "\n",  # trailing newline inside a quoted field, as in the real files
            mask + "\n",
        ]


def csv_text(header: str, rows: list[list[str]]) -> str:
    """CRLF lines; fields with commas, quotes or newlines quoted (bare \\n kept inside)."""

    def quote(field: str) -> str:
        if any(ch in field for ch in ',"\n\r'):
            return '"' + field.replace('"', '""') + '"'
        return field

    lines = [header] + [",".join(quote(f) for f in row) for row in rows]
    return "\r\n".join(lines) + "\r\n"


def descriptive_path(csv_path: str, description: str) -> Path:
    """Where the NBIA retriever's descriptive layout puts a CSV path."""
    top, study, series, name = csv_path.split("/")
    idx = int(name[:-4])
    return Path(
        top,
        f"08-07-2016-DDSM-{study[-5:]}",
        f"1.000000-{description}-{series[-5:]}",
        f"1-{idx + 1}.dcm",
    )


def write_files(
    data_dir: Path, abns: list[Abn], layout: str, skip_full: set[str] = frozenset()
) -> None:
    """Write full image, crop (16-bit) and mask (8-bit) DICOMs for each abnormality."""
    for abn in abns:
        files = [
            (abn.full_path, "full mammogram images", "full"),
            (abn.crop_path, "cropped images" if abn.crop_series else "ROI mask images", "crop"),
            (abn.mask_path, "ROI mask images", "mask"),
        ]
        for rel, description, what in files:
            if what == "full" and rel in skip_full:
                continue
            target = data_dir / (rel if layout == "classic" else descriptive_path(rel, description))
            if target.exists():
                continue
            if what == "mask":
                write_mask(target, size=8)
            else:
                write_mammogram(target, size=8)


def basic_abns() -> tuple[list[Abn], list[Abn]]:
    """Mass-train and calc-test abnormalities covering the label and naming cases."""
    mass = [
        # P_00001 LEFT CC: two findings, benign + malignant -> malignant image
        Abn("Mass-Training", "P_00001", "LEFT", "CC", 1, "BENIGN", 10001, 10002, 10003, 10004),
        Abn(
            "Mass-Training",
            "P_00001",
            "LEFT",
            "CC",
            2,
            "MALIGNANT",
            10001,
            10002,
            10005,
            10006,
            descr=("NA", "N/A"),
        ),
        Abn(
            "Mass-Training",
            "P_00002",
            "RIGHT",
            "MLO",
            1,
            "BENIGN_WITHOUT_CALLBACK",
            20001,
            20002,
            20003,
            20004,
            density="0",
        ),
    ]
    calc = [
        # same patient/side/view as the mass image, but a different file
        Abn(
            "Calc-Test",
            "P_00001",
            "LEFT",
            "CC",
            1,
            "MALIGNANT",
            30001,
            30002,
            30003,
            30004,
            descr=("PLEOMORPHIC", "CLUSTERED"),
            mask_file="000001",
        ),
        Abn(
            "Calc-Test",
            "P_00003",
            "RIGHT",
            "CC",
            1,
            "BENIGN",
            40001,
            40002,
            40003,
            40004,
            descr=("AMORPHOUS", "N/A"),
            mask_file="000001",
        ),
    ]
    return mass, calc


def build(
    root: Path, layout: str, csv_dir: Path | None = None, skip_full: set[str] = frozenset()
) -> None:
    mass, calc = basic_abns()
    data_dir = root if layout == "classic" else root / "CBIS-DDSM"
    write_files(data_dir, mass + calc, layout, skip_full)
    target = csv_dir or root
    target.mkdir(parents=True, exist_ok=True)
    (target / MASS_TRAIN).write_bytes(
        csv_text(MASS_HEADER, [a.csv_fields(swap_crop_mask=True) for a in mass]).encode()
    )
    (target / CALC_TEST).write_bytes(
        csv_text(CALC_HEADER, [a.csv_fields(swap_crop_mask=True) for a in calc]).encode()
    )


def by_key(result, csv_path: str):
    image_id = anonymous_id("ddsm", csv_path)
    matches = [r for r in result.records if r.image_id == image_id]
    assert len(matches) == 1, csv_path
    return matches[0]


def check_basic(result) -> None:
    mass, calc = basic_abns()
    assert len(result.records) == 4
    assert result.n_malignant == 2 and result.n_benign == 2
    assert result.skipped == []

    mass_img = by_key(result, mass[0].full_path)
    assert mass_img.label == 1
    assert [f.pathology for f in mass_img.findings] == ["BENIGN", "MALIGNANT"]
    assert [f.malignant for f in mass_img.findings] == [False, True]
    assert mass_img.split == "train" and mass_img.side == "L" and mass_img.view == "CC"
    assert mass_img.patient == "P_00001"
    assert {f.kind for f in mass_img.findings} == {"mass"}
    # NA / N/A descriptor strings become None; numbers become ints
    second = mass_img.findings[1].attributes
    assert second["mass_shape"] is None and second["mass_margins"] is None
    assert second["abnormality_id"] == 2 and second["assessment"] == 4 and second["subtlety"] == 5
    assert mass_img.findings[0].attributes["mass_shape"] == "IRREGULAR"

    bwc = by_key(result, mass[2].full_path)
    assert bwc.label == 0 and bwc.split == "train" and bwc.side == "R" and bwc.view == "MLO"
    assert bwc.meta["breast_density"] == 0  # odd value kept
    assert bwc.findings[0].attributes["breast_density"] == 0

    calc_img = by_key(result, calc[0].full_path)
    assert calc_img.label == 1 and calc_img.split == "test"
    assert calc_img.path != mass_img.path  # Mass-Training_P_00001_LEFT_CC != Calc-Test_...
    f = calc_img.findings[0]
    assert f.kind == "calcification"
    assert (
        f.attributes["calc_type"] == "PLEOMORPHIC"
        and f.attributes["calc_distribution"] == "CLUSTERED"
    )
    assert f.attributes["breast_density"] == 3  # from the 'breast density' (space) header

    calc_benign = by_key(result, calc[1].full_path)
    assert (
        calc_benign.label == 0 and calc_benign.findings[0].attributes["calc_distribution"] is None
    )

    # crop vs mask decided by the DICOM header although the CSV columns are swapped
    for record in result.records:
        for finding in record.findings:
            assert finding.roi_mask_path is not None and finding.crop_path is not None
            assert finding.roi_mask_path.is_file() and finding.crop_path.is_file()
            assert finding.roi_mask_path != finding.crop_path
    import pydicom

    for record in result.records:
        for finding in record.findings:
            assert (
                pydicom.dcmread(finding.roi_mask_path, stop_before_pixels=True).BitsAllocated == 8
            )
            assert pydicom.dcmread(finding.crop_path, stop_before_pixels=True).BitsAllocated == 16

    keys = [r.image_id for r in result.records]
    assert len(set(keys)) == len(keys)


def test_classic_layout(tmp_path: Path) -> None:
    build(tmp_path, "classic")
    result = DdsmReader().read(tmp_path)
    check_basic(result)
    mass, _ = basic_abns()
    assert by_key(result, mass[0].full_path).path == tmp_path / mass[0].full_path


def test_classic_layout_under_cbis_ddsm_folder_with_csv_subfolder(tmp_path: Path) -> None:
    mass, calc = basic_abns()
    write_files(tmp_path / "CBIS-DDSM", mass + calc, "classic")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / MASS_TRAIN).write_text(
        csv_text(MASS_HEADER, [a.csv_fields() for a in mass]), newline=""
    )
    (tmp_path / "csv" / CALC_TEST).write_text(
        csv_text(CALC_HEADER, [a.csv_fields() for a in calc]), newline=""
    )
    check_basic(DdsmReader().read(tmp_path))


def test_descriptive_layout(tmp_path: Path) -> None:
    build(tmp_path, "descriptive")
    (tmp_path / "metadata.csv").write_text("Series UID,Collection\r\nx,CBIS-DDSM\r\n")
    result = DdsmReader().read(tmp_path)
    check_basic(result)
    for record in result.records:
        assert record.path.name == "1-1.dcm"
        assert "full mammogram images" in record.path.parent.name
        for finding in record.findings:
            assert {finding.roi_mask_path.name, finding.crop_path.name} == {"1-1.dcm", "1-2.dcm"}


def test_image_ids_do_not_depend_on_root_and_order_is_stable(tmp_path: Path) -> None:
    build(tmp_path / "a", "classic")
    build(tmp_path / "b" / "deeper", "descriptive")
    first = DdsmReader().read(tmp_path / "a")
    second = DdsmReader().read(tmp_path / "b" / "deeper")
    assert [r.image_id for r in first.records] == [r.image_id for r in second.records]
    assert [r.label for r in first.records] == [r.label for r in second.records]


def test_missing_image_becomes_skipped(tmp_path: Path) -> None:
    mass, _ = basic_abns()
    build(tmp_path, "classic", skip_full={mass[2].full_path})
    result = DdsmReader().read(tmp_path)
    assert len(result.records) == 3
    assert len(result.skipped) == 1
    skip = result.skipped[0]
    assert skip.path == f"{MASS_TRAIN}:8"  # header on line 1, each row spans 3 lines
    assert "not found" in skip.reason
    assert "P_00002" not in skip.path + skip.reason  # no patient id in skip entries


def test_malformed_rows_are_skipped_with_file_and_line(tmp_path: Path) -> None:
    mass, _ = basic_abns()
    write_files(tmp_path, mass, "classic")
    rows = [a.csv_fields() for a in mass]
    bad_pathology = list(rows[2])
    bad_pathology[9] = "UNKNOWN"
    short = rows[0][:5]
    text = csv_text(MASS_HEADER, [rows[0], short, rows[1], bad_pathology, rows[2]])
    (tmp_path / MASS_TRAIN).write_text(text + "\r\n\r\n", newline="")  # trailing blank lines
    result = DdsmReader().read(tmp_path)
    assert len(result.records) == 2
    assert result.n_malignant == 1
    # line numbers: row 1 spans lines 2-4 (two quoted bare newlines), the short row is line 5
    assert [s.path for s in result.skipped] == [f"{MASS_TRAIN}:5", f"{MASS_TRAIN}:9"]
    assert "row 2" in result.skipped[0].reason and "fields" in result.skipped[0].reason
    assert "row 4" in result.skipped[1].reason and "UNKNOWN" in result.skipped[1].reason


def test_crop_and_mask_in_different_series_and_header_fallback(tmp_path: Path) -> None:
    # crop in its own series folder; CSV columns correct (not swapped)
    split_series = Abn(
        "Mass-Test",
        "P_00010",
        "LEFT",
        "MLO",
        1,
        "MALIGNANT",
        50001,
        50002,
        50003,
        50004,
        crop_series=50005,
    )
    write_files(tmp_path, [split_series], "classic")
    # a second image whose crop and mask are both 16-bit: headers cannot tell -> CSV column
    ambiguous = Abn("Mass-Test", "P_00011", "RIGHT", "CC", 1, "BENIGN", 60001, 60002, 60003, 60004)
    for rel in (ambiguous.full_path, ambiguous.crop_path, ambiguous.mask_path):
        write_mammogram(tmp_path / rel, size=8)
    (tmp_path / MASS_TEST).write_text(
        csv_text(
            MASS_HEADER,
            [
                split_series.csv_fields(swap_crop_mask=False),
                ambiguous.csv_fields(swap_crop_mask=False),
            ],
        ),
        newline="",
    )
    result = DdsmReader().read(tmp_path)
    assert len(result.records) == 2 and result.skipped == []
    first = by_key(result, split_series.full_path)
    assert first.split == "test" and first.label == 1
    assert first.findings[0].crop_path == tmp_path / split_series.crop_path
    assert first.findings[0].roi_mask_path == tmp_path / split_series.mask_path
    second = by_key(result, ambiguous.full_path)
    assert second.findings[0].crop_path == tmp_path / ambiguous.crop_path
    assert second.findings[0].roi_mask_path == tmp_path / ambiguous.mask_path


def test_missing_crop_and_mask_files_leave_none(tmp_path: Path) -> None:
    abn = Abn("Calc-Training", "P_00020", "LEFT", "CC", 1, "BENIGN", 70001, 70002, 70003, 70004)
    write_mammogram(tmp_path / abn.full_path, size=8)
    (tmp_path / CALC_TRAIN).write_text(csv_text(CALC_HEADER, [abn.csv_fields()]), newline="")
    result = DdsmReader().read(tmp_path)
    assert len(result.records) == 1 and result.records[0].split == "train"
    finding = result.records[0].findings[0]
    assert finding.crop_path is None and finding.roi_mask_path is None


def test_nonexistent_root_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        DdsmReader().read(tmp_path / "nope")


def test_missing_metadata_raises(tmp_path: Path) -> None:
    write_mammogram(tmp_path / "Mass-Training_P_00001_LEFT_CC" / "1" / "2" / "000000.dcm", size=8)
    with pytest.raises(DatasetError, match="mass_case_description_train_set.csv"):
        DdsmReader().read(tmp_path)


def test_unparseable_header_raises(tmp_path: Path) -> None:
    (tmp_path / MASS_TRAIN).write_text("a,b,c\r\n1,2,3\r\n", newline="")
    with pytest.raises(
        DatasetError, match=r"mass_case_description_train_set\.csv.*missing columns"
    ):
        DdsmReader().read(tmp_path)


def test_registered_by_name(tmp_path: Path) -> None:
    build(tmp_path, "classic")
    reader = get_reader("ddsm")
    assert reader.modality == "mammogram"
    assert len(reader.read(tmp_path).records) == 4


def test_copy_of_a_csv_deeper_down_is_ignored(tmp_path: Path) -> None:
    build(tmp_path, "classic")
    (tmp_path / "backup").mkdir()
    shutil.copy(tmp_path / MASS_TRAIN, tmp_path / "backup" / MASS_TRAIN)
    result = DdsmReader().read(tmp_path)
    assert len(result.records) == 4 and sum(len(r.findings) for r in result.records) == 5


def test_header_check_can_be_switched_off(tmp_path: Path) -> None:
    from tlcore.data.readers.ddsm import DdsmReaderConfig

    build(tmp_path, "classic")
    result = DdsmReader(DdsmReaderConfig(check_crop_mask_headers=False)).read(tmp_path)
    mass, _ = basic_abns()
    finding = by_key(result, mass[0].full_path).findings[0]
    # the CSV columns are trusted as written (swapped in this look-alike)
    assert finding.crop_path == tmp_path / mass[0].mask_path
    assert finding.roi_mask_path == tmp_path / mass[0].crop_path
