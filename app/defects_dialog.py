"""The camera-defects window: per camera, what it gets wrong in every photo, where, in how many
photos; example crops; dismiss. The detection itself is an engine job (``Services.defects_job``)
run by the main window's job manager; example crops are decoded by a latest-wins worker. Widgets
are only touched here, on the GUI thread; workers hand back numpy arrays (pixmaps are made here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.workers import LatestTask, numpy_to_qimage


def _pixmap(rgb: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(numpy_to_qimage(rgb))


class DefectsDialog(QDialog):
    """Cameras on the left; the chosen camera's map, defects, crops and dismiss on the right."""

    findRequested = Signal(bool)  # force: the main window runs the detection job
    showAffected = Signal()  # the main window filters the grid to affected photos

    def __init__(self, services: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Camera Defects")
        self.resize(980, 620)
        self.services = services
        self.reports: list[Any] = []
        self.examples = LatestTask(self)
        self.examples.done.connect(self._on_examples)

        self.cameras = QListWidget()
        self.cameras.setMinimumWidth(300)
        self.cameras.currentRowChanged.connect(self._show_camera)
        self.status = QLabel("Photos are grouped by the camera (body, lens, pixel size) that made them; "
                             "a defect is what stays at one place in most of a camera's photos.")
        self.status.setWordWrap(True)
        self.examples.failed.connect(self._on_examples_failed)
        find = QPushButton("Find Defects")
        find.setToolTip("Examine the cameras of this folder's photos (unchanged cameras are read back)")
        find.clicked.connect(lambda: self.findRequested.emit(False))
        again = QPushButton("Examine Again")
        again.clicked.connect(lambda: self.findRequested.emit(True))
        affected = QPushButton("Show Affected Photos")
        affected.setToolTip("Filter the library to photos of cameras with a defect")
        affected.clicked.connect(self.showAffected.emit)

        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold; font-size: 14px")
        self.title.setWordWrap(True)
        self.map = QLabel()
        self.map.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.list_box = QWidget()
        self.list_layout = QVBoxLayout(self.list_box)
        self.list_layout.setAlignment(Qt.AlignmentFlag.AlignTop)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.list_box)
        right = QVBoxLayout()
        right.addWidget(self.title)
        right.addWidget(self.map)
        right.addWidget(scroll, 1)
        left = QVBoxLayout()
        left.addWidget(self.cameras, 1)
        row = QHBoxLayout()
        for b in (find, again, affected):
            row.addWidget(b)
        left.addLayout(row)
        body = QHBoxLayout()
        body.addLayout(left)
        body.addLayout(right, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        outer = QVBoxLayout(self)
        outer.addWidget(self.status)
        outer.addLayout(body, 1)
        outer.addWidget(buttons)
        self._crop_labels: dict[int, list[QLabel]] = {}
        self.reload()

    # -- data ------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the stored detections (cheap: one query) and show them."""
        keep = self.cameras.currentRow()
        self.reports = self.services.defect_reports()
        self.cameras.blockSignals(True)
        self.cameras.clear()
        for rep in self.reports:
            it = QListWidgetItem(f"{rep.camera}\n{self.services.defect_summary(rep)}")
            live = [d for d in rep.defects if not d.dismissed]
            if not live:
                it.setForeground(Qt.GlobalColor.gray)
            self.cameras.addItem(it)
        self.cameras.blockSignals(False)
        if not self.reports:
            self.title.setText("No camera examined yet: Find Defects examines the cameras of this folder.")
            self._clear_list()
            self.map.clear()
            return
        self.cameras.setCurrentRow(min(max(0, keep), len(self.reports) - 1))
        self._show_camera(self.cameras.currentRow())

    def _clear_list(self) -> None:
        while self.list_layout.count():
            item = self.list_layout.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        self._crop_labels = {}

    def _show_camera(self, row: int) -> None:

        if not 0 <= row < len(self.reports):
            return
        rep = self.reports[row]
        self.title.setText(f"{rep.camera}: {self.services.defect_summary(rep)}")
        self.map.setPixmap(_pixmap(self.services.defect_map(rep, 420)))
        self._clear_list()
        if not rep.defects:
            self.list_layout.addWidget(QLabel("Nothing this camera does wrong in every photo was found."))
            return
        for i, d in enumerate(rep.defects):
            self.list_layout.addWidget(self._defect_row(rep, i, d))
        def crops() -> dict[int, list[np.ndarray]]:
            return {d.id: self.services.defect_examples(rep, d) for d in rep.defects}

        self.examples.submit(crops)

    def _defect_row(self, rep: Any, i: int, d: Any) -> QWidget:

        w = QWidget()
        lay = QHBoxLayout(w)
        lay.setContentsMargins(2, 2, 2, 2)
        b = self.services.defect_bbox(d, rep.orientation)
        where = "whole frame" if d.kind == "bias" else f"at {100 * (b[0] + b[2]) / 2:.0f}% x, {100 * (b[1] + b[3]) / 2:.0f}% y"
        extra = ""
        if d.kind == "bias":
            extra = " (" + ", ".join(str(x) for x in d.params.get("what", [])) + ")"
        text = QLabel(f"{i + 1}. {d.kind.replace('_', ' ')}{extra}, {where}\nin {d.photos} of {d.series} photos, "
                      f"confidence {d.confidence:.2f}" + ("\ndismissed: not corrected" if d.dismissed else ""))
        text.setMinimumWidth(220)
        lay.addWidget(text)
        crops = []
        for _ in range(3):
            lab = QLabel()
            lab.setFixedSize(120, 120)
            lab.setStyleSheet("background: #333")
            lay.addWidget(lab)
            crops.append(lab)
        self._crop_labels[d.id] = crops
        btn = QPushButton("Restore" if d.dismissed else "Dismiss")
        btn.setToolTip("Not a defect: do not report or correct it" if not d.dismissed else "Report and correct it again")
        btn.clicked.connect(lambda _c=False, did=d.id, dis=not d.dismissed: self._dismiss(did, dis))
        lay.addWidget(btn)
        lay.addStretch(1)
        return w

    def _on_examples(self, result: object) -> None:
        if not isinstance(result, dict):
            return
        for did, crops in result.items():
            labels = self._crop_labels.get(did, [])
            for lab, rgb in zip(labels, crops, strict=False):
                lab.setPixmap(_pixmap(rgb))

    def _on_examples_failed(self, message: str) -> None:
        self.status.setText(f"cannot show example crops: {message}")

    def _dismiss(self, defect_id: int, dismissed: bool) -> None:
        self.services.dismiss_defect(defect_id, dismissed)
        self.reload()

    def done(self, r: int) -> None:
        self.examples.shutdown()
        super().done(r)
