"""EXIF for exported copies (piexif), and the container writers that need it (PNG, TIFF).

What an export carries over from the original, and what it changes:

* **kept**: every tag piexif can read and write back, in particular capture time
  (``DateTimeOriginal``/``DateTimeDigitized`` and their sub-seconds and offsets), camera
  (``Make``/``Model``/serial), lens (``LensMake``/``LensModel``/focal length...), exposure
  settings, the whole GPS IFD, ``ImageDescription``, copyright and artist.
* **changed**: ``Orientation`` is set to 1, because the exported pixels are always rendered
  upright (the original's orientation was applied when decoding); ``PixelXDimension`` /
  ``PixelYDimension`` give the exported size; ``Software`` is ``photolift <version>``; the
  embedded thumbnail (IFD1) is regenerated from the enhanced pixels (JPEG and PNG exports).
* **the recipe record** goes into ``Exif.UserComment`` (charset ``ASCII``) as
  ``photolift-recipe: <canonical recipe JSON>``, so the file says exactly which models and
  parameters made it. ``UserComment`` is chosen over ``ImageDescription`` because the
  description is the user's caption and many tools display it; if the original already had a
  ``UserComment`` its text is kept first and the record follows after `` | ``.
* **dropped**: tags that describe the old container (strip offsets, image width/length of a
  TIFF original, compression), and any tag piexif cannot write back (reported in ``warnings``).

The ICC profile is not EXIF; it is written by the container writer (JPEG ``icc_profile``,
PNG ``iCCP``, TIFF tag 34675).

TIFF output is written here rather than by Pillow because Pillow cannot write 16-bit RGB: the
TIFF is piexif's own big-endian TIFF structure (IFD0 with the image tags added, the Exif and
GPS sub-IFDs) followed by one uncompressed strip, so 8- and 16-bit TIFFs carry the same
complete EXIF. PNG is encoded by OpenCV (8 or 16 bit) and the ``iCCP`` and ``eXIf`` chunks are
inserted after ``IHDR``.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import piexif

from engine.enhance.recipes import app_version

RECIPE_PREFIX = "photolift-recipe: "
_ASCII_PREFIX = b"ASCII\x00\x00\x00"
THUMB_SIDE = 160
_THUMB_MAX_BYTES = 60_000

# Tags about the original container that would be wrong in a new file.
_CONTAINER_TAGS = {
    piexif.ImageIFD.ImageWidth, piexif.ImageIFD.ImageLength, piexif.ImageIFD.BitsPerSample,
    piexif.ImageIFD.Compression, piexif.ImageIFD.PhotometricInterpretation, piexif.ImageIFD.StripOffsets,
    piexif.ImageIFD.SamplesPerPixel, piexif.ImageIFD.RowsPerStrip, piexif.ImageIFD.StripByteCounts,
    piexif.ImageIFD.PlanarConfiguration, piexif.ImageIFD.TileWidth, piexif.ImageIFD.TileLength,
    piexif.ImageIFD.TileOffsets, piexif.ImageIFD.TileByteCounts, piexif.ImageIFD.SubIFDs,
    piexif.ImageIFD.JPEGInterchangeFormat, piexif.ImageIFD.JPEGInterchangeFormatLength,
    piexif.ImageIFD.InterColorProfile, piexif.ImageIFD.ExtraSamples, piexif.ImageIFD.SampleFormat,
    piexif.ImageIFD.Predictor, piexif.ImageIFD.NewSubfileType, piexif.ImageIFD.XMLPacket,
    # pointers; piexif rewrites them itself
    piexif.ImageIFD.ExifTag, piexif.ImageIFD.GPSTag,
}


@dataclass
class ExifOut:
    """The EXIF to write and what could not be carried over."""

    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def software_tag() -> str:
    return f"photolift {app_version()}"


def _decode_user_comment(v: Any) -> str:
    if not isinstance(v, bytes | bytearray):
        return ""
    b = bytes(v)
    if b[:8] == _ASCII_PREFIX:
        return b[8:].decode("ascii", "replace").strip("\x00 ").strip()
    if b[:8] == b"UNICODE\x00":
        body = b[8:]
        for enc in ("utf-16-be", "utf-16-le"):
            try:
                return body.decode(enc).strip("\x00 ").strip()
            except UnicodeDecodeError:
                continue
        return ""
    return b[8:].decode("utf-8", "replace").strip("\x00 ").strip() if len(b) > 8 else ""


def encode_user_comment(text: str) -> bytes:
    return _ASCII_PREFIX + text.encode("ascii", "backslashreplace")


def read_recipe_record(exif: dict[str, Any]) -> str | None:
    """The recipe JSON recorded in a piexif dict by :func:`build_exif`, or None."""
    text = _decode_user_comment(exif.get("Exif", {}).get(piexif.ExifIFD.UserComment))
    i = text.find(RECIPE_PREFIX)
    return text[i + len(RECIPE_PREFIX):] if i >= 0 else None


def load_source(src: bytes | None) -> tuple[dict[str, Any], list[str]]:
    """piexif dict of the original's EXIF (empty when there is none or it is unreadable)."""
    empty: dict[str, Any] = {"0th": {}, "Exif": {}, "GPS": {}, "Interop": {}, "1st": {}, "thumbnail": None}
    if not src:
        return empty, []
    blob = bytes(src)
    if blob[:2] == b"\xff\xd8":  # a whole JPEG: let piexif find APP1
        pass
    elif blob[:6] != b"Exif\x00\x00" and blob[:4] not in (b"II*\x00", b"MM\x00*"):
        return empty, ["the original's EXIF block is not in a known layout; it was not carried over"]
    try:
        d = piexif.load(blob)
    except Exception as e:  # piexif raises bare ValueError/struct.error/... on damaged blocks
        return empty, [f"the original's EXIF could not be read ({e}); it was not carried over"]
    for k in ("0th", "Exif", "GPS", "Interop", "1st"):
        d.setdefault(k, {})
    return d, []


