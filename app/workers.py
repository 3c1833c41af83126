"""Background work for the GUI: engine generator jobs and thumbnail/preview loading in Qt pools.

The engine's long jobs are plain generators that take a progress callback and a cancel token
(``engine.core.jobs``). A :class:`Job` runs one on a pool thread and turns each yielded item, each
progress report and the end state into *queued* signals (the ``JobSignals`` object lives in the
GUI thread, so Qt queues every emission from the worker). Workers never touch widgets and
only hand numpy arrays, ``QImage`` and plain data across threads; ``QPixmap`` is made by the
receiver on the GUI thread.

One pool per kind of work (Picard): a *library* lane (index, score: one job at a time, in
order), an *edit* lane (enhance batches, export), a thumbnail pool that serves the most recent
request first, and a latest-wins preview pool. ``shutdown()`` stops them in order.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from app.services import CancelToken, JobCancelled, Progress, ProgressFn, known_failures

log = logging.getLogger(__name__)

JobFn = Callable[[ProgressFn, CancelToken], Iterable[Any]]

# "The environment failed" (qutebrowser's KnownError): a missing model, an unusable folder, a
# photo that changed: reported in one line, not as a bug with a traceback.
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = known_failures()

# Every pool this module makes, so tests can fail when one is left running.
_POOLS: weakref.WeakSet[QThreadPool] = weakref.WeakSet()


def make_pool(threads: int) -> QThreadPool:
    pool = QThreadPool()
    pool.setMaxThreadCount(max(1, threads))
    _POOLS.add(pool)
    return pool


def busy_pools() -> list[QThreadPool]:
    """Pools with a thread still running (used by the tests' leak check)."""
    return [p for p in list(_POOLS) if p.activeThreadCount() > 0]


def numpy_to_qimage(rgb: np.ndarray) -> QImage:
    """An owned RGB888 ``QImage`` copy of an HxWx3 uint8 array (safe to pass between threads)."""
    a = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class JobSignals(QObject):
    progress = Signal(object)   # engine.core.jobs.Progress
    yielded = Signal(object)    # one result per item
    errored = Signal(str)       # the job itself failed (not a bad photo: those are results)
    finished = Signal(str)      # 'done' | 'cancelled' | 'error'; always the last signal


class Job(QRunnable):
    """One engine generator job. ``fn(progress, cancel)`` returns the generator to drain."""

    PROGRESS_INTERVAL_S = 0.05

    def __init__(self, name: str, fn: JobFn, kind: str = "job") -> None:
        super().__init__()
        self.setAutoDelete(False)  # the manager owns the Python object until it finished
        self.name = name
        self.kind = kind
        self.fn = fn
        self.token = CancelToken()
        self.signals = JobSignals()
        self.started_at: float | None = None
        self.state = "queued"
        self.last_progress: Progress | None = None
        self.error: str | None = None
        self._last_emit = 0.0

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled

    def _progress(self, p: Progress) -> None:
        self.last_progress = p
        now = time.monotonic()
        # Throttle: a scorer reports per photo; the status bar needs ~20 updates a second at most.
        if now - self._last_emit >= self.PROGRESS_INTERVAL_S or (p.total is not None and p.done >= p.total):
            self._last_emit = now
            self.signals.progress.emit(p)

    def run(self) -> None:
        self.started_at = time.monotonic()
        self.state = "running"
        state = "done"
        gen = None
        try:
            gen = iter(self.fn(self._progress, self.token))
            for item in gen:
                self.signals.yielded.emit(item)
                if self.token.cancelled:
                    state = "cancelled"
                    break
            if self.token.cancelled:
                state = "cancelled"
        except JobCancelled:
            state = "cancelled"
        except Exception as e:  # a bug or the environment failed: report, never kill the app
            if isinstance(e, ENVIRONMENT_ERRORS):  # a missing model, disk full: no traceback needed
                log.warning("job %s failed: %s", self.name, e)
            else:
                log.exception("job %s failed", self.name)
            state = "error"
            self.error = str(e) or type(e).__name__
            self.signals.errored.emit(self.error)
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                try:
                    close()  # lets the generator's own finally blocks run on cancel
                except Exception:
                    log.exception("closing job %s", self.name)
            self.state = state
            self.signals.finished.emit(state)


class JobManager(QObject):
    """Runs jobs in lanes; each lane is a one-thread pool so its jobs run in submission order."""

    jobAdded = Signal(object)       # Job
    jobFinished = Signal(object, str)  # Job, state
    changed = Signal()              # the set of active jobs changed

    LANES = ("library", "edit")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pools = {lane: make_pool(1) for lane in self.LANES}
        self._jobs: list[Job] = []
        self._closing = False

    def submit(self, job: Job, lane: str = "library") -> Job:
        if self._closing:
            raise RuntimeError("the job manager is shutting down")
        self._jobs.append(job)
        job.signals.finished.connect(lambda state, j=job: self._on_finished(j, state))
        self._pools[lane].start(job)
        self.jobAdded.emit(job)
        self.changed.emit()
        return job

    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def active(self) -> Job | None:
        running = [j for j in self._jobs if j.state == "running"]
        return running[0] if running else (self._jobs[0] if self._jobs else None)

    def _on_finished(self, job: Job, state: str) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        self.jobFinished.emit(job, state)
        self.changed.emit()

    def cancel_all(self) -> None:
        for job in list(self._jobs):
            job.cancel()

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Stop queues, cancel running jobs, wait for the threads. True when every thread ended."""
        self._closing = True
        for pool in self._pools.values():
            pool.clear()  # jobs never started are dropped
        for job in list(self._jobs):
            job.cancel()
            if job.state == "queued":
                self._jobs.remove(job)
        ok = all(pool.waitForDone(timeout_ms) for pool in self._pools.values())
        if not ok:
            log.error("background jobs did not stop within %d ms", timeout_ms)
        return ok


class _LoaderSignals(QObject):
    loaded = Signal(int, object)   # photo id, QImage (or None when the thumbnail failed)


class _Drain(QRunnable):
    def __init__(self, loader: ThumbnailLoader) -> None:
        super().__init__()
        self._loader = loader

    def run(self) -> None:
        self._loader._drain()


class ThumbnailLoader(QObject):
    """Loads thumbnails in a small pool, most recent request first.

    ``fetch(photo_id)`` (the engine's ``Library.thumbnail``) returns an RGB array or None; the
    loader converts it to a ``QImage`` in the worker and emits ``loaded(id, image)``. Requests
    pile up as the user scrolls; only the newest ``max_pending`` are kept, the rest are
    forgotten (and will be asked for again if their cells show up again).
    """

    loaded = Signal(int, object)
    forgotten = Signal(list)  # ids dropped from the queue without loading

    def __init__(self, fetch: Callable[[int], np.ndarray | None], threads: int = 2,
                 max_pending: int = 256, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._fetch = fetch
        self._pool = make_pool(threads)
        self._threads = max(1, threads)
        self._lock = threading.Lock()
        self._queue: deque[int] = deque()
        self._queued: set[int] = set()
        self._running = 0
        self._max_pending = max_pending
        self._stopping = False
        self._signals = _LoaderSignals()
        self._signals.loaded.connect(self.loaded)

    def request(self, photo_id: int) -> None:
        dropped: list[int] = []
        with self._lock:
            if self._stopping or photo_id in self._queued:
                return
            self._queue.append(photo_id)
            self._queued.add(photo_id)
            while len(self._queue) > self._max_pending:
                old = self._queue.popleft()
                self._queued.discard(old)
                dropped.append(old)
            start = self._running < self._threads
            if start:
                self._running += 1
        if start:
            self._pool.start(_Drain(self))
        if dropped:
            self.forgotten.emit(dropped)

    def clear(self) -> list[int]:
        """Forget every queued request; returns the ids that were dropped."""
        with self._lock:
            dropped = list(self._queue)
            self._queue.clear()
            self._queued.clear()
        return dropped

    def _drain(self) -> None:
        while True:
            with self._lock:
                if self._stopping or not self._queue:
                    self._running -= 1
                    return
                pid = self._queue.pop()  # newest first: that is what is on screen
                self._queued.discard(pid)
            image: QImage | None = None
            try:
                arr = self._fetch(pid)
                if arr is not None:
                    image = numpy_to_qimage(arr)
            except Exception:
                log.exception("thumbnail for photo %d failed", pid)
            self._signals.loaded.emit(pid, image)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        with self._lock:
            self._stopping = True
            self._queue.clear()
            self._queued.clear()
        return self._pool.waitForDone(timeout_ms)


class _TaskSignals(QObject):
    done = Signal(int, object)     # generation, result
    failed = Signal(int, str)      # generation, message


class _Task(QRunnable):
    def __init__(self, gen: int, fn: Callable[[], Any], signals: _TaskSignals) -> None:
        super().__init__()
        self._gen, self._fn, self._signals = gen, fn, signals

    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as e:
            log.info("background task failed: %s", e, exc_info=True)
            self._signals.failed.emit(self._gen, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            return
        self._signals.done.emit(self._gen, result)


class LatestTask(QObject):
    """Runs one function at a time off the GUI thread; only the newest request's result arrives.

    Used for previews: flipping through photos queues a load per photo, and only the last one
    matters (vimiv throttles its previews the same way).
    """

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = make_pool(1)
        self._gen = 0
        self._signals = _TaskSignals()
        self._signals.done.connect(self._on_done)
        self._signals.failed.connect(self._on_failed)

    def submit(self, fn: Callable[[], Any]) -> int:
        self._gen += 1
        self._pool.clear()  # a queued, not yet started request is stale now
        self._pool.start(_Task(self._gen, fn, self._signals))
        return self._gen

    @property
    def generation(self) -> int:
        return self._gen

    def busy(self) -> bool:
        return self._pool.activeThreadCount() > 0

    def _on_done(self, gen: int, result: object) -> None:
        if gen == self._gen:
            self.done.emit(result)

    def _on_failed(self, gen: int, message: str) -> None:
        if gen == self._gen:
            self.failed.emit(message)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        self._gen += 1
        self._pool.clear()
        return self._pool.waitForDone(timeout_ms)


def eta_seconds(job: Job) -> float | None:
    """Remaining seconds from the job's average rate so far, None while unknown."""
    p = job.last_progress
    if p is None or not p.total or job.started_at is None or p.done <= 0:
        return None
    elapsed = time.monotonic() - job.started_at
    return max(0.0, elapsed / p.done * (p.total - p.done))


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s left"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s left"
    return f"{s // 3600} h {s % 3600 // 60:02d} min left"
