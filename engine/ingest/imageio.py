"""Image loading: every supported format in, an oriented RGB uint8 array out, or a clear reason why not.

* The supported extensions are declared once here (:data:`SUPPORTED_EXTENSIONS`).
* Decoding is defensive (Immich's ``transforms.py`` habit): the whole image is decoded at once so
  truncation surfaces here and not later in a worker; EXIF orientation is applied; every mode
  (CMYK, 16-bit, palette, alpha, grayscale, float) becomes 8-bit RGB; alpha is composited on white
  and handed back separately.
* Reduced-scale decoding: JPEGs (and RAW previews, which are JPEGs) use libjpeg's DCT scaling
  when ``max_side`` or ``reduce`` allow it, which is ~2x faster than a full decode for a thumbnail
  or a scoring view. Plain, complete RGB or grey JPEGs are decoded by OpenCV straight into the
  array (:func:`_jpeg_with_opencv`, same pixels as Pillow's path); the rest through Pillow ``draft``.
* Camera RAW files are read through their largest embedded JPEG preview, found by scanning for
  JPEG start-of-image markers and walking the JPEG segment structure to its end-of-image marker
  (no RAW library needed; every mainstream camera embeds a preview, usually full size or close).
* Bad files raise :class:`ImageError` with a short ``code`` and a human ``reason``.
* EXIF is read with piexif; :func:`exif_fields` turns it into the columns the catalog sorts by.
* A JPEG's quality is read from its luminance quantisation table (:func:`jpeg_table_quality`,
  no pixels needed) into ``fields['jpeg_quality']``: the catalog keeps it, and the compression
  reason is not shown where the enhancer would not deblock (``engine.enhance.levels.reasons_skipped``).
"""

from __future__ import annotations

import io
import logging
import os
import re
import string
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from struct import error as struct_error
from typing import Any

import numpy as np
import piexif
from PIL import Image, ImageFile, UnidentifiedImageError

log = logging.getLogger(__name__)

try:  # HEIC/HEIF through libheif
    import pillow_heif

    pillow_heif.register_heif_opener()
    HAVE_HEIF = True
except Exception:  # pragma: no cover - optional at run time, a declared dependency
    HAVE_HEIF = False

STANDARD_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
RAW_EXTENSIONS = frozenset({
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf",
    ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".dcr", ".mrw", ".mef", ".mos", ".raw",
    ".rwl",
})
SUPPORTED_EXTENSIONS: frozenset[str] = STANDARD_EXTENSIONS | (HEIF_EXTENSIONS if HAVE_HEIF else frozenset()) \
    | RAW_EXTENSIONS

# Pillow refuses images above 2 * MAX_IMAGE_PIXELS (~179 MP) with DecompressionBombError; we keep
# that limit (it also bounds our memory: 179 MP of RGB is 0.5 GB) and silence its warning band
# (89..179 MP), since very large but real photos (100+ MP medium format) must load.
MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# Third-party warnings (Pillow's "Corrupt EXIF data", "Truncated File Read"...) become recorded
# warnings of the photo being decoded, never raw text on stderr. A warning raised in a thread
# that is decoding (inside :func:`_capturing`) is collected there; any other goes to the log.
# "always" so that the second damaged file is reported too (the default shows one per location).
warnings.filterwarnings("always", module=r"PIL(\..*)?$")
warnings.filterwarnings("always", module=r"piexif(\..*)?$")
_capture = threading.local()
_show_original = warnings.showwarning


def _showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
    sink = getattr(_capture, "sink", None)
    if sink is not None:
        sink.append(str(message))
    elif "PIL" in filename or "piexif" in filename:
        log.warning("%s", message)
    else:
        _show_original(message, category, filename, lineno, file, line)


warnings.showwarning = _showwarning


