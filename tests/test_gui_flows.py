"""The main flows through the real window and the real engine, offscreen, on tiny models and images.

open a folder -> indexed -> scored -> sorted; enhance -> compare in three modes -> undo/revert;
rate -> fine-tune; export; preferences; shutdown with work in flight.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage

from app import settings as S
from app.library_model import Roles
from app.main_window import MainWindow
from app.services import Services
from app.settings import Settings
from app.workers import busy_pools
from tests.conftest import make_rgb
from tests.onnx_fixtures import write_assessor, write_restorer

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

SHARPEN = np.array([[0, -0.25, 0], [-0.25, 2.0, -0.25], [0, -0.25, 0]], np.float32)


@pytest.fixture(autouse=True)
def no_pool_left_running() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 3.0
    while busy_pools() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not busy_pools(), "a test left a QThreadPool running"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    write_assessor(d / "assessor.onnx")
    write_restorer(d / "restorer.onnx", kind="blur", kernel=SHARPEN)  # type: ignore[arg-type]
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(d))
    monkeypatch.setenv("PHOTOLIFT_CACHE", str(tmp_path / "cache"))
    return d


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "Photos"
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        rgb = make_rgb(96, 64, seed=i)
        if i % 2:
            rgb = (rgb * (0.3 + 0.1 * i)).astype(np.uint8)  # some darker ones: different scores
        Image.fromarray(rgb).save(root / ("sub" if i > 3 else "") / f"img_{i}.jpg", quality=90)
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


@pytest.fixture
def window(qtbot, tmp_path: Path, models: Path) -> Iterator[MainWindow]:
    settings = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    services = Services.open(str(tmp_path / "catalog.sqlite"))
    win = MainWindow(services, settings)
    qtbot.addWidget(win)
    win.resize(1100, 700)
    win.show()
    qtbot.waitExposed(win)
    try:
        yield win
    finally:
        win.close()
        services.close()


def _digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _open_and_wait(qtbot, win: MainWindow, folder: Path) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(win.libraryJobsFinished, timeout=60000):
        win.open_folder(str(folder))


def test_open_folder_indexes_scores_and_ranks(qtbot, window: MainWindow, photos: Path) -> None:  # type: ignore[no-untyped-def]
    before = _digest(photos)
    _open_and_wait(qtbot, window, photos)
    m = window.model
    assert m.total == 7
    rows = [m.photo_at(r) for r in range(m.rowCount())]
    ok = [r for r in rows if r.status == "ok"]
    assert len(ok) == 6 and all(r.improvability is not None for r in ok)  # every readable photo scored
    imps = [r.improvability for r in ok]
    assert imps == sorted(imps, reverse=True)  # ranked by improvability
    bad = [r for r in rows if r.status == "error"]
    assert len(bad) == 1 and bad[0].error and bad[0].improvability is None
    # sort by name, then filter errors: both come from SQL
    window.set_sort("name")
    names = [m.data(m.index(r)) for r in range(m.rowCount())]
    assert names == sorted(names)
    window.set_filter("errors", True)
    assert m.total == 1 and m.photo_at(0).status == "error"
    window.clear_filters()
    assert m.total == 7
    # details pane shows the error reason
    window.filter_actions["deg:noise"].setChecked(True)
    assert window.current_filters() == {"degradation": "noise"}
    window.clear_filters()
    assert window.current_filters() == {} and m.total == 7
    window.set_filter("errors", True)
    window.select_row(0)
    assert "error" in window.details.facts.text().lower()
    window.clear_filters()
    # thumbnails arrive lazily
    idx = m.index(0)
    m.data(idx, Roles.Thumb)
    qtbot.waitUntil(lambda: m.data(idx, Roles.Thumb) is not None or m.data(idx, Roles.ThumbFailed), timeout=10000)
    assert _digest(photos) == before  # nothing written into the library folder
    assert window.settings.get(S.RECENT_FOLDERS)[0] == str(photos.resolve())


def test_enhance_compare_undo_revert(qtbot, window: MainWindow, photos: Path) -> None:  # type: ignore[no-untyped-def]
    before = _digest(photos)
    _open_and_wait(qtbot, window, photos)
    window.set_sort("improvability")
    window.view_row(0)
    page = window.photo_page
    qtbot.waitUntil(lambda: page.compare.before is not None, timeout=10000)
    assert page.compare.after is None and "Not enhanced" in page.gain_label.text()
    with qtbot.waitSignal(window.enhanceFinished, timeout=60000) as blocker:
        window.actions["enhance"].trigger()
    assert blocker.args == ["done"]
    qtbot.waitUntil(lambda: page.compare.after is not None, timeout=10000)
    assert "Measured gain" in page.gain_label.text()
    # the grid thumbnail now shows the edit, not the original
    from app.library_model import Roles

    edited_pid = page.photo_id
    original_thumb = window.services.library.thumbnail(edited_pid, 256)

    def grid_thumb() -> QImage | None:
        row = window.model.row_for_id(edited_pid)
        pm = window.model.data(window.model.index(row), Roles.Thumb) if row is not None else None
        return pm.toImage() if pm is not None else None

    qtbot.waitUntil(lambda: grid_thumb() is not None, timeout=10000)
    img = grid_thumb().convertToFormat(QImage.Format.Format_RGB888)  # type: ignore[union-attr]
    assert (img.height(), img.width()) == original_thumb.shape[:2]
    shown = np.frombuffer(bytes(img.constBits()), np.uint8).reshape(img.height(), img.bytesPerLine())
    shown = shown[:, : img.width() * 3].reshape(img.height(), img.width(), 3)
    assert np.abs(shown.astype(int) - original_thumb.astype(int)).mean() > 0.5
    for mode in ("split", "side", "single"):
        window.actions[f"mode_{mode}"].trigger()
        assert page.compare.mode == mode
    assert page.compare.main.split is False
    window.actions["mode_split"].trigger()
    assert page.compare.main.split is True
    for mode in ("single", "side", "split", "single"):  # programmatic changes land on the mode asked for
        window.set_compare_mode(mode)
        assert page.compare.mode == mode and window.actions[f"mode_{mode}"].isChecked()
    window.set_compare_mode("split")
    pid = page.photo_id
    assert window.services.photo(pid).recipe is not None
    window.actions["undo"].trigger()
    assert window.services.photo(pid).recipe is None
    qtbot.waitUntil(lambda: page.compare.after is None, timeout=10000)
    window.actions["redo"].trigger()
    assert window.services.photo(pid).recipe is not None
    window.actions["rate_1"].trigger()  # rating needs an enhanced photo on screen
    assert "moderate" in page.gain_label.text()
    window.actions["revert"].trigger()
    assert window.services.photo(pid).recipe is None
    # keyboard navigation through the ranked order
    window.actions["next"].trigger()
    assert page.photo_id != pid
    window.actions["first"].trigger()
    assert page.photo_id == pid
    window.actions["back"].trigger()
    assert window.pages.currentWidget() is window.splitter
    assert _digest(photos) == before  # originals untouched


def test_rate_and_apply_finetuned_head(qtbot, window: MainWindow, photos: Path) -> None:  # type: ignore[no-untyped-def]
    _open_and_wait(qtbot, window, photos)
    ids = window.services.ids(window.folder, {"status": "ok"})
    for i, pid in enumerate(ids[:4]):
        window.services.rate(pid, [2, 1, 0, -1][i])
    with qtbot.waitSignal(window.libraryJobsFinished, timeout=30000):
        window.actions["finetune"].trigger()
    info = window.services.photo(ids[0])
    assert info.score is not None and info.score.head  # ranked by the fine-tuned head now


def test_enhance_all_recommended_then_export(qtbot, window: MainWindow, photos: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _open_and_wait(qtbot, window, photos)
    # A threshold every scored photo passes makes "enhance all recommended" take them all.
    window.settings.set(S.OWN_THRESHOLD, True)
    window.settings.set(S.THRESHOLD, float(min(r.improvability for r in (
        window.model.photo_at(i) for i in range(window.model.rowCount())) if r.improvability is not None)))
    n_rec = window.services.count(window.folder, window.recommended_filter())
    assert n_rec == 6
    with qtbot.waitSignal(window.enhanceFinished, timeout=120000):
        window.actions["enhance_recommended"].trigger()
    window.model.refresh()
    assert window.services.count(window.folder, {"has_recipe": True}) >= 1
    dlg = window.export()
    assert dlg is not None
    out = tmp_path / "export"
    dlg.folder.setText(str(out))
    dlg.radio["enhanced"].setChecked(True)
    dlg.export_button.click()
    qtbot.waitUntil(lambda: dlg.cancel_button.text() == "Close", timeout=60000)
    files = sorted(out.rglob("*.jpg"))
    assert files, dlg.status.text()
    assert "finished" in dlg.status.text()
    dlg.accept()
    # Exporting again to the same folder never overwrites: the first files unchanged
    first = {f: f.read_bytes() for f in files}
    dlg2 = window.export()
    assert dlg2 is not None
    dlg2.folder.setText(str(out))
    dlg2.radio["enhanced"].setChecked(True)
    dlg2.export_button.click()
    qtbot.waitUntil(lambda: dlg2.cancel_button.text() == "Close", timeout=60000)
    assert all(f.read_bytes() == b for f, b in first.items())
    # ... and nothing new: each photo is counted as skipped, already exported, none as failed
    assert sorted(out.rglob("*.jpg")) == files
    text = dlg2.status.text()
    assert f"0 written, {len(files)} skipped (already exported with this edit)" in text, text
    assert "failed" not in text, text
    dlg2.accept()


def test_export_refuses_a_folder_inside_the_library(qtbot, window: MainWindow, photos: Path) -> None:  # type: ignore[no-untyped-def]
    _open_and_wait(qtbot, window, photos)
    window.select_row(0)
    dlg = window.export()
    assert dlg is not None
    dlg.radio["selection"].setChecked(True)
    dlg.folder.setText(str(photos / "out"))
    dlg.export_button.click()
    assert "inside the library" in dlg.status.text()
    assert not (photos / "out").exists() or not any((photos / "out").iterdir())
    dlg.reject()


def test_keyboard_in_the_photo_view(qtbot, window: MainWindow, photos: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt

    _open_and_wait(qtbot, window, photos)
    window.set_sort("improvability")  # the unreadable photo sorts last
    window.grid.setFocus()
    window.select_row(0)
    qtbot.keyClick(window.grid, Qt.Key.Key_Return)
    page = window.photo_page
    assert window.pages.currentWidget() is page
    first = page.photo_id
    focus = page.compare
    qtbot.keyClick(focus, Qt.Key.Key_Right)
    assert page.photo_id == window.model.photo_at(1).id
    qtbot.keyClick(focus, Qt.Key.Key_End)
    assert page.photo_id == window.model.photo_at(window.model.total - 1).id
    assert "cannot be shown" in page.compare._message  # the broken file: a reason, not a crash
    qtbot.keyClick(focus, Qt.Key.Key_Home)
    assert page.photo_id == first
    qtbot.waitUntil(lambda: page.compare.before is not None, timeout=10000)
    qtbot.keyClick(focus, Qt.Key.Key_1)
    assert page.compare.effective_zoom() == 1.0
    qtbot.keyClick(focus, Qt.Key.Key_F)
    assert page.compare.state.fit
    qtbot.keyClick(focus, Qt.Key.Key_D)
    assert page.compare.mode == "side"
    qtbot.keyClick(focus, Qt.Key.Key_S)
    assert page.compare.mode == "split"
    qtbot.keyClick(focus, Qt.Key.Key_Escape)
    assert window.pages.currentWidget() is window.splitter


def test_drop_a_folder_opens_it(qtbot, window: MainWindow, photos: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photos))])
    enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPoint(10, 10).toPointF(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.libraryJobsFinished, timeout=60000):
        window.dropEvent(drop)
    assert window.folder == str(photos.resolve()) and window.model.total == 7


def test_missing_assessor_is_reported_and_nothing_is_invented(qtbot, window: MainWindow, photos: Path,  # type: ignore[no-untyped-def]
                                                              models: Path) -> None:
    (models / "assessor.onnx").unlink()
    window.services._scorer = None
    import engine.assess.scoring

    engine.assess.scoring._shared = None  # the process-wide scorer of an earlier test
    _open_and_wait(qtbot, window, photos)
    assert window.model.total == 7
    assert all(window.model.photo_at(r).improvability is None for r in range(window.model.rowCount()))
    assert "assessor" in window.problem_label.text() and window.problem_label.isVisibleTo(window)


def test_preferences_are_saved(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    dlg = window.preferences()
    dlg.own_threshold.setChecked(True)
    dlg.threshold.setValue(0.8)
    dlg.threads.setValue(1)
    dlg.export_quality.setValue(80)
    assert window.services.cluster == ""  # the default: the local thread pool
    dlg.cluster.setText(" auto ")
    dlg.accept()
    s = window.settings
    assert s.get(S.CLUSTER) == "auto" and window.services.cluster == "auto"  # the next job runs there
    assert s.get(S.THRESHOLD) == pytest.approx(0.8)
    assert s.get(S.THREADS) == 1 and s.get(S.EXPORT_QUALITY) == 80
    assert window.recommended_filter() == {"min_improvability": pytest.approx(0.8)}


def test_close_with_jobs_running_stops_everything(qtbot, window: MainWindow, photos: Path) -> None:  # type: ignore[no-untyped-def]
    window.open_folder(str(photos))
    qtbot.waitUntil(lambda: bool(window.jobs.jobs()), timeout=5000)
    t0 = time.monotonic()
    window.close()
    assert time.monotonic() - t0 < 30
    assert not busy_pools()
    assert not window.jobs.jobs() or all(j.state != "running" for j in window.jobs.jobs())


def test_window_state_is_remembered(qtbot, tmp_path: Path, models: Path) -> None:  # type: ignore[no-untyped-def]
    ini = str(tmp_path / "state.ini")
    services = Services.open(str(tmp_path / "c.sqlite"))
    try:
        w1 = MainWindow(services, Settings(QSettings(ini, QSettings.Format.IniFormat)))
        qtbot.addWidget(w1)
        w1.resize(700, 500)
        w1.set_sort("quality")
        w1.close()
        w2 = MainWindow(services, Settings(QSettings(ini, QSettings.Format.IniFormat)))
        qtbot.addWidget(w2)
        assert w2.size().width() == 700 and w2.model.query.sort == "quality"
        w2.close()
    finally:
        services.close()


def test_a_batch_killed_mid_way_is_resumed_at_start_up_without_duplicates(  # type: ignore[no-untyped-def]
        qtbot, tmp_path: Path, models: Path, photos: Path) -> None:
    """kill -9 of the process running an enhance batch (as the GUI's job runs it), then the next
    start of the app finishes the batch: every photo enhanced once, every job done."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from sqlalchemy import select

    from db.schema import Job, Recipe

    url = str(tmp_path / "catalog.sqlite")
    services = Services.open(url)
    try:
        list(services.library.index(str(photos)))
        ids = services.ids(str(photos), {"status": ["ok"]}, sort="name")
    finally:
        services.close()
    assert len(ids) == 6
    marker = tmp_path / "started"
    root = Path(__file__).resolve().parents[1]
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(root)!r})
        from app.services import Services
        from engine.core.jobs import CancelToken
        svc = Services.open({url!r})
        ed = svc.editor
        full, n = ed.renderer.full, [0]
        def slow(*a, **k):
            n[0] += 1
            if n[0] == 3:
                open({str(marker)!r}, "w").close()
                time.sleep(120)  # killed here, mid-batch
            return full(*a, **k)
        ed.renderer.full = slow
        for r in svc.enhance_job({ids!r}, 1.0, ["restore"])(lambda p: None, CancelToken()):
            print(r.photo_id, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
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

    services = Services.open(url)
    try:
        with services.catalog.session() as s:
            before = sorted(j.state for j in s.scalars(select(Job)).all())
        assert before == ["done", "done", "queued", "queued", "queued", "running"]
        settings = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
        win = MainWindow(services, settings)
        qtbot.addWidget(win)
        with qtbot.waitSignal(win.enhanceFinished, timeout=120000) as blocker:
            win.show()
        assert blocker.args == ["done"]
        assert win._last_enhanced == ids[2:]  # the photo being rendered when killed, and the rest
        with services.catalog.session() as s:
            assert {j.state for j in s.scalars(select(Job)).all()} == {"done"}
            for pid in ids:  # each photo once: applied, or kept on record as not helping
                rows = s.scalars(select(Recipe).where(Recipe.photo_id == pid)).all()
                assert [r.version for r in rows] == [1], pid
        assert services.interrupted_enhancements() == 0
        win.close()
    finally:
        services.close()


def _recipe_json(services: Services, recipe_id: int) -> str:
    from db.schema import Recipe as RecipeRow

    with services.catalog.session() as s:
        row = s.get(RecipeRow, recipe_id)
        assert row is not None
        return str(row.recipe_json)


def test_faces_toggle_and_weight_reach_the_recipe(qtbot, tmp_path: Path, models: Path, photos: Path) -> None:  # type: ignore[no-untyped-def]
    """The opt-in faces stage from the photo page: hidden without its models; with them, the
    checkbox adds the stage to the next Enhance and the faithful..generated slider is its weight,
    both remembered."""
    import json
    import shutil

    root = Path(__file__).resolve().parents[1] / "models"
    settings = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    services = Services.open(str(tmp_path / "catalog.sqlite"))
    win = MainWindow(services, settings)
    qtbot.addWidget(win)
    assert win.photo_page.faces.isHidden()  # no face models installed: no control
    win.close()
    for name in ("face_detector.onnx", "face_restorer.onnx"):
        shutil.copy(root / name, models / name)
    win = MainWindow(services, settings)
    qtbot.addWidget(win)
    win.resize(1100, 700)
    win.show()
    qtbot.waitExposed(win)
    try:
        page = win.photo_page
        assert not page.faces.isHidden() and not page.face_w.isEnabled()
        _open_and_wait(qtbot, win, photos)
        # the face scan follows scoring in the background; these synthetic photos have no face
        qtbot.waitUntil(lambda: not any(j.kind == "faces" for j in win.jobs.jobs()), timeout=60000)
        assert services.ids(str(photos.resolve()), {"has_faces": False}) and not services.ids(
            str(photos.resolve()), {"has_faces": True})
        win.filter_actions["faces"].setChecked(True)
        qtbot.waitUntil(lambda: win.model.rowCount() == 0, timeout=10000)
        win.filter_actions["faces"].setChecked(False)
        qtbot.waitUntil(lambda: win.model.rowCount() > 0, timeout=10000)
        win.view_row(0)
        qtbot.waitUntil(lambda: page.compare.before is not None, timeout=10000)
        win.details.show_info(services.photo(page.photo_id))
        assert "none found" in win.details.facts.text()
        # opening (or rescanning) a folder cancels a face scan still running or queued: it must not
        # hold up the new index in the one library queue (a re-run carries on where it stopped)
        win.rescan()
        scans = [j for j in win.jobs.jobs() if j.kind == "faces"]
        win.rescan()
        assert scans and all(j.cancelled for j in scans)
        qtbot.waitUntil(lambda: not win.jobs.jobs(), timeout=60000)
        page.faces.setChecked(True)
        assert page.face_w.isEnabled()
        page.face_w.setValue(40)
        assert page.face_w_label.text() == "40% gen."
        with qtbot.waitSignal(win.enhanceFinished, timeout=60000):
            win.actions["enhance"].trigger()
        info = services.photo(page.photo_id)
        assert info.recipe is not None and any(op.startswith("faces (") for op in info.recipe.ops)
        stages = {st["name"]: st for st in json.loads(_recipe_json(services, info.recipe.id))["stages"]}
        assert "faces" in stages and stages["faces"]["strength"] == pytest.approx(0.4)
        assert settings.get(S.FACES) is True and settings.get(S.FACE_W) == pytest.approx(0.4)
        page.faces.setChecked(False)
        with qtbot.waitSignal(win.enhanceFinished, timeout=60000):
            win.actions["enhance"].trigger()
        info = services.photo(page.photo_id)
        assert info.recipe is not None and not any(op.startswith("faces") for op in info.recipe.ops)
    finally:
        win.close()
        services.close()


def test_details_pane_wraps_a_long_file_name(qtbot: Any) -> None:
    """A file name with no spaces (camera exports, downloads) wraps inside the pane instead of
    widening it past the window, which cut off the severity bars and their numbers."""
    from types import SimpleNamespace

    from app.details import DetailsPane, breakable

    name = "SunHays80_cathedral_indoor_sun_aehpzycvadvphcuu_0123456789abcdef0123456789.jpg"
    assert breakable(name).replace("\u200b", "") == name
    pane = DetailsPane()
    qtbot.addWidget(pane)
    pane.resize(300, 600)
    pane.show()
    info = SimpleNamespace(display_path=f"/photos/2024/{name}", status="ok", width=685, height=1024,
                           format="JPEG", jpeg_quality=75, size=123_900,
                           severity={"noise": 0.1, "compression": 0.35})
    pane.show_info(info)
    qtbot.wait(50)
    assert pane.widget().minimumSizeHint().width() <= 300
    assert "quality 75" in pane.facts.text()
