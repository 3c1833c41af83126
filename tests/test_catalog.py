"""Catalog: opening, WAL, the single writer. Migrations and refusing newer catalogs: test_migrations.py."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from db.catalog import Catalog, CatalogError
from db.schema import SCHEMA_VERSION, CatalogInfo, Photo, Recipe, Score


def _photo(name: str) -> Photo:
    return Photo(path=f"/p/{name}", path_bytes=f"/p/{name}".encode(), size=1, mtime_ns=1,
                 indexed_at=datetime.now())


def test_fresh_catalog_has_every_table_and_version(tmp_path: Path) -> None:
    with Catalog.open(str(tmp_path / "c.sqlite")) as cat, cat.session() as s:
        names = {r[0] for r in s.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
        info = {r.key: r.value for r in s.scalars(select(CatalogInfo))}
        mode = s.execute(text("PRAGMA journal_mode")).scalar()
        sync = s.execute(text("PRAGMA synchronous")).scalar()
    assert {"photos", "folders", "scores", "recipes", "ratings", "heads", "jobs", "exports",
            "catalog_info"} <= names
    assert info["schema_version"] == str(SCHEMA_VERSION)
    assert mode == "wal"
    assert sync == 1  # NORMAL


def test_write_runs_on_one_thread_and_returns(tmp_catalog: Catalog) -> None:
    seen: set[str] = set()

    def add(name: str) -> int:
        def fn(s):  # type: ignore[no-untyped-def]
            seen.add(threading.current_thread().name)
            p = _photo(name)
            s.add(p)
            s.flush()
            return p.id
        return tmp_catalog.write(fn)

    ids: list[int] = []
    threads = [threading.Thread(target=lambda i=i: ids.append(add(f"{i}.jpg"))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"catalog-writer"}
    assert sorted(ids) == list(range(1, 9))
    with tmp_catalog.session() as s:
        assert len(s.scalars(select(Photo)).all()) == 8


def test_write_error_rolls_back_and_writer_survives(tmp_catalog: Catalog) -> None:
    def bad(s):  # type: ignore[no-untyped-def]
        s.add(_photo("a.jpg"))
        s.flush()
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        tmp_catalog.write(bad)
    assert tmp_catalog.write(lambda s: s.scalar(select(Photo.id))) is None
    tmp_catalog.write(lambda s: s.add(_photo("b.jpg")))
    with tmp_catalog.session() as s:
        assert [p.path for p in s.scalars(select(Photo))] == ["/p/b.jpg"]


def test_deleting_photo_cascades_scores_and_recipes(tmp_catalog: Catalog) -> None:
    def setup(s):  # type: ignore[no-untyped-def]
        p = _photo("a.jpg")
        s.add(p)
        s.flush()
        s.add(Score(photo_id=p.id, model="assessor", model_version="v", fingerprint="f", improvability=1.0,
                    quality=5.0, severity_json="{}", scored_at=datetime.now()))
        r = Recipe(photo_id=p.id, version=1, created_at=datetime.now(), recipe_json="{}")
        s.add(r)
        s.flush()
        p.current_recipe_id = r.id
        return p.id

    pid = tmp_catalog.write(setup)
    tmp_catalog.write(lambda s: s.delete(s.get(Photo, pid)))
    with tmp_catalog.session() as s:
        assert s.scalars(select(Score)).all() == []
        assert s.scalars(select(Recipe)).all() == []


def test_not_a_catalog(tmp_path: Path) -> None:
    f = tmp_path / "other.sqlite"
    con = sqlite3.connect(f)
    con.execute("CREATE TABLE songs (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(CatalogError, match="not a photolift catalog"):
        Catalog.open(str(f))
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CatalogError):
        Catalog.open(str(junk))


def test_default_location_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOLIFT_CATALOG", str(tmp_path / "env" / "cat.sqlite"))
    with Catalog.open(None) as cat:
        assert cat.path == tmp_path / "env" / "cat.sqlite"
    monkeypatch.delenv("PHOTOLIFT_CATALOG")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    from db.catalog import default_catalog_location
    assert default_catalog_location().startswith(str(tmp_path / "xdg"))


def test_sqlalchemy_url_accepted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.sqlite'}"
    with Catalog.open(url) as cat:
        cat.write(lambda s: s.add(_photo("x.jpg")))
    assert (tmp_path / "u.sqlite").exists()
    with Catalog.open("sqlite:///:memory:") as mem:
        mem.write(lambda s: s.add(_photo("y.jpg")))
        with mem.session() as s:
            assert s.scalar(select(Photo.path)) == "/p/y.jpg"


def test_closed_catalog_refuses(tmp_path: Path) -> None:
    cat = Catalog.open(str(tmp_path / "c.sqlite"))
    cat.close()
    with pytest.raises(CatalogError, match="closed"):
        cat.write(lambda s: None)


def test_unusable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(CatalogError, match="cannot create the catalog folder"):
        Catalog.open(str(blocker / "sub" / "c.sqlite"))
