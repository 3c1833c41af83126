"""Paints one grid cell: thumbnail, improvability badge, recommended mark, what is wrong, edited, error.

Everything painted comes from the row the engine returned; a photo that has no score yet gets
an empty grey badge (nothing invented), an errored photo a red mark and its reason.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from app.library_model import Roles, display_name
from app.services import Services

SEVERITY_LABELS = {
    "motion_blur": "motion blur",
    "defocus_blur": "out of focus",
    "noise": "noise",
    "compression": "compression",
    "clipped_highlights": "clipped highlights",
    "underexposure": "underexposed",
    "overexposure": "overexposed",
    "low_contrast": "low contrast",
    "haze": "haze",
    "color_cast": "colour cast",
}

def severity_threshold(name: str) -> float:
    """A degradation is named (badge, details bar) when its severity reaches the assessor's calibrated
    threshold for that degradation (models/assessor.json), the same number the CLI's reasons,
    ``export --recommended`` and the library's degradation filter use (through the façade)."""
    return Services.severity_threshold(name)


# Shorter names for the badge on a thumbnail.
BADGE_LABELS = {**SEVERITY_LABELS, "clipped_highlights": "clipping", "underexposure": "too dark",
                "overexposure": "too bright", "defocus_blur": "out of focus"}


def severity_label(name: str) -> str:
    return SEVERITY_LABELS.get(name, name.replace("_", " "))


def badge_label(name: str) -> str:
    return BADGE_LABELS.get(name, name.replace("_", " "))


def row_severity(row: Any) -> dict[str, float]:
    sev = getattr(row, "severity", None)
    if isinstance(sev, dict):
        return {str(k): float(v) for k, v in sev.items() if v is not None}
    return {}


def top_problem(row: Any) -> tuple[str, float | None] | None:
    """What is most wrong with a scored photo: (degradation, severity or None when the row only
    names it). None for unscored photos and for photos with nothing to gain."""
    sev = row_severity(row)
    if sev:
        above = [(n, v) for n, v in sev.items() if v >= severity_threshold(n)]
        return max(above, key=lambda kv: kv[1]) if above else None
    name = getattr(row, "top_degradation", None)
    value = getattr(row, "top_severity", None)
    if name and value is not None:  # the library names it only when it is above its threshold
        return (str(name), float(value)) if float(value) >= severity_threshold(str(name)) else None
    imp = getattr(row, "improvability", None)
    # A row that names the top degradation without its value: only call it a problem when the
    # model expects the enhancement to gain something.
    if name and imp is not None and float(imp) > 0:
        return str(name), None
    return None


def is_edited(row: Any) -> bool:
    for attr in ("has_recipe", "edited"):
        v = getattr(row, attr, None)
        if v is not None:
            return bool(v)
    return getattr(row, "current_recipe_id", None) is not None


def is_error(row: Any) -> bool:
    return getattr(row, "status", "ok") in ("error", "missing")


def gain_colour(imp: float) -> QColor:
    """Improvability -> badge colour: grey near zero, amber to green as the expected gain grows."""
    if imp <= 0.05:
        return QColor(120, 120, 126)
    t = max(0.0, min(1.0, imp / 1.5))
    return QColor(int(230 - 150 * t), int(160 + 40 * t), int(40 + 30 * t))


