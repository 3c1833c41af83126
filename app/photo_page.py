"""The photo view page: the before/after comparison with its tool bars.

It shows one photo of the grid's current order. Pixels come from the engine off the GUI thread
(``LatestTask``: only the newest request's result is shown); a screen-sized preview first, and a
full-resolution original when the user zooms past the preview's resolution.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QImage, QKeyEvent, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.canvas import CompareView
from app.details import RATING_NAMES
from app.workers import LatestTask, numpy_to_qimage

log = logging.getLogger(__name__)

PREVIEW_SIDE = 1600


def _tool(action: QAction) -> QToolButton:
    b = QToolButton()
    b.setDefaultAction(action)
    b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    b.setAutoRaise(True)
    return b


class PhotoPage(QWidget):
    """See the module docstring. ``services`` is the app's engine facade (app.services.Services)."""

    backRequested = Signal()
    photoShown = Signal(int)
    navigate = Signal(int)        # +1 / -1 / 0 = first / 2**31 = last (handled by the window)

    def __init__(self, services: Any, actions: dict[str, QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        # the window's actions by name (shadows QWidget.actions(), which nothing here calls)
        self.actions: dict[str, QAction] = actions  # type: ignore[assignment]
        self.photo_id: int | None = None
        self.info: Any = None
        self.rated: dict[int, int] = {}  # ratings given in this session, shown beside the gain
        self._full_loaded_for: int | None = None
        self._preview_scale = 1.0
        self._loader = LatestTask(self)
        self._loader.done.connect(self._on_loaded)
        self._loader.failed.connect(self._on_failed)
        self._full = LatestTask(self)
        self._full.done.connect(self._on_full)
        self._full.failed.connect(lambda msg: log.info("full-resolution load failed: %s", msg))

        self.compare = CompareView()
        self.compare.state.changed.connect(self._on_view_changed)
        self.compare.modeChanged.connect(self._sync_mode_buttons)
        self.compare.showingBeforeChanged.connect(lambda _b: self._update_zoom_label())

        top = QHBoxLayout()
        top.setContentsMargins(6, 4, 6, 0)
        top.addWidget(_tool(actions["back"]))
        top.addWidget(_tool(actions["prev"]))
        top.addWidget(_tool(actions["next"]))
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.title, 1)
        # The actions are in an exclusive QActionGroup; the buttons follow them (a QButtonGroup
        # on top would fight it and re-trigger the previous mode).
        for key in ("mode_single", "mode_split", "mode_side"):
            top.addWidget(_tool(actions[key]))
        top.addSpacing(12)
        top.addWidget(_tool(actions["fit"]))
        top.addWidget(_tool(actions["actual"]))
        self.zoom_label = QLabel()
        self.zoom_label.setMinimumWidth(56)
        top.addWidget(self.zoom_label)

        bottom = QHBoxLayout()
        bottom.setContentsMargins(6, 0, 6, 4)
        bottom.addWidget(_tool(actions["enhance"]))
        bottom.addWidget(QLabel("Strength"))
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0, 100)
        self.strength.setFixedWidth(120)
        self.strength.setToolTip("Strength of the one-click enhancement (applies to the next Enhance)")
        self.strength_label = QLabel()
        self.strength_label.setMinimumWidth(36)
        self.strength.valueChanged.connect(lambda v: self.strength_label.setText(f"{v}%"))
        bottom.addWidget(self.strength)
        bottom.addWidget(self.strength_label)
        # the opt-in faces stage: restore detected faces, faithful .. generated
        self.faces = QCheckBox("Faces")
        self.faces.setToolTip("Also restore the faces found in the photo (applies to the next Enhance)")
        self.face_w = QSlider(Qt.Orientation.Horizontal)
        self.face_w.setRange(0, 100)
        self.face_w.setFixedWidth(80)
        self.face_w.setToolTip("Faces: faithful (left: the face's own features) .. generated (right: learned detail)")
        self.face_w_label = QLabel()
        self.face_w_label.setMinimumWidth(64)
        self.face_w.valueChanged.connect(self._show_face_w)
        self.faces.toggled.connect(self._show_face_w)
        self._show_face_w()
        bottom.addSpacing(8)
        bottom.addWidget(self.faces)
        bottom.addWidget(self.face_w)
        bottom.addWidget(self.face_w_label)
        for key in ("undo", "redo", "revert"):
            bottom.addWidget(_tool(actions[key]))
        bottom.addSpacing(12)
        self.gain_label = QLabel()
        self.gain_label.setTextFormat(Qt.TextFormat.RichText)
        bottom.addWidget(self.gain_label, 1)
        bottom.addWidget(QLabel("Rate:"))
        for key in ("rate_2", "rate_1", "rate_0", "rate_-1"):
            bottom.addWidget(_tool(actions[key]))
        self.position = QLabel()
        bottom.addWidget(self.position)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addWidget(self.compare, 1)
        lay.addLayout(bottom)
        self.setFocusProxy(self.compare)

    def _show_face_w(self, *_a: object) -> None:
        on = self.faces.isChecked()
        self.face_w.setEnabled(on)
        v = self.face_w.value()
        self.face_w_label.setText("faithful" if v == 0 else "generated" if v == 100 else f"{v}% gen.")
        self.face_w_label.setEnabled(on)

    def set_faces_available(self, available: bool) -> None:
        """Without the face models the controls are hidden (the stage cannot run)."""
        for w in (self.faces, self.face_w, self.face_w_label):
            w.setVisible(available)

    # -- loading
    def show_photo(self, photo_id: int, position: str = "", keep_view: bool = False) -> None:
        same = photo_id == self.photo_id
        self.photo_id = photo_id
        self.position.setText(position)
        if not same:
            self._full_loaded_for = None
        try:
            self.info = self.services.photo(photo_id)
        except Exception as e:
            self.info = None
            self.compare.set_message(f"Cannot read this photo from the catalog: {e}")
            return
        path = str(getattr(self.info, "display_path", None) or getattr(self.info, "path", ""))
        self.title.setText(f"<b>{path.replace(chr(92), '/').rsplit('/', 1)[-1]}</b>")
        self.title.setToolTip(path)
        self._update_gain()
        status = getattr(self.info, "status", "ok")
        if status != "ok":
            reason = getattr(self.info, "error", None) or "the file is missing"
            self.compare.set_images(QSize(0, 0), None, None)
            self.compare.set_message(f"This photo cannot be shown: {reason}")
            self.photoShown.emit(photo_id)
            return
        if not (same and keep_view):
            self.compare.set_message("Loading…")
        svc = self.services
        def load(pid: int = photo_id) -> tuple[Any, ...]:
            return (pid, *svc.preview(pid, PREVIEW_SIDE))

        self._loader.submit(load)
        self.photoShown.emit(photo_id)

    def reload(self) -> None:
        if self.photo_id is not None:
            self._full_loaded_for = None
            self.show_photo(self.photo_id, self.position.text(), keep_view=True)

    def _on_loaded(self, result: tuple[int, np.ndarray, np.ndarray | None]) -> None:
        pid, before, after = result
        if pid != self.photo_id:
            return
        w = int(getattr(self.info, "width", 0) or before.shape[1])
        h = int(getattr(self.info, "height", 0) or before.shape[0])
        self._preview_scale = before.shape[1] / max(1, w)
        keep = self.compare.state.image_size == QSize(w, h).toSizeF()
        bpm = QPixmap.fromImage(numpy_to_qimage(before))
        apm = QPixmap.fromImage(numpy_to_qimage(after)) if after is not None else None
        self.compare.set_message("")
        self.compare.set_images(QSize(w, h), bpm, apm, keep_view=keep)
        self._update_zoom_label()
        self._maybe_load_full()

    def _on_failed(self, message: str) -> None:
        self.compare.set_images(QSize(0, 0), None, None)
        self.compare.set_message(f"Could not render this photo: {message}")

    def _maybe_load_full(self) -> None:
        """Past the preview's resolution, load the full-resolution pair once."""
        if self.photo_id is None or self._full_loaded_for == self.photo_id:
            return
        if self.compare.effective_zoom() <= self._preview_scale * 1.05:
            return
        pid = self.photo_id
        self._full_loaded_for = pid
        svc = self.services
        self.compare.set_message("Loading full resolution…")
        self._full.submit(lambda: (pid, *svc.preview(pid, None)))

    def _on_full(self, result: tuple[int, np.ndarray, np.ndarray | None]) -> None:
        pid, before, after = result
        if pid != self.photo_id:
            return
        self.compare.set_message("")
        bpm = QPixmap.fromImage(numpy_to_qimage(before))
        apm = QPixmap.fromImage(numpy_to_qimage(after)) if after is not None else None
        self._preview_scale = 1.0
        self.compare.set_images(self.compare.state.image_size.toSize(), bpm, apm, keep_view=True)

    def _on_view_changed(self) -> None:
        self._update_zoom_label()
        self._maybe_load_full()

    def _update_zoom_label(self) -> None:
        self.zoom_label.setText(f"{self.compare.effective_zoom() * 100:.0f}%")

    def _update_gain(self) -> None:
        rec = getattr(self.info, "recipe", None) if self.info is not None else None
        if rec is None:
            self.gain_label.setText("<span style='color:gray'>Not enhanced</span>")
            return
        gain = getattr(rec, "measured_gain", None)
        qb, qa = getattr(rec, "quality_before", None), getattr(rec, "quality_after", None)
        if gain is None:
            self.gain_label.setText("Enhanced (gain not measured)")
            return
        margin_of = getattr(self.services, "guard_margin", None)
        margin = float(margin_of()) if callable(margin_of) else 0.0
        # green: a gain above the quality model's noise; grey: within it (no measurable gain); red: a loss
        colour = "#3a3" if gain > margin else ("#888" if gain > 0 else "#c33")
        detail = f" (measured quality {qb:.2f} → {qa:.2f})" if qb is not None and qa is not None else ""
        rated = self.rated.get(self.photo_id) if self.photo_id is not None else None
        note = f" · you rated it <b>{RATING_NAMES[rated]}</b>" if rated is not None else ""
        self.gain_label.setText(f"Measured gain <b style='color:{colour}'>{gain:+.2f}</b>{detail}{note}")

    def _sync_mode_buttons(self, mode: str) -> None:
        self.actions[f"mode_{mode}"].setChecked(True)
        self._update_zoom_label()

    def keyPressEvent(self, ev: QKeyEvent) -> None:
        if ev.key() == Qt.Key.Key_Backslash:
            self.compare.keyPressEvent(ev)
            return
        super().keyPressEvent(ev)

    def keyReleaseEvent(self, ev: QKeyEvent) -> None:
        if ev.key() == Qt.Key.Key_Backslash:
            self.compare.keyReleaseEvent(ev)
            return
        super().keyReleaseEvent(ev)

    def shutdown(self) -> None:
        self._loader.shutdown()
        self._full.shutdown()


def qimage_of(arr: np.ndarray) -> QImage:
    return numpy_to_qimage(arr)
