"""Acceptance tests for ``tlstudy data check`` on look-alike datasets in the distributors' layouts.

The datasets are written by ``tests/data/layouts.py``, an independent minimal writer that
shares nothing with ``tlcore.data.synth``. Counts must be exact; corrupt, truncated and
missing images must become ``skipped`` entries (with and without ``--deep``); a missing
root or unparseable metadata must end with a non-zero exit and a message naming the path.
Most runs go through click's CliRunner on ``pipelines.cli.main``; a few through a real
``python -m pipelines.cli`` process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import xlrd
from click.testing import CliRunner
from PIL import Image

from pipelines.cli import main

try:
    from tests.data import layouts
except ImportError:  # tests/ is not a package: pytest puts tests/data on sys.path
    import layouts

REPO = Path(__file__).resolve().parents[2]
DEEP = pytest.mark.parametrize("deep", [False, True], ids=["headers", "deep"])


# --------------------------------------------------------------------------- helpers


def _args(dataset: str, root: Path, *, deep: bool = False, as_json: bool = True) -> list[str]:
    args = ["data", "check", "--dataset", dataset, "--root", str(root), "--no-progress"]
    if as_json:
        args.append("--json")
    if deep:
        args.append("--deep")
    return args


def invoke(dataset: str, root: Path, *, deep: bool = False, as_json: bool = True):
    """Run the CLI in-process; returns click's Result."""
    return CliRunner().invoke(main, _args(dataset, root, deep=deep, as_json=as_json))


def check_json(dataset: str, root: Path, *, deep: bool = False) -> dict:
    """Run ``data check --json`` in-process; it must succeed and print only JSON on stdout."""
    result = invoke(dataset, root, deep=deep)
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    return json.loads(result.stdout)


