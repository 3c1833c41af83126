"""``photolift defects DIR [--json] [--rerun] [--dismiss ID | --restore ID]``: camera defects.

Indexes DIR (incrementally), then runs the defect detection (``engine.enhance.defects``) for the cameras
of DIR's photos, each over all the catalog's photos of that camera, or reads it back when the
camera's photos have not changed since it last ran (``--rerun`` examines them again). Prints one
JSON object per defect with ``--json``: ``camera`` (readable, make and model included), ``kind``
(``dust``, ``smudge``, ``line``, ``obstruction``, ``hot_pixel``, ``bias``), ``bbox``
``[x0, y0, x1, y1]`` in 0..1 of the photos' stored width and height (of the camera's most common
orientation; the whole frame for a bias), ``photos`` (photos of the series that show it),
``series`` (photos in the series), ``confidence``, plus ``id`` and ``dismissed``. Dismissed
defects are listed (``dismissed: true``) but not corrected. Without ``--json``, a line per camera.

Exit codes: 0 when the detection ran (cameras with too few photos are reported on stderr), 2 for
usage errors (no such folder), 1 when the command failed (catalog unusable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from app.commands.index_cmd import StderrProgress, index_folder, open_services, stdout_closed
from app.services import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("defects", help="find the camera defects (dust, lines, hot pixels, biases) of DIR's cameras",
                              description="Group the photos of DIR's cameras into series and find what each camera "
                                          "gets wrong in every photo. Prints one JSON object per defect with --json.")
    p.add_argument("dir", help="folder of photos")
    p.add_argument("--json", action="store_true", help="one JSON object per defect (JSON lines)")
    p.add_argument("--rerun", action="store_true", help="examine every camera again even if unchanged")
    p.add_argument("--dismiss", type=int, default=None, metavar="ID", help="dismiss the defect with this id")
    p.add_argument("--restore", type=int, default=None, metavar="ID", help="undo a dismissal")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _summary(kinds: list[str]) -> str:
    counts: dict[str, int] = {}
    for k in kinds:
        counts[k] = counts.get(k, 0) + 1
    names = {"dust": "dust spot", "smudge": "smudge", "line": "line", "obstruction": "obstruction",
             "hot_pixel": "hot pixel group", "bias": "bias"}
    return ", ".join(f"{n} {names.get(k, k)}{'s' if n > 1 and not names.get(k, k).endswith('s') else ''}"
                     for k, n in counts.items())


def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.dir):
        what = "not a folder" if os.path.exists(args.dir) else "no such folder"
        print(f"photolift defects: {what}: {args.dir}", file=sys.stderr)
        return 2
    services = open_services(args)
    if services is None:
        return 1
    try:
        if args.dismiss is not None or args.restore is not None:
            did = args.dismiss if args.dismiss is not None else args.restore
            try:
                services.dismiss_defect(did, args.dismiss is not None)
            except UsageError as e:
                print(f"photolift defects: {e}", file=sys.stderr)
                return 2
        counts = index_folder(services, args.dir, as_json=False, quiet=True, out=sys.stderr)
        if counts is None:
            return 2
        root = os.path.realpath(args.dir)
        reps = services.detect_defects(root, force=args.rerun, progress=StderrProgress(args.quiet, verb="examined"))
        small = services.small_series(root)
        try:
            for rep in reps:
                if args.json:
                    for rec in services.defect_records(rep):
                        print(json.dumps(rec))
                else:
                    live = [d.kind for d in rep.defects if not d.dismissed]
                    if live:
                        worst = max((d.photos for d in rep.defects if not d.dismissed), default=0)
                        print(f"{rep.camera}: {_summary(live)}, in up to {worst} of {rep.n_photos} photos")
                        for rec in services.defect_records(rep):
                            if not rec["dismissed"]:
                                b = ", ".join(f"{x:.3f}" for x in rec["bbox"])
                                print(f"  #{rec['id']} {rec['kind']:<11} [{b}]  in {rec['photos']} of "
                                      f"{rec['series']} photos, confidence {rec['confidence']:.2f}")
                    elif rep.n_photos >= services.min_series():
                        print(f"{rep.camera}: no defect found in {rep.n_photos} photos")
            sys.stdout.flush()
        except BrokenPipeError:
            return stdout_closed()
        if not args.quiet:
            for camera, n in small:
                print(f"photolift defects: {camera}: only {n} photos; a series needs "
                      f"{services.min_series()} to tell a defect from the scenes", file=sys.stderr)
        return 0
    finally:
        services.close()