def build_exif(src: bytes | None, size: tuple[int, int], recipe_json: str | None,
               thumbnail_rgb: np.ndarray | None) -> ExifOut:
    """The EXIF dict for an exported copy of ``size`` (w, h); see the module doc."""
    d, warnings = load_source(src)
    zeroth = {k: v for k, v in d["0th"].items() if k not in _CONTAINER_TAGS}
    zeroth[piexif.ImageIFD.Orientation] = 1
    zeroth[piexif.ImageIFD.Software] = software_tag().encode("ascii", "replace")
    exif = dict(d["Exif"])
    exif.pop(piexif.ExifIFD.InteroperabilityTag, None)
    w, h = size
    exif[piexif.ExifIFD.PixelXDimension] = int(w)
    exif[piexif.ExifIFD.PixelYDimension] = int(h)
    if recipe_json is not None:
        old = _decode_user_comment(exif.get(piexif.ExifIFD.UserComment))
        i = old.find(RECIPE_PREFIX)
        if i >= 0:  # an export of an export: replace our old record, keep the user's text
            old = old[:i].rstrip(" |")
        record = RECIPE_PREFIX + recipe_json
        exif[piexif.ExifIFD.UserComment] = encode_user_comment(f"{old} | {record}" if old else record)
    out: dict[str, Any] = {"0th": zeroth, "Exif": exif, "GPS": dict(d["GPS"]), "Interop": dict(d["Interop"]),
                           "1st": {}, "thumbnail": None}
    if thumbnail_rgb is not None:
        thumb = make_thumbnail(thumbnail_rgb)
        if thumb is not None:
            out["thumbnail"] = thumb
            out["1st"] = {piexif.ImageIFD.Compression: 6, piexif.ImageIFD.XResolution: (72, 1),
                          piexif.ImageIFD.YResolution: (72, 1), piexif.ImageIFD.ResolutionUnit: 2}
    return ExifOut(out, warnings)


