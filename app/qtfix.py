"""A guard against a reference-counting bug of the Qt binding.

PySide6 6.12.0 on Python 3.11 drops a reference to ``None`` on every call of a ``void`` method
(``QPainter.save()``, ``setPen()``...) and whenever C++ reads ``None`` returned from a Python
``data()`` override. A grid paints a few thousand such calls a second, so ``None``'s reference
count soon reaches zero and the interpreter aborts (``Fatal Python error: none_dealloc``).
6.11.3 and earlier are fine, and from Python 3.12 on ``None`` is immortal, so the bug is
harmless there. pyproject.toml excludes 6.12.0; for an environment that has it anyway,
:func:`guard_none_refcount` measures the leak once and, only when it is there, gives ``None`` a
reference count it cannot run out of (what Python 3.12 does for every interpreter).
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_checked = False


def none_refs_lost_per_call() -> float:
    """References to None lost per ``QPainter.save()/restore()`` pair (0 on a sound binding)."""
    from PySide6.QtGui import QImage, QPainter

    img = QImage(4, 4, QImage.Format.Format_RGB32)
    p = QPainter(img)
    n = 200
    before = sys.getrefcount(None)
    for _ in range(n):
        p.save()
        p.restore()
    after = sys.getrefcount(None)
    p.end()
    return max(0.0, (before - after) / n)


def guard_none_refcount() -> bool:
    """Check the binding once (after a QGuiApplication exists); True when the guard was applied."""
    global _checked
    if _checked or sys.version_info >= (3, 12):
        return False
    _checked = True
    lost = none_refs_lost_per_call()
    if lost < 0.5:
        return False
    import PySide6

    log.warning("PySide6 %s loses references to None (%.1f per call); pinning None's reference count. "
                "Install pyside6-essentials 6.11 to avoid this.", PySide6.__version__, lost)
    ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40
    return True


class MainThreadCollector:
    """Python's cyclic garbage collector run only on the GUI thread, between events.

    Left automatic, a collection starts wherever an allocation crosses the threshold: inside a
    ``paintEvent`` (where collecting a cycle that holds a widget or pixmap deletes a paint device
    that Qt is painting: "QPaintDevice: Cannot destroy paint device that is being painted", then a
    segmentation fault, seen with PySide6 6.11.3 on Python 3.11) or on a worker thread (where
    Qt objects must not be deleted). So automatic collection is switched off and a timer on the
    GUI thread collects each generation when its count passes the usual threshold, the way
    pyqtgraph's ``GarbageCollector`` does. Reference counting still frees everything not in a cycle
    at once."""

    def __init__(self, interval_ms: int = 1000) -> None:
        import gc

        from PySide6.QtCore import QTimer

        self._gc = gc
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> int:
        """Collect the oldest generation whose count passed its threshold; objects collected."""
        counts = self._gc.get_count()
        for gen in (2, 1, 0):
            if counts[gen] > self.threshold[gen]:
                return self._gc.collect(gen)
        return 0

    def stop(self) -> None:
        self.timer.stop()
        self._gc.enable()


_collector: MainThreadCollector | None = None


def collect_on_gui_thread() -> MainThreadCollector:
    """Install the :class:`MainThreadCollector` once (after the QApplication exists)."""
    global _collector
    if _collector is None:
        _collector = MainThreadCollector()
    return _collector
