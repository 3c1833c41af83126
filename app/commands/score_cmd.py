"""``photolift score PATH... [--json]``: index if needed, score, print one record per photo.

A PATH may be a photo or a folder (indexed and scored recursively). Photos already scored by
the current assessor version for their current content are not scored again (``--force`` does).
Output: one JSON object per photo (``--json``, JSON lines) with ``path``, ``status``, ``error``,
``improvability``, ``quality``, ``recommended``, ``severity``, ``reasons`` and ``model``;
otherwise a readable table. Exit code 0 when the command did its job (bad files are reported
in their records), 2 for usage errors, 1 when the command itself failed (no model, no catalog).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from db.catalog import Catalog
    from engine.assess.scoring import Scorer

from app.commands.cluster_opt import add_cluster_option, open_cluster


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("score", help="score photos (and index them if needed)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="photo files or folders")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--force", action="store_true", help="score again even if already scored")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding threads (default 2); with --cluster, scoring workers (default: one per cluster CPU)")
    p.add_argument("--model", default=None, help="assessor ONNX file (default: the shipped one)")
    add_cluster_option(p)


def _progress_printer(enabled: bool) -> Any:
    def show(p: Any) -> None:
        if enabled and p.total:
            print(f"\rscoring {p.done}/{p.total}", end="", file=sys.stderr, flush=True)

    return show


def index_paths(catalog: Catalog, paths: list[str], scorer: Scorer | None = None
                ) -> tuple[list[int], list[dict[str, Any]], set[int]]:
    """Photo ids for ``paths`` (indexing folders, or a file's folder when the file is new or changed),
    error records for paths that are not photos of the catalog, and the ids already scored while
    indexing (with ``scorer``: one decode per new or changed file gives the row, the thumbnail
    and the score)."""
    from engine.ingest.imageio import is_supported
    from engine.ingest.indexer import Indexer, missing_reason
    from engine.library import Library

    library = Library(catalog)
    indexer = Indexer(catalog, library.thumbs, workers=getattr(scorer, "workers", None), scorer=scorer)
    scored: set[int] = set()
    ids: list[int] = []
    errors: list[dict[str, Any]] = []
    for raw in paths:
        path = os.path.realpath(raw)
        if os.path.isdir(path):
            for _ in indexer.index(path):
                pass
            scored |= set(indexer.scored)
            ids += library.photo_ids(path)
            continue
        if not os.path.exists(path):
            errors.append({"path": raw, "status": "error", "error": missing_reason(raw)})
            continue
        if not is_supported(path):
            errors.append({"path": raw, "status": "error", "error": "not a supported photo format"})
            continue
        st = os.stat(path)
        known = library.indexed_file(path)
        if known is None or known.size != st.st_size or known.mtime_ns != st.st_mtime_ns:
            for _ in indexer.index(os.path.dirname(path)):
                pass
            scored |= set(indexer.scored)
            known = library.indexed_file(path)
        if known is None:
            errors.append({"path": raw, "status": "error", "error": "could not be indexed"})
        else:
            ids.append(known.id)
    return list(dict.fromkeys(ids)), errors, scored


def records(catalog: Catalog, ids: list[int], notes: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """The score/rank JSON objects of DESIGN.md for ``ids``: the library's records, so ``score``
    shows each photo's current score exactly as ``rank``, ``export --recommended`` and the grid
    do. A readable photo without a current score (its decode failed after indexing, or it was
    not scored) is reported as an error, as this command promised to score it. ``notes``: why this
    run did not score a photo whose row is still ``ok`` (it changed since it was indexed; a cluster
    worker died on it twice); such a photo is reported as an error with that reason rather than
    with an older score."""
    from engine.library import Library

    recs = Library(catalog).photo_records(ids)  # (a photo removed meanwhile is left out)
    for rec in recs:
        note = (notes or {}).get(rec["id"])
        if rec["status"] == "ok" and note:
            rec.update(status="error", error=note, improvability=None, quality=None, recommended=None)
        elif rec["status"] == "ok" and rec["improvability"] is None:
            rec.update(status="error", error="not scored")
    return recs


def run(args: argparse.Namespace) -> int:
    from db.catalog import Catalog, CatalogError
    from engine.assess.scoring import Scorer
    from engine.core.runtime import ModelMissing

    if args.workers is not None and args.workers < 1:
        print("photolift score: error: --workers must be >= 1", file=sys.stderr)
        return 2
    if args.cluster:
        from engine.cluster import ClusterUnavailable, import_ray

        try:
            import_ray()  # before any work: a missing extra is said at once
        except ClusterUnavailable as e:
            print(f"photolift score: --cluster: {e}", file=sys.stderr)
            return 2
    try:
        scorer = Scorer(args.model, workers=2 if args.cluster else (args.workers or 2))
    except (ModelMissing, ValueError) as e:
        print(f"photolift score: {e}", file=sys.stderr)
        return 1
    try:
        catalog = Catalog.open(getattr(args, "catalog", None))
    except CatalogError as e:
        print(f"photolift score: {e}", file=sys.stderr)
        return 1
    cluster = None
    try:
        if args.cluster:
            opened = open_cluster(args, "score")
            if isinstance(opened, int):
                return opened
            cluster = opened
        # on a cluster the workers decode: index here without scoring, then score every photo there
        ids, errors, scored_now = index_paths(catalog, list(args.paths), None if cluster else scorer)
        rest = [i for i in ids if i not in scored_now]  # scored from the indexer's own decode
        show = _progress_printer(not args.json and sys.stderr.isatty())
        if cluster is not None:
            from engine.cluster import score_photos

            events = score_photos(cluster, scorer, catalog, rest, progress=show, force=args.force,
                                  workers=args.workers)
        else:
            events = scorer.score_photos(catalog, rest, progress=show, force=args.force)
        notes = {e.photo_id: e.error for e in events if e.status != "ok" and e.error}
        if not args.json and sys.stderr.isatty():
            print(file=sys.stderr)
        recs = errors + records(catalog, ids, notes)
    finally:
        if cluster is not None:
            cluster.close()
        catalog.close()
    for r in recs:
        if args.json:
            print(json.dumps(r, ensure_ascii=False))
        elif r["status"] == "ok":
            flag = "recommended" if r["recommended"] else ""
            why = ",".join(r["reasons"])
            print(f"{r['improvability']:+6.2f}  q {r['quality']:4.1f}  {flag:11s}  {why:28s}  {r['path']}")
        else:
            print(f"  error  {r['error']}  {r['path']}")
    return 0
