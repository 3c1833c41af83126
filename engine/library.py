"""The library service: indexing, paged queries sorted and filtered in SQL, photo details, thumbnails.

The GUI and the CLI both go through this. Nothing it returns is an ORM object: rows and details
are frozen dataclasses, safe to hand to another thread.

The *current score* of a photo is ``photos.current_score_id``, kept by the writers of scores and
fingerprints under one rule (:mod:`db.queries`): the newest row for the photo's current content
from the base model or an active fine-tuned head (a rewritten file shows as unscored until it is
rescored; a new model version or head adds newer rows, which then win). ``score``, ``rank``,
``export --recommended`` and the grid all read it through this service.

Sort keys: ``improvability`` (highest first), ``quality`` (lowest first), ``date`` (capture time,
newest first; files without EXIF time last), ``name`` (path A-Z). Prefix ``-`` reverses. Unscored
photos always sort last. Filters (all optional): ``status`` (str or list), ``recommended`` (bool),
``min_improvability`` (float), ``scored`` (bool), ``has_recipe`` (bool), ``degradation`` (a name of
``engine.assess.degrade.SEVERITY_NAMES``; with optional ``min_severity``, default the assessor's calibrated
threshold for it, as in ``score``'s reasons), ``text`` (substring of
the path, case-insensitive), ``include_missing`` (bool, default False), ``camera_defects`` (bool:
photos of a camera series with an undismissed defect, see ``engine.enhance.defects``), ``has_faces`` (bool:
faces were found; False: looked for and none found; see ``engine.enhance.face_scan``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import JSON, ColumnElement, Select, and_, case, cast, func, or_, select, type_coerce
from sqlalchemy.orm import aliased

from db.catalog import Catalog
from db.queries import under
from db.schema import STATUS_MISSING, STATUS_OK, Folder, Photo, Recipe, Score
from engine.assess.degrade import SEVERITY_NAMES
from engine.assess.scoring import Thresholds, reasons_for, shipped_thresholds
from engine.core.diskcache import limits
from engine.core.jobs import CancelToken, ProgressFn
from engine.core.paths import thumbnail_dir
from engine.enhance.levels import JPEG_ZONE, reasons_skipped
from engine.ingest.imageio import ImageError, load_image
from engine.ingest.indexer import Indexer, IndexEvent, IngestScorer
from engine.ingest.thumbnails import THUMB_SIZE, ThumbnailCache, shrink

SORTS = ("improvability", "quality", "date", "name")
# A score sort walks the score's index for pages that start before this offset (cost grows with the
# offset: about 5 ms per 1,000 rows skipped); deeper pages sort the selection (about 80 ms at 100k
# photos whatever the offset). docs/BENCHMARKS.md.
INDEX_WALK_MAX = 10_000
DEGRADATION_LEVEL = 0.35  # ``min_severity`` of the ``degradation`` filter when the model has no calibrated threshold


@dataclass(frozen=True)
class PhotoRow:
    id: int
    path: str  # openable file-system path
    display_path: str
    name: str
    status: str
    error: str | None
    width: int | None
    height: int | None
    captured_at: datetime | None
    fingerprint: str | None
    improvability: float | None
    quality: float | None
    recommended: bool | None
    top_degradation: str | None  # the most severe degradation at or above its calibrated threshold (the badge)
    has_recipe: bool
    top_severity: float | None = None  # the value of top_degradation (0..1)
    camera_defect: str | None = None  # a defect kind of the photo's camera series (engine.enhance.defects), undismissed


@dataclass(frozen=True)
class IndexedFile:
    id: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ScoreInfo:
    id: int
    model: str
    model_version: str
    head: str
    improvability: float
    quality: float
    recommended: bool
    severity: dict[str, float]
    scored_at: datetime


@dataclass(frozen=True)
class RecipeSummary:
    id: int
    version: int
    created_at: datetime
    status: str
    ops: tuple[str, ...]
    quality_before: float | None
    quality_after: float | None
    measured_gain: float | None


@dataclass(frozen=True)
class PhotoInfo:
    id: int
    path: str
    display_path: str
    folder: str | None
    size: int
    mtime_ns: int
    fingerprint: str | None
    width: int | None
    height: int | None
    orientation: int | None
    format: str | None
    camera_make: str | None
    camera_model: str | None
    lens: str | None
    captured_at: datetime | None
    iso: int | None
    exposure_time: float | None
    f_number: float | None
    focal_length: float | None
    has_gps: bool
    status: str
    error: str | None
    error_code: str | None
    warning: str | None
    indexed_at: datetime
    score: ScoreInfo | None
    recipe: RecipeSummary | None
    n_versions: int
    face_count: int | None = None  # faces found (engine.enhance.face_scan or a faces stage); None: not looked for
    jpeg_quality: int | None = None  # a JPEG's quality from its quantisation table (None: not a JPEG, or not read)


def _severity(js: str | None) -> dict[str, float]:
    if not js:
        return {}
    try:
        d = json.loads(js)
    except ValueError:
        return {}
    return {str(k): float(v) for k, v in d.items()} if isinstance(d, dict) else {}


def _ops(recipe_json: str) -> tuple[str, ...]:
    """Stage names of a recipe, read defensively (the recipe format belongs to engine.enhance.recipes)."""
    try:
        d = json.loads(recipe_json)
    except ValueError:
        return ()
    ops = d.get("ops", d.get("operations", d.get("stages"))) if isinstance(d, dict) else d
    out: list[str] = []
    if isinstance(ops, list):
        for o in ops:
            if isinstance(o, str):
                out.append(o)
            elif isinstance(o, dict):
                name = o.get("op") or o.get("name") or o.get("stage")
                if isinstance(name, str):
                    params = o.get("params")
                    check = params.get("quality_check") if isinstance(params, dict) else None
                    if isinstance(check, dict) and check.get("kept") is False:
                        name += " (left as is: no gain by Q)"  # the planned change was refused
                    found = params.get("faces") if isinstance(params, dict) and name == "faces" else None
                    if isinstance(found, list):
                        n = len(found)
                        name += f" ({n} face{'' if n == 1 else 's'})" if n else " (none found)"
                    out.append(name)
            elif isinstance(o, list | tuple) and o and isinstance(o[0], str):
                out.append(o[0])
    return tuple(out)


def _under(col: Any, folder: str | os.PathLike[str]) -> ColumnElement[bool]:
    return under(col, os.path.realpath(folder))


def _may_have_scored_ok(filters: dict[str, Any] | None) -> bool:
    """False when the filters exclude scored, readable photos (then the score index cannot help)."""
    f = filters or {}
    status = f.get("status")
    if status and STATUS_OK not in ([status] if isinstance(status, str) else list(status)):
        return False
    return f.get("scored", True) is not False and f.get("scored", True) != 0


def _record(p: Photo, sc: Score | None, th: Thresholds) -> dict[str, Any]:
    """DESIGN.md's score/rank JSON object of a photo and its current score."""
    status = "ok" if p.status == STATUS_OK else "error"
    error = "file is missing (moved or deleted since the last scan)" if p.status == STATUS_MISSING else p.error
    sev = _severity(sc.severity_json) if sc is not None else {}
    return {
        "path": p.path,
        "status": status,
        "error": error if status == "error" else None,
        "improvability": None if sc is None else round(sc.improvability, 4),
        "quality": None if sc is None else round(sc.quality, 4),
        "recommended": None if sc is None else bool(sc.recommended),
        "severity": None if sc is None else {k: round(v, 4) for k, v in sev.items()},
        # as in ``score``'s records: the degradations at or above their calibrated thresholds
        "reasons": None if sc is None else list(reasons_for(sev, th, reasons_skipped(p.jpeg_quality))),
        "model": None if sc is None else {"name": sc.model, "version": sc.model_version,
                                           **({"head": sc.head} if sc.head else {})},
        "id": p.id,
        "width": p.width,
        "height": p.height,
        "format": p.format,
        "captured_at": p.captured_at.isoformat() if p.captured_at else None,
        "camera": " ".join(x for x in (p.camera_make, p.camera_model) if x) or None,
        "warning": p.warning,
        "edited": p.current_recipe_id is not None,
    }


