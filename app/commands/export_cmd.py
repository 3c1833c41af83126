"""``photolift export DIR --to OUTDIR [--recommended | --min-score X | --all] [--format jpeg|png|tiff]
[--quality Q] [--bits 8|16] [--template '{name}_enhanced']``

Indexes DIR (incrementally), chooses photos, enhances the chosen photos that have no current
edit yet, and exports enhanced copies to OUTDIR, mirroring DIR's sub-folders:

* ``--recommended``: photos the assessor recommends (scored first where needed);
* ``--min-score X``: photos whose predicted improvability is at least X;
* ``--all``: every photo of DIR (works without an assessor; the gain is then not measured);
* neither: the photos of DIR that already have an enhancement (made in the GUI or earlier).

Enhancing here is a batch: a result whose measured gain is not above the quality model's noise
(``Guard.helped``; 0 without a calibration) is not applied, and that photo
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
from typing import Any

from app.commands.cluster_opt import add_cluster_option, check_cluster_option, open_cluster
from app.commands.index_cmd import open_services
from app.services import (
    CommandFailed,
    ExportOptions,
    Progress,
    Services,
    UsageError,
    enhance_stages,
    export_options,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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


def _stderr_progress(p: Progress) -> None:
    """One self-overwriting status line on a terminal; nothing when stderr is a file or a pipe
    (a log should not fill with a padded line per photo)."""
    if p.total and sys.stderr.isatty():
        print(f"\r{p.message[:100]:<100}", end="", file=sys.stderr, flush=True)


def _why_nothing(args: argparse.Namespace, n_readable: int) -> str:
    """Why no photo was chosen, and what to do about it."""
    if args.recommended:
        return "no photo of this folder is recommended"
    if args.min_score is not None:
        return f"no photo of this folder has a predicted improvability >= {args.min_score}"
    if n_readable:
        return (f"none of the {n_readable} photos of this folder has been enhanced yet; choose photos with "
                "--recommended, --min-score X or --all (they are enhanced, then exported)")
    return "there are no readable photos in this folder"


def run(args: argparse.Namespace) -> int:
    try:
        opts = export_options(args.format, args.quality, args.bits, args.template)
        ops = enhance_stages(args.ops, args.strength)
    except UsageError as e:
        return _usage(str(e))
    root = os.path.realpath(args.dir)
    if not os.path.isdir(root):
        return _usage(f"not a folder: {args.dir}")
    bad = check_cluster_option(args, "export")
    if bad is not None:
        return bad
    services = open_services(args)
    if services is None:
        return 1
    try:
        opened = open_cluster(args, "export")
        if isinstance(opened, int):
            return opened
        if opened is not None:
            services.attach_cluster(opened)
        return _export(args, services, root, opts, ops)
    except CommandFailed as e:
        return _fail(str(e))
    finally:
        services.close()


def _export(args: argparse.Namespace, services: Services, root: str, opts: ExportOptions, ops: list[str]) -> int:
    out = services.export_dir(args.to, root)
    for _ in services.index(root):  # rows, EXIF and thumbnails, as the GUI's index
        pass
    readable: dict[str, Any] = {"status": "ok"}
    ids = services.ids(root, readable)
    if args.recommended or args.min_score is not None:
        try:
            services.load_scorer()
        except CommandFailed as e:
            return _fail(f"cannot choose photos by score: the assessor is not available ({e})")
        for _ in services.score_ids(ids, progress=_stderr_progress):
            pass
        # the photos' current scores, by the one rule rank, score and the grid use
        by_score = services.recommended_filter() if args.recommended else {"min_improvability": args.min_score}
        chosen = services.ids(root, {**readable, **by_score})
    elif args.all:
        chosen = ids
    else:
        chosen = services.ids(root, {**readable, "has_recipe": True})
    if not chosen:
        print(f"export: nothing to export: {_why_nothing(args, len(ids))}", file=sys.stderr)
        return 0
    edited = set(services.ids(root, {**readable, "has_recipe": True}))
    todo = [i for i in chosen if i not in edited]
    notes: dict[int, dict[str, Any]] = {}
    for r in (services.enhance_ids(todo, ops, args.strength, progress=_stderr_progress, apply_if_no_gain=False)
              if todo else ()):
        notes[r.photo_id] = {"measured_gain": r.measured_gain, "message": r.message, "enhance_error": r.error}
    n_ok = n_skip = n_err = 0
    stopped = False
    for res in services.export_ids(chosen, out, opts, progress=_stderr_progress, only_enhanced=True):
        d = res.to_json()
        note = notes.get(res.photo_id or -1, {})
        if d.get("measured_gain") is None:
            d["measured_gain"] = note.get("measured_gain")
        if note.get("message"):
            d["message"] = note["message"]
        if res.status == "skipped" and note.get("enhance_error"):
            d["status"], d["error"] = "error", f"could not enhance: {note['enhance_error']}"
        elif res.status == "skipped" and note.get("message") and res.error == "not enhanced":
            d["error"] = f"not enhanced: {note['message']}"
        if sys.stderr.isatty():  # the status line is cleared before a result line takes its place
            print(f"\r{'':<100}\r", end="", file=sys.stderr, flush=True)
        print(json.dumps(d), flush=True)
        n_ok += d["status"] == "ok"
        n_skip += d["status"] == "skipped"
        n_err += d["status"] == "error"
        stopped = stopped or res.fatal
    if sys.stderr.isatty():
        print(f"\r{'':<100}\r", end="", file=sys.stderr)
    print(f"export: {n_ok} written, {n_skip} skipped, {n_err} failed; output in {out}", file=sys.stderr)
    return 1 if stopped else 0
