"""``photolift rank DIR [--top N] [--json]``: the photos under DIR, most improvable first.

Indexes DIR first (incrementally). If the assessor is available (``engine.assess.scoring`` importable and
its model file present), photos without a current score are scored before ranking; otherwise the
score fields stay null (never invented) and the order falls back to the catalog's (nulls last,
then by id). ``--json`` prints one object per photo per DESIGN.md's score/rank contract.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from app.commands.cluster_opt import add_cluster_option, open_cluster
from app.commands.index_cmd import StderrProgress, index_folder, open_catalog, stdout_closed
from db.catalog import Catalog
from engine.library import Library

# A hook that scores the given photo ids; returns a message when it could not (no model...).
ScoreHook = Callable[[Catalog, list[int], bool], str | None]


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("rank", help="index DIR if needed and list its photos by improvability")
    p.add_argument("dir", help="folder of photos")
    p.add_argument("--top", type=int, default=None, metavar="N", help="only the N most improvable")
    p.add_argument("--json", action="store_true", help="one JSON object per photo (JSON lines)")
    p.add_argument("--no-score", action="store_true", help="rank by stored scores only; do not score")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add_cluster_option(p)


def score_with_assessor(cat: Catalog, ids: list[int], quiet: bool, cluster: Any = None) -> str | None:
    """Score ``ids`` with engine.assess.scoring if it and its model exist; else say why not. With a
    ``cluster`` (:class:`engine.cluster.Cluster`) the scoring runs there."""
    try:
        from engine.assess import scoring
    except ImportError:
        return "the assessor is not available in this build; score fields are null"
    try:
        scorer = scoring.get_scorer()
    except (FileNotFoundError, OSError) as e:
        return f"no assessor model ({e}); score fields are null"
    if cluster is not None:
        from engine.cluster import score_photos

        events = score_photos(cluster, scorer, cat, ids, progress=StderrProgress(quiet))
    else:
        events = scorer.score_photos(cat, ids, progress=StderrProgress(quiet))
    for _ in events:
        pass
    return None


def run(args: argparse.Namespace, score_hook: ScoreHook | None = score_with_assessor) -> int:
    if args.top is not None and args.top < 0:
        print("photolift: --top must be >= 0", file=sys.stderr)
        return 2
    cluster = None
    hook = score_hook
    if getattr(args, "cluster", None) and score_hook is score_with_assessor and not args.no_score:
        cluster = open_cluster(args, "rank")
        if isinstance(cluster, int):
            return cluster

        def hook(cat: Catalog, ids: list[int], quiet: bool) -> str | None:
            return score_with_assessor(cat, ids, quiet, cluster)

    try:
        return _run(args, hook)
    finally:
        if cluster is not None:
            cluster.close()


def _run(args: argparse.Namespace, score_hook: ScoreHook | None) -> int:
    cat = open_catalog(args)
    if cat is None:
        return 1
    try:
        lib = Library(cat)
        counts = index_folder(lib, args.dir, as_json=False, quiet=args.quiet, out=sys.stderr)
        if counts is None:
            return 2
        if score_hook is not None and not args.no_score:
            todo = lib.photo_ids(args.dir, {"status": "ok", "scored": False})
            if todo:
                why = score_hook(cat, todo, args.quiet)
                if why and not args.quiet:
                    print(f"photolift: {why}", file=sys.stderr)
        ids = lib.photo_ids(args.dir, {"status": ["ok", "error"]}, sort="improvability")
        if args.top is not None:
            ids = ids[:args.top]
        for rec in (r for i in range(0, len(ids), 1000) for r in lib.photo_records(ids[i:i + 1000])):
            if args.json:
                print(json.dumps(rec))
            else:
                imp = "-" if rec["improvability"] is None else f"{rec['improvability']:+.2f}"
                q = "-" if rec["quality"] is None else f"{rec['quality']:.1f}"
                tail = f"  [{rec['error']}]" if rec["status"] == "error" else ""
                flag = "recommended" if rec["recommended"] else ""
                why = ",".join(rec["reasons"] or [])
                print(f"{imp:>7} {q:>5}  {flag:11s}  {why:28s}  {rec['path']}{tail}")
        sys.stdout.flush()
        return 0
    except BrokenPipeError:
        return stdout_closed()
    finally:
        cat.close()