class PhotoDelegate(QStyledItemDelegate):
    def __init__(self, thumb_size: int = 168, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.thumb_size = thumb_size
        self.threshold: float | None = None  # the user's own "recommended" threshold, if set
        self._small = QFont()
        self._small.setPointSizeF(max(7.0, self._small.pointSizeF() * 0.85))
        self._bold = QFont(self._small)
        self._bold.setBold(True)

    def is_recommended(self, row: Any) -> bool:
        """The grid's mark: the façade's rule, as the Recommended filter and the commands apply it."""
        return Services.is_recommended(getattr(row, "improvability", None), getattr(row, "recommended", None),
                                       self.threshold)

    def set_thumb_size(self, size: int) -> None:
        self.thumb_size = size

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        fm = QFontMetrics(self._small)
        return QSize(self.thumb_size + 12, self.thumb_size + fm.height() + 18)

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        row = index.data(Roles.Row)
        if row is None:
            return
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        r: QRect = option.rect  # type: ignore[attr-defined]
        selected = bool(option.state & QStyle.StateFlag.State_Selected)  # type: ignore[attr-defined]
        pal = option.palette  # type: ignore[attr-defined]
        if selected:
            p.fillRect(r.adjusted(1, 1, -1, -1), pal.highlight())
        ts = self.thumb_size
        box = QRect(r.x() + (r.width() - ts) // 2, r.y() + 6, ts, ts)
        pix = index.data(Roles.Thumb)
        error = is_error(row)
        if pix is not None and not pix.isNull():
            dpr = pix.devicePixelRatio() or 1.0
            pw, ph = pix.width() / dpr, pix.height() / dpr
            s = min(ts / max(1.0, pw), ts / max(1.0, ph))
            w, h = int(pw * s), int(ph * s)
            img = QRect(box.x() + (ts - w) // 2, box.y() + (ts - h) // 2, w, h)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawPixmap(img, pix)
        else:
            img = box.adjusted(0, ts // 8, 0, -ts // 8)
            p.fillRect(img, QColor(70, 70, 74) if not error else QColor(90, 40, 40))
            if not error and not index.data(Roles.ThumbFailed):
                p.setPen(QColor(150, 150, 150))
                p.setFont(self._small)
                p.drawText(img, Qt.AlignmentFlag.AlignCenter, "…")
        # Badges sit on the picture itself, whatever its aspect ratio.
        if error:
            self._paint_error(p, img, row)
        else:
            self._paint_badge(p, img, row)
            if self.is_recommended(row):
                self._paint_recommended(p, img)
            prob = top_problem(row)
            if prob is not None:
                self._paint_problem(p, img, prob, reserve=56 if is_edited(row) else 0)
            defect = getattr(row, "camera_defect", None)
            if defect:  # the camera's own defect (dust, line...): correctable by the defects stage
                self._paint_problem(p, img, (f"camera {defect.replace('_', ' ')}", None),
                                    reserve=56 if is_edited(row) and prob is None else 0,
                                    lift=22 if prob is not None else 0, colour=QColor(170, 90, 20, 230))
        if is_edited(row):
            self._paint_pill(p, QRectF(img.right() - 52, img.bottom() - 22, 48, 18), "edited",
                             QColor(52, 120, 220), QColor(255, 255, 255))

        # file name
        p.setFont(self._small)
        fm = QFontMetrics(self._small)
        name_rect = QRect(r.x() + 4, box.bottom() + 4, r.width() - 8, fm.height() + 2)
        p.setPen(pal.highlightedText().color() if selected else pal.text().color())
        p.drawText(name_rect, Qt.AlignmentFlag.AlignHCenter,
                   fm.elidedText(display_name(row), Qt.TextElideMode.ElideMiddle, name_rect.width()))
        p.restore()

    def _paint_pill(self, p: QPainter, rect: QRectF, text: str, bg: QColor, fg: QColor) -> None:
        path = QPainterPath()
        path.addRoundedRect(rect, rect.height() / 2, rect.height() / 2)
        p.fillPath(path, bg)
        p.setPen(fg)
        p.setFont(self._bold)
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_badge(self, p: QPainter, box: QRect, row: Any) -> None:
        imp = getattr(row, "improvability", None)
        rect = QRectF(box.x() + 4, box.y() + 4, 46, 18)
        if imp is None:
            # Not scored yet: an empty badge, no number.
            p.setPen(QPen(QColor(160, 160, 160, 200), 1.2))
            p.setBrush(QColor(60, 60, 64, 160))
            p.drawRoundedRect(rect, 9, 9)
            return
        self._paint_pill(p, rect, f"{float(imp):+.2f}", gain_colour(float(imp)), QColor(20, 20, 20))

    def _paint_recommended(self, p: QPainter, box: QRect) -> None:
        c = QRectF(box.right() - 24, box.y() + 4, 20, 20)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(255, 196, 0))
        p.drawEllipse(c)
        p.setPen(QColor(40, 30, 0))
        p.setFont(self._bold)
        p.drawText(c, Qt.AlignmentFlag.AlignCenter, "★")

    def _paint_problem(self, p: QPainter, box: QRect, prob: tuple[str, float | None], reserve: int = 0,
                       lift: int = 0, colour: QColor | None = None) -> None:
        text = badge_label(prob[0])
        fm = QFontMetrics(self._bold)
        w = max(24, min(box.width() - 8 - reserve, fm.horizontalAdvance(text) + 14))
        rect = QRectF(box.x() + 4, box.bottom() - 22 - lift, w, 18)
        alpha = int(150 + 100 * min(1.0, prob[1] if prob[1] is not None else 0.8))
        self._paint_pill(p, rect, fm.elidedText(text, Qt.TextElideMode.ElideRight, int(w) - 8),
                         colour if colour is not None else QColor(20, 20, 20, alpha), QColor(255, 255, 255))

    def _paint_error(self, p: QPainter, box: QRect, row: Any) -> None:
        status = getattr(row, "status", "error")
        reason = getattr(row, "error", None) or ("file missing" if status == "missing" else "error")
        c = QRectF(box.right() - 24, box.y() + 4, 20, 20)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(210, 50, 50))
        p.drawEllipse(c)
        p.setPen(QColor(255, 255, 255))
        p.setFont(self._bold)
        p.drawText(c, Qt.AlignmentFlag.AlignCenter, "!")
        fm = QFontMetrics(self._bold)
        rect = QRectF(box.x() + 4, box.bottom() - 22, box.width() - 8, 18)
        self._paint_pill(p, rect, fm.elidedText(str(reason), Qt.TextElideMode.ElideRight, int(rect.width()) - 10),
                         QColor(170, 30, 30, 230), QColor(255, 255, 255))
