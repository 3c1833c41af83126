"""Catalog migrations by Alembic, run at every open, one transaction, after a backup.

The revisions live in ``db/alembic/versions/`` (package data, so an installed wheel has them);
this module runs them programmatically (no ``alembic.ini`` on the user's side):

* **A new, empty catalog** runs every revision from the baseline (``0001``, explicit DDL of
  schema version 1, not ``create_all``), so a fresh catalog is made by the same steps an old one
  takes, and those steps are tested on every open of every test catalog.
* **A catalog of the released, hand-written migrations** (no ``alembic_version`` table, only
  ``catalog_info['schema_version']`` = 1 or 2) is recognised, stamped at the revision equal to
  its version (:data:`LEGACY_REVISIONS`) and upgraded from there.
* **An Alembic catalog** below head is upgraded. Each revision also writes the integer
  ``schema_version``, so an old photolift refuses a migrated catalog with its own message.
* **A newer catalog** (a revision this code does not know, or a schema version above the
  legacy ones without Alembic's table) is refused with :class:`CatalogTooNew`, untouched.

Before any step runs on an existing SQLite catalog it is copied to ``<file>.v<old>-<stamp>.bak``
with SQLite's online backup API. On a server database (PostgreSQL) photolift cannot copy the
database: the log says so, and the upgrade runs in one transaction, which PostgreSQL rolls back
whole if a step fails (DDL is transactional there, and on SQLite the way we drive it).
Concurrent openers are serialised by the writer's lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
an advisory lock, :mod:`db.catalog`); the state is read again under the lock.

To change the schema: edit ``db/schema.py``, bump ``SCHEMA_VERSION``, and add
``db/alembic/versions/rNNNN_<what>.py`` (copy the newest; ``down_revision`` = the previous id;
``alembic revision --autogenerate`` drafts it from an ``alembic.ini`` whose ``script_location``
is ``db/alembic`` and whose ``sqlalchemy.url`` is a scratch catalog at head). Make it write
``schema_version``. ``tests/test_migrations.py`` checks that a catalog migrated from empty,
from version 1 and from version 2 all equal ``db/schema.py`` on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from db.catalog import CatalogError, CatalogTooNew, safe_url, sqlite_file
from db.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

VERSION_KEY = "schema_version"
APP_VERSION_KEY = "app_version"
SCRIPT_LOCATION = Path(__file__).with_name("alembic")

# The newest revision in db/alembic/versions (tests/test_migrations.py checks it against Alembic's
# own head). A catalog already there opens without importing Alembic at all: that import is about
# a quarter of a second, and every command start pays it otherwise.
HEAD_REVISION = "0006"

# schema_version written by the hand-written migrations (photolift <= 0.1) -> the equal revision
LEGACY_REVISIONS = {1: "0001", 2: "0002"}


def app_version() -> str:
    try:
        from importlib.metadata import version

        return version("photolift")
    except Exception:
        return "unknown"


@dataclass(frozen=True)
class CatalogState:
    """What a database holds, as far as migrations are concerned."""

    empty: bool
    revision: str | None  # Alembic's, None before Alembic (or not a catalog)
    schema_version: int | None  # catalog_info['schema_version'], if readable
    app: str | None  # the photolift that last migrated it

    @property
    def version_label(self) -> str:
        return str(self.schema_version) if self.schema_version is not None else (self.revision or "0")


def read_state(conn: Connection) -> CatalogState:
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return CatalogState(True, None, 0, None)
    revision = None
    if "alembic_version" in tables:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    schema_version = app = None
    if "catalog_info" in tables:
        info: dict[str, str] = dict(conn.execute(text("SELECT key, value FROM catalog_info WHERE key IN (:a, :b)"),
                                 {"a": VERSION_KEY, "b": APP_VERSION_KEY}).all())
        try:
            schema_version = int(info[VERSION_KEY]) if VERSION_KEY in info else None
        except ValueError:
            schema_version = None
        app = info.get(APP_VERSION_KEY)
    return CatalogState(False, revision, schema_version, app)


def read_version(conn: Connection) -> int | None:
    """The catalog's integer schema version; 0 for an empty database; None if not a photolift catalog."""
    st = read_state(conn)
    return 0 if st.empty else st.schema_version


def script_directory(script_location: Path | None = None) -> ScriptDirectory:
    if script_location is None:
        return _shipped_scripts()
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(None, script_location))


@functools.lru_cache(maxsize=1)
def _shipped_scripts() -> ScriptDirectory:
    # parsed once per process, and only when a catalog is not at HEAD_REVISION
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(None, None))


