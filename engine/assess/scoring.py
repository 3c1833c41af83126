"""The scoring service: the assessor over photos, scores stored per model version.

* ``Scorer.assess(rgb)`` scores one decoded image; ``assess_views`` a batch of views.
* ``Scorer.score_photos(catalog, ids, progress, cancel)`` is the library job: photos are decoded
  at reduced scale (JPEG DCT scaling) in a thread pool, their views (``engine.assess.views``) are run
  through ONE shared onnxruntime session in batches, and each batch of results is written in one
  transaction through ``catalog.write``. It yields a ``ScoreEvent`` per photo, checks the cancel
  token between photos, and leaves the catalog consistent whenever it stops (a batch is written
  whole or not at all).
* Threads: ``workers`` decoding threads; the session gets ``thread_budget(workers)`` intra-op
  threads, so threads x workers <= cores (DESIGN: two workers with one intra-op thread each gave
  the best throughput on 2 cores; decoding, not the network, is the bottleneck).
* ``recommended`` = improvability >= ``Thresholds.improvability``; its default comes from the
  precision-recall curve on the held-out split (``models/assessor.json``, written by
  ``models/training/eval_assessor.py``, see models/assessor.md). Each degradation has its own
  threshold on its severity; the names above threshold are the photo's ``reasons`` (the badge).
* A fine-tuned head (``engine.assess.finetune``) replaces the shipped last layer: when a head is active
  for this model version, improvability and ``recommended`` come from it, and its rows are stored
  with ``scores.head = str(head.id)`` beside the base rows (``head = ""``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Container, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.assess.degrade import SEVERITY_NAMES
from engine.assess.views import decode_reduction, make_views, make_views_and_small
from engine.core.jobs import CancelToken, JobCancelled, Progress, ProgressFn

log = logging.getLogger(__name__)

MODEL_NAME = "assessor"
DEFAULT_IMPROVABILITY_THRESHOLD = 1.0  # used only when the model has no sidecar JSON
DEFAULT_SEVERITY_THRESHOLD = 0.35
# Decode at half scale when the long side is at least REDUCE_FROM_SIDE pixels (12 MP -> 3 MP;
# engine.assess.views.decode_reduction).
CHANGED_REASON = "the file changed since it was indexed (its fingerprint differs); index it again to score it"


class FileChanged(Exception):
    """The file's bytes no longer match the fingerprint the job was queued with: not scored."""


def decode_failure(e: BaseException) -> tuple[str, str]:
    """``(reason, error_code)`` of a photo that could not be decoded for scoring."""
    code = getattr(e, "code", "decode")
    reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
    return str(reason), str(code)


@dataclass(frozen=True)
class Thresholds:
    improvability: float = DEFAULT_IMPROVABILITY_THRESHOLD
    severity: dict[str, float] = field(default_factory=lambda: {n: DEFAULT_SEVERITY_THRESHOLD
                                                                for n in SEVERITY_NAMES})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thresholds:
        sev = {n: DEFAULT_SEVERITY_THRESHOLD for n in SEVERITY_NAMES}
        sev.update({str(k): float(v) for k, v in (data.get("severity") or {}).items()})
        return cls(float(data.get("improvability", DEFAULT_IMPROVABILITY_THRESHOLD)), sev)