def make_thumbnail(rgb: np.ndarray) -> bytes | None:
    """A small JPEG thumbnail (long side ``THUMB_SIDE``) under the 64 KB APP1 budget."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgb))
    im.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    for q in (85, 70, 50):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        if buf.tell() <= _THUMB_MAX_BYTES:
            return buf.getvalue()
    return None


def dump(ex: ExifOut) -> bytes:
    """``piexif.dump`` that drops (and reports) the tags it cannot write instead of failing.

    Returns bytes starting with ``Exif\\0\\0`` (the JPEG APP1 payload)."""
    try:
        return bytes(piexif.dump(ex.data))
    except Exception:
        pass
    for ifd in ("0th", "Exif", "GPS", "Interop"):
        for tag in list(ex.data[ifd]):
            probe: dict[str, Any] = {"0th": {}, "Exif": {}, "GPS": {}, "Interop": {}, "1st": {}, "thumbnail": None}
            probe[ifd] = {tag: ex.data[ifd][tag]}
            try:
                piexif.dump(probe)
            except Exception:
                name = piexif.TAGS.get("Image" if ifd == "0th" else ifd, {}).get(tag, {}).get("name", str(tag))
                ex.warnings.append(f"EXIF tag {ifd}.{name} could not be written and was dropped")
                del ex.data[ifd][tag]
    try:
        return bytes(piexif.dump(ex.data))
    except Exception as e:
        ex.warnings.append(f"the thumbnail could not be written ({e}); exported without it")
        ex.data["thumbnail"] = None
        ex.data["1st"] = {}
        return bytes(piexif.dump(ex.data))


APP1_LIMIT = 65533  # a JPEG segment holds at most 65535 bytes including its 2-byte length


def dump_for_jpeg(ex: ExifOut) -> bytes:
    """:func:`dump`, made to fit one JPEG APP1 segment: a too-large block first loses the
    thumbnail, then the maker note (both reported in ``warnings``)."""
    data = dump(ex)
    if len(data) > APP1_LIMIT and ex.data.get("thumbnail"):
        ex.data["thumbnail"] = None
        ex.data["1st"] = {}
        ex.warnings.append("the EXIF block was too large for JPEG with a thumbnail; written without it")
        data = dump(ex)
    if len(data) > APP1_LIMIT and piexif.ExifIFD.MakerNote in ex.data["Exif"]:
        del ex.data["Exif"][piexif.ExifIFD.MakerNote]
        ex.warnings.append("the EXIF block was too large for JPEG; the camera maker note was dropped")
        data = dump(ex)
    if len(data) > APP1_LIMIT:
        raise ValueError(f"the EXIF block is {len(data)} bytes, more than a JPEG can hold")
    return data


def tiff_body(exif_app1: bytes) -> bytes:
    """The TIFF structure inside an ``Exif\\0\\0`` APP1 payload (what PNG ``eXIf`` holds)."""
    return exif_app1[6:] if exif_app1[:6] == b"Exif\x00\x00" else exif_app1


# -- PNG ---------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray, exif_app1: bytes | None, icc: bytes | None) -> bytes:
    """PNG (8 or 16 bit from the array's dtype) with ``iCCP`` and ``eXIf`` chunks after IHDR."""
    import cv2

    bgr = np.ascontiguousarray(rgb[..., ::-1])
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    png = buf.tobytes()
    ihdr_end = 8 + 4 + 4 + 13 + 4
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif_app1:
        extra += _png_chunk(b"eXIf", tiff_body(exif_app1))
    return png[:ihdr_end] + extra + png[ihdr_end:]


# -- TIFF --------------------------------------------------------------------------------------

def encode_tiff(rgb: np.ndarray, ex: ExifOut, icc: bytes | None) -> bytes:
    """Uncompressed RGB TIFF (8 bit for uint8, 16 bit for uint16) with full EXIF and ICC."""
    if rgb.dtype not in (np.uint8, np.uint16) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("encode_tiff needs an HxWx3 uint8 or uint16 array")
    h, w = rgb.shape[:2]
    bits = 8 if rgb.dtype == np.uint8 else 16
    pixels = np.ascontiguousarray(rgb.astype(">u2") if bits == 16 else rgb).tobytes()
    data = dict(ex.data)
    data["1st"] = {}  # a TIFF's IFD1 is a second page, not a thumbnail
    data["thumbnail"] = None
    zeroth = dict(data["0th"])
    zeroth.update({
        piexif.ImageIFD.ImageWidth: int(w),
        piexif.ImageIFD.ImageLength: int(h),
        piexif.ImageIFD.BitsPerSample: (bits, bits, bits),
        piexif.ImageIFD.Compression: 1,
        piexif.ImageIFD.PhotometricInterpretation: 2,
        piexif.ImageIFD.SamplesPerPixel: 3,
        piexif.ImageIFD.RowsPerStrip: int(h),
        piexif.ImageIFD.StripByteCounts: len(pixels),
        piexif.ImageIFD.PlanarConfiguration: 1,
        piexif.ImageIFD.StripOffsets: 0,
    })
    zeroth.setdefault(piexif.ImageIFD.XResolution, (72, 1))
    zeroth.setdefault(piexif.ImageIFD.YResolution, (72, 1))
    zeroth.setdefault(piexif.ImageIFD.ResolutionUnit, 2)
    if icc:
        zeroth[piexif.ImageIFD.InterColorProfile] = icc
    data["0th"] = zeroth
    probe = ExifOut(data, ex.warnings)
    head = tiff_body(dump(probe))  # drops unwritable tags (reported), fixes the layout
    offset = len(head) + (len(head) & 1)
    probe.data["0th"][piexif.ImageIFD.StripOffsets] = offset
    head = tiff_body(bytes(piexif.dump(probe.data)))  # same length: StripOffsets is a fixed LONG
    if len(head) + (len(head) & 1) != offset:
        raise RuntimeError("TIFF layout changed between passes")
    head = _sort_ifd0(head)
    return head + b"\x00" * (offset - len(head)) + pixels


def _sort_ifd0(tiff: bytes) -> bytes:
    """piexif appends the Exif/GPS pointer entries after the other tags; TIFF wants IFD entries
    in ascending tag order (libtiff warns otherwise), and tag 34675 (ICC) sorts after 34665.
    Entries are self-contained 12-byte records, so sorting them in place is safe."""
    order = ">" if tiff[:2] == b"MM" else "<"
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    (n,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
    start = ifd + 2
    entries = [tiff[start + 12 * i:start + 12 * (i + 1)] for i in range(n)]
    entries.sort(key=lambda e: struct.unpack(order + "H", e[:2])[0])
    return tiff[:start] + b"".join(entries) + tiff[start + 12 * n:]
