"""Tests for the ultrasound reader: Rodrigues (BMP) and BUSI (PNG + masks) layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcore.data.imageio import read_image
from tlcore.data.readers.ultrasound import UltrasoundReader
from tlcore.data.records import DatasetError
from tlcore.data.registry import get_reader


def write_palette_bmp(path: Path, width: int = 20, height: int = 15) -> None:
    idx = (np.arange(width * height).reshape(height, width) % 256).astype(np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    im.save(path, format="BMP")


def write_rgb_png(path: Path, size: int = 12) -> None:
    rgb = np.full((size, size, 3), 90, np.uint8)
    Image.fromarray(rgb).save(path)


def write_mask_png(path: Path, size: int = 12) -> None:
    mask = np.zeros((size, size), np.uint8)
    mask[3:6, 3:6] = 255
    Image.fromarray(mask).save(path)


def make_rodrigues(root: Path, n_benign: int = 3, n_malignant: int = 4) -> Path:
    benign, malignant = root / "benign", root / "malignant"
    benign.mkdir(parents=True)
    malignant.mkdir(parents=True)
    for i in range(1, n_benign + 1):
        write_palette_bmp(benign / f"us{i}.bmp")
    for i in range(n_benign + 1, n_benign + n_malignant + 1):
        write_palette_bmp(malignant / f"us{i}.bmp")
    (benign / "notes.txt").write_text("not an image")
    (benign / "us99.jpg").write_bytes(b"\xff\xd8\xff\xd9")  # other extension: ignored
    (malignant / ".us999.bmp").write_bytes(b"BM")  # hidden: ignored
    return root


def make_busi(root: Path) -> Path:
    base = root / "Dataset_BUSI_with_GT"
    counts = {"benign": 3, "malignant": 2, "normal": 2}
    for cls, n in counts.items():
        folder = base / cls
        folder.mkdir(parents=True)
        for i in range(1, n + 1):
            write_rgb_png(folder / f"{cls} ({i}).png")
            write_mask_png(folder / f"{cls} ({i})_mask.png")
    write_mask_png(base / "benign" / "benign (1)_mask_1.png")
    write_mask_png(base / "benign" / "benign (1)_mask_2.png")
    write_mask_png(base / "malignant" / "malignant (9)_mask.png")  # orphan mask
    (base / "benign" / "Thumbs.db").write_bytes(b"\x00")
    # macOS zip residue beside the real folder must not look like a second dataset
    junk = root / "__MACOSX" / "Dataset_BUSI_with_GT" / "benign"
    junk.mkdir(parents=True)
    (junk / "._benign (1).png").write_bytes(b"\x00\x05\x16\x07")
    return root


def test_rodrigues_layout_counts_and_labels(tmp_path: Path) -> None:
    result = UltrasoundReader().read(make_rodrigues(tmp_path / "us"))
    assert len(result.records) == 7
    assert result.n_malignant == 4 and result.n_benign == 3
    assert result.skipped == []
    names = {r.path.name: r.label for r in result.records}
    assert names["us1.bmp"] == 0 and names["us7.bmp"] == 1
    for rec in result.records:
        assert rec.meta["layout"] == "rodrigues" and rec.dataset == "ultrasound"
        assert rec.findings[0].roi_mask_path is None
    decoded = read_image(result.records[0].path)
    assert decoded.pixels.shape == (15, 20) and decoded.info.format == "bmp"


def test_rodrigues_inside_wrapper_with_upper_case_folders(tmp_path: Path) -> None:
    root = tmp_path / "download"
    make_rodrigues(root / "Breast Ultrasound Images")
    (root / "Breast Ultrasound Images" / "benign").rename(
        root / "Breast Ultrasound Images" / "Benign"
    )
    (root / "Breast Ultrasound Images" / "malignant").rename(
        root / "Breast Ultrasound Images" / "MALIGNANT"
    )
    result = get_reader("ultrasound").read(root)
    assert len(result.records) == 7 and result.n_malignant == 4
    assert {r.meta["class"] for r in result.records} == {"benign", "malignant"}


def test_busi_layout_masks_never_images(tmp_path: Path) -> None:
    result = UltrasoundReader().read(make_busi(tmp_path / "busi"))
    assert len(result.records) == 7  # 3 benign + 2 malignant + 2 normal, no masks
    assert all("_mask" not in r.path.name for r in result.records)
    assert result.n_malignant == 2 and result.n_benign == 5
    by_name = {r.path.name: r for r in result.records}
    assert by_name["normal (1).png"].label == 0
    assert by_name["normal (1).png"].findings[0].pathology == "NORMAL"
    b1 = by_name["benign (1).png"].findings[0]
    assert b1.roi_mask_path is not None and b1.roi_mask_path.name == "benign (1)_mask.png"
    assert [Path(m).name for m in b1.attributes["masks"]] == [
        "benign (1)_mask.png",
        "benign (1)_mask_1.png",
        "benign (1)_mask_2.png",
    ]
    assert by_name["malignant (1).png"].findings[0].malignant
    assert {r.meta["layout"] for r in result.records} == {"busi"}
    assert [Path(s.path).name for s in result.skipped] == ["malignant (9)_mask.png"]
    assert read_image(by_name["benign (2).png"].path).info.channels == 3


def test_busi_root_pointing_at_dataset_folder(tmp_path: Path) -> None:
    make_busi(tmp_path / "busi")
    result = UltrasoundReader().read(tmp_path / "busi" / "Dataset_BUSI_with_GT")
    assert len(result.records) == 7


def test_image_ids_are_stable_and_anonymous(tmp_path: Path) -> None:
    first = UltrasoundReader().read(make_rodrigues(tmp_path / "a"))
    second = UltrasoundReader().read(make_rodrigues(tmp_path / "b" / "wrapped"))
    assert sorted(r.image_id for r in first.records) == sorted(r.image_id for r in second.records)
    assert len({r.image_id for r in first.records}) == 7


def test_no_class_folders_is_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    write_palette_bmp(tmp_path / "images" / "us1.bmp")
    with pytest.raises(DatasetError, match="benign.*malignant"):
        UltrasoundReader().read(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        UltrasoundReader().read(tmp_path / "absent")
    empty = tmp_path / "empty"
    (empty / "benign").mkdir(parents=True)
    (empty / "malignant").mkdir()
    with pytest.raises(DatasetError, match="hold no"):
        UltrasoundReader().read(empty)
