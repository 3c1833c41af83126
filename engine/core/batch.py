"""The batch queue: one ``jobs`` row per photo, so a batch survives a restart.

``enqueue`` writes every item as ``queued`` in one transaction (a batch id and the owner, the
process that runs it, in ``params_json``); queued jobs of the same kind for the same photos, and
running ones whose process is gone, are marked ``cancelled`` ("superseded") in that transaction,
so a rerun never does a photo twice. ``run`` takes the queued items of one batch (oldest first),
claims each (queued -> running, a conditional update, so one job is run by one process only; a
job superseded meanwhile is skipped), calls the handler, and marks it ``done`` or ``error`` with
the reason; the batch goes on after an error. A handler may mark its own job done inside the
same transaction as its result (the editor does, so a crash between the two cannot apply an
edit twice).

Resuming. A crash, ``kill -9`` or power cut leaves rows ``queued`` and ``running`` whose owner is
gone (``engine.core.processes``). :meth:`BatchQueue.adopt_interrupted` takes them over in one
transaction (back to ``queued``, under a new batch id and this process as owner), and the batch
continues where it stopped; the GUI does this at start-up (``Editor.resume_interrupted``).
Rows of a process still running, or of another machine (which cannot be checked from here), are
never taken: that process, or photolift started again on that machine, finishes them.
Cancelling stops between items; the items not started are marked ``cancelled`` (a user's
cancel is a decision, not an interruption to resume).

Progress carries a time estimate (``engine.core.jobs.Eta``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from engine.core.jobs import CancelToken, Eta, JobCancelled, ProgressFn
from engine.core.processes import owner_gone, this_process

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


def _owner(params_json: str | None) -> str | None:
    try:
        owner = json.loads(params_json or "{}").get("owner")
    except (ValueError, AttributeError):
        return None
    return owner if isinstance(owner, str) else None


class BatchQueue:
    """Persistent queue over the ``jobs`` table of a catalog, run by ``owner`` (default: this
    process)."""

    def __init__(self, catalog: Any, owner: str | None = None) -> None:
        self.catalog = catalog
        self.owner = owner or this_process()

    def enqueue(self, kind: str, photo_ids: Sequence[int], params: dict[str, Any] | None = None) -> str:
        """Queue one job per photo; returns the batch id."""
        from sqlalchemy import select, update

        from db.schema import JOB_CANCELLED, JOB_QUEUED, JOB_RUNNING, Job

        batch = uuid.uuid4().hex[:12]
        body = dict(params or {})
        body["batch"] = batch
        body["owner"] = self.owner
        text = json.dumps(body, sort_keys=True)

        ids = list(dict.fromkeys(int(p) for p in photo_ids))

        def fn(s: Any) -> None:
            now = datetime.now()
            why = "superseded by a newer batch"
            # a photo queued again (e.g. a rerun after a crash) is done once, by the new batch; a job
            # running in a live process is left to it
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                s.execute(update(Job).where(Job.kind == kind, Job.photo_id.in_(chunk), Job.state == JOB_QUEUED)
                          .values(state=JOB_CANCELLED, error=why, updated_at=now))
                running = s.execute(select(Job.id, Job.params_json).where(
                    Job.kind == kind, Job.photo_id.in_(chunk), Job.state == JOB_RUNNING)).all()
                gone = [j for j, params in running if owner_gone(_owner(params))]
                if gone:
                    s.execute(update(Job).where(Job.id.in_(gone), Job.state == JOB_RUNNING)
                              .values(state=JOB_CANCELLED, error=why, updated_at=now))
            s.add_all([Job(kind=kind, photo_id=pid, params_json=text, state=JOB_QUEUED, created_at=now,
                           updated_at=now) for pid in ids])

        self.catalog.write(fn)
        return batch

    # -- batches interrupted by a crash ------------------------------------------------------------
    def _interrupted(self, s: Any, kind: str) -> list[tuple[int, str | None]]:
        from sqlalchemy import select

        from db.schema import JOB_QUEUED, JOB_RUNNING, Job

        rows = s.execute(select(Job.id, Job.params_json).where(Job.kind == kind, Job.state.in_(
            [JOB_QUEUED, JOB_RUNNING])).order_by(Job.id)).all()
        return [(int(i), p) for i, p in rows if _owner(p) != self.owner and owner_gone(_owner(p))]

    def interrupted(self, kind: str) -> int:
        """How many jobs of ``kind`` processes that are gone left queued or running."""
        with self.catalog.session() as s:
            return len(self._interrupted(s, kind))

    def adopt_interrupted(self, kind: str) -> str | None:
        """Take over every job of ``kind`` that a process now gone left queued or running (one
        transaction, under the catalog's writer lock, so two processes starting at once cannot
        both take a job): they are queued again as one batch of this owner, each with its own
        parameters. Returns that batch id, None when there was nothing to resume."""
        from db.schema import JOB_QUEUED, Job

        def fn(s: Any) -> str | None:
            rows = self._interrupted(s, kind)
            if not rows:
                return None
            batch = uuid.uuid4().hex[:12]
            now = datetime.now()
            for job_id, params in rows:
                j = s.get(Job, job_id)
                body = json.loads(params or "{}")
                body.update(batch=batch, owner=self.owner)
                j.params_json = json.dumps(body, sort_keys=True)
                j.state = JOB_QUEUED
                j.updated_at = now
            return batch

        return self.catalog.write(fn)

    # -- reading -----------------------------------------------------------------------------------
    def pending(self, kind: str, batch: str) -> list[QueuedJob]:
        """The queued jobs of one batch, oldest first."""
        from sqlalchemy import select

        from db.schema import JOB_QUEUED, Job

        with self.catalog.session() as s:
            rows = s.scalars(select(Job).where(Job.kind == kind, Job.state == JOB_QUEUED).order_by(Job.id)).all()
            out = [QueuedJob(r.id, r.kind, r.photo_id, json.loads(r.params_json or "{}")) for r in rows]
        return [j for j in out if j.params.get("batch") == batch]

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

    # -- states ------------------------------------------------------------------------------------
    def set_state(self, job_id: int, state: str, error: str | None = None) -> None:
        from db.schema import Job

        def fn(s: Any) -> None:
            j = s.get(Job, job_id)
            if j is not None:
                j.state = state
                j.error = error
                j.updated_at = datetime.now()

        self.catalog.write(fn)

    def claim(self, job_id: int) -> bool:
        """Mark a queued job running; False when it is no longer queued (superseded, cancelled)."""
        from sqlalchemy import update

        from db.schema import JOB_QUEUED, JOB_RUNNING, Job

        def fn(s: Any) -> bool:
            r = s.execute(update(Job).where(Job.id == job_id, Job.state == JOB_QUEUED)
                          .values(state=JOB_RUNNING, updated_at=datetime.now()))
            return bool(r.rowcount)

        return bool(self.catalog.write(fn))

    def cancel(self, kind: str, batch: str) -> int:
        """Mark the queued jobs of one batch cancelled; returns how many."""
        from sqlalchemy import update

        from db.schema import JOB_CANCELLED, JOB_QUEUED, Job

        ids = [j.id for j in self.pending(kind, batch)]

        def fn(s: Any) -> None:
            s.execute(update(Job).where(Job.id.in_(ids), Job.state == JOB_QUEUED)
                      .values(state=JOB_CANCELLED, updated_at=datetime.now()))

        if ids:
            self.catalog.write(fn)
        return len(ids)

    def run(self, kind: str, handler: Callable[[QueuedJob, CancelToken | None], R], batch: str,
            progress: ProgressFn | None = None, cancel: CancelToken | None = None,
            what: str = "working") -> Iterator[JobOutcome[R]]:
        """Run the queued jobs of one ``batch`` of ``kind``, oldest first.

        ``handler(job, cancel)`` returns a result or raises; a raised exception marks that job
        ``error`` (reason = the message) and the batch goes on. ``JobCancelled`` (from the
        token) marks the job and every job not started ``cancelled`` and is re-raised.
        The handler may mark its job ``done`` itself; otherwise it is marked here.
        """
        from db.schema import JOB_CANCELLED, JOB_DONE, JOB_ERROR

        jobs = self.pending(kind, batch)
        eta = Eta(len(jobs), progress, what)
        eta.report(0)
        for n, job in enumerate(jobs):
            if cancel is not None and cancel.cancelled:
                self.cancel(kind, batch)
                raise JobCancelled()
            if not self.claim(job.id):  # superseded by a newer batch meanwhile
                eta.report(n + 1)
                continue
            try:
                result = handler(job, cancel)
            except JobCancelled:
                self.set_state(job.id, JOB_CANCELLED)
                self.cancel(kind, batch)
                raise
            except Exception as e:  # a bad item is state, not the end of the batch
                self.set_state(job.id, JOB_ERROR, f"{type(e).__name__}: {e}")
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