def run_process(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m pipelines.cli ...`` as a real child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_counts(report: dict, layout: layouts.Layout, broken: tuple[str, ...] = ()) -> None:
    expected = layout.expected(broken)
    assert report["dataset"] == layout.dataset
    got = (report["n_images"], report["n_malignant"], report["n_benign"])
    assert got == (expected.n_images, expected.n_malignant, expected.n_benign)


def _same_file(reported: str, path: Path, root: str) -> bool:
    """Readers name some skipped files relative to the root, check.py names them absolute."""
    shown = Path(reported)
    if not shown.is_absolute():
        shown = Path(root) / shown
    return shown.resolve() == path.resolve()


def assert_skipped(report: dict, path: Path, *words: str) -> dict:
    """Exactly one skip entry names ``path``; its reason mentions each of ``words``."""
    hits = [s for s in report["skipped"] if _same_file(s["path"], path, report["root"])]
    assert len(hits) == 1, f"expected one skip entry for {path}, got {report['skipped']}"
    entry = hits[0]
    assert set(entry) == {"path", "reason"}
    reason = entry["reason"].lower()
    assert reason.strip(), f"empty reason for {path}"
    for word in words:
        assert word.lower() in reason, f"{word!r} not in the reason {entry['reason']!r}"
    return entry


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- the writers


def test_independent_writers_make_real_files(tmp_path: Path) -> None:
    """The look-alike files are what they claim to be, read back by third-party decoders."""
    pixels = (np.arange(13 * 19).reshape(13, 19) % 251).astype(np.uint8)
    (tmp_path / "a.bmp").write_bytes(layouts.bmp_bytes(pixels))  # odd width: padded rows
    with Image.open(tmp_path / "a.bmp") as im:
        assert im.mode in ("P", "L") and im.size == (19, 13)  # Pillow folds a grey palette to L
        assert np.array_equal(np.asarray(im), pixels)
    rgb = np.stack([pixels, pixels // 2, 255 - pixels], axis=-1)
    (tmp_path / "a.png").write_bytes(layouts.png_bytes(rgb))
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), rgb)
    (tmp_path / "a.pgm").write_bytes(layouts.pgm_bytes(pixels, ("c1", "c2"), split_size=True))
    with Image.open(tmp_path / "a.pgm") as im:
        assert im.size == (19, 13) and np.array_equal(np.asarray(im), pixels)

    layout = layouts.write_inbreast(tmp_path / "inb", metadata="xls")
    sheet = xlrd.open_workbook(str(layout.metadata[0])).sheet_by_index(0)
    assert sheet.row_values(0) == layouts.INBREAST_XLS_HEADER  # 17 columns, "Mass " included
    assert sheet.cell_value(1, 5) == 20586908.0  # File Name reads back as a float
    assert sheet.nrows == 1 + len(layouts.INBREAST_CASES) + 3  # blank row + two footer rows
    ds = pydicom.dcmread(next(iter(layout.files.values())))
    assert (ds.BitsAllocated, ds.BitsStored) == (16, 14) and ds.pixel_array.max() <= 16383

    ddsm = layouts.write_ddsm(tmp_path / "ddsm", "classic")
    raw = (tmp_path / "ddsm" / "calc_case_description_train_set.csv").read_bytes()
    assert raw.startswith(layouts.DDSM_CALC_HEADER.encode() + b"\r\n")
    assert b'000000.dcm\n"' in raw  # a quoted path ending in a bare newline
    assert len(ddsm.labels) == 9 and sum(ddsm.labels.values()) == 4


# --------------------------------------------------------------------------- CBIS-DDSM


@pytest.mark.parametrize("layout_name", ["classic", "descriptive"])
@DEEP
def test_ddsm_counts_are_exact(tmp_path: Path, layout_name: str, deep: bool) -> None:
    """Both headers, CRLF, quoted newlines, NA / N/A, an image in both mass and calc CSVs (two
    files), benign + malignant rows on one image (malignant once), patients in both splits."""
    layout = layouts.write_ddsm(tmp_path, layout_name)
    report = check_json("ddsm", tmp_path, deep=deep)
    assert_counts(report, layout)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (9, 4, 5)
    assert report["splits"] == layout.expected_splits()
    assert report["skipped"] == []
    assert report["deep"] is deep


@pytest.mark.parametrize("layout_name", ["classic", "descriptive"])
@DEEP
def test_ddsm_broken_images_are_skipped(tmp_path: Path, layout_name: str, deep: bool) -> None:
    layout = layouts.write_ddsm(tmp_path, layout_name)
    truncated = "Mass-Training_P_00001_LEFT_CC"  # malignant (and a benign row)
    empty = "Calc-Test_P_00002_LEFT_MLO"  # malignant
    garbage = "Mass-Test_P_00005_LEFT_CC"  # benign
    missing = "Mass-Training_P_00002_RIGHT_CC"  # benign, listed after a multi-line row
    layouts.truncate(layout.files[truncated])
    layouts.make_empty(layout.files[empty])
    layouts.fill_with_garbage(layout.files[garbage])
    layouts.remove(layout.files[missing])
    broken = (truncated, empty, garbage, missing)

    report = check_json("ddsm", tmp_path, deep=deep)
    assert_counts(report, layout, broken)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (5, 2, 3)
    assert report["splits"] == layout.expected_splits(broken)
    assert len(report["skipped"]) == 4
    assert_skipped(report, layout.files[truncated], "truncated")
    assert_skipped(report, layout.files[empty], "empty")
    assert_skipped(report, layout.files[garbage], "dicom")
    # The reader knows a missing file only by its CSV line (the path holds a patient id).
    hits = [s for s in report["skipped"] if s["path"] == layout.missing_where[missing]]
    assert len(hits) == 1 and "not found" in hits[0]["reason"]
    assert report["n_listed"] == len(layout.labels)


def test_ddsm_broken_crop_and_mask_do_not_change_counts(tmp_path: Path) -> None:
    """Only full mammograms are images: a lost ROI mask or a garbage crop changes nothing."""
    layout = layouts.write_ddsm(tmp_path, "classic")
    roi_files = sorted(p for p in tmp_path.rglob("*.dcm") if p not in set(layout.files.values()))
    assert len(roi_files) >= 4
    layouts.remove(roi_files[0])
    layouts.fill_with_garbage(roi_files[1])
    layouts.make_empty(roi_files[2])
    report = check_json("ddsm", tmp_path)
    assert_counts(report, layout)


def test_ddsm_csv_with_wrong_header_fails_naming_the_file(tmp_path: Path) -> None:
    layouts.write_ddsm(tmp_path, "classic")
    bad = tmp_path / "calc_case_description_test_set.csv"
    bad.write_bytes(
        b"patient_id,left or right breast,image view,pathology\r\nP_1,LEFT,CC,BENIGN\r\n"
    )
    result = invoke("ddsm", tmp_path)
    assert result.exit_code != 0
    assert str(bad) in result.output
    assert "Traceback" not in result.output


def test_ddsm_empty_csv_fails_naming_the_file(tmp_path: Path) -> None:
    layouts.write_ddsm(tmp_path, "descriptive")
    bad = tmp_path / "mass_case_description_test_set.csv"
    bad.write_bytes(b"")
    result = invoke("ddsm", tmp_path)
    assert result.exit_code != 0
    assert str(bad) in result.output and "empty" in result.output


def test_ddsm_without_any_csv_fails_naming_the_root(tmp_path: Path) -> None:
    layout = layouts.write_ddsm(tmp_path, "classic")
    for path in layout.metadata:
        path.unlink()
    result = invoke("ddsm", tmp_path)
    assert result.exit_code != 0
    assert str(tmp_path) in result.output and "mass_case_description_train_set.csv" in result.output


def test_ddsm_through_a_real_process(tmp_path: Path) -> None:
    """``python -m pipelines.cli data check --deep --json``: exact counts, JSON only on
    stdout, and the dataset is left untouched."""
    layout = layouts.write_ddsm(tmp_path / "CBIS", "descriptive")
    layouts.truncate(layout.files["Calc-Training_P_00003_RIGHT_MLO"])
    before = tree_digest(tmp_path)
    proc = run_process(*_args("ddsm", tmp_path / "CBIS", deep=True))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_counts(report, layout, ("Calc-Training_P_00003_RIGHT_MLO",))
    assert_skipped(report, layout.files["Calc-Training_P_00003_RIGHT_MLO"], "truncated")
    assert tree_digest(tmp_path) == before


# --------------------------------------------------------------------------- INbreast


@pytest.mark.parametrize("metadata", ["csv", "xls"])
@DEEP
def test_inbreast_counts_are_exact(tmp_path: Path, metadata: str, deep: bool) -> None:
    """BI-RADS 4a/4b/4c/5/6 malignant; ``ML`` in file names vs ``MLO`` in the table; an ACR cell
    of blanks; a release wrapper folder; ``.xls`` with float File Name and footer rows."""
    layout = layouts.write_inbreast(tmp_path, metadata)
    report = check_json("inbreast", tmp_path, deep=deep)
    assert_counts(report, layout)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (9, 5, 4)
    assert report["skipped"] == []


@pytest.mark.parametrize("metadata", ["csv", "xls"])
@DEEP
def test_inbreast_broken_images_are_skipped(tmp_path: Path, metadata: str, deep: bool) -> None:
    layout = layouts.write_inbreast(tmp_path, metadata)
    layouts.truncate(layout.files["22678694"])  # 4a, malignant
    layouts.make_empty(layout.files["20586908"])  # BI-RADS 1, no outline file
    layouts.fill_with_garbage(layout.files["50993789"])  # 6, malignant
    layouts.remove(layout.files["24055274"])  # 4b, malignant
    broken = ("22678694", "20586908", "50993789", "24055274")
    report = check_json("inbreast", tmp_path, deep=deep)
    assert_counts(report, layout, broken)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (5, 2, 3)
    assert len(report["skipped"]) == 4
    assert_skipped(report, layout.files["22678694"], "truncated")
    assert_skipped(report, layout.files["20586908"], "empty")
    assert_skipped(report, layout.files["50993789"], "dicom")
    hits = [s for s in report["skipped"] if "24055274" in s["path"]]
    assert len(hits) == 1 and "no such file" in hits[0]["reason"]
    assert report["n_listed"] == len(layout.labels)


def test_inbreast_broken_outline_is_reported_but_the_image_counts(tmp_path: Path) -> None:
    layout = layouts.write_inbreast(tmp_path, "csv")
    xml = next(tmp_path.rglob("22678670.xml"))
    layouts.fill_with_garbage(xml)
    report = check_json("inbreast", tmp_path)
    assert_counts(report, layout)
    assert_skipped(report, xml)
    assert report["n_listed"] == len(layout.labels)


def test_inbreast_csv_with_wrong_header_fails_naming_the_file(tmp_path: Path) -> None:
    layout = layouts.write_inbreast(tmp_path, "csv")
    bad = layout.metadata[0]
    bad.write_bytes(b"Patient ID;Laterality;View;Image;Birads\r\nremoved;L;CC;1;2\r\n")
    result = invoke("inbreast", tmp_path)
    assert result.exit_code != 0
    assert str(bad) in result.output and "File Name" in result.output


def test_inbreast_unreadable_xls_fails_naming_the_file(tmp_path: Path) -> None:
    layout = layouts.write_inbreast(tmp_path, "xls")
    bad = layout.metadata[0]
    layouts.fill_with_garbage(bad, n_bytes=3000)
    result = invoke("inbreast", tmp_path)
    assert result.exit_code != 0
    assert str(bad) in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- MIAS


@pytest.mark.parametrize("info_name", ["Info.txt", "info.txt"])
@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
@DEEP
def test_mias_counts_are_exact(tmp_path: Path, info_name: str, header: bool, deep: bool) -> None:
    """3/4/7-field lines, trailing spaces, repeated lines (B and M on one image -> malignant
    once; three B lines -> one benign image), no final newline, PGM header comments."""
    layout = layouts.write_mias(tmp_path, info_name=info_name, header=header)
    report = check_json("mias", tmp_path, deep=deep)
    assert_counts(report, layout)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (12, 4, 8)
    assert report["skipped"] == []


@DEEP
def test_mias_broken_images_are_skipped(tmp_path: Path, deep: bool) -> None:
    layout = layouts.write_mias(tmp_path)
    layouts.truncate(layout.files["mdb003"])  # normal: no coordinates to convert
    layouts.truncate(layout.files["mdb181"])  # malignant, 7 fields
    layouts.make_empty(layout.files["mdb059"])  # benign, 4 fields
    layouts.fill_with_garbage(layout.files["mdb144"])  # B and M lines -> malignant
    layouts.remove(layout.files["mdb226"])  # three lines
    broken = ("mdb003", "mdb181", "mdb059", "mdb144", "mdb226")
    report = check_json("mias", tmp_path, deep=deep)
    assert_counts(report, layout, broken)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (7, 2, 5)
    assert len(report["skipped"]) == 5
    assert_skipped(report, layout.files["mdb003"], "truncated")
    assert_skipped(report, layout.files["mdb181"], "truncated")
    assert_skipped(report, layout.files["mdb059"], "empty")
    assert_skipped(report, layout.files["mdb144"], "pgm")
    assert_skipped(report, layout.files["mdb226"], "not found")
    assert report["n_listed"] == len(layout.labels)


def test_mias_unlisted_image_is_reported_but_not_counted(tmp_path: Path) -> None:
    layout = layouts.write_mias(tmp_path)
    extra = layout.files["mdb001"].with_name("mdb999.pgm")
    extra.write_bytes(layout.files["mdb001"].read_bytes())
    report = check_json("mias", tmp_path)
    assert_counts(report, layout)
    assert_skipped(report, extra, "not listed")
    assert report["n_listed"] == len(layout.labels)


def test_mias_binary_info_file_fails_through_a_real_process(tmp_path: Path) -> None:
    layout = layouts.write_mias(tmp_path, info_name="Info.txt")
    info = layout.metadata[0]
    rng = np.random.default_rng(3)
    info.write_bytes(bytes(rng.integers(0, 256, 4000, dtype=np.uint8)))
    proc = run_process(*_args("mias", tmp_path))
    assert proc.returncode != 0
    assert str(info) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""


# --------------------------------------------------------------------------- ultrasound


@pytest.mark.parametrize(
    "wrappers",
    [(), ("Breast Ultrasound Images (Mendeley)",), ("download", "originals")],
    ids=["no-wrapper", "one-wrapper", "two-wrappers"],
)
@DEEP
def test_rodrigues_counts_are_exact(tmp_path: Path, wrappers: tuple[str, ...], deep: bool) -> None:
    layout = layouts.write_rodrigues(tmp_path, wrappers=wrappers)
    report = check_json("ultrasound", tmp_path, deep=deep)
    assert_counts(report, layout)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (10, 6, 4)
    assert report["skipped"] == []


@DEEP
def test_busi_counts_are_exact(tmp_path: Path, deep: bool) -> None:
    """Masks (``_mask``, ``_mask_1``...) are never images; normal counts as not malignant; a
    byte-identical duplicate is still its own image file."""
    layout = layouts.write_busi(tmp_path)
    report = check_json("ultrasound", tmp_path, deep=deep)
    assert_counts(report, layout)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (7, 2, 5)
    assert report["skipped"] == []


@DEEP
def test_rodrigues_broken_images_are_skipped(tmp_path: Path, deep: bool) -> None:
    layout = layouts.write_rodrigues(tmp_path)
    layouts.truncate(layout.files["benign/us1.bmp"])
    layouts.truncate_tail(layout.files["benign/us2.bmp"], 5)  # only the last pixel row cut
    layouts.make_empty(layout.files["malignant/us101.bmp"])
    layouts.fill_with_garbage(layout.files["malignant/us102.bmp"])
    broken = ("benign/us1.bmp", "benign/us2.bmp", "malignant/us101.bmp", "malignant/us102.bmp")
    report = check_json("ultrasound", tmp_path, deep=deep)
    assert_counts(report, layout, broken)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (6, 4, 2)
    assert len(report["skipped"]) == 4
    assert_skipped(report, layout.files["benign/us1.bmp"], "truncated")
    assert_skipped(report, layout.files["benign/us2.bmp"], "truncated")
    assert_skipped(report, layout.files["malignant/us101.bmp"], "empty")
    assert_skipped(report, layout.files["malignant/us102.bmp"])
    assert report["n_listed"] == len(layout.labels)


@DEEP
def test_busi_broken_images_are_skipped(tmp_path: Path, deep: bool) -> None:
    layout = layouts.write_busi(tmp_path)
    layouts.truncate(layout.files["benign/benign (2).png"])
    layouts.make_empty(layout.files["normal/normal (1).png"])
    layouts.fill_with_garbage(layout.files["malignant/malignant (1).png"])
    broken = ("benign/benign (2).png", "normal/normal (1).png", "malignant/malignant (1).png")
    report = check_json("ultrasound", tmp_path, deep=deep)
    assert_counts(report, layout, broken)
    assert (report["n_images"], report["n_malignant"], report["n_benign"]) == (4, 1, 3)
    assert len(report["skipped"]) == 3
    assert_skipped(report, layout.files["benign/benign (2).png"], "truncated")
    assert_skipped(report, layout.files["normal/normal (1).png"], "empty")
    assert_skipped(report, layout.files["malignant/malignant (1).png"])


def test_busi_undecodable_pixels_are_caught_only_by_deep(tmp_path: Path) -> None:
    """Intact PNG structure, broken compressed data: headers pass, ``--deep`` skips it."""
    layout = layouts.write_busi(tmp_path)
    name = "malignant/malignant (2).png"
    layouts.break_png_pixels(layout.files[name])
    shallow = check_json("ultrasound", tmp_path)
    assert_counts(shallow, layout)
    assert shallow["skipped"] == []
    deep = check_json("ultrasound", tmp_path, deep=True)
    assert_counts(deep, layout, (name,))
    assert_skipped(deep, layout.files[name])


def test_busi_orphan_mask_is_reported_but_not_counted(tmp_path: Path) -> None:
    layout = layouts.write_busi(tmp_path)
    orphan = layout.files["benign/benign (1).png"].with_name("benign (9)_mask.png")
    orphan.write_bytes(layouts.png_bytes(np.zeros((8, 8), np.uint8)))
    report = check_json("ultrasound", tmp_path, deep=True)
    assert_counts(report, layout)
    assert_skipped(report, orphan, "mask")
    assert report["n_listed"] == len(layout.labels)


def test_ultrasound_without_class_folders_fails_naming_the_root(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "us1.bmp").write_bytes(layouts.bmp_bytes(np.zeros((4, 4), np.uint8)))
    result = invoke("ultrasound", tmp_path)
    assert result.exit_code != 0
    assert str(tmp_path) in result.output and "benign" in result.output


# --------------------------------------------------------------------------- all datasets


@pytest.mark.parametrize("dataset", ["ddsm", "inbreast", "mias", "ultrasound"])
def test_nonexistent_root_fails_naming_the_path(tmp_path: Path, dataset: str) -> None:
    root = tmp_path / "no such folder"
    result = invoke(dataset, root)
    assert result.exit_code != 0
    assert str(root) in result.output
    assert result.stdout.strip() == ""  # no half-written JSON


def test_nonexistent_root_through_a_real_process(tmp_path: Path) -> None:
    root = tmp_path / "downloads" / "CBIS-DDSM"
    proc = run_process(*_args("ddsm", root))
    assert proc.returncode != 0
    assert str(root) in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("dataset", ["ddsm", "inbreast", "mias", "ultrasound"])
def test_root_that_is_a_file_fails_naming_the_path(tmp_path: Path, dataset: str) -> None:
    root = tmp_path / "dataset.zip"
    root.write_bytes(b"PK\x03\x04 not unpacked")
    result = invoke(dataset, root)
    assert result.exit_code != 0
    assert str(root) in result.output


def test_macos_resource_forks_are_ignored(tmp_path: Path) -> None:
    """Archives unpacked on macOS carry ``._name`` files and ``__MACOSX`` folders."""
    mias = layouts.write_mias(tmp_path / "mias")
    busi = layouts.write_busi(tmp_path / "busi")
    for layout in (mias, busi):
        for path in list(layout.files.values())[:2]:
            junk = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 40
            path.with_name("._" + path.name).write_bytes(junk)
            mirror = layout.root / "__MACOSX" / path.relative_to(layout.root)
            mirror.parent.mkdir(parents=True, exist_ok=True)
            mirror.with_name("._" + path.name).write_bytes(junk)
    for dataset, layout in (("mias", mias), ("ultrasound", busi)):
        report = check_json(dataset, layout.root, deep=True)
        assert_counts(report, layout)
        assert report["skipped"] == []


def test_unknown_dataset_lists_the_valid_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["data", "check", "--dataset", "ddms", "--root", str(tmp_path)]
    )
    assert result.exit_code == 2
    for name in ("ddsm", "inbreast", "mias", "ultrasound"):
        assert name in result.output


