"""Image decoding for the four datasets: DICOM, PGM, BMP, PNG and JPEG.

Two entry points:

* :func:`probe_image` reads headers only and checks that the file is complete where
  that is cheap (used by ``data check`` and the readers).
* :func:`read_image` decodes the full image to a float32 greyscale array in ``[0, 1]``
  with ``1`` meaning bright tissue, whatever the file's photometric convention.

Every failure is an :class:`~tlcore.data.records.ImageDecodeError` whose reason a
person can act on. Only numpy, pydicom and Pillow are used.
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlcore.data.records import ImageDecodeError

__all__ = [
    "DecodedImage",
    "ImageInfo",
    "detect_format",
    "is_binary_mask",
    "probe_image",
    "read_image",
    "slot_format",
]

# ITU-R BT.601 luma weights, the same ones Pillow uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
_PGM_SUFFIXES = {".pgm", ".pnm"}
#: Extension -> the format a file in that slot must hold.
_SUFFIX_FORMATS: dict[str, str] = {
    **{s: "dicom" for s in _DICOM_SUFFIXES},
    **{s: "pgm" for s in _PGM_SUFFIXES},
    ".bmp": "bmp",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
}
_FORMAT_NAMES = {"dicom": "DICOM", "pgm": "PGM", "bmp": "BMP", "png": "PNG", "jpeg": "JPEG"}
_PIL_FORMATS = {"BMP": "bmp", "PNG": "png", "JPEG": "jpeg"}

# Transfer syntax UID -> what to install when no pixel-data plugin can decode it.
_LIBJPEG = "`pip install pylibjpeg pylibjpeg-libjpeg`"
_OPENJPEG = "`pip install pylibjpeg pylibjpeg-openjpeg`"
_GDCM = "`pip install python-gdcm`"
_INSTALL_HINTS: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": f"`pip install pillow` or {_LIBJPEG}",
    "1.2.840.10008.1.2.4.51": f"{_LIBJPEG} or {_GDCM}",
    "1.2.840.10008.1.2.4.57": f"{_LIBJPEG} or {_GDCM}",
    "1.2.840.10008.1.2.4.70": f"{_LIBJPEG} or {_GDCM}",
    "1.2.840.10008.1.2.4.80": f"`pip install pyjpegls` or {_LIBJPEG}",
    "1.2.840.10008.1.2.4.81": f"`pip install pyjpegls` or {_LIBJPEG}",
    "1.2.840.10008.1.2.4.90": f"{_OPENJPEG} or {_GDCM}",
    "1.2.840.10008.1.2.4.91": f"{_OPENJPEG} or {_GDCM}",
    "1.2.840.10008.1.2.4.201": _OPENJPEG,
    "1.2.840.10008.1.2.4.202": _OPENJPEG,
    "1.2.840.10008.1.2.4.203": _OPENJPEG,
    "1.2.840.10008.1.2.5": "`pip install pylibjpeg pylibjpeg-rle`",
}
_GENERIC_HINT = (
    "`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` or `pip install python-gdcm`"
)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about an image (no pixels decoded)."""

    width: int
    height: int
    format: str  # "dicom" | "pgm" | "bmp" | "png" | "jpeg"
    bits_stored: int
    channels: int


@dataclass(frozen=True)
class DecodedImage:
    """A decoded greyscale image.

    ``pixels`` is float32, shape (H, W), values in [0, 1], 1 = bright tissue (MONOCHROME1
    DICOM is already inverted). ``photometric`` is the DICOM Photometric Interpretation
    (None for other formats). ``notes`` records anything done beyond a plain decode
    (first frame taken, colour converted to grey, ...).
    """

    pixels: np.ndarray
    info: ImageInfo
    photometric: str | None
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- helpers


def _check_file(path: Path) -> int:
    """Return the file size; raise ImageDecodeError for missing, non-regular or empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot access file: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ImageDecodeError(path, "is a directory, not an image file")
    if st.st_size == 0:
        raise ImageDecodeError(path, "empty file")
    return st.st_size


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (decoders report multi-line tracebacks)."""
    return " ".join(str(exc).split())


def _read_head(path: Path, n: int) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file: {exc.strerror or exc}") from None