def _config(connection: Connection | None, script_location: Path | None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location or SCRIPT_LOCATION))
    cfg.attributes["connection"] = connection
    return cfg


def _set_info(conn: Connection, key: str, value: str) -> None:
    conn.execute(text("DELETE FROM catalog_info WHERE key = :k"), {"k": key})
    conn.execute(text("INSERT INTO catalog_info (key, value) VALUES (:k, :v)"), {"k": key, "v": value})


def backup_sqlite(db_file: Path, old_version: str) -> Path:
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


def _plan(st: CatalogState, script: ScriptDirectory, where: str) -> str | None:
    """The revision to stamp first (legacy catalogs), "" for none; None when already at head.
    Raises for a newer catalog or a database that is not a photolift catalog."""
    head = script.get_current_head()
    known = {s.revision for s in script.walk_revisions()}
    if st.empty:
        return ""
    if st.revision is not None:
        # either sign of a newer photolift: a revision we lack, or an integer version above ours
        if st.revision not in known or (st.schema_version or 0) > SCHEMA_VERSION:
            raise _too_new(st, where)
        return None if st.revision == head else ""
    if st.schema_version is None:
        raise CatalogError(f"{where} is not a photolift catalog (it has tables but no schema version); "
                           "choose another file with --catalog")
    if st.schema_version in LEGACY_REVISIONS:
        return LEGACY_REVISIONS[st.schema_version]
    if st.schema_version > max(LEGACY_REVISIONS):
        raise _too_new(st, where)
    raise CatalogError(f"{where} has an unknown catalog schema version {st.schema_version}; "
                       "choose another file with --catalog")


def _too_new(st: CatalogState, where: str) -> CatalogTooNew:
    return CatalogTooNew(
        f"The catalog {where} was written by a newer photolift (catalog schema version {st.version_label}"
        f"{', app ' + st.app if st.app else ''}); this photolift ({app_version()}) understands "
        f"schema version {SCHEMA_VERSION} at most. Upgrade photolift, or use another catalog with --catalog. "
        "The catalog was not changed.")


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """One connection, one write transaction under the writer's cross-process lock. On SQLite,
    foreign keys are off while migrating (a batch step copies and drops a table, which with them
    on would cascade deletes into its children) and checked before the commit."""
    with engine.connect() as conn:
        conn.execution_options(photolift_write=True)  # BEGIN IMMEDIATE / the advisory lock (db.catalog)
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:  # outside any transaction, where SQLite honours it
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                # (only new dangling rows fail the upgrade: an old catalog's own are not ours to judge here)
                before = set(conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()) if sqlite else set()
                yield conn
                if sqlite:
                    bad = set(conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()) - before
                    if bad:
                        raise CatalogError(f"a migration left rows that refer to missing rows: {sorted(bad)[:5]}")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def upgrade(engine: Engine, url: str, script_location: Path | None = None) -> CatalogState:
    """Bring the catalog to the newest revision (see the module doc); returns its state before."""
    where = str(sqlite_file(url) or safe_url(url))
    with engine.connect() as conn:
        before = read_state(conn)
    if (script_location is None and before.revision == HEAD_REVISION
            and (before.schema_version or 0) <= SCHEMA_VERSION):
        return before  # the common case: at head, no Alembic needed
    script = script_directory(script_location)
    if _plan(before, script, where) is None:
        return before
    db_file = sqlite_file(url)
    if not before.empty:
        if db_file is not None and db_file.exists():
            backup_sqlite(db_file, before.version_label)
        else:
            log.warning("catalog %s is on a database server: photolift cannot back it up (use pg_dump); "
                        "migrating it in one transaction", where)
    with _migration_connection(engine) as conn:
        st = read_state(conn)  # again, under the lock: another process may have migrated meanwhile
        stamp = _plan(st, script, where)
        if stamp is None:
            return before
        from alembic import command

        cfg = _config(conn, script_location)
        if stamp:
            log.info("catalog %s: schema version %s from before Alembic, stamped as revision %s",
                     where, st.schema_version, stamp)
            command.stamp(cfg, stamp)
        start = stamp or st.revision or "empty"
        log.info("migrating catalog %s: revision %s -> %s", where, start, script.get_current_head())
        command.upgrade(cfg, "head")
        _set_info(conn, APP_VERSION_KEY, app_version())
    return before


__all__ = ["HEAD_REVISION", "LEGACY_REVISIONS", "SCRIPT_LOCATION", "CatalogState", "app_version", "backup_sqlite", "read_state",
           "read_version", "upgrade"]