class _capturing:
    """Collect the warnings raised in this thread while decoding (see above)."""

    def __enter__(self) -> list[str]:
        self.prev = getattr(_capture, "sink", None)
        self.sink: list[str] = []
        _capture.sink = self.sink
        return self.sink

    def __exit__(self, *_exc: object) -> None:
        _capture.sink = self.prev


def _join_warnings(*parts: str | None) -> str | None:
    seen: list[str] = []
    for p in parts:
        if p and p not in seen:
            seen.append(p)
    return "; ".join(seen) or None

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageError(Exception):
    """A file that cannot be loaded as a photo; ``code`` is short and stable, ``reason`` is for people."""

    def __init__(self, reason: str, code: str = "decode") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # uint8 HxWx3, EXIF orientation applied, possibly reduced
    size: tuple[int, int]  # full (w, h) after orientation (of the preview, for RAW)
    orientation: int  # EXIF orientation 1..8 that was applied
    format: str  # JPEG, PNG, TIFF, WEBP, BMP, HEIF, RAW/NEF, ...
    icc: bytes | None = None
    exif: bytes | None = None  # raw EXIF (TIFF) bytes as found in the file, for export
    alpha: np.ndarray | None = field(default=None, repr=False)  # uint8 HxW when the image had one
    warning: str | None = None  # a non-fatal problem (e.g. unreadable EXIF)

    @property
    def scale(self) -> float:
        """Decoded width over full width (1.0 = full resolution)."""
        return self.rgb.shape[1] / max(1, self.size[0])


def is_supported(path: str | os.PathLike[str]) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in SUPPORTED_EXTENSIONS


# ---------------------------------------------------------------------------------------------
# RAW: the largest embedded JPEG preview
# ---------------------------------------------------------------------------------------------
_SOI = b"\xff\xd8\xff"
_MARKER_AFTER_SCAN = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")  # not stuffing (00), RSTn (D0-D7) or fill (FF)
_SOF_DECODABLE = {0xC0, 0xC1, 0xC2}  # baseline, extended, progressive (not lossless SOF3 raw data)


def _jpeg_extent(buf: bytes | memoryview, start: int) -> tuple[int, int, int] | None:
    """Walk one JPEG from its SOI; return (end, width, height) if it is a decodable JPEG, else None."""
    n = len(buf)
    i = start + 2
    width = height = 0
    decodable = False
    while i + 4 <= n:
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0xD9:
            return (i + 2, width, height) if decodable and width and height else None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        seglen = (buf[i + 2] << 8) | buf[i + 3]
        if seglen < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            height = (buf[i + 5] << 8) | buf[i + 6]
            width = (buf[i + 7] << 8) | buf[i + 8]
            decodable = marker in _SOF_DECODABLE
        if marker == 0xDA:
            m = _MARKER_AFTER_SCAN.search(buf, i + 2 + seglen)  # type: ignore[call-overload]
            if m is None:
                return None
            i = m.start()
            continue
        i += 2 + seglen
    return None


def extract_raw_preview(data: bytes) -> bytes:
    """The largest decodable JPEG embedded in a RAW file (by pixel count)."""
    best: tuple[int, int, int] | None = None  # (pixels, start, end)
    pos = data.find(_SOI)
    tried = 0
    while pos >= 0 and tried < 256:
        tried += 1
        ext = _jpeg_extent(data, pos)
        if ext is not None:
            end, w, h = ext
            if best is None or w * h > best[0]:
                best = (w * h, pos, end)
            # the JPEG's own EXIF thumbnail sits inside it; keep scanning anyway (cheap), but
            # jump past a large preview to save time
        pos = data.find(_SOI, pos + 2)
    if best is None:
        raise ImageError("camera RAW file without a usable embedded JPEG preview", "unsupported")
    return data[best[1]:best[2]]


# ---------------------------------------------------------------------------------------------
# EXIF
# ---------------------------------------------------------------------------------------------
def _text(v: Any) -> str | None:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if not isinstance(v, str):
        return None
    v = v.replace("\x00", "").strip()
    return v or None