def _thresholds() -> Thresholds:
    """The shipped assessor's calibrated thresholds (the same numbers ``score`` and ``rank`` use)."""
    return shipped_thresholds()


class Library:
    """Service over one open catalog. Thread-safe: every call opens its own short session."""

    def __init__(self, catalog: Catalog, thumb_dir: Path | None = None) -> None:
        self.catalog = catalog
        self.thumbs = ThumbnailCache(thumb_dir or thumbnail_dir(catalog.url), limits(catalog).thumbnail_bytes)

    # -- indexing ---------------------------------------------------------------------------
    def index(self, root: str | os.PathLike[str], progress: ProgressFn | None = None,
              cancel: CancelToken | None = None, scorer: IngestScorer | None = None) -> Iterator[IndexEvent]:
        """Add or update a folder tree; see :mod:`engine.ingest.indexer`. With ``scorer``, each new or
        changed photo is scored from the same single decode that gives its row and thumbnail."""
        workers = getattr(scorer, "workers", None)
        return Indexer(self.catalog, self.thumbs, workers=workers, scorer=scorer).index(
            root, progress=progress, cancel=cancel)

    def folders(self) -> list[str]:
        with self.catalog.session() as s:
            return [os.fsdecode(pb) for pb in s.scalars(select(Folder.path_bytes).order_by(Folder.path))]

    # -- queries ----------------------------------------------------------------------------
    def _select(self, folder: str | None, filters: dict[str, Any] | None, columns: list[Any]) -> Select[Any]:
        sc = aliased(Score)
        q = select(*columns)
        q = q.select_from(Photo).outerjoin(sc, sc.id == Photo.current_score_id)
        conds = self._conditions(folder, filters, sc)
        if conds:
            q = q.where(and_(*conds))
        return q.add_columns(sc.improvability, sc.quality, sc.recommended, sc.severity_json)  # type: ignore[no-any-return]

    def _conditions(self, folder: str | None, filters: dict[str, Any] | None, sc: Any) -> list[ColumnElement[bool]]:
        """The WHERE terms of a folder and filters, over ``Photo`` and ``sc`` (the current score)."""
        filters = dict(filters or {})
        conds: list[ColumnElement[bool]] = []
        if folder:
            conds.append(_under(Photo.path_bytes, folder))
        status = filters.pop("status", None)
        include_missing = bool(filters.pop("include_missing", False))
        if status:
            conds.append(Photo.status.in_([status] if isinstance(status, str) else list(status)))
        elif not include_missing:
            conds.append(Photo.status != STATUS_MISSING)
        if "recommended" in filters:
            want = bool(filters.pop("recommended"))
            conds.append(sc.recommended.is_(True) if want else func.coalesce(sc.recommended, False).is_(False))
        if "min_improvability" in filters:
            conds.append(sc.improvability >= float(filters.pop("min_improvability")))
        if "scored" in filters:
            conds.append(sc.id.is_not(None) if filters.pop("scored") else sc.id.is_(None))
        if "has_recipe" in filters:
            conds.append(Photo.current_recipe_id.is_not(None) if filters.pop("has_recipe")
                         else Photo.current_recipe_id.is_(None))
        if "degradation" in filters:
            # Photos whose current score has this degradation at or above ``min_severity``
            # (default DEGRADATION_LEVEL); JSON path in SQL, portable across back ends.
            name = str(filters.pop("degradation"))
            if name not in SEVERITY_NAMES:
                raise ValueError(f"unknown degradation {name!r}; one of {SEVERITY_NAMES}")
            level = float(filters.pop("min_severity", _thresholds().severity.get(name, DEGRADATION_LEVEL)))
            # (a text column read as JSON: PostgreSQL needs a real cast; SQLite's JSON functions take text)
            js = (cast(sc.severity_json, JSON) if self.catalog.dialect == "postgresql"
                  else type_coerce(sc.severity_json, JSON))
            cond = js[name].as_float() >= level
            if name == "compression":  # as in the reasons: not for JPEGs the enhancer would not deblock
                cond = and_(cond, or_(Photo.jpeg_quality.is_(None), Photo.jpeg_quality < JPEG_ZONE))
            conds.append(cond)
        if "has_faces" in filters:  # faces found by the face scan or a faces stage (face_count)
            conds.append(Photo.face_count > 0 if filters.pop("has_faces") else Photo.face_count == 0)
        if "text" in filters:
            conds.append(Photo.path.ilike(f"%{filters.pop('text')}%"))
        if "camera_defects" in filters:
            # photos of a camera series with an undismissed defect (engine.enhance.defects)
            from db.schema import Defect

            live = select(Defect.series_id).where(Defect.dismissed.is_(False))
            conds.append(Photo.series_id.in_(live) if filters.pop("camera_defects")
                         else or_(Photo.series_id.is_(None), Photo.series_id.not_in(live)))
        if filters:
            raise ValueError(f"unknown filters: {sorted(filters)}")
        return conds

    def _scored_ok_page(self, folder: str | None, key: str, desc: bool, filters: dict[str, Any] | None,
                        offset: int, limit: int) -> tuple[Select[Any], Select[Any]]:
        """The first block of a score sort (scored, readable photos: they come before every other
        photo) as (page of ids, count): walks the score's index in order and stops after the page,
        checking each score's photo through ``photos.current_score_id`` (indexed); a page near the
        top of 100,000 photos costs about as much as the page. Unscored or unreadable photos are
        found after it by the general query (see :meth:`query`)."""
        sc = aliased(Score)
        col = sc.improvability if key == "improvability" else sc.quality
        high_first = (key == "improvability") != desc
        is_current = (select(Photo.id).where(Photo.current_score_id == sc.id, Photo.status == STATUS_OK,
                                             *self._conditions(folder, filters, sc))
                      .correlate(sc).exists())
        page = (select(sc.photo_id).where(is_current)
                .order_by(col.desc() if high_first else col.asc(), sc.photo_id)
                .offset(offset).limit(limit))
        return page, select(func.count()).select_from(sc).where(is_current)

    def _ordered_ids(self, folder: str | None, sort: str, filters: dict[str, Any] | None) -> Select[Any]:
        desc = sort.startswith("-")
        key = sort.lstrip("-")
        if key not in SORTS:
            raise ValueError(f"unknown sort {sort!r}; one of {SORTS}")
        # Two steps: sort narrow rows (ids and keys only) to find the page, then fetch that page's
        # details. Sorting wide rows (paths, JSON) made deep pages several times slower.
        q = self._select(folder, filters, [Photo.id])
        cols = list(q.selected_columns)
        imp, qual = cols[1], cols[2]
        if key == "improvability":
            order = [case((imp.is_(None), 1), else_=0), imp.asc() if desc else imp.desc()]
        elif key == "quality":
            order = [case((qual.is_(None), 1), else_=0), qual.desc() if desc else qual.asc()]
        elif key == "date":
            order = [case((Photo.captured_at.is_(None), 1), else_=0),
                     Photo.captured_at.asc() if desc else Photo.captured_at.desc()]
        else:
            order = [Photo.path.desc() if desc else Photo.path.asc()]
        if key != "name":  # bad files after good ones among equals (e.g. all unscored)
            order.insert(1, case((Photo.status != STATUS_OK, 1), else_=0))
        return q.with_only_columns(Photo.id).order_by(*order, Photo.id)

    def face_records(self, folder: str | os.PathLike[str], with_none: bool = False) -> list[dict[str, Any]]:
        """One object per examined photo under ``folder`` with faces (``with_none``: also those
        without), by path: ``id``, ``path``, ``faces``, ``boxes`` ([x0, y0, x1, y1], 0..1 of the
        upright photo, best score first) and ``scores``. Two queries, whatever the folder's size."""
        from db.schema import FaceBox

        cond = Photo.face_count >= 0 if with_none else Photo.face_count > 0
        q = (select(Photo.id, Photo.path, Photo.face_count)
             .where(_under(Photo.path_bytes, folder), Photo.status == STATUS_OK, cond).order_by(Photo.path_bytes))
        with self.catalog.session() as s:
            rows = s.execute(q).all()
            boxes: dict[int, list[Any]] = {}
            ids = [r[0] for r in rows if r[2]]
            for i in range(0, len(ids), 500):
                for b in s.scalars(select(FaceBox).where(FaceBox.photo_id.in_(ids[i:i + 500]))
                                   .order_by(FaceBox.photo_id, FaceBox.score.desc())):
                    boxes.setdefault(b.photo_id, []).append(b)
        return [{"id": int(pid), "path": path, "faces": int(n or 0),
                 "boxes": [[round(b.x0, 4), round(b.y0, 4), round(b.x1, 4), round(b.y1, 4)] for b in boxes.get(pid, [])],
                 "scores": [round(float(b.score), 3) for b in boxes.get(pid, [])]} for pid, path, n in rows]

    def photo_ids(self, folder: str | os.PathLike[str] | None = None, filters: dict[str, Any] | None = None,
                  sort: str = "name") -> list[int]:
        """Every photo id under ``folder`` (None: the whole catalog) that passes ``filters``, in
        ``sort`` order: *the* "photos under a folder" of the GUI and every command. As in
        :meth:`query`, missing photos are left out unless ``include_missing`` or ``status`` says."""
        q = self._ordered_ids(os.fspath(folder) if folder is not None else None, sort, filters)
        with self.catalog.session() as s:
            return [int(i) for i in s.scalars(q)]

    def query(self, folder: str | None = None, sort: str = "improvability", filters: dict[str, Any] | None = None,
              offset: int = 0, limit: int = 200) -> list[PhotoRow]:
        """One page of photos, sorted and filtered in SQL (see the module docstring for keys)."""
        offset, limit = max(0, offset), max(0, limit)
        key, desc = sort.lstrip("-"), sort.startswith("-")
        with self.catalog.session() as s:
            if key in ("improvability", "quality") and offset < INDEX_WALK_MAX and _may_have_scored_ok(filters):
                # scored, readable photos first, from the score index; the rest (unscored or bad
                # files) by the general query, which lists them after every scored, readable one
                page, count = self._scored_ok_page(folder, key, desc, filters, offset, limit)
                ids = [int(i) for i in s.scalars(page)]
                if len(ids) < limit:
                    before = offset + len(ids) if ids else int(s.scalar(count) or 0)
                    rest = self._ordered_ids(folder, sort, filters).where(
                        ~and_(Photo.status == STATUS_OK, Photo.current_score_id.is_not(None)))
                    ids += [int(i) for i in s.scalars(rest.offset(max(0, offset - before)).limit(limit - len(ids)))]
            else:
                ids = [int(i) for i in s.scalars(self._ordered_ids(folder, sort, filters).offset(offset).limit(limit))]
            if not ids:
                return []
            detail = self._select(None, {"include_missing": True},
                                  [Photo.id, Photo.path_bytes, Photo.path, Photo.status, Photo.error,
                                   Photo.width, Photo.height, Photo.captured_at, Photo.fingerprint,
                                   Photo.current_recipe_id, Photo.jpeg_quality]).where(Photo.id.in_(ids))
            by_id = {r[0]: r for r in s.execute(detail).all()}
        rows = [by_id[i] for i in ids if i in by_id]
        th = _thresholds()
        from engine.enhance.defects import reasons_for_photo

        kinds = reasons_for_photo(self.catalog, [r[0] for r in rows]) if rows else {}
        out = []
        for r in rows:
            sev = _severity(r[14])
            reasons = reasons_for(sev, th, reasons_skipped(r[10])) if sev else ()
            top = reasons[0] if reasons else None
            fs = os.fsdecode(r[1])
            out.append(PhotoRow(
                id=r[0], path=fs, display_path=r[2], name=os.path.basename(r[2]), status=r[3], error=r[4],
                width=r[5], height=r[6], captured_at=r[7], fingerprint=r[8], improvability=r[11],
                quality=r[12], recommended=None if r[13] is None else bool(r[13]), top_degradation=top,
                top_severity=sev[top] if top else None,
                has_recipe=r[9] is not None, camera_defect=next(iter(kinds.get(r[0], [])), None)))
        return out

    def count(self, folder: str | None = None, filters: dict[str, Any] | None = None) -> int:
        q = self._select(folder, filters, [Photo.id])
        with self.catalog.session() as s:
            return int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)

    def ids_for_paths(self, paths: Iterable[str | os.PathLike[str]]) -> dict[str, int]:
        """Catalog ids of the given files (as typed; resolved to absolute real paths); absent ones are left out."""
        wanted: dict[bytes, str] = {}
        for p in paths:
            wanted[os.fsencode(os.path.realpath(os.fspath(p)))] = os.fspath(p)
        out: dict[str, int] = {}
        keys = list(wanted)
        with self.catalog.session() as s:
            for i in range(0, len(keys), 500):
                for pid, pb in s.execute(select(Photo.id, Photo.path_bytes).where(
                        Photo.path_bytes.in_(keys[i:i + 500]))).all():
                    out[wanted[pb]] = int(pid)
        return out

    def indexed_file(self, path: str | os.PathLike[str]) -> IndexedFile | None:
        """The catalog's record of one file (by its exact real path), or None if it is not indexed:
        enough to tell whether the file changed since (size, mtime)."""
        pb = os.fsencode(os.path.realpath(os.fspath(path)))
        with self.catalog.session() as s:
            row = s.execute(select(Photo.id, Photo.size, Photo.mtime_ns).where(Photo.path_bytes == pb)).first()
        return None if row is None else IndexedFile(int(row[0]), int(row[1]), int(row[2]))

    # -- one photo --------------------------------------------------------------------------
    def photo(self, photo_id: int) -> PhotoInfo:
        """Everything about one photo; raises KeyError for an unknown id."""
        with self.catalog.session() as s:
            p = s.get(Photo, photo_id)
            if p is None:
                raise KeyError(photo_id)
            score_row = s.get(Score, p.current_score_id) if p.current_score_id is not None else None
            score = None if score_row is None else ScoreInfo(
                id=score_row.id, model=score_row.model, model_version=score_row.model_version, head=score_row.head,
                improvability=score_row.improvability, quality=score_row.quality,
                recommended=bool(score_row.recommended), severity=_severity(score_row.severity_json),
                scored_at=score_row.scored_at)
            recipe = None
            if p.current_recipe_id is not None:
                rr = s.get(Recipe, p.current_recipe_id)
                if rr is not None:
                    recipe = RecipeSummary(id=rr.id, version=rr.version, created_at=rr.created_at, status=rr.status,
                                           ops=_ops(rr.recipe_json), quality_before=rr.quality_before,
                                           quality_after=rr.quality_after, measured_gain=rr.measured_gain)
            n_versions = int(s.scalar(select(func.count(Recipe.id)).where(Recipe.photo_id == p.id)) or 0)
            folder = s.get(Folder, p.folder_id) if p.folder_id is not None else None
            return PhotoInfo(
                id=p.id, path=p.fs_path, display_path=p.path, folder=folder.path if folder else None, size=p.size,
                mtime_ns=p.mtime_ns, fingerprint=p.fingerprint, width=p.width, height=p.height,
                orientation=p.orientation, format=p.format, camera_make=p.camera_make,
                camera_model=p.camera_model, lens=p.lens, captured_at=p.captured_at, iso=p.iso,
                exposure_time=p.exposure_time, f_number=p.f_number, focal_length=p.focal_length,
                has_gps=bool(p.has_gps), status=p.status, error=p.error, error_code=p.error_code,
                warning=p.warning, indexed_at=p.indexed_at, score=score, recipe=recipe, n_versions=n_versions,
                face_count=p.face_count, jpeg_quality=p.jpeg_quality)

    def photo_record(self, photo_id: int) -> dict[str, Any]:
        """The JSON object of DESIGN.md's score/rank contract (score fields null until scored);
        raises KeyError for an unknown id."""
        recs = self.photo_records([photo_id])
        if not recs:
            raise KeyError(photo_id)
        return recs[0]

    def photo_records(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """:meth:`photo_record` of many photos, one query per 500, in the order of ``ids``
        (unknown ids left out): what ``score`` and ``rank`` print."""
        th = _thresholds()
        by_id: dict[int, dict[str, Any]] = {}
        ids = [int(i) for i in ids]
        with self.catalog.session() as s:
            for i in range(0, len(ids), 500):
                q = (select(Photo, Score).outerjoin(Score, Score.id == Photo.current_score_id)
                     .where(Photo.id.in_(ids[i:i + 500])))
                for p, sc in s.execute(q).all():
                    by_id[p.id] = _record(p, sc, th)
        # camera defects of the photo's series (engine.enhance.defects), undismissed: a correctable reason
        from engine.enhance.defects import reasons_for_photo

        kinds = reasons_for_photo(self.catalog, list(by_id))
        for pid, rec in by_id.items():
            rec["defects"] = kinds.get(pid, [])
            if rec["reasons"] is not None:
                rec["reasons"] += [k for k in rec["defects"] if k not in rec["reasons"]]
        return [by_id[i] for i in ids if i in by_id]

    # -- thumbnails -------------------------------------------------------------------------
    def thumbnail(self, photo_id: int, size: int = THUMB_SIZE) -> np.ndarray | None:
        """An RGB uint8 thumbnail (longest side ``size``) from the disk cache, made on a miss;
        None for photos that cannot be shown (error, missing)."""
        with self.catalog.session() as s:
            row = s.execute(select(Photo.fingerprint, Photo.path_bytes, Photo.status).where(Photo.id == photo_id)).first()
        if row is None or row[0] is None or row[2] != STATUS_OK:
            return None
        fp, pb = row[0], row[1]
        if size <= THUMB_SIZE:
            base = self.thumbs.get(fp, THUMB_SIZE)
            if base is not None:
                return shrink(base, size)
        else:
            cached = self.thumbs.get(fp, size)
            if cached is not None:
                return cached
        try:
            img = load_image(os.fsdecode(pb), max_side=max(size, THUMB_SIZE))
        except ImageError:
            return None
        try:
            self.thumbs.put(fp, img.rgb, max(size, THUMB_SIZE))
        except OSError:
            pass
        return shrink(img.rgb, size)


__all__ = ["SORTS", "IndexEvent", "IndexedFile", "Library", "PhotoInfo", "PhotoRow", "RecipeSummary", "ScoreInfo"]
