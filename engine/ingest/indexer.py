"""The incremental folder indexer.

One pass over a library root:

1. **Walk** the tree with ``os.scandir`` (one ``stat`` per file, nothing opened). Hidden and system
   folders are skipped; directory symlinks are followed but every directory is visited once by
   ``(st_dev, st_ino)``, so symlink loops cannot trap the walk.
2. **Compare** the walk with the catalog rows under the root in memory (one SELECT): a file whose
   size and mtime match its row is unchanged and costs nothing more. This is what makes an
   unchanged re-run of 10,000 files take well under a second or two.
3. **Examine** new and changed files in a small thread pool (decoders release the GIL): read the
   file once, fingerprint it, decode it at reduced scale (DCT scaling) for the pixel size and the
   thumbnail, read EXIF. A changed file whose fingerprint did not change (touched, copied back) only
   gets its new mtime. Bad files become rows with ``status='error'`` and a reason; the scan goes on.
4. **Record** the results in batches through the catalog's single writer, so a kill or crash
   loses at most the current batch and a re-run simply carries on (already recorded files are
   unchanged then). A new file whose fingerprint matches a photo whose file no longer exists is a
   *move*: that row gets the new path and keeps its id, scores and recipes.
5. **Finish**: photos under the root that were not seen are marked ``missing`` (their edits stay).
   This step only runs after a complete walk, never after a cancel.

The fingerprint is BLAKE2b over the size and three 64 KiB samples (start, middle, end), or the
whole file below 192 KiB. It is there to recognise the same content under another name, not to
prove integrity: a full hash would read every byte of a 25 MB RAW to learn what the size and the
EXIF-bearing header already tell apart, and re-reading whole files is exactly the cost the
incremental scan exists to avoid. Different photos with the same size and the same 192 KiB of
samples do not occur in practice (any pixel change in compressed data shifts the tail).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.catalog import Catalog, CatalogError
from db.queries import refresh_current_scores, under
from db.schema import STATUS_ERROR, STATUS_MISSING, STATUS_OK, Folder, Photo
from engine.core.jobs import CancelToken, JobCancelled, Progress, ProgressFn, no_progress
from engine.core.paths import display_path
from engine.ingest.imageio import RAW_EXTENSIONS
from engine.ingest.scan import (
    Decoded,
    _Existing,
    _Result,
    _Walked,
    fingerprint,
    fingerprint_bytes,
    missing_reason,
    read_decode,
    walk,
)
from engine.ingest.thumbnails import THUMB_SIZE, ThumbnailCache, fit_size

log = logging.getLogger(__name__)

# Errors worth retrying on every scan even when size and mtime did not change.
RETRY_CODES = frozenset({"permission", "changing", "io", "vanished"})
BATCH_FILES = 32
BATCH_SECONDS = 0.5


@dataclass(frozen=True)
class IndexEvent:
    """One thing the scan did. ``kind``: added, updated, touched, moved, error, missing, vanished,
    skipped (a folder that could not be read), done (last event; ``counts`` filled)."""

    kind: str
    path: str = ""
    photo_id: int | None = None
    status: str | None = None
    error: str | None = None
    old_path: str | None = None
    counts: dict[str, int] | None = None


class IngestScorer(Protocol):
    """What the indexer needs to score photos from the pixels it decodes anyway (one decode per
    new or changed file; :class:`engine.assess.scoring.Scorer` is one)."""

    def reduce_for(self, width: int | None, height: int | None) -> int: ...

    def views_and_small(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def score_decoded(self, catalog: Catalog, items: list[tuple[tuple[int, str, str, int | None, int | None],
                                                               np.ndarray, np.ndarray]]) -> list[Any]: ...


def _examine(w: _Walked, existing: _Existing | None, scorer: IngestScorer | None = None) -> _Result:
    """Read, fingerprint and decode one file (runs in a worker thread); never raises for bad files.

    With ``scorer``, the one decode is at the scorer's scale (half scale for large photos) and
    also gives the assessor's views (``values['_views']``); the thumbnail is made from it."""
    decoded = read_decode(w, existing, scorer.reduce_for if scorer is not None else None)
    if not isinstance(decoded, Decoded):
        return decoded
    img, fields, fp = decoded.img, decoded.fields, decoded.fingerprint
    w_, h_ = img.size
    values: dict[str, Any] = {
        "width": w_, "height": h_, "format": img.format, "warning": img.warning,
        **{k: fields.get(k) for k in ("camera_make", "camera_model", "lens", "camera_serial", "captured_at", "iso",
                                  "exposure_time", "f_number", "focal_length", "has_gps", "orientation",
                                  "jpeg_quality")},
    }
    for k, n in (("camera_make", 128), ("camera_model", 128), ("lens", 128), ("camera_serial", 64)):
        if isinstance(values[k], str):
            values[k] = values[k][:n]
    if scorer is not None:
        import cv2

        src = img.rgb
        try:
            crops, glob, small = scorer.views_and_small(img.rgb)
            values["_views"] = (crops, glob)
            # the views' shared area pre-reduction (by an integer factor) is the thumbnail's
            # source when it is still at least thumbnail-sized: an area resize of the whole
            # half-scale decode to 256 px cost more than all the views together
            if max(small.shape[:2]) >= THUMB_SIZE:
                src = small
        except Exception as e:  # noqa: BLE001 - scored later by the scorer's own path, which reports it
            log.warning("cannot make the assessor's views of %s: %s", display_path(w.pb), e)
        tw, th = fit_size(src.shape[1], src.shape[0], THUMB_SIZE)
        values["_thumb"] = cv2.resize(src, (tw, th), interpolation=cv2.INTER_AREA) \
            if (tw, th) != (src.shape[1], src.shape[0]) else src
    else:
        values["_thumb"] = img.rgb
    return _Result(w, existing, "ok", fingerprint=fp, values=values)


