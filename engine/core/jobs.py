"""Plain-Python progress and cancellation shared by every long engine job.

A job takes a ``progress`` callback and a ``CancelToken``; the GUI turns them into Qt signals,
the CLI into a line on stderr. Nothing here knows about threads beyond a ``threading.Event``.
"""

from __future__ import annotations

import threading
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
