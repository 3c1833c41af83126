"""engine.export.exifout: what an exported copy's EXIF keeps, changes and drops; PNG/TIFF writers."""

from __future__ import annotations

import io

import cv2
import numpy as np
import piexif
from PIL import Image

from engine.export import exifout
from tests.conftest import exif_bytes


def test_build_exif_keeps_capture_data_and_changes_what_must_change() -> None:
    src = exif_bytes(orientation=6, gps=True)
    thumb_src = np.zeros((600, 400, 3), np.uint8)
    ex = exifout.build_exif(src, (40, 60), '{"schema":1}', thumb_src)
    d = piexif.load(exifout.dump(ex))
    assert d["0th"][piexif.ImageIFD.Orientation] == 1
    assert d["0th"][piexif.ImageIFD.Software] == exifout.software_tag().encode()
    assert d["0th"][piexif.ImageIFD.Make] == b"TestCam"
    assert d["Exif"][piexif.ExifIFD.DateTimeOriginal] == b"2024:05:17 10:30:00"
    assert d["Exif"][piexif.ExifIFD.PixelXDimension] == 40
    assert d["GPS"][piexif.GPSIFD.GPSLatitude] == ((52, 1), (30, 1), (0, 1))
    assert exifout.read_recipe_record(d) == '{"schema":1}'
    assert Image.open(io.BytesIO(d["thumbnail"])).size == (107, 160)
    assert ex.warnings == []


def test_user_comment_is_kept_and_an_old_record_replaced() -> None:
    src = piexif.dump({"0th": {}, "Exif": {piexif.ExifIFD.UserComment: exifout.encode_user_comment("my note")},
                       "GPS": {}, "1st": {}, "thumbnail": None})
    first = piexif.load(exifout.dump(exifout.build_exif(src, (4, 4), '{"v":1}', None)))
    text = first["Exif"][piexif.ExifIFD.UserComment].decode()
    assert "my note" in text and exifout.read_recipe_record(first) == '{"v":1}'
    again = piexif.load(exifout.dump(exifout.build_exif(piexif.dump(first), (4, 4), '{"v":2}', None)))
    text2 = again["Exif"][piexif.ExifIFD.UserComment].decode()
    assert text2.count("photolift-recipe") == 1 and "my note" in text2
    assert exifout.read_recipe_record(again) == '{"v":2}'


def test_unwritable_tags_are_dropped_and_reported() -> None:
    ex = exifout.ExifOut({"0th": {}, "Exif": {piexif.ExifIFD.SceneType: 1, piexif.ExifIFD.ISOSpeedRatings: 100},
                          "GPS": {}, "Interop": {}, "1st": {}, "thumbnail": None}, [])
    d = piexif.load(exifout.dump(ex))
    assert d["Exif"][piexif.ExifIFD.ISOSpeedRatings] == 100 and piexif.ExifIFD.SceneType not in d["Exif"]
    assert ex.warnings == ["EXIF tag Exif.SceneType could not be written and was dropped"]


def test_unreadable_source_exif_is_a_warning_not_a_failure() -> None:
    ex = exifout.build_exif(b"Exif\x00\x00MM\x00*garbage", (4, 4), None, None)
    assert ex.warnings and "could not be read" in ex.warnings[0]
    d = piexif.load(exifout.dump(ex))
    assert d["0th"][piexif.ImageIFD.Orientation] == 1
    assert exifout.build_exif(b"nonsense", (4, 4), None, None).warnings


def test_png_chunks_and_16_bit_tiff_layout() -> None:
    rgb = (np.arange(6 * 5 * 3).reshape(6, 5, 3) * 1000 % 65536).astype(np.uint16)
    ex = exifout.build_exif(exif_bytes(gps=True), (5, 6), None, None)
    png = exifout.encode_png(rgb, exifout.dump(ex), None)
    back = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(back[..., ::-1], rgb)
    im = Image.open(io.BytesIO(png))
    im.load()
    assert im.getexif().get(0x010F) == "TestCam"
    tif = exifout.encode_tiff(rgb, exifout.build_exif(exif_bytes(gps=True), (5, 6), None, None), None)
    back = cv2.imdecode(np.frombuffer(tif, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(back[..., ::-1], rgb)
    # IFD0 entries in ascending tag order (TIFF 6.0), so strict readers accept the file
    n = int.from_bytes(tif[8:10], "big")
    tags = [int.from_bytes(tif[10 + 12 * i:12 + 12 * i], "big") for i in range(n)]
    assert tags == sorted(tags)


def test_a_large_maker_note_still_fits_a_jpeg() -> None:
    src = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Big"},
                       "Exif": {piexif.ExifIFD.MakerNote: bytes(62_000)}, "GPS": {}, "1st": {}, "thumbnail": None})
    noisy = np.random.default_rng(0).integers(0, 256, (900, 600, 3), dtype=np.uint8)  # a large thumbnail
    ex = exifout.build_exif(src, (600, 900), None, noisy)
    data = exifout.dump_for_jpeg(ex)
    assert len(data) <= exifout.APP1_LIMIT and ex.warnings
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=data)
    assert piexif.load(buf.getvalue())["0th"][piexif.ImageIFD.Make] == b"Big"