def _ratio(v: Any) -> float | None:
    try:
        if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v):
            return v[0] / v[1] if v[1] else None
        if isinstance(v, int | float):
            return float(v)
    except (TypeError, ZeroDivisionError):
        return None
    return None


def _when(v: Any) -> datetime | None:
    s = _text(v)
    if not s:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(s[:19], fmt)
        except ValueError:
            continue
    return None


def exif_fields(exif: dict[str, Any]) -> dict[str, Any]:
    """piexif's dict -> the catalog's EXIF columns (missing values are None)."""
    zeroth = exif.get("0th") or {}
    ex = exif.get("Exif") or {}
    gps = exif.get("GPS") or {}
    iso = ex.get(piexif.ExifIFD.ISOSpeedRatings)
    if isinstance(iso, tuple):
        iso = iso[0] if iso else None
    orientation = zeroth.get(piexif.ImageIFD.Orientation)
    if isinstance(orientation, tuple):
        orientation = orientation[0] if orientation else None
    lens = _text(ex.get(piexif.ExifIFD.LensModel))
    if lens is None:
        lens = _text(ex.get(piexif.ExifIFD.LensMake))
    captured = (_when(ex.get(piexif.ExifIFD.DateTimeOriginal)) or _when(ex.get(piexif.ExifIFD.DateTimeDigitized))
                or _when(zeroth.get(piexif.ImageIFD.DateTime)))
    return {
        "camera_make": _text(zeroth.get(piexif.ImageIFD.Make)),
        "camera_model": _text(zeroth.get(piexif.ImageIFD.Model)),
        "lens": lens,
        "camera_serial": _text(ex.get(piexif.ExifIFD.BodySerialNumber)),
        "captured_at": captured,
        "iso": int(iso) if isinstance(iso, int) and iso > 0 else None,
        "exposure_time": _ratio(ex.get(piexif.ExifIFD.ExposureTime)),
        "f_number": _ratio(ex.get(piexif.ExifIFD.FNumber)),
        "focal_length": _ratio(ex.get(piexif.ExifIFD.FocalLength)),
        "has_gps": bool(gps.get(piexif.GPSIFD.GPSLatitude) or gps.get(piexif.GPSIFD.GPSLongitude)),
        "orientation": orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
    }


EMPTY_EXIF_FIELDS: dict[str, Any] = {
    "camera_make": None, "camera_model": None, "lens": None, "camera_serial": None, "captured_at": None, "iso": None,
    "exposure_time": None, "f_number": None, "focal_length": None, "has_gps": False, "orientation": None,
}  # plus ``jpeg_quality`` from :func:`decode` (not EXIF)


# the IJG (libjpeg) luminance quantisation table at quality 50, row-major 8x8 (Annex K of ITU T.81);
# also the restorer's pixel estimate's reference (engine.enhance.levels)
IJG_LUMA50 = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)


def _ijg_luma_tables() -> np.ndarray:
    q = np.arange(1, 101, dtype=np.float64)
    scale = np.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    return np.clip(np.floor((IJG_LUMA50[None, :] * scale[:, None] + 50.0) / 100.0), 1, 255)


_IJG_LOG_TABLES = np.log(_ijg_luma_tables())  # row q-1: log of the luminance table libjpeg writes at quality q


def jpeg_table_quality(tables: Any) -> int | None:
    """The IJG quality (1..100) whose luminance table is closest to a JPEG's own (Pillow's
    ``im.quantization``: table 0 is luma, 64 steps in row-major order); None without one.

    For libjpeg's own tables (most software) this is the quality the file was saved at; for a
    camera's or phone's custom tables it is the IJG quality of about the same coarseness
    (closest in log step, so the many small low-frequency steps weigh as much as the large ones).
    It describes the last compression, as the restorer's pixel estimate does
    (``engine.enhance.levels.jpeg_quality``)."""
    if not isinstance(tables, dict) or not tables:
        return None
    t = tables.get(0, next(iter(tables.values())))
    try:
        a = np.asarray(list(t), np.float64)
    except (TypeError, ValueError):
        return None
    if a.shape != (64,) or not np.all(a > 0):
        return None
    err = np.abs(_IJG_LOG_TABLES - np.log(a)[None, :]).sum(axis=1)
    return int(np.argmin(err)) + 1