def test_human_summary_mentions_counts_and_skips(tmp_path: Path) -> None:
    layout = layouts.write_ddsm(tmp_path, "classic")
    gone = "Calc-Training_P_00001_LEFT_CC"  # benign
    layouts.make_empty(layout.files[gone])
    result = invoke("ddsm", tmp_path, as_json=False)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert not text.lstrip().startswith("{")
    expected = layout.expected((gone,))
    assert (expected.n_images, expected.n_malignant, expected.n_benign) == (8, 4, 4)
    images_line = next(line for line in text.splitlines() if "usable" in line)
    assert re.search(r"\b8\b", images_line) and re.search(r"\b9\b", images_line)
    assert re.search(r"\b4 malignant\b", text)
    assert re.search(r"\b4 not malignant\b", text)
    assert layout.files[gone].name in text and "empty" in text


# --------------------------------------------------------------------------- hostile input (issue 12)

_PNG = layouts.png_bytes(np.full((16, 16), 90, np.uint8))


def _fails_naming(result, path: Path, *words: str) -> None:
    assert result.exit_code == 1, f"exit {result.exit_code}: {result.output}"
    assert str(path) in result.output
    for word in words:
        assert word in result.output
    assert "Traceback" not in result.output and result.stdout.strip() == ""


@pytest.mark.parametrize("dataset", ["ddsm", "inbreast"])
@DEEP
def test_png_renamed_to_dcm_is_skipped(tmp_path: Path, dataset: str, deep: bool) -> None:
    layout = (layouts.write_ddsm(tmp_path, "classic") if dataset == "ddsm"
              else layouts.write_inbreast(tmp_path))
    name = sorted(layout.files)[0]
    layout.files[name].write_bytes(_PNG)
    report = check_json(dataset, tmp_path, deep=deep)
    assert_counts(report, layout, (name,))
    entry = assert_skipped(report, layout.files[name])
    assert entry["reason"] == "not a DICOM file (looks like PNG)"
    assert report["n_listed"] == len(layout.labels)


