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

from app.commands.cluster_opt import add_cluster_option, open_cluster
from app.commands.index_cmd import StderrProgress, index_folder, open_services, stdout_closed
from app.services import CommandFailed, Services

# A hook that scores the given photo ids; returns a message when it could not (no model...).
ScoreHook = Callable[[Services, list[int], bool], str | None]


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("rank", help="index DIR if needed and list its photos by improvability")
    p.add_argument("dir", help="folder of photos")
    p.add_argument("--top", type=int, default=None, metavar="N", help="only the N most improvable")
    p.add_argument("--json", action="store_true", help="one JSON object per photo (JSON lines)")
    p.add_argument("--no-score", action="store_true", help="rank by stored scores only; do not score")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add_cluster_option(p)


def score_with_assessor(services: Services, ids: list[int], quiet: bool) -> str | None:
    """Score ``ids`` with the assessor if its model exists (on the cluster when one is attached);
    else say why not."""
    try:
        services.load_scorer()
    except CommandFailed as e:
        return f"no assessor model ({e}); score fields are null"
    for _ in services.score_ids(ids, progress=StderrProgress(quiet, verb="scored")):
        pass
    return None


def run(args: argparse.Namespace, score_hook: ScoreHook | None = score_with_assessor) -> int:
    if args.top is not None and args.top < 0:
        print("photolift: --top must be >= 0", file=sys.stderr)
        return 2
    cluster = None
    if getattr(args, "cluster", None) and score_hook is not None and not args.no_score:
        opened = open_cluster(args, "rank")
        if isinstance(opened, int):
            return opened
        cluster = opened
    services = open_services(args)
    if services is None:
        if cluster is not None:
            cluster.close()
        return 1
    if cluster is not None:
        services.attach_cluster(cluster)  # closed with the services
    try:
        counts = index_folder(services, args.dir, as_json=False, quiet=args.quiet, out=sys.stderr)
        if counts is None:
            return 2
        if score_hook is not None and not args.no_score:
            todo = services.ids(args.dir, {"status": "ok", "scored": False})
            if todo:
                why = score_hook(services, todo, args.quiet)
                if why and not args.quiet:
                    print(f"photolift: {why}", file=sys.stderr)
        ids = services.ids(args.dir, {"status": ["ok", "error"]}, sort="improvability")
        if args.top is not None:
            ids = ids[:args.top]
        if not args.json and ids:
            # gain: the predicted gain in quality points of one-click enhance; quality: 1..10
            print(f"{'gain':>7} {'qual.':>5}  {'':11s}  {'why':28s}  path")
        for rec in (r for i in range(0, len(ids), 1000) for r in services.records(ids[i:i + 1000])):
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
        services.close()
