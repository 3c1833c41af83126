"""The GUI's one door to the engine (qutebrowser's ``api/`` idea).

Every engine call the app makes goes through :class:`Services`: the catalog, the library
(index, query, thumbnails, photo details), the scorer, the editor and the exporter. Widgets get
this object and nothing else from the engine, so a signature change in the engine is adapted in
one place. Long jobs are returned as ``JobFn`` (``fn(progress, cancel) -> iterator``) for
``app.workers.Job``; everything else is a plain call, cheap enough for the GUI thread unless the
docstring says it renders pixels (those run in a worker).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from db.catalog import Catalog, CatalogDamaged, CatalogError
from engine.core.jobs import CancelToken, JobCancelled, Progress, ProgressFn

if TYPE_CHECKING:  # the services load their engines lazily (each loads a model or two)
    from engine.assess.finetune import FinetuneResult
    from engine.assess.scoring import ScoreEvent, Scorer
    from engine.cluster import Cluster
    from engine.enhance.defects import Detection, SeriesReport
    from engine.enhance.edits import Editor, EnhanceResult, HistoryState
    from engine.enhance.face_scan import FaceScanEvent
    from engine.export.exporter import Exporter, ExportResult
    from engine.export.files import FileResult
    from engine.ingest.indexer import IndexEvent
    from engine.library import PhotoInfo


# What the GUI and the commands use of the engine's and the catalog's own names, re-exported here.
__all__ = ["CancelToken", "CatalogCare", "CatalogDamaged", "CatalogError", "CommandFailed", "ExportOptions",
           "JobCancelled", "JobFn", "Progress", "ProgressFn", "Services", "UsageError", "WriteFailed",
           "check_cluster_installed", "cluster_support", "connect_cluster", "display_path", "enhance_files",
           "enhance_stages", "explain_error", "export_options", "files_defect_params", "files_out_dir",
           "known_failures", "min_cache_mb", "template_fields"]

T = TypeVar("T")
# A long job for app.workers.Job: ``fn(progress, cancel)`` yields one result per item.
JobFn = Callable[[ProgressFn, CancelToken], Iterator[T]]

log = logging.getLogger(__name__)


class UsageError(Exception):
    """A mistake in what the user asked (a bad option, no such folder): the CLI exits 2 with this message."""


class CommandFailed(Exception):
    """The job cannot run (no model, an unusable output folder, a cluster out of reach): exit 1."""


class WriteFailed(CommandFailed):
    """The disk or folder failed while the current item was written (full, read-only): the job stops there."""


@dataclass(frozen=True)
class ExportOptions:
    """How copies are written (``export``, ``enhance --out`` and the GUI's export dialog): checked once,
    by :func:`export_options`."""

    fmt: str = "jpeg"
    quality: int = 92
    bits: int = 8
    template: str = "{name}_enhanced"


def export_options(fmt: str = "jpeg", quality: int = 92, bits: int = 8, template: str = "{name}_enhanced"
                   ) -> ExportOptions:
    """The one check of the export options; raises :class:`UsageError` with the reason."""
    from engine.export.exporter import check_template, normalise_format

    try:
        f = normalise_format(fmt)
        check_template(template)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if f == "jpeg" and bits != 8:
        raise UsageError("JPEG is 8 bit only; use --format png or tiff with --bits 16")
    if bits not in (8, 16):
        raise UsageError(f"bits per channel must be 8 or 16, got {bits}")
    if not 1 <= quality <= 100:
        raise UsageError("--quality must be 1..100")
    return ExportOptions(f, int(quality), int(bits), template)


def enhance_stages(ops: str | Sequence[str] | None, strength: float) -> list[str]:
    """The stages of ``--ops`` (None = all, in pipeline order) after checking them and the
    strength; raises :class:`UsageError` with the reason."""
    from engine.enhance.pipeline import parse_ops

    try:
        stages = parse_ops(ops)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not 0.0 <= strength <= 1.0:
        raise UsageError(f"--strength must be between 0 and 1, got {strength}")
    return stages


def check_cluster_installed() -> None:
    """Raise :class:`UsageError` (with the install command) when the Ray extra is missing: said before any work."""
    from engine.cluster import ClusterUnavailable, import_ray

    try:
        import_ray()
    except ClusterUnavailable as e:
        raise UsageError(f"--cluster: {e}") from None


def connect_cluster(address: str) -> Cluster:
    """A connected Ray cluster; :class:`UsageError` for Ray missing or a malformed address,
    :class:`CommandFailed` for a cluster that cannot be reached."""
    from engine.cluster import BadAddress, Cluster, ClusterError, ClusterUnavailable

    try:
        cluster = Cluster(address)
    except ClusterUnavailable as e:
        raise UsageError(f"--cluster: {e}") from None
    try:
        cluster.connect()
    except BadAddress as e:
        raise UsageError(f"--cluster: {e}") from None
    except ClusterError as e:
        raise CommandFailed(str(e)) from None
    return cluster


def known_failures() -> tuple[type[BaseException], ...]:
    """"The environment failed" (a missing model, an unusable folder, a photo that changed, a full
    disk): the exceptions a job reports in one line, not as a bug with a traceback."""
    from engine.enhance.edits import EditError
    from engine.enhance.pipeline import StageUnavailable
    from engine.enhance.recipes import ModelGone
    from engine.export.exporter import ExportError

    return (OSError, EditError, ExportError, StageUnavailable, ModelGone, CommandFailed, UsageError)


def cluster_support() -> tuple[bool, str]:
    """(Ray installed, the command that installs it)."""
    from engine.cluster import INSTALL_HINT, ray_installed

    return ray_installed(), INSTALL_HINT


def min_cache_mb() -> int:
    """The smallest cache limit the caches accept."""
    from engine.core.diskcache import MIN_LIMIT_MB

    return MIN_LIMIT_MB


def template_fields() -> tuple[str, ...]:
    """The fields an export name template may use."""
    from engine.export.exporter import TEMPLATE_FIELDS

    return tuple(TEMPLATE_FIELDS)


def explain_error(e: BaseException, location: str | None) -> str | None:
    """A catalog problem a user can act on (busy, disk full, damaged, a server out of reach) as a
    message; None for anything else (a bug, which keeps its traceback)."""
    from db.catalog import default_catalog_location, explain

    err = explain(e, location or default_catalog_location())
    return None if err is None else str(err)


class Services:
    def __init__(self, catalog: Catalog, threads: int = 0, cluster: str = "", assessor: str | None = None) -> None:
        from engine.library import Library

        self.catalog = catalog
        self.library = Library(catalog)
        self.threads = threads
        self.assessor = assessor  # the assessor ONNX file; None = the shipped one
        # a Ray cluster address for the heavy jobs (score, batch enhance, export); "" = the thread
        # pool. The connection is made by the first job that needs it and kept (_connected).
        self.cluster = cluster
        self._cluster_conn: Cluster | None = None
        self._cluster_lock = threading.Lock()
        self._lock = threading.RLock()  # (the exporter, made under it, asks for the editor's renderer)
        self._scorer: Scorer | None = None
        self._editor: Editor | None = None
        self._exporter: Exporter | None = None

    @classmethod
    def open(cls, location: str | None = None, threads: int = 0, cluster: str = "",
             assessor: str | None = None) -> Services:
        """Open (creating or upgrading) the catalog at ``location`` (None: the per-user one);
        raises :class:`CatalogError` with the reason."""
        return cls(Catalog.open(location or None), threads=threads, cluster=cluster, assessor=assessor)

    @classmethod
    def open_existing(cls, location: str | None = None) -> Services | None:
        """The catalog at ``location`` if there is one; None, creating nothing, when there is none
        (``enhance FILE... --out`` reads a catalog when it exists and never makes one)."""
        from db.catalog import default_catalog_location, sqlite_file, to_url

        loc = location or default_catalog_location()
        if "://" not in loc and not Path(loc).expanduser().exists():
            return None
        f = sqlite_file(to_url(loc))
        if f is not None and not f.exists():
            return None
        return cls.open(loc)

    def attach_cluster(self, cluster: Cluster) -> None:
        """Run the heavy jobs (score, enhance, export) on ``cluster`` (connected by :func:`connect_cluster`);
        :meth:`close` closes it."""
        with self._cluster_lock:
            if self._cluster_conn is not None and self._cluster_conn is not cluster:
                self._cluster_conn.close()
            self._cluster_conn = cluster
            self.cluster = cluster.address

    def _connected(self, address: str) -> Cluster:
        """The app's connection to the cluster at ``address``: made by the first job that needs
        it (in that job's worker thread), kept for the next jobs (starting or joining a cluster
        takes seconds), replaced when the address changes, closed by :meth:`close`."""
        from engine.cluster import Cluster

        with self._cluster_lock:  # not self._lock: connecting takes seconds, the GUI thread uses that one
            conn = self._cluster_conn
            if conn is not None and conn.address != address:
                conn.close()
                conn = self._cluster_conn = None
            if conn is None:
                conn = Cluster(address)  # Ray missing: the job fails with how to install it
                conn.connect()
                self._cluster_conn = conn
            return conn

    def close(self) -> None:
        with self._cluster_lock:
            if self._cluster_conn is not None:
                self._cluster_conn.close()
                self._cluster_conn = None
        self.catalog.close()

    # -- caches ---------------------------------------------------------------------------
    def cache_limit_mb(self) -> int:
        from engine.core.diskcache import limits

        return limits(self.catalog).total_mb

    def cache_used_bytes(self) -> int:
        """Bytes now in this catalog's render and thumbnail caches (walks the folders)."""
        from engine.core.diskcache import usage
        from engine.core.paths import cache_dir_for

        root = cache_dir_for(self.catalog.url)
        return usage(root / "renders") + usage(root / "thumbnails")

    def set_cache_limit_mb(self, mb: int, strict: bool = False) -> int:
        """Store the limit (raised to the minimum; with ``strict``, :class:`UsageError` under it);
        the caches of this process follow it at once, and the caches on disk are trimmed to it now."""
        from engine.core.diskcache import MIN_LIMIT_MB, set_limit
        from engine.core.paths import cache_dir_for
        from engine.enhance.render import RenderCache

        if strict and mb < MIN_LIMIT_MB:
            raise UsageError(f"the cache limit must be at least {MIN_LIMIT_MB} MB")
        lim = set_limit(self.catalog, mb)
        self.library.thumbs.max_bytes = lim.thumbnail_bytes
        self.library.thumbs.trim()
        with self._lock:
            caches = [c for c in (getattr(getattr(svc, "renderer", None), "cache", None)
                                  for svc in (self._editor, self._exporter)) if c is not None]
            if not caches:  # none in use here (the command line): trim the one on disk
                caches = [RenderCache(cache_dir_for(self.catalog.url), lim.render_bytes)]
            for cache in caches:
                cache.max_bytes = lim.render_bytes
                cache._evict()
        return lim.total_mb

    def cache_report(self) -> str:
        """One line: where the caches are, how full, and the limit."""
        from engine.core.diskcache import limits, usage
        from engine.core.paths import cache_dir_for

        lim = limits(self.catalog)
        root = cache_dir_for(self.catalog.url)
        renders, thumbs = usage(root / "renders"), usage(root / "thumbnails")
        return (f"cache {root}: previews/renders {renders / 2**20:,.1f} MB of {lim.render_bytes / 2**20:,.0f} MB, "
                f"thumbnails {thumbs / 2**20:,.1f} MB of {lim.thumbnail_bytes / 2**20:,.0f} MB "
                f"(limit {lim.total_mb} MB")

    def schema_revision(self) -> str:
        """The catalog's Alembic revision (``photolift catalog check`` on a server)."""
        from db.migrations import read_state

        with self.catalog.engine.connect() as conn:
            return str(read_state(conn).revision)

    # -- lazily made services (each loads a model or two on first use) -------------------
    @property
    def scorer(self) -> Scorer:
        with self._lock:
            if self._scorer is None:
                from engine.assess.scoring import Scorer, get_scorer

                # The user's thread setting sizes the scorer's decode/infer pool; 0 = the shared default.
                if self.threads > 0 or self.assessor:
                    self._scorer = Scorer(self.assessor, workers=self.threads or 2)
                else:
                    self._scorer = get_scorer()
            return self._scorer

    @property
    def editor(self) -> Editor:
        with self._lock:
            if self._editor is None:
                from engine.enhance.edits import Editor

                self._editor = Editor(self.catalog)
            return self._editor

    @property
    def exporter(self) -> Exporter:
        with self._lock:
            if self._exporter is None:
                from engine.export.exporter import Exporter

                self._exporter = Exporter(self.catalog, renderer=self.editor.renderer)  # one render cache
            return self._exporter

    # -- library ---------------------------------------------------------------------------
    def thumbnail(self, photo_id: int, size: int = 256) -> np.ndarray | None:
        """The grid thumbnail, showing the photo's current edit when it has one."""
        thumb = self.library.thumbnail(photo_id, size)
        if thumb is None:
            return None
        return self.editor.edited_thumbnail(photo_id, thumb)

    def photo(self, photo_id: int) -> PhotoInfo:
        return self.library.photo(photo_id)

    def load_scorer(self) -> Scorer:
        """The assessor, loaded now; :class:`CommandFailed` with the reason when its model is
        missing or unreadable."""
        from engine.core.runtime import ModelMissing

        try:
            return self.scorer
        except (ModelMissing, ValueError, OSError) as e:
            raise CommandFailed(str(e)) from None

    def records(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """DESIGN.md's score/rank JSON objects of ``ids`` (the read model's, so ``score``, ``rank``
        and the grid show one current score); unknown ids are left out."""
        return self.library.photo_records(list(ids))

    @staticmethod
    def recommended_filter(own_threshold: float | None = None) -> dict[str, Any]:
        """*The* rule for "recommended" as a library filter: the photo's current score is flagged by
        the assessor's calibrated threshold (models/assessor.json), as ``rank``, ``score``,
        ``export --recommended`` and the grid read it. ``own_threshold``: a user's own improvability
        threshold (the GUI preference *Use my own threshold*) instead."""
        return {"recommended": True} if own_threshold is None else {"min_improvability": float(own_threshold)}

    @staticmethod
    def is_recommended(improvability: float | None, recommended: bool | None,
                       own_threshold: float | None = None) -> bool:
        """:meth:`recommended_filter` for one photo already read (the grid's mark)."""
        if own_threshold is None:
            return bool(recommended)
        return improvability is not None and float(improvability) >= float(own_threshold)

    @staticmethod
    def severity_threshold(name: str) -> float:
        """The calibrated severity threshold of one degradation (models/assessor.json): a degradation at
        or above it is one of a photo's reasons, in the grid's badge, ``score`` and ``rank`` alike."""
        from engine.assess.scoring import DEFAULT_SEVERITY_THRESHOLD, shipped_thresholds

        return shipped_thresholds().severity.get(name, DEFAULT_SEVERITY_THRESHOLD)

    @staticmethod
    def guard_margin() -> float:
        """The least quality gain the regression guard counts as an improvement (the installed
        quality model's calibrated noise; 0 without one)."""
        from engine.assess.quality import guard_margin

        return guard_margin()

    @staticmethod
    def reasons_skipped(jpeg_quality: int | None) -> frozenset[str]:
        """Degradations never named as reasons for a photo of this JPEG quality, whatever their
        severity (``compression`` where the enhancer would not deblock)."""
        from engine.enhance.levels import reasons_skipped

        return reasons_skipped(jpeg_quality)

    def count(self, folder: str | None, filters: dict[str, Any] | None = None) -> int:
        return int(self.library.count(folder, filters or {}))

    def ids(self, folder: str | None, filters: dict[str, Any], sort: str = "improvability") -> list[int]:
        """Every photo id matching a filter (for "enhance all recommended", export choices, scoring):
        the library's one "photos under a folder", as the CLI commands use it."""
        return self.library.photo_ids(folder, filters, sort)

    def index(self, root: str, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
              score: bool = False) -> Iterator[IndexEvent]:
        """Add or update a folder tree (rows, EXIF, thumbnails); with ``score`` (and no cluster),
        new and changed photos are scored from the same decode. Raises ``FileNotFoundError`` /
        ``NotADirectoryError`` for a bad folder."""
        scorer = self.scorer if score and not self.cluster else None
        return self.library.index(root, progress=progress, cancel=cancel, scorer=scorer)

    def index_paths(self, paths: Sequence[str]) -> tuple[list[int], list[dict[str, Any]], set[int]]:
        """Photo ids for ``paths`` (files or folders; a folder is indexed, a file's folder when the
        file is new or changed), error records for paths that are not photos of the catalog, and
        the ids already scored while indexing (the assessor scores each new or changed file from
        the indexer's one decode, which also gives its row and thumbnail; on a cluster its workers
        score afterwards)."""
        from engine.ingest.imageio import is_supported
        from engine.ingest.indexer import missing_reason

        scored: set[int] = set()
        ids: list[int] = []
        errors: list[dict[str, Any]] = []
        scorer = None if self.cluster else self.scorer

        def index(folder: str) -> None:
            from engine.ingest.indexer import Indexer

            indexer = Indexer(self.catalog, self.library.thumbs, workers=getattr(scorer, "workers", None),
                              scorer=scorer)
            for _ in indexer.index(folder):
                pass
            scored.update(indexer.scored)

        for raw in paths:
            path = os.path.realpath(raw)
            if os.path.isdir(path):
                index(path)
                ids += self.library.photo_ids(path)
                continue
            if not os.path.exists(path):
                errors.append({"path": raw, "status": "error", "error": missing_reason(raw)})
                continue
            if not is_supported(path):
                errors.append({"path": raw, "status": "error", "error": "not a supported photo format"})
                continue
            st = os.stat(path)
            known = self.library.indexed_file(path)
            if known is None or known.size != st.st_size or known.mtime_ns != st.st_mtime_ns:
                index(os.path.dirname(path))
                known = self.library.indexed_file(path)
            if known is None:
                errors.append({"path": raw, "status": "error", "error": "could not be indexed"})
            else:
                ids.append(known.id)
        return list(dict.fromkeys(ids)), errors, scored

    def score_ids(self, photo_ids: Sequence[int], progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None, force: bool = False, workers: int | None = None
                  ) -> Iterator[ScoreEvent]:
        """Score photos that have no score from the current model for their content (``force``:
        all); on the cluster when one is set (``workers``: scoring workers there). A generator: the
        cluster is connected when the first result is asked for (in a GUI worker thread)."""
        scorer = self.load_scorer()
        if self.cluster:
            from engine.cluster import score_photos

            yield from score_photos(self._connected(self.cluster), scorer, self.catalog, list(photo_ids),
                                    progress=progress, cancel=cancel, force=force, workers=workers)
            return
        yield from scorer.score_photos(self.catalog, list(photo_ids), progress=progress, cancel=cancel, force=force)

    def index_job(self, root: str) -> JobFn[IndexEvent]:
        """Index ``root``; new and changed photos are scored from the same decode when the
        assessor is available (the score job that follows then only has older photos left)."""

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[IndexEvent]:
            scorer: Scorer | None
            try:
                # on a cluster its workers score (the score job that follows); here: index only
                scorer = None if self.cluster else self.scorer
            except Exception as e:  # no assessor model: index only; the score job reports why
                log.info("indexing without scoring: %s", e)
                scorer = None
            return iter(self.library.index(root, progress=progress, cancel=cancel, scorer=scorer))

        return fn

    def score_job(self, root: str) -> JobFn[ScoreEvent]:
        """Score every photo under ``root`` that has no score from the current model yet."""

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[ScoreEvent]:
            # The scorer skips photos already scored by this model version for their content.
            return self.score_ids(self.ids(root, {}, sort="name"), progress=progress, cancel=cancel)

        return fn

    # -- edits -----------------------------------------------------------------------------
    def preview(self, photo_id: int, max_side: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(before, after) at ``max_side`` (None = full resolution); after is None when not edited.
        Renders pixels: call it from a worker."""
        return self.editor.preview(photo_id, max_side=max_side)

    @staticmethod
    def faces_available() -> bool:
        """Whether the opt-in ``faces`` stage can run (its detector and restorer are installed)."""
        from engine.core.runtime import models_dir
        from engine.enhance.pipeline import FACE_DETECTOR_MODEL, FACE_RESTORER_MODEL

        d = models_dir()
        return all((d / f"{m}.onnx").is_file() for m in (FACE_DETECTOR_MODEL, FACE_RESTORER_MODEL))

    def one_click_ops(self, faces: bool = False) -> list[str]:
        """The stages of one-click enhance: the installed default ones, plus ``faces`` (after
        ``restore``, in pipeline order) when asked for and installed."""
        from engine.enhance.pipeline import parse_ops

        ops = self.available_ops()
        if faces and self.faces_available():
            ops = parse_ops([*ops, "faces"])
        return ops

    @staticmethod
    def available_ops() -> list[str]:
        """The one-click stages whose model file is installed, in pipeline order."""
        from engine.core.runtime import models_dir
        from engine.enhance.pipeline import DEFAULT_STAGES, RESTORER_MODEL, TONE_MODEL

        model_of = {"restore": RESTORER_MODEL, "tone": TONE_MODEL}
        d = models_dir()
        # defects: no model, its parameters come from the photo's camera series; faces: opt-in
        # (not in DEFAULT_STAGES) until it pays on real photos
        return [st for st in DEFAULT_STAGES if st == "defects" or (d / f"{model_of.get(st, st)}.onnx").is_file()]

    def enhance_job(self, photo_ids: list[int], strength: float, ops: list[str] | None = None,
                    face_w: float | None = None) -> JobFn[EnhanceResult]:
        """Enhance photos (engine ``Editor.enhance_batch``: more than one photo is a batch queued in
        the catalog and resumed after a crash, one photo is enhanced directly); ``ops`` None = every
        installed stage. ``face_w``: the ``faces`` stage's fidelity weight (0 faithful .. 1 generated)."""
        stages = ops if ops is not None else self.available_ops()

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[EnhanceResult]:
            if not stages:
                raise RuntimeError("no enhancement model is installed (models/restorer.onnx, models/tone.onnx)")
            # one photo (the one-click button) stays here: no wait for the cluster
            return self.enhance_ids(photo_ids, stages, strength, progress=progress, cancel=cancel,
                                    on_cluster=len(photo_ids) > 1, face_w=face_w)

        return fn

    def enhance_ids(self, photo_ids: Sequence[int], ops: Sequence[str] | None, strength: float,
                    progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                    apply_if_no_gain: bool | None = None, on_cluster: bool = True,
                    face_w: float | None = None) -> Iterator[EnhanceResult]:
        """Enhance photos (``Editor.enhance_batch``: a batch of several is queued in the catalog and
        resumed after a crash; one photo is enhanced directly, no queue rows). On the cluster when
        one is set and ``on_cluster``. A missing model raises :class:`CommandFailed`."""
        from engine.enhance.pipeline import StageUnavailable
        from engine.enhance.recipes import ModelGone

        cluster = self._connected(self.cluster) if self.cluster and on_cluster else None
        try:
            yield from self.editor.enhance_batch(list(photo_ids), ops=list(ops) if ops is not None else None,
                                                 strength=strength, progress=progress, cancel=cancel,
                                                 apply_if_no_gain=apply_if_no_gain, cluster=cluster,
                                                 face_w=face_w)
        except (StageUnavailable, ModelGone) as e:
            raise CommandFailed(str(e)) from None

    def interrupted_enhancements(self) -> int:
        """Photos of enhance batches that a crash, kill or power cut interrupted, left to resume."""
        return self.editor.interrupted()

    def resume_job(self) -> JobFn[EnhanceResult]:
        """Finish the interrupted enhance batches (engine ``Editor.resume_interrupted``): run at
        start-up; on the cluster when one is set, as a batch would be."""

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[EnhanceResult]:
            cluster = self._connected(self.cluster) if self.cluster else None
            return iter(self.editor.resume_interrupted(progress=progress, cancel=cancel, cluster=cluster))

        return fn

    def undo(self, photo_id: int) -> HistoryState:
        return self.editor.undo(photo_id)

    def redo(self, photo_id: int) -> HistoryState:
        return self.editor.redo(photo_id)

    def revert(self, photo_id: int) -> HistoryState:
        return self.editor.revert(photo_id)

    def rate(self, photo_id: int, rating: int) -> int:
        return self.editor.rate(photo_id, rating)

    def finetune_job(self) -> JobFn[FinetuneResult]:
        """Fit the last layer on the stored ratings (engine.assess.finetune) and re-rank with it."""

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[FinetuneResult]:
            from engine.assess.finetune import finetune_catalog

            progress(Progress(0, 1, "fitting the ranking to your ratings"))
            result = finetune_catalog(self.catalog, self.scorer)
            progress(Progress(1, 1, f"{result.n_ratings} ratings, {result.rescored} photos re-ranked"))
            yield result

        return fn

    def default_threshold(self) -> float:
        """The scorer's own 'recommended' threshold on improvability."""
        return float(self.scorer.thresholds.improvability)

    # -- camera defects ----------------------------------------------------------------------
    @staticmethod
    def min_series() -> int:
        """The fewest photos of one camera a defect detection needs."""
        from engine.enhance.defects import MIN_SERIES

        return MIN_SERIES

    def detect_defects(self, root: str | None, force: bool = False, progress: ProgressFn | None = None,
                       cancel: CancelToken | None = None) -> list[SeriesReport]:
        """Run (or read back) the camera-defect detection for the cameras of ``root``'s photos."""
        from engine.enhance.defects import detect

        return detect(self.catalog, root, force=force, progress=progress, cancel=cancel)

    def small_series(self, root: str) -> list[tuple[str, int]]:
        """(camera, photos) of the cameras of ``root`` with too few photos for a detection."""
        from engine.enhance.defects import MIN_SERIES, series_of_folder

        return [(s.camera, len(s.photos)) for s in series_of_folder(self.catalog, root)
                if len(s.photos) < MIN_SERIES]

    @staticmethod
    def defect_records(report: SeriesReport) -> list[dict[str, Any]]:
        """The JSON objects of ``photolift defects --json`` for one camera series."""
        from engine.enhance.defects import defect_records

        return defect_records(report)

    def defect_params(self, files: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The ``defects`` stage parameters of each file that is in the catalog and whose camera
        has undismissed defects."""
        from engine.enhance.defects import stage_params

        ids = self.library.ids_for_paths([os.path.realpath(x) for x in files])
        out: dict[str, dict[str, Any]] = {}
        for x in files:
            pid = ids.get(os.path.realpath(x))
            if pid is not None:
                params = stage_params(self.catalog, pid)
                if params is not None:
                    out[x] = params
        return out

    def defects_job(self, root: str | None, force: bool = False) -> JobFn[list[SeriesReport]]:
        """Run (or read back) the camera-defect detection for the cameras of ``root``'s photos
        (engine.enhance.defects.detect); yields the list of ``SeriesReport`` once."""

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[list[SeriesReport]]:
            from engine.enhance.defects import detect

            yield detect(self.catalog, root, force=force, progress=progress, cancel=cancel)

        return fn

    def faces_job(self, root: str | None) -> JobFn[FaceScanEvent]:
        """Find the faces of ``root``'s photos not examined yet (engine.enhance.face_scan): one
        event per photo; the library's ``has_faces`` filter and the details pane read the result."""

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[FaceScanEvent]:
            from engine.enhance.face_scan import scan

            yield from scan(self.catalog, root, progress=progress, cancel=cancel, workers=self.threads or 2)

        return fn

    def find_faces(self, root: str, progress: ProgressFn | None = None, cancel: CancelToken | None = None
                   ) -> list[FaceScanEvent]:
        """Run the face scan on ``root``'s photos not examined yet (see :meth:`faces_job`);
        :class:`CommandFailed` when the detector is not installed."""
        from engine.enhance.face_scan import scan

        try:
            return list(scan(self.catalog, root, progress=progress, cancel=cancel, workers=self.threads or 2))
        except FileNotFoundError as e:
            raise CommandFailed(str(e)) from None

    def face_records(self, root: str, with_none: bool = False) -> list[dict[str, Any]]:
        """One JSON object per photo of ``root`` with faces (``with_none``: every examined photo):
        ``id``, ``path``, ``faces`` (count), ``boxes`` ([x0, y0, x1, y1] in 0..1 of the upright
        photo) and ``scores`` (engine ``Library.face_records``)."""
        return self.library.face_records(root, with_none)

    def face_scan_needed(self, root: str | None) -> bool:
        """Whether the face detector is installed and some photo of ``root`` has not been examined."""
        from engine.enhance.face_scan import available, pending

        return available() and bool(pending(self.catalog, root))

    def defect_reports(self) -> list[SeriesReport]:
        """Every examined camera series with its defects (``engine.enhance.defects.SeriesReport``)."""
        from engine.enhance.defects import reports

        return reports(self.catalog)

    def dismiss_defect(self, defect_id: int, dismissed: bool = True) -> None:
        """Dismiss (or restore) one defect; :class:`UsageError` when there is no such defect."""
        from engine.enhance.defects import set_dismissed

        try:
            set_dismissed(self.catalog, defect_id, dismissed)
        except KeyError:
            raise UsageError(f"no defect with id {defect_id}") from None

    @staticmethod
    def defect_summary(report: SeriesReport) -> str:
        """One line of what one camera gets wrong."""
        from engine.enhance.defects import summary

        return summary(report)

    @staticmethod
    def defect_map(report: SeriesReport, side: int) -> np.ndarray:
        """A picture of where one camera's defects are (RGB, ``side`` pixels long)."""
        from engine.enhance.defects import defect_map

        return defect_map(report, side)

    @staticmethod
    def defect_bbox(defect: Detection, orientation: int) -> list[float]:
        """A defect's box (sensor frame) in 0..1 of a photo shown with ``orientation``."""
        from engine.enhance.defects import bbox_to_display

        return bbox_to_display(defect.bbox, orientation)

    def defect_examples(self, report: SeriesReport, defect: Detection, n: int = 3) -> list[np.ndarray]:
        """Crops of a few photos around one defect. Decodes photos: call it from a worker."""
        from engine.enhance.defects import example_crops

        return example_crops(self.catalog, report, defect, n)

    # -- export ----------------------------------------------------------------------------
    def check_export_dir(self, out_dir: Path) -> Path:
        """Create and probe the export folder now (raises ``engine.export.exporter.OutputDirError`` with the reason)."""
        from engine.export.exporter import check_out_dir

        return check_out_dir(out_dir, self.exporter.library_roots())

    @staticmethod
    def check_template(template: str) -> str:
        """'' when the export name template is usable, else the reason."""
        from engine.export.exporter import check_template

        try:
            check_template(template)
        except ValueError as e:
            return str(e)
        return ""

    def export_dir(self, out_dir: str | Path, library_folder: str | None = None) -> Path:
        """:meth:`check_export_dir` for the command line (``library_folder`` also counts as
        library, indexed or not): :class:`CommandFailed` with the reason. Temporary files of a
        killed run there are cleaned up when the export starts."""
        from engine.export.exporter import OutputDirError, check_out_dir

        roots = [*self.exporter.library_roots(), *([Path(library_folder)] if library_folder else [])]
        try:
            return check_out_dir(Path(out_dir), roots)
        except OutputDirError as e:
            raise CommandFailed(str(e)) from None

    def export_job(self, photo_ids: list[int], out_dir: Path, fmt: str, quality: int, template: str
                   ) -> JobFn[ExportResult]:
        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[ExportResult]:
            return self.export_ids(photo_ids, out_dir, ExportOptions(fmt, quality, 8, template),
                                   progress=progress, cancel=cancel)

        return fn

    def export_ids(self, photo_ids: Sequence[int], out_dir: Path, options: ExportOptions,
                   progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                   only_enhanced: bool = False) -> Iterator[ExportResult]:
        """Export each photo's current state into ``out_dir`` (never overwriting; a photo already
        exported there with this edit and format is ``skipped``); on the cluster when one is set.
        ``only_enhanced``: a photo without an edit is ``skipped`` ("not enhanced"), not copied."""
        from engine.export.exporter import EnvironmentFailure, OutputDirError

        cluster = self._connected(self.cluster) if self.cluster else None
        try:
            yield from self.exporter.export(list(photo_ids), out_dir, fmt=options.fmt, quality=options.quality,
                                            template=options.template, bits=options.bits, progress=progress,
                                            cancel=cancel, only_enhanced=only_enhanced, cluster=cluster)
        except (OutputDirError, EnvironmentFailure) as e:  # the folder, the disk: the job cannot go on
            raise CommandFailed(str(e)) from None



# -- files outside the catalog (``photolift enhance FILE... --out DIR``) ---------------------------
def files_out_dir(out_dir: str | Path, catalog_location: str | None) -> Path:
    """Check (and create) the output folder of ``enhance --out``: not inside a library folder of
    the catalog, if there is one (none is created); temporary files of a killed run there are
    removed. :class:`CommandFailed` with the reason."""
    from engine.export.exporter import OutputDirError, check_out_dir, recover_folder

    try:
        existing = Services.open_existing(catalog_location)
    except CatalogError as e:  # the catalog could not be read: say so, do not guess
        raise CommandFailed(f"cannot read the catalog to check the output folder: {e}") from None
    try:
        roots = existing.exporter.library_roots() if existing is not None else []
    finally:
        if existing is not None:
            existing.close()
    try:
        out = check_out_dir(Path(out_dir), roots)
    except OutputDirError as e:
        raise CommandFailed(str(e)) from None
    recover_folder(out)
    return out


def files_defect_params(files: Sequence[str], catalog_location: str | None) -> dict[str, dict[str, Any]]:
    """The ``defects`` stage parameters of the files the catalog knows (none is created)."""
    try:
        existing = Services.open_existing(catalog_location)
    except CatalogError as e:
        raise CommandFailed(f"cannot read the catalog for the defects stage: {e}") from None
    if existing is None:
        return {}
    try:
        return existing.defect_params(files)
    finally:
        existing.close()


def enhance_files(files: Sequence[str], out_dir: Path, ops: Sequence[str], strength: float,
                  options: ExportOptions, force: bool = False,
                  defects: dict[str, dict[str, Any]] | None = None, cluster: Cluster | None = None,
                  face_w: float | None = None) -> Iterator[FileResult]:
    """The one-click enhancement of each file written to a new file in ``out_dir`` (checked by
    :func:`files_out_dir`), one result per file in the order given; on ``cluster`` one task per
    file. A missing model or a full disk raises :class:`CommandFailed` (the results so far stand).
    ``face_w``: the ``faces`` stage's fidelity weight (None = its default; not passed to a cluster yet)."""
    from engine.enhance.pipeline import StageUnavailable
    from engine.enhance.recipes import ModelGone
    from engine.export.exporter import EnvironmentFailure

    params = [(defects or {}).get(f) for f in files]
    paths = [Path(f) for f in files]
    try:
        if cluster is not None:
            from engine.cluster import enhance_files as on_cluster

            yield from on_cluster(cluster, paths, out_dir, ops, strength, options.fmt, options.quality, options.bits,
                                  options.template, force, defects=params)
            return
        from engine.enhance.render import RenderCache, Renderer
        from engine.export.files import enhance_file

        renderer = Renderer(cache=RenderCache())
        for path, d in zip(paths, params, strict=True):
            yield enhance_file(path, out_dir, renderer, ops, strength, options.fmt, options.quality, options.bits,
                               options.template, force, defects=d, face_w=face_w)
    except (StageUnavailable, ModelGone) as e:
        raise CommandFailed(str(e)) from None
    except EnvironmentFailure as e:
        raise WriteFailed(str(e)) from None


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as shown to the user (valid UTF-8 whatever the file system's bytes)."""
    from engine.core.paths import display_path as shown

    return shown(path)


# -- the catalog file itself (``photolift catalog``) ------------------------------------------------
class CatalogCare:
    """Backups, checks and restores of a SQLite catalog file (``db.backup``), and where a catalog is."""

    @staticmethod
    def location(location: str | None) -> str:
        from db.catalog import default_catalog_location

        return location or default_catalog_location()

    @staticmethod
    def shown(location: str | None) -> str:
        """The location as shown to people (a server URL without its password)."""
        from db.catalog import safe_url

        return safe_url(CatalogCare.location(location))

    @staticmethod
    def sqlite_file(location: str | None) -> Path | None:
        """The catalog's file; None for a catalog on a database server."""
        from db.catalog import sqlite_file, to_url

        loc = CatalogCare.location(location)
        if "://" in loc and not loc.startswith("sqlite"):
            return None
        return sqlite_file(to_url(loc)) if "://" in loc else Path(loc).expanduser().absolute()

    @staticmethod
    def newest_good_backup(db_file: Path) -> str | None:
        """The newest backup that passes its check, described; None when there is none."""
        from db.backup import newest_good_backup

        best = newest_good_backup(db_file)
        return None if best is None else best.describe()

    @staticmethod
    def backups(db_file: Path) -> list[tuple[str, list[str]]]:
        """(description, problems) of each backup, newest first."""
        from db import backup

        return [(b.describe(), backup.check_file(b.path)) for b in backup.list_backups(db_file)]

    @staticmethod
    def backups_dir(db_file: Path) -> Path:
        from db.backup import backups_dir

        return backups_dir(db_file)

    @staticmethod
    def check(db_file: Path) -> str | None:
        """The full integrity check: None when the file is fine, else what is wrong and the newest good backup."""
        from db import backup

        probs = backup.check_file(db_file, full=True)
        return backup.damage_message(db_file, "; ".join(probs[:3])) if probs else None

    @staticmethod
    def take_backup(db_file: Path) -> str:
        from db.backup import take_backup

        return take_backup(db_file, reason="manual").describe()

    @staticmethod
    def restore(db_file: Path, backup_file: Path | None = None) -> tuple[str, Path | None]:
        """Put ``backup_file`` (default: the newest good backup) in place; (its description, where
        the previous file is kept). :class:`CatalogError` when there is none or it is damaged."""
        from db.backup import restore

        res = restore(db_file, backup_file)
        return res.source.describe(), res.damaged_kept_as
