"""Export: formats and bit depths, metadata read back with piexif AND Pillow (and OpenCV for 16
bit), names and sub-folders, never overwriting, atomic writes, and every bad case: disk full,
folder not writable, folder inside the library, source changed or gone, kill -9 mid-export.
A full enhance-and-export run leaves every original byte-identical."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import piexif
import pytest
from PIL import Image

import engine.export.exporter as X
from db.catalog import Catalog
from engine.enhance.edits import Editor
from engine.enhance.recipes import from_json
from engine.export.exifout import read_recipe_record
from engine.export.exporter import Exporter, OutputDirError, render_name
from tests.conftest import ImageFactory, exif_bytes
from tests.pipeline_fixtures import hash_tree, index, install_no_scorer, setup_models

ROOT = Path(__file__).resolve().parents[1]
def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


ICC = _srgb_icc()


@pytest.fixture
def lib(tmp_path: Path, make_image: ImageFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """photos/a.jpg (orientation 6, GPS, ICC), photos/sub/b.jpg, photos/sub/deeper/c.png."""
    setup_models(tmp_path, monkeypatch, "gain", gain=0.5)
    install_no_scorer(monkeypatch)
    a = make_image("a.jpg", 60, 40, exif=exif_bytes(orientation=6, gps=True), seed=1)
    with Image.open(a) as im:
        im.load()
        im.save(a, "JPEG", quality=92, exif=exif_bytes(orientation=6, gps=True), icc_profile=ICC)
    make_image("sub/b.jpg", 50, 30, exif=True, seed=2)
    make_image("sub/deeper/c.png", 40, 40, seed=3)
    return tmp_path / "photos"


def _enhanced(cat: Catalog, root: Path) -> list[int]:
    ids = index(cat, root)
    for r in Editor(cat).enhance_batch(ids, ops="restore", apply_if_no_gain=True):
        assert r.applied, r
    return ids


def _exif_both(path: Path) -> tuple[dict[str, Any], Any]:
    """(piexif's reading, Pillow's reading); piexif reads PNG's eXIf chunk via its bytes."""
    im = Image.open(path)
    im.load()  # Pillow reads PNG's eXIf chunk with the pixels
    pil = im.getexif()
    raw = im.info.get("exif")
    pe = piexif.load(raw if path.suffix == ".png" else str(path))
    return pe, pil


def test_jpeg_export_carries_metadata_resets_orientation_and_keeps_icc(
        tmp_catalog: Catalog, lib: Path, tmp_path: Path) -> None:
    ids = _enhanced(tmp_catalog, lib)
    out = tmp_path / "out"
    res = list(Exporter(tmp_catalog).export(ids, out, fmt="jpeg", quality=90))
    assert [r.status for r in res] == ["ok", "ok", "ok"], res
    a = out / "a_enhanced.jpg"
    assert Path(res[0].out_path or "") == a
    with Image.open(a) as im:
        assert im.size == (40, 60)  # orientation 6 applied to the pixels
        assert im.info.get("icc_profile") == ICC
        src_px = np.asarray(Image.open(lib / "a.jpg").transpose(Image.Transpose.ROTATE_270), np.float64)
        assert abs(np.asarray(im, np.float64).mean() - src_px.mean() * 0.5) < 3  # the enhanced pixels
    pe, pil = _exif_both(a)
    # piexif
    assert pe["0th"][piexif.ImageIFD.Orientation] == 1
    assert pe["0th"][piexif.ImageIFD.Make] == b"TestCam" and pe["0th"][piexif.ImageIFD.Model] == b"T-1000"
    assert pe["0th"][piexif.ImageIFD.Software].startswith(b"photolift ")
    assert pe["Exif"][piexif.ExifIFD.DateTimeOriginal] == b"2024:05:17 10:30:00"
    assert pe["Exif"][piexif.ExifIFD.LensModel] == b"TestLens 50mm"
    assert pe["Exif"][piexif.ExifIFD.PixelXDimension] == 40 and pe["Exif"][piexif.ExifIFD.PixelYDimension] == 60
    assert pe["GPS"][piexif.GPSIFD.GPSLatitudeRef] == b"N"
    assert pe["GPS"][piexif.GPSIFD.GPSLatitude] == ((52, 1), (30, 1), (0, 1))
    rec = read_recipe_record(pe)
    assert rec is not None and from_json(rec).stages[0].name == "restore"
    thumb = Image.open(io.BytesIO(pe["thumbnail"]))
    assert thumb.size[0] < thumb.size[1]  # refreshed from the upright enhanced pixels (the old one was none)
    # Pillow, a second reader
    assert pil.get(0x0112) == 1 and pil.get(0x010F) == "TestCam" and str(pil.get(0x0131)).startswith("photolift")
    assert pil.get_ifd(0x8769).get(0x9003) == "2024:05:17 10:30:00"
    gps = pil.get_ifd(0x8825)
    assert gps.get(1) == "N" and tuple(float(x) for x in gps.get(2)) == (52.0, 30.0, 0.0)
    # mirrored sub-folders
    assert (out / "sub" / "b_enhanced.jpg").is_file() and (out / "sub" / "deeper" / "c_enhanced.jpg").is_file()


