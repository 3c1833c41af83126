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
from pathlib import Path
from typing import Any

from app.commands.cluster_opt import add_cluster_option, open_cluster


def add_parser(sub: Any) -> None:
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


def library_roots(catalog_arg: str | None) -> list[Path]:
    """Library folders of the catalog, if one exists (never creates a catalog)."""
    from db.catalog import Catalog, default_catalog_location, sqlite_file, to_url

    loc = catalog_arg or default_catalog_location()
    if "://" not in loc and not Path(loc).expanduser().exists():
        return []
    f = sqlite_file(to_url(loc))
    if f is not None and not f.exists():
        return []
    from engine.export.exporter import library_roots as roots_of

    cat = Catalog.open(loc)
    try:
        return roots_of(cat)
    finally:
        cat.close()


def defect_params_for(catalog_arg: str | None, files: list[str]) -> dict[str, dict[str, Any]]:
    """The ``defects`` stage parameters of each file that is in the catalog and whose camera has
    undismissed defects (never creates a catalog)."""
    import os

    from db.catalog import Catalog, default_catalog_location, sqlite_file, to_url

    loc = catalog_arg or default_catalog_location()
    if "://" not in loc and not Path(loc).expanduser().exists():
        return {}
    f = sqlite_file(to_url(loc))
    if f is not None and not f.exists():
        return {}
    from engine.enhance.defects import stage_params
    from engine.library import Library

    cat = Catalog.open(loc)
    try:
        ids = Library(cat).ids_for_paths([os.path.realpath(x) for x in files])
        out: dict[str, dict[str, Any]] = {}
        for x in files:
            pid = ids.get(os.path.realpath(x))
            if pid is not None:
                params = stage_params(cat, pid)
                if params is not None:
                    out[x] = params
        return out
    finally:
        cat.close()


def run(args: argparse.Namespace) -> int:
    from engine.core.paths import display_path
    from engine.enhance.pipeline import StageUnavailable, parse_ops
    from engine.enhance.recipes import ModelGone
    from engine.enhance.render import RenderCache, Renderer
    from engine.export.exporter import (
        EnvironmentFailure,
        OutputDirError,
        check_out_dir,
        check_template,
        normalise_format,
        recover_folder,
    )
    from engine.export.files import enhance_file

    try:
        ops = parse_ops(args.ops)
        fmt = normalise_format(args.format)
        check_template(args.template)
    except ValueError as e:
        return _usage(str(e))
    if not 0.0 <= args.strength <= 1.0:
        return _usage(f"--strength must be between 0 and 1, got {args.strength}")
    if args.face_w is not None and not 0.0 <= args.face_w <= 1.0:
        return _usage(f"--face-w must be between 0 and 1, got {args.face_w}")
    if args.face_w is not None and getattr(args, "cluster", None):
        return _usage("--face-w is not supported with --cluster yet (the cluster uses the default)")
    if fmt == "jpeg" and args.bits != 8:
        return _usage("JPEG is 8 bit only; use --format png or tiff with --bits 16")
    if not 1 <= args.quality <= 100:
        return _usage("--quality must be 1..100")
    if getattr(args, "cluster", None):
        from engine.cluster import ClusterUnavailable, import_ray

        try:
            import_ray()  # before any work: a missing extra is said at once
        except ClusterUnavailable as e:
            return _usage(f"--cluster: {e}")
    try:
        out = check_out_dir(Path(args.out), library_roots(args.catalog))
    except OutputDirError as e:
        print(f"photolift enhance: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the catalog could not be read: say so, do not guess
        print(f"photolift enhance: cannot read the catalog to check the output folder: {e}", file=sys.stderr)
        return 1
    recover_folder(out)  # temporary files of a killed run are removed
    defect_params: dict[str, dict[str, Any]] = {}
    if "defects" in ops:
        try:
            defect_params = defect_params_for(args.catalog, list(args.files))
        except Exception as e:  # the catalog could not be read: say so, do not guess
            print(f"photolift enhance: cannot read the catalog for the defects stage: {e}", file=sys.stderr)
            return 1
    cluster = open_cluster(args, "enhance")
    if isinstance(cluster, int):
        return cluster
    paths = [Path(f) for f in args.files]
    if cluster is not None:  # one file per task on the cluster; results in the order given
        from engine.cluster import enhance_files

        results = enhance_files(cluster, paths, out, ops, args.strength, fmt, args.quality, args.bits,
                                args.template, args.force, defects=[defect_params.get(str(f)) for f in args.files])
    else:
        renderer = Renderer(cache=RenderCache())
        results = (enhance_file(path, out, renderer, ops, args.strength, fmt, args.quality, args.bits,
                                args.template, args.force, defects=defect_params.get(str(f)), face_w=args.face_w)
                   for path, f in zip(paths, args.files, strict=True))
    n_ok = n_bad = 0
    try:
        while True:
            try:
                res = next(results, None)
            except (StageUnavailable, ModelGone) as e:
                print(f"photolift enhance: {e}", file=sys.stderr)
                return 1
            except EnvironmentFailure as e:
                print(json.dumps({"path": display_path(paths[n_ok + n_bad]), "status": "error", "error": str(e)}),
                      flush=True)
                print(f"photolift enhance: {e}", file=sys.stderr)
                return 1
            if res is None:
                break
            print(json.dumps(res.to_json()), flush=True)
            if res.status == "error":
                n_bad += 1
            else:
                n_ok += 1
    finally:
        if cluster is not None:
            cluster.close()
    print(f"enhance: {n_ok} handled, {n_bad} failed; output in {out}", file=sys.stderr)
    return 0
