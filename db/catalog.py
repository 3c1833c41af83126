"""The catalog: one SQLAlchemy engine, one writer thread, short-lived readers.

Every write goes through :meth:`Catalog.write`, which runs the given function on a single
writer thread inside its own session and commits it (Home Assistant's recorder and beets do the
same): SQLite allows one writer at a time, and funnelling writes through one thread means a
worker never waits on a lock held by another of our own threads. Readers open a session in a
``with`` block (:meth:`Catalog.session`) and close it there; only ids and frozen dataclasses
leave it. On SQLite the connection runs in WAL mode with ``synchronous=NORMAL``: readers never
block the writer, and a crash or ``kill -9`` loses at most the last uncommitted transaction.

Across processes the writer takes the database's write lock when its transaction begins: on
SQLite ``BEGIN IMMEDIATE``; on PostgreSQL (``postgresql+psycopg://...``, a catalog several
people share) a transaction-scoped advisory lock (``pg_advisory_xact_lock``, one key for all
photolift writers), waited for at most ``BUSY_TIMEOUT_MS`` (``lock_timeout``) per attempt. So
one writer at a time holds across processes and machines on both, and a read-then-write in
``fn`` sees no other writer's changes in between. Readers take no lock on either.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DatabaseError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

# re-exported: where the catalog lives is db.location (light, for a starting command)
from db.location import APP_NAME, CATALOG_FILENAME, data_dir, default_catalog_location, sqlite_file, to_url  # noqa: F401

log = logging.getLogger(__name__)

T = TypeVar("T")



class CatalogError(Exception):
    """The catalog cannot be opened or used (not a catalog, unreadable, closed...)."""


class CatalogTooNew(CatalogError):
    """The catalog was written by a newer photolift; opening it could corrupt it."""


class CatalogBusy(CatalogError):
    """Another process kept the catalog's write lock for longer than we wait (bounded retry)."""


class CatalogFull(CatalogError):
    """The disk (or quota) under the catalog is full; the change was rolled back, nothing half-written."""


class CatalogDamaged(CatalogError):
    """The catalog file is damaged (failed integrity check, malformed page, I/O error)."""


# sqlite3 error texts -> what they mean for the user
_BUSY = ("database is locked", "database table is locked", "database is busy",
         # PostgreSQL: our lock_timeout, a deadlock victim, a serialisation failure
         "lock timeout", "deadlock detected", "could not serialize access")
# PostgreSQL connection problems: the server or the database named in the URL cannot be reached
_UNREACHABLE = ("connection refused", "could not connect", "connection failed", "could not translate host name",
                "password authentication failed", "no password supplied", "role \"",
                "server closed the connection", "connection is bad", "no such file or directory")
_FULL = ("database or disk is full", "disk quota exceeded", "no space left on device")
_DAMAGED = ("malformed", "file is not a database", "disk i/o error", "file is encrypted", "corrupt")


def explain(e: BaseException, where: object) -> CatalogError | None:
    """The :class:`CatalogError` that says, for people, what a database error means; None if
    it is not one we recognise (a programming error stays a traceback)."""
    if isinstance(e, CatalogError):
        return e
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    if not isinstance(e, DBAPIError | sqlite3.Error):
        return None  # only database errors: "corrupt image data" is not a damaged catalog
    orig = getattr(e, "orig", e)
    msg = str(orig).lower()
    if any(t in msg for t in _BUSY):
        return CatalogBusy(f"the catalog {where} is busy: another photolift process kept it locked for over "
                           f"{BUSY_TIMEOUT_MS * WRITE_ATTEMPTS / 1000:g} s. Nothing was lost; run the command again when the other one "
                           "has finished")
    if any(t in msg for t in _FULL):
        return CatalogFull(f"the disk holding the catalog {where} is full. The last change was rolled back and "
                           "nothing was half-written; free some space and run the command again (it resumes)")
    if any(t in msg for t in _DAMAGED):
        from db import backup  # local: backup imports this module

        return CatalogDamaged(backup.damage_message(where, str(orig)))
    if not isinstance(orig, sqlite3.Error) and (any(t in msg for t in _UNREACHABLE) or (
            msg.startswith(("connection", "fatal")) and "database" in msg and "does not exist" in msg)):
        return CatalogError(f"cannot reach the catalog {where}: {str(orig).strip().splitlines()[0]}. "
                            "Check the server, the database name and the credentials in --catalog")
    return None


