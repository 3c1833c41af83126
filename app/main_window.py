"""The main window: library grid + details, photo view, jobs in the status bar, menus and shortcuts."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QIcon,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QSlider,
    QSplitter,
    QStackedWidget,
    QStyle,
    QToolBar,
    QToolButton,
    QWidget,
)

from app import settings as S
from app.delegate import SEVERITY_LABELS, PhotoDelegate
from app.details import RATING_NAMES, DetailsPane
from app.dialogs import ExportChoice, ExportDialog, PreferencesDialog
from app.library_model import PhotoListModel, Roles
from app.photo_page import PhotoPage
from app.services import Progress
from app.settings import Settings
from app.workers import Job, JobManager, ThumbnailLoader, eta_seconds, format_eta

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
SORT_LABELS = (("improvability", "Improvability"), ("quality", "Quality (lowest first)"),
               ("date", "Date taken"), ("name", "Name"))


def resource_icon(name: str, fallback: QStyle.StandardPixmap | None = None) -> QIcon:
    p = RESOURCES / f"{name}.svg"
    if p.exists():
        return QIcon(str(p))
    if fallback is not None:
        return QApplication.style().standardIcon(fallback)
    return QIcon()


class JobStatus(QWidget):
    """Status-bar widget: the running job's name, progress, time left and a cancel button."""

    def __init__(self, jobs: JobManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setFixedWidth(200)
        self.bar.setTextVisible(True)
        self.cancel = QToolButton()
        self.cancel.setText("Cancel")
        self.cancel.setIcon(QApplication.style().standardIcon(QStyle.StandardPixmap.SP_DialogCancelButton))
        self.cancel.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.cancel.setToolTip("Cancel the running background jobs (Ctrl+.)")
        self.cancel.clicked.connect(self._cancel)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel)
        self._watched: set[int] = set()
        jobs.changed.connect(self._update)
        jobs.jobAdded.connect(self._watch)
        self._update()

    def _watch(self, job: Job) -> None:
        job.signals.progress.connect(lambda _p: self._update())

    def _cancel(self) -> None:
        self.jobs.cancel_all()
        self.label.setText("Cancelling…")

    def _update(self) -> None:
        job = self.jobs.active()
        if job is None:
            self.hide()
            return
        self.show()
        queued = len(self.jobs.jobs()) - 1
        p: Progress | None = job.last_progress
        text = job.name
        if p is not None and p.message:
            text += f": {p.message}"
        eta = format_eta(eta_seconds(job)) if not (p and " left" in p.message) else ""  # the job may say it
        if eta:
            text += f" — {eta}"
        if queued > 0:
            text += f" (+{queued} queued)"
        self.label.setText(text)
        if p is None or not p.total:
            self.bar.setRange(0, 0)  # busy indicator while the total is unknown
        else:
            self.bar.setRange(0, p.total)
            self.bar.setValue(min(p.done, p.total))
            self.bar.setFormat(f"{p.done} / {p.total}")


