"""``photolift export DIR --to OUTDIR [--recommended | --min-score X | --all] [--format jpeg|png|tiff]
[--quality Q] [--bits 8|16] [--template '{name}_enhanced']``

Indexes DIR (incrementally), chooses photos, enhances the chosen photos that have no current
edit yet, and exports enhanced copies to OUTDIR, mirroring DIR's sub-folders:

* ``--recommended``: photos the assessor recommends (scored first where needed);
* ``--min-score X``: photos whose predicted improvability is at least X;
* ``--all``: every photo of DIR (works without an assessor; the gain is then not measured);
* neither: the photos of DIR that already have an enhancement (made in the GUI or earlier).

Enhancing here is a batch: a result whose measured gain is <= 0 is not applied, and that photo
is reported as ``skipped`` (the originals are not re-encoded under an "enhanced" name). A photo
already exported to the same folder with the same edit and format is skipped, so rerunning an
interrupted export completes it without duplicates.

One JSON object per photo on stdout: ``path``, ``status`` (``ok``, ``skipped``, ``error``),
``error``, ``out_path``, ``measured_gain``, ``enhanced``. Exit codes: 0 when the command did
its job (bad photos reported), 2 for usage errors, 1 when it could not run (output folder
unusable or inside the library, no assessor for ``--recommended``, disk full).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.commands.cluster_opt import add_cluster_option, open_cluster


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export enhanced copies of a folder's photos",
                       description="Export enhanced copies of photos of DIR to --to (never overwriting; "
                                   "originals untouched). Prints one JSON object per photo.")
    p.add_argument("dir", metavar="DIR", help="library folder")
    p.add_argument("--to", required=True, metavar="OUTDIR", help="output folder (outside the library)")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--recommended", action="store_true", help="photos the assessor recommends")
    sel.add_argument("--min-score", type=float, default=None, metavar="X",
                     help="photos with predicted improvability >= X (negative: --min-score=-1)")
    sel.add_argument("--all", action="store_true", help="every photo of DIR (no assessor needed)")
    p.add_argument("--format", default="jpeg", choices=["jpeg", "jpg", "png", "tiff", "tif"])
    p.add_argument("--quality", type=int, default=92, metavar="Q", help="JPEG quality 1..100 (default 92)")
    p.add_argument("--bits", type=int, default=8, choices=[8, 16], help="bits per channel (16: png/tiff only)")
    p.add_argument("--template", default="{name}_enhanced",
                   help="file name template; fields {name} {id} {gain} {ext} {date} {camera}")
    p.add_argument("--ops", default=None, metavar="LIST", help="stages for photos enhanced now (default all)")
    p.add_argument("--strength", type=float, default=1.0, metavar="S", help="0..1 for photos enhanced now")
    add_cluster_option(p)
    p.set_defaults(func=run)


def _usage(msg: str) -> int:
    print(f"photolift export: error: {msg}", file=sys.stderr)
    return 2


def _fail(msg: str) -> int:
    print(f"photolift export: {msg}", file=sys.stderr)
    return 1


def _stderr_progress(p: Any) -> None:
    if p.total:
        print(f"\r{p.message[:100]:<100}", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from db.catalog import Catalog, CatalogError
    from engine.enhance.edits import Editor
    from engine.enhance.pipeline import StageUnavailable, parse_ops
    from engine.export.exporter import (
        EnvironmentFailure,
        Exporter,
        OutputDirError,
        check_out_dir,
        check_template,
        library_roots,
        normalise_format,
    )
    from engine.library import Library

    try:
        fmt = normalise_format(args.format)
        check_template(args.template)
        ops = parse_ops(args.ops)
    except ValueError as e:
        return _usage(str(e))
    if fmt == "jpeg" and args.bits != 8:
        return _usage("JPEG is 8 bit only; use --format png or tiff with --bits 16")
    if not 1 <= args.quality <= 100:
        return _usage("--quality must be 1..100")
    if not 0.0 <= args.strength <= 1.0:
        return _usage(f"--strength must be between 0 and 1, got {args.strength}")
    root = os.path.realpath(args.dir)
    if not os.path.isdir(root):
        return _usage(f"not a folder: {args.dir}")
    if getattr(args, "cluster", None):
        from engine.cluster import ClusterUnavailable, import_ray

        try:
            import_ray()  # before any work: a missing extra is said at once
        except ClusterUnavailable as e:
            return _usage(f"--cluster: {e}")
    try:
        catalog = Catalog.open(args.catalog)
    except CatalogError as e:
        return _fail(str(e))
    cluster = None
    try:
        opened = open_cluster(args, "export")
        if isinstance(opened, int):
            return opened
        cluster = opened
        try:
            out = check_out_dir(Path(args.to), [*library_roots(catalog), Path(root)])
        except OutputDirError as e:
            return _fail(str(e))
        lib = Library(catalog)
        for _ in lib.index(root):
            pass
        readable: dict[str, Any] = {"status": "ok"}
        ids = lib.photo_ids(root, readable)
        gains: dict[int, float] = {}
        if args.recommended or args.min_score is not None:
            try:
                from engine.assess.scoring import get_scorer

                scorer = get_scorer()
            except Exception as e:
                return _fail(f"cannot choose photos by score: the assessor is not available ({e})")
            if cluster is not None:
                from engine.cluster import score_photos

                events = score_photos(cluster, scorer, catalog, ids, progress=_stderr_progress)
            else:
                events = scorer.score_photos(catalog, ids, progress=_stderr_progress)
            for _ in events:
                pass
            # the photos' current scores, as rank, score and the grid read them
            by_score = {"recommended": True} if args.recommended else {"min_improvability": args.min_score}
            chosen = lib.photo_ids(root, {**readable, **by_score})
        elif args.all:
            chosen = ids
        else:
            chosen = lib.photo_ids(root, {**readable, "has_recipe": True})
        if not chosen:
            if args.recommended or args.min_score is not None:
                why = ("no photo of this folder is recommended" if args.recommended
                       else f"no photo of this folder has a predicted improvability >= {args.min_score}")
            elif ids:
                why = (f"none of the {len(ids)} photos of this folder has been enhanced yet; choose photos with "
                       "--recommended, --min-score X or --all (they are enhanced, then exported)")
            else:
                why = "there are no readable photos in this folder"
            print(f"export: nothing to export: {why}", file=sys.stderr)
            return 0
        editor = Editor(catalog)
        exporter = Exporter(catalog, renderer=editor.renderer)
        edited = set(lib.photo_ids(root, {**readable, "has_recipe": True}))
        todo = [i for i in chosen if i not in edited]
        notes: dict[int, dict[str, Any]] = {}
        if todo:
            try:
                for r in editor.enhance_batch(todo, ops, args.strength, progress=_stderr_progress,
                                              apply_if_no_gain=False, cluster=cluster):
                    notes[r.photo_id] = {"measured_gain": r.measured_gain, "message": r.message,
                                         "enhance_error": r.error}
            except StageUnavailable as e:
                return _fail(str(e))
        for pid, info in notes.items():
            if info.get("measured_gain") is not None:
                gains[pid] = info["measured_gain"]
        n_ok = n_skip = n_err = 0
        stopped = False
        try:
            results = exporter.export(chosen, out, fmt=fmt, quality=args.quality, template=args.template,
                                      progress=_stderr_progress, bits=args.bits, only_enhanced=True,
                                      cluster=cluster)
            for res in results:
                d = res.to_json()
                note = notes.get(res.photo_id or -1, {})
                if d.get("measured_gain") is None:
                    d["measured_gain"] = note.get("measured_gain", gains.get(res.photo_id or -1))
                if note.get("message"):
                    d["message"] = note["message"]
                if res.status == "skipped" and note.get("enhance_error"):
                    d["status"], d["error"] = "error", f"could not enhance: {note['enhance_error']}"
                elif res.status == "skipped" and note.get("message") and res.error == "not enhanced":
                    d["error"] = f"not enhanced: {note['message']}"
                print(json.dumps(d), flush=True)
                n_ok += d["status"] == "ok"
                n_skip += d["status"] == "skipped"
                n_err += d["status"] == "error"
                stopped = stopped or res.fatal
        except OutputDirError as e:
            return _fail(str(e))
        print(file=sys.stderr)
        print(f"export: {n_ok} written, {n_skip} skipped, {n_err} failed; output in {out}", file=sys.stderr)
        return 1 if stopped else 0
    except EnvironmentFailure as e:
        return _fail(str(e))
    finally:
        if cluster is not None:
            cluster.close()
        catalog.close()
