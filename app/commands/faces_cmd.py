"""``photolift faces DIR [--json] [--all]``: find the faces in DIR's photos.

Indexes DIR (incrementally), then runs the face detector of the ``faces`` stage
(``models/face_detector.onnx``) on every photo not examined yet, on the same screen view the
stage plans on, and stores the boxes in the catalog (the app's Faces filter reads them; a photo
is examined again when its file changes). Prints the photos with faces: with ``--json`` one
object per photo, ``id``, ``path``, ``faces`` (count), ``boxes`` (``[x0, y0, x1, y1]`` in 0..1 of
the upright photo) and ``scores`` (the detector's); ``--all`` lists the examined photos without
faces too. Restoring them is ``photolift enhance --ops restore,faces``.

Exit codes: 0 when the scan ran (unreadable photos are reported on stderr), 2 for usage errors
(no such folder), 1 when the command failed (no detector installed, catalog unusable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from app.commands.index_cmd import StderrProgress, index_folder, open_services, stdout_closed
from app.services import CommandFailed


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("faces", help="find the faces in DIR's photos",
                              description="Find the faces in DIR's photos (the faces stage's detector) and list the "
                                          "photos that have some. One JSON object per photo with --json.")
    p.add_argument("dir", help="folder of photos")
    p.add_argument("--json", action="store_true", help="one JSON object per photo (JSON lines)")
    p.add_argument("--all", action="store_true", help="list the photos without faces too")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.dir):
        what = "not a folder" if os.path.exists(args.dir) else "no such folder"
        print(f"photolift faces: {what}: {args.dir}", file=sys.stderr)
        return 2
    services = open_services(args)
    if services is None:
        return 1
    try:
        if index_folder(services, args.dir, as_json=False, quiet=True, out=sys.stderr) is None:
            return 2
        root = os.path.realpath(args.dir)
        try:
            events = services.find_faces(root, progress=StderrProgress(args.quiet, verb="scanned"))
        except CommandFailed as e:
            print(f"photolift faces: {e}", file=sys.stderr)
            return 1
        for ev in events:
            if ev.error:
                print(f"photolift faces: cannot examine {ev.path}: {ev.error}", file=sys.stderr)
        try:
            for rec in services.face_records(root, with_none=args.all):
                if args.json:
                    print(json.dumps(rec, ensure_ascii=False))
                else:
                    print(f"{rec['faces']:3d} face{' ' if rec['faces'] == 1 else 's'}  {rec['path']}")
            sys.stdout.flush()
        except BrokenPipeError:
            return stdout_closed()
        return 0
    finally:
        services.close()
