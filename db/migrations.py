"""Versioned catalog migrations, one version at a time, after a backup.

The schema version lives in ``catalog_info['schema_version']`` (works on any SQLAlchemy back end).
``MIGRATIONS[n]`` takes a catalog at version ``n - 1`` to version ``n`` inside one transaction;
version 1 is the initial schema. A fresh (empty) database is created at the current schema
directly (``create_all``) and stamped with the current version; the steps run only on catalogs
that exist (so a step's ``ALTER TABLE ... ADD COLUMN`` never meets a column ``create_all`` made). An existing SQLite catalog below the current version is copied to
``<file>.v<old>-<timestamp>.bak`` with SQLite's online backup API before the first step runs, so
a failed upgrade can always be undone by hand. A catalog whose version is newer than this
code knows is refused with :class:`CatalogTooNew` and left untouched (qutebrowser's UserVersion
and beets' migrations behave the same way).

To change the schema: edit ``db/schema.py``, bump ``SCHEMA_VERSION``, and add
``MIGRATIONS[new_version]`` doing the equivalent DDL with ``op``-free SQL (``ALTER TABLE ... ADD
COLUMN`` or the create-copy-rename dance for SQLite), plus a test that upgrades a version-(n-1) file.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

from db.catalog import CatalogError, CatalogTooNew, sqlite_file
from db.schema import SCHEMA_VERSION, Base

log = logging.getLogger(__name__)

VERSION_KEY = "schema_version"
APP_VERSION_KEY = "app_version"


def app_version() -> str:
    try:
        from importlib.metadata import version

        return version("photolift")
    except Exception:
        return "unknown"


def _v1_initial(conn: Connection) -> None:
    """Version 1: the initial schema (every table of docs/ARCHITECTURE.md)."""
    Base.metadata.create_all(conn)


def _v2_export_path_bytes(conn: Connection) -> None:
    """Version 2: exports.out_path_bytes, the exact file name of an export (non-UTF-8 names)."""
    conn.execute(text("ALTER TABLE exports ADD COLUMN out_path_bytes BLOB"))


# target version -> step from (target - 1)
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _v1_initial,
    2: _v2_export_path_bytes,
}


def read_version(conn: Connection) -> int | None:
    """The catalog's schema version; 0 for an empty database; None if it is not a photolift catalog."""
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return 0
    if "catalog_info" not in tables:
        return None
    row = conn.execute(text("SELECT value FROM catalog_info WHERE key = :k"), {"k": VERSION_KEY}).first()
    if row is None:
        return None
    try:
        return int(row[0])
    except ValueError:
        return None


def _set_info(conn: Connection, key: str, value: str) -> None:
    conn.execute(text("DELETE FROM catalog_info WHERE key = :k"), {"k": key})
    conn.execute(text("INSERT INTO catalog_info (key, value) VALUES (:k, :v)"), {"k": key, "v": value})


def backup_sqlite(db_file: Path, old_version: int) -> Path:
    """Copy a live SQLite catalog (WAL included) next to itself; returns the backup path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    dest = db_file.with_name(f"{db_file.name}.v{old_version}-{stamp}.bak")
    src = sqlite3.connect(str(db_file))
    try:
        dst = sqlite3.connect(str(dest))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    log.info("catalog backed up to %s before migrating", dest)
    return dest


def upgrade(engine: Engine, url: str, target: int = SCHEMA_VERSION) -> int:
    """Bring the catalog to ``target``; returns the version it had before."""
    with engine.connect() as conn:
        current = read_version(conn)
        stored_app = None
        if current:
            row = conn.execute(text("SELECT value FROM catalog_info WHERE key = :k"),
                               {"k": APP_VERSION_KEY}).first()
            stored_app = row[0] if row else None
    where = sqlite_file(url) or url
    if current is None:
        raise CatalogError(f"{where} is not a photolift catalog (it has tables but no schema version); "
                           "choose another file with --catalog")
    if current > target:
        raise CatalogTooNew(
            f"The catalog {where} was written by a newer photolift (catalog schema version {current}"
            f"{', app ' + stored_app if stored_app else ''}); this photolift ({app_version()}) understands "
            f"schema version {target} at most. Upgrade photolift, or use another catalog with --catalog. "
            "The catalog was not changed.")
    if current == target:
        return current
    db_file = sqlite_file(url)
    if current > 0 and db_file is not None and db_file.exists():
        backup_sqlite(db_file, current)
    elif current > 0:
        log.warning("catalog %s is not a SQLite file: back it up yourself; migrating in place", url)
    if current == 0 and target == SCHEMA_VERSION:
        # A new, empty catalog is created at the current schema in one step (``create_all`` of
        # db/schema.py) and stamped; the upgrade steps are for catalogs that already exist.
        with engine.begin() as conn:
            _v1_initial(conn)
            _set_info(conn, VERSION_KEY, str(target))
            _set_info(conn, APP_VERSION_KEY, app_version())
        return current
    for version in range(current + 1, target + 1):
        step = MIGRATIONS[version]
        log.info("migrating catalog %s: schema version %d -> %d (%s)", where, version - 1, version,
                 (step.__doc__ or "").strip().splitlines()[0] if step.__doc__ else step.__name__)
        with engine.begin() as conn:
            step(conn)
            _set_info(conn, VERSION_KEY, str(version))
            _set_info(conn, APP_VERSION_KEY, app_version())
    return current
