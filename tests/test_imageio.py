"""Image I/O: every format and mode in, oriented 8-bit RGB out; bad files give a clear ImageError."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image

from engine.ingest import imageio
from engine.ingest.imageio import ImageError, extract_raw_preview, load_image, read_exif_fields
from tests.conftest import ImageFactory, exif_bytes, make_rgb


def _jpeg_bytes(w: int, h: int, exif: bytes | None = None, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    kw = {"exif": exif} if exif else {}
    Image.fromarray(make_rgb(w, h, seed)).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def test_supported_extensions_declared_once() -> None:
    for ext in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif", ".nef", ".cr2",
                ".arw", ".dng"):
        assert ext in imageio.SUPPORTED_EXTENSIONS
    assert ".txt" not in imageio.SUPPORTED_EXTENSIONS


@pytest.mark.parametrize("name", ["a.jpg", "a.png", "a.tif", "a.webp", "a.bmp"])
def test_standard_formats_round_trip(make_image: ImageFactory, name: str) -> None:
    p = make_image(name, 40, 30)
    img = load_image(p)
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == (30, 40, 3)
    assert img.size == (40, 30)
    if name.endswith((".png", ".tif", ".bmp")):  # lossless: exact pixels
        assert np.array_equal(img.rgb, make_rgb(40, 30))


def test_heic(tmp_path: Path) -> None:
    if not imageio.HAVE_HEIF:
        pytest.skip("pillow-heif not installed")
    p = tmp_path / "a.heic"
    Image.fromarray(make_rgb(64, 48)).save(p, format="HEIF", quality=90)
    img = load_image(p)
    assert img.rgb.shape == (48, 64, 3) and img.format == "HEIF"
    assert np.abs(img.rgb.astype(int) - make_rgb(64, 48)).mean() < 12


@pytest.mark.parametrize("orientation,expect", [(1, (40, 30)), (3, (40, 30)), (6, (30, 40)), (8, (30, 40)),
                                                (5, (30, 40))])
def test_exif_orientation_applied(make_image: ImageFactory, orientation: int, expect: tuple[int, int]) -> None:
    # a left-bright image; after a 90-degree rotation the bright side moves
    p = make_image("r.jpg", 40, 30, exif=exif_bytes(orientation=orientation))
    img = load_image(p)
    assert img.size == expect and img.orientation == orientation
    assert img.rgb.shape[:2] == (expect[1], expect[0])
    ref = np.asarray(Image.open(p).transpose(imageio._TRANSPOSE[orientation])) if orientation != 1 else \
        np.asarray(Image.open(p))
    assert np.array_equal(img.rgb, ref)


def test_reduced_decode_uses_dct_scaling_and_keeps_full_size(make_image: ImageFactory) -> None:
    p = make_image("big.jpg", 800, 600, exif=exif_bytes(orientation=6))
    small = load_image(p, max_side=100)
    assert small.size == (600, 800)
    assert max(small.rgb.shape[:2]) == 100 and small.rgb.shape[:2] == (100, 75)
    half = load_image(p, reduce=2)
    assert half.rgb.shape[:2] == (400, 300)
    full = load_image(p)
    ref = np.asarray(Image.fromarray(full.rgb).resize((300, 400), Image.Resampling.BOX)).astype(int)
    assert np.abs(half.rgb.astype(int) - ref).mean() < 6


def test_cmyk_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    img = load_image(p)
    assert img.rgb.shape == (10, 20, 3)
    r, g, b = img.rgb[5, 10].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16bit_gray_png_and_tiff(tmp_path: Path) -> None:
    g = np.tile(np.linspace(0, 65535, 50).astype(np.uint16), (20, 1))
    for name in ("g16.png", "g16.tif"):
        Image.fromarray(g).save(tmp_path / name)
        img = load_image(tmp_path / name)
        assert img.rgb.shape == (20, 50, 3)
        assert img.rgb[0, 0, 0] == 0 and img.rgb[0, -1, 0] == 255
        assert np.all(np.diff(img.rgb[0, :, 1].astype(int)) >= 0)


def test_16bit_rgb_tiff(tmp_path: Path) -> None:
    import cv2

    a = np.zeros((10, 12, 3), np.uint16)
    a[..., 2] = 65535  # red in BGR order
    a[..., 1] = 32768
    cv2.imwrite(str(tmp_path / "rgb16.tif"), a)
    img = load_image(tmp_path / "rgb16.tif")
    r, g, b = img.rgb[0, 0].astype(int)
    assert r == 255 and 120 <= g <= 135 and b == 0


def test_palette_alpha_grayscale_tiny(tmp_path: Path) -> None:
    Image.fromarray(make_rgb(30, 20)).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").rgb.shape == (20, 30, 3)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.alpha is not None and img.alpha[0, 0] == 255 and img.alpha[7, 0] == 0
    assert tuple(img.rgb[0, 0]) == (255, 0, 0) and tuple(img.rgb[7, 0]) == (255, 255, 255)
    Image.fromarray(make_rgb(30, 20)).convert("L").save(tmp_path / "g.jpg")
    gi = load_image(tmp_path / "g.jpg")
    assert gi.rgb.shape == (20, 30, 3) and np.array_equal(gi.rgb[..., 0], gi.rgb[..., 2])
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "one.png")
    one = load_image(tmp_path / "one.png", max_side=256)
    assert one.rgb.shape == (1, 1, 3) and tuple(one.rgb[0, 0]) == (10, 20, 30)
    Image.new("1", (9, 9), 1).save(tmp_path / "bw.bmp")
    assert load_image(tmp_path / "bw.bmp").rgb[0, 0, 0] == 255


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets our module filter
def test_very_large_jpeg_reduced(tmp_path: Path) -> None:
    # 12000 x 9000 = 108 MP: above Pillow's warning threshold, below the hard limit; flat so it is quick
    p = tmp_path / "huge.jpg"
    Image.new("RGB", (12000, 9000), (90, 120, 150)).save(p, quality=70)
    img = load_image(p, max_side=256)
    assert img.size == (12000, 9000) and max(img.rgb.shape) == 256


def test_zero_byte(tmp_path: Path) -> None:
    (tmp_path / "z.jpg").write_bytes(b"")
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "z.jpg")
    assert e.value.code == "empty" and "empty" in e.value.reason


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = _jpeg_bytes(200, 150)
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "t.jpg")
    assert e.value.code == "truncated" and "truncated" in e.value.reason
    with pytest.raises(ImageError):  # the reduced path must not hide it
        load_image(tmp_path / "t.jpg", max_side=64)


def test_html_and_text_named_jpg(tmp_path: Path) -> None:
    (tmp_path / "h.jpg").write_text("<!DOCTYPE html><html><head><title>404</title></head></html>")
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "h.jpg")
    assert e.value.code == "not_image" and "HTML" in e.value.reason
    (tmp_path / "t.jpg").write_text("just some notes\n" * 10)
    with pytest.raises(ImageError) as e2:
        load_image(tmp_path / "t.jpg")
    assert "plain text" in e2.value.reason


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + \
        chunk(b"IEND", b"")


def test_decompression_bomb(tmp_path: Path) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(60000, 60000))
    assert p.stat().st_size < 1000
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert e.value.code == "bomb" and "decompression bomb" in e.value.reason
    # a JPEG whose SOF claims 65000 x 65000
    data = bytearray(_jpeg_bytes(16, 16))
    i = data.find(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", 65000, 65000)
    (tmp_path / "bomb.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageError) as e2:
        load_image(tmp_path / "bomb.jpg")
    assert e2.value.code == "bomb"


def test_broken_exif_is_a_warning_not_an_error(tmp_path: Path) -> None:
    good = _jpeg_bytes(32, 24, exif=exif_bytes(orientation=6))
    i = good.find(b"Exif\x00\x00")
    assert i > 0
    broken = bytearray(good)
    broken[i + 6:i + 40] = b"\xde\xad" * 17  # smash the TIFF header and IFD0
    (tmp_path / "b.jpg").write_bytes(bytes(broken))
    img = load_image(tmp_path / "b.jpg")
    assert img.rgb.shape[:2] in ((24, 32), (32, 24))
    assert img.warning and "EXIF" in img.warning
    # the reason speaks of the EXIF, not of a file (piexif takes bad bytes for a file name)
    assert "no such file" not in img.warning.lower() and "TIFF header" in img.warning
    assert read_exif_fields(tmp_path / "b.jpg")["camera_model"] is None


def test_exif_fields(make_image: ImageFactory) -> None:
    p = make_image("e.jpg", exif=exif_bytes(make="Nikon", model="Z 6", iso=800, gps=True))
    f = read_exif_fields(p)
    assert f["camera_make"] == "Nikon" and f["camera_model"] == "Z 6" and f["iso"] == 800
    assert f["lens"] == "TestLens 50mm" and f["has_gps"] is True
    assert f["exposure_time"] == pytest.approx(1 / 250) and f["f_number"] == pytest.approx(2.8)
    assert f["focal_length"] == 50.0 and f["captured_at"].year == 2024
    png = make_image("e.png", exif=exif_bytes(model="PNGCam"))
    assert read_exif_fields(png)["camera_model"] == "PNGCam"


def _fake_raw(tmp_path: Path, name: str = "x.nef") -> tuple[Path, bytes]:
    """A TIFF-headed container with a small thumbnail JPEG and a larger preview JPEG inside,
    separated by binary junk (including stray FF D8 bytes), like a real RAW file's layout."""
    tiff_exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"RawCam", piexif.ImageIFD.Model: b"R1",
                                     piexif.ImageIFD.Orientation: 6}, "Exif": {}, "GPS": {}})
    thumb = _jpeg_bytes(16, 12, seed=1)
    preview = _jpeg_bytes(120, 80, seed=2)
    rng = np.random.default_rng(0)
    junk = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes() + b"\xff\xd8\x00\x00"
    data = tiff_exif[6:] + junk + thumb + junk + preview + junk  # strip "Exif\0\0": a RAW starts with II*
    p = tmp_path / name
    p.write_bytes(data)
    return p, preview