@pytest.mark.parametrize("fmt, bits, ext", [("png", 8, ".png"), ("png", 16, ".png"), ("tiff", 8, ".tif"),
                                            ("tiff", 16, ".tif")])
def test_png_and_tiff_8_and_16_bit(tmp_catalog: Catalog, lib: Path, tmp_path: Path, fmt: str, bits: int,
                                   ext: str) -> None:
    ids = _enhanced(tmp_catalog, lib)
    out = tmp_path / f"out-{fmt}{bits}"
    res = list(Exporter(tmp_catalog).export(ids[:1], out, fmt=fmt, bits=bits))
    assert res[0].status == "ok", res
    p = out / f"a_enhanced{ext}"
    arr = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    assert arr.dtype == (np.uint16 if bits == 16 else np.uint8) and arr.shape == (60, 40, 3)
    if bits == 16:  # real 16-bit data, not 8-bit values scaled up
        assert np.any(arr % 257 != 0)
    pe, pil = _exif_both(p)
    assert pe["0th"][piexif.ImageIFD.Orientation] == 1 and pil.get(0x0112) == 1
    assert pe["GPS"][piexif.GPSIFD.GPSLatitudeRef] == b"N" and pil.get_ifd(0x8825).get(1) == "N"
    assert pe["Exif"][piexif.ExifIFD.DateTimeOriginal] == b"2024:05:17 10:30:00"
    assert pil.get(0x010F) == "TestCam"
    assert read_recipe_record(pe) is not None
    with Image.open(p) as im:
        assert im.info.get("icc_profile") == ICC
        assert im.size == (40, 60)


def test_never_overwrites_and_reruns_skip_what_is_done(tmp_catalog: Catalog, lib: Path, tmp_path: Path) -> None:
    ids = _enhanced(tmp_catalog, lib)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_enhanced.jpg").write_bytes(b"someone else's file")
    res = list(Exporter(tmp_catalog).export(ids[:1], out))
    assert res[0].out_path == str(out / "a_enhanced (2).jpg")
    assert (out / "a_enhanced.jpg").read_bytes() == b"someone else's file"
    again = list(Exporter(tmp_catalog).export(ids[:1], out))
    assert again[0].status == "skipped" and again[0].out_path == res[0].out_path
    png = list(Exporter(tmp_catalog).export(ids[:1], out, fmt="png"))  # another format is another file
    assert png[0].status == "ok" and png[0].out_path == str(out / "a_enhanced.png")