def _magic_format(head: bytes) -> str | None:
    """The format the first bytes announce, or None when they announce none of ours."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:1] == b"P" and len(head) >= 2 and head[1:2] in b"1234567":
        return "pgm"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    return None


def slot_format(path: str | Path) -> str | None:
    """The format a file's extension promises (``.dcm`` -> ``dicom``), or None for others."""
    return _SUFFIX_FORMATS.get(Path(path).suffix.lower())


def detect_format(path: str | Path) -> str:
    """Return the image format of ``path`` from its magic bytes.

    One of ``dicom``, ``pgm``, ``bmp``, ``png``, ``jpeg``. The extension names the slot:
    a file whose bytes announce another format than its extension promises (a PNG
    renamed ``.dcm``) is refused with "not a DICOM file (looks like PNG)". Raises
    ImageDecodeError when the file is missing, empty or not one of these formats.
    """
    path = Path(path)
    _check_file(path)
    head = _read_head(path, 132)
    magic = _magic_format(head)
    slot = slot_format(path)
    if slot is not None and magic is not None and magic != slot:
        raise ImageDecodeError(
            path, f"not a {_FORMAT_NAMES[slot]} file (looks like {_FORMAT_NAMES[magic]})"
        )
    if magic is not None:
        return magic
    if slot == "dicom":
        # DICOM without the 128-byte preamble is legal but rare; let pydicom judge.
        return "dicom"
    if slot is not None:
        raise ImageDecodeError(
            path, f"not a {_FORMAT_NAMES[slot]} file (starts with {head[:8]!r})"
        )
    raise ImageDecodeError(
        path,
        f"unrecognised image format (not DICOM, PGM, BMP, PNG or JPEG; starts with {head[:8]!r})",
    )


# --------------------------------------------------------------------------- PGM

_PGM_TOKEN = re.compile(rb"#[^\n\r]*|[^\s#]+")


@dataclass(frozen=True)
class _PgmHeader:
    magic: str
    width: int
    height: int
    maxval: int
    data_offset: int

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.maxval < 256 else 2


def _parse_pgm_header(path: Path, data: bytes) -> _PgmHeader:
    """Parse magic, width, height, maxval (comments allowed anywhere in the header)."""
    magic = data[:2].decode("latin-1")
    if magic not in ("P5", "P2"):
        raise ImageDecodeError(
            path,
            f"unsupported PGM magic {magic!r} (only P5 binary and P2 ASCII greyscale are read)",
        )
    values: list[int] = []
    pos = 2
    if len(data) > 2 and not data[2:3].isspace() and data[2:3] != b"#":
        raise ImageDecodeError(path, "corrupt PGM header: no whitespace after the magic number")
    while len(values) < 3:
        match = _PGM_TOKEN.search(data, pos)
        if match is None:
            raise ImageDecodeError(
                path, "truncated: PGM header ends before width, height and maxval"
            )
        token = match.group()
        pos = match.end()
        if token.startswith(b"#"):
            continue
        if not token.isdigit():
            raise ImageDecodeError(
                path, f"corrupt PGM header: expected a number, found {token[:20]!r}"
            )
        values.append(int(token))
    width, height, maxval = values
    if width <= 0 or height <= 0:
        raise ImageDecodeError(path, f"corrupt PGM header: size {width}x{height}")
    if not 0 < maxval < 65536:
        raise ImageDecodeError(path, f"corrupt PGM header: maxval {maxval} outside 1..65535")
    # Exactly one whitespace character separates maxval from the raster (P5).
    if pos >= len(data) and magic == "P5":
        expected = width * height * (1 if maxval < 256 else 2)
        raise ImageDecodeError(path, f"truncated: expected {expected} pixel bytes, found 0")
    return _PgmHeader(magic, width, height, maxval, pos + 1)


def _pgm_header_from_file(path: Path, size: int) -> _PgmHeader:
    # Headers are tiny; comments could in principle be long, so grow the window if needed.
    n = 4096
    while True:
        data = _read_head(path, n)
        try:
            return _parse_pgm_header(path, data)
        except ImageDecodeError as exc:
            if exc.reason.startswith("truncated") and n < size:
                n *= 16
                continue
            raise


