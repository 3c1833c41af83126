"""The editor service: one-click enhance with a regression guard, history, previews, batches.

History model. Every enhance or revert adds a row to ``recipes`` (``version`` 1, 2, ...) with a
status:

* ``applied``: part of the current history, up to and including the current state;
* ``undone``: undone, can be redone (always after every ``applied`` row);
* ``discarded``: an undone state dropped when a new edit was made after an undo;
* ``rejected``: made by a batch run but not applied because the measured gain was <= 0.

The current state is the last ``applied`` row. A revert is an ``applied`` row with no stages
(the original pixels), so revert is undoable; ``photos.current_recipe_id`` always points at the
last applied row that has stages, and is NULL when that is a revert or there is none, so NULL
keeps meaning "the original". Every change is one catalog transaction.

Regression guard. After an enhance the result is rendered at full resolution (the render is
cached and reused by export) and measured against the original (``engine.enhance.guard``). The
quality before and after and their difference (``measured_gain``) are stored on the recipe. A
gain that is not above Q's noise (``Guard.helped``; "did not help", or "no measurable gain"
for a positive gain within the noise) is reported; a single enhance keeps it (the user asked and can
undo), a batch leaves the photo as it was and stores the recipe as ``rejected``. A gain that
could not be measured is stored as NULL and the result says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.batch import BatchQueue, QueuedJob
from engine.core.jobs import CancelToken, ProgressFn
from engine.enhance.guard import Guard, guard_message, measure
from engine.enhance.recipes import Recipe, RecipeError, from_json
from engine.enhance.render import PREVIEW_SIDE, Renderer, to_uint8

log = logging.getLogger(__name__)

APPLIED = "applied"
UNDONE = "undone"
DISCARDED = "discarded"
REJECTED = "rejected"
ENHANCE_JOB = "enhance"


class EditError(Exception):
    """An edit that cannot be made (photo gone, changed, unreadable; model missing)."""


@dataclass(frozen=True)
class EnhanceResult:
    photo_id: int
    recipe_id: int | None
    version: int | None
    applied: bool
    measured_gain: float | None
    quality_before: float | None
    quality_after: float | None
    message: str
    summary: str = ""
    error: str | None = None
    margin: float = 0.0  # the guard's least gain that counts (Guard.margin)

    @property
    def helped(self) -> bool | None:
        return None if self.measured_gain is None else self.measured_gain > self.margin

    def to_json(self) -> dict[str, Any]:
        return {"photo_id": self.photo_id, "recipe_id": self.recipe_id, "version": self.version,
                "applied": self.applied, "measured_gain": self.measured_gain,
                "quality_before": self.quality_before, "quality_after": self.quality_after,
                "message": self.message, "recipe": self.summary, "error": self.error}


def failed_result(photo_id: int, why: str) -> EnhanceResult:
    """The result of a photo of a batch that could not be enhanced (the batch goes on)."""
    return EnhanceResult(photo_id, None, None, False, None, None, None, f"could not enhance: {why}", error=why)


@dataclass(frozen=True)
class HistoryState:
    photo_id: int
    current_recipe_id: int | None
    can_undo: bool
    can_redo: bool
    summary: str
    message: str = ""


@dataclass(frozen=True)
class RecipeInfo:
    id: int
    version: int
    status: str
    created_at: datetime
    summary: str
    measured_gain: float | None
    quality_before: float | None
    quality_after: float | None


def _store_faces_of(s: Any, photo: Any, recipe: Recipe) -> None:
    """A recipe with a ``faces`` stage carries what the detector found in the photo (planned on its
    screen view): keep it in the catalog (``faces``, ``photos.face_count``)."""
    from db.queries import store_faces

    for st in recipe.stages:
        if st.name == "faces" and photo.fingerprint:
            boxes = [(float(f["box"][0]), float(f["box"][1]), float(f["box"][2]), float(f["box"][3]),
                      float(f.get("score", 1.0))) for f in st.params.get("faces", [])]
            store_faces(s, photo.id, recipe.source or photo.fingerprint, str(st.params.get("detector", "")), boxes)


def render_and_measure(renderer: Renderer, path: Path, fp: str, names: Sequence[str], strength: float,
                       progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                       check_source: bool = False, defects: dict[str, Any] | None = None,
                       face_w: float | None = None) -> tuple[Recipe, Guard]:
    """The pixels of one enhance: plan on the screen view, render at full resolution (kept in the
    render cache for export), store the preview, and measure before and after (:func:`measure`).
    ``fp`` is the original's fingerprint; ``check_source`` checks it first (a cluster worker
    does, the file may have changed since the job was queued). ``defects``: the photo's
    ``defects`` stage parameters (``engine.enhance.defects.stage_params``; without them that stage is left
    out). ``face_w``: the ``faces`` stage's fidelity weight (None: its default). Raises :class:`EditError`."""
    from engine.ingest.imageio import ImageError, load_image
    from engine.ingest.indexer import fingerprint

    if check_source:
        try:
            now = fingerprint(path)
        except OSError as e:
            raise EditError(f"cannot read the original {path}: {e.strerror or e}") from e
        if now != fp:
            raise EditError(f"the original changed since the job was queued ({path}); index the folder again")
    try:
        view = renderer.cached_view(path, fp, PREVIEW_SIDE)
        recipe = renderer.pipeline.plan(view.astype(np.float32) / 255.0, names, strength, defects=defects,
                                        face_w=face_w)
        recipe = replace(recipe, source=fp)
        if cancel is not None:
            cancel.raise_if_cancelled()
        loaded = load_image(path)  # the one full-resolution decode: rendered from, and measured against
        rendered = renderer.full(path, fp, recipe, progress=progress, cancel=cancel, original=loaded)
        original = loaded.rgb
        del loaded
        if cancel is not None:
            cancel.raise_if_cancelled()
        after = to_uint8(rendered.rgb)
        del rendered  # the float copy is the biggest; keep only 8-bit from here
        renderer.store_preview(path, fp, recipe, after)
    except ImageError as e:
        raise EditError(f"cannot read the original: {e.reason}") from e
    guard = measure(original, after)
    del original, after
    return recipe, guard


