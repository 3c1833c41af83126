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
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from db.catalog import Catalog
from engine.core.jobs import CancelToken, Progress, ProgressFn

if TYPE_CHECKING:  # the services load their engines lazily (each loads a model or two)
    from engine.assess.finetune import FinetuneResult
    from engine.assess.scoring import ScoreEvent, Scorer
    from engine.enhance.edits import Editor, EnhanceResult, HistoryState
    from engine.export.exporter import Exporter, ExportResult
    from engine.ingest.indexer import IndexEvent
    from engine.library import PhotoInfo

T = TypeVar("T")
# A long job for app.workers.Job: ``fn(progress, cancel)`` yields one result per item.
JobFn = Callable[[ProgressFn, CancelToken], Iterator[T]]

log = logging.getLogger(__name__)


class Services:
    def __init__(self, catalog: Catalog, threads: int = 0, cluster: str = "") -> None:
        from engine.library import Library

        self.catalog = catalog
        self.library = Library(catalog)
        self.threads = threads
        # a Ray cluster address for the heavy jobs (score, batch enhance, export); "" = the thread
        # pool. The connection is made by the first job that needs it and kept (_connected).
        self.cluster = cluster
        self._cluster_conn: Any = None
        self._cluster_lock = threading.Lock()
        self._lock = threading.Lock()
        self._scorer: Scorer | None = None
        self._editor: Editor | None = None
        self._exporter: Exporter | None = None

    @classmethod
    def open(cls, location: str | None = None, threads: int = 0, cluster: str = "") -> Services:
        return cls(Catalog.open(location or None), threads=threads, cluster=cluster)

    def _connected(self, address: str) -> Any:
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

    def _on_cluster(self, address: str, run: Any) -> Iterator[Any]:
        """``run(cluster)``'s results on the app's connection (:meth:`_connected`). Ray missing or
        the cluster unreachable fails the job with the reason as its message."""
        yield from run(self._connected(address))

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

    def set_cache_limit_mb(self, mb: int) -> int:
        """Store the limit; the caches of this process follow it at once, and trim."""
        from engine.core.diskcache import set_limit

        lim = set_limit(self.catalog, mb)
        self.library.thumbs.max_bytes = lim.thumbnail_bytes
        self.library.thumbs.trim()
        with self._lock:
            for svc in (self._editor, self._exporter):
                cache = getattr(getattr(svc, "renderer", None), "cache", None)
                if cache is not None:
                    cache.max_bytes = lim.render_bytes
                    cache._evict()
        return lim.total_mb

    # -- lazily made services (each loads a model or two on first use) -------------------
    @property
    def scorer(self) -> Scorer:
        with self._lock:
            if self._scorer is None:
                from engine.assess.scoring import Scorer, get_scorer

                # The user's thread setting sizes the scorer's decode/infer pool; 0 = the shared default.
                self._scorer = Scorer(workers=self.threads) if self.threads > 0 else get_scorer()
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

                self._exporter = Exporter(self.catalog)
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

    def count(self, folder: str | None, filters: dict[str, Any] | None = None) -> int:
        return int(self.library.count(folder, filters or {}))

    def ids(self, folder: str | None, filters: dict[str, Any], sort: str = "improvability") -> list[int]:
        """Every photo id matching a filter (for "enhance all recommended", export choices, scoring):
        the library's one "photos under a folder", as the CLI commands use it."""
        return self.library.photo_ids(folder, filters, sort)

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
            scorer = self.scorer
            # The scorer skips photos already scored by this model version for their content.
            ids = self.ids(root, {}, sort="name")
            if self.cluster:
                from engine.cluster import score_photos

                return self._on_cluster(self.cluster, lambda c: score_photos(c, scorer, self.catalog, ids,
                                                                             progress=progress, cancel=cancel))
            return iter(scorer.score_photos(self.catalog, ids, progress=progress, cancel=cancel))

        return fn

    # -- edits -----------------------------------------------------------------------------
    def preview(self, photo_id: int, max_side: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(before, after) at ``max_side`` (None = full resolution); after is None when not edited.
        Renders pixels: call it from a worker."""
        return self.editor.preview(photo_id, max_side=max_side)

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

    def enhance_job(self, photo_ids: list[int], strength: float, ops: list[str] | None = None
                    ) -> JobFn[EnhanceResult]:
        """Enhance photos (engine ``Editor.enhance_batch``: more than one photo is a batch queued in
        the catalog and resumed after a crash, one photo is enhanced directly); ``ops`` None = every
        installed stage."""
        stages = ops if ops is not None else self.available_ops()

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[EnhanceResult]:
            if not stages:
                raise RuntimeError("no enhancement model is installed (models/restorer.onnx, models/tone.onnx)")
            if self.cluster and len(photo_ids) > 1:  # one photo (the one-click button) stays here: no wait
                return self._on_cluster(self.cluster, lambda c: self.editor.enhance_batch(
                    photo_ids, ops=stages, strength=strength, progress=progress, cancel=cancel, cluster=c))
            return iter(self.editor.enhance_batch(photo_ids, ops=stages, strength=strength,
                                                  progress=progress, cancel=cancel))

        return fn

    def interrupted_enhancements(self) -> int:
        """Photos of enhance batches that a crash, kill or power cut interrupted, left to resume."""
        return self.editor.interrupted()

    def resume_job(self) -> JobFn[EnhanceResult]:
        """Finish the interrupted enhance batches (engine ``Editor.resume_interrupted``): run at
        start-up; on the cluster when one is set, as a batch would be."""

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[EnhanceResult]:
            if self.cluster:
                return self._on_cluster(self.cluster, lambda c: self.editor.resume_interrupted(
                    progress=progress, cancel=cancel, cluster=c))
            return iter(self.editor.resume_interrupted(progress=progress, cancel=cancel))

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
    def defects_job(self, root: str | None, force: bool = False) -> JobFn[list[Any]]:
        """Run (or read back) the camera-defect detection for the cameras of ``root``'s photos
        (engine.enhance.defects.detect); yields the list of ``SeriesReport`` once."""

        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[list[Any]]:
            from engine.enhance.defects import detect

            yield detect(self.catalog, root, force=force, progress=progress, cancel=cancel)

        return fn

    def defect_reports(self) -> list[Any]:
        """Every examined camera series with its defects (``engine.enhance.defects.SeriesReport``)."""
        from engine.enhance.defects import reports

        return reports(self.catalog)

    def dismiss_defect(self, defect_id: int, dismissed: bool = True) -> None:
        from engine.enhance.defects import set_dismissed

        set_dismissed(self.catalog, defect_id, dismissed)

    def defect_examples(self, report: Any, defect: Any, n: int = 3) -> list[np.ndarray]:
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

    def export_job(self, photo_ids: list[int], out_dir: Path, fmt: str, quality: int, template: str
                   ) -> JobFn[ExportResult]:
        def fn(progress: ProgressFn, cancel: CancelToken) -> Iterator[ExportResult]:
            if self.cluster:
                return self._on_cluster(self.cluster, lambda c: self.exporter.export(
                    photo_ids, out_dir, fmt=fmt, quality=quality, template=template, progress=progress,
                    cancel=cancel, cluster=c))
            return iter(self.exporter.export(photo_ids, out_dir, fmt=fmt, quality=quality, template=template,
                                             progress=progress, cancel=cancel))

        return fn
