"""A real PostgreSQL server for the tests: never a mock.

``PHOTOLIFT_TEST_PG_URL`` (e.g. set by ``.ci/run``) names a server where the tests may create
and drop databases; otherwise a throwaway server is made for the test session: ``initdb`` into a
temporary folder and ``pg_ctl start`` on a Unix socket only (no TCP port), as the ``postgres``
user when the tests run as root (PostgreSQL refuses to run as root), with durability off (a test
server loses nothing of value). Every test gets its own empty database, dropped afterwards.

Tests that need it skip, saying why, only when no server binaries exist (Debian's
``postgresql`` package puts them in ``/usr/lib/postgresql/<major>/bin``); a server that exists
but fails to start is an error, not a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_URL = "PHOTOLIFT_TEST_PG_URL"
USER = "photolift"


def server_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest major version."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.access(os.path.join(d, "pg_ctl"), os.X_OK) and os.access(os.path.join(d, "initdb"), os.X_OK):
            return Path(d)
    return None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(cmd)]


class Server:
    def __init__(self, admin_url: str, stop: list[str] | None, tmp: Path | None) -> None:
        self.admin_url = admin_url  # a SQLAlchemy URL of a database we may CREATE DATABASE from
        self._stop = stop
        self._tmp = tmp

    def create_database(self) -> str:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = f"photolift_test_{uuid.uuid4().hex[:12]}"
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()

    def close(self) -> None:
        if self._stop:
            subprocess.run(self._stop, capture_output=True, timeout=60)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def start_server() -> Server:
    """Start a throwaway server (see the module doc); ``pytest.skip`` without server binaries."""
    env_url = os.environ.get(ENV_URL)
    if env_url:
        for plain in ("postgresql://", "postgres://"):  # the driver photolift installs
            if env_url.startswith(plain):
                env_url = "postgresql+psycopg://" + env_url[len(plain):]
        return Server(env_url, None, None)
    bindir = server_bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's 'postgresql' "
                    f"package (as .ci/run does) or set {ENV_URL} to a server the tests may create databases on")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: pip install -e '.[test]' (the 'postgres' extra)")
    tmp = Path(tempfile.mkdtemp(prefix="photolift-pg-"))
    data, sock, log = tmp / "data", tmp / "sock", tmp / "server.log"
    sock.mkdir()
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("the tests run as root and there is no 'postgres' user to run the server as")
        for p in (tmp, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    initdb = _as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
                              "-E", "UTF8", "--locale=C", "--no-sync"])
    r = subprocess.run(initdb, capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {r.stdout}{r.stderr}")
    opts = (f"-c listen_addresses='' -k {sock} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=60 -c shared_buffers=32MB")
    start = _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
                             "-t", "60", "start"])
    r = subprocess.run(start, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{text}")
    stop = _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    return Server(f"postgresql+psycopg://{USER}@/postgres?host={sock}", stop, tmp)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    server = start_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: Server) -> Iterator[str]:
    """A new, empty database on the test server (dropped after the test)."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            pg_server.drop_database(url)