def test_png_renamed_to_pgm_and_bmp_is_skipped(tmp_path: Path) -> None:
    mias = layouts.write_mias(tmp_path / "mias")
    name = sorted(mias.files)[0]
    mias.files[name].write_bytes(_PNG)
    report = check_json("mias", tmp_path / "mias")
    assert_counts(report, mias, (name,))
    assert assert_skipped(report, mias.files[name])["reason"] == "not a PGM file (looks like PNG)"

    us = layouts.write_rodrigues(tmp_path / "us")
    name = sorted(us.files)[0]
    us.files[name].write_bytes(_PNG)
    report = check_json("ultrasound", tmp_path / "us")
    assert_counts(report, us, (name,))
    assert assert_skipped(report, us.files[name])["reason"] == "not a BMP file (looks like PNG)"


def test_header_only_inbreast_csv_fails_naming_it(tmp_path: Path) -> None:
    layout = layouts.write_inbreast(tmp_path)
    csv_path = layout.metadata[0]
    header = csv_path.read_bytes().split(b"\r\n", 1)[0]
    csv_path.write_bytes(header + b"\r\n")
    _fails_naming(invoke("inbreast", tmp_path), csv_path, "lists no images")


def test_header_only_ddsm_csvs_fail_naming_them(tmp_path: Path) -> None:
    layout = layouts.write_ddsm(tmp_path, "classic")
    for path in layout.metadata:
        path.write_bytes(path.read_bytes().split(b"\r\n", 1)[0] + b"\r\n")
    result = invoke("ddsm", tmp_path)
    for path in layout.metadata:
        assert str(path) in result.output
    _fails_naming(result, layout.metadata[0], "list no images")