def test_template_fields_and_safety() -> None:
    f = {"name": "IMG_1", "stem": "IMG_1", "id": 7, "gain": "+0.50", "ext": "jpg", "date": "20240517", "camera": "X"}
    assert render_name("{date}_{name}_{id}{gain}", f) == "20240517_IMG_1_7+0.50"
    assert render_name("../{name}/x", f) == "_IMG_1_x"  # cannot leave the folder
    with pytest.raises(ValueError, match="unknown field"):
        render_name("{nope}", f)
    with pytest.raises(ValueError, match="no field"):
        render_name("fixed", f)


def test_output_inside_the_library_or_unwritable_is_refused(tmp_catalog: Catalog, lib: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _enhanced(tmp_catalog, lib)
    ex = Exporter(tmp_catalog)
    with pytest.raises(OutputDirError, match="inside the library"):
        ex.export(ids, lib / "exports")
    assert not (lib / "exports").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputDirError, match="cannot create"):
        ex.export(ids, blocker / "out")

    def denied(folder: Path) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(X, "_mkstemp", denied)
    with pytest.raises(OutputDirError, match="not writable"):
        ex.export(ids, tmp_path / "ro")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root ignores permissions")
def test_read_only_folder_really_refused(tmp_catalog: Catalog, lib: Path, tmp_path: Path) -> None:
    ids = _enhanced(tmp_catalog, lib)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputDirError, match="not writable"):
            Exporter(tmp_catalog).export(ids, ro)
    finally:
        ro.chmod(0o700)


