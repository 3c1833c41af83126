"""Alembic migrations: a fresh catalog, catalogs of the released hand-written migrations (schema
versions 1 and 2, made by that code: tests/data/make_legacy_catalogs.py), a newer catalog, a
backup before each upgrade, and a failed step that leaves the catalog as it was.

"Equal to db/schema.py" is Alembic's own comparison (``compare_metadata``): no table, column,
type, index, unique or foreign key differs.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select, text

from db import migrations
from db.catalog import Catalog, CatalogError, CatalogTooNew, to_url
from db.schema import SCHEMA_VERSION, Base, Export, Photo, Recipe, Score

DATA = Path(__file__).with_name("data")


def _sqlite_added_fk(diff: object) -> bool:
    """SQLite adds a column with a foreign key only in the column's own clause, whose name and ON
    DELETE SQLAlchemy's reflection cannot read (it parses table-level constraints): revision 0003's
    ``photos.current_score_id``. :func:`schema_differences` checks it with PRAGMA instead."""
    if not isinstance(diff, tuple) or diff[0] not in ("add_fk", "remove_fk"):
        return False
    return [c.name for c in diff[1].columns] == ["current_score_id"]


def schema_differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            mc = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = list(compare_metadata(mc, Base.metadata))
            if engine.dialect.name == "sqlite":
                fks = [tuple(r) for r in conn.exec_driver_sql("PRAGMA foreign_key_list(photos)")]
                assert [(r[2], r[3], r[4], r[6]) for r in fks if r[3] == "current_score_id"] == [
                    ("scores", "current_score_id", "id", "SET NULL")]
                diffs = [d for d in diffs if not _sqlite_added_fk(d)]
            return diffs
    finally:
        engine.dispose()


def head() -> str:
    h = migrations.script_directory().get_current_head()
    assert h is not None
    return h


def test_fresh_catalog_is_built_by_the_revisions_and_equals_the_schema(catalog_url: str, tmp_path: Path) -> None:
    with Catalog.open(catalog_url) as cat, cat.session() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()
        assert s.execute(text("SELECT value FROM catalog_info WHERE key='schema_version'")).scalar() == str(
            SCHEMA_VERSION)
    assert schema_differences(to_url(catalog_url)) == []
    assert not list(tmp_path.glob("*.bak"))  # nothing to back up in a new catalog
    with Catalog.open(catalog_url):  # opened again: nothing to do
        pass


@pytest.mark.parametrize("version", [1, 2])
def test_catalog_of_the_released_code_is_upgraded(tmp_path: Path, version: int) -> None:
    """tests/data/catalog_v<N>.sqlite were written by the released code's own Catalog.open and ORM."""
    f = tmp_path / "c.sqlite"
    shutil.copy(DATA / f"catalog_v{version}.sqlite", f)
    with Catalog.open(str(f)) as cat, cat.session() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()
        assert s.execute(text("SELECT value FROM catalog_info WHERE key='schema_version'")).scalar() == str(
            SCHEMA_VERSION)
        photos = {p.path: p for p in s.scalars(select(Photo))}
        assert sorted(photos) == ["/lib/p0.jpg", "/lib/p1.jpg", "/lib/p2.jpg"]
        assert photos["/lib/p0.jpg"].mtime_ns == 1_700_000_000_000_000_000
        exports = s.scalars(select(Export)).all()
        assert [e.out_path for e in exports] == ["/out/p0_enhanced.jpg"]
        # version 1 had no out_path_bytes: NULL after the upgrade; version 2 kept its value
        assert exports[0].out_path_bytes == (None if version == 1 else b"/out/p0_enhanced.jpg")
        assert s.get(Recipe, photos["/lib/p0.jpg"].current_recipe_id) is not None
        # the backfill: p0's current score is the active head's row (written with the same
        # timestamp as the base row: the tie the old queries broke differently); p1's only row is
        # for an older fingerprint, p2 has none
        cur = s.get(Score, photos["/lib/p0.jpg"].current_score_id)
        assert cur is not None and cur.head != "" and cur.improvability == 2.5
        assert photos["/lib/p1.jpg"].current_score_id is None
        assert photos["/lib/p2.jpg"].current_score_id is None
    assert schema_differences(to_url(str(f))) == []
    backups = list(tmp_path.glob(f"c.sqlite.v{version}-*.bak"))
    assert len(backups) == 1
    con = sqlite3.connect(backups[0])  # the backup is the catalog as it was
    assert con.execute("SELECT value FROM catalog_info WHERE key='schema_version'").fetchone() == (str(version),)
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name='alembic_version'").fetchone() == (0,)
    con.close()
    with Catalog.open(str(f)):  # at head now: opened again, no second backup
        pass
    assert len(list(tmp_path.glob("c.sqlite.v*.bak"))) == 1