def safe_url(url: str) -> str:
    """A URL for messages and logs: the password hidden; a file path stays as it is."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given (it has no password part)
        return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see _on_sqlite_begin),
    # so DDL in a migration is transactional too.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def _on_sqlite_begin(conn: Any) -> None:
    # The writer takes the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
    # reads and then writes fails at once with "database is locked", busy timeout or not, when
    # another process committed in between (SQLITE_BUSY_SNAPSHOT). Readers stay deferred.
    if conn.get_execution_options().get("photolift_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


# pg_advisory_xact_lock key of the catalog writer ("photolft" as a 64-bit integer)
PG_WRITE_LOCK_KEY = int.from_bytes(b"photolft", "big") & 0x7FFFFFFFFFFFFFFF


def _on_pg_begin(conn: Any) -> None:
    # PostgreSQL's equivalent of BEGIN IMMEDIATE: every photolift writer takes one advisory lock,
    # released at commit or rollback, and waits for it at most BUSY_TIMEOUT_MS (then "lock
    # timeout", which explain() turns into CatalogBusy after the bounded retry). Readers take none.
    if conn.get_execution_options().get("photolift_write"):
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(BUSY_TIMEOUT_MS)}")
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK_KEY})")


# How long a write waits for another process's write lock in all (busy timeout per attempt x
# attempts), reported in the log on each retry and in CatalogBusy at the end.
BUSY_TIMEOUT_MS = 15000
WRITE_ATTEMPTS = 4


_STOP = object()


class Catalog:
    """An open catalog. Create it with :meth:`Catalog.open`; close it with :meth:`close`."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(engine.execution_options(photolift_write=True), expire_on_commit=False)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._writer = threading.Thread(target=self._writer_loop, name="catalog-writer", daemon=True)
        self._writer.start()

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, url_or_path: str | os.PathLike[str] | None = None, *, migrate: bool = True,
             check: bool = True, backups: bool = True) -> Catalog:
        """Open (creating if needed) the catalog at a path or SQLAlchemy URL.

        ``None`` means ``PHOTOLIFT_CATALOG`` or the per-user default. An existing SQLite file is
        first checked (``PRAGMA quick_check``; :class:`CatalogDamaged` names the newest backup),
        then pending migrations run after a backup, then the daily rolling backup is taken if due
        (:mod:`db.backup`). Raises :class:`CatalogTooNew` for a catalog from a newer photolift and
        :class:`CatalogError` for a file that is not a photolift catalog.
        """
        from db import (
            backup,
            migrations,  # local: migrations imports this module
        )

        loc = default_catalog_location() if url_or_path is None else os.fspath(url_or_path)
        try:
            url = to_url(loc)
        except OSError as e:
            raise CatalogError(f"cannot create the catalog folder for {loc}: {e.strerror or e}") from e
        loc = safe_url(loc)
        db_file = sqlite_file(url)
        existed = db_file is not None and db_file.exists() and db_file.stat().st_size > 0
        if existed and check:  # SQLite only: a server checks its own pages (PostgreSQL: data checksums)
            assert db_file is not None
            backup.quick_check(db_file)
        engine = cls._make_engine(url)
        try:
            if migrate:
                migrations.upgrade(engine, url)
        except CatalogError:
            engine.dispose()
            raise
        except DatabaseError as e:
            engine.dispose()
            raise explain(e, loc) or CatalogError(f"cannot open catalog {loc}: {e.orig}") from e
        if existed and backups:
            assert db_file is not None
            backup.maybe_daily_backup(db_file)
        return cls(engine, url)

    @staticmethod
    def _make_engine(url: str) -> Engine:
        if is_sqlite(url):
            if sqlite_file(url) is None:  # in-memory: one shared connection
                engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
            else:
                engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _on_sqlite_connect)
            event.listen(engine, "begin", _on_sqlite_begin)
            return engine
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as e:
            raise CatalogError(f"the database driver for {safe_url(url)} is not installed ({e.name}); for "
                               "PostgreSQL install photolift with the 'postgres' extra (psycopg)") from e
        except ArgumentError as e:
            raise CatalogError(f"not a usable catalog URL: {safe_url(url)} ({e})") from e
        if engine.dialect.name == "postgresql":
            event.listen(engine, "begin", _on_pg_begin)
        return engine

    @property
    def path(self) -> Path | None:
        """The SQLite file, if the catalog is one."""
        return sqlite_file(self.url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql`` (SQLAlchemy's dialect name)."""
        return self.engine.dialect.name

    @property
    def where(self) -> str:
        """The catalog for messages: the file, or the URL without its password."""
        return str(self.path) if self.path is not None else safe_url(self.url)

    # -- reading ---------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A short-lived read session; do not write through it and do not keep ORM objects."""
        self._check_open()
        try:
            with self._sessions() as s:
                yield s
        except DatabaseError as e:
            err = explain(e, self.where)
            if err is not None:
                raise err from e
            raise

    # -- writing ---------------------------------------------------------------------------
    def write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` on the writer thread, commit, and return its result.

        Exceptions from ``fn`` roll the transaction back and are re-raised here. Returned ORM
        objects are detached (attributes loaded before commit stay readable); prefer ids.
        Called from the writer thread itself (nested), ``fn`` runs in a new session inline.
        """
        self._check_open()
        if threading.current_thread() is self._writer:
            return self._run_one(fn)
        fut: Future[T] = Future()
        self._queue.put((fn, fut))
        return fut.result()

    def _run_one(self, fn: Callable[[Session], T]) -> T:
        """Run one write transaction; retry (bounded, logged) while another process holds the lock.

        ``fn`` may run more than once, so it must only touch the session. Database errors that
        mean something to a user (busy, disk full, damaged) come back as :class:`CatalogError`.
        """
        where = self.where
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            with self._write_sessions() as s:
                try:
                    result = fn(s)
                    s.commit()
                    return result
                except DatabaseError as e:
                    s.rollback()
                    err = explain(e, where)
                    if isinstance(err, CatalogBusy) and attempt < WRITE_ATTEMPTS:
                        log.warning("catalog %s is busy (another photolift is writing); waiting, attempt %d of %d",
                                    where, attempt + 1, WRITE_ATTEMPTS)
                        continue
                    if err is not None:
                        raise err from e
                    raise
                except BaseException:
                    s.rollback()
                    raise
        raise AssertionError("unreachable")

    def _writer_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(self._run_one(fn))
            except BaseException as e:  # handed to the caller, never kills the writer
                fut.set_exception(e)

    # -- closing ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise CatalogError("catalog is closed")

    def close(self) -> None:
        """Finish queued writes, stop the writer thread and release the connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if threading.current_thread() is not self._writer:
            self._writer.join()
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({safe_url(self.url)!r})"