class MainWindow(QMainWindow):
    folderOpened = Signal(str)
    libraryJobsFinished = Signal()
    enhanceFinished = Signal(str)

    def __init__(self, services: Any, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.settings = settings
        self.folder: str | None = None
        self.setWindowTitle("photolift")
        self.setAcceptDrops(True)
        self.setWindowIcon(resource_icon("photolift"))
        self.jobs = JobManager(self)
        self.jobs.jobFinished.connect(self._on_job_finished)
        threads = int(settings.get(S.THREADS)) or (os.cpu_count() or 2)
        self.thumbs = ThumbnailLoader(lambda pid: services.thumbnail(pid, 256), threads=min(4, threads), parent=self)
        thumb_size = int(settings.get(S.THUMB_SIZE))
        self.model = PhotoListModel(services.library, self.thumbs, parent=self, background=True)
        self.model.set_query(sort=str(settings.get(S.SORT)) if settings.get(S.SORT) in
                             [k for k, _ in SORT_LABELS] else "improvability")
        self.model.totalChanged.connect(self._update_counts)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(1500)
        self._refresh_timer.timeout.connect(self._refresh_tick)
        self._last_enhanced: list[int] = []
        self._superseded: set[int] = set()  # jobs the app cancelled itself (a face scan before a rescan)

        # actions by name (shadows QWidget.actions(), which nothing here calls)
        self.actions: dict[str, QAction] = {}  # type: ignore[assignment]
        self._make_actions()

        # grid page
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setUniformItemSizes(True)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(200)
        self.grid.setSpacing(4)
        self.grid.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.delegate = PhotoDelegate(thumb_size, self.grid)
        self.delegate.threshold = self.own_threshold()
        self.grid.setItemDelegate(self.delegate)
        self.grid.setModel(self.model)
        self.grid.activated.connect(self._open_index)
        self.grid.doubleClicked.connect(self._open_index)
        self.grid.selectionModel().currentChanged.connect(self._on_current_changed)
        self.grid.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        # A reset (new sort or filter) moves the current index without a currentChanged signal.
        self.model.modelReset.connect(lambda: self._on_current_changed(self.grid.currentIndex(), QModelIndex()))
        self.details = DetailsPane()
        self.empty_hint = QLabel("Open a folder (Ctrl+O) or drop one here.\n"
                                 "photolift indexes it, scores every photo and ranks them by how much "
                                 "they would gain from enhancement.")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.grid_stack = QStackedWidget()
        self.grid_stack.addWidget(self.empty_hint)
        self.grid_stack.addWidget(self.grid)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.grid_stack)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setSizes([1000, 300])

        # photo page
        self.photo_page = PhotoPage(services, self.actions)
        self.photo_page.strength.setValue(int(round(float(settings.get(S.STRENGTH)) * 100)))
        self.photo_page.strength.valueChanged.connect(lambda v: self.settings.set(S.STRENGTH, v / 100))
        self.photo_page.faces.setChecked(bool(settings.get(S.FACES)))
        self.photo_page.face_w.setValue(int(round(float(settings.get(S.FACE_W)) * 100)))
        self.photo_page.faces.toggled.connect(lambda on: self.settings.set(S.FACES, bool(on)))
        self.photo_page.face_w.valueChanged.connect(lambda v: self.settings.set(S.FACE_W, v / 100))
        self.photo_page.set_faces_available(self.services.faces_available())
        self.photo_page.photoShown.connect(lambda _pid: self._update_actions())
        self.photo_page.compare.set_mode(str(settings.get(S.COMPARE_MODE))
                                         if settings.get(S.COMPARE_MODE) in ("single", "split", "side") else "split")
        for key in ("prev", "next", "first", "last", "fit", "actual", "zoom_in", "zoom_out",
                    "mode_single", "mode_split", "mode_side", "back"):
            self.photo_page.addAction(self.actions[key])
            self.actions[key].setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

        self.pages = QStackedWidget()
        self.pages.addWidget(self.splitter)
        self.pages.addWidget(self.photo_page)
        self.pages.currentChanged.connect(lambda _i: self._update_actions())
        self.setCentralWidget(self.pages)

        self._make_menus()
        self._make_toolbar()
        self.job_status = JobStatus(self.jobs)
        self.statusBar().addPermanentWidget(self.job_status)
        self.counts_label = QLabel()
        self.statusBar().addWidget(self.counts_label)
        # A problem that lasts (no assessor model...) stays visible until a job succeeds.
        self.problem_label = QLabel()
        self.problem_label.setStyleSheet("color: #c33")
        self.problem_label.hide()
        self.statusBar().addWidget(self.problem_label)
        self._restore_state()
        self._update_actions()
        # after the window is up: finish the enhance batches a crash or kill interrupted
        QTimer.singleShot(0, self, self.resume_interrupted)

    # ----------------------------------------------------------------------------- actions
    def _act(self, key: str, text: str, slot: Any, shortcut: Any = None, icon: QIcon | None = None,
             tip: str = "", checkable: bool = False) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            seqs = shortcut if isinstance(shortcut, list) else [shortcut]
            a.setShortcuts([QKeySequence(s) for s in seqs])
        if icon is not None:
            a.setIcon(icon)
        a.setCheckable(checkable)
        tip = tip or text.replace("&", "").replace("…", "")
        if a.shortcut().toString():
            tip += f" ({a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})"
        a.setToolTip(tip)
        a.setStatusTip(tip)
        a.triggered.connect(slot)
        self.actions[key] = a
        return a

    def _make_actions(self) -> None:
        sp = QStyle.StandardPixmap
        std = QApplication.style().standardIcon
        self._act("open", "&Open Folder…", self.choose_folder, QKeySequence.StandardKey.Open,
                  resource_icon("open", sp.SP_DirOpenIcon), "Open a folder of photos")
        self._act("rescan", "&Rescan Folder", self.rescan, "F5", std(sp.SP_BrowserReload),
                  "Index the folder again and score new or changed photos")
        self._act("quit", "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self._act("enhance", "&Enhance", self.enhance_current, "E", resource_icon("enhance", sp.SP_ArrowUp),
                  "One-click enhance the selected photos")
        self._act("enhance_recommended", "Enhance All &Recommended", self.enhance_recommended, "Ctrl+Shift+E",
                  resource_icon("enhance_all", sp.SP_ArrowUp))
        self._act("undo", "&Undo Edit", self.undo, QKeySequence.StandardKey.Undo, std(sp.SP_ArrowBack))
        self._act("redo", "&Redo Edit", self.redo, QKeySequence.StandardKey.Redo, std(sp.SP_ArrowForward))
        self._act("revert", "Re&vert to Original", self.revert, "Ctrl+Shift+R", std(sp.SP_DialogResetButton))
        self._act("export", "E&xport…", self.export, "Ctrl+Shift+S", resource_icon("export", sp.SP_DialogSaveButton),
                  "Export enhanced copies")
        self._act("prefs", "&Preferences…", self.preferences, QKeySequence.StandardKey.Preferences)
        if not self.actions["prefs"].shortcut().toString():
            self.actions["prefs"].setShortcut(QKeySequence("Ctrl+,"))
        for value, key in ((2, "Ctrl+1"), (1, "Ctrl+2"), (0, "Ctrl+3"), (-1, "Ctrl+4")):
            name = RATING_NAMES[value]
            self._act(f"rate_{value}", name.capitalize(), lambda _c=False, v=value: self.rate(v), key,
                      tip=f"Rate this enhancement: {name} improvement" if value >= 0 else
                      "Rate this enhancement: it made the photo worse")
        self._act("finetune", "Apply My Ratings to the &Ranking", self.apply_finetune, "Ctrl+Shift+F",
                  tip="Fine-tune the ranking's last layer on your ratings and rescore")
        self._act("cancel_jobs", "&Cancel Background Jobs", self.jobs.cancel_all, "Ctrl+.")
        self._act("defects", "Camera &Defects…", self.show_defects, "Ctrl+Shift+D",
                  tip="Find and fix what each camera gets wrong in every photo (dust, lines, hot pixels, biases)")
        # photo view
        self._act("back", "Back to &Library", self.show_grid, ["Esc", "G"], std(sp.SP_FileDialogListView))
        self._act("prev", "Previous", lambda: self.step(-1), ["Left", "Up", "PgUp"], std(sp.SP_MediaSeekBackward))
        self._act("next", "Next", lambda: self.step(1), ["Right", "Down", "PgDown", "Space"],
                  std(sp.SP_MediaSeekForward))
        self._act("first", "First", lambda: self.step_to(0), "Home")
        self._act("last", "Last", lambda: self.step_to(-1), "End")
        self._act("fit", "Fit", lambda: self.photo_page.compare.fit(), "F", tip="Fit the photo in the window")
        self._act("actual", "100%", lambda: self.photo_page.compare.actual_size(), ["1", "Z"],
                  tip="One photo pixel per screen pixel")
        self._act("zoom_in", "Zoom In", lambda: self.photo_page.compare.zoom_in(), ["+", "="])
        self._act("zoom_out", "Zoom Out", lambda: self.photo_page.compare.zoom_out(), "-")
        group = QActionGroup(self)
        for mode, text, key in (("single", "Single", "T"), ("split", "Split", "S"), ("side", "Side by Side", "D")):
            a = self._act(f"mode_{mode}", text, lambda _c=False, m=mode: self.set_compare_mode(m), key,
                          checkable=True, tip={"single": "One image; hold or tap \\ to see the original",
                                               "split": "Original left of a draggable divider, enhanced right",
                                               "side": "Original and enhanced side by side, zoom and pan in sync"}[mode])
            group.addAction(a)
        self._act("toggle", "Show Original / Enhanced (hold or tap \\)", lambda: self.photo_page.compare.toggle())
        self._act("view_photo", "&View Photo", self.view_current, "Return", std(sp.SP_FileDialogContentsView))

    def _make_menus(self) -> None:
        mb = self.menuBar()
        a = self.actions
        f = mb.addMenu("&File")
        f.addAction(a["open"])
        self.recent_menu = f.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        f.addAction(a["rescan"])
        f.addSeparator()
        f.addAction(a["export"])
        f.addSeparator()
        f.addAction(a["prefs"])
        f.addSeparator()
        f.addAction(a["quit"])
        e = mb.addMenu("&Edit")
        for k in ("enhance", "enhance_recommended", None, "undo", "redo", "revert", None):
            e.addSeparator() if k is None else e.addAction(a[k])
        rate = e.addMenu("Rate Enhancement")
        for grade in (2, 1, 0, -1):
            rate.addAction(a[f"rate_{grade}"])
        e.addAction(a["finetune"])
        e.addSeparator()
        e.addAction(a["defects"])
        v = mb.addMenu("&View")
        v.addAction(a["view_photo"])
        v.addAction(a["back"])
        v.addSeparator()
        for k in ("mode_single", "mode_split", "mode_side", "toggle", None, "fit", "actual", "zoom_in", "zoom_out",
                  None, "prev", "next", "first", "last"):
            v.addSeparator() if k is None else v.addAction(a[k])
        j = mb.addMenu("&Jobs")
        j.addAction(a["cancel_jobs"])

    def _make_toolbar(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("main_toolbar")
        tb.setIconSize(QSize(20, 20))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.addAction(self.actions["open"])
        recent = QToolButton()
        recent.setText("Recent")
        recent.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        recent.setMenu(self.recent_menu)
        tb.addWidget(recent)
        tb.addSeparator()
        tb.addWidget(QLabel(" Sort: "))
        self.sort_combo = QComboBox()
        for key, label in SORT_LABELS:
            self.sort_combo.addItem(label, key)
        self.sort_combo.setCurrentIndex(max(0, self.sort_combo.findData(self.model.query.sort)))
        self.sort_combo.currentIndexChanged.connect(lambda _i: self.set_sort(str(self.sort_combo.currentData())))
        self.sort_combo.setToolTip("Order of the grid (sorted in the catalog)")
        tb.addWidget(self.sort_combo)
        self.filter_button = QToolButton()
        self.filter_button.setText("Filter")
        self.filter_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.filter_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.filter_menu = QMenu(self)
        self.filter_actions: dict[str, QAction] = {}
        for key, text in (("recommended", "Recommended"), ("edited", "Edited"), ("errors", "Errors"),
                          ("camera_defects", "Camera Defects"), ("faces", "Faces")):
            act = self.filter_menu.addAction(text)
            act.setCheckable(True)
            act.toggled.connect(lambda _c: self._apply_filters())
            self.filter_actions[key] = act
        self.filter_menu.addSection("What is wrong")
        self.degradation_group = QActionGroup(self)
        self.degradation_group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        for name, label in SEVERITY_LABELS.items():
            act = self.filter_menu.addAction(label.capitalize())
            act.setCheckable(True)
            act.setData(name)
            self.degradation_group.addAction(act)
            act.toggled.connect(lambda _c: self._apply_filters())
            self.filter_actions[f"deg:{name}"] = act
        self.filter_menu.addSeparator()
        clear = self.filter_menu.addAction("Show All")
        clear.triggered.connect(self.clear_filters)
        self.filter_button.setMenu(self.filter_menu)
        tb.addWidget(self.filter_button)
        tb.addSeparator()
        for k in ("view_photo", "enhance", "enhance_recommended", "export"):
            tb.addAction(self.actions[k])
        tb.addSeparator()
        tb.addWidget(QLabel(" Size "))
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(96, 320)
        self.size_slider.setFixedWidth(100)
        self.size_slider.setValue(self.delegate.thumb_size)
        self.size_slider.valueChanged.connect(self.set_thumb_size)
        tb.addWidget(self.size_slider)
        self.addToolBar(tb)

    # ----------------------------------------------------------------------------- state
    def _restore_state(self) -> None:
        geo = self.settings.get(S.WINDOW_GEOMETRY)
        if geo is not None and not geo.isEmpty():
            self.restoreGeometry(geo)
        else:
            self.resize(1400, 900)
        st = self.settings.get(S.WINDOW_STATE)
        if st is not None and not st.isEmpty():
            self.restoreState(st)
        sp = self.settings.get(S.SPLITTER_STATE)
        if sp is not None and not sp.isEmpty():
            self.splitter.restoreState(sp)

    def save_state(self) -> None:
        s = self.settings
        s.set(S.WINDOW_GEOMETRY, self.saveGeometry())
        s.set(S.WINDOW_STATE, self.saveState())
        s.set(S.SPLITTER_STATE, self.splitter.saveState())
        s.set(S.SORT, self.model.query.sort)
        s.set(S.THUMB_SIZE, self.delegate.thumb_size)
        s.set(S.COMPARE_MODE, self.photo_page.compare.mode)
        s.sync()

    # ----------------------------------------------------------------------------- folders
    def choose_folder(self) -> None:
        start = self.folder or str(self.settings.get(S.LAST_FOLDER)) or str(Path.home())
        d = QFileDialog.getExistingDirectory(self, "Open a folder of photos", start)
        if d:
            self.open_folder(d)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.get(S.RECENT_FOLDERS)
        if not recent:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for i, folder in enumerate(recent):
            act = self.recent_menu.addAction(f"&{i + 1} {folder}" if i < 9 else folder)
            act.triggered.connect(lambda _c=False, f=folder: self.open_folder(f))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear Recent").triggered.connect(
                lambda: self.settings.set(S.RECENT_FOLDERS, []))

    def open_folder(self, folder: str, scan: bool = True) -> None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            QMessageBox.warning(self, "photolift", f"{folder} is not a folder that can be read.")
            return
        folder = str(path.resolve())
        self.folder = folder
        self.settings.add_recent_folder(folder)
        self.setWindowTitle(f"{path.name or folder} — photolift")
        self.show_grid()
        self.model.set_folder(folder)
        self.grid_stack.setCurrentIndex(1)
        self.details.show_info(None)
        if scan:
            self.rescan()
        self.folderOpened.emit(folder)

    def rescan(self) -> None:
        if self.folder is None:
            return
        folder = self.folder
        for j in self.jobs.jobs():  # a face scan is resumable: it must not hold up this folder's index
            if j.kind == "faces":
                self._superseded.add(id(j))
                j.cancel()
        self.jobs.submit(Job(f"Index {Path(folder).name}", self.services.index_job(folder), kind="index"),
                         "library")
        self.jobs.submit(Job("Score", self.services.score_job(folder), kind="score"), "library")
        if self.services.faces_available():
            # after scoring, in the same queue: the faces of photos not examined yet (the Faces filter)
            self.jobs.submit(Job("Find faces", self.services.faces_job(folder), kind="faces"), "library")
        self._refresh_timer.start()

    def dragEnterEvent(self, ev: QDragEnterEvent) -> None:
        if ev.mimeData().hasUrls() and any(Path(u.toLocalFile()).is_dir() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev: QDropEvent) -> None:
        for u in ev.mimeData().urls():
            p = u.toLocalFile()
            if p and Path(p).is_dir():
                ev.acceptProposedAction()
                self.open_folder(p)
                return

    # ----------------------------------------------------------------------------- grid
    def set_sort(self, sort: str) -> None:
        self.model.set_query(sort=sort)
        self.settings.set(S.SORT, sort)
        i = self.sort_combo.findData(sort)
        if i != self.sort_combo.currentIndex():
            self.sort_combo.setCurrentIndex(i)

    def own_threshold(self) -> float | None:
        """The user's own 'recommended' threshold, or None to use the model's."""
        return float(self.settings.get(S.THRESHOLD)) if self.settings.get(S.OWN_THRESHOLD) else None

    def recommended_filter(self) -> dict[str, Any]:
        """'Recommended' in the library's filter terms, by the façade's one rule (the assessor's
        calibrated flag, as ``rank``, ``score`` and ``export --recommended`` read it), or by the
        user's own threshold when *Preferences* says so."""
        return self.services.recommended_filter(self.own_threshold())

    def current_filters(self) -> dict[str, Any]:
        f: dict[str, Any] = {}
        if self.filter_actions["recommended"].isChecked():
            f.update(self.recommended_filter())
        if self.filter_actions["edited"].isChecked():
            f["has_recipe"] = True
        if self.filter_actions["errors"].isChecked():
            f["status"] = ["error", "missing"]
        if self.filter_actions["camera_defects"].isChecked():
            f["camera_defects"] = True
        if self.filter_actions["faces"].isChecked():
            f["has_faces"] = True
        deg = self.degradation_group.checkedAction()
        if deg is not None:
            f["degradation"] = str(deg.data())
        return f

    _batch_filters = False

    def _apply_filters(self) -> None:
        if self._batch_filters:
            return
        filters = self.current_filters()
        self.delegate.threshold = self.own_threshold()
        self.filter_button.setText("Filter" if not filters else f"Filter ({len(filters)})")
        try:
            self.model.set_query(filters=filters)
        except ValueError as e:  # a filter this catalog's library does not know
            self.statusBar().showMessage(f"Filter not available: {e}", 8000)

    def set_filter(self, key: str, on: bool = True) -> None:
        self.filter_actions[key].setChecked(on)

    def clear_filters(self) -> None:
        # No blockSignals here: the QActionGroup learns of an unchecked action through its signals.
        self._batch_filters = True
        try:
            for act in self.filter_actions.values():
                act.setChecked(False)
        finally:
            self._batch_filters = False
        self._apply_filters()

    def set_thumb_size(self, size: int) -> None:
        self.delegate.set_thumb_size(size)
        self.grid.setGridSize(QSize())  # let the delegate's sizeHint decide
        self.grid.doItemsLayout()

    def _update_counts(self, total: int) -> None:
        if self.folder is None:
            self.counts_label.setText("")
            return
        self.counts_label.setText(f"{total} photos shown")

    def selected_ids(self) -> list[int]:
        rows = sorted(i.row() for i in self.grid.selectionModel().selectedIndexes())
        return [int(self.model.photo_at(r).id) for r in rows]

    def current_id(self) -> int | None:
        if self.pages.currentWidget() is self.photo_page:
            return self.photo_page.photo_id
        idx = self.grid.currentIndex()
        return int(idx.data(Roles.PhotoId)) if idx.isValid() else None

    def _on_current_changed(self, cur: QModelIndex, _prev: QModelIndex) -> None:
        self._show_details(int(cur.data(Roles.PhotoId)) if cur.isValid() else None)
        self._update_actions()

    def _show_details(self, photo_id: int | None) -> None:
        if photo_id is None:
            self.details.show_info(None)
            return
        try:
            self.details.show_info(self.services.photo(photo_id))
        except Exception as e:
            log.warning("details of photo %s: %s", photo_id, e)
            self.details.show_info(None, f"Cannot read photo {photo_id}: {e}")

    def select_row(self, row: int) -> None:
        idx = self.model.index(row)
        self.grid.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.grid.scrollTo(idx)

    # ----------------------------------------------------------------------------- photo view
    def _open_index(self, idx: QModelIndex) -> None:
        if idx.isValid():
            self.view_row(idx.row())

    def view_current(self) -> None:
        idx = self.grid.currentIndex()
        if not idx.isValid() and self.model.rowCount() > 0:
            idx = self.model.index(0)
        if idx.isValid():
            self.view_row(idx.row())

    def view_row(self, row: int) -> None:
        if not 0 <= row < self.model.rowCount():
            return
        self.select_row(row)
        pid = int(self.model.photo_at(row).id)
        self.pages.setCurrentWidget(self.photo_page)
        self.photo_page.show_photo(pid, self._position_text(row))
        self.photo_page.compare.setFocus()

    def _position_text(self, row: int) -> str:
        return f"{row + 1} / {self.model.total}"

    def show_grid(self) -> None:
        if self.pages.currentWidget() is self.photo_page and self.photo_page.photo_id is not None:
            r = self.model.row_for_id(self.photo_page.photo_id)
            if r is not None:
                self.select_row(r)
        self.pages.setCurrentWidget(self.splitter)
        self.grid.setFocus()

    def step(self, delta: int) -> None:
        pid = self.photo_page.photo_id
        r = self.model.row_for_id(pid) if pid is not None else None
        if r is None:
            return
        self.step_to(r + delta)

    def step_to(self, row: int) -> None:
        if row < 0:  # End: load every page first so "last" is the real last photo
            self.model.load_rows(None)
            row = self.model.rowCount() - 1
        self.model.load_rows(row + 1)
        if 0 <= row < self.model.rowCount():
            self.view_row(row)

    def set_compare_mode(self, mode: str) -> None:
        self.photo_page.compare.set_mode(mode)
        self.settings.set(S.COMPARE_MODE, mode)

    # ----------------------------------------------------------------------------- edits
    def _target_ids(self) -> list[int]:
        if self.pages.currentWidget() is self.photo_page:
            return [self.photo_page.photo_id] if self.photo_page.photo_id is not None else []
        ids = self.selected_ids()
        if not ids and self.current_id() is not None:
            ids = [int(self.current_id())]  # type: ignore[arg-type]
        return ids

    def enhance_current(self) -> None:
        self.enhance(self._target_ids())

    def enhance_recommended(self) -> None:
        if self.folder is None:
            return
        ids = self.services.ids(self.folder, self.recommended_filter())
        if not ids:
            self.statusBar().showMessage("No recommended photos yet (scoring may still be running).", 5000)
            return
        self.enhance(ids, title=f"Enhance {len(ids)} recommended photos")

    def enhance(self, ids: list[int], title: str | None = None) -> Job | None:
        if not ids:
            return None
        strength = self.photo_page.strength.value() / 100.0
        faces = self.photo_page.faces.isChecked() and not self.photo_page.faces.isHidden()
        ops = self.services.one_click_ops(faces=faces)
        face_w = self.photo_page.face_w.value() / 100.0 if faces else None
        name = title or (f"Enhance {len(ids)} photos" if len(ids) > 1 else "Enhance 1 photo")
        job = Job(name, self.services.enhance_job(ids, strength, ops, face_w=face_w), kind="enhance")
        job.signals.yielded.connect(self._on_enhanced)
        self._last_enhanced = []
        self.jobs.submit(job, "edit")
        return job

    def resume_interrupted(self) -> Job | None:
        """At start-up: resume the enhance batches that a crash, kill or power cut interrupted
        (their process is gone; a batch another running photolift is doing stays its own)."""
        try:
            n = self.services.interrupted_enhancements()
        except Exception as e:  # a catalog problem shows elsewhere; never block the start
            log.warning("cannot look for interrupted enhancements: %s", e)
            return None
        if n == 0:
            return None
        name = f"Resume {n} interrupted enhancement{'s' if n > 1 else ''}"
        job = Job(name, self.services.resume_job(), kind="enhance")
        job.signals.yielded.connect(self._on_enhanced)
        self._last_enhanced = []
        self.jobs.submit(job, "edit")
        self.statusBar().showMessage(f"{name} (the last session stopped before they were done)", 8000)
        return job

    def _on_enhanced(self, result: Any) -> None:
        pid = getattr(result, "photo_id", None)
        if pid is None:
            return
        self._last_enhanced.append(int(pid))
        self.model.forget_thumbnail(int(pid))  # the grid shows the edit
        if pid == self.photo_page.photo_id and self.pages.currentWidget() is self.photo_page:
            self.photo_page.reload()
        if pid == self.current_id():
            self._show_details(int(pid))
        err = getattr(result, "error", None)
        if err:
            self.statusBar().showMessage(f"Could not enhance photo {pid}: {err}", 8000)
        self._refresh_now()

    def _edit_op(self, op: str) -> None:
        pid = self.current_id()
        if pid is None:
            return
        try:
            getattr(self.services, op)(pid)
        except Exception as e:
            QMessageBox.warning(self, "photolift", f"{op.capitalize()} failed: {e}")
            return
        self._after_edit(pid)

    def _after_edit(self, pid: int) -> None:
        self.model.forget_thumbnail(pid)
        self._refresh_now(sync=True)
        self._show_details(pid)
        if self.pages.currentWidget() is self.photo_page:
            self.photo_page.reload()
        self._update_actions()

    def undo(self) -> None:
        self._edit_op("undo")

    def redo(self) -> None:
        self._edit_op("redo")

    def revert(self) -> None:
        self._edit_op("revert")

    def rate(self, value: int) -> None:
        pid = self.current_id()
        if pid is None:
            return
        try:
            self.services.rate(pid, value)
        except Exception as e:
            QMessageBox.warning(self, "photolift", f"Could not store the rating: {e}")
            return
        self.statusBar().showMessage(f"Rated: {RATING_NAMES[value]}. Ratings tune the ranking "
                                     "(Edit > Apply My Ratings to the Ranking).", 6000)
        self.photo_page.rated[pid] = value
        self._show_details(pid)
        if self.pages.currentWidget() is self.photo_page:
            self.photo_page.show_photo(pid, self.photo_page.position.text(), keep_view=True)

    def apply_finetune(self) -> None:
        job = Job("Fine-tune the ranking", self.services.finetune_job(), kind="finetune")
        job.signals.yielded.connect(lambda r: self.statusBar().showMessage(
            f"Ranking updated from {getattr(r, 'n_ratings', '?')} ratings; "
            f"{getattr(r, 'rescored', '?')} photos re-ranked.", 10000))
        job.signals.errored.connect(lambda msg: QMessageBox.warning(self, "photolift",
                                                                    f"Fine-tuning failed: {msg}"))
        self.jobs.submit(job, "library")
        self._refresh_timer.start()

    # ----------------------------------------------------------------------------- export
    def export(self) -> ExportDialog | None:
        if self.folder is None:
            return None
        counts = {"selection": len(self.selected_ids()) or (1 if self.current_id() is not None else 0),
                  "enhanced": self.services.count(self.folder, {"has_recipe": True}),
                  "recommended": self.services.count(self.folder, self.recommended_filter())}
        dlg = ExportDialog(self.settings, counts, self)
        dlg.exportRequested.connect(lambda choice: self._start_export(dlg, choice))
        dlg.setModal(True)
        dlg.show()
        return dlg

    def _start_export(self, dlg: ExportDialog, choice: ExportChoice) -> None:
        assert self.folder is not None
        if choice.which == "selection":
            ids = self._target_ids()
        elif choice.which == "enhanced":
            ids = self.services.ids(self.folder, {"has_recipe": True})
        else:
            ids = self.services.ids(self.folder, self.recommended_filter())
        problem = self.services.check_template(choice.template)
        if problem:
            dlg.status.setText(problem)
            return
        try:
            self.services.check_export_dir(choice.out_dir)
        except Exception as e:  # OutputDirError: inside the library, not writable...
            dlg.status.setText(str(e))
            return
        job = Job(f"Export {len(ids)} photos",
                  self.services.export_job(ids, choice.out_dir, choice.fmt, choice.quality, choice.template),
                  kind="export")
        dlg.start(job, len(ids))
        self.jobs.submit(job, "edit")

    # ----------------------------------------------------------------------------- preferences
    def preferences(self) -> PreferencesDialog:
        default_thr = None
        try:
            default_thr = self.services.default_threshold()
        except Exception:
            pass
        from app.services import CatalogCare

        try:
            limit, used = self.services.cache_limit_mb(), self.services.cache_used_bytes()
        except Exception:
            limit = used = None
        dlg = PreferencesDialog(self.settings, default_thr, CatalogCare.location(None), self,
                                cache_limit_mb=limit, cache_used_bytes=used)
        dlg.accepted.connect(self._apply_filters)

        def apply_cache() -> None:
            if dlg.cache_limit is not None and dlg.cache_limit.value() != limit:
                self.services.set_cache_limit_mb(dlg.cache_limit.value())

        dlg.accepted.connect(apply_cache)
        # the next job runs where the setting says (a job already running keeps its place)
        dlg.accepted.connect(lambda: setattr(self.services, "cluster", str(self.settings.get(S.CLUSTER))))
        dlg.setModal(True)
        dlg.show()
        return dlg

    # ----------------------------------------------------------------------------- jobs
    # ----------------------------------------------------------------------------- camera defects
    _defects_dialog: Any = None

    def show_defects(self) -> None:
        from app.defects_dialog import DefectsDialog

        if self._defects_dialog is None:
            dlg = DefectsDialog(self.services, self)
            dlg.findRequested.connect(self.find_defects)
            dlg.showAffected.connect(lambda: self.set_filter("camera_defects", True))
            self._defects_dialog = dlg
        self._defects_dialog.reload()
        self._defects_dialog.show()
        self._defects_dialog.raise_()

    def find_defects(self, force: bool = False) -> None:
        """Run the camera-defect detection for the open folder's cameras (a library job)."""
        if self.folder is None:
            self.statusBar().showMessage("Open a folder first", 5000)
            return
        job = Job("Find camera defects", self.services.defects_job(self.folder, force), kind="defects")
        self.jobs.submit(job, "library")

    def _on_job_finished(self, job: Job, state: str) -> None:
        self._refresh_now(sync=True)  # once at the end of a job: the grid is exact when it says done
        if state == "error":
            self.statusBar().showMessage(f"{job.name} failed: {job.error}", 15000)
            if job.kind in ("score", "index"):
                self.problem_label.setText(f"{job.name} failed: {job.error}")
                self.problem_label.setToolTip(str(job.error))
                self.problem_label.show()
        elif job.kind == "score" and state == "done":
            self.problem_label.hide()
        elif state == "cancelled" and id(job) not in self._superseded:  # not when the app itself stopped it
            self.statusBar().showMessage(f"{job.name}: cancelled", 5000)
        self._superseded.discard(id(job))
        if not self.jobs.jobs():
            self._refresh_timer.stop()
        if job.kind in ("index", "score", "finetune") and not any(
                j.kind in ("index", "score", "finetune") for j in self.jobs.jobs()):
            self.libraryJobsFinished.emit()
        if job.kind == "enhance":
            self.enhanceFinished.emit(state)
        if job.kind == "defects" and self._defects_dialog is not None:
            self._defects_dialog.reload()
        self._update_actions()

    def _refresh_tick(self) -> None:
        self._refresh_now()
        # Back off when a refresh gets expensive (a huge loaded range): at most ~5% of the time.
        cost_ms = self.model.last_refresh_s * 1000
        self._refresh_timer.setInterval(int(max(1500, 20 * cost_ms)))

    def _refresh_now(self, sync: bool = False) -> None:
        if self.folder is None:
            return
        self.model.refresh(sync=sync)
        cur = self.current_id()
        if cur is not None and self.pages.currentWidget() is self.splitter:
            self._show_details(cur)

    def _update_actions(self) -> None:
        has_folder = self.folder is not None
        in_photo = self.pages.currentWidget() is self.photo_page
        has_target = bool(self._target_ids()) if has_folder else False
        a = self.actions
        for k in ("rescan", "enhance_recommended", "export"):
            a[k].setEnabled(has_folder)
        a["enhance"].setEnabled(has_target)
        a["view_photo"].setEnabled(has_folder and self.model.rowCount() > 0)
        info = self.photo_page.info if in_photo else None
        edited = info is not None and getattr(info, "recipe", None) is not None
        for k in ("undo", "redo", "revert"):
            a[k].setEnabled(has_target)
        for v in (2, 1, 0, -1):
            a[f"rate_{v}"].setEnabled(edited if in_photo else has_target)

    # ----------------------------------------------------------------------------- shutdown
    def closeEvent(self, ev: QCloseEvent) -> None:
        self.save_state()
        self.shutdown()
        ev.accept()

    def shutdown(self) -> None:
        """Stop in order: timers, queued work, cancel running jobs, wait for every pool.
        The catalog is closed by the caller after this returns (app.main)."""
        self._refresh_timer.stop()
        self.model.shutdown()
        self.thumbs.shutdown()
        self.photo_page.shutdown()
        self.jobs.shutdown()

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Process events until no job runs (for scripts such as app.screenshots)."""
        end = time.monotonic() + timeout_s
        while self.jobs.jobs() and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.02)
        QApplication.processEvents()
        return not self.jobs.jobs()
