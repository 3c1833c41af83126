"""The details pane: file and capture facts, scores with severities, status or error, edit state."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from app.delegate import SEVERITY_LABELS, gain_colour, severity_label, severity_threshold
from app.services import Services


class SeverityBars(QWidget):
    """One labelled bar per degradation, 0..1, in the model card's order."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: list[tuple[str, float]] = []
        self._muted: frozenset[str] = frozenset()
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def set_values(self, sev: dict[str, float] | None, muted: frozenset[str] = frozenset()) -> None:
        """``muted``: degradations drawn as below threshold whatever their value (not a reason for
        this photo: ``compression`` of a JPEG the enhancer would not deblock)."""
        self._muted = muted
        if not sev:
            self._values = []
        else:
            order = list(SEVERITY_LABELS) + [k for k in sev if k not in SEVERITY_LABELS]
            self._values = [(k, float(sev[k])) for k in order if k in sev]
        self.setFixedHeight(self.sizeHint().height())
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(220, len(self._values) * (self.fontMetrics().height() + 4) + 2)

    def paintEvent(self, _ev: QPaintEvent) -> None:
        if not self._values:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = self.fontMetrics()
        lh = fm.height() + 4
        label_w = max(fm.horizontalAdvance(severity_label(k)) for k, _ in self._values) + 8
        bar_w = max(40, self.width() - label_w - 44)
        for i, (k, v) in enumerate(self._values):
            y = i * lh
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(0, y, label_w, lh), Qt.AlignmentFlag.AlignVCenter, severity_label(k))
            track = QRectF(label_w, y + 4, bar_w, lh - 8)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(128, 128, 128, 60))
            p.drawRoundedRect(track, 3, 3)
            fill = QRectF(track.x(), track.y(), track.width() * max(0.0, min(1.0, v)), track.height())
            hot = v >= severity_threshold(k) and k not in self._muted
            p.setBrush(QColor(220, 90, 60) if hot else QColor(120, 150, 190))
            p.drawRoundedRect(fill, 3, 3)
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(label_w + bar_w + 4, y, 40, lh), Qt.AlignmentFlag.AlignVCenter, f"{v:.2f}")


_ZWSP = "\u200b"  # a zero-width space: a place a word-wrapped label may break a line


def breakable(text: str, run: int = 16) -> str:
    """``text`` with line-break opportunities after separators (``_ - . /`` and backslash) and inside
    any run of ``run`` characters without one, so a long file name without spaces wraps in a narrow
    pane instead of widening it past the window (the bars and numbers below were cut off)."""
    out: list[str] = []
    n = 0
    for ch in text:
        out.append(ch)
        n = 0 if ch.isspace() else n + 1
        if ch in "_-./\\" or n >= run:
            out.append(_ZWSP)
            n = 0
    return "".join(out)


def _fmt_exposure(t: float | None) -> str | None:
    if not t:
        return None
    return f"1/{round(1 / t)} s" if t < 1 else f"{t:g} s"


def _get(obj: Any, *names: str) -> Any:
    for n in names:
        v = getattr(obj, n, None)
        if v is not None:
            return v
    return None


def _fmt_bytes(n: int | None) -> str | None:
    if n is None:
        return None
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return None


