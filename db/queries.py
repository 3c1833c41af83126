"""Questions about photos that have one answer, shared by every reader and writer of the catalog.

* **The current score** of a photo is its newest ``scores`` row (highest id: ids grow with time,
  and a batch writes the base row before the fine-tuned head's row, so rows written with one
  timestamp do not tie) whose fingerprint equals the photo's, and whose head is the base model's
  (``""``) or an active fine-tuned head. It is kept in ``photos.current_score_id`` by
  :func:`refresh_current_scores`, which every writer of scores or fingerprints calls in the same
  transaction (:mod:`engine.assess.scoring`, :mod:`engine.assess.finetune`, :mod:`engine.ingest.indexer`); readers
  join ``scores.id = photos.current_score_id`` and never recompute it. Deleting a score row sets
  the column to NULL (foreign key ``ON DELETE SET NULL``) until the refresh.
* **The faces of a photo** (schema 5): :func:`store_faces` replaces a photo's ``faces`` rows and
  sets ``photos.face_count`` in one transaction; :func:`faces_of` reads them back.
* **Photos under a folder**: :func:`under`, one byte range over ``path_bytes`` (an index range
  scan; exact also for non-UTF-8 names).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, func, or_, select, update
from sqlalchemy.orm import Session

from db.schema import FaceBox, Head, Photo, Score

CHUNK = 500


def current_score_id() -> Any:
    """The rule, as a scalar subquery correlated to ``photos``: the id of the photo's current score."""
    active_heads = select(cast(Head.id, String(64))).where(Head.active.is_(True))
    return (select(func.max(Score.id))
            .where(Score.photo_id == Photo.id, Score.fingerprint == Photo.fingerprint,
                   or_(Score.head == "", Score.head.in_(active_heads)))
            .correlate(Photo).scalar_subquery())


def refresh_current_scores(s: Session, photo_ids: Iterable[int] | None = None) -> None:
    """Set ``photos.current_score_id`` by the rule, for ``photo_ids`` (None: every photo).

    Call it inside the write that changed scores, heads or fingerprints, so no reader ever sees
    the column disagree with the rows."""
    s.flush()  # rows added through the ORM count too
    stmt = update(Photo).values(current_score_id=current_score_id())
    if photo_ids is None:
        s.execute(stmt)
        return
    ids = sorted({int(i) for i in photo_ids})
    for i in range(0, len(ids), CHUNK):
        s.execute(stmt.where(Photo.id.in_(ids[i:i + CHUNK])))


def folder_range(folder: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``[lo, hi)`` of the ``path_bytes`` of everything under ``folder`` (an absolute real path)."""
    lo = os.fsencode(os.path.join(os.fspath(folder), ""))
    return lo, lo[:-1] + bytes([lo[-1] + 1])


def under(column: Any, folder: str | os.PathLike[str]) -> ColumnElement[bool]:
    """``column`` (a ``path_bytes``) lies under ``folder`` (an absolute real path)."""
    lo, hi = folder_range(folder)
    return and_(column >= lo, column < hi)


def store_faces(s: Session, photo_id: int, fingerprint: str, model: str,
                boxes: Iterable[tuple[float, float, float, float, float]]) -> int:
    """Replace the faces of ``photo_id`` with ``boxes`` ((x0, y0, x1, y1, score), 0..1) found in the
    content ``fingerprint`` by detector version ``model``; sets ``photos.face_count``. Returns the count."""
    from datetime import datetime

    s.query(FaceBox).filter(FaceBox.photo_id == photo_id).delete(synchronize_session=False)
    now = datetime.now()
    n = 0
    for x0, y0, x1, y1, score in boxes:
        s.add(FaceBox(photo_id=photo_id, fingerprint=fingerprint, model=model, x0=float(x0), y0=float(y0),
                      x1=float(x1), y1=float(y1), score=float(score), detected_at=now))
        n += 1
    s.execute(update(Photo).where(Photo.id == photo_id).values(face_count=n))
    return n


def faces_of(s: Session, photo_id: int) -> list[FaceBox]:
    """The stored faces of a photo, best score first."""
    return list(s.scalars(select(FaceBox).where(FaceBox.photo_id == photo_id).order_by(FaceBox.score.desc())))


__all__ = ["current_score_id", "faces_of", "folder_range", "refresh_current_scores", "store_faces", "under"]