class Indexer:
    """Indexes library roots into a catalog; see the module docstring for the algorithm."""

    def __init__(self, catalog: Catalog, thumbs: ThumbnailCache | None = None, workers: int | None = None,
                 scorer: IngestScorer | None = None) -> None:
        self.catalog = catalog
        self.thumbs = thumbs
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.scorer = scorer
        # ScoreEvents of the photos scored during the last index() (scorer given), by photo id
        self.scored: dict[int, Any] = {}

    # -- catalog helpers (run on the writer thread) ------------------------------------------
    def _folder_for(self, root: str) -> int:
        rb = os.fsencode(root)

        def fn(s: Session) -> int:
            rows = s.execute(select(Folder.id, Folder.path_bytes)).all()
            for fid, fpb in rows:  # scanning inside an existing root: reuse that root
                if rb == fpb or rb.startswith(fpb.rstrip(os.sep.encode()) + os.sep.encode()):
                    return int(fid)
            f = Folder(path=display_path(rb), path_bytes=rb, added_at=datetime.now())
            s.add(f)
            s.flush()
            return f.id

        return self.catalog.write(fn)

    def _load_existing(self, root: str) -> dict[bytes, _Existing]:
        with self.catalog.session() as s:
            rows = s.execute(
                select(Photo.path_bytes, Photo.id, Photo.size, Photo.mtime_ns, Photo.status, Photo.error_code,
                       Photo.fingerprint).where(under(Photo.path_bytes, root))
            ).all()
        return {r[0]: _Existing(r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows}

    # -- the scan ---------------------------------------------------------------------------
    def index(self, root: str | os.PathLike[str], progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> Iterator[IndexEvent]:
        """Index ``root``; yields an event per change and a final ``done`` event.

        Raises ``FileNotFoundError``/``NotADirectoryError`` for a bad root and
        :class:`JobCancelled` (after recording everything examined so far) when cancelled.
        """
        progress = progress or no_progress
        root_s = os.path.realpath(os.fspath(root))
        if not os.path.isdir(root_s):
            if os.path.exists(root_s):
                raise NotADirectoryError(f"not a folder: {display_path(root_s)}")
            if os.path.islink(os.fspath(root)):
                raise FileNotFoundError(f"{display_path(os.fspath(root))}: {missing_reason(root)}")
            raise FileNotFoundError(f"no such folder: {display_path(root_s)}")
        folder_id = self._folder_for(root_s)
        self.scored = {}
        counts = {k: 0 for k in ("files", "unchanged", "added", "updated", "touched", "moved", "error",
                                 "missing", "vanished", "skipped")}
        skipped: list[IndexEvent] = []

        def on_skip(path: str, reason: str) -> None:
            skipped.append(IndexEvent("skipped", display_path(path), error=reason))

        walked = walk(root_s, cancel, progress, on_skip)
        for ev in skipped:
            counts["skipped"] += 1
            yield ev
        counts["files"] = len(walked)
        existing = self._load_existing(root_s)
        seen: set[bytes] = set()
        todo: list[tuple[_Walked, _Existing | None]] = []
        for w in walked:
            seen.add(w.pb)
            ex = existing.get(w.pb)
            if (ex is not None and ex.size == w.size and ex.mtime_ns == w.mtime_ns
                    and ex.status != STATUS_MISSING and ex.error_code not in RETRY_CODES):
                counts["unchanged"] += 1
                continue
            todo.append((w, ex))
        vanished_ids = {ex.id for pb, ex in existing.items() if pb not in seen and ex.status != STATUS_MISSING}
        total = len(walked)
        done = counts["unchanged"]
        progress(Progress(done, total, f"{len(todo)} new or changed files"))

        claimed: set[int] = set()  # rows taken over by a move in this scan
        batch: list[_Result] = []
        last_flush = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="index")
        window: deque[Future[_Result]] = deque()
        it = iter(todo)
        try:
            while True:
                # far enough ahead that the workers keep decoding while this thread writes a
                # batch (and, with a scorer, runs the assessor on it)
                while len(window) < max(self.workers * 4, BATCH_FILES + self.workers * 2):
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    window.append(pool.submit(self._examine_and_thumb, *nxt))
                if not window:
                    break
                res = window.popleft().result()
                batch.append(res)
                done += 1
                progress(Progress(done, total, display_path(res.walked.pb)))
                if len(batch) >= BATCH_FILES or time.monotonic() - last_flush > BATCH_SECONDS:
                    yield from self._flush(batch, folder_id, claimed, vanished_ids, counts)
                    batch = []
                    last_flush = time.monotonic()
                if cancel is not None and cancel.cancelled:
                    for f in window:
                        f.cancel()
                    for f in window:  # let running workers finish; their files are simply not recorded
                        if not f.cancelled():
                            with contextlib.suppress(Exception):
                                f.result()
                    window.clear()
                    yield from self._flush(batch, folder_id, claimed, vanished_ids, counts)
                    batch = []
                    raise JobCancelled()
            yield from self._flush(batch, folder_id, claimed, vanished_ids, counts)
            batch = []
        except GeneratorExit:  # the consumer stopped early: keep what was already examined
            list(self._flush(batch, folder_id, claimed, vanished_ids, counts))
            raise
        finally:
            for f in window:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        # complete walk: the photos not seen are missing (moves already took theirs over)
        missing_ids = sorted(vanished_ids - claimed)
        yield from self._mark_missing(missing_ids, counts)
        self._finish_folder(folder_id, root_s)
        progress(Progress(total, total, "done"))
        yield IndexEvent("done", display_path(root_s), counts=dict(counts))

    def _examine_and_thumb(self, w: _Walked, ex: _Existing | None) -> _Result:
        res = _examine(w, ex, self.scorer)
        thumb = res.values.pop("_thumb", None)
        if res.kind == "ok" and thumb is not None and self.thumbs is not None and res.fingerprint:
            try:
                if not self.thumbs.has(res.fingerprint):
                    self.thumbs.put(res.fingerprint, thumb)
            except OSError as e:  # a full or read-only cache disk must not fail the index
                log.warning("cannot write thumbnail for %s: %s", display_path(w.pb), e)
        return res

    def _flush(self, batch: list[_Result], folder_id: int, claimed: set[int], vanished_ids: set[int],
               counts: dict[str, int]) -> Iterator[IndexEvent]:
        if not batch:
            return
        views = [r.values.pop("_views", None) for r in batch]
        events = self.catalog.write(lambda s: self._apply(s, batch, folder_id, claimed, vanished_ids))
        if self.scorer is not None:
            # one event per result, in order: score the photos just recorded, from their views
            items = [((ev.photo_id, ev.path, r.fingerprint or "", r.values.get("width"), r.values.get("height")),
                      v[0], v[1])
                     for r, ev, v in zip(batch, events, views, strict=True)
                     if v is not None and ev.photo_id is not None and ev.status == STATUS_OK
                     and ev.kind in ("added", "updated", "moved")]
            if items:
                try:
                    for sev in self.scorer.score_decoded(self.catalog, items):
                        self.scored[sev.photo_id] = sev
                except CatalogError:
                    raise
                except Exception as e:  # noqa: BLE001 - the index goes on; the scorer's own pass retries
                    log.warning("scoring while indexing failed (%s); these photos are scored afterwards", e)
        for ev in events:
            counts[ev.kind] = counts.get(ev.kind, 0) + 1
            yield ev

    def _apply(self, s: Session, batch: list[_Result], folder_id: int, claimed: set[int],
               vanished_ids: set[int]) -> list[IndexEvent]:
        now = datetime.now()
        events: list[IndexEvent] = []
        for r in batch:
            w = r.walked
            dpath = display_path(w.pb)
            if r.kind == "vanished":
                if r.existing is not None:
                    vanished_ids.add(r.existing.id)  # marked missing at the end unless moved
                events.append(IndexEvent("vanished", dpath, r.existing.id if r.existing else None,
                                         error=r.error))
                continue
            if r.kind == "touched" and r.existing is not None:
                s.execute(update(Photo).where(Photo.id == r.existing.id).values(
                    size=w.size, mtime_ns=w.mtime_ns, folder_id=folder_id, indexed_at=now))
                events.append(IndexEvent("touched", dpath, r.existing.id, STATUS_OK))
                continue
            base: dict[str, Any] = {"size": w.size, "mtime_ns": w.mtime_ns, "fingerprint": r.fingerprint,
                                    "folder_id": folder_id, "indexed_at": now}
            if r.kind == "ok":
                base.update(r.values)
                base.update(status=STATUS_OK, error=None, error_code=None)
            else:
                base.update(status=STATUS_ERROR, error=r.error, error_code=r.error_code, warning=None)
            existing_id = r.existing.id if r.existing is not None else None
            if existing_id is None:  # another process (GUI and CLI at once) may have added it meanwhile
                existing_id = s.scalar(select(Photo.id).where(Photo.path_bytes == w.pb))
            if existing_id is not None:
                # new content: the faces found in the old one no longer count (engine.enhance.face_scan)
                s.execute(update(Photo).where(Photo.id == existing_id).values(**base, face_count=None))
                kind = "updated" if r.kind == "ok" else "error"
                events.append(IndexEvent(kind, dpath, existing_id, base["status"], r.error))
                continue
            moved_from = self._find_moved(s, r.fingerprint, claimed) if r.kind == "ok" else None
            if moved_from is not None:
                pid, old = moved_from
                claimed.add(pid)
                s.execute(update(Photo).where(Photo.id == pid).values(path=dpath, path_bytes=w.pb, **base))
                events.append(IndexEvent("moved", dpath, pid, STATUS_OK, old_path=old))
                continue
            photo = Photo(path=dpath, path_bytes=w.pb, **base)
            s.add(photo)
            s.flush()
            events.append(IndexEvent("added" if r.kind == "ok" else "error", dpath, photo.id, base["status"],
                                     r.error))
        # a new fingerprint makes the old scores stale: the current score follows in this transaction
        refresh_current_scores(s, [e.photo_id for e in events
                                   if e.kind in ("updated", "error", "moved") and e.photo_id is not None])
        return events

    @staticmethod
    def _find_moved(s: Session, fp: str | None, claimed: set[int]) -> tuple[int, str] | None:
        """A photo with this content whose file is gone: the file was moved or renamed."""
        if not fp:
            return None
        rows = s.execute(select(Photo.id, Photo.path_bytes, Photo.path, Photo.status)
                         .where(Photo.fingerprint == fp).order_by(Photo.id)).all()
        for pid, pb, path, status in rows:
            if pid in claimed:
                continue
            if status == STATUS_MISSING or not os.path.lexists(os.fsdecode(pb)):
                return int(pid), str(path)
        return None

    def _mark_missing(self, ids: list[int], counts: dict[str, int]) -> Iterator[IndexEvent]:
        if not ids:
            return

        def fn(s: Session) -> list[tuple[int, str]]:
            out: list[tuple[int, str]] = []
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                out += [(int(a), str(b)) for a, b in s.execute(
                    select(Photo.id, Photo.path).where(Photo.id.in_(chunk))).all()]
                s.execute(update(Photo).where(Photo.id.in_(chunk)).values(status=STATUS_MISSING))
            return out

        for pid, path in self.catalog.write(fn):
            counts["missing"] += 1
            yield IndexEvent("missing", path, pid, STATUS_MISSING)

    def _finish_folder(self, folder_id: int, root: str) -> None:
        def fn(s: Session) -> None:
            f = s.get(Folder, folder_id)
            if f is not None:
                f.last_scan_at = datetime.now()
            # a root added above earlier roots takes their unchanged photos too
            s.execute(update(Photo).where(under(Photo.path_bytes, root),
                                          Photo.folder_id != folder_id).values(folder_id=folder_id))

        self.catalog.write(fn)


__all__ = ["RAW_EXTENSIONS", "IndexEvent", "Indexer", "fingerprint", "fingerprint_bytes", "missing_reason", "walk"]
