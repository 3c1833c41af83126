"""``photolift open [DIR]`` (and ``photolift`` alone): open the desktop app."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("open", help="open the GUI (on DIR, or on the last library)")
    p.add_argument("dir", nargs="?", default=None, help="folder of photos to open")


def run(args: argparse.Namespace) -> int:
    folder = getattr(args, "dir", None)
    if folder is not None and not os.path.isdir(folder):
        print(f"photolift: {folder} is not a folder", file=sys.stderr)
        return 2
    from app.main import run_gui  # Qt is imported only when the GUI is really wanted

    return run_gui(os.path.abspath(folder) if folder else None, getattr(args, "catalog", None))