@dataclass(frozen=True)
class Assessment:
    improvability: float
    quality: float
    severity: dict[str, float]
    embedding: np.ndarray
    recommended: bool
    reasons: tuple[str, ...] = ()  # degradations whose severity is above their threshold

    def to_json(self) -> dict[str, Any]:
        return {"improvability": round(self.improvability, 4), "quality": round(self.quality, 4),
                "recommended": self.recommended,
                "severity": {k: round(v, 4) for k, v in self.severity.items()},
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class ScoreEvent:
    """One photo's outcome in ``score_photos``: an assessment, a skip (already scored) or an error."""

    photo_id: int
    path: str
    status: str  # 'ok', 'skipped' (already scored; or changed since indexed: reason in error), 'error'
    assessment: Assessment | None = None
    error: str | None = None


# (photo id, display path, fingerprint the catalog holds, width, height)
ScoreItem = tuple[int, str, str, int | None, int | None]


@dataclass(frozen=True)
class ScorePlan:
    """See :meth:`Scorer.plan`. ``fs_paths``: photo id -> the path to open (exact bytes)."""

    ids: list[int]
    done: list[ScoreEvent]
    todo: list[ScoreItem]
    fs_paths: dict[int, str]


@dataclass(frozen=True)
class LastLayer:
    """A linear improvability head over the embedding: ``w . e + b``."""

    w: np.ndarray
    b: float

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        return np.asarray(emb, np.float64) @ np.asarray(self.w, np.float64) + float(self.b)

    def to_bytes(self) -> bytes:
        return np.concatenate([np.asarray(self.w, np.float32).ravel(), np.array([self.b], np.float32)]).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> LastLayer:
        a = np.frombuffer(data, np.float32)
        return cls(a[:-1].astype(np.float64), float(a[-1]))


def default_model_path() -> Path:
    from engine.core.runtime import models_dir

    return models_dir() / f"{MODEL_NAME}.onnx"


def _sidecar(model_path: Path) -> dict[str, Any]:
    p = model_path.with_suffix(".json")
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s: %s", p, e)
        return {}


_THRESHOLDS_CACHE: dict[tuple[str, int], Thresholds] = {}


def shipped_thresholds(model_path: Path | str | None = None) -> Thresholds:
    """The model's calibrated thresholds (its sidecar JSON; defaults when it has none), without
    loading the network: what the grid's badges and filters use, so they agree with ``score``,
    ``rank`` and ``export --recommended`` (which read the same numbers through the Scorer)."""
    p = Path(model_path) if model_path is not None else default_model_path()
    side = p.with_suffix(".json")
    try:
        key = (str(side), side.stat().st_mtime_ns)
    except OSError:
        return Thresholds()
    th = _THRESHOLDS_CACHE.get(key)
    if th is None:
        th = Thresholds.from_json(_sidecar(p).get("thresholds") or {})
        _THRESHOLDS_CACHE[key] = th
    return th


def reasons_for(severity: dict[str, float], th: Thresholds, skip: Container[str] = ()) -> tuple[str, ...]:
    """The degradations at or above their own threshold, most severe first (the badge); those in
    ``skip`` are left out (the library skips ``compression`` for a JPEG the enhancer would not
    deblock: ``engine.enhance.levels.reasons_skipped``)."""
    return tuple(sorted((n for n, v in severity.items()
                         if v >= th.severity.get(n, DEFAULT_SEVERITY_THRESHOLD) and n not in skip),
                        key=lambda n: -severity[n]))


class Scorer:
    """The assessor behind one shared onnxruntime session. Thread-safe; share one (``get_scorer``)."""

    def __init__(self, model_path: Path | str | None = None, workers: int = 2, batch_size: int = 8,
                 thresholds: Thresholds | None = None) -> None:
        from engine.core.runtime import model_version, thread_budget

        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not self.model_path.is_file():
            from engine.core.runtime import ModelMissing

            raise ModelMissing(f"assessor model not found: {self.model_path}")
        self.model_name = MODEL_NAME
        self.model_version = model_version(self.model_path)
        self.workers = max(1, int(workers))
        self.batch_size = max(1, int(batch_size))
        self.intra_op_threads = thread_budget(self.workers)
        meta = _sidecar(self.model_path)
        self.meta = meta
        self.thresholds = thresholds or Thresholds.from_json(meta.get("thresholds", {}))
        head = meta.get("head")
        self.base_head: LastLayer | None = (LastLayer(np.asarray(head["w"], np.float64), float(head["b"]))
                                            if head else None)
        sess = self._session()
        shapes = {i.name: i.shape for i in sess.get_inputs()}
        crops_shape = shapes.get("crops")
        if crops_shape is None or "global" not in shapes:
            raise ValueError(f"{self.model_path.name} lacks the assessor inputs 'crops' and 'global'")
        views = meta.get("views", {})
        self.k = int(views.get("k", crops_shape[1] if isinstance(crops_shape[1], int) else 6))
        s_dim, g_dim = crops_shape[3], shapes["global"][2]
        self.crop = int(views.get("crop", s_dim if isinstance(s_dim, int) else 96))
        self.global_size = int(views.get("global", g_dim if isinstance(g_dim, int) else 128))
        self._head_lock = threading.Lock()

    def _session(self) -> Any:
        from engine.core.runtime import get_session

        return get_session(self.model_path, self.intra_op_threads)

    # -- single images ------------------------------------------------------------------------
    def views(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return make_views(rgb, self.k, self.crop, self.global_size)

    def views_and_small(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The views plus their shared pre-reduction (the indexer's thumbnail source)."""
        return make_views_and_small(rgb, self.k, self.crop, self.global_size)

    def run_views(self, crops: np.ndarray, glob: np.ndarray) -> dict[str, np.ndarray]:
        """Raw model outputs for a batch: crops [N,K,3,S,S], global [N,3,G,G]."""
        sess = self._session()
        names = [o.name for o in sess.get_outputs()]
        outs = sess.run(names, {"crops": np.ascontiguousarray(crops, np.float32),
                                "global": np.ascontiguousarray(glob, np.float32)})
        return dict(zip(names, outs, strict=True))

    def assess_views(self, crops: np.ndarray, glob: np.ndarray, head: LastLayer | None = None
                     ) -> list[Assessment]:
        return self.assessments(self.run_views(crops, glob), head)

    def assessments(self, out: dict[str, np.ndarray], head: LastLayer | None = None) -> list[Assessment]:
        """Assessments from the raw outputs of :meth:`run_views` (which may have run in another
        process: the cluster backend, :mod:`engine.cluster`, ships the outputs back)."""
        emb = np.asarray(out["embedding"], np.float32)
        improv = np.asarray(out["improvability"], np.float64).reshape(-1)
        if head is not None:
            improv = head(emb)
        res = []
        for i in range(len(improv)):
            sev = {n: float(v) for n, v in zip(SEVERITY_NAMES, np.asarray(out["severity"][i]).reshape(-1),
                                                strict=False)}
            res.append(self.make_assessment(float(improv[i]), float(np.asarray(out["quality"]).reshape(-1)[i]),
                                            sev, emb[i]))
        return res

    def make_assessment(self, improvability: float, quality: float, severity: dict[str, float],
                        embedding: np.ndarray) -> Assessment:
        th = self.thresholds
        reasons = reasons_for(severity, th)
        return Assessment(improvability, quality, severity, embedding, improvability >= th.improvability, reasons)

    def assess(self, rgb_uint8: np.ndarray, head: LastLayer | None = None) -> Assessment:
        """Score one decoded image (uint8 HxWx3 as decoded for scoring)."""
        c, g = self.views(rgb_uint8)
        return self.assess_views(c[None], g[None], head)[0]

    def assess_many(self, images: Sequence[np.ndarray], head: LastLayer | None = None) -> list[Assessment]:
        out: list[Assessment] = []
        for i in range(0, len(images), self.batch_size):
            vs = [self.views(im) for im in images[i : i + self.batch_size]]
            out += self.assess_views(np.stack([v[0] for v in vs]), np.stack([v[1] for v in vs]), head)
        return out

    # -- decoding -------------------------------------------------------------------------------
    @staticmethod
    def reduce_for(width: int | None, height: int | None) -> int:
        """Half-scale decode for large photos (noise and blocking survive a 2x reduction)."""
        return decode_reduction(width, height)

    def load_views(self, path: str, width: int | None = None, height: int | None = None,
                   fingerprint: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Decode ``path`` for scoring and make its views. With ``fingerprint`` (the one the
        catalog holds), the bytes that are decoded are first checked against it: a file that
        changed since it was indexed raises :class:`FileChanged` instead of being scored under
        the old content's fingerprint (the check costs one hash of 192 KiB of bytes already read)."""
        from engine.ingest.imageio import decode, read_bytes

        data = read_bytes(path)
        if fingerprint:
            from engine.ingest.indexer import fingerprint_bytes

            if fingerprint_bytes(data) != fingerprint:
                raise FileChanged(CHANGED_REASON)
        ext = Path(path).suffix
        img, _ = decode(data, ext, reduce=self.reduce_for(width, height))
        if width is None and self.reduce_for(*img.size) > 1:
            img, _ = decode(data, ext, reduce=self.reduce_for(*img.size))
        return self.views(img.rgb)

    def assess_path(self, path: str) -> Assessment:
        c, g = self.load_views(path)
        return self.assess_views(c[None], g[None], self.active_head_weights(None))[0]

    # -- heads ------------------------------------------------------------------------------------
    def active_head(self, catalog: Any) -> tuple[str, LastLayer] | None:
        """The active fine-tuned head for this model version in ``catalog``: ``(key, layer)``."""
        if catalog is None:
            return None
        from sqlalchemy import select

        from db.schema import Head

        with catalog.session() as s:
            row = s.execute(select(Head).where(Head.model == self.model_name,
                                               Head.model_version == self.model_version,
                                               Head.active.is_(True)).order_by(Head.id.desc())).scalars().first()
            if row is None:
                return None
            return str(row.id), LastLayer.from_bytes(row.weights)

    def active_head_weights(self, catalog: Any) -> LastLayer | None:
        h = self.active_head(catalog)
        return h[1] if h else None

    # -- the library job ------------------------------------------------------------------------
    def plan(self, catalog: Any, photo_ids: Iterable[int], force: bool = False) -> ScorePlan:
        """What a scoring job has to do: events for photos it will not score (not in the catalog,
        not ``ok``, already scored for their content unless ``force``) and the photos to score.
        Shared by the thread-pool job and the cluster job (:mod:`engine.cluster`)."""
        from sqlalchemy import select

        from db.schema import STATUS_OK, Photo, Score

        ids = list(dict.fromkeys(int(i) for i in photo_ids))
        todo: list[ScoreItem] = []
        done_events: list[ScoreEvent] = []
        with catalog.session() as s:
            rows = s.execute(select(Photo.id, Photo.path, Photo.fingerprint, Photo.width, Photo.height,
                                    Photo.status, Photo.path_bytes).where(Photo.id.in_(ids))).all() if ids else []
            scored: set[tuple[int, str]] = set()
            if rows and not force:
                scored = {(pid, fp) for pid, fp in s.execute(
                    select(Score.photo_id, Score.fingerprint).where(
                        Score.photo_id.in_(ids), Score.model == self.model_name,
                        Score.model_version == self.model_version, Score.head == "")).all()}
        found = {r[0] for r in rows}
        for pid in ids:
            if pid not in found:
                done_events.append(ScoreEvent(pid, "", "error", error="no such photo in the catalog"))
        # ``path`` is for display; files are opened by their exact bytes (non-UTF-8 names)
        fs_paths = {r[0]: os.fsdecode(r[6]) if r[6] else r[1] for r in rows}
        for pid, path, fp, w, h, status, _pb in rows:
            if status != STATUS_OK:
                done_events.append(ScoreEvent(pid, path, "error", error=f"photo status is {status!r}"))
            elif (pid, fp or "") in scored:
                done_events.append(ScoreEvent(pid, path, "skipped"))
            else:
                todo.append((pid, path, fp or "", w, h))
        return ScorePlan(ids, done_events, todo, fs_paths)

    def score_photos(self, catalog: Any, photo_ids: Iterable[int], progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None, force: bool = False) -> Iterator[ScoreEvent]:
        """Score photos of the catalog; yields one ``ScoreEvent`` per photo (see module doc).

        Photos already scored by this model version for their current content are skipped
        unless ``force``. Raises ``JobCancelled`` when ``cancel`` fires (after the last whole
        batch was written).
        """
        plan = self.plan(catalog, photo_ids, force)
        done_events, todo, fs_paths, ids = plan.done, plan.todo, plan.fs_paths, plan.ids
        total = len(ids)
        n_done = 0
        head = self.active_head(catalog)

        def report(msg: str) -> None:
            if progress is not None:
                progress(Progress(n_done, total, msg))

        for ev in done_events:
            n_done += 1
            report(ev.path)
            yield ev
        if not todo:
            return

        def decode(item: tuple[int, str, str, int | None, int | None]) -> tuple[np.ndarray, np.ndarray]:
            if cancel is not None and cancel.cancelled:
                raise JobCancelled()
            return self.load_views(fs_paths[item[0]], item[3], item[4], item[2])

        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="score-decode")
        try:
            ahead = self.workers * 2 + self.batch_size
            queue: list[tuple[tuple[int, str, str, int | None, int | None], Future[Any]]] = []
            it = iter(todo)
            batch: list[tuple[tuple[int, str, str, int | None, int | None], np.ndarray, np.ndarray]] = []
            errors: list[tuple[tuple[int, str, str, int | None, int | None], str, str]] = []
            changed: list[ScoreEvent] = []

            def fill() -> None:
                while len(queue) < ahead:
                    nxt = next(it, None)
                    if nxt is None:
                        return
                    queue.append((nxt, pool.submit(decode, nxt)))

            fill()
            while queue or batch or errors or changed:
                if cancel is not None and cancel.cancelled:
                    raise JobCancelled()
                # take decoded photos in submission order (deterministic batches)
                while queue and len(batch) + len(errors) + len(changed) < self.batch_size:
                    item, fut = queue.pop(0)
                    try:
                        c, g = fut.result()
                        batch.append((item, c, g))
                    except JobCancelled:
                        raise
                    except FileChanged as e:  # not an error of the photo: its content is newer
                        changed.append(ScoreEvent(item[0], item[1], "skipped", error=str(e)))
                    except Exception as e:  # noqa: BLE001 - bad input is state, the batch goes on
                        reason, code = decode_failure(e)
                        errors.append((item, reason, code))
                    fill()
                events = self._finish_batch(catalog, batch, errors, head) + changed
                batch, errors, changed = [], [], []
                for ev in events:
                    n_done += 1
                    report(ev.path)
                    yield ev
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def score_decoded(self, catalog: Any, items: list[tuple[tuple[int, str, str, int | None, int | None],
                                                           np.ndarray, np.ndarray]]) -> list[ScoreEvent]:
        """Score photos whose views were made from pixels decoded elsewhere (the indexer's one
        decode, :mod:`engine.ingest.indexer`); ``items`` are ``((id, path, fingerprint, w, h), crops,
        global)``. Photos already scored by this model version for that content are skipped."""
        from sqlalchemy import select

        from db.schema import Score

        if not items:
            return []
        ids = [it[0][0] for it in items]
        with catalog.session() as s:
            done = {(pid, fp) for pid, fp in s.execute(
                select(Score.photo_id, Score.fingerprint).where(
                    Score.photo_id.in_(ids), Score.model == self.model_name,
                    Score.model_version == self.model_version, Score.head == "")).all()}
        todo = [it for it in items if (it[0][0], it[0][2]) not in done]
        head = self.active_head(catalog) if todo else None
        events: list[ScoreEvent] = []
        for i in range(0, len(todo), self.batch_size):
            events += self._finish_batch(catalog, todo[i:i + self.batch_size], [], head)
        return events

    def _finish_batch(self, catalog: Any, batch: list[Any], errors: list[Any],
                      head: tuple[str, LastLayer] | None) -> list[ScoreEvent]:
        base: list[Assessment] = []
        if batch:
            base = self.assess_views(np.stack([b[1] for b in batch]), np.stack([b[2] for b in batch]))
        return self.write_results(catalog, [b[0] for b in batch], base, errors, head)

    def write_results(self, catalog: Any, items: Sequence[ScoreItem], base: Sequence[Assessment],
                      errors: Sequence[tuple[ScoreItem, str, str]], head: tuple[str, LastLayer] | None
                      ) -> list[ScoreEvent]:
        """Store one batch's scores (``items[i]`` scored ``base[i]`` by the base model; the active
        ``head`` re-heads them) and mark ``errors`` (item, reason, code) as photos that cannot be
        scored, in ONE transaction through the catalog's writer. Rerunning a photo replaces its
        row (one row per photo, model version and head). Returns the events in that order."""
        from sqlalchemy import delete, insert, update

        from db.queries import refresh_current_scores
        from db.schema import STATUS_ERROR, Photo, Score

        tuned = self.assess_views_with(list(base), head[1]) if head and base else [None] * len(base)
        results: list[tuple[Any, Assessment, Assessment | None]] = list(zip(items, base, tuned, strict=True))
        now = datetime.now()

        def write(s: Any) -> None:
            # one DELETE and one executemany INSERT per head key for the whole batch (the ORM's
            # per-row unit of work cost ~3 ms a photo on the thread that also runs inference)
            rows: dict[str, list[dict[str, Any]]] = {}
            for item, a, t in results:
                pid, fp = item[0], item[2]
                rows.setdefault("", []).append(self.score_values(pid, fp, a, "", now))
                if head and t is not None:
                    rows.setdefault(head[0], []).append(self.score_values(pid, fp, t, head[0], now))
            for key, values in rows.items():
                s.execute(delete(Score).where(Score.photo_id.in_([v["photo_id"] for v in values]),
                                              Score.model == self.model_name,
                                              Score.model_version == self.model_version, Score.head == key))
                s.execute(insert(Score), values)
            for item, reason, code in errors:
                s.execute(update(Photo).where(Photo.id == item[0]).values(
                    status=STATUS_ERROR, error=f"cannot score: {reason}", error_code=code))
            refresh_current_scores(s, [item[0] for item, _a, _t in results])

        if results or errors:
            catalog.write(write)
        events = [ScoreEvent(item[0], item[1], "ok", t if t is not None else a) for item, a, t in results]
        events += [ScoreEvent(item[0], item[1], "error", error=reason) for item, reason, _ in errors]
        return events

    def assess_views_with(self, base: list[Assessment], head: LastLayer) -> list[Assessment]:
        """Re-head assessments from their embeddings (no inference)."""
        if not base:
            return []
        imp = head(np.stack([a.embedding for a in base]))
        return [self.make_assessment(float(v), a.quality, a.severity, a.embedding) for v, a in zip(imp, base, strict=True)]

    def score_values(self, photo_id: int, fingerprint: str, a: Assessment, head_key: str, when: datetime
                     ) -> dict[str, Any]:
        """The column values of one ``scores`` row."""
        return {"photo_id": photo_id, "model": self.model_name, "model_version": self.model_version,
                "fingerprint": fingerprint, "improvability": float(a.improvability), "quality": float(a.quality),
                "severity_json": json.dumps({k: round(float(v), 5) for k, v in a.severity.items()}),
                "embedding": np.asarray(a.embedding, np.float32).tobytes(), "recommended": bool(a.recommended),
                "head": head_key, "scored_at": when}

    def score_row(self, photo_id: int, fingerprint: str, a: Assessment, head_key: str, when: datetime) -> Any:
        from db.schema import Score

        return Score(**self.score_values(photo_id, fingerprint, a, head_key, when))


_shared: Scorer | None = None
_shared_lock = threading.Lock()


def get_scorer(model_path: Path | str | None = None) -> Scorer:
    """The process-wide scorer for the shipped assessor (or ``model_path``)."""
    global _shared
    with _shared_lock:
        path = Path(model_path) if model_path is not None else default_model_path()
        if _shared is None or _shared.model_path != path:
            _shared = Scorer(path)
        return _shared
