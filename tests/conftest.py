"""Shared fixtures: a throw-away catalog and a factory of small test images.

Kept small on purpose; area-specific fixtures live in the area's own test files.
"""

from __future__ import annotations

import gc
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from db.catalog import Catalog
from tests.pg_server import pg_server, pg_url  # noqa: F401 - fixtures: a real PostgreSQL server

# The suite runs headless (CI, no display): Qt must use its offscreen platform. Set before any
# test module imports PySide6; an explicit setting (e.g. xvfb for screenshots) wins.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


# Test modules whose catalog tests run on SQLite and on a real PostgreSQL server (tests/pg_server.py):
# every test there that uses ``tmp_catalog`` or ``catalog_url`` runs once per back end.
BOTH_BACKENDS = {"test_catalog", "test_migrations", "test_read_model", "test_scoring", "test_finetune",
                 "test_indexer", "test_export", "test_consistency", "test_gui_model", "test_postgres", "test_edits",
                 "test_idempotent_jobs", "test_ingest", "test_odd_files", "test_diskcache", "test_quality",
                 "test_defects"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "catalog_url" in metafunc.fixturenames and metafunc.module.__name__.split(".")[-1] in BOTH_BACKENDS:
        metafunc.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def _collect_cycles_between_tests() -> Iterator[None]:
    """As the app does (``app.qtfix.MainThreadCollector``): no automatic cyclic collection in the
    middle of a test, where it could land inside a Qt paint event and delete a widget or pixmap being
    painted (a segmentation fault with PySide6 6.11.3); cycles are collected between tests."""
    gc.disable()
    yield
    gc.collect()


@pytest.fixture
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's catalog lives: a SQLite file in ``tmp_path``, or (parametrised, see
    BOTH_BACKENDS) a new database on the test PostgreSQL server."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "catalog.sqlite")


@pytest.fixture
def tmp_catalog(catalog_url: str) -> Iterator[Catalog]:
    """An empty, migrated catalog (SQLite in a temporary folder, or PostgreSQL), closed after the test."""
    cat = Catalog.open(catalog_url)
    try:
        yield cat
    finally:
        cat.close()


def make_rgb(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus a little texture: decodes the same everywhere, compresses like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 128 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 4, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def exif_bytes(orientation: int | None = None, make: str = "TestCam", model: str = "T-1000",
               when: str = "2024:05:17 10:30:00", iso: int = 200, gps: bool = False) -> bytes:
    import piexif

    zeroth: dict[int, Any] = {piexif.ImageIFD.Make: make.encode(), piexif.ImageIFD.Model: model.encode()}
    if orientation is not None:
        zeroth[piexif.ImageIFD.Orientation] = orientation
    exif = {
        "0th": zeroth,
        "Exif": {
            piexif.ExifIFD.DateTimeOriginal: when.encode(),
            piexif.ExifIFD.ISOSpeedRatings: iso,
            piexif.ExifIFD.ExposureTime: (1, 250),
            piexif.ExifIFD.FNumber: (28, 10),
            piexif.ExifIFD.FocalLength: (50, 1),
            piexif.ExifIFD.LensModel: b"TestLens 50mm",
        },
        "GPS": {},
    }
    if gps:
        exif["GPS"] = {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((52, 1), (30, 1), (0, 1))}
    return piexif.dump(exif)


ImageFactory = Callable[..., Path]


@pytest.fixture
def make_image(tmp_path: Path) -> ImageFactory:
    """``make_image(name, width=64, height=48, fmt=None, mode='RGB', exif=None, seed=0, quality=90, folder=None)``.

    Writes a small real image under ``tmp_path / 'photos'`` (or ``folder``) and returns its path.
    ``exif`` is raw EXIF bytes (see :func:`exif_bytes`) or True for a default EXIF block.
    """
    root = tmp_path / "photos"

    def factory(name: str, width: int = 64, height: int = 48, fmt: str | None = None, mode: str = "RGB",
                exif: bytes | bool | None = None, seed: int = 0, quality: int = 90,
                folder: Path | None = None) -> Path:
        path = (folder or root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(make_rgb(width, height, seed))
        if mode != "RGB":
            img = img.convert(mode)
        kwargs: dict[str, Any] = {}
        fmt = fmt or {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF",
                      ".webp": "WEBP", ".bmp": "BMP"}.get(path.suffix.lower(), "JPEG")
        if fmt == "JPEG":
            kwargs["quality"] = quality
        if exif is True:
            exif = exif_bytes()
        if exif:
            kwargs["exif"] = exif
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kwargs)
        path.write_bytes(buf.getvalue())
        return path

    return factory


@pytest.fixture
def lock_file(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """``lock(path)`` makes a file unreadable; ``unlock`` (returned by ``lock.unlock``) undoes it.

    chmod 0 is enough for ordinary users. As root (CI containers) permission bits do not stop
    reads, so there ``open`` itself is made to refuse that one file with EACCES, which is what
    the kernel would answer: the code under test sees the same PermissionError either way.
    """
    import builtins
    import errno

    locked: set[str] = set()
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(file, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(file)) in locked:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    def lock(p: Path) -> None:
        p.chmod(0)
        if os.access(p, os.R_OK):  # root
            locked.add(os.path.abspath(p))
            monkeypatch.setattr(builtins, "open", guarded_open)

    def unlock(p: Path) -> None:
        p.chmod(0o644)
        locked.discard(os.path.abspath(p))

    lock.unlock = unlock  # type: ignore[attr-defined]
    yield lock
    for name in list(locked):
        os.chmod(name, 0o644)


def make_texture(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A natural-looking colour texture (1/f noise, natural images' spectrum), RGB uint8: the
    quality model judges it as it judges photos (a smooth synthetic gradient with noise on it
    is outside what it was fitted on; models/quality.md)."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    base = np.fft.ifft2(np.fft.fft2(rng.normal(size=(height, width))) / f).real
    out = []
    for c in range(3):
        own = np.fft.ifft2(np.fft.fft2(rng.normal(size=(height, width))) / f).real
        ch = 0.8 * base + 0.2 * own
        out.append((ch - ch.mean()) / (ch.std() * 5) + 0.45 + 0.05 * c)
    return (np.clip(np.stack(out, axis=2), 0, 1) * 255 + 0.5).astype(np.uint8)