def test_disk_full_writes_nothing_under_a_final_name_and_stops(tmp_catalog: Catalog, lib: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _enhanced(tmp_catalog, lib)
    before = hash_tree(lib)
    real = X._write_fd

    def half_then_full(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(X, "_write_fd", half_then_full)
    out = tmp_path / "out"
    res = list(Exporter(tmp_catalog).export(ids, out))
    assert [r.status for r in res] == ["error"] * 3
    assert "disk is full" in (res[0].error or "") and res[0].fatal
    assert all("export stopped" in (r.error or "") for r in res[1:])
    assert [p for p in out.rglob("*") if p.is_file()] == []  # no final file, no temp file
    assert hash_tree(lib) == before
    monkeypatch.setattr(X, "_write_fd", real)  # space freed: the rerun completes
    assert [r.status for r in Exporter(tmp_catalog).export(ids, out)] == ["ok"] * 3


def test_changed_or_gone_source_is_an_error_for_that_photo_only(tmp_catalog: Catalog, lib: Path, tmp_path: Path,
                                                                make_image: ImageFactory) -> None:
    ids = _enhanced(tmp_catalog, lib)
    make_image("a.jpg", 60, 40, seed=42)  # replaced since it was indexed, scored and enhanced
    (lib / "sub" / "b.jpg").unlink()
    res = list(Exporter(tmp_catalog).export(ids, tmp_path / "out"))
    assert res[0].status == "error" and "changed since it was indexed" in (res[0].error or "")
    assert res[1].status == "error" and "gone" in (res[1].error or "")
    assert res[2].status == "ok"  # the batch went on


def test_only_enhanced_and_unedited_photos(tmp_catalog: Catalog, lib: Path, tmp_path: Path) -> None:
    ids = index(tmp_catalog, lib)
    ex = Exporter(tmp_catalog)
    res = list(ex.export(ids[:1], tmp_path / "o1", only_enhanced=True))
    assert res[0].status == "skipped" and res[0].error == "not enhanced"
    res = list(ex.export(ids[:1], tmp_path / "o2", template="{name}_copy"))
    assert res[0].status == "ok" and not res[0].enhanced
    pe, _ = _exif_both(Path(res[0].out_path or ""))
    assert read_recipe_record(pe) is None and pe["0th"][piexif.ImageIFD.Orientation] == 1


def test_originals_are_byte_identical_after_enhance_and_export(tmp_catalog: Catalog, lib: Path,
                                                               tmp_path: Path) -> None:
    before = hash_tree(lib)
    stat_before = {p: p.stat().st_mtime_ns for p in lib.rglob("*") if p.is_file()}
    ids = index(tmp_catalog, lib)
    ed = Editor(tmp_catalog)
    list(ed.enhance_batch(ids, apply_if_no_gain=True))
    ed.preview(ids[0], 64)
    ed.undo(ids[1])
    ed.redo(ids[1])
    for fmt, bits in (("jpeg", 8), ("png", 16), ("tiff", 16), ("tiff", 8)):
        res = list(Exporter(tmp_catalog).export(ids, tmp_path / "out", fmt=fmt, bits=bits))
        assert [r.status for r in res] == ["ok"] * 3, res
    assert hash_tree(lib) == before
    assert {p: p.stat().st_mtime_ns for p in lib.rglob("*") if p.is_file()} == stat_before


def test_kill_9_mid_export_leaves_no_partial_file_and_the_rerun_completes(
        tmp_path: Path, make_image: ImageFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    models = setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    for i in range(4):
        make_image(f"k{i}.jpg", 40, 30, seed=i)
    url = str(tmp_path / "cat.sqlite")
    cat = Catalog.open(url)
    ids = _enhanced(cat, tmp_path / "photos")
    cat.close()
    out = tmp_path / "out"
    marker = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import sys, time, os
        sys.path.insert(0, {str(ROOT)!r})
        import engine.export.exporter as X
        from db.catalog import Catalog
        real = X._write_fd
        n = [0]
        def slow(fd, data):
            n[0] += 1
            if n[0] == 3:  # the third photo: half written, then killed
                real(fd, data[: len(data) // 2])
                os.fsync(fd)
                open({str(marker)!r}, "w").close()
                time.sleep(60)
            real(fd, data)
        X._write_fd = slow
        cat = Catalog.open({url!r})
        for r in X.Exporter(cat).export({ids!r}, {str(out)!r}):
            print(r.status, r.out_path, flush=True)
    """)
    env = dict(os.environ, PHOTOLIFT_MODELS=str(models), PHOTOLIFT_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finals = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    temps = [p for p in out.iterdir() if p.name.endswith(".part")]
    assert finals == ["k0_enhanced.jpg", "k1_enhanced.jpg"] and len(temps) == 1
    for f in finals:  # what is under a final name is complete
        with Image.open(out / f) as im:
            im.load()
    cat = Catalog.open(url)
    try:
        res = list(Exporter(cat).export(ids, out))
    finally:
        cat.close()
    assert [r.status for r in res] == ["skipped", "skipped", "ok", "ok"]
    assert sorted(p.name for p in out.iterdir()) == [f"k{i}_enhanced.jpg" for i in range(4)]  # temp cleaned


def test_a_recipe_made_on_older_content_is_not_exported(tmp_catalog: Catalog, lib: Path, tmp_path: Path,
                                                        make_image: ImageFactory) -> None:
    ids = _enhanced(tmp_catalog, lib)
    make_image("a.jpg", 60, 40, seed=7)  # changed after the enhance...
    index(tmp_catalog, lib)  # ...and re-indexed, so the catalog knows the new content
    res = list(Exporter(tmp_catalog).export(ids, tmp_path / "out"))
    assert res[0].status == "error" and "changed since it was enhanced" in (res[0].error or "")
    assert [r.status for r in res[1:]] == ["ok", "ok"]


def test_cancel_stops_between_photos_and_progress_has_an_estimate(tmp_catalog: Catalog, lib: Path,
                                                                  tmp_path: Path) -> None:
    from engine.core.jobs import CancelToken, JobCancelled, Progress

    ids = _enhanced(tmp_catalog, lib)
    tok = CancelToken()
    seen: list[Progress] = []
    it = Exporter(tmp_catalog).export(ids, tmp_path / "out", progress=seen.append, cancel=tok)
    first = next(it)
    assert first.status == "ok"
    tok.cancel()
    with pytest.raises(JobCancelled):
        next(it)
    assert [p.name for p in (tmp_path / "out").iterdir() if p.is_file()] == ["a_enhanced.jpg"]
    assert seen[0].done == 0 and seen[-1].done == 1 and seen[-1].total == 3
    assert "left" in seen[-1].message
