"""The export dialog and the preferences dialog."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import settings as S
from app.services import Progress
from app.settings import Settings
from app.workers import Job, eta_seconds, format_eta

FORMATS = (("JPEG", "jpeg"), ("PNG", "png"), ("TIFF", "tiff"))


def _folder_row(edit: QLineEdit, parent: QWidget, caption: str) -> QWidget:
    w = QWidget()
    h = QHBoxLayout(w)
    h.setContentsMargins(0, 0, 0, 0)
    h.addWidget(edit, 1)
    b = QPushButton("Browse…")

    def browse() -> None:
        d = QFileDialog.getExistingDirectory(parent, caption, edit.text() or str(Path.home()))
        if d:
            edit.setText(d)

    b.clicked.connect(browse)
    h.addWidget(b)
    return w


@dataclass(frozen=True)
class ExportChoice:
    which: str            # 'selection' | 'enhanced' | 'recommended'
    out_dir: Path
    fmt: str
    quality: int
    template: str


class ExportDialog(QDialog):
    """Collects the export options, then shows the export job's progress until it ends.

    The window calls ``start(job)`` after ``accepted_choice`` is emitted; the export itself runs
    in the edit lane; this dialog only displays and cancels it.
    """

    exportRequested = Signal(object)  # ExportChoice

    def __init__(self, settings: Settings, counts: dict[str, int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export enhanced copies")
        self.setMinimumWidth(520)
        self._settings = settings
        self._job: Job | None = None
        self.counts = counts

        which_box = QGroupBox("Which photos")
        wl = QVBoxLayout(which_box)
        self.radio: dict[str, QRadioButton] = {}
        for key, label in (("selection", "Selected photos"), ("enhanced", "Every enhanced photo in this folder"),
                           ("recommended", "Every recommended photo in this folder")):
            rb = QRadioButton(f"{label} ({counts.get(key, 0)})")
            rb.setEnabled(counts.get(key, 0) > 0)
            self.radio[key] = rb
            wl.addWidget(rb)
        for key in ("selection", "enhanced", "recommended"):
            if self.radio[key].isEnabled():
                self.radio[key].setChecked(True)
                break
        self.radio["selection"].toggled.connect(self._validate)

        self.folder = QLineEdit(settings.get(S.EXPORT_DIR) or str(Path.home() / "Pictures" / "photolift"))
        self.folder.textChanged.connect(self._validate)
        self.format = QComboBox()
        for label, key in FORMATS:
            self.format.addItem(label, key)
        self.format.setCurrentIndex(max(0, self.format.findData(settings.get(S.EXPORT_FORMAT))))
        self.quality = QSpinBox()
        self.quality.setRange(1, 100)
        self.quality.setValue(int(settings.get(S.EXPORT_QUALITY)))
        self.format.currentIndexChanged.connect(
            lambda _i: self.quality.setEnabled(self.format.currentData() == "jpeg"))
        self.quality.setEnabled(self.format.currentData() == "jpeg")
        self.template = QLineEdit(settings.get(S.EXPORT_TEMPLATE))
        self.template.setToolTip("Fields: {name} original name without extension, {id} catalog id, "
                                 "{gain} measured gain, {date} capture date, {camera}. An existing file "
                                 "is never overwritten: a number is appended instead.")
        self.template.textChanged.connect(self._validate)

        form = QFormLayout()
        form.addRow("Folder", _folder_row(self.folder, self, "Export to"))
        form.addRow("Format", self.format)
        form.addRow("JPEG quality", self.quality)
        form.addRow("File names", self.template)
        self.note = QLabel("Originals are never changed; existing files are never overwritten. "
                           "Capture metadata (EXIF, colour profile) is kept.")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: gray")

        self.progress = QProgressBar()
        self.progress.hide()
        self.status = QLabel()
        self.status.setWordWrap(True)

        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.export_button.clicked.connect(self._on_export)
        self.cancel_button.clicked.connect(self._on_cancel)

        lay = QVBoxLayout(self)
        lay.addWidget(which_box)
        lay.addLayout(form)
        lay.addWidget(self.note)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        self._inputs: list[QWidget] = [which_box, self.folder, self.format, self.quality, self.template]
        self._validate()

    def choice(self) -> ExportChoice:
        which = next(k for k, rb in self.radio.items() if rb.isChecked())
        return ExportChoice(which, Path(self.folder.text()).expanduser(), str(self.format.currentData()),
                            self.quality.value(), self.template.text().strip())

    def _validate(self) -> None:
        ok = bool(self.folder.text().strip()) and "{" in self.template.text() and any(
            rb.isChecked() for rb in self.radio.values())
        bad_fields = _bad_template(self.template.text())
        if bad_fields:
            self.status.setText(f"Unknown field in the name template: {bad_fields}")
            ok = False
        elif self._job is None:
            self.status.setText("")
        self.export_button.setEnabled(ok and self._job is None)

    def _on_export(self) -> None:
        c = self.choice()
        s = self._settings
        s.set(S.EXPORT_DIR, str(c.out_dir))
        s.set(S.EXPORT_FORMAT, c.fmt)
        s.set(S.EXPORT_QUALITY, c.quality)
        s.set(S.EXPORT_TEMPLATE, c.template)
        self.exportRequested.emit(c)

    def start(self, job: Job, total: int) -> None:
        self._job = job
        for w in self._inputs:
            w.setEnabled(False)
        self.export_button.setEnabled(False)
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(0)
        self.progress.show()
        self.status.setText(f"Exporting {total} photos…")
        self._done = 0
        self._skipped: dict[str, int] = {}
        self._failed: list[str] = []
        job.signals.progress.connect(self._on_progress)
        job.signals.yielded.connect(self._on_item)
        job.signals.finished.connect(self._on_finished)
        job.signals.errored.connect(lambda msg: self._failed.append(msg))

    def _on_progress(self, p: Progress) -> None:
        if p.total:
            self.progress.setMaximum(p.total)
        self.progress.setValue(p.done)
        if self._job is not None:
            self.status.setText(f"{p.message or 'Exporting'} — {format_eta(eta_seconds(self._job))}")

    def _on_item(self, result: Any) -> None:
        status = getattr(result, "status", None)
        err = getattr(result, "error", None)
        if status == "skipped":  # already exported with this edit, or not enhanced: not a failure
            self._skipped[str(err or "skipped")] = self._skipped.get(str(err or "skipped"), 0) + 1
        elif err or status == "error":
            self._failed.append(f"{getattr(result, 'path', '')}: {err}")
        else:
            self._done += 1

    def _on_finished(self, state: str) -> None:
        self.progress.setValue(self.progress.maximum() if state == "done" else self.progress.value())
        text = {"done": "Export finished", "cancelled": "Export cancelled", "error": "Export failed"}[state]
        text += f": {self._done} written"
        if self._skipped:
            text += ", " + ", ".join(f"{n} skipped ({why})" for why, n in sorted(self._skipped.items()))
        if self._failed:
            text += f", {len(self._failed)} failed:\n" + "\n".join(self._failed[:8])
        self.status.setText(text)
        self._job = None
        self.cancel_button.setText("Close")

    def _on_cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.status.setText("Cancelling…")
            return
        self.reject() if self.cancel_button.text() != "Close" else self.accept()

    def closeEvent(self, ev: Any) -> None:
        if self._job is not None:
            self._job.cancel()
        super().closeEvent(ev)


def _bad_template(template: str) -> str:
    """The unknown fields of an export name template ('' when all are known)."""
    import string

    from app.services import template_fields

    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        return str(e)
    return ", ".join(sorted(names - set(template_fields())))


class PreferencesDialog(QDialog):
    def __init__(self, settings: Settings, default_threshold: float | None = None,
                 default_catalog: str = "", parent: QWidget | None = None,
                 cache_limit_mb: int | None = None, cache_used_bytes: int | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.setMinimumWidth(560)
        self._s = settings
        own = bool(settings.get(S.OWN_THRESHOLD))
        self.own_threshold = QCheckBox("Use my own threshold")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(-10.0, 10.0)
        self.threshold.setDecimals(2)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(float(settings.get(S.THRESHOLD)) if own or default_threshold is None
                                else default_threshold)
        self.own_threshold.setChecked(own)
        self.own_threshold.setToolTip("Mark and filter photos as recommended from this improvability instead of "
                                      "the assessor's calibrated threshold. The command line (rank, score, "
                                      "export --recommended) always uses the calibrated one.")
        self.threshold.setEnabled(own)
        self.own_threshold.toggled.connect(self.threshold.setEnabled)
        model_thr = f"{default_threshold:.2f}" if default_threshold is not None else "not loaded"
        thr_row = QWidget()
        tl = QHBoxLayout(thr_row)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.own_threshold)
        tl.addWidget(self.threshold)
        tl.addWidget(QLabel(f"(model default: {model_thr})"))
        tl.addStretch(1)

        self.threads = QSpinBox()
        self.threads.setRange(0, max(1, os.cpu_count() or 1) * 2)
        self.threads.setSpecialValueText("automatic (one per core)")
        self.threads.setValue(int(settings.get(S.THREADS)))
        self.cluster = QLineEdit(settings.get(S.CLUSTER))
        self.cluster.setPlaceholderText("this computer (thread pool)")
        self.cluster.setToolTip(S.CLUSTER.description)
        from app.services import cluster_support

        has_ray, install_hint = cluster_support()
        self.cluster_note = QLabel("'auto', ray://HOST:PORT or HOST:PORT: scoring, batch enhance and export run "
                                   "on that Ray cluster" if has_ray else
                                   f"Ray is not installed; to use a cluster: {install_hint}")
        self.cluster_note.setStyleSheet("color: gray")
        self.catalog = QLineEdit(settings.get(S.CATALOG))
        self.catalog.setPlaceholderText(default_catalog or "per-user catalog")
        cat_row = QWidget()
        cl = QHBoxLayout(cat_row)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.catalog, 1)
        browse = QPushButton("Choose…")

        def pick() -> None:
            f, _ = QFileDialog.getSaveFileName(self, "Catalog file", self.catalog.text() or default_catalog,
                                               "photolift catalog (*.sqlite)",
                                               options=QFileDialog.Option.DontConfirmOverwrite)
            if f:
                self.catalog.setText(f)

        browse.clicked.connect(pick)
        cl.addWidget(browse)

        self.export_dir = QLineEdit(settings.get(S.EXPORT_DIR))
        self.export_format = QComboBox()
        for label, key in FORMATS:
            self.export_format.addItem(label, key)
        self.export_format.setCurrentIndex(max(0, self.export_format.findData(settings.get(S.EXPORT_FORMAT))))
        self.export_quality = QSpinBox()
        self.export_quality.setRange(1, 100)
        self.export_quality.setValue(int(settings.get(S.EXPORT_QUALITY)))
        self.export_template = QLineEdit(settings.get(S.EXPORT_TEMPLATE))

        scoring = QGroupBox("Ranking")
        f1 = QFormLayout(scoring)
        f1.addRow("Recommend at gain ≥", thr_row)
        jobs = QGroupBox("Performance and storage")
        f2 = QFormLayout(jobs)
        f2.addRow("Worker threads", self.threads)
        f2.addRow("Run jobs on", self.cluster)
        f2.addRow("", self.cluster_note)
        f2.addRow("Catalog", cat_row)
        note = QLabel("A new catalog location takes effect the next time photolift starts.")
        note.setStyleSheet("color: gray")
        f2.addRow("", note)
        self.cache_limit: QSpinBox | None = None
        if cache_limit_mb is not None:
            from app.services import min_cache_mb

            min_mb = min_cache_mb()

            self.cache_limit = QSpinBox()
            self.cache_limit.setRange(min_mb, 1024 * 1024)
            self.cache_limit.setSingleStep(512)
            self.cache_limit.setSuffix(" MB")
            self.cache_limit.setValue(cache_limit_mb)
            mb = (cache_used_bytes or 0) / 2**20
            used = (f"{mb:,.1f} MB in use now" if mb < 10 else f"{mb:,.0f} MB in use now") \
                if cache_used_bytes is not None else ""
            cache_row = QWidget()
            crl = QHBoxLayout(cache_row)
            crl.setContentsMargins(0, 0, 0, 0)
            crl.addWidget(self.cache_limit)
            crl.addWidget(QLabel(f"({used}; previews and thumbnails, least recently used go first)"))
            crl.addStretch(1)
            f2.addRow("Cache limit", cache_row)
        export = QGroupBox("Export defaults")
        f3 = QFormLayout(export)
        f3.addRow("Folder", _folder_row(self.export_dir, self, "Default export folder"))
        f3.addRow("Format", self.export_format)
        f3.addRow("JPEG quality", self.export_quality)
        f3.addRow("File names", self.export_template)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        for w in (scoring, jobs, export):
            lay.addWidget(w)
        lay.addWidget(buttons)

    def accept(self) -> None:
        s = self._s
        s.set(S.OWN_THRESHOLD, self.own_threshold.isChecked())
        s.set(S.THRESHOLD, self.threshold.value())
        s.set(S.THREADS, self.threads.value())
        s.set(S.CLUSTER, self.cluster.text().strip())
        s.set(S.CATALOG, self.catalog.text().strip())
        s.set(S.EXPORT_DIR, self.export_dir.text().strip())
        s.set(S.EXPORT_FORMAT, str(self.export_format.currentData()))
        s.set(S.EXPORT_QUALITY, self.export_quality.value())
        s.set(S.EXPORT_TEMPLATE, self.export_template.text().strip() or S.EXPORT_TEMPLATE.default)
        super().accept()


__all__ = ["ExportChoice", "ExportDialog", "PreferencesDialog", "Qt"]
