"""GUI building blocks without the engine services: settings, workers, the image canvas."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QByteArray, QEvent, QPoint, QPointF, QSettings, QSize, Qt
from PySide6.QtGui import QKeyEvent, QPixmap

from app import settings as S
from app.canvas import CompareView, ImageCanvas
from app.workers import Job, JobManager, LatestTask, ThumbnailLoader, busy_pools, numpy_to_qimage
from engine.core.jobs import CancelToken, JobCancelled, Progress, ProgressFn

# The offscreen platform warns once per shown top-level window; nothing to do with our code.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@pytest.fixture(autouse=True)
def no_pool_left_running() -> Iterator[None]:
    """Fail the test if it leaves a worker pool with a running thread behind (napari does the same)."""
    yield
    deadline = time.monotonic() + 2.0
    while busy_pools() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not busy_pools(), "a test left a QThreadPool running"


# -- settings -------------------------------------------------------------------------------
def _qs(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def test_settings_defaults_types_and_round_trip(tmp_path: Path) -> None:
    s = S.Settings(_qs(tmp_path))
    for setting in S.all_settings():
        assert setting.description
        value = s.get(setting)
        assert isinstance(value, setting.type), setting.key
    s.set(S.THUMB_SIZE, 200)
    s.set(S.THRESHOLD, 0.75)
    s.set(S.RECENT_FOLDERS, ["/a"])
    s.sync()
    s2 = S.Settings(_qs(tmp_path))  # INI stores strings: types must come back
    assert s2.get(S.THUMB_SIZE) == 200
    assert s2.get(S.THRESHOLD) == 0.75
    assert s2.get(S.RECENT_FOLDERS) == ["/a"]


def test_settings_bad_value_falls_back_to_default(tmp_path: Path) -> None:
    qs = _qs(tmp_path)
    qs.setValue(S.THUMB_SIZE.key, "huge")
    assert S.Settings(qs).get(S.THUMB_SIZE) == S.THUMB_SIZE.default


def test_settings_upgrade_from_v1(tmp_path: Path) -> None:
    qs = _qs(tmp_path)
    qs.setValue("meta/settings_version", 1)
    qs.setValue("recent", "/x;/y")
    s = S.Settings(qs)
    assert s.get(S.RECENT_FOLDERS) == ["/x", "/y"]
    assert int(qs.value("meta/settings_version")) == S.SETTINGS_VERSION
    assert qs.value("recent") is None


def test_settings_upgrade_v2_negative_threshold_means_model_default(tmp_path: Path) -> None:
    qs = _qs(tmp_path)
    qs.setValue("meta/settings_version", 2)
    qs.setValue(S.THRESHOLD.key, -1.0)
    s = S.Settings(qs)
    assert s.get(S.OWN_THRESHOLD) is False and s.get(S.THRESHOLD) == S.THRESHOLD.default
    qs2 = _qs(tmp_path / "b")
    qs2.setValue("meta/settings_version", 2)
    qs2.setValue(S.THRESHOLD.key, 0.4)
    s2 = S.Settings(qs2)
    assert s2.get(S.OWN_THRESHOLD) is True and s2.get(S.THRESHOLD) == 0.4


def test_recent_folders_most_recent_first_and_bounded(tmp_path: Path) -> None:
    s = S.Settings(_qs(tmp_path))
    for i in range(S.MAX_RECENT + 3):
        s.add_recent_folder(f"/f{i}")
    s.add_recent_folder("/f5")
    recent = s.get(S.RECENT_FOLDERS)
    assert recent[0] == "/f5" and len(recent) == S.MAX_RECENT and recent.count("/f5") == 1
    assert s.get(S.LAST_FOLDER) == "/f5"
    assert isinstance(s.get(S.WINDOW_GEOMETRY), QByteArray)


# -- workers --------------------------------------------------------------------------------
def _count_job(n: int, delay: float = 0.0, fail_at: int | None = None):
    def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[int]:
        for i in range(n):
            cancel.raise_if_cancelled()
            if fail_at == i:
                raise RuntimeError("boom")
            if delay:
                time.sleep(delay)
            progress(Progress(i + 1, n, f"item {i}"))
            yield i

    return fn


def test_job_streams_results_in_order_on_gui_thread(qtbot) -> None:
    jobs = JobManager()
    job = Job("count", _count_job(5))
    got: list[int] = []
    threads: set[int] = set()

    def on_item(i: int) -> None:
        got.append(i)
        threads.add(threading.get_ident())

    job.signals.yielded.connect(on_item)
    progress: list[Progress] = []
    job.signals.progress.connect(progress.append)
    with qtbot.waitSignal(jobs.jobFinished, timeout=5000) as blocker:
        jobs.submit(job)
    assert blocker.args == [job, "done"]
    assert got == [0, 1, 2, 3, 4]
    assert threads == {threading.get_ident()}  # queued to the GUI thread
    assert progress and progress[-1].done == 5
    assert jobs.jobs() == []
    jobs.shutdown()


def test_job_cancel_stops_between_items(qtbot) -> None:
    jobs = JobManager()
    job = Job("slow", _count_job(1000, delay=0.005))
    got: list[int] = []
    job.signals.yielded.connect(got.append)
    job.signals.yielded.connect(lambda i: job.cancel() if i == 3 else None)
    with qtbot.waitSignal(job.signals.finished, timeout=10000) as blocker:
        jobs.submit(job)
    assert blocker.args == ["cancelled"]
    assert 4 <= len(got) < 1000
    jobs.shutdown()


def test_job_error_is_reported_not_raised(qtbot) -> None:
    jobs = JobManager()
    job = Job("bad", _count_job(5, fail_at=2))
    with qtbot.waitSignals([job.signals.errored, job.signals.finished], timeout=5000):
        jobs.submit(job)
    assert job.state == "error"
    jobs.shutdown()


def test_lane_runs_jobs_in_order_and_shutdown_cancels(qtbot) -> None:
    jobs = JobManager()
    order: list[str] = []
    a = Job("a", _count_job(3))
    b = Job("b", _count_job(100000, delay=0.001))
    a.signals.finished.connect(lambda _s: order.append("a"))
    b.signals.yielded.connect(lambda i: order.append("b") if i == 0 else None)
    jobs.submit(a)
    jobs.submit(b)
    qtbot.waitUntil(lambda: "b" in order, timeout=5000)
    assert order[0] == "a"
    t0 = time.monotonic()
    assert jobs.shutdown(5000)
    assert time.monotonic() - t0 < 5
    with pytest.raises(RuntimeError):
        jobs.submit(Job("late", _count_job(1)))


def test_job_cancelled_via_exception(qtbot) -> None:
    def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[int]:
        yield 1
        raise JobCancelled()

    jobs = JobManager()
    job = Job("c", fn)
    with qtbot.waitSignal(job.signals.finished, timeout=5000) as blocker:
        jobs.submit(job)
    assert blocker.args == ["cancelled"]
    jobs.shutdown()


def test_thumbnail_loader_newest_first_and_none_for_failures(qtbot) -> None:
    gate = threading.Event()
    calls: list[int] = []

    def fetch(pid: int) -> np.ndarray | None:
        gate.wait(5)
        calls.append(pid)
        return None if pid == 3 else np.full((8, 12, 3), pid, np.uint8)

    loader = ThumbnailLoader(fetch, threads=1)
    got: dict[int, object] = {}
    loader.loaded.connect(lambda pid, img: got.__setitem__(pid, img))
    for pid in range(1, 6):
        loader.request(pid)
    loader.request(5)  # asked twice, loaded once
    gate.set()
    qtbot.waitUntil(lambda: len(got) == 5, timeout=5000)
    assert sorted(calls) == [1, 2, 3, 4, 5]
    # The first may have been taken before the rest were queued; after it, newest first.
    assert calls[1:] == sorted(calls[1:], reverse=True)
    assert got[3] is None
    img = got[4]
    assert img.width() == 12 and img.height() == 8 and img.pixelColor(0, 0).red() == 4  # type: ignore[attr-defined]
    assert loader.shutdown()


def test_thumbnail_loader_forgets_oldest_beyond_cap(qtbot) -> None:
    gate = threading.Event()
    loader = ThumbnailLoader(lambda pid: (gate.wait(5), None)[1], threads=1, max_pending=3)
    forgotten: list[int] = []
    loader.forgotten.connect(forgotten.extend)
    for pid in range(10):
        loader.request(pid)
    assert len(forgotten) >= 5
    gate.set()
    assert loader.shutdown()


def test_latest_task_only_delivers_newest(qtbot) -> None:
    task = LatestTask()
    results: list[int] = []
    task.done.connect(results.append)
    for i in range(5):
        task.submit(lambda i=i: (time.sleep(0.02), i)[1])
    qtbot.waitUntil(lambda: results == [4], timeout=5000)
    qtbot.wait(100)
    assert results == [4]
    assert task.shutdown()


def test_numpy_to_qimage_owns_its_pixels() -> None:
    a = np.zeros((4, 6, 3), np.uint8)
    a[..., 1] = 200
    img = numpy_to_qimage(a)
    a[:] = 0
    assert img.pixelColor(5, 3).green() == 200


# -- canvas ---------------------------------------------------------------------------------
def _pix(w: int, h: int, colour: Qt.GlobalColor) -> QPixmap:
    p = QPixmap(w, h)
    p.fill(colour)
    return p


def test_canvas_fit_zoom_and_pan(qtbot) -> None:
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    qtbot.waitExposed(view)
    view.set_images(QSize(4000, 3000), _pix(400, 300, Qt.GlobalColor.red), _pix(400, 300, Qt.GlobalColor.blue))
    canvas = view.main
    dpr = canvas.devicePixelRatioF()
    assert canvas.scale() == pytest.approx(min(canvas.width() * dpr / 4000, canvas.height() * dpr / 3000))
    view.actual_size()
    assert canvas.scale() == 1.0 and not view.state.fit
    before = QPointF(view.state.center)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(200, 200))
    qtbot.mouseMove(canvas, QPoint(260, 230))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(260, 230))
    moved = view.state.center - before
    assert moved.x() == pytest.approx(-60 * dpr, abs=1) and moved.y() == pytest.approx(-30 * dpr, abs=1)
    canvas.zoom_by(2.0, QPointF(100, 100))
    assert canvas.scale() == pytest.approx(2.0)
    view.fit()
    assert view.state.fit


def test_wheel_zoom_keeps_point_under_cursor(qtbot) -> None:
    c = ImageCanvas()
    qtbot.addWidget(c)
    c.resize(400, 300)
    c.state.reset(QSize(1000, 1000).toSizeF())
    c.set_pixmaps(_pix(100, 100, Qt.GlobalColor.green))
    at = QPointF(300, 80)
    img_pt = c.to_image(at)
    c.zoom_by(1.25 ** 3, at)
    after = c.to_image(at)
    assert after.x() == pytest.approx(img_pt.x(), abs=0.5) and after.y() == pytest.approx(img_pt.y(), abs=0.5)


def test_split_divider_drags_and_side_by_side_shares_state(qtbot) -> None:
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(800, 400)
    view.show()
    qtbot.waitExposed(view)
    view.set_images(QSize(800, 400), _pix(800, 400, Qt.GlobalColor.red), _pix(800, 400, Qt.GlobalColor.blue))
    view.set_mode("split")
    c = view.main
    x = int(c.divider_x())
    qtbot.mousePress(c, Qt.MouseButton.LeftButton, pos=QPoint(x, 100))
    qtbot.mouseMove(c, QPoint(x + 200, 100))
    qtbot.mouseRelease(c, Qt.MouseButton.LeftButton, pos=QPoint(x + 200, 100))
    assert c.divider == pytest.approx((x + 200) / c.width(), abs=0.01)
    img = c.grab().toImage()
    assert img.pixelColor(10, 200).red() > 200        # original on the left
    assert img.pixelColor(c.width() - 10, 200).blue() > 200  # enhanced on the right
    view.set_mode("side")
    assert view.left.state is view.right.state
    view.left.zoom_by(2.0)
    assert view.right.scale() == pytest.approx(view.left.scale())


def test_backslash_hold_is_momentary_and_tap_latches(qtbot) -> None:
    view = CompareView()
    qtbot.addWidget(view)
    view.set_images(QSize(10, 10), _pix(10, 10, Qt.GlobalColor.red), _pix(10, 10, Qt.GlobalColor.blue))
    view.set_mode("single")

    def key(kind: QEvent.Type) -> None:
        view.keyPressEvent(QKeyEvent(kind, Qt.Key.Key_Backslash, Qt.KeyboardModifier.NoModifier, "\\")) \
            if kind == QEvent.Type.KeyPress else \
            view.keyReleaseEvent(QKeyEvent(kind, Qt.Key.Key_Backslash, Qt.KeyboardModifier.NoModifier, "\\"))

    key(QEvent.Type.KeyPress)
    assert view.showing_before
    qtbot.wait(view.TAP_MS + 80)
    key(QEvent.Type.KeyRelease)
    assert not view.showing_before        # held: back to enhanced
    key(QEvent.Type.KeyPress)
    key(QEvent.Type.KeyRelease)
    assert view.showing_before            # tapped: stays on the original
    key(QEvent.Type.KeyPress)
    key(QEvent.Type.KeyRelease)
    assert not view.showing_before


def test_unedited_photo_shows_original_in_every_mode(qtbot) -> None:
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(300, 200)
    view.set_images(QSize(30, 20), _pix(30, 20, Qt.GlobalColor.red), None)
    for mode in CompareView.MODES:
        view.set_mode(mode)
        assert not view.main.split
    assert view.right.label_main.startswith("Original")


def test_export_dialog_counts_skipped_photos_apart_from_failures(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.dialogs import ExportDialog
    from engine.export.exporter import ExportResult

    dlg = ExportDialog(S.Settings(_qs(tmp_path)), {"selected": 3, "recommended": 0, "all": 3})
    qtbot.addWidget(dlg)
    dlg._done, dlg._skipped, dlg._failed = 0, {}, []
    dlg._on_item(ExportResult(1, "/p/a.jpg", "ok", out_path="/o/a.jpg"))
    dlg._on_item(ExportResult(2, "/p/b.jpg", "skipped", out_path="/o/b.jpg", error="already exported with this edit"))
    dlg._on_item(ExportResult(3, "/p/c.jpg", "error", error="the original is gone: /p/c.jpg"))
    dlg._on_finished("done")
    text = dlg.status.text()
    assert "1 written" in text and "1 skipped (already exported with this edit)" in text
    assert "1 failed" in text and "c.jpg" in text and "b.jpg" not in text


def test_cycles_are_collected_on_the_gui_thread_only(qapp) -> None:
    """app.qtfix.MainThreadCollector: automatic collection off, a GUI-thread timer collects."""
    import gc

    from app.qtfix import MainThreadCollector

    class Node:
        def __init__(self) -> None:
            self.me = self

    c = MainThreadCollector(interval_ms=10)
    try:
        assert not gc.isenabled()
        gc.collect()
        probe = Node()
        import weakref

        ref = weakref.ref(probe)
        del probe
        for _ in range(c.threshold[0] + 10):  # push generation 0 past its threshold
            Node()
        assert ref() is not None  # nothing collected behind the GUI thread's back
        deadline = time.monotonic() + 5.0
        while ref() is not None and time.monotonic() < deadline:
            qapp.processEvents()
            time.sleep(0.02)
        assert ref() is None  # the timer on the GUI thread collected the cycle
    finally:
        c.stop()
    assert gc.isenabled()
    gc.disable()  # as the suite's fixture left it
