"""Zoomable, pannable image canvases and the before/after comparison widget.

Coordinates: every canvas works in *image coordinates* of the original photo (its pixel size
after EXIF orientation), whatever resolution the pixmap it draws has. A screen-sized preview
and a full-resolution render can therefore be swapped without the view jumping, and "100%"
always means one original pixel per device pixel.

Only the visible part of a pixmap is drawn (``drawPixmap(target, pixmap, source)``), so a
24-megapixel image pans as smoothly as a small one.

Comparison modes (``CompareView``):

* ``single``: one canvas; hold ``\\`` to see the original, tap it to flip;
* ``split``: before left of a divider, after right; drag the divider;
* ``side``: two canvases side by side sharing one :class:`ViewState`, so zoom and pan stay in sync.
"""

from __future__ import annotations

from PySide6.QtCore import QElapsedTimer, QObject, QPointF, QRectF, QSize, QSizeF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QStackedLayout, QWidget

MIN_ZOOM = 0.02
MAX_ZOOM = 16.0


class ViewState(QObject):
    """Zoom and centre, shared by every canvas that shows the same photo."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.fit = True
        self.zoom = 1.0          # device pixels per image pixel when not fitting
        self.center = QPointF(0, 0)  # image coordinates at the canvas centre
        self.image_size = QSizeF(0, 0)

    def reset(self, image_size: QSizeF) -> None:
        self.image_size = QSizeF(image_size)
        self.center = QPointF(image_size.width() / 2, image_size.height() / 2)
        self.fit = True
        self.changed.emit()

    def set_fit(self) -> None:
        self.fit = True
        self.center = QPointF(self.image_size.width() / 2, self.image_size.height() / 2)
        self.changed.emit()

    def set_zoom(self, zoom: float, anchor_img: QPointF | None = None, anchor_off: QPointF | None = None) -> None:
        """Zoom to ``zoom``; keep image point ``anchor_img`` under the screen offset ``anchor_off``
        (relative to the canvas centre) when given."""
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        if anchor_img is not None and anchor_off is not None:
            self.center = QPointF(anchor_img.x() - anchor_off.x() / zoom, anchor_img.y() - anchor_off.y() / zoom)
        self.zoom = zoom
        self.fit = False
        self._clamp()
        self.changed.emit()

    def pan(self, dx_img: float, dy_img: float) -> None:
        self.center = QPointF(self.center.x() - dx_img, self.center.y() - dy_img)
        self._clamp()
        self.changed.emit()

    def _clamp(self) -> None:
        w, h = self.image_size.width(), self.image_size.height()
        self.center = QPointF(min(max(self.center.x(), 0.0), w), min(max(self.center.y(), 0.0), h))


class ImageCanvas(QWidget):
    """Draws one or two pixmaps (before/after with a divider) under a shared ``ViewState``."""

    zoomChanged = Signal(float)  # effective scale, device pixels per image pixel
    dividerMoved = Signal(float)

    HANDLE_PX = 8

    def __init__(self, state: ViewState | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(120, 90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.state = state if state is not None else ViewState(self)
        self.state.changed.connect(self._on_state)
        self._main: QPixmap | None = None     # 'after' (or the only image)
        self._other: QPixmap | None = None    # 'before' in split mode
        self.split = False
        self.divider = 0.5                    # fraction of the widget width
        self.label_main = ""
        self.label_other = ""
        self.message = ""
        self._drag_pan: QPointF | None = None
        self._drag_divider = False

    # -- content
    def set_pixmaps(self, main: QPixmap | None, other: QPixmap | None = None) -> None:
        self._main, self._other = main, other
        self.update()

    def set_message(self, text: str) -> None:
        self.message = text
        self.update()

    def set_split(self, on: bool) -> None:
        self.split = on
        self.setCursor(Qt.CursorShape.ArrowCursor)
        self.update()

    # -- geometry
    def scale(self) -> float:
        st = self.state
        if not st.fit:
            return st.zoom
        iw, ih = st.image_size.width(), st.image_size.height()
        if iw <= 0 or ih <= 0:
            return 1.0
        dpr = self.devicePixelRatioF()
        return min(self.width() * dpr / iw, self.height() * dpr / ih)

    def image_rect(self) -> QRectF:
        """Where the whole image lands, in logical widget coordinates."""
        s = self.scale() / self.devicePixelRatioF()
        st = self.state
        cx = self.width() / 2 - st.center.x() * s
        cy = self.height() / 2 - st.center.y() * s
        return QRectF(cx, cy, st.image_size.width() * s, st.image_size.height() * s)

    def to_image(self, p: QPointF) -> QPointF:
        r = self.image_rect()
        s = self.scale() / self.devicePixelRatioF()
        return QPointF((p.x() - r.x()) / s, (p.y() - r.y()) / s)

    def divider_x(self) -> float:
        return self.width() * self.divider

    def _on_state(self) -> None:
        self.update()
        self.zoomChanged.emit(self.scale())

    # -- painting
    def paintEvent(self, _ev: QPaintEvent) -> None:
        p = QPainter(self)
        try:
            self._paint(p)
        finally:
            p.end()  # ended here, not whenever Python collects it

    def _paint(self, p: QPainter) -> None:
        p.fillRect(self.rect(), QColor(38, 38, 40))
        if self._main is None or self.state.image_size.isEmpty():
            self._paint_message(p, self.message or "")
            return
        s = self.scale()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, s < 2.0)
        target_all = self.image_rect()
        if self.split and self._other is not None:
            dx = self.divider_x()
            left = QRectF(0, 0, dx, self.height())
            right = QRectF(dx, 0, self.width() - dx, self.height())
            self._draw(p, self._other, target_all, left)
            self._draw(p, self._main, target_all, right)
            pen = QPen(QColor(255, 255, 255, 230), 2)
            p.setPen(pen)
            p.drawLine(QPointF(dx, 0), QPointF(dx, self.height()))
            handle = QRectF(dx - 7, self.height() / 2 - 18, 14, 36)
            p.setBrush(QColor(255, 255, 255, 230))
            p.drawRoundedRect(handle, 4, 4)
            self._paint_tag(p, self.label_other, QPointF(8, 8), left_side=True)
            self._paint_tag(p, self.label_main, QPointF(self.width() - 8, 8), left_side=False)
        else:
            self._draw(p, self._main, target_all, QRectF(self.rect()))
            self._paint_tag(p, self.label_main, QPointF(8, 8), left_side=True)
        if self.message:
            self._paint_tag(p, self.message, QPointF(8, self.height() - 30), left_side=True)

    def _draw(self, p: QPainter, pix: QPixmap, target_all: QRectF, clip: QRectF) -> None:
        vis = target_all.intersected(clip)
        if vis.isEmpty():
            return
        # Map the visible target back to the pixmap's own pixels (it may be a smaller preview).
        sx = pix.width() / max(1e-9, target_all.width())
        sy = pix.height() / max(1e-9, target_all.height())
        src = QRectF((vis.x() - target_all.x()) * sx, (vis.y() - target_all.y()) * sy,
                     vis.width() * sx, vis.height() * sy)
        p.drawPixmap(vis, pix, src)

    def _paint_tag(self, p: QPainter, text: str, at: QPointF, left_side: bool) -> None:
        if not text:
            return
        f = QFont(self.font())
        f.setBold(True)
        p.setFont(f)
        fm = p.fontMetrics()
        w = fm.horizontalAdvance(text) + 14
        h = fm.height() + 8
        x = at.x() if left_side else at.x() - w
        r = QRectF(x, at.y(), w, h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 160))
        p.drawRoundedRect(r, 4, 4)
        p.setPen(QColor(255, 255, 255))
        p.drawText(r, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_message(self, p: QPainter, text: str) -> None:
        if not text:
            return
        p.setPen(QColor(200, 200, 200))
        p.drawText(QRectF(self.rect()), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)

    # -- interaction
    def _near_divider(self, x: float) -> bool:
        return self.split and self._other is not None and abs(x - self.divider_x()) <= self.HANDLE_PX

    def set_divider(self, fraction: float) -> None:
        self.divider = min(1.0, max(0.0, fraction))
        self.update()
        self.dividerMoved.emit(self.divider)

    def mousePressEvent(self, ev: QMouseEvent) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            if self._near_divider(ev.position().x()):
                self._drag_divider = True
            else:
                self._drag_pan = ev.position()
                self.setCursor(Qt.CursorShape.ClosedHandCursor)
            ev.accept()
            return
        super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        pos = ev.position()
        if self._drag_divider:
            self.set_divider(pos.x() / max(1, self.width()))
        elif self._drag_pan is not None:
            s = self.scale() / self.devicePixelRatioF()
            d = pos - self._drag_pan
            self._drag_pan = pos
            if self.state.fit:
                # Panning a fitted image first pins the zoom, as photo viewers do.
                self.state.set_zoom(self.scale())
            self.state.pan(d.x() / s, d.y() / s)
        else:
            shape = Qt.CursorShape.SplitHCursor if self._near_divider(pos.x()) else Qt.CursorShape.OpenHandCursor
            self.setCursor(shape)
        super().mouseMoveEvent(ev)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        self._drag_pan = None
        self._drag_divider = False
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        super().mouseReleaseEvent(ev)

    def wheelEvent(self, ev: QWheelEvent) -> None:
        steps = ev.angleDelta().y() / 120.0
        if steps == 0:
            return
        self.zoom_by(1.25 ** steps, ev.position())
        ev.accept()

    def zoom_by(self, factor: float, at: QPointF | None = None) -> None:
        if self.state.image_size.isEmpty():
            return
        at = at if at is not None else QPointF(self.width() / 2, self.height() / 2)
        anchor = self.to_image(at)
        dpr = self.devicePixelRatioF()
        off = QPointF((at.x() - self.width() / 2) * dpr, (at.y() - self.height() / 2) * dpr)
        self.state.set_zoom(self.scale() * factor, anchor, off)

    def resizeEvent(self, ev: QResizeEvent) -> None:
        super().resizeEvent(ev)
        self.zoomChanged.emit(self.scale())

    def sizeHint(self) -> QSize:
        return QSize(800, 600)


class CompareView(QWidget):
    """Before/after in three modes sharing one zoom/pan state. See the module docstring."""

    modeChanged = Signal(str)
    showingBeforeChanged = Signal(bool)

    MODES = ("single", "split", "side")
    TAP_MS = 250

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.state = ViewState(self)
        self.main = ImageCanvas(self.state)
        self.left = ImageCanvas(self.state)
        self.right = ImageCanvas(self.state)
        for c in (self.main, self.left, self.right):
            c.setFocusProxy(self)
        side = QWidget()
        hl = QHBoxLayout(side)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.setSpacing(2)
        hl.addWidget(self.left)
        hl.addWidget(self.right)
        self._stack = QStackedLayout(self)
        self._stack.addWidget(self.main)
        self._stack.addWidget(side)
        self.mode = "single"
        self.before: QPixmap | None = None
        self.after: QPixmap | None = None
        self.showing_before = False   # single mode: the original is on screen
        self._latched = False
        self._press_timer = QElapsedTimer()
        self._message = ""

    # -- content
    def set_images(self, image_size: QSize | QSizeF, before: QPixmap | None, after: QPixmap | None,
                   keep_view: bool = False) -> None:
        """``after`` None means the photo has no enhancement: every mode shows the original."""
        self.before, self.after = before, after
        size = QSizeF(image_size)
        if not keep_view or size != self.state.image_size:
            self.state.reset(size)
        self._refresh()

    def set_message(self, text: str) -> None:
        self._message = text
        self._refresh()

    def has_after(self) -> bool:
        return self.after is not None

    def set_mode(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(mode)
        self.mode = mode
        self._refresh()
        if self.isVisible():
            # Switching pages hides the focused canvas; keep the keyboard on the comparison.
            self.setFocus()
        self.modeChanged.emit(mode)

    def set_showing_before(self, on: bool) -> None:
        if on != self.showing_before:
            self.showing_before = on
            self._refresh()
            self.showingBeforeChanged.emit(on)

    def toggle(self) -> None:
        """Flip between original and enhanced (single mode; other modes switch to single)."""
        if self.mode != "single":
            self.set_mode("single")
        self._latched = not self.showing_before
        self.set_showing_before(not self.showing_before)

    def _refresh(self) -> None:
        before, after, msg = self.before, self.after, self._message
        if self.mode == "side":
            self._stack.setCurrentIndex(1)
            self.left.set_pixmaps(before)
            self.left.label_main = "Original"
            self.right.set_pixmaps(after if after is not None else before)
            self.right.label_main = "Enhanced" if after is not None else "Original (not enhanced)"
            self.left.set_message(msg)
            self.right.set_message("")
            return
        self._stack.setCurrentIndex(0)
        c = self.main
        if after is None:
            c.set_split(False)
            c.set_pixmaps(before)
            c.label_main = "Original" if before is not None else ""
        elif self.mode == "split":
            c.set_split(True)
            c.set_pixmaps(after, before)
            c.label_main, c.label_other = "Enhanced", "Original"
        else:
            c.set_split(False)
            c.set_pixmaps(before if self.showing_before else after)
            c.label_main = "Original" if self.showing_before else "Enhanced"
        c.set_message(msg)

    # -- zoom commands
    def fit(self) -> None:
        self.state.set_fit()

    def actual_size(self) -> None:
        # 100% = one image pixel per *device* pixel, so high-DPI screens show real pixels.
        self.state.set_zoom(1.0, self.state.center, QPointF(0, 0))

    def zoom_in(self) -> None:
        (self.main if self.mode != "side" else self.left).zoom_by(1.25)

    def zoom_out(self) -> None:
        (self.main if self.mode != "side" else self.left).zoom_by(0.8)

    def effective_zoom(self) -> float:
        return (self.main if self.mode != "side" else self.left).scale()

    # -- hold / tap the toggle key
    def keyPressEvent(self, ev: QKeyEvent) -> None:
        if ev.key() == Qt.Key.Key_Backslash:
            if not ev.isAutoRepeat():
                if self.mode != "single":
                    self.set_mode("single")
                self._press_timer.start()
                self.set_showing_before(not self._latched)
            ev.accept()
            return
        super().keyPressEvent(ev)

    def keyReleaseEvent(self, ev: QKeyEvent) -> None:
        if ev.key() == Qt.Key.Key_Backslash:
            if not ev.isAutoRepeat():
                held = self._press_timer.isValid() and self._press_timer.elapsed() > self.TAP_MS
                if held:
                    self.set_showing_before(self._latched)  # a hold is momentary
                else:
                    self._latched = self.showing_before     # a tap flips and stays
            ev.accept()
            return
        super().keyReleaseEvent(ev)