@pytest.mark.parametrize("dataset", ["ddsm", "inbreast", "mias"])
def test_no_usable_image_fails_naming_the_metadata(tmp_path: Path, dataset: str) -> None:
    writers = {"ddsm": lambda r: layouts.write_ddsm(r, "classic"), "inbreast": layouts.write_inbreast,
               "mias": layouts.write_mias}
    layout = writers[dataset](tmp_path)
    for path in layout.files.values():
        layouts.truncate(path)
    result = invoke(dataset, tmp_path)
    metadata = layout.metadata[0] if len(layout.metadata) == 1 else layout.metadata[0].parent
    _fails_naming(result, metadata, "no usable image", "truncated")
    assert "P_0" not in result.output  # the message names no CBIS-DDSM file (patient ids)


def test_inbreast_reports_dicoms_the_metadata_does_not_list(tmp_path: Path) -> None:
    layout = layouts.write_inbreast(tmp_path)
    folder = next(iter(layout.files.values())).parent
    extra = folder / "99999999_0123456789abcdef_MG_L_CC_ANON.dcm"
    extra.write_bytes(next(iter(layout.files.values())).read_bytes())
    stray = folder / "scan.dcm"
    stray.write_bytes(extra.read_bytes())
    report = check_json("inbreast", tmp_path)
    assert_counts(report, layout)
    assert assert_skipped(report, extra)["reason"] == "not listed in INbreast.csv"
    assert assert_skipped(report, stray)["reason"] == "not listed in INbreast.csv"
    assert report["n_listed"] == len(layout.labels)
