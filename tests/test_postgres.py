"""The catalog on a real PostgreSQL server (tests/pg_server.py): the one-writer design across
processes, busy and unreachable servers as messages, the CLI's catalog commands, a whole
index-score-rank run, and a catalog that the released code made there."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

import db.catalog
from app.cli import main
from db.catalog import Catalog, CatalogBusy, CatalogError
from db.schema import SCHEMA_VERSION, CatalogInfo, Photo
from tests.test_migrations import schema_differences

ROOT = Path(__file__).resolve().parents[1]


def _counter(cat: Catalog) -> int:
    with cat.session() as s:
        return int(s.scalar(select(CatalogInfo.value).where(CatalogInfo.key == "counter")) or 0)


def _increment(s: Any) -> None:
    # read, then write: without one writer at a time two writers read the same value and one
    # increment is lost (PostgreSQL's default READ COMMITTED does not prevent it)
    row = s.get(CatalogInfo, "counter")
    value = int(row.value) if row else 0
    s.execute(text("SELECT pg_sleep(0.002)"))
    if row is None:
        s.add(CatalogInfo(key="counter", value=str(value + 1)))
    else:
        row.value = str(value + 1)


WORKER = r"""
import sys
from db.catalog import Catalog
from tests.test_postgres import _increment
with Catalog.open(sys.argv[1]) as cat:
    for _ in range(int(sys.argv[2])):
        cat.write(_increment)
"""


def test_one_writer_at_a_time_across_processes(pg_url: str) -> None:
    Catalog.open(pg_url).close()
    n = 25
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, pg_url, str(n)], cwd=ROOT) for _ in range(3)]
    with Catalog.open(pg_url) as cat:  # and this process too
        for _ in range(n):
            cat.write(_increment)
        for p in procs:
            assert p.wait(timeout=300) == 0
        assert _counter(cat) == 4 * n


def test_a_writer_held_up_too_long_is_busy_not_a_traceback(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db.catalog, "BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(db.catalog, "WRITE_ATTEMPTS", 2)
    with Catalog.open(pg_url) as cat:
        other = create_engine(pg_url)
        try:
            with other.connect() as conn, conn.begin():  # another photolift in the middle of a write
                conn.execute(text(f"SELECT pg_advisory_xact_lock({db.catalog.PG_WRITE_LOCK_KEY})"))
                with pytest.raises(CatalogBusy, match="busy.*run the command again"):
                    cat.write(_increment)
                with cat.session() as s:  # readers are not held up
                    assert s.scalar(select(CatalogInfo.value).where(CatalogInfo.key == "schema_version"))
        finally:
            other.dispose()
        cat.write(_increment)  # the lock released: writing works again
        assert _counter(cat) == 1


def test_unreachable_server_or_database_is_a_message_without_the_password(pg_url: str, tmp_path: Path) -> None:
    bad_db = pg_url.replace("photolift@", "photolift:s3cret@").rsplit("/", 1)
    url = bad_db[0] + "/no_such_db?" + bad_db[1].split("?", 1)[1]
    with pytest.raises(CatalogError, match="cannot reach the catalog") as e:
        Catalog.open(url)
    assert "s3cret" not in str(e.value) and "no_such_db" in str(e.value)
    with pytest.raises(CatalogError, match="cannot reach") as e:
        Catalog.open(f"postgresql+psycopg://photolift:s3cret@/postgres?host={tmp_path}")
    assert "s3cret" not in str(e.value)


def test_catalog_commands_on_a_server(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--catalog", pg_url, "catalog", "check"]) == 0
    out = capsys.readouterr().out
    assert "ok (schema revision" in out and "0 photos" in out
    assert main(["--catalog", pg_url, "catalog", "backup"]) == 2
    assert "pg_dump" in capsys.readouterr().err
    assert main(["--catalog", pg_url, "catalog", "restore"]) == 2
    assert "pg_restore" in capsys.readouterr().err


def test_index_score_and_rank_on_a_server(pg_url: str, make_image: Any, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.core.runtime import clear_sessions
    from tests.onnx_fixtures import write_assessor

    clear_sessions()
    write_assessor(tmp_path / "models" / "assessor.onnx")
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("PHOTOLIFT_CACHE", str(tmp_path / "cache"))
    for i in range(4):
        make_image(f"p{i}.jpg", 90 + 10 * i, 70, seed=i)
    (tmp_path / "photos" / "bad.jpg").write_bytes(b"not a photo")
    root = str(tmp_path / "photos")
    assert main(["--catalog", pg_url, "score", root, "--json"]) == 0
    score = {Path(r["path"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert main(["--catalog", pg_url, "rank", root, "--json", "-q"]) == 0
    rank = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(score) == len(rank) == 5
    assert score["bad.jpg"]["status"] == "error"
    for r in rank:
        assert r["improvability"] == score[Path(r["path"]).name]["improvability"]
    imps = [r["improvability"] for r in rank if r["status"] == "ok"]
    assert len(imps) == 4 and imps == sorted(imps, reverse=True)
    with Catalog.open(pg_url) as cat, cat.session() as s:  # 64-bit mtimes stored as they are
        assert all(m > 2**31 for m in s.scalars(select(Photo.mtime_ns)))


@pytest.mark.parametrize("version", [1, 2])
def test_catalog_made_by_the_released_code_on_postgresql_is_upgraded(pg_url: str, version: int) -> None:
    """photolift <= 0.1 made a PostgreSQL catalog with create_all: 32-bit size and mtime, stamped
    schema_version 1 or 2, no Alembic table. Built here by the revisions up to that version and
    then made to look exactly like that."""
    from db import migrations

    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            cfg = migrations._config(conn, None)
            from alembic import command

            command.upgrade(cfg, migrations.LEGACY_REVISIONS[version])
            conn.execute(text("DROP TABLE alembic_version"))
            conn.execute(text("ALTER TABLE photos ALTER COLUMN size TYPE INTEGER, "
                              "ALTER COLUMN mtime_ns TYPE INTEGER"))
            conn.execute(text("INSERT INTO folders (path, path_bytes, added_at) VALUES ('/l', '\\x2f6c', now())"))
            conn.execute(text(
                "INSERT INTO photos (path, path_bytes, size, mtime_ns, fingerprint, has_gps, status, indexed_at) "
                "VALUES ('/l/a.jpg', '\\x2f6c2f612e6a7067', 5, 7, 'fp', false, 'ok', now())"))
            conn.execute(text(
                "INSERT INTO scores (photo_id, model, model_version, fingerprint, improvability, quality, "
                "severity_json, recommended, head, scored_at) SELECT id, 'assessor', 'v', 'fp', 1.5, 5, '{}', "
                "true, '', now() FROM photos"))
    finally:
        engine.dispose()
    with Catalog.open(pg_url) as cat, cat.session() as s:
        p = s.scalars(select(Photo)).one()
        assert p.current_score_id is not None  # backfilled
        assert s.execute(text("SELECT value FROM catalog_info WHERE key = 'schema_version'")).scalar() == str(
            SCHEMA_VERSION)
        s.execute(text("UPDATE photos SET mtime_ns = 1700000000000000000"))  # 64 bit now
    assert schema_differences(pg_url) == []


def test_concurrent_first_opens_migrate_once(pg_url: str) -> None:
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            Catalog.open(pg_url).close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = create_engine(pg_url)
    try:
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM catalog_info WHERE key = 'schema_version'")).scalar() == 1
    finally:
        engine.dispose()
