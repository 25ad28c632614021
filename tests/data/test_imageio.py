"""Tests for tlcore.data.imageio on tiny files written in their real formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from tlcore.data.imageio import DecodedImage, ImageInfo, is_binary_mask, probe_image, read_image
from tlcore.data.records import ImageDecodeError

# --------------------------------------------------------------------------- writers


def write_dicom(
    path: Path,
    arr: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    extra: dict | None = None,
    compress: bool = False,
) -> Path:
    """Write a real DICOM file (Explicit VR Little Endian, or RLE Lossless if compress)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.set_pixel_data(arr, photometric, bits_stored or arr.dtype.itemsize * 8)
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    if compress:
        ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_pgm(
    path: Path, arr: np.ndarray, maxval: int, *, ascii_: bool = False, comments: bool = True
) -> Path:
    h, w = arr.shape
    if ascii_:
        header = f"P2\n# ascii comment\n{w} {h}\n{maxval}\n".encode()
        body = "\n".join(" ".join(str(int(v)) for v in row) for row in arr).encode() + b"\n"
    else:
        c = b"# comment one\n" if comments else b""
        header = (
            b"P5\n"
            + c
            + f"{w}".encode()
            + b" "
            + (b"# mid\n" if comments else b"")
            + f"{h}\n{maxval}\n".encode()
        )
        body = arr.astype(np.uint8 if maxval < 256 else ">u2").tobytes()
    path.write_bytes(header + body)
    return path


def gradient(h: int, w: int, top: int) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * top // (h * w - 1)).astype(np.int64)


# --------------------------------------------------------------------------- PGM


def test_pgm_8bit_with_comments(tmp_path: Path) -> None:
    arr = gradient(6, 5, 255)
    p = write_pgm(tmp_path / "a.pgm", arr, 255)
    info = probe_image(p)
    assert info == ImageInfo(width=5, height=6, format="pgm", bits_stored=8, channels=1)
    img = read_image(p)
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (6, 5)
    np.testing.assert_allclose(img.pixels, arr / 255.0, atol=1e-6)
    assert img.photometric is None


def test_pgm_16bit_big_endian(tmp_path: Path) -> None:
    arr = gradient(4, 7, 4095)
    p = write_pgm(tmp_path / "b.pgm", arr, 4095)
    assert probe_image(p).bits_stored == 12
    np.testing.assert_allclose(read_image(p).pixels, arr / 4095.0, atol=1e-6)


def test_pgm_ascii_p2(tmp_path: Path) -> None:
    arr = gradient(3, 4, 15)
    p = write_pgm(tmp_path / "c.pgm", arr, 15, ascii_=True)
    assert probe_image(p).width == 4
    np.testing.assert_allclose(read_image(p).pixels, arr / 15.0, atol=1e-6)


def test_pgm_truncated_and_unsupported_magic(tmp_path: Path) -> None:
    p = tmp_path / "t.pgm"
    p.write_bytes(b"P5\n32 32\n255\n" + b"\x00" * 1000)
    with pytest.raises(ImageDecodeError, match="truncated: expected 1024 pixel bytes, found 1000"):
        probe_image(p)
    with pytest.raises(ImageDecodeError, match="truncated"):
        read_image(p)
    q = tmp_path / "colour.pgm"
    q.write_bytes(b"P6\n2 2\n255\n" + b"\x00" * 12)
    with pytest.raises(ImageDecodeError, match="unsupported PGM magic 'P6'"):
        probe_image(q)


# --------------------------------------------------------------------------- BMP / PNG / JPEG


def test_bmp_8bit_palette_maps_to_grey(tmp_path: Path) -> None:
    idx = (np.arange(8 * 9).reshape(8, 9) % 256).astype(np.uint8)
    im = Image.fromarray(idx, mode="P")
    inverted = [v for i in range(256) for v in (255 - i,) * 3]  # index i shows grey 255 - i
    im.putpalette(inverted)
    p = tmp_path / "us1.bmp"
    im.save(p, format="BMP")
    info = probe_image(p)
    assert (info.width, info.height, info.format, info.bits_stored, info.channels) == (
        9,
        8,
        "bmp",
        8,
        1,
    )
    np.testing.assert_allclose(read_image(p).pixels, (255 - idx.astype(float)) / 255.0, atol=1e-6)