def _pgm_info(path: Path, size: int) -> tuple[_PgmHeader, ImageInfo]:
    header = _pgm_header_from_file(path, size)
    if header.magic == "P5":
        expected = header.width * header.height * header.bytes_per_sample
        found = max(size - header.data_offset, 0)
        if found < expected:
            raise ImageDecodeError(
                path, f"truncated: expected {expected} pixel bytes, found {found}"
            )
    info = ImageInfo(
        width=header.width,
        height=header.height,
        format="pgm",
        bits_stored=header.maxval.bit_length(),
        channels=1,
    )
    return header, info


def _read_pgm(path: Path, size: int) -> DecodedImage:
    header, info = _pgm_info(path, size)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    n = header.width * header.height
    if header.magic == "P5":
        dtype = np.uint8 if header.bytes_per_sample == 1 else np.dtype(">u2")
        arr = np.frombuffer(raw, dtype=dtype, count=n, offset=header.data_offset)
    else:
        body = raw[header.data_offset - 1 :]
        # Comments may also appear in the raster of some writers; drop them.
        if b"#" in body:
            body = re.sub(rb"#[^\n\r]*", b" ", body)
        try:
            arr = np.array(body.split(), dtype=np.int64)
        except ValueError:
            raise ImageDecodeError(path, "corrupt P2 PGM: non-numeric pixel value") from None
        if arr.size < n:
            raise ImageDecodeError(
                path, f"truncated: expected {n} ASCII pixel values, found {arr.size}"
            )
        arr = arr[:n]
    arr = arr.reshape(header.height, header.width)
    pixels = np.clip(arr.astype(np.float32) / np.float32(header.maxval), 0.0, 1.0)
    notes: tuple[str, ...] = ()
    if int(arr.max()) > header.maxval:
        notes = (f"pixel values above maxval {header.maxval} were clipped",)
    return DecodedImage(pixels=pixels, info=info, photometric=None, notes=notes)


# --------------------------------------------------------------------------- Pillow formats