def test_migrated_catalog_is_refused_by_the_released_code(tmp_path: Path) -> None:
    """What photolift <= 0.1 reads: ``catalog_info.schema_version`` above its own 2 means "newer"
    (its db/migrations.upgrade raised CatalogTooNew for current > target)."""
    f = tmp_path / "c.sqlite"
    Catalog.open(str(f)).close()
    con = sqlite3.connect(f)
    assert int(con.execute("SELECT value FROM catalog_info WHERE key='schema_version'").fetchone()[0]) > 2
    con.close()


def _tamper(f: Path, sql: str) -> None:
    con = sqlite3.connect(f)
    con.execute(sql)
    con.commit()
    con.close()


@pytest.mark.parametrize("how", ["unknown revision", "legacy stamp above 2", "integer version above ours"])
def test_newer_catalog_refused_and_left_alone(tmp_path: Path, how: str) -> None:
    f = tmp_path / "c.sqlite"
    Catalog.open(str(f)).close()
    if how == "unknown revision":
        _tamper(f, "UPDATE alembic_version SET version_num = '9999'")
    elif how == "integer version above ours":  # a newer photolift's revision we lack, seen by its stamp
        _tamper(f, f"UPDATE catalog_info SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    else:
        _tamper(f, "DROP TABLE alembic_version")
        _tamper(f, "UPDATE catalog_info SET value = '7' WHERE key = 'schema_version'")
    before = f.read_bytes()
    with pytest.raises(CatalogTooNew, match="newer photolift.*not changed"):
        Catalog.open(str(f))
    assert f.read_bytes() == before
    assert not list(tmp_path.glob("*.bak"))


def test_not_a_catalog_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "other.sqlite"
    _tamper(f, "CREATE TABLE songs (id INTEGER)")
    with pytest.raises(CatalogError, match="not a photolift catalog"):
        Catalog.open(str(f))


NEXT = '''
import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("extra_next", sa.Column("id", sa.Integer(), primary_key=True))
    op.execute(sa.text("INSERT INTO extra_next (id) VALUES (1)"))
    {tail}


def downgrade() -> None:
    op.drop_table("extra_next")
'''


def _scripts_with_next_revision(tmp_path: Path, tail: str) -> Path:
    loc = tmp_path / "scripts"
    shutil.copytree(migrations.SCRIPT_LOCATION, loc, ignore=shutil.ignore_patterns("__pycache__"))
    (loc / "versions" / "r9001_next.py").write_text(NEXT.format(head=head(), tail=tail))
    return loc


def test_next_revision_runs_after_a_backup(tmp_path: Path) -> None:
    f = tmp_path / "c.sqlite"
    with Catalog.open(str(f)) as cat:
        cat.write(lambda s: s.execute(text(
            "INSERT INTO photos (path, path_bytes, size, mtime_ns, has_gps, status, indexed_at) "
            "VALUES ('/p/keep.jpg', x'2f702f6b6565702e6a7067', 1, 1, 0, 'ok', '2026-01-01')")))
    loc = _scripts_with_next_revision(tmp_path, "pass")
    engine = Catalog._make_engine(to_url(str(f)))
    try:
        before = migrations.upgrade(engine, to_url(str(f)), script_location=loc)
    finally:
        engine.dispose()
    assert before.revision == head()
    backups = list(tmp_path.glob(f"c.sqlite.v{SCHEMA_VERSION}-*.bak"))
    assert len(backups) == 1
    con = sqlite3.connect(backups[0])
    assert con.execute("SELECT path FROM photos").fetchall() == [("/p/keep.jpg",)]
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == (head(),)
    con.close()
    con = sqlite3.connect(f)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("9001",)
    assert con.execute("SELECT id FROM extra_next").fetchall() == [(1,)]
    con.close()
    # the shipped code does not know 9001: refused as newer
    with pytest.raises(CatalogTooNew):
        Catalog.open(str(f))


def test_failed_revision_leaves_the_catalog_as_it_was(tmp_path: Path) -> None:
    f = tmp_path / "c.sqlite"
    Catalog.open(str(f)).close()
    loc = _scripts_with_next_revision(tmp_path, 'raise RuntimeError("migration bug")')
    engine = Catalog._make_engine(to_url(str(f)))
    try:
        with pytest.raises(RuntimeError, match="migration bug"):
            migrations.upgrade(engine, to_url(str(f)), script_location=loc)
    finally:
        engine.dispose()
    con = sqlite3.connect(f)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == (head(),)
    assert con.execute("SELECT name FROM sqlite_master WHERE name='extra_next'").fetchall() == []
    con.close()
    with Catalog.open(str(f)):  # still a good catalog at head
        pass


def test_revisions_are_package_data() -> None:
    """An installed wheel must carry db/alembic (env.py and every revision): pyproject says so."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())
    data = cfg["tool"]["setuptools"]["package-data"]
    assert "alembic/*.py" in data["db"] and "alembic/versions/*.py" in data["db"]
    revs = {s.revision for s in migrations.script_directory().walk_revisions()}
    assert set(migrations.LEGACY_REVISIONS.values()) <= revs
    assert len(list((migrations.SCRIPT_LOCATION / "versions").glob("r*.py"))) == len(revs)


def test_head_revision_constant_is_alembics_head() -> None:
    """db.migrations.HEAD_REVISION lets an up-to-date catalog open without importing Alembic;
    it must name the newest revision, or new revisions would never run."""
    assert head() == migrations.HEAD_REVISION


def test_opening_a_catalog_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "c.db"
    Catalog.open(str(db)).close()  # created (and migrated) here, with Alembic
    code = ("import sys; from db.catalog import Catalog, to_url; "
            f"Catalog.open({str(db)!r}).close(); "
            "print('alembic' in sys.modules)")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def _catalog_with_a_photo_at(tmp_path: Path, revision: str) -> Path:
    """A new SQLite catalog downgraded to ``revision`` with one photo row (/p/a.jpg, fingerprint fp1)."""
    from alembic import command

    f = tmp_path / "c.sqlite"
    Catalog.open(str(f)).close()
    engine = create_engine(to_url(str(f)))
    try:
        with engine.begin() as conn:
            command.downgrade(migrations._config(conn, None), revision)
            conn.execute(text(
                "INSERT INTO photos (path, path_bytes, size, mtime_ns, has_gps, status, indexed_at, fingerprint) "
                "VALUES ('/p/a.jpg', x'2f702f612e6a7067', 1, 1, 0, 'ok', '2026-01-01', 'fp1')"))
    finally:
        engine.dispose()
    return f


def test_faces_revision_upgrades_a_schema_4_catalog(tmp_path: Path) -> None:
    """Revision 0005 (faces): a catalog at 0004 with a photo is upgraded; the photo keeps its row,
    ``face_count`` starts NULL (not examined), and faces can be stored and read back."""

    from db.queries import faces_of, store_faces

    f = _catalog_with_a_photo_at(tmp_path, "0004")
    engine = create_engine(to_url(str(f)))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
            assert conn.execute(text("SELECT name FROM sqlite_master WHERE name='faces'")).fetchall() == []
    finally:
        engine.dispose()
    with Catalog.open(str(f)) as cat:
        with cat.session() as s:
            p = s.scalars(select(Photo)).one()
            assert p.path == "/p/a.jpg" and p.face_count is None
        pid = p.id
        n = cat.write(lambda s: store_faces(s, pid, "fp1", "det1", [(0.1, 0.2, 0.3, 0.4, 0.9),
                                                                    (0.5, 0.5, 0.6, 0.7, 0.6)]))
        assert n == 2
        cat.write(lambda s: store_faces(s, pid, "fp1", "det1", [(0.5, 0.5, 0.6, 0.7, 0.7)]))  # replaced
        with cat.session() as s:
            assert s.get(Photo, pid).face_count == 1  # type: ignore[union-attr]
            assert [(r.x0, r.score) for r in faces_of(s, pid)] == [(0.5, 0.7)]
    assert schema_differences(to_url(str(f))) == []
    assert list(tmp_path.glob("c.sqlite.v4-*.bak"))  # backed up before the step


def test_jpeg_quality_revision_upgrades_a_schema_5_catalog(tmp_path: Path, make_image: Any) -> None:
    """Revision 0006: a catalog at 0005 with a photo is upgraded; the old row's ``jpeg_quality``
    is NULL (unknown: its compression reason is shown as before) until the file is indexed anew;
    a newly indexed JPEG gets its quality."""

    from engine.library import Library

    f = _catalog_with_a_photo_at(tmp_path, "0005")
    lib_dir = tmp_path / "lib"
    make_image("b.jpg", quality=83, folder=lib_dir)
    with Catalog.open(str(f)) as cat:
        with cat.session() as s:
            assert s.scalars(select(Photo)).one().jpeg_quality is None
        list(Library(cat).index(lib_dir))
        with cat.session() as s:
            got = {p.path.rsplit("/", 1)[1]: p.jpeg_quality for p in s.scalars(select(Photo))}
    assert got == {"a.jpg": None, "b.jpg": 83}
    assert schema_differences(to_url(str(f))) == []
    assert list(tmp_path.glob("c.sqlite.v5-*.bak"))