def test_png_8bit_16bit_and_rgb(tmp_path: Path) -> None:
    g8 = gradient(5, 6, 255).astype(np.uint8)
    Image.fromarray(g8).save(tmp_path / "g8.png")
    np.testing.assert_allclose(read_image(tmp_path / "g8.png").pixels, g8 / 255.0, atol=1e-6)

    g16 = gradient(5, 6, 65535).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert probe_image(tmp_path / "g16.png").bits_stored == 16
    np.testing.assert_allclose(read_image(tmp_path / "g16.png").pixels, g16 / 65535.0, atol=1e-6)

    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    rgb[2:, :, :] = 200  # grey rows stay grey
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    info = probe_image(tmp_path / "rgb.png")
    assert info.channels == 3 and info.format == "png"
    px = read_image(tmp_path / "rgb.png").pixels
    np.testing.assert_allclose(px[0, 0], 0.299, atol=1e-3)
    np.testing.assert_allclose(px[3, 3], 200 / 255.0, atol=1e-3)

    rgba = np.dstack([rgb, np.full((4, 4), 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png").pixels, px, atol=1e-6)


def test_jpeg_decodes(tmp_path: Path) -> None:
    g = np.full((16, 16), 100, np.uint8)
    Image.fromarray(g).save(tmp_path / "a.jpg", quality=95)
    info = probe_image(tmp_path / "a.jpg")
    assert info.format == "jpeg" and info.width == 16
    assert abs(float(read_image(tmp_path / "a.jpg").pixels.mean()) - 100 / 255) < 0.02


def test_truncated_png_and_bmp(tmp_path: Path) -> None:
    Image.fromarray(gradient(40, 40, 255).astype(np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="truncated"):
        probe_image(tmp_path / "cut.png")
    Image.fromarray(gradient(40, 40, 255).astype(np.uint8)).save(tmp_path / "a.bmp")
    data = (tmp_path / "a.bmp").read_bytes()
    (tmp_path / "cut.bmp").write_bytes(data[:-100])
    with pytest.raises(ImageDecodeError, match="truncated: expected 1600 pixel bytes, found 1500"):
        read_image(tmp_path / "cut.bmp")


# --------------------------------------------------------------------------- DICOM


def test_dicom_8_14_16_bit_scaling(tmp_path: Path) -> None:
    a8 = gradient(6, 5, 255).astype(np.uint8)
    d8 = read_image(write_dicom(tmp_path / "8.dcm", a8))
    assert d8.info == ImageInfo(width=5, height=6, format="dicom", bits_stored=8, channels=1)
    np.testing.assert_allclose(d8.pixels, a8 / 255.0, atol=1e-6)

    a14 = gradient(6, 5, 2**14 - 1).astype(np.uint16)
    d14 = read_image(write_dicom(tmp_path / "14.dcm", a14, bits_stored=14))
    assert d14.info.bits_stored == 14 and d14.photometric == "MONOCHROME2"
    assert d14.pixels.max() == pytest.approx(1.0)  # by 2**14-1, not 65535
    np.testing.assert_allclose(d14.pixels, a14 / 16383.0, atol=1e-6)

    a16 = gradient(6, 5, 65535).astype(np.uint16)
    d16 = read_image(write_dicom(tmp_path / "16.dcm", a16))
    np.testing.assert_allclose(d16.pixels, a16 / 65535.0, atol=1e-6)
    assert probe_image(tmp_path / "16.dcm").bits_stored == 16


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    arr = np.full((8, 8), 100, np.uint16)
    arr[2:5, 2:5] = 4000  # high stored value
    m2 = read_image(write_dicom(tmp_path / "m2.dcm", arr, bits_stored=12))
    m1 = read_image(
        write_dicom(tmp_path / "m1.dcm", arr, bits_stored=12, photometric="MONOCHROME1")
    )
    assert m2.pixels[3, 3] > m2.pixels[0, 0]  # region bright in MONOCHROME2
    assert m1.pixels[3, 3] < m1.pixels[0, 0]  # the same region dark in MONOCHROME1
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    assert m1.photometric == "MONOCHROME1"


def test_dicom_rescale_slope_intercept(tmp_path: Path) -> None:
    arr = gradient(4, 4, 255).astype(np.uint16)
    p = write_dicom(
        tmp_path / "r.dcm", arr, bits_stored=8, extra={"RescaleSlope": 2, "RescaleIntercept": -100}
    )
    # output range: [0*2-100, 255*2-100] = [-100, 410]; normalising undoes the linear map
    np.testing.assert_allclose(read_image(p).pixels, arr / 255.0, atol=1e-6)


def test_dicom_voi_window(tmp_path: Path) -> None:
    arr = np.array([[0, 1000, 1500, 2000, 2500, 4095]], np.uint16)
    p = write_dicom(
        tmp_path / "w.dcm", arr, bits_stored=12, extra={"WindowCenter": 2000, "WindowWidth": 1001}
    )
    px = read_image(p).pixels[0]
    assert px[0] == 0.0 and px[1] == 0.0  # below the window
    assert px[4] == 1.0 and px[5] == 1.0  # above the window
    assert px[3] == pytest.approx(0.5, abs=1e-3)  # centre
    assert 0.0 < px[2] < px[3]


@pytest.mark.parametrize(
    "window",
    [
        {"WindowCenter": [1800, 900], "WindowWidth": [1200, 300]},
        {"WindowCenter": 700, "WindowWidth": 400, "VOILUTFunction": "LINEAR_EXACT"},
        {"WindowCenter": 2048, "WindowWidth": 1000, "VOILUTFunction": "SIGMOID"},
    ],
)
def test_dicom_window_matches_pydicom(tmp_path: Path, window: dict) -> None:
    from pydicom.pixels import apply_voi_lut

    arr = gradient(16, 16, 4095).astype(np.uint16)
    p = write_dicom(tmp_path / "w.dcm", arr, bits_stored=12, extra=window)
    expected = apply_voi_lut(arr, pydicom.dcmread(p)) / 4095.0
    np.testing.assert_allclose(read_image(p).pixels, expected, atol=1e-5)


def test_dicom_rle_lossless_compressed(tmp_path: Path) -> None:
    arr = gradient(10, 12, 2**14 - 1).astype(np.uint16)
    p = write_dicom(tmp_path / "rle.dcm", arr, bits_stored=14, compress=True)
    assert pydicom.dcmread(p).file_meta.TransferSyntaxUID == RLELossless
    assert probe_image(p).width == 12
    np.testing.assert_allclose(read_image(p).pixels, arr / 16383.0, atol=1e-6)


def test_dicom_jpeg_lossless_without_plugin_names_what_to_install(tmp_path: Path) -> None:
    p = write_dicom(tmp_path / "j.dcm", gradient(4, 4, 255).astype(np.uint16), bits_stored=12)
    ds = pydicom.dcmread(p)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3 not really a jpeg stream \xff\xd9"])
    ds.save_as(p)
    assert probe_image(p).format == "dicom"  # header is fine
    with pytest.raises(ImageDecodeError) as err:
        read_image(p)
    assert "1.2.840.10008.1.2.4.70" in err.value.reason
    assert "pip install" in err.value.reason and "pylibjpeg" in err.value.reason


def test_dicom_multiframe_takes_first_frame(tmp_path: Path) -> None:
    frames = np.stack([np.full((3, 4), 10, np.uint8), np.full((3, 4), 200, np.uint8)])
    p = write_dicom(tmp_path / "mf.dcm", frames)
    img = read_image(p)
    assert img.pixels.shape == (3, 4)
    np.testing.assert_allclose(img.pixels, 10 / 255.0, atol=1e-6)
    assert any("first frame" in n for n in img.notes)


def test_dicom_truncated(tmp_path: Path) -> None:
    p = write_dicom(tmp_path / "a.dcm", np.zeros((32, 32), np.uint16))
    data = p.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-48])
    with pytest.raises(ImageDecodeError, match="truncated: expected 2048 pixel bytes, found 2000"):
        probe_image(tmp_path / "cut.dcm")
    rle = write_dicom(
        tmp_path / "rle.dcm",
        gradient(32, 32, 4000).astype(np.uint16),
        bits_stored=12,
        compress=True,
    )
    (tmp_path / "rle_cut.dcm").write_bytes(rle.read_bytes()[:-40])
    with pytest.raises(ImageDecodeError, match="truncated"):
        read_image(tmp_path / "rle_cut.dcm")


# --------------------------------------------------------------------------- bad files


def test_missing_empty_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="file not found") as err:
        probe_image(tmp_path / "nope.dcm")
    assert err.value.path.endswith("nope.dcm")
    (tmp_path / "empty.pgm").write_bytes(b"")
    for fn in (probe_image, read_image):
        with pytest.raises(ImageDecodeError, match="empty file"):
            fn(tmp_path / "empty.pgm")
    rng = np.random.default_rng(0)
    (tmp_path / "junk.dcm").write_bytes(
        b"\x07" + rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    )
    with pytest.raises(ImageDecodeError, match="not a DICOM file"):
        probe_image(tmp_path / "junk.dcm")
    (tmp_path / "junk.bin").write_bytes(b"hello world, not an image")
    with pytest.raises(ImageDecodeError, match="unrecognised image format"):
        read_image(tmp_path / "junk.bin")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40 + b"IEND\xaeB`\x82")
    with pytest.raises(ImageDecodeError, match="PNG"):
        read_image(tmp_path / "junk.png")


