"""Drive the app through every screen on a generated sample library and save one PNG per screen.

    xvfb-run -s "-screen 0 1600x1000x24" python -m app.screenshots docs/screenshots

The sample library is made here from synthetic scenes passed through the project's own
degradation model (``engine.assess.degrade``): some clean, some noisy, blurred, over-compressed or
badly exposed, plus two broken files, so every badge and state shows up. Everything runs on
the real engine (catalog, index, scorer, editor, exporter) in a temporary catalog; the user's
own settings and catalog are not touched.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("app.screenshots")


# -- sample library ------------------------------------------------------------------------
def _scene(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A synthetic 'photo': sky gradient, hills, sun, a few textured objects. Float 0..1."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    top = rng.uniform(0.3, 0.8, 3).astype(np.float32)
    bottom = rng.uniform(0.6, 1.0, 3).astype(np.float32)
    t = (y / h)[..., None]
    img = top * (1 - t) + bottom * t
    # sun
    cx, cy, r = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.4) * h, rng.uniform(0.04, 0.09) * w
    sun = np.clip(1.2 - np.hypot(x - cx, y - cy) / r, 0, 1)[..., None]
    img = img * (1 - sun) + np.array([1.0, 0.9, 0.6], np.float32) * sun
    # hills
    for k in range(3):
        amp, freq, base = rng.uniform(0.03, 0.1), rng.uniform(2, 6), 0.55 + 0.12 * k
        ridge = (base + amp * np.sin(x / w * freq * np.pi + rng.uniform(0, 6))) * h
        col = rng.uniform(0.05, 0.5, 3).astype(np.float32) * (1 - 0.2 * k)
        mask = (y > ridge)[..., None]
        tex = 0.06 * np.sin(x / rng.uniform(2, 5)) * np.cos(y / rng.uniform(2, 5))
        img = np.where(mask, col + tex[..., None], img)
    # a few houses / rocks with hard edges and detail
    for _ in range(rng.integers(2, 6)):
        bw, bh = int(rng.uniform(0.05, 0.15) * w), int(rng.uniform(0.05, 0.2) * h)
        bx, by = int(rng.uniform(0, w - bw)), int(rng.uniform(0.5, 0.9) * h - bh)
        col = rng.uniform(0.2, 0.95, 3).astype(np.float32)
        img[by:by + bh, bx:bx + bw] = col
        img[by:by + bh:6, bx:bx + bw] *= 0.6
    return np.clip(img, 0, 1).astype(np.float32)


def make_sample_library(root: Path, n: int = 30, size: tuple[int, int] = (2400, 1600), seed: int = 7) -> list[Path]:
    """Write ``n`` sample JPEGs (some degraded) and two broken files under ``root``."""
    from PIL import Image

    from engine.assess import degrade as D

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    kinds = ["clean", "noise", "blur", "jpeg", "dark", "bright", "flat", "motion"]
    paths: list[Path] = []
    for i in range(n):
        w, h = size if i % 5 else (size[1], size[0])
        u = _scene(rng, w, h)
        kind = kinds[i % len(kinds)]
        v: Any  # an image, or (image, what was applied) from the degradation model
        if kind == "noise":
            v = D.apply_noise(u, rng, kind="poisson_gaussian_noise", strength=float(rng.uniform(0.25, 0.4)))
        elif kind == "blur":
            v = D.convolve(u, D.disk_kernel(rng.uniform(2.5, 5)))
        elif kind == "motion":
            v = D.convolve(u, D.motion_kernel(rng, rng.uniform(9, 17)))
        elif kind == "jpeg":
            v = D.jpeg(u, int(rng.integers(8, 15)))
        elif kind == "dark":
            v = np.clip(u * 0.28, 0, 1)
        elif kind == "bright":
            v = np.clip(u * 1.9 + 0.1, 0, 1)
        elif kind == "flat":
            v = 0.5 + (u - 0.5) * 0.35
        else:
            v = u
        if isinstance(v, tuple):
            v = v[0]
        arr = (np.clip(np.asarray(v, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
        p = root / f"IMG_{1000 + i:04d}_{kind}.jpg"
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=92, exif=_exif(i))
        p.write_bytes(buf.getvalue())
        paths.append(p)
    (root / "IMG_9998_broken.jpg").write_bytes(b"this is not a JPEG, just text that ends with .jpg\n")
    good = paths[0].read_bytes()
    (root / "IMG_9999_truncated.jpg").write_bytes(good[: len(good) // 3])
    return paths


def _exif(i: int) -> bytes:
    import piexif

    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"Sample", piexif.ImageIFD.Model: b"Synth 1"},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: f"2024:06:{1 + i % 28:02d} 1{i % 10}:30:00".encode(),
                 piexif.ExifIFD.ISOSpeedRatings: 100 * (1 + i % 8),
                 piexif.ExifIFD.ExposureTime: (1, 60 * (1 + i % 4)),
                 piexif.ExifIFD.FNumber: (28 + 4 * (i % 5), 10),
                 piexif.ExifIFD.FocalLength: (24 + 10 * (i % 6), 1)},
        "GPS": {},
    })


# -- driving the app -----------------------------------------------------------------------
def _pump(ms: int = 200) -> None:
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> bool:
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        QApplication.processEvents()
        if cond():
            return True
        time.sleep(0.02)
    log.warning("timed out waiting for %s", what)
    return False


def _save(out: Path, name: str, whole_screen: bool = False, widget: object = None) -> Path:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication

    _pump(150)
    if whole_screen or widget is None:
        pix = QGuiApplication.primaryScreen().grabWindow(0)
    else:
        pix = widget.grab()  # type: ignore[attr-defined]
    if pix.width() > 1440:
        pix = pix.scaledToWidth(1440, Qt.TransformationMode.SmoothTransformation)
    path = out / f"{name}.png"
    pix.save(str(path), "PNG", 9)
    _shrink_png(path)
    print(f"saved {path} ({path.stat().st_size // 1024} KB)")
    return path


def _shrink_png(path: Path, limit: int = 300_000) -> None:
    """Keep committed screenshots small: a 256-colour palette, then smaller steps until under ``limit``."""
    if path.stat().st_size <= limit:
        return
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    scale = 1.0
    for _ in range(8):
        img = rgb if scale == 1.0 else rgb.resize((round(rgb.width * scale), round(rgb.height * scale)),
                                                  Image.Resampling.LANCZOS)
        q = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        q.save(path, optimize=True)
        if path.stat().st_size <= limit:
            return
        scale *= 0.85


def run(out: Path, n: int = 30) -> int:
    from PySide6.QtCore import QPoint, QSettings
    from PySide6.QtWidgets import QApplication

    from app.main import make_app
    from app.main_window import MainWindow
    from app.services import Services
    from app.settings import Settings

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="photolift-shots-"))
    photos = tmp / "Holiday 2024"
    make_sample_library(photos, n)
    app = make_app([sys.argv[0]])
    settings = Settings(QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    services = Services.open(str(tmp / "catalog.sqlite"))
    win = MainWindow(services, settings)
    screen = app.primaryScreen().availableGeometry()
    win.setGeometry(screen.adjusted(0, 0, 0, 0))
    win.show()
    _pump(300)
    saved: list[Path] = []
    try:
        _save(out, "00_empty_start", widget=win)
        win.open_folder(str(photos))
        _pump(300)
        _wait(lambda: not win.jobs.jobs(), 600, "indexing and scoring")
        win.set_sort("improvability")
        _pump(300)
        win.select_row(0)
        saved.append(_save(out, "01_grid_ranked", widget=win))

        # filters: the menu open over a filtered grid (the degradation the model finds most often,
        # else the recommended photos)
        from app.delegate import SEVERITY_LABELS

        counts = {k: win.services.count(win.folder, {"degradation": k}) for k in SEVERITY_LABELS}
        best = max(counts, key=lambda k: counts[k])
        if counts[best] > 0:
            win.filter_actions[f"deg:{best}"].setChecked(True)
        else:
            win.set_filter("recommended", True)
        _pump(200)
        pos = win.filter_button.mapToGlobal(QPoint(0, win.filter_button.height()))
        win.filter_menu.popup(pos)
        saved.append(_save(out, "02_filters", whole_screen=True))
        win.filter_menu.hide()
        win.clear_filters()
        _pump(200)

        # details of a photo with a clear problem
        win.set_sort("improvability")
        win.select_row(min(1, win.model.rowCount() - 1))
        saved.append(_save(out, "03_details", widget=win))

        # an unreadable photo
        win.set_filter("errors", True)
        _pump(200)
        if win.model.rowCount():
            win.select_row(0)
        saved.append(_save(out, "04_error_photo", widget=win))
        win.clear_filters()
        _pump(200)

        # photo view
        win.set_sort("improvability")
        win.view_row(0)
        page = win.photo_page
        _wait(lambda: page.compare.before is not None, 60, "the preview")
        win.set_compare_mode("single")
        page.compare.fit()
        saved.append(_save(out, "05_photo_fit", widget=win))
        page.compare.actual_size()
        _pump(500)
        _wait(lambda: not page._full.busy() and not page.compare._message, 120, "the full-resolution image")
        saved.append(_save(out, "06_photo_100", widget=win))
        page.compare.fit()

        # one-click enhance of this photo, captured while it runs
        win.actions["enhance"].trigger()
        _wait(lambda: bool(win.jobs.jobs()) and win.jobs.jobs()[0].last_progress is not None, 60, "enhance start")
        _pump(400)
        saved.append(_save(out, "07_enhance_progress", widget=win))
        _wait(lambda: not win.jobs.jobs(), 600, "the enhancement")
        _wait(lambda: page.compare.after is not None, 60, "the enhanced preview")
        _wait(lambda: not page._full.busy() and not page._loader.busy() and not page.compare._message, 120,
              "the enhanced full-resolution image")
        win.set_compare_mode("split")
        page.compare.main.set_divider(0.5)
        saved.append(_save(out, "08_compare_split", widget=win))
        win.set_compare_mode("side")
        page.compare.state.set_zoom(page.compare.effective_zoom() * 2.5)
        _pump(300)
        _wait(lambda: not page._full.busy() and not page.compare._message, 120, "the full-resolution pair")
        saved.append(_save(out, "09_compare_side_by_side", widget=win))
        page.compare.fit()
        win.set_compare_mode("single")
        page.compare.toggle()  # shows the original, as a tap of \\ does
        saved.append(_save(out, "10_compare_toggle_original", widget=win))
        page.compare.toggle()
        win.show_grid()
        _pump(200)

        # enhance all recommended, in the background with progress and time left
        if win.services.count(win.folder, win.recommended_filter()) == 0:
            log.warning("no recommended photo in the sample library: no batch screenshot")
        else:
            win.actions["enhance_recommended"].trigger()
            _wait(lambda: bool(win.jobs.jobs()) and (win.jobs.jobs()[0].last_progress or None) is not None
                  and win.jobs.jobs()[0].last_progress.done >= 1, 600, "batch progress")  # type: ignore[union-attr]
            saved.append(_save(out, "11_enhance_all_progress", widget=win))
            _wait(lambda: not win.jobs.jobs(), 900, "the batch")
        _pump(300)
        saved.append(_save(out, "12_grid_after_enhance", widget=win))

        # export
        dlg = win.export()
        if dlg is not None:
            dlg.folder.setText(str(tmp / "export"))
            dlg.radio["enhanced"].setChecked(True)
            saved.append(_save(out, "13_export_dialog", widget=dlg))
            dlg.export_button.click()
            _wait(lambda: dlg._job is None and dlg.cancel_button.text() == "Close", 600, "the export")
            saved.append(_save(out, "14_export_done", widget=dlg))
            dlg.accept()

        prefs = win.preferences()
        saved.append(_save(out, "15_preferences", widget=prefs))
        prefs.reject()
    finally:
        win.close()
        QApplication.processEvents()
        services.close()
    print(f"{len(saved)} screenshots in {out}; sample library and catalog in {tmp}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for the PNGs")
    ap.add_argument("--photos", type=int, default=20, help="number of sample photos")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args.out, args.photos)


if __name__ == "__main__":
    sys.exit(main())
