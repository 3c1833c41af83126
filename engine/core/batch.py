"""The batch queue: one ``jobs`` row per photo, so a batch survives a restart.

``enqueue`` writes every item as ``queued`` in one transaction (a batch id in ``params_json``
groups them); queued or interrupted jobs of the same kind for the same photos are marked
``cancelled`` ("superseded") in that transaction, so a rerun never does a photo twice. ``run`` takes the queued items of a kind (oldest first), marks each ``running``,
calls the handler, and marks it ``done`` or ``error`` with the reason; the batch goes on after
an error. A handler may mark its own job done inside the same transaction as its result (the
editor does, so a crash between the two cannot apply an edit twice).

After a crash or ``kill -9`` some rows are left ``running``: :meth:`BatchQueue.recover` (called
by ``run``) puts them back to ``queued``, and the next run picks up where the last one stopped.
Cancelling stops between items; the items not started are marked ``cancelled`` (a user's
cancel is a decision, not an interruption to resume).

Progress carries a time estimate: mean seconds per finished item times the items left.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from engine.core.jobs import CancelToken, Eta, JobCancelled, ProgressFn

R = TypeVar("R")


@dataclass(frozen=True)
class QueuedJob:
    id: int
    kind: str
    photo_id: int | None
    params: dict[str, Any]


@dataclass(frozen=True)
class JobOutcome(Generic[R]):
    job_id: int
    photo_id: int | None
    result: R | None
    error: str | None


class BatchQueue:
    """Persistent queue over the ``jobs`` table of a catalog."""

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog

    def enqueue(self, kind: str, photo_ids: Sequence[int], params: dict[str, Any] | None = None) -> str:
        """Queue one job per photo; returns the batch id."""
        from db.schema import JOB_QUEUED, Job

        batch = uuid.uuid4().hex[:12]
        body = dict(params or {})
        body["batch"] = batch
        text = json.dumps(body, sort_keys=True)

        ids = list(dict.fromkeys(int(p) for p in photo_ids))

        def fn(s: Any) -> None:
            from sqlalchemy import update

            from db.schema import JOB_CANCELLED, JOB_RUNNING

            now = datetime.now()
            # a photo queued again (e.g. a rerun after a crash) is done once, by the new batch
            for i in range(0, len(ids), 500):
                s.execute(update(Job).where(Job.kind == kind, Job.photo_id.in_(ids[i:i + 500]),
                                            Job.state.in_([JOB_QUEUED, JOB_RUNNING]))
                          .values(state=JOB_CANCELLED, error="superseded by a newer batch", updated_at=now))
            s.add_all([Job(kind=kind, photo_id=pid, params_json=text, state=JOB_QUEUED, created_at=now,
                           updated_at=now) for pid in ids])

        self.catalog.write(fn)
        return batch

    def recover(self, kind: str | None = None) -> int:
        """Put jobs left ``running`` by a crashed process back to ``queued``; returns how many."""
        from sqlalchemy import update

        from db.schema import JOB_QUEUED, JOB_RUNNING, Job

        def fn(s: Any) -> int:
            q = update(Job).where(Job.state == JOB_RUNNING)
            if kind is not None:
                q = q.where(Job.kind == kind)
            r = s.execute(q.values(state=JOB_QUEUED, updated_at=datetime.now()))
            return int(r.rowcount or 0)

        return self.catalog.write(fn)

    def pending(self, kind: str, batch: str | None = None) -> list[QueuedJob]:
        from sqlalchemy import select

        from db.schema import JOB_QUEUED, Job

        with self.catalog.session() as s:
            rows = s.scalars(select(Job).where(Job.kind == kind, Job.state == JOB_QUEUED).order_by(Job.id)).all()
            out = [QueuedJob(r.id, r.kind, r.photo_id, json.loads(r.params_json or "{}")) for r in rows]
        if batch is not None:
            out = [j for j in out if j.params.get("batch") == batch]
        return out

    def counts(self, kind: str, batch: str | None = None) -> dict[str, int]:
        """Jobs per state (for a status line)."""
        from sqlalchemy import select

        from db.schema import Job

        with self.catalog.session() as s:
            rows = s.execute(select(Job.state, Job.params_json).where(Job.kind == kind)).all()
        out: dict[str, int] = {}
        for state, params in rows:
            if batch is not None and json.loads(params or "{}").get("batch") != batch:
                continue
            out[state] = out.get(state, 0) + 1
        return out

    def _set(self, job_id: int, state: str, error: str | None = None) -> None:
        from db.schema import Job

        def fn(s: Any) -> None:
            j = s.get(Job, job_id)
            if j is not None:
                j.state = state
                j.error = error
                j.updated_at = datetime.now()

        self.catalog.write(fn)

    def cancel(self, kind: str, batch: str | None = None) -> int:
        """Mark the queued jobs of a kind (or of one batch) cancelled; returns how many."""
        from db.schema import JOB_CANCELLED, Job

        ids = [j.id for j in self.pending(kind, batch)]

        def fn(s: Any) -> None:
            now = datetime.now()
            for i in ids:
                j = s.get(Job, i)
                if j is not None and j.state == "queued":
                    j.state = JOB_CANCELLED
                    j.updated_at = now

        if ids:
            self.catalog.write(fn)
        return len(ids)

    def run(self, kind: str, handler: Callable[[QueuedJob, CancelToken | None], R],
            progress: ProgressFn | None = None, cancel: CancelToken | None = None,
            batch: str | None = None, what: str = "working") -> Iterator[JobOutcome[R]]:
        """Run the queued jobs of ``kind`` (of one ``batch`` if given), oldest first.

        ``handler(job, cancel)`` returns a result or raises; a raised exception marks that job
        ``error`` (reason = the message) and the batch goes on. ``JobCancelled`` (from the
        token) marks the job and every job not started ``cancelled`` and is re-raised.
        The handler may mark its job ``done`` itself; otherwise it is marked here.
        """
        from db.schema import JOB_CANCELLED, JOB_DONE, JOB_ERROR, JOB_RUNNING

        self.recover(kind)
        jobs = self.pending(kind, batch)
        eta = Eta(len(jobs), progress, what)
        eta.report(0)
        for n, job in enumerate(jobs):
            if cancel is not None and cancel.cancelled:
                self.cancel(kind, batch)
                raise JobCancelled()
            self._set(job.id, JOB_RUNNING)
            try:
                result = handler(job, cancel)
            except JobCancelled:
                self._set(job.id, JOB_CANCELLED)
                self.cancel(kind, batch)
                raise
            except Exception as e:  # a bad item is state, not the end of the batch
                self._set(job.id, JOB_ERROR, f"{type(e).__name__}: {e}")
                yield JobOutcome(job.id, job.photo_id, None, f"{e}")
            else:
                self._finish(job.id, JOB_DONE)
                yield JobOutcome(job.id, job.photo_id, result, None)
            eta.report(n + 1)

    def _finish(self, job_id: int, state: str) -> None:
        from db.schema import JOB_RUNNING, Job

        def fn(s: Any) -> None:
            j = s.get(Job, job_id)
            if j is not None and j.state == JOB_RUNNING:
                j.state = state
                j.updated_at = datetime.now()

        self.catalog.write(fn)