def test_is_binary_mask() -> None:
    mask = np.zeros((5, 5), np.uint8)
    mask[1:3, 1:3] = 255
    assert is_binary_mask(mask)
    grey = mask.copy()
    grey[0, 0] = 17
    assert not is_binary_mask(grey)
    decoded = DecodedImage(
        pixels=(mask / 255.0).astype(np.float32),
        info=ImageInfo(width=5, height=5, format="png", bits_stored=8, channels=1),
        photometric=None,
    )
    assert is_binary_mask(decoded)
    assert not is_binary_mask(np.zeros((0, 0)))


def test_binary_mask_dicom_vs_grey_crop(tmp_path: Path) -> None:
    mask = np.zeros((6, 6), np.uint8)
    mask[2:4, 2:4] = 255
    crop = gradient(6, 6, 40000).astype(np.uint16)
    assert is_binary_mask(read_image(write_dicom(tmp_path / "mask.dcm", mask)))
    assert not is_binary_mask(read_image(write_dicom(tmp_path / "crop.dcm", crop)))


# --------------------------------------------------------------------------- wrong format in a slot


def _png_bytes(tmp_path: Path) -> bytes:
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "real.png")
    return (tmp_path / "real.png").read_bytes()


@pytest.mark.parametrize(
    ("name", "writer", "reason"),
    [
        ("renamed.dcm", "png", "not a DICOM file (looks like PNG)"),
        ("renamed.pgm", "png", "not a PGM file (looks like PNG)"),
        ("renamed.bmp", "png", "not a BMP file (looks like PNG)"),
        ("renamed.png", "bmp", "not a PNG file (looks like BMP)"),
        ("renamed.jpg", "dicom", "not a JPEG file (looks like DICOM)"),
        ("renamed.png", "pgm", "not a PNG file (looks like PGM)"),
    ],
)
def test_file_in_the_wrong_slot_is_refused(tmp_path: Path, name: str, writer: str, reason: str) -> None:
    """The extension names the slot; magic bytes of another format are a clear refusal."""
    src = tmp_path / f"src.{writer}"
    arr = np.full((8, 8), 100, np.uint8)
    if writer == "dicom":
        write_dicom(src, arr)
    elif writer == "pgm":
        write_pgm(src, arr, 255)
    else:
        Image.fromarray(arr).save(src)
    target = tmp_path / name
    target.write_bytes(src.read_bytes())
    for fn in (probe_image, read_image):
        with pytest.raises(ImageDecodeError) as err:
            fn(target)
        assert err.value.reason == reason
    # the same bytes under their own extension still read
    assert read_image(src).pixels.shape == (8, 8)
