"""A read-only glance at a SQLite catalog with the standard library, before the catalog module
(SQLAlchemy, about a third of a command's start-up) is imported.

Used by a starting command to tell which files of a folder the catalog already holds unchanged,
so that it can begin decoding the others at once (:mod:`engine.ingest.early`). Anything
unexpected (a server URL, a catalog being migrated, another schema, a locked or damaged file)
answers ``None``: the caller then simply does not start early, and the real catalog code, which
reports such problems properly, runs as always.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from db.location import default_catalog_location, sqlite_file


def catalog_file(url_or_path: str | None) -> Path | None:
    """The SQLite file of a ``--catalog`` value (None: the default catalog); None for a server URL."""
    loc = url_or_path or default_catalog_location()
    if "://" in loc:
        return sqlite_file(loc)
    return Path(loc).expanduser().absolute()


def known_files(db_file: Path, root: str) -> dict[bytes, tuple[int, int]] | None:
    """``{path_bytes: (size, mtime_ns)}`` of the catalog's photos under ``root`` (an absolute,
    real path); ``{}`` when the catalog does not exist yet; ``None`` when it cannot be read here."""
    if not db_file.exists():
        return {}
    rb = os.fsencode(root).rstrip(os.sep.encode()) + os.sep.encode()
    try:
        con = sqlite3.connect(f"{db_file.as_uri()}?mode=ro", uri=True, timeout=0.2)
    except (sqlite3.Error, ValueError):
        return None
    try:
        cols = {r[1] for r in con.execute("PRAGMA table_info(photos)")}
        if not {"path_bytes", "size", "mtime_ns"} <= cols:
            return None
        # a range on the unique index: every path that starts with root + separator
        hi = rb[:-1] + bytes([rb[-1] + 1])
        rows = con.execute("SELECT path_bytes, size, mtime_ns FROM photos WHERE path_bytes >= ? AND path_bytes < ?",
                           (rb, hi)).fetchall()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return {bytes(p): (int(s), int(m)) for p, s, m in rows}


__all__ = ["catalog_file", "known_files"]
