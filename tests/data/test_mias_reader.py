"""Tests for the MIAS reader on a tiny look-alike folder with real PGM files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlcore.data.imageio import probe_image
from tlcore.data.readers.mias import MiasReader
from tlcore.data.records import DatasetError, ImageDecodeError
from tlcore.data.registry import get_reader, read_dataset

HEIGHT = 64  # look-alike images are smaller than the real 1024 px


def write_pgm(path: Path, height: int = HEIGHT, width: int = 48) -> None:
    pixels = (np.arange(height * width) % 256).astype(np.uint8).tobytes()
    path.write_bytes(f"P5\n# mias look-alike\n{width} {height}\n255\n".encode() + pixels)


# Quirks of the real Info.txt: header with trailing space, trailing spaces, 3/4/7 fields,
# repeated lines for several findings (mdb144 has a B and an M line), blank lines and
# no newline after the last line.
INFO = (
    "REFNUM BG CLASS SEVERITY X Y RADIUS \n"
    "mdb001 G CIRC B 35 25 19\n"
    "mdb002 G CIRC B 20 10 8   \n"
    "mdb003 D NORM \n"
    "\n"
    "mdb059 F CIRC B\n"
    "mdb144 F MISC B 10 40 5\n"
    "mdb144 F MISC M 30 50 6 \n"
    "mdb226 D CALC B 5 5 3\n"
    "mdb226 D CALC B 7 9 3\n"
    "mdb226 D CALC B 11 13 3\n"
    "mdb216 D CALC M"
)
IMAGES = ["mdb001", "mdb002", "mdb003", "mdb059", "mdb144", "mdb226", "mdb216"]


def make_mias(
    folder: Path, info: str = INFO, images: list[str] = IMAGES, info_name: str = "Info.txt"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / info_name).write_text(info)
    for name in images:
        write_pgm(folder / f"{name}.pgm")
    (folder / "README").write_text("MIAS look-alike")
    (folder / "Licence.txt").write_text("licence")
    return folder


def by_ref(result) -> dict:
    return {r.meta["refnum"]: r for r in result.records}


def test_reads_all_quirks(tmp_path: Path) -> None:
    result = MiasReader().read(make_mias(tmp_path / "mias"))
    assert result.skipped == []
    assert len(result.records) == 7
    assert result.n_malignant == 2 and result.n_benign == 5
    recs = by_ref(result)
    assert recs["mdb144"].label == 1  # one B line and one M line -> malignant
    assert [f.pathology for f in recs["mdb144"].findings] == ["B", "M"]
    assert len(recs["mdb226"].findings) == 3 and recs["mdb226"].label == 0
    assert recs["mdb216"].label == 1 and recs["mdb216"].findings[0].center is None
    normal = recs["mdb003"]
    assert normal.label == 0 and normal.findings[0].pathology == "NORMAL"
    assert normal.findings[0].kind == "NORM"
    assert normal.meta["background_tissue"] == "D" and normal.meta["classes"] == ["NORM"]
    assert recs["mdb059"].findings[0].center is None and recs["mdb059"].findings[0].radius is None
    for rec in result.records:
        assert rec.dataset == "mias" and rec.path.is_file()
        assert rec.image_id.startswith("mias-") and "mdb" not in rec.image_id


def test_coordinates_use_header_height(tmp_path: Path) -> None:
    recs = by_ref(MiasReader().read(make_mias(tmp_path / "mias")))
    finding = recs["mdb001"].findings[0]
    assert finding.center == (35.0, HEIGHT - 25.0)  # row = image height - y, not 1024 - y
    assert finding.radius == 19.0 and finding.kind == "CIRC" and finding.attributes["bg"] == "G"
    assert not finding.malignant
    assert recs["mdb144"].findings[1].center == (30.0, HEIGHT - 50.0)


def test_patient_pairs_and_sides(tmp_path: Path) -> None:
    recs = by_ref(MiasReader().read(make_mias(tmp_path / "mias")))
    assert recs["mdb001"].patient == recs["mdb002"].patient != recs["mdb003"].patient
    assert recs["mdb001"].side == "R" and recs["mdb002"].side == "L"  # odd right, even left
    assert "patient" not in recs["mdb001"].public_dict()


def test_lowercase_info_in_wrapper_folder(tmp_path: Path) -> None:
    make_mias(tmp_path / "all-mias", info_name="info.txt")
    result = read_dataset("mias", tmp_path)
    assert len(result.records) == 7
    assert get_reader("mias").modality == "mammogram"


def test_malformed_missing_and_unlisted(tmp_path: Path) -> None:
    info = INFO + "\nmdb010 G CIRC B 1 2\nmdb011 X NORM\ngarbage\n"
    folder = make_mias(tmp_path / "m", info=info, images=[*IMAGES, "mdb010", "mdb011", "mdb099"])
    (folder / "mdb002.pgm").unlink()  # listed but missing
    result = MiasReader().read(folder)
    refs = set(by_ref(result))
    assert refs == {"mdb001", "mdb003", "mdb059", "mdb144", "mdb226", "mdb216"}
    reasons = {(Path(s.path).name, s.reason) for s in result.skipped}
    line_reasons = [r for name, r in reasons if name == "Info.txt"]
    assert any(
        r.startswith("Info.txt line 13:") and "expected 3, 4 or 7 fields, found 6" in r
        for r in line_reasons
    )
    assert any(r.startswith("Info.txt line 14:") and "background" in r for r in line_reasons)
    assert any(r.startswith("Info.txt line 15:") for r in line_reasons)
    assert ("mdb099.pgm", "not listed in Info.txt") in reasons
    assert any(name == "mdb002.pgm" and "not found on disk" in r for name, r in reasons)
    assert any(name == "mdb010.pgm" and "malformed" in r for name, r in reasons)
    assert any(name == "mdb011.pgm" and "malformed" in r for name, r in reasons)
    assert len(result.skipped) == 7


def test_missing_info_and_missing_root(tmp_path: Path) -> None:
    folder = tmp_path / "noinfo"
    folder.mkdir()
    write_pgm(folder / "mdb001.pgm")
    with pytest.raises(DatasetError, match="no Info.txt found"):
        MiasReader().read(folder)
    with pytest.raises(DatasetError, match="not found"):
        MiasReader().read(tmp_path / "absent")


def test_corrupt_image_with_coordinates_is_skipped(tmp_path: Path) -> None:
    folder = make_mias(tmp_path / "m")
    (folder / "mdb001.pgm").write_bytes(b"P5\n48 64\n255\n" + b"\x00" * 10)
    result = MiasReader().read(folder)
    assert "mdb001" not in by_ref(result)
    (skip,) = [s for s in result.skipped if s.path.endswith("mdb001.pgm")]
    assert "truncated" in skip.reason
    with pytest.raises(ImageDecodeError, match="truncated"):
        probe_image(folder / "mdb001.pgm")