def test_raw_embedded_preview(tmp_path: Path) -> None:
    p, preview = _fake_raw(tmp_path)
    assert extract_raw_preview(p.read_bytes()) == preview
    img = load_image(p)
    assert img.format == "RAW/NEF"
    assert img.orientation == 6 and img.size == (80, 120)  # container orientation applied to the preview
    assert read_exif_fields(p)["camera_model"] == "R1"
    (tmp_path / "empty.cr2").write_bytes(b"II*\x00" + b"\x00" * 4000)
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "empty.cr2")
    assert "preview" in e.value.reason


def test_missing_and_permission(tmp_path: Path, lock_file) -> None:  # type: ignore[no-untyped-def]

    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "nope.jpg")
    assert e.value.code == "vanished"
    p = tmp_path / "locked.jpg"
    p.write_bytes(_jpeg_bytes(8, 8))
    lock_file(p)
    with pytest.raises(ImageError) as e2:
        load_image(p)
    assert e2.value.code == "permission"


def test_jpeg_quality_is_read_from_the_quantisation_table() -> None:
    """Every libjpeg quality is read back exactly from the file's table (no pixels decoded), a
    reduced-scale decode reports it too, and other formats have none."""
    from engine.ingest.imageio import decode, jpeg_table_quality

    rng = np.random.default_rng(0)
    a = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    for q in (5, 23, 50, 71, 72, 75, 90, 95, 100):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=q)
        assert jpeg_table_quality(Image.open(io.BytesIO(buf.getvalue())).quantization) == q
        assert decode(buf.getvalue(), ".jpg", reduce=2)[1]["jpeg_quality"] == q
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    assert decode(buf.getvalue(), ".png")[1]["jpeg_quality"] is None
    assert jpeg_table_quality(None) is None and jpeg_table_quality({0: [0] * 64}) is None


