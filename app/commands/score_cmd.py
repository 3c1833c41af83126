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
import sys
from typing import Any

from app.commands.cluster_opt import add_cluster_option, check_cluster_option, open_cluster
from app.services import CatalogError, CommandFailed, Progress, ProgressFn, Services


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("score", help="score photos (and index them if needed)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="photo files or folders")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--force", action="store_true", help="score again even if already scored")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding threads (default 2); with --cluster, scoring workers (default: one per cluster CPU)")
    p.add_argument("--model", default=None, help="assessor ONNX file (default: the shipped one)")
    add_cluster_option(p)


def _progress_printer(enabled: bool) -> ProgressFn:
    def show(p: Progress) -> None:
        if enabled and p.total:
            print(f"\rscoring {p.done}/{p.total}", end="", file=sys.stderr, flush=True)

    return show


def records(services: Services, ids: list[int], notes: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """The score/rank JSON objects of DESIGN.md for ``ids``: the read model's records, so ``score``
    shows each photo's current score exactly as ``rank``, ``export --recommended`` and the grid
    do. A readable photo without a current score (its decode failed after indexing, or it was
    not scored) is reported as an error, as this command promised to score it. ``notes``: why this
    run did not score a photo whose row is still ``ok`` (it changed since it was indexed; a cluster
    worker died on it twice); such a photo is reported as an error with that reason rather than
    with an older score."""
    recs = services.records(ids)  # (a photo removed meanwhile is left out)
    for rec in recs:
        note = (notes or {}).get(rec["id"])
        if rec["status"] == "ok" and note:
            rec.update(status="error", error=note, improvability=None, quality=None, recommended=None)
        elif rec["status"] == "ok" and rec["improvability"] is None:
            rec.update(status="error", error="not scored")
    return recs


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        print("photolift score: error: --workers must be >= 1", file=sys.stderr)
        return 2
    bad = check_cluster_option(args, "score")
    if bad is not None:
        return bad
    try:
        # on a cluster --workers is the cluster's scoring workers; here the decoding threads
        services = Services.open(getattr(args, "catalog", None), threads=2 if args.cluster else (args.workers or 2),
                                 assessor=args.model)
    except CatalogError as e:
        print(f"photolift score: {e}", file=sys.stderr)
        return 1
    try:
        try:
            services.load_scorer()
        except CommandFailed as e:
            print(f"photolift score: {e}", file=sys.stderr)
            return 1
        if args.cluster:
            opened = open_cluster(args, "score")
            if isinstance(opened, int):
                return opened
            if opened is not None:
                services.attach_cluster(opened)
        # on a cluster the workers decode: index here without scoring, then score every photo there
        ids, errors, scored_now = services.index_paths(list(args.paths))
        rest = [i for i in ids if i not in scored_now]  # scored from the indexer's own decode
        show = _progress_printer(not args.json and sys.stderr.isatty())
        events = services.score_ids(rest, progress=show, force=args.force,
                                    workers=args.workers if args.cluster else None)
        notes = {e.photo_id: e.error for e in events if e.status != "ok" and e.error}
        if not args.json and sys.stderr.isatty():
            print(file=sys.stderr)
        recs = errors + records(services, ids, notes)
    finally:
        services.close()
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
