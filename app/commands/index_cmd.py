"""``photolift index DIR``: add or update a folder tree in the catalog.

Prints what changed (added/moved/missing counts, and every bad file with its reason) and a
summary; ``--json`` prints one JSON object per event instead. Progress goes to stderr. Bad files
do not fail the command (exit 0); a missing folder is a usage error (2); a catalog that cannot be
opened is a failure (1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from app.services import CatalogError, Progress, Services

if TYPE_CHECKING:
    from app.services import IndexEvent


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("index", help="add or update DIR in the catalog")
    p.add_argument("dir", help="folder of photos (scanned recursively)")
    p.add_argument("--json", action="store_true", help="print one JSON object per change (JSON lines)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def open_services(args: argparse.Namespace) -> Services | None:
    """The engine's façade on the catalog named by ``--catalog``/env/default, or print why it
    cannot be opened and return None."""
    try:
        return Services.open(getattr(args, "catalog", None))
    except CatalogError as e:
        print(f"photolift: {e}", file=sys.stderr)
        return None


class StderrProgress:
    """Progress on stderr: an updating line on a terminal, a line every ``every`` files otherwise."""

    def __init__(self, quiet: bool = False, every: int = 50, verb: str = "indexed") -> None:
        self.quiet = quiet
        self.verb = verb  # what the counted files went through: "indexed", "scored", ...
        self.tty = sys.stderr.isatty()
        self.every = every
        self._last_line = -1
        self._last_t = 0.0

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        if p.total is None:
            now = time.monotonic()
            if self.tty and now - self._last_t > 0.2:
                self._last_t = now
                print(f"\rscanning... {p.done} files found", end="", file=sys.stderr, flush=True)
            return
        if self.tty:
            now = time.monotonic()
            if (now - self._last_t > 0.1 and p.done < p.total) or (p.done == p.total and p.done != self._last_line):
                self._last_line = p.done
                self._last_t = now
                print(f"\r{self.verb} {p.done}/{p.total}", end="" if p.done < p.total else "\n", file=sys.stderr,
                      flush=True)
        elif p.done != self._last_line and (p.done // self.every != self._last_line // self.every
                                            or p.done == p.total):
            self._last_line = p.done
            print(f"{self.verb} {p.done}/{p.total}", file=sys.stderr, flush=True)


def event_json(ev: IndexEvent) -> dict[str, Any]:
    d: dict[str, Any] = {"event": ev.kind, "path": ev.path}
    if ev.photo_id is not None:
        d["id"] = ev.photo_id
    if ev.status:
        d["status"] = ev.status
    if ev.error:
        d["error"] = ev.error
    if ev.old_path:
        d["old_path"] = ev.old_path
    if ev.counts is not None:
        d["counts"] = ev.counts
    return d


def index_folder(services: Services, folder: str, as_json: bool, quiet: bool, out: TextIO | None = None,
                 score: bool = False) -> dict[str, int] | None:
    """Run the indexer (rows, EXIF, thumbnails; with ``score``, new and changed photos are scored
    from the same decode), reporting events; returns the counts, or None if the folder is unusable."""
    out = out or sys.stdout
    counts: dict[str, int] | None = None
    try:
        for ev in services.index(folder, progress=StderrProgress(quiet), score=score):
            if as_json:
                print(json.dumps(event_json(ev)), file=out, flush=ev.kind != "done")
            elif ev.kind in ("error", "skipped"):
                print(f"{ev.kind}: {ev.path}: {ev.error}", file=out)
            elif ev.kind == "moved":
                print(f"moved: {ev.old_path} -> {ev.path}", file=out)
            elif ev.kind in ("missing", "vanished"):
                print(f"{ev.kind}: {ev.path}", file=out)
            if ev.kind == "done":
                counts = ev.counts
    except (FileNotFoundError, NotADirectoryError) as e:
        print(f"photolift: {e}", file=sys.stderr)
        return None
    return counts


def stdout_closed() -> int:
    """``photolift rank DIR --json | head``: the reader left; stop quietly like other Unix tools."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def summary_line(c: dict[str, int]) -> str:
    return (f"{c['files']} files: {c['added']} added, {c['updated'] + c['touched']} updated, {c['moved']} moved, "
            f"{c['unchanged']} unchanged, {c['error']} bad, {c['missing']} missing")


def run(args: argparse.Namespace) -> int:
    services = open_services(args)
    if services is None:
        return 1
    try:
        counts = index_folder(services, args.dir, args.json, args.quiet)
        if counts is None:
            return 2
        if not args.json:
            print(summary_line(counts), flush=True)
        return 0
    except BrokenPipeError:
        return stdout_closed()
    finally:
        services.close()