@pytest.mark.parametrize("kind", ["baseline", "progressive", "grey", "odd"])
def test_jpeg_through_opencv_gives_pillows_pixels(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The OpenCV decode of plain JPEGs (no Pillow copy) must give exactly what Pillow's path
    gives: same DCT scale, same orientation for all eight EXIF values, same resize afterwards."""
    w, h = (203, 131) if kind == "odd" else (240, 160)
    base = Image.fromarray(make_rgb(w, h, seed=5))
    if kind == "grey":
        base = base.convert("L")
    used: list[bool] = []
    real = imageio._jpeg_with_opencv

    def counting(*a):  # type: ignore[no-untyped-def]
        r = real(*a)
        used.append(r is not None)
        return r

    for orientation in range(1, 9):
        buf = io.BytesIO()
        base.save(buf, "JPEG", quality=88, progressive=kind == "progressive",
                  exif=exif_bytes(orientation=orientation))
        data = buf.getvalue()
        for kw in ({}, {"reduce": 2}, {"reduce": 4}, {"max_side": 50}):
            monkeypatch.setattr(imageio, "_jpeg_with_opencv", counting)
            fast, ffast = imageio.decode(data, ".jpg", **kw)  # type: ignore[arg-type]
            monkeypatch.setattr(imageio, "_jpeg_with_opencv", lambda *a: None)
            slow, fslow = imageio.decode(data, ".jpg", **kw)  # type: ignore[arg-type]
            assert fast.rgb.shape == slow.rgb.shape and fast.size == slow.size, (orientation, kw)
            assert np.array_equal(fast.rgb, slow.rgb), (orientation, kw)
            assert fast.orientation == slow.orientation == orientation and ffast == fslow
    assert used and all(used)


def test_a_truncated_jpeg_is_not_decoded_by_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _jpeg_bytes(120, 80)
    assert imageio._jpeg_with_opencv(Image.open(io.BytesIO(data)), data, (60, 40)) is not None
    cut = data[: len(data) * 2 // 3]
    assert imageio._jpeg_with_opencv(Image.open(io.BytesIO(cut)), cut, (60, 40)) is None
    with pytest.raises(ImageError) as e:
        imageio.decode(cut, ".jpg", reduce=2)
    assert e.value.code == "truncated"