@dataclass
class _Photo:
    id: int
    path: str
    fs_path: str
    fingerprint: str | None
    status: str
    current_recipe_id: int | None


class Editor:
    """Recipes, previews and batches over one catalog. Thread-safe (writes go through the
    catalog's single writer)."""

    def __init__(self, catalog: Any, renderer: Renderer | None = None) -> None:
        self.catalog = catalog
        if renderer is None:
            from engine.core.diskcache import limits
            from engine.core.paths import cache_dir_for
            from engine.enhance.render import RenderCache

            renderer = Renderer(cache=RenderCache(cache_dir_for(catalog.url), limits(catalog).render_bytes))
        self.renderer = renderer
        self.queue = BatchQueue(catalog)

    # -- reading --------------------------------------------------------------------------------
    def _photo(self, photo_id: int) -> _Photo:
        from db.schema import Photo

        with self.catalog.session() as s:
            p = s.get(Photo, int(photo_id))
            if p is None:
                raise EditError(f"photo {photo_id} is not in the catalog")
            return _Photo(p.id, p.path, os.fsdecode(p.path_bytes), p.fingerprint, p.status, p.current_recipe_id)

    def current_recipe(self, photo_id: int) -> tuple[int | None, Recipe | None]:
        from db.schema import Photo
        from db.schema import Recipe as RecipeRow

        with self.catalog.session() as s:
            p = s.get(Photo, int(photo_id))
            if p is None:
                raise EditError(f"photo {photo_id} is not in the catalog")
            if p.current_recipe_id is None:
                return None, None
            r = s.get(RecipeRow, p.current_recipe_id)
            if r is None:
                return None, None
            try:
                return r.id, from_json(r.recipe_json)
            except RecipeError as e:
                raise EditError(f"the photo's edit cannot be read: {e}") from e

    def history(self, photo_id: int) -> list[RecipeInfo]:
        from sqlalchemy import select

        from db.schema import Recipe as RecipeRow

        with self.catalog.session() as s:
            rows = s.scalars(select(RecipeRow).where(RecipeRow.photo_id == int(photo_id))
                             .order_by(RecipeRow.version)).all()
            out = []
            for r in rows:
                try:
                    summary = from_json(r.recipe_json).summary()
                except RecipeError as e:
                    summary = f"unreadable: {e}"
                out.append(RecipeInfo(r.id, r.version, r.status, r.created_at, summary, r.measured_gain,
                                      r.quality_before, r.quality_after))
            return out

    def _checked_source(self, p: _Photo) -> str:
        """The current fingerprint of the original; ``EditError`` if it is gone or changed."""
        from engine.ingest.indexer import fingerprint

        if p.status == "missing" or not os.path.exists(p.fs_path):
            raise EditError(f"the original is gone: {p.path}")
        try:
            fp = fingerprint(p.fs_path)
        except OSError as e:
            raise EditError(f"cannot read the original {p.path}: {e.strerror or e}") from e
        if p.fingerprint is not None and fp != p.fingerprint:
            raise EditError(f"the original changed since it was indexed ({p.path}); index the folder again")
        return fp

    # -- previews -------------------------------------------------------------------------------
    def preview(self, photo_id: int, max_side: int | None = PREVIEW_SIDE, recipe_id: int | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(before, after)`` uint8 at ``max_side`` (None: full resolution). ``after`` is None
        when the photo has no current edit. Renders pixels: call from a worker."""
        p = self._photo(photo_id)
        recipe: Recipe | None
        if recipe_id is None:
            _, recipe = self.current_recipe(photo_id)
        else:
            recipe = self._recipe(recipe_id)
        fp = p.fingerprint or ""
        if max_side is None:
            before = self.renderer.load_view(Path(p.fs_path), None)
            if recipe is None or recipe.is_identity:
                return before, None
            return before, to_uint8(self.renderer.full(Path(p.fs_path), fp, recipe).rgb)
        before, after = self.renderer.preview(Path(p.fs_path), fp, recipe, max_side)
        return before, (None if recipe is None or recipe.is_identity else after)

    def edited_thumbnail(self, photo_id: int, original: np.ndarray) -> np.ndarray:
        """The grid thumbnail with the photo's current edit applied (``original`` itself when
        there is none). ``original`` is the original's thumbnail (uint8 RGB). Served from the
        render cache; on a miss it is the screen preview made at enhance time, scaled down, or
        else the recipe rendered on the thumbnail itself (tens of ms). Call from a worker."""
        from db.schema import Photo
        from db.schema import Recipe as RecipeRow
        from engine.enhance.recipes import recipe_hash
        from engine.enhance.render import resize_to

        # one short read on this hot path (every grid cell asks): most photos have no edit
        with self.catalog.session() as s:
            p = s.get(Photo, int(photo_id))
            if p is None or p.current_recipe_id is None or not p.fingerprint:
                return original
            fp = p.fingerprint
            r = s.get(RecipeRow, p.current_recipe_id)
            recipe_json = r.recipe_json if r is not None else None
        if recipe_json is None:
            return original
        try:
            recipe = from_json(recipe_json)
        except RecipeError:
            return original
        if recipe.is_identity:
            return original
        cache = self.renderer.cache
        rhash = recipe_hash(recipe)
        h, w = original.shape[:2]
        key = cache.key(fp, rhash, f"thumb{w}x{h}")
        hit = cache.get(key)
        if hit is not None and hit.shape == original.shape and hit.dtype == np.uint8:
            return hit
        preview = cache.get(cache.key(fp, rhash, f"preview{PREVIEW_SIDE}"))
        if preview is not None and preview.dtype == np.uint8 and preview.ndim == 3:
            out = resize_to(preview, original.shape)
        else:
            try:
                out = self.renderer.render_view(original, recipe)
            except Exception as e:  # noqa: BLE001 - a thumbnail must never fail the grid
                log.warning("cannot render the edited thumbnail of photo %s: %s", photo_id, e)
                return original
        out = np.ascontiguousarray(out if out.dtype == np.uint8 else to_uint8(out))
        cache.put(key, out)
        return out

    def _recipe(self, recipe_id: int) -> Recipe:
        from db.schema import Recipe as RecipeRow

        with self.catalog.session() as s:
            r = s.get(RecipeRow, int(recipe_id))
            if r is None:
                raise EditError(f"recipe {recipe_id} does not exist")
            return from_json(r.recipe_json)

    # -- enhance --------------------------------------------------------------------------------
    def enhance(self, photo_id: int, ops: str | Sequence[str] | None = None, strength: float = 1.0,
                progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                apply_if_no_gain: bool = True, job_id: int | None = None, face_w: float | None = None
                ) -> EnhanceResult:
        """Plan, render at full resolution, measure, and record a new edit of one photo.
        ``face_w``: the ``faces`` stage's fidelity weight, 0 faithful .. 1 generated (None: its default).

        Raises :class:`EditError` (photo gone/changed/unreadable), ``engine.enhance.pipeline.StageUnavailable``
        (a model is missing), ``ValueError`` (bad ops or strength), ``JobCancelled``.
        """
        from engine.enhance.pipeline import parse_ops

        names = parse_ops(ops)
        p = self._photo(photo_id)
        fp = self._checked_source(p)
        defects = None
        if "defects" in names:  # the photo's camera-defect corrections (engine.enhance.defects), if any
            from engine.enhance.defects import stage_params

            defects = stage_params(self.catalog, p.id)
        recipe, guard = render_and_measure(self.renderer, Path(p.fs_path), fp, names, strength, progress, cancel,
                                           defects=defects, face_w=face_w)
        return self.record_enhanced(p.id, recipe, guard, apply_if_no_gain, job_id)

    def record_enhanced(self, photo_id: int, recipe: Recipe, guard: Guard, apply_if_no_gain: bool,
                        job_id: int | None = None) -> EnhanceResult:
        """Store an enhance made by :func:`render_and_measure` (here, or by a cluster worker)."""
        gain = guard.gain
        apply = apply_if_no_gain or guard.helped is not False
        rid, version = self._record(photo_id, recipe, guard, apply, job_id)
        return EnhanceResult(photo_id, rid, version, apply, gain, guard.quality_before, guard.quality_after,
                             guard_message(guard, apply), recipe.summary(), margin=guard.margin)

    def _record(self, photo_id: int, recipe: Recipe, guard: Guard, apply: bool, job_id: int | None
                ) -> tuple[int, int]:
        from sqlalchemy import func, select

        from db.schema import JOB_DONE, Job, Photo
        from db.schema import Recipe as RecipeRow

        def fn(s: Any) -> tuple[int, int]:
            photo = s.get(Photo, photo_id)
            if photo is None:
                raise EditError(f"photo {photo_id} was removed from the catalog")
            last = s.scalar(select(func.max(RecipeRow.version)).where(RecipeRow.photo_id == photo_id)) or 0
            if apply:
                for r in s.scalars(select(RecipeRow).where(RecipeRow.photo_id == photo_id,
                                                           RecipeRow.status == UNDONE)).all():
                    r.status = DISCARDED
            row = RecipeRow(photo_id=photo_id, version=last + 1, created_at=datetime.now(),
                            recipe_json=recipe.to_json(), quality_before=guard.quality_before,
                            quality_after=guard.quality_after, measured_gain=guard.gain,
                            status=APPLIED if apply else REJECTED)
            s.add(row)
            s.flush()
            _store_faces_of(s, photo, recipe)
            if apply:
                photo.current_recipe_id = row.id
            if job_id is not None:  # the job is done in the same transaction as its result
                j = s.get(Job, job_id)
                if j is not None:
                    j.state = JOB_DONE
                    j.updated_at = datetime.now()
            return int(row.id), int(row.version)

        return self.catalog.write(fn)

    # -- batches --------------------------------------------------------------------------------
    @staticmethod
    def _checked_options(ops: str | Sequence[str] | None, strength: float, face_w: float | None = None) -> list[str]:
        from engine.enhance.pipeline import parse_ops

        names = parse_ops(ops)
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength}")
        if face_w is not None and not 0.0 <= float(face_w) <= 1.0:
            raise ValueError(f"the faces stage's weight must be between 0 and 1, got {face_w}")
        return names

    def queue_enhance(self, photo_ids: Sequence[int], ops: str | Sequence[str] | None = None,
                      strength: float = 1.0, apply_if_no_gain: bool = False, face_w: float | None = None) -> str:
        """Queue an enhance batch in the catalog (survives a restart); returns its batch id."""
        names = self._checked_options(ops, strength, face_w)
        params: dict[str, Any] = {"ops": names, "strength": float(strength), "apply_if_no_gain": bool(apply_if_no_gain)}
        if face_w is not None:
            params["face_w"] = float(face_w)
        return self.queue.enqueue(ENHANCE_JOB, list(photo_ids), params)

    def run_queue(self, batch: str, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> Iterator[EnhanceResult]:
        """Run the queued enhance jobs of one batch."""

        def handler(job: QueuedJob, tok: CancelToken | None) -> EnhanceResult:
            assert job.photo_id is not None
            face_w = job.params.get("face_w")
            return self.enhance(job.photo_id, job.params.get("ops"), float(job.params.get("strength", 1.0)),
                                cancel=tok, apply_if_no_gain=bool(job.params.get("apply_if_no_gain", False)),
                                job_id=job.id, face_w=None if face_w is None else float(face_w))

        for out in self.queue.run(ENHANCE_JOB, handler, batch, progress, cancel, what="enhancing"):
            yield out.result if out.result is not None else failed_result(out.photo_id or -1, out.error or "")

    def enhance_batch(self, photo_ids: Sequence[int], ops: str | Sequence[str] | None = None,
                      strength: float = 1.0, progress: ProgressFn | None = None,
                      cancel: CancelToken | None = None, apply_if_no_gain: bool | None = None,
                      cluster: Any = None, face_w: float | None = None) -> Iterator[EnhanceResult]:
        """Enhance photos; one result per photo, a photo that fails is an error result. A batch
        of more than one photo does not apply results that did not help (``apply_if_no_gain``
        overrides; a single photo keeps it). More than one photo is a batch queued in the
        catalog, resumed after a crash (:meth:`resume_interrupted`); one photo (the one-click
        button) is enhanced directly, with no queue rows. ``cluster``
        (:class:`engine.cluster.Cluster`): each photo is rendered and measured by a task there;
        this process records the results. ``face_w``: the ``faces`` stage's fidelity weight (None: its
        default)."""
        ids = list(dict.fromkeys(int(p) for p in photo_ids))
        keep = len(ids) == 1 if apply_if_no_gain is None else apply_if_no_gain
        names = self._checked_options(ops, strength, face_w)  # bad options fail now, not at the first photo
        if len(ids) == 1 and cluster is None:
            return self._enhance_one(ids[0], names, strength, progress, cancel, keep, face_w)
        batch = self.queue_enhance(ids, names, strength, keep, face_w)
        if cluster is not None:
            return cluster.enhance_queued(self, batch, progress, cancel)
        return self.run_queue(batch, progress, cancel)

    def _enhance_one(self, photo_id: int, names: list[str], strength: float, progress: ProgressFn | None,
                     cancel: CancelToken | None, keep: bool, face_w: float | None = None) -> Iterator[EnhanceResult]:
        from engine.core.jobs import Eta, JobCancelled

        eta = Eta(1, progress, "enhancing")
        eta.report(0)
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            result = self.enhance(photo_id, names, strength, cancel=cancel, apply_if_no_gain=keep, face_w=face_w)
        except JobCancelled:
            raise
        except Exception as e:  # as in a batch: the photo's error is its result
            result = failed_result(photo_id, f"{e}")
        yield result
        eta.report(1)

    def interrupted(self) -> int:
        """How many enhance jobs of batches whose process is gone are waiting to be resumed."""
        return self.queue.interrupted(ENHANCE_JOB)

    def resume_interrupted(self, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                           cluster: Any = None) -> Iterator[EnhanceResult]:
        """Finish the enhance batches that a crash, kill or power cut interrupted (their process
        is gone; ``engine.core.batch``): each photo not done yet is enhanced once, with its batch's
        options. The GUI runs this at start-up. Yields nothing when there is nothing to resume."""
        batch = self.queue.adopt_interrupted(ENHANCE_JOB)
        if batch is None:
            return iter(())
        if cluster is not None:
            return cluster.enhance_queued(self, batch, progress, cancel)
        return self.run_queue(batch, progress, cancel)

    def pending_batches(self) -> dict[str, int]:
        return self.queue.counts(ENHANCE_JOB)

    # -- history --------------------------------------------------------------------------------
    def _history_op(self, photo_id: int, op: str) -> HistoryState:
        from sqlalchemy import select

        from db.schema import Photo
        from db.schema import Recipe as RecipeRow

        def is_revert(r: Any) -> bool:
            try:
                return from_json(r.recipe_json).is_identity
            except RecipeError:
                return False

        def fn(s: Any) -> HistoryState:
            photo = s.get(Photo, int(photo_id))
            if photo is None:
                raise EditError(f"photo {photo_id} is not in the catalog")
            rows = s.scalars(select(RecipeRow).where(RecipeRow.photo_id == photo.id)
                             .order_by(RecipeRow.version)).all()
            applied = [r for r in rows if r.status == APPLIED]
            undone = [r for r in rows if r.status == UNDONE]
            message = ""
            if op == "undo":
                if applied:
                    applied[-1].status = UNDONE
                    undone.insert(0, applied.pop())
                else:
                    message = "nothing to undo"
            elif op == "redo":
                if undone:
                    undone[0].status = APPLIED
                    applied.append(undone.pop(0))
                else:
                    message = "nothing to redo"
            elif op == "revert":
                if not applied or is_revert(applied[-1]):
                    message = "already the original"
                else:
                    for r in undone:
                        r.status = DISCARDED
                    undone = []
                    last = max((r.version for r in rows), default=0)
                    rv = RecipeRow(photo_id=photo.id, version=last + 1, created_at=datetime.now(),
                                   recipe_json=Recipe(stages=()).to_json(), status=APPLIED)
                    s.add(rv)
                    s.flush()
                    applied.append(rv)
            cur = applied[-1] if applied and not is_revert(applied[-1]) else None
            photo.current_recipe_id = cur.id if cur is not None else None
            summary = from_json(cur.recipe_json).summary() if cur is not None else "original"
            return HistoryState(photo.id, photo.current_recipe_id, bool(applied), bool(undone), summary, message)

        return self.catalog.write(fn)

    def undo(self, photo_id: int) -> HistoryState:
        return self._history_op(photo_id, "undo")

    def redo(self, photo_id: int) -> HistoryState:
        return self._history_op(photo_id, "redo")

    def revert(self, photo_id: int) -> HistoryState:
        """Back to the original (undoable: undo brings the edit back)."""
        return self._history_op(photo_id, "revert")

    def state(self, photo_id: int) -> HistoryState:
        return self._history_op(photo_id, "state")

    # -- ratings --------------------------------------------------------------------------------
    def rate(self, photo_id: int, rating: int) -> int:
        """Store a rating (-1..2) of the photo's current state; returns the rating id."""
        from db.schema import Photo, Rating

        r = int(rating)
        if not -1 <= r <= 2:
            raise ValueError(f"rating must be -1..2, got {rating}")

        def fn(s: Any) -> int:
            photo = s.get(Photo, int(photo_id))
            if photo is None:
                raise EditError(f"photo {photo_id} is not in the catalog")
            row = Rating(photo_id=photo.id, recipe_id=photo.current_recipe_id, rating=r, created_at=datetime.now())
            s.add(row)
            s.flush()
            return int(row.id)

        return self.catalog.write(fn)


__all__ = ["EditError", "Editor", "EnhanceResult", "HistoryState", "render_and_measure"]