def _bmp_truncation(path: Path, size: int) -> None:
    head = _read_head(path, 54)
    if len(head) < 30:
        raise ImageDecodeError(
            path, f"truncated: BMP header needs at least 30 bytes, found {len(head)}"
        )
    off_bits = struct.unpack_from("<I", head, 10)[0]
    dib_size = struct.unpack_from("<I", head, 14)[0]
    if dib_size < 40 or len(head) < 34:
        return  # OS/2 core header: let Pillow judge
    width, height = struct.unpack_from("<ii", head, 18)
    bpp = struct.unpack_from("<H", head, 28)[0]
    compression = struct.unpack_from("<I", head, 30)[0]
    if compression not in (0, 3, 6) or width <= 0 or bpp == 0:
        return  # RLE-compressed or odd: no cheap size check
    stride = ((bpp * width + 31) // 32) * 4
    expected = stride * abs(height)
    found = max(size - off_bits, 0)
    if found < expected:
        raise ImageDecodeError(path, f"truncated: expected {expected} pixel bytes, found {found}")


def _tail_has(path: Path, size: int, marker: bytes, window: int = 4096) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(max(size - window, 0))
            return marker in fh.read()
    except OSError:
        return False


def _pil_bits(fmt: str, path: Path, im: Any) -> int:
    if fmt == "png":
        head = _read_head(path, 26)
        if len(head) >= 26 and head[12:16] == b"IHDR":
            return int(head[24])
    if fmt == "bmp":
        head = _read_head(path, 30)
        if len(head) >= 30:
            bpp = struct.unpack_from("<H", head, 28)[0]
            # Bits per sample: 24/32-bit BMP carries 8 bits per channel.
            return 8 if bpp >= 24 else int(bpp)
    if fmt == "jpeg":
        return int(getattr(im, "bits", 8) or 8)
    mode = im.mode
    if mode == "1":
        return 1
    if mode.startswith("I;16") or mode == "I":
        return 16
    return 8


def _open_pil(path: Path, size: int, expected_fmt: str) -> tuple[Any, ImageInfo]:
    from PIL import Image, UnidentifiedImageError

    if expected_fmt == "bmp":
        _bmp_truncation(path, size)
    elif expected_fmt == "png" and not _tail_has(path, size, _PNG_IEND):
        raise ImageDecodeError(path, "truncated: PNG file has no IEND chunk at its end")
    elif expected_fmt == "jpeg" and not _tail_has(path, size, b"\xff\xd9"):
        raise ImageDecodeError(path, "truncated: JPEG file has no end-of-image marker")
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageDecodeError(
            path, f"corrupt {expected_fmt.upper()} file: Pillow cannot identify it"
        ) from None
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise ImageDecodeError(path, f"corrupt {expected_fmt.upper()} header: {_one_line(exc)}") from None
    fmt = _PIL_FORMATS.get(im.format or "")
    if fmt is None:
        im.close()
        raise ImageDecodeError(path, f"unsupported image format {im.format!r}")
    width, height = im.size
    channels = 1 if im.mode in ("P", "1", "L") or im.mode.startswith("I") else len(im.getbands())
    if im.mode == "PA":
        channels = 2
    info = ImageInfo(
        width=width,
        height=height,
        format=fmt,
        bits_stored=_pil_bits(fmt, path, im),
        channels=channels,
    )
    return im, info


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Grey from the first three channels of an (H, W, C) array, same units as the input."""
    return rgb[..., :3].astype(np.float64) @ _LUMA


def _read_pil(path: Path, size: int, expected_fmt: str) -> DecodedImage:
    im, info = _open_pil(path, size, expected_fmt)
    notes: list[str] = []
    try:
        with im:
            im.load()
            mode = im.mode
            if mode in ("P", "PA"):
                idx = np.asarray(im if mode == "P" else im.getchannel(0), dtype=np.uint8)
                palette_bytes = im.getpalette("RGB") or list(range(256)) * 3
                palette = np.asarray(palette_bytes, dtype=np.uint8).reshape(-1, 3)
                if palette.shape[0] < 256:
                    palette = np.vstack([palette, np.zeros((256 - palette.shape[0], 3), np.uint8)])
                if np.array_equal(palette[:, 0], palette[:, 1]) and np.array_equal(
                    palette[:, 0], palette[:, 2]
                ):
                    grey = palette[:, 0].astype(np.float32)
                else:
                    grey = _luma(palette).astype(np.float32)
                    notes.append("colour palette converted to grey by luminance")
                pixels = grey[idx] / np.float32(255.0)
            elif mode == "1":
                pixels = np.asarray(im, dtype=np.float32)
            elif mode == "L":
                pixels = np.asarray(im, dtype=np.float32) / np.float32(255.0)
            elif mode == "LA":
                pixels = np.asarray(im.getchannel(0), dtype=np.float32) / np.float32(255.0)
            elif mode.startswith("I;16") or mode == "I":
                arr = np.asarray(im)
                maxval = float(2 ** max(info.bits_stored, 1) - 1)
                pixels = np.clip(arr.astype(np.float32) / np.float32(maxval), 0.0, 1.0)
            elif mode == "F":
                pixels = np.asarray(im, dtype=np.float32)
            elif mode in ("RGB", "RGBA", "RGBX"):
                arr = np.asarray(im)
                pixels = (_luma(arr) / 255.0).astype(np.float32)
                notes.append(f"{mode} converted to grey by luminance")
            else:
                arr = np.asarray(im.convert("RGB"))
                pixels = (_luma(arr) / 255.0).astype(np.float32)
                notes.append(f"{mode} converted to RGB then to grey by luminance")
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, struct.error, EOFError) as exc:
        raise ImageDecodeError(
            path, f"corrupt or truncated {info.format.upper()} data: {_one_line(exc)}"
        ) from None
    pixels = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)
    return DecodedImage(pixels=pixels, info=info, photometric=None, notes=tuple(notes))


# --------------------------------------------------------------------------- DICOM

_PIXEL_DATA_TAG = 0x7FE00010


def _dicom_header(path: Path) -> Any:
    """Parse a DICOM file without loading its pixel bytes (large values are deferred)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = path.suffix.lower() in _DICOM_SUFFIXES and _read_head(path, 132)[128:132] != b"DICM"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, defer_size=1024, force=force)
    except InvalidDicomError:
        raise ImageDecodeError(path, "not a DICOM file") from None
    except EOFError:
        raise ImageDecodeError(path, "truncated: the file ends inside the DICOM data set") from None
    except Exception as exc:  # pydicom raises many types on corrupt headers
        raise ImageDecodeError(path, f"corrupt DICOM header: {type(exc).__name__}: {_one_line(exc)}") from None
    if force and "Rows" not in ds and _PIXEL_DATA_TAG not in ds:
        raise ImageDecodeError(path, "not a DICOM file")
    if _is_deflated(ds):
        # Offsets in a deflated data set point into the inflated stream, not the file:
        # read it whole so the pixel length is checked on the bytes themselves.
        try:
            ds = pydicom.dcmread(path, force=force)
        except Exception as exc:  # zlib errors, EOF inside the compressed stream, ...
            raise ImageDecodeError(
                path, f"corrupt deflated DICOM data set: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
    # pydicom only warns when the file ends inside an element (it then drops that element).
    for w in caught:
        text = str(w.message)
        if "end of file" in text.lower():
            detail = text.split(" in file ")[0]
            raise ImageDecodeError(
                path, f"truncated: the file ends inside a DICOM element ({detail})"
            )
    return ds


def _ts_uid(ds: Any) -> Any:
    from pydicom.uid import ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return uid if uid else ImplicitVRLittleEndian


def _is_deflated(ds: Any) -> bool:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    return _ts_uid(ds) == DeflatedExplicitVRLittleEndian


def _dicom_int(
    path: Path, ds: Any, keyword: str, default: int | None = None, minimum: int | None = None
) -> int:
    """The integer value of header element ``keyword``; ImageDecodeError naming the tag if not."""
    try:
        value = ds.get(keyword, default)
    except Exception as exc:  # pydicom converts lazily: a malformed value raises on access
        raise ImageDecodeError(
            path, f"DICOM {keyword} cannot be read: {type(exc).__name__}: {_one_line(exc)}"
        ) from None
    if value is None or value == "":
        if default is not None:
            return default
        raise ImageDecodeError(path, f"DICOM header lacks {keyword}, needed to read the pixels")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ImageDecodeError(path, f"DICOM {keyword} is not a number: {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImageDecodeError(path, f"DICOM {keyword} is {number}, expected at least {minimum}")
    return number


def _dicom_info(path: Path, size: int, ds: Any) -> ImageInfo:
    from pydicom.pixels.utils import get_expected_length

    if _PIXEL_DATA_TAG not in ds:
        raise ImageDecodeError(path, "DICOM file has no PixelData element (no image)")
    rows = _dicom_int(path, ds, "Rows")
    cols = _dicom_int(path, ds, "Columns")
    bits_alloc = _dicom_int(path, ds, "BitsAllocated")
    bits_stored = _dicom_int(path, ds, "BitsStored", bits_alloc)
    spp = _dicom_int(path, ds, "SamplesPerPixel", 1, minimum=1)
    _dicom_int(path, ds, "NumberOfFrames", 1, minimum=1)
    _dicom_int(path, ds, "PixelRepresentation", 0)
    if rows <= 0 or cols <= 0:
        raise ImageDecodeError(path, f"DICOM image size is {cols}x{rows}")
    if "PhotometricInterpretation" not in ds:
        raise ImageDecodeError(path, "DICOM header lacks PhotometricInterpretation")
    elem = ds.get_item(_PIXEL_DATA_TAG, keep_deferred=True)
    ts = _ts_uid(ds)
    if not ts.is_encapsulated:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = get_expected_length(ds)
        except Exception as exc:
            raise ImageDecodeError(
                path, f"DICOM pixel description is inconsistent: {_one_line(exc)}"
            ) from None
        length = getattr(elem, "length", None)
        tell = getattr(elem, "value_tell", None)
        if _is_deflated(ds):
            found = len(getattr(elem, "value", None) or b"")
            if found < expected:
                raise ImageDecodeError(
                    path, f"truncated: expected {expected} pixel bytes, found {found}"
                )
        elif length is not None and length != 0xFFFFFFFF and tell is not None:
            found = min(length, max(size - tell, 0))
            if found < expected:
                raise ImageDecodeError(
                    path, f"truncated: expected {expected} pixel bytes, found {found}"
                )
        elif getattr(elem, "value", None) is not None and len(elem.value) < expected:
            raise ImageDecodeError(
                path, f"truncated: expected {expected} pixel bytes, found {len(elem.value)}"
            )
    return ImageInfo(width=cols, height=rows, format="dicom", bits_stored=bits_stored, channels=spp)


def _stored_range(path: Path, ds: Any, bits_stored: int) -> tuple[float, float]:
    if _dicom_int(path, ds, "PixelRepresentation", 0) == 1:
        return float(-(2 ** (bits_stored - 1))), float(2 ** (bits_stored - 1) - 1)
    return 0.0, float(2**bits_stored - 1)


def _lut_depth_range(seq_item: Any) -> tuple[float, float]:
    depth = int(seq_item.LUTDescriptor[2])
    return 0.0, float(2**depth - 1)


def _first_value(path: Path, ds: Any, keyword: str) -> float:
    """First value of a (possibly multi-valued) numeric element; ImageDecodeError naming it."""
    from pydicom.multival import MultiValue

    value = ds.get(keyword)
    if isinstance(value, (MultiValue, list, tuple)):
        value = value[0] if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ImageDecodeError(path, f"DICOM {keyword} is not a number: {value!r}") from None


def _linear_window(path: Path, values: np.ndarray, ds: Any) -> np.ndarray | None:
    """LINEAR / LINEAR_EXACT windowing straight to [0, 1] (PS3.3 C.11.2.1.2).

    Same result as pydicom's ``apply_windowing`` divided by its output range, in one
    vectorised pass; returns None for functions it does not handle (SIGMOID).
    """
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    center = _first_value(path, ds, "WindowCenter")
    width = _first_value(path, ds, "WindowWidth")
    if function == "LINEAR" and width >= 1:
        center, width = center - 0.5, width - 1
    elif not (function == "LINEAR_EXACT" and width > 0):
        return None
    x = np.asarray(values, dtype=np.float64)
    if width == 0:
        return (x > center).astype(np.float64)
    return np.clip((x - center) / width + 0.5, 0.0, 1.0)


def _decode_dicom_frame(path: Path, ds: Any) -> np.ndarray:
    from pydicom.pixels.decoders.base import get_decoder

    ts = _ts_uid(ds)
    hint = _INSTALL_HINTS.get(str(ts), _GENERIC_HINT)
    ts_label = f"{ts.name} ({ts})" if ts.name != str(ts) else str(ts)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise ImageDecodeError(
            path, f"transfer syntax {ts_label} is not supported by pydicom's pixel decoders"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise ImageDecodeError(
            path,
            f"compressed transfer syntax {ts_label}: no installed pixel-data plugin can decode it; "
            f"install one with {hint}" + (f" (pydicom reports: {missing})" if missing else ""),
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.pixel_array_options(index=0)
            arr = ds.pixel_array
    except EOFError:
        raise ImageDecodeError(path, "truncated: the file ends inside the pixel data") from None
    except Exception as exc:
        if ts.is_encapsulated:
            raise ImageDecodeError(
                path,
                f"cannot decode {ts_label} pixel data ({type(exc).__name__}: {_one_line(exc)}); "
                f"if the file is sound, another plugin may decode it: {hint}",
            ) from None
        raise ImageDecodeError(
            path, f"cannot decode pixel data: {type(exc).__name__}: {_one_line(exc)}"
        ) from None
    return np.asarray(arr)


def _read_dicom(path: Path, size: int) -> DecodedImage:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = _dicom_header(path)
    info = _dicom_info(path, size, ds)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper() or None
    notes: list[str] = []
    frames = _dicom_int(path, ds, "NumberOfFrames", 1, minimum=1)
    arr = _decode_dicom_frame(path, ds)
    if frames > 1:
        notes.append(f"multi-frame DICOM ({frames} frames): first frame taken")

    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            rgb = apply_color_lut(arr, ds)
        except Exception as exc:
            raise ImageDecodeError(path, f"cannot apply the DICOM palette: {_one_line(exc)}") from None
        depth = int(ds.RedPaletteColorLookupTableDescriptor[2])
        pixels = _luma(rgb) / float(2**depth - 1)
        notes.append("palette colour converted to grey by luminance")
    elif info.channels > 1 or arr.ndim == 3:
        if arr.ndim != 3:
            raise ImageDecodeError(
                path, f"unexpected pixel array shape {arr.shape} for {info.channels} samples"
            )
        pixels = _luma(arr) / float(2**info.bits_stored - 1)
        notes.append(f"{photometric} converted to grey by luminance")
    else:
        if arr.ndim != 2:
            arr = arr.reshape(arr.shape[-2], arr.shape[-1])
        lo, hi = _stored_range(path, ds, info.bits_stored)
        try:
            modality_seq = ds.get("ModalityLUTSequence")
            if modality_seq:
                lo, hi = _lut_depth_range(modality_seq[0])
            elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
                slope = _first_value(path, ds, "RescaleSlope")
                intercept = _first_value(path, ds, "RescaleIntercept")
                a, b = lo * slope + intercept, hi * slope + intercept
                lo, hi = min(a, b), max(a, b)
            values = apply_modality_lut(arr, ds)

            voi_seq = ds.get("VOILUTSequence")
            has_voi_lut = bool(voi_seq) and all(
                voi_seq[0].get(k) is not None for k in ("LUTDescriptor", "LUTData")
            )
            has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
            if has_voi_lut:
                lut = np.asarray(voi_seq[0].LUTData).ravel()
                lo, hi = (
                    (float(lut.min()), float(lut.max()))
                    if lut.size
                    else _lut_depth_range(voi_seq[0])
                )
                notes.append("VOI LUT applied")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    values = apply_voi_lut(values, ds)
            elif has_window:
                notes.append("VOI window applied")
                linear = _linear_window(path, values, ds)
                if linear is not None:
                    values, lo, hi = linear, 0.0, 1.0
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        values = apply_voi_lut(values, ds)
        except ImageDecodeError:
            raise
        except Exception as exc:
            raise ImageDecodeError(
                path, f"cannot apply the DICOM LUT/window: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        span = hi - lo
        if span <= 0:
            raise ImageDecodeError(path, f"DICOM output value range is empty ({lo}..{hi})")
        pixels = (np.asarray(values, dtype=np.float64) - lo) / span
        if photometric == "MONOCHROME1":
            pixels = 1.0 - pixels
            notes.append("MONOCHROME1 inverted")
    pixels = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)
    return DecodedImage(pixels=pixels, info=info, photometric=photometric, notes=tuple(notes))


def _dicom_guard(path: Path, read: Any) -> Any:
    """Run ``read``; any failure pydicom raises on a malformed element becomes an
    ImageDecodeError (the specific checks above name the tag; this is the last net)."""
    try:
        return read()
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(
            path, f"malformed DICOM data set: {type(exc).__name__}: {_one_line(exc)}"
        ) from None


# --------------------------------------------------------------------------- public API


def probe_image(path: str | Path) -> ImageInfo:
    """Read the header of an image file and check it is complete, without decoding pixels.

    Raises :class:`ImageDecodeError` with a readable reason on a missing, empty,
    truncated, unsupported or corrupt file.
    """
    path = Path(path)
    size = _check_file(path)
    fmt = detect_format(path)
    if fmt == "dicom":
        return _dicom_guard(path, lambda: _dicom_info(path, size, _dicom_header(path)))
    if fmt == "pgm":
        return _pgm_info(path, size)[1]
    im, info = _open_pil(path, size, fmt)
    im.close()
    return info


def read_image(path: str | Path) -> DecodedImage:
    """Decode an image to float32 greyscale in [0, 1] (1 = bright tissue).

    DICOM: Modality LUT / rescale, then VOI LUT / window when present, normalised by the
    output range (by ``2**BitsStored - 1`` when no LUT applies), MONOCHROME1 inverted,
    first frame of multi-frame data. PGM: divided by maxval. BMP/PNG/JPEG: palette mapped
    to grey, colour to grey by luminance, 16-bit PNG divided by 65535.
    """
    path = Path(path)
    size = _check_file(path)
    fmt = detect_format(path)
    if fmt == "dicom":
        return _dicom_guard(path, lambda: _read_dicom(path, size))
    if fmt == "pgm":
        return _read_pgm(path, size)
    return _read_pil(path, size, fmt)


def is_binary_mask(image: DecodedImage | np.ndarray) -> bool:
    """True when the image holds only two values, 0 and its maximum (a constant image counts).

    Used to tell ROI masks (binary) from grey crops or images.
    """
    arr = image.pixels if isinstance(image, DecodedImage) else np.asarray(image)
    if arr.size == 0:
        return False
    top = arr.max()
    return bool(np.all((arr == 0) | (arr == top)))
