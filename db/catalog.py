"""The catalog: one SQLAlchemy engine, one writer thread, short-lived readers.

Every write goes through :meth:`Catalog.write`, which runs the given function on a single
writer thread inside its own session and commits it (Home Assistant's recorder and beets do the
same): SQLite allows one writer at a time, and funnelling writes through one thread means a
worker never waits on a lock held by another of our own threads. Readers open a session in a
``with`` block (:meth:`Catalog.session`) and close it there; only ids and frozen dataclasses
leave it. On SQLite the connection runs in WAL mode with ``synchronous=NORMAL``: readers never
block the writer, and a crash or ``kill -9`` loses at most the last uncommitted transaction.
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

import platformdirs
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

T = TypeVar("T")

APP_NAME = "photolift"
CATALOG_FILENAME = "catalog.sqlite"


class CatalogError(Exception):
    """The catalog cannot be opened or used (not a catalog, unreadable, closed...)."""


class CatalogTooNew(CatalogError):
    """The catalog was written by a newer photolift; opening it could corrupt it."""


def data_dir() -> Path:
    """The per-user data directory (catalog lives here)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_catalog_location() -> str:
    """``PHOTOLIFT_CATALOG`` if set, else ``<user data dir>/catalog.sqlite``."""
    env = os.environ.get("PHOTOLIFT_CATALOG")
    if env:
        return env
    return str(data_dir() / CATALOG_FILENAME)


def to_url(url_or_path: str) -> str:
    """A file path becomes a ``sqlite:///`` URL (parent folders created); URLs pass through."""
    if "://" in url_or_path:
        return url_or_path
    p = Path(url_or_path).expanduser().absolute()
    p.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p}"


def sqlite_file(url: str) -> Path | None:
    """The database file behind a SQLite URL, or None (memory / other back ends)."""
    if not url.startswith("sqlite"):
        return None
    rest = url.split("://", 1)[1]
    if rest.startswith("/"):
        rest = rest[1:]
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see _on_sqlite_begin),
    # so DDL in a migration is transactional too.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def _on_sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


_STOP = object()


class Catalog:
    """An open catalog. Create it with :meth:`Catalog.open`; close it with :meth:`close`."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._writer = threading.Thread(target=self._writer_loop, name="catalog-writer", daemon=True)
        self._writer.start()

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, url_or_path: str | os.PathLike[str] | None = None, *, migrate: bool = True) -> Catalog:
        """Open (creating if needed) the catalog at a path or SQLAlchemy URL.

        ``None`` means ``PHOTOLIFT_CATALOG`` or the per-user default. Runs pending migrations
        after a backup; raises :class:`CatalogTooNew` for a catalog from a newer photolift and
        :class:`CatalogError` for a file that is not a photolift catalog.
        """
        from db import migrations  # local: migrations imports this module

        loc = default_catalog_location() if url_or_path is None else os.fspath(url_or_path)
        try:
            url = to_url(loc)
        except OSError as e:
            raise CatalogError(f"cannot create the catalog folder for {loc}: {e.strerror or e}") from e
        engine = cls._make_engine(url)
        try:
            if migrate:
                migrations.upgrade(engine, url)
        except CatalogError:
            engine.dispose()
            raise
        except DatabaseError as e:
            engine.dispose()
            raise CatalogError(f"cannot open catalog {loc}: {e.orig}") from e
        return cls(engine, url)

    @staticmethod
    def _make_engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            if sqlite_file(url) is None:  # in-memory: one shared connection
                engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
            else:
                engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _on_sqlite_connect)
            event.listen(engine, "begin", _on_sqlite_begin)
            return engine
        return create_engine(url, pool_pre_ping=True)

    @property
    def path(self) -> Path | None:
        """The SQLite file, if the catalog is one."""
        return sqlite_file(self.url)

    # -- reading ---------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A short-lived read session; do not write through it and do not keep ORM objects."""
        self._check_open()
        with self._sessions() as s:
            yield s

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
        with self._sessions() as s:
            try:
                result = fn(s)
                s.commit()
            except BaseException:
                s.rollback()
                raise
            return result

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
        return f"Catalog({self.url!r})"
