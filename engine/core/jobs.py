"""Plain-Python progress, cancellation and time estimates shared by every long engine job.

A job takes a ``progress`` callback and a ``CancelToken``; the GUI turns them into Qt signals,
the CLI into a line on stderr. Nothing here knows about threads beyond a ``threading.Event``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class JobCancelled(Exception):
    """Raised inside a job when its token was cancelled; the job leaves consistent state behind."""


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled()


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None  # None while the total is unknown (a scan still walking)
    message: str = ""

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressFn = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """Default progress sink."""


class Eta:
    """Progress with a time estimate (mean time per finished item x items left)."""

    def __init__(self, total: int, progress: ProgressFn | None, what: str) -> None:
        self.total = total
        self.progress = progress
        self.what = what
        self.t0 = time.monotonic()

    def seconds_left(self, done: int) -> float | None:
        if done <= 0:
            return None
        return (time.monotonic() - self.t0) / done * (self.total - done)

    def report(self, done: int, note: str = "") -> None:
        if self.progress is None:
            return
        left = self.seconds_left(done)
        msg = f"{self.what} {done}/{self.total}"
        if note:
            msg += f" ({note})"
        if left is not None and done < self.total:
            msg += f", about {format_seconds(left)} left"
        self.progress(Progress(done, self.total, msg))


def format_seconds(s: float) -> str:
    s = max(0, round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
