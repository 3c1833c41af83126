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
from typing import Any

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


def index_paths(catalog: Any, paths: list[str], scorer: Any = None) -> tuple[list[int], list[dict[str, Any]], set[int]]:
    """Photo ids for ``paths`` (indexing folders, or a file's folder when the file is new or changed),
    error records for paths that are not photos of the catalog, and the ids already scored while
    indexing (with ``scorer``: one decode per new or changed file gives the row, the thumbnail
    and the score)."""
    from sqlalchemy import select

    from db.schema import Photo
    from engine.imageio import is_supported
    from engine.indexer import Indexer, missing_reason
    from engine.library import Library

    thumbs = Library(catalog).thumbs
    indexer = Indexer(catalog, thumbs, workers=getattr(scorer, "workers", None), scorer=scorer)
    scored: set[int] = set()
    ids: list[int] = []
    errors: list[dict[str, Any]] = []
    for raw in paths:
        path = os.path.realpath(raw)
        if os.path.isdir(path):
            for _ in indexer.index(path):
                pass
            scored |= set(indexer.scored)
            lo = os.fsencode(os.path.join(path, ""))
            hi = lo[:-1] + bytes([lo[-1] + 1])
            with catalog.session() as s:
                ids += [r for (r,) in s.execute(select(Photo.id).where(
                    Photo.path_bytes >= lo, Photo.path_bytes < hi, Photo.status != "missing").order_by(Photo.path))]
            continue
        if not os.path.exists(path):
            errors.append({"path": raw, "status": "error", "error": missing_reason(raw)})
            continue
        if not is_supported(path):
            errors.append({"path": raw, "status": "error", "error": "not a supported photo format"})
            continue
        pb = os.fsencode(path)
        st = os.stat(path)

        def lookup(pb: bytes = pb) -> Any:
            with catalog.session() as s:
                return s.execute(select(Photo.id, Photo.size, Photo.mtime_ns).where(Photo.path_bytes == pb)).first()

        row = lookup()
        if row is None or row[1] != st.st_size or row[2] != st.st_mtime_ns:
            for _ in indexer.index(os.path.dirname(path)):
                pass
            scored |= set(indexer.scored)
            row = lookup()
        if row is None:
            errors.append({"path": raw, "status": "error", "error": "could not be indexed"})
        else:
            ids.append(int(row[0]))
    return list(dict.fromkeys(ids)), errors, scored


def records(catalog: Any, scorer: Any, ids: list[int], notes: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """The score/rank JSON objects of DESIGN.md for ``ids`` (stored scores of this model version).
    ``notes``: why this run did not score a photo whose row is still ``ok`` (it changed since it
    was indexed; a cluster worker died on it twice); such a photo is reported as an error with
    that reason rather than with an older score."""
    from sqlalchemy import select

    from db.schema import Photo, Score

    head = scorer.active_head(catalog)
    key = head[0] if head else ""
    out = []
    with catalog.session() as s:
        photos = {p.id: p for p in s.execute(select(Photo).where(Photo.id.in_(ids))).scalars()}
        scores: dict[int, Any] = {}
        for sc in s.execute(select(Score).where(Score.photo_id.in_(ids), Score.model == scorer.model_name,
                                                Score.model_version == scorer.model_version,
                                                Score.head.in_(["", key]))).scalars():
            if sc.photo_id not in scores or sc.head == key:
                scores[sc.photo_id] = sc
        for pid in ids:
            p = photos.get(pid)
            if p is None:
                continue
            rec: dict[str, Any] = {"path": p.path, "status": "ok", "error": None}
            sc = scores.get(pid)
            note = (notes or {}).get(pid)
            if p.status == "ok" and note:
                rec.update(status="error", error=note)
            elif p.status != "ok" or sc is None:
                rec.update(status="error", error=p.error or (f"photo is {p.status}" if p.status != "ok" else "not scored"))
            else:
                sev = json.loads(sc.severity_json)
                a = scorer.make_assessment(sc.improvability, sc.quality, sev, None)
                rec.update(improvability=round(sc.improvability, 4), quality=round(sc.quality, 4),
                           recommended=bool(sc.recommended), severity={k: round(v, 4) for k, v in sev.items()},
                           reasons=list(a.reasons))
            rec["model"] = {"name": scorer.model_name, "version": scorer.model_version,
                            "head": key or None}
            out.append(rec)
    return out


def run(args: argparse.Namespace) -> int:
    from db.catalog import Catalog, CatalogError
    from engine.runtime import ModelMissing
    from engine.scoring import Scorer

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
        recs = errors + records(catalog, scorer, ids, notes)
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
