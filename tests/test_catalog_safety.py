"""A catalog that protects itself: writers that wait instead of failing, damage found and
explained, rolling backups and restore, a full disk as a message. Real SQLite, real processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, text

import db.catalog as dbc
from app.cli import main
from db import backup
from db.catalog import Catalog, CatalogBusy, CatalogDamaged, CatalogFull
from db.schema import Photo

ROOT = Path(__file__).resolve().parents[1]


def _photo(name: str) -> Photo:
    return Photo(path=f"/p/{name}", path_bytes=f"/p/{name}".encode(), size=1, mtime_ns=1, indexed_at=datetime.now())


def _fill(cat: Catalog, n: int) -> None:
    def fn(s):  # type: ignore[no-untyped-def]
        for i in range(n):
            s.add(_photo(f"{i}.jpg"))
    cat.write(fn)


def test_a_write_after_a_read_survives_another_process_committing_in_between(tmp_path: Path) -> None:
    """A deferred transaction that reads, then writes, fails at once with "database is locked"
    when another connection committed in between (busy timeout or not); the writer takes the
    lock up front instead, so the other process waits for it."""
    path = tmp_path / "c.sqlite"
    with Catalog.open(str(path)) as cat:
        _fill(cat, 1)
        other_error: list[str] = []

        def fn(s):  # type: ignore[no-untyped-def]
            n = len(s.scalars(select(Photo)).all())  # read first
            other = sqlite3.connect(str(path), timeout=0.2)  # another process, in effect
            try:
                other.execute("INSERT INTO catalog_info (key, value) VALUES ('x', 'y')")
                other.commit()
            except sqlite3.OperationalError as e:
                other_error.append(str(e))
            finally:
                other.close()
            s.add(_photo(f"{n}.jpg"))  # then write

        cat.write(fn)
        with cat.session() as s:
            assert len(s.scalars(select(Photo)).all()) == 2
    assert other_error and "locked" in other_error[0]  # the other one had to wait: we held the lock


def test_writer_retries_while_another_process_holds_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(dbc, "BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "c.sqlite"
    with Catalog.open(str(path)) as cat:
        holder = sqlite3.connect(str(path), check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.8, holder.rollback)  # longer than one busy timeout
        release.start()
        t0 = time.monotonic()
        _fill(cat, 1)
        assert 0.5 < time.monotonic() - t0 < 5
        release.join()
        holder.close()
    assert "busy" in caplog.text and "attempt 2 of" in caplog.text


def test_writer_gives_up_with_a_clear_error_after_bounded_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbc, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(dbc, "WRITE_ATTEMPTS", 3)
    path = tmp_path / "c.sqlite"
    with Catalog.open(str(path)) as cat:
        holder = sqlite3.connect(str(path))
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(CatalogBusy, match="another photolift process"):
                _fill(cat, 1)
        finally:
            holder.rollback()
            holder.close()
        _fill(cat, 1)  # the writer survived and works again
        with cat.session() as s:
            assert len(s.scalars(select(Photo)).all()) == 1


def test_full_disk_is_a_clear_error_and_nothing_half_written(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Catalog.open(str(path)) as cat:
        _fill(cat, 5)
        with cat.session() as s:
            pages = s.execute(text("PRAGMA page_count")).scalar()

        @event.listens_for(cat.engine, "connect")
        def _limit(dbapi_conn, _rec):  # type: ignore[no-untyped-def]  # a disk with no room left
            dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

        cat.engine.dispose()  # new connections get the limit

        def big(s):  # type: ignore[no-untyped-def]
            for i in range(2000):
                s.add(Photo(path=f"/q/{i}" + "x" * 200, path_bytes=f"/q/{i}".encode(), size=1, mtime_ns=1,
                            indexed_at=datetime.now()))

        with pytest.raises(CatalogFull, match="disk holding the catalog .* is full"):
            cat.write(big)
        with cat.session() as s:
            assert len(s.scalars(select(Photo)).all()) == 5  # rolled back as one


def _make_catalog_with_backup(tmp_path: Path, n: int = 300) -> Path:
    path = tmp_path / "c.sqlite"
    with Catalog.open(str(path)) as cat:
        _fill(cat, n)
    backup.take_backup(path, reason="manual")
    return path


def _zero_page(path: Path, page: int, page_size: int = 4096) -> None:
    with open(path, "r+b") as f:
        f.seek(page * page_size)
        f.write(b"\0" * page_size)


def test_damaged_catalog_is_refused_with_the_backup_named_and_restore_works(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _make_catalog_with_backup(tmp_path)
    pages = path.stat().st_size // 4096
    assert pages >= 4
    original = path.read_bytes()
    for page in range(pages):  # every page position: refused at open, never an answer from a damaged file
        path.write_bytes(original)
        _zero_page(path, page)
        with pytest.raises(CatalogDamaged) as ei:
            Catalog.open(str(path)).close()
        msg = str(ei.value)
        assert "damaged" in msg and "photolift catalog restore" in msg and str(backup.backups_dir(path)) in msg

    # the CLI: a message, exit 1, no traceback
    assert main(["--catalog", str(path), "rank", str(tmp_path), "--no-score", "-q"]) == 1
    err = capsys.readouterr().err
    assert "damaged" in err and "Traceback" not in err
    assert main(["--catalog", str(path), "catalog", "check"]) == 1
    capsys.readouterr()

    assert main(["catalog", "restore", "--catalog", str(path)]) == 0
    out = capsys.readouterr().out
    assert "restored" in out
    kept = list(tmp_path.glob("c.sqlite.damaged-*"))
    assert len(kept) == 1  # the damaged file is kept, never deleted
    with Catalog.open(str(path)) as cat, cat.session() as s:
        assert len(s.scalars(select(Photo)).all()) == 300
    assert main(["--catalog", str(path), "catalog", "check"]) == 0


def test_no_backup_says_so(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Catalog.open(str(path)) as cat:
        _fill(cat, 300)
    _zero_page(path, 2)
    with pytest.raises(CatalogDamaged, match="No backup of it exists"):
        Catalog.open(str(path))


def test_daily_backups_roll_and_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    Catalog.open(str(path)).close()
    assert backup.list_backups(path) == []  # a brand-new catalog is not backed up
    Catalog.open(str(path)).close()
    first = backup.list_backups(path)
    assert len(first) == 1 and first[0].reason == "daily"
    Catalog.open(str(path)).close()
    assert len(backup.list_backups(path)) == 1  # not due again within a day
    for i in range(backup.KEEP + 2):  # pretend days went by
        b = backup.list_backups(path)[0]
        old = b.taken_at - timedelta(days=1 + i)
        b.path.rename(b.path.with_name(f"catalog-{old:%Y%m%dT%H%M%S}.sqlite"))
        Catalog.open(str(path)).close()
    items = backup.list_backups(path)
    assert len(items) == backup.KEEP
    assert items[0].taken_at > datetime.now(UTC) - timedelta(minutes=5)
    assert all(backup.check_file(b.path) == [] for b in items)
    assert not list(backup.backups_dir(path).glob(".*part"))  # no temporary left


def test_backup_of_a_live_catalog_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Catalog.open(str(path)) as cat:
        _fill(cat, 10)
        stop = threading.Event()

        def writer() -> None:
            i = 0
            while not stop.is_set():
                cat.write(lambda s, i=i: s.add(_photo(f"w{i}.jpg")))
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            infos = [backup.take_backup(path, reason="manual") for _ in range(3)]
        finally:
            stop.set()
            t.join()
    for b in infos:
        assert backup.check_file(b.path, full=True) == []
        con = sqlite3.connect(b.path)
        assert con.execute("SELECT count(*) FROM photos").fetchone()[0] >= 10
        con.close()


def test_real_processes_side_by_side_no_tracebacks(tmp_path: Path, make_image) -> None:  # type: ignore[no-untyped-def]
    """``index`` again and again while ``score`` runs, and ``rank`` beside both, on one catalog."""
    root = tmp_path / "photos"
    for i in range(24):
        make_image(f"p{i:02d}.jpg", 96, 64, seed=i)
    cat = tmp_path / "c.sqlite"
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def cli(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "--catalog", str(cat), *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    assert cli("index", str(root)).wait(timeout=120) == 0
    procs = [cli("score", str(root), "--force")]
    for k in range(4):
        for j in range(3):
            os.utime(root / f"p{(k * 3 + j):02d}.jpg", ns=(time.time_ns(), time.time_ns()))
        procs += [cli("index", str(root)), cli("rank", str(root), "--no-score", "-q")]
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=240)
        errs.append((p.returncode, err))
    assert all("Traceback" not in e and "locked" not in e for _, e in errs), errs
    assert all(rc == 0 for rc, _ in errs), errs
    con = sqlite3.connect(cat)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("SELECT count(*), count(DISTINCT path_bytes) FROM photos").fetchone() == (24, 24)
    con.close()


def test_only_database_errors_are_explained_as_catalog_problems() -> None:
    from sqlalchemy.exc import OperationalError

    assert dbc.explain(ValueError("truncated or corrupt image data"), "x") is None
    assert dbc.explain(OSError("disk I/O error"), "x") is None
    err = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    assert isinstance(dbc.explain(err, "x"), CatalogFull)
    assert isinstance(dbc.explain(sqlite3.OperationalError("database is locked"), "x"), CatalogBusy)


def test_gui_offers_the_backup_and_restores_it(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QMessageBox

    from app.main import offer_restore

    path = _make_catalog_with_backup(tmp_path, n=300)
    _zero_page(path, 3)
    with pytest.raises(CatalogDamaged) as ei:
        Catalog.open(str(path))
    seen: list[str] = []

    def click_restore(box: QMessageBox) -> int:  # the user reads the message and clicks "Restore backup"
        seen.append(box.text())
        for b in box.buttons():
            if b.text() == "Restore backup":
                b.click()
        return 0

    monkeypatch.setattr(QMessageBox, "exec", click_restore)
    services = offer_restore(str(path), ei.value)
    assert services is not None and "damaged" in seen[0] and "backup" in seen[0]
    try:
        with services.catalog.session() as s:
            assert len(s.scalars(select(Photo)).all()) == 300
    finally:
        services.close()
    kept = [p for p in tmp_path.glob("c.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1  # the damaged file is kept (with its WAL and shared-memory files, if any)