def parse_exif(blob: bytes | None) -> tuple[dict[str, Any], str | None]:
    """(fields, warning) from a raw EXIF block, a JPEG or a TIFF; broken EXIF is a warning, not an error."""
    if not blob:
        return dict(EMPTY_EXIF_FIELDS), None
    body = blob[6:] if blob.startswith(b"Exif\x00\x00") else blob
    if body[:4] not in (b"II*\x00", b"MM\x00*") and not body.startswith(b"\xff\xd8"):
        # piexif would take these bytes for a file name and report "no such file"
        return dict(EMPTY_EXIF_FIELDS), "unreadable EXIF (no TIFF header); ignored"
    try:
        return exif_fields(piexif.load(blob)), None
    except Exception as e:  # piexif raises a zoo of types on damaged data
        return dict(EMPTY_EXIF_FIELDS), f"unreadable EXIF ({type(e).__name__}: {str(e)[:80]}); ignored"


def read_exif_fields(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The catalog's EXIF columns for a file (camera, lens, capture time, ISO, exposure, focal length, GPS)."""
    p = Path(path)
    data = _read(p)
    try:
        im, _fmt, _data = _open_checked(data, p.suffix.lower())
    except ImageError:
        return _exif_from(data, p.suffix.lower())[0]
    with im:
        if p.suffix.lower() in RAW_EXTENSIONS and data[:4] in (b"II*\x00", b"MM\x00*"):
            return _exif_from(data, p.suffix.lower())[0]
        return _exif_from(data, p.suffix.lower(), im)[0]


def _exif_from(data: bytes, ext: str, im: Image.Image | None = None) -> tuple[dict[str, Any], str | None, bytes | None]:
    """EXIF fields, a warning, and the raw EXIF block (TIFF bytes, for export) of a file.

    The block comes from the opened image when Pillow found one (JPEG APP1, PNG eXIf, WebP, HEIF);
    TIFF files and TIFF-based RAW files are read by piexif directly from their IFD0.
    """
    raw: bytes | None = None
    if im is not None:
        info_exif = im.info.get("exif")
        if isinstance(info_exif, bytes) and info_exif:
            raw = info_exif[6:] if info_exif.startswith(b"Exif\x00\x00") else info_exif
    if raw is not None:
        fields, warning = parse_exif(raw)
        return fields, warning, raw
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        fields, warning = parse_exif(data)
        return fields, warning, None
    return dict(EMPTY_EXIF_FIELDS), None, None


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as e:
        raise ImageError("file not found (deleted or moved)", "vanished") from e
    except PermissionError as e:
        raise ImageError("permission denied: cannot read the file", "permission") from e
    except IsADirectoryError as e:
        raise ImageError("is a directory, not a file", "not_image") from e
    except OSError as e:
        raise ImageError(f"cannot read the file: {e.strerror or e}", "io") from e


def _describe_non_image(data: bytes) -> str:
    head = data[:512].lstrip()
    low = head.lower()
    if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low or b"<head" in low or b"<body" in low:
        return "not an image: the file is an HTML page (often a failed download saved as a photo)"
    if low.startswith(b"<?xml") or low.startswith(b"<svg"):
        return "not an image: the file is XML/SVG text"
    if low.startswith(b"%pdf"):
        return "not an image: the file is a PDF document"
    if low.startswith(b"pk\x03\x04"):
        return "not an image: the file is a ZIP archive"
    printable = set(string.printable.encode())
    sample = data[:512]
    if sample and sum(b in printable for b in sample) / len(sample) > 0.95:
        return "not an image: the file is plain text"
    return f"not an image: unrecognised format (starts with {data[:8].hex(' ')})"


def _is_truncation(msg: str) -> bool:
    msg = msg.lower()
    return any(s in msg for s in ("truncated", "broken data stream", "premature end", "unexpected end",
                                  "not enough data", "incomplete", "end of file", "buffer is not large enough"))


def _sniff_format(data: bytes, ext: str) -> str:
    if ext in RAW_EXTENSIONS:
        return "RAW/" + ext[1:].upper()
    return ""


def _fit(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = max_side / max(w, h)
    if s >= 1:
        return w, h
    return max(1, round(w * s)), max(1, round(h * s))


def _to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> (uint8 RGB, uint8 alpha or None); alpha composited on white."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode == "F" or arr.dtype.kind == "f":
            a = arr.astype(np.float32)
            hi = float(np.nanmax(a)) if a.size else 1.0
            a = a * (255.0 if hi <= 1.0 else 255.0 / max(hi, 1e-6))
        else:
            a = arr.astype(np.float32)
            hi = float(a.max()) if a.size else 0.0
            if mode.startswith("I;16") or hi > 255:
                a = a / (257.0 if hi <= 65535 else hi / 255.0)
        g = np.clip(np.nan_to_num(a) + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2)), None
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        alpha = rgba[:, :, 3]
        a = alpha[:, :, None].astype(np.uint16)
        rgb = ((rgba[:, :, :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
        return rgb, np.ascontiguousarray(alpha)
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im), None


def _open_checked(data: bytes, ext: str) -> tuple[Image.Image, str, bytes]:
    """Open (header only) and check; also returns the bytes opened (a RAW file's preview JPEG)."""
    fmt_hint = _sniff_format(data, ext)
    if fmt_hint.startswith("RAW/") and not data.startswith(b"\xff\xd8"):
        data = extract_raw_preview(data)
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageError(f"decompression bomb refused: a {len(data):,}-byte file claiming more pixels than "
                         f"the {MAX_PIXELS / 1e6:.0f} MP limit ({e})", "bomb") from e
    except UnidentifiedImageError as e:
        raise ImageError(_describe_non_image(data), "not_image") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        code = "truncated" if _is_truncation(str(e)) else "decode"
        raise ImageError(f"damaged image header: {e}", code) from e
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError(f"invalid image size {w}x{h}", "decode")
    if w * h > MAX_PIXELS:
        raise ImageError(f"decompression bomb refused: claims {w}x{h} pixels ({w * h / 1e6:.0f} MP) in a "
                         f"{len(data):,}-byte file; limit {MAX_PIXELS / 1e6:.0f} MP", "bomb")
    return im, fmt_hint or (im.format or "UNKNOWN"), data


def _dct_scale(full: tuple[int, int], target: tuple[int, int]) -> int:
    """The DCT scale Pillow's ``draft`` picks: the largest of 8, 4, 2, 1 that stays >= target."""
    ratio = min(full[0] // max(1, target[0]), full[1] // max(1, target[1]))
    return next(s for s in (8, 4, 2, 1) if ratio >= s)


def _jpeg_with_opencv(im: Image.Image, data: bytes, target: tuple[int, int]) -> np.ndarray | None:
    """Decode a plain 8-bit RGB or grey JPEG straight into NumPy with OpenCV, or None.

    Pillow keeps RGB as 4 bytes per pixel and copies it out into a packed array, which took about
    a third of a half-scale 12 MP decode (bench/bench_ingest.py); OpenCV's libjpeg-turbo writes the
    array directly, with the same DCT scaling and the same pixels, and releases the GIL for the
    whole call. Only for complete files (the last bytes are the end-of-image marker): a truncated
    or damaged file goes through Pillow, which reports it; so does anything OpenCV refuses.
    """
    if im.format not in ("JPEG", "MPO") or im.mode not in ("RGB", "L") or len(data) < 4:
        return None
    if data[-2:] != b"\xff\xd9" and data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return None
    import cv2

    s = _dct_scale(im.size, target)
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[s]
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    w, h = im.size
    if bgr is None or bgr.ndim != 3 or bgr.shape[:2] != (-(-h // s), -(-w // s)):
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _orient_array(a: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation on an array, as ``Image.transpose(_TRANSPOSE[orientation])`` does."""
    import cv2

    if orientation == 2:
        return cv2.flip(a, 1)
    if orientation == 3:
        return cv2.rotate(a, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(a, 0)
    if orientation == 5:
        return cv2.transpose(a)
    if orientation == 6:
        return cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(a), -1)
    if orientation == 8:
        return cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return a


def _orientation_of(im: Image.Image, fields: dict[str, Any]) -> int:
    o = fields.get("orientation")
    if isinstance(o, int) and 1 <= o <= 8:
        return o
    try:  # Pillow is more forgiving than piexif with damaged EXIF
        o2 = im.getexif().get(0x0112)
        if isinstance(o2, int) and 1 <= o2 <= 8:
            return o2
    except Exception:
        pass
    return 1


def decode(data: bytes, ext: str = "", max_side: int | None = None, reduce: int = 1,
           raw_exif_source: bytes | None = None,
           reduce_for: Callable[[int, int], int] | None = None) -> tuple[LoadedImage, dict[str, Any]]:
    """Decode bytes of a supported file; returns the image and its EXIF fields.

    ``max_side`` bounds the longest side of ``rgb`` (aspect kept); ``reduce`` asks for at most
    1/reduce of the full size; ``reduce_for(width, height)``, when given, chooses ``reduce``
    from the full size read in the header (one decode where a caller would otherwise decode
    once to learn the size). All use DCT scaling for JPEG, then an area-preserving resize.
    """
    with _capturing() as caught:
        img, fields = _decode(data, ext, max_side, reduce, reduce_for)
    if caught:
        extra = "; ".join(dict.fromkeys(f"decoder warning: {m}" for m in caught))
        img = LoadedImage(rgb=img.rgb, size=img.size, orientation=img.orientation, format=img.format, icc=img.icc,
                          exif=img.exif, alpha=img.alpha, warning=_join_warnings(img.warning, extra))
    return img, fields


def _decode(data: bytes, ext: str, max_side: int | None, reduce: int,
            reduce_for: Callable[[int, int], int] | None = None) -> tuple[LoadedImage, dict[str, Any]]:
    if not data:
        raise ImageError("empty file (0 bytes)", "empty")
    ext = ext.lower()
    is_raw = ext in RAW_EXTENSIONS
    im, fmt, opened = _open_checked(data, ext)
    frames = int(getattr(im, "n_frames", 1) or 1)
    frames_note = None
    if frames > 1:  # handled on purpose: the first frame or page, and said so
        kind = "pages" if (im.format or "") in ("TIFF", "MPO") else "frames"
        if (im.format or "") == "MPO":
            frames_note = None  # a camera's JPEG with a depth/preview image after it: a normal photo
        else:
            frames_note = (f"{'multi-page' if kind == 'pages' else 'animated'} image ({frames} {kind}): only the "
                           f"first is used; an enhanced copy is a still image")
    with im:
        if is_raw:
            # A TIFF-based RAW's own IFD0 carries camera and orientation; the preview JPEG's EXIF
            # (if any) fills in what the container lacks and is the block kept for export.
            fields, warning, _ = _exif_from(data, ext)
            pfields, pwarning, raw_exif = _exif_from(b"", ext, im)
            if fields["camera_model"] is None:
                fields, warning = pfields, pwarning
            elif fields["orientation"] is None:
                fields["orientation"] = pfields["orientation"]
        else:
            fields, warning, raw_exif = _exif_from(data, ext, im)
        orientation = _orientation_of(im, fields)
        fields["orientation"] = orientation
        fields["jpeg_quality"] = jpeg_table_quality(getattr(im, "quantization", None))
        full_w, full_h = im.size
        target = (full_w, full_h)
        if reduce_for is not None:
            reduce = max(1, int(reduce_for(full_w, full_h)))
        if reduce > 1:
            target = (max(1, full_w // reduce), max(1, full_h // reduce))
        if max_side is not None:
            # max_side is about the oriented image; the longest side is the same either way
            target = _fit(target[0], target[1], max_side)
        icc = im.info.get("icc_profile")
        fast = _jpeg_with_opencv(im, opened, target)
        if fast is not None:
            rgb = fast
            if (rgb.shape[1], rgb.shape[0]) != target:
                big = rgb.shape[1] >= 3 * target[0]
                rgb = np.asarray(Image.fromarray(rgb).resize(target, Image.Resampling.BICUBIC,
                                                             reducing_gap=2.0 if big else None))
            if orientation != 1:
                rgb = _orient_array(rgb, orientation)
            size = (full_h, full_w) if orientation in (5, 6, 7, 8) else (full_w, full_h)
            return LoadedImage(rgb=np.ascontiguousarray(rgb), size=size, orientation=orientation, format=fmt,
                               icc=icc if isinstance(icc, bytes) else None, exif=raw_exif, alpha=None,
                               warning=_join_warnings(warning, frames_note)), fields
        if target != (full_w, full_h) and im.format == "JPEG":
            im.draft(None, target)
        # the whole file in one decoder call: Pillow feeds its decoder 64 KiB at a time, releasing
        # and re-taking the GIL around each call, and beside a busy Python thread (the indexer's
        # writer, the assessor, a command still importing) every re-take waits for a switch
        # interval: 2-3x slower decodes in a thread pool (bench/bench_ingest.py)
        if isinstance(im, ImageFile.ImageFile):
            im.decodermaxblock = max(im.decodermaxblock, len(data))
        try:
            im.load()
        except Image.DecompressionBombError as e:
            raise ImageError(f"decompression bomb refused: {e}", "bomb") from e
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error) as e:
            msg = str(e)
            if _is_truncation(msg):
                raise ImageError(f"truncated or corrupt image data ({msg})", "truncated") from e
            raise ImageError(f"cannot decode image data ({msg})", "decode") from e
        except MemoryError as e:
            raise ImageError(f"not enough memory to decode a {full_w}x{full_h} image", "bomb") from e
        frame = im
        if frame.size != target:
            if frame.mode not in ("RGB", "RGBA", "L", "LA"):
                rgb0, alpha0 = _to_rgb(frame)
                frame = Image.fromarray(rgb0) if alpha0 is None else Image.fromarray(
                    np.dstack([rgb0, alpha0]), "RGBA")
            # bicubic: thumbnail/view quality at ~60% of Lanczos' cost; a reducing gap for big ratios
            big = frame.size[0] >= 3 * target[0]
            frame = frame.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0 if big else None)
        if orientation != 1:
            frame = frame.transpose(_TRANSPOSE[orientation])
        rgb, alpha = _to_rgb(frame)
    size = (full_h, full_w) if orientation in (5, 6, 7, 8) else (full_w, full_h)
    return LoadedImage(rgb=np.ascontiguousarray(rgb), size=size, orientation=orientation, format=fmt,
                       icc=icc if isinstance(icc, bytes) else None, exif=raw_exif, alpha=alpha,
                       warning=_join_warnings(warning, frames_note)), fields


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes; :class:`ImageError` with a clear reason when it cannot be read."""
    return _read(Path(path))


def load_image(path: str | os.PathLike[str], max_side: int | None = None, reduce: int = 1) -> LoadedImage:
    """Load a photo as oriented 8-bit RGB; raises :class:`ImageError` with a clear reason for bad files."""
    p = Path(path)
    data = _read(p)
    img, _fields = decode(data, p.suffix, max_side=max_side, reduce=reduce)
    return img