class DetailsPane(QScrollArea):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumWidth(260)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(10, 10, 10, 10)
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts = QLabel()
        self.facts.setWordWrap(True)
        self.facts.setTextFormat(Qt.TextFormat.RichText)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.sev_title = QLabel("<b>What is wrong</b> (severity 0–1)")
        self.bars = SeverityBars()
        self.edit = QLabel()
        self.edit.setWordWrap(True)
        self.edit.setTextFormat(Qt.TextFormat.RichText)
        for w in (self.title, self.facts, self.sev_title, self.bars, self.edit):
            lay.addWidget(w)
        lay.addStretch(1)
        self.setWidget(body)
        self.show_info(None)

    def show_info(self, info: Any, message: str = "") -> None:
        if info is None:
            self.title.setText(f"<i>{html.escape(message or 'No photo selected')}</i>")
            self.facts.setText("")
            self.bars.set_values(None)
            self.sev_title.hide()
            self.edit.setText("")
            return
        path = str(_get(info, "display_path", "path") or "")
        name = path.replace("\\", "/").rsplit("/", 1)[-1]
        self.title.setText(f"<b style='font-size:large'>{html.escape(breakable(name))}</b><br>"
                           f"<span style='color:gray'>{html.escape(breakable(path))}</span>")
        rows: list[tuple[str, str]] = []
        status = str(_get(info, "status") or "ok")
        if status != "ok":
            reason = _get(info, "error") or ("the file is gone" if status == "missing" else "unknown")
            rows.append(("Status", f"<span style='color:#d33'><b>{html.escape(status)}</b>: "
                                   f"{html.escape(str(reason))}</span>"))
        warning = _get(info, "warning")
        if warning:
            rows.append(("Warning", html.escape(str(warning))))
        sc = _get(info, "score")
        imp = _get(sc, "improvability") if sc is not None else _get(info, "improvability")
        qual = _get(sc, "quality") if sc is not None else _get(info, "quality")
        rec = _get(sc, "recommended") if sc is not None else _get(info, "recommended")
        if imp is not None:
            c = gain_colour(float(imp)).name()
            rows.append(("Improvability", f"<b style='color:{c}'>{float(imp):+.2f}</b>"
                                          + ("  ★ recommended" if rec else "")))
            if qual is not None:
                rows.append(("Quality", f"{float(qual):.2f} / 10 <span style='color:gray'>(predicted)</span>"))
            model = _get(sc, "model") if sc is not None else None
            version = _get(sc, "model_version") if sc is not None else None
            head = _get(sc, "head") if sc is not None else None
            if model:
                rows.append(("Model", html.escape(f"{model} {version or ''}" + (f" (head {head})" if head else ""))))
        elif status == "ok":
            rows.append(("Improvability", "<i>not scored yet</i>"))
        w, h = _get(info, "width"), _get(info, "height")
        if w and h:
            rows.append(("Pixels", f"{w} × {h} ({w * h / 1e6:.1f} MP)"))
        fmt = _get(info, "format")
        size = _fmt_bytes(_get(info, "size"))
        jq = _get(info, "jpeg_quality")
        if fmt or size:
            rows.append(("File", " · ".join(x for x in (fmt, f"quality {jq}" if jq else None, size) if x)))
        cam = " ".join(str(x) for x in (_get(info, "camera_make"), _get(info, "camera_model")) if x)
        if cam:
            rows.append(("Camera", html.escape(cam)))
        lens = _get(info, "lens")
        if lens:
            rows.append(("Lens", html.escape(str(lens))))
        when = _get(info, "captured_at")
        if when:
            rows.append(("Taken", when.strftime("%Y-%m-%d %H:%M") if isinstance(when, datetime) else str(when)))
        shot = [x for x in (
            _fmt_exposure(_get(info, "exposure_time")),
            f"f/{_get(info, 'f_number'):g}" if _get(info, "f_number") else None,
            f"ISO {_get(info, 'iso')}" if _get(info, "iso") else None,
            f"{_get(info, 'focal_length'):g} mm" if _get(info, "focal_length") else None,
        ) if x]
        if shot:
            rows.append(("Exposure", " · ".join(shot)))
        if _get(info, "has_gps"):
            rows.append(("Location", "has GPS"))
        faces = _get(info, "face_count")
        if faces is not None:
            rows.append(("Faces", f"{int(faces)}" if faces else "none found"))
        self.facts.setText("<table cellspacing=3>" + "".join(
            f"<tr><td style='color:gray'>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>")
        sev = _get(sc, "severity") if sc is not None else _get(info, "severity")
        self.bars.set_values(sev if isinstance(sev, dict) else None, Services.reasons_skipped(jq))
        self.sev_title.setVisible(bool(sev))
        self.edit.setText(self._edit_text(info))

    @staticmethod
    def _edit_text(info: Any) -> str:
        rec = _get(info, "recipe")
        if rec is None:
            return "<b>Edit</b><br>Original (not enhanced)"
        parts = ["<b>Edit</b>"]
        version = _get(rec, "version")
        stages = _get(rec, "stages", "ops")
        parts.append(f"Version {version}" + (f": {', '.join(map(str, stages))}" if stages else ""))
        gain = _get(rec, "measured_gain")
        qb, qa = _get(rec, "quality_before"), _get(rec, "quality_after")
        if gain is not None:
            detail = f" (measured quality {qb:.2f} → {qa:.2f})" if qb is not None and qa is not None else ""
            parts.append(f"Measured gain <b>{float(gain):+.2f}</b>{detail}")
        rating = _get(info, "rating")
        if rating is not None:
            parts.append(f"Your rating: {RATING_NAMES.get(int(rating), rating)}")
        return "<br>".join(parts)


RATING_NAMES = {2: "significant", 1: "moderate", 0: "neutral", -1: "regressed"}
