"""``photolift enhance FILE... --out DIR [--ops LIST] [--strength S]``

Renders the one-click enhancement of each file to a new file in DIR (the originals are only
read). One JSON object per file on stdout: ``path``, ``status`` (``ok``, ``skipped`` when the
measured gain was <= 0 and ``--force`` was not given, ``error``), ``error``, ``out_path``,
``measured_gain``, ``quality_before``, ``quality_after``, ``recipe``, ``message``.

Exit codes: 0 when every file was handled (bad files are reported), 2 for usage errors, 1 when
the command could not run (output folder unusable, a model missing, disk full).
"""

from __future__ import annotations

import argparse
import json
import sys

from app.commands.cluster_opt import add_cluster_option, check_cluster_option, open_cluster
from app.services import (
    CommandFailed,
    UsageError,
    WriteFailed,
    display_path,
    enhance_files,
    enhance_stages,
    export_options,
    files_defect_params,
    files_out_dir,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("enhance", help="render the one-click enhancement of files to new files",
                       description="Render the one-click enhancement of each FILE to a new file in --out. "
                                   "Originals are never modified. Prints one JSON object per file.")
    p.add_argument("files", nargs="+", metavar="FILE", help="photos to enhance")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the enhanced copies (created if needed)")
    p.add_argument("--ops", default=None, metavar="LIST",
                   help="comma-separated stages of the pipeline: defects, restore, faces, tone (default: "
                        "defects,restore,tone; defects corrects what `photolift defects` found for the file's "
                        "camera; faces restores detected faces and is opt-in)")
    p.add_argument("--strength", type=float, default=1.0, metavar="S", help="0..1, default 1")
    p.add_argument("--face-w", type=float, default=None, metavar="W",
                   help="the faces stage: 0 faithful .. 1 generated (default 0)")
    p.add_argument("--format", default="jpeg", choices=["jpeg", "jpg", "png", "tiff", "tif"])
    p.add_argument("--quality", type=int, default=92, metavar="Q", help="JPEG quality 1..100 (default 92)")
    p.add_argument("--bits", type=int, default=8, choices=[8, 16], help="bits per channel (16: png/tiff only)")
    p.add_argument("--template", default="{name}_enhanced", help="file name template (default {name}_enhanced)")
    p.add_argument("--force", action="store_true",
                   help="write the result even when the measured quality gain is zero or negative")
    add_cluster_option(p)
    p.set_defaults(func=run)


def _usage(msg: str) -> int:
    print(f"photolift enhance: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    try:
        ops = enhance_stages(args.ops, args.strength)
        opts = export_options(args.format, args.quality, args.bits, args.template)
    except UsageError as e:
        return _usage(str(e))
    if args.face_w is not None and not 0.0 <= args.face_w <= 1.0:
        return _usage(f"--face-w must be between 0 and 1, got {args.face_w}")
    if args.face_w is not None and getattr(args, "cluster", None):
        return _usage("--face-w is not supported with --cluster yet (the cluster uses the default)")
    bad = check_cluster_option(args, "enhance")
    if bad is not None:
        return bad
    catalog = getattr(args, "catalog", None)
    try:
        out = files_out_dir(args.out, catalog)  # (temporary files of a killed run are removed)
        defect_params = files_defect_params(list(args.files), catalog) if "defects" in ops else {}
    except CommandFailed as e:
        print(f"photolift enhance: {e}", file=sys.stderr)
        return 1
    cluster = open_cluster(args, "enhance")
    if isinstance(cluster, int):
        return cluster
    files = list(args.files)
    n_ok = n_bad = 0
    try:
        for res in enhance_files(files, out, ops, args.strength, opts, args.force, defect_params, cluster,
                                 face_w=args.face_w):
            print(json.dumps(res.to_json()), flush=True)
            if res.status == "error":
                n_bad += 1
            else:
                n_ok += 1
    except CommandFailed as e:
        if isinstance(e, WriteFailed) and n_ok + n_bad < len(files):  # the disk failed on this file
            print(json.dumps({"path": display_path(files[n_ok + n_bad]), "status": "error", "error": str(e)}),
                  flush=True)
        print(f"photolift enhance: {e}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.close()
    print(f"enhance: {n_ok} handled, {n_bad} failed; output in {out}", file=sys.stderr)
    return 0
