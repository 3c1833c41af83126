"""Start decoding a folder's new photos while the command is still starting up.

``photolift score DIR`` spends its first half second or more importing SQLAlchemy and
onnxruntime, opening the catalog and creating the assessor's session, with the photos untouched
and one of the two cores idle. :class:`EarlyDecoder` is started before all that (it needs only
the standard library, NumPy, OpenCV and Pillow): it walks the folder like the indexer, asks the
catalog file which photos it already holds (stdlib ``sqlite3``, :mod:`db.quick`), and reads,
fingerprints and decodes the first new ones in two threads (decoders release the GIL, so
they run beside the imports). When the indexer starts, it calls :meth:`stop` (no new files; queued
ones are given back) and takes each early result by path with :meth:`take`, checked against its
own walk (same size and modification time), instead of reading that file again. Anything it does
not take was simply wasted work: the indexer is the only one that decides and records.

Bounded: at most ``max_files`` photos, at most ``2 x workers`` decodes queued or running, and at
most ``budget_bytes`` of decoded pixels waiting to be taken. An unchanged folder costs one walk
in a background thread.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from engine.ingest.scan import Decoded, _Result, _Walked, read_decode, walk

log = logging.getLogger(__name__)

KnownFn = Callable[[str], "dict[bytes, tuple[int, int]] | None"]


class EarlyDecoder:
    """Decodes the first new files under ``roots`` in the background (see the module docstring).

    ``known(root)`` gives the catalog's ``{path_bytes: (size, mtime_ns)}`` under ``root``, or None
    when it cannot tell (then nothing under that root is decoded early). ``reduce_for`` is the
    scorer's choice of decode scale (the same as the indexer will use)."""

    def __init__(self, roots: Sequence[str], known: KnownFn, reduce_for: Callable[[int | None, int | None], int],
                 workers: int = 2, max_files: int = 64, budget_bytes: int = 256 << 20) -> None:
        self._roots = [os.path.realpath(r) for r in roots]
        self._known = known
        self._reduce_for = reduce_for
        self._workers = max(1, int(workers))
        self._max = max(0, int(max_files))
        self._budget = int(budget_bytes)
        self._lock = threading.Condition()
        self._stopped = threading.Event()
        self._pending = 0  # decodes queued or running
        self._held = 0  # bytes of decoded pixels done and not yet taken
        self._futures: dict[bytes, tuple[_Walked, Future[Decoded | _Result]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="early")
        self.submitted = 0
        self.decoded = 0  # decodes that ran (submitted minus those dropped by stop())
        self.taken = 0
        self._thread = threading.Thread(target=self._run, name="early-walk", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for root in self._roots:
                if self._stopped.is_set() or not os.path.isdir(root):
                    continue
                known = self._known(root)
                if known is None:
                    continue
                for w in walk(root):
                    if self._stopped.is_set() or self.submitted >= self._max:
                        return
                    if w.pb in known:
                        # unchanged: the indexer will not read it; changed: the indexer first
                        # compares fingerprints (a touched file is not decoded at all)
                        continue
                    with self._lock:
                        while (self._pending >= 2 * self._workers or self._held >= self._budget) \
                                and not self._stopped.is_set():
                            self._lock.wait(0.05)
                        if self._stopped.is_set():
                            return
                        f = self._pool.submit(read_decode, w, None, self._reduce_for)
                        self._pending += 1
                        self._futures[w.pb] = (w, f)
                        self.submitted += 1
                    f.add_done_callback(functools.partial(self._done, w.pb))
        except Exception:  # noqa: BLE001 - early decoding is an optimisation; the indexer does it all anyway
            log.debug("early decoding stopped", exc_info=True)

    @staticmethod
    def _bytes(f: Future[Decoded | _Result]) -> int:
        if f.cancelled() or f.exception() is not None:
            return 0
        r = f.result()
        return int(r.img.rgb.nbytes) if isinstance(r, Decoded) else 0

    def _done(self, pb: bytes, f: Future[Decoded | _Result]) -> None:
        with self._lock:
            self._pending -= 1
            if not f.cancelled():
                self.decoded += 1
            got = self._futures.get(pb)
            if got is not None and got[1] is f:  # still waiting to be taken: its pixels are held here
                self._held += self._bytes(f)
            self._lock.notify_all()

    def stop(self) -> None:
        """No new files from now on; decodes not yet started are dropped (the indexer reads them)."""
        self._stopped.set()
        with self._lock:
            for pb in [pb for pb, (_w, f) in self._futures.items() if f.cancel()]:
                del self._futures[pb]
            self._lock.notify_all()

    def take(self, w: _Walked) -> Future[Decoded | _Result] | None:
        """The early decode of ``w`` (running or done), if there is one for the same file
        (path, size and modification time); each is given out once."""
        with self._lock:
            got = self._futures.pop(w.pb, None)
            if got is not None and got[1].done():
                self._held -= self._bytes(got[1])
                self._lock.notify_all()
        if got is None:
            return None
        ew, f = got
        if (ew.size, ew.mtime_ns) != (w.size, w.mtime_ns):
            f.cancel()
            return None
        self.taken += 1
        return f

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait until the walk is over and every decode has run (tests; a command never waits)."""
        self._thread.join(timeout)
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout) and not self._thread.is_alive()

    def close(self) -> None:
        """Stop and release the threads (results not taken are dropped)."""
        self.stop()
        self._thread.join(timeout=5)
        with self._lock:
            self._futures.clear()
            self._held = 0
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["EarlyDecoder"]
