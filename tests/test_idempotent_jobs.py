"""Jobs that can be run again: an interrupted export or enhance completes on rerun with exactly
one output per photo and edit (a file written but not recorded is adopted through its journal,
or recognised by its content), leftover temporary files go, and non-UTF-8 names work end to end."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

import engine.export.exporter as X
from app.cli import main
from db.catalog import Catalog
from engine.enhance.edits import Editor
from engine.export.exporter import Exporter
from tests.conftest import ImageFactory
from tests.pipeline_fixtures import index, install_no_scorer, setup_models

ROOT = Path(__file__).resolve().parents[1]


def _enhanced(cat: Catalog, root: Path) -> list[int]:
    ids = index(cat, root)
    for r in Editor(cat).enhance_batch(ids, ops="restore", apply_if_no_gain=True):
        assert r.applied, r
    return ids


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _exports(url: str) -> list[tuple[int, bytes]]:
    con = sqlite3.connect(url)
    try:
        return con.execute("SELECT photo_id, out_path_bytes FROM exports ORDER BY photo_id").fetchall()
    finally:
        con.close()


def test_killed_after_the_rename_before_the_record_is_adopted_not_duplicated(
        tmp_path: Path, make_image: ImageFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    models = setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    for i in range(4):
        make_image(f"k{i}.jpg", 40, 30, seed=i)
    url = str(tmp_path / "cat.sqlite")
    with Catalog.open(url) as cat:
        ids = _enhanced(cat, tmp_path / "photos")
    out = tmp_path / "out"
    # the second photo's file reaches its final name, then the process dies before recording it
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import engine.export.exporter as X
        from db.catalog import Catalog
        real = os.link
        n = [0]
        def link(a, b):
            real(a, b)
            n[0] += 1
            if n[0] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        X.os.link = link
        cat = Catalog.open({url!r})
        for r in X.Exporter(cat).export({ids!r}, {str(out)!r}):
            print(r.status, flush=True)
    """)
    env = dict(os.environ, PHOTOLIFT_MODELS=str(models), PHOTOLIFT_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["k0_enhanced.jpg",
                                                                                   "k1_enhanced.jpg"]
    assert len(_exports(url)) == 1  # k1 is on disk but not recorded
    assert len(list(out.glob(".photolift-*.journal"))) == 1

    # make the rerun's render differ by a byte, so only the journal can recognise k1's file
    real_encode = X.encode
    monkeypatch.setattr(X, "encode", lambda *a, **k: real_encode(*a, **k) + b"\0")
    with Catalog.open(url) as cat:
        res = list(Exporter(cat).export(ids, out))
    assert [r.status for r in res] == ["skipped", "skipped", "ok", "ok"], res
    assert "already exported" in (res[1].error or "")
    assert sorted(p.name for p in out.iterdir()) == [f"k{i}_enhanced.jpg" for i in range(4)]  # no (2), no temp
    rows = _exports(url)
    assert [r[0] for r in rows] == ids and len({r[1] for r in rows}) == 4
    with Catalog.open(url) as cat:  # a third run writes nothing
        assert [r.status for r in Exporter(cat).export(ids, out)] == ["skipped"] * 4
    assert len(_exports(url)) == 4


def test_an_identical_unrecorded_file_is_adopted_by_content(tmp_catalog: Catalog, tmp_path: Path,
                                                             make_image: ImageFactory,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    make_image("a.jpg", 40, 30, seed=1)
    ids = _enhanced(tmp_catalog, tmp_path / "photos")
    out = tmp_path / "out"
    first = list(Exporter(tmp_catalog).export(ids, out))
    tmp_catalog.write(lambda s: s.execute(text("DELETE FROM exports")))  # the record is lost
    again = list(Exporter(tmp_catalog).export(ids, out))
    assert again[0].status == "ok" and again[0].out_path == first[0].out_path
    assert any("identical file was already there" in w for w in again[0].warnings)
    assert [p.name for p in out.iterdir()] == ["a_enhanced.jpg"]
    with tmp_catalog.session() as s:
        assert s.execute(text("SELECT count(*) FROM exports")).scalar() == 1


def test_journal_of_a_file_that_never_appeared_and_stale_temps_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    pid = _dead_pid()
    (folder / f".photolift-{pid}-abc123.part").write_bytes(b"x" * 1000)
    (folder / f".photolift-{pid}-abc124.journal").write_text(json.dumps(
        {"final": os.fsencode("never.jpg").hex(), "sha256": "0" * 64, "size": 3, "key": {}}))
    (folder / f".photolift-{pid}-abc125.journal").write_text("{not json")
    live = folder / f".photolift-{os.getpid()}-abc126.part"  # a running export's: left alone
    live.write_bytes(b"y")
    assert X.recover_folder(folder) == []
    assert sorted(p.name for p in folder.iterdir()) == [live.name]


def test_enhance_rerun_skips_identical_results_and_names_new_ones(tmp_path: Path, make_image: ImageFactory,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    a = make_image("a.jpg", 48, 32, seed=1)
    b = make_image("b.jpg", 48, 32, seed=2)
    out = tmp_path / "out"
    cat = ["--catalog", str(tmp_path / "c.sqlite")]
    pid = _dead_pid()
    out.mkdir()
    (out / f".photolift-{pid}-dead00.part").write_bytes(b"z" * 4096)  # a killed run's temporary file
    for _ in range(3):
        assert main([*cat, "enhance", str(a), str(b), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["status"] for d in lines] == ["ok", "ok", "skipped", "skipped", "skipped", "skipped"]
    assert "identical result is already in the folder" in lines[2]["message"]
    assert sorted(p.name for p in out.iterdir()) == ["a_enhanced.jpg", "b_enhanced.jpg"]
    assert main([*cat, "enhance", str(a), "--out", str(out), "--strength", "0.5"]) == 0  # a different result
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["status"] == "ok" and line["out_path"].endswith("a_enhanced (2).jpg")


def test_non_utf8_names_index_enhance_export_and_json(tmp_path: Path, make_image: ImageFactory,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    if sys.platform == "darwin":
        pytest.skip("macOS file systems refuse names that are not UTF-8")
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    good = make_image("x.jpg", 48, 32, seed=3)
    root = tmp_path / "photos"
    raw = os.path.join(os.fsencode(root), b"caf\xe9.jpg")
    os.rename(good, raw)
    cat_args = ["--catalog", str(tmp_path / "c.sqlite")]
    out = tmp_path / "out"
    with Catalog.open(str(tmp_path / "c.sqlite")) as cat:
        ids = _enhanced(cat, root)
        res = list(Exporter(cat).export(ids, out))
        assert res[0].status == "ok", res
        assert res[0].out_path.endswith("caf\\xe9_enhanced.jpg")  # shown escaped, valid UTF-8
        assert list(Exporter(cat).export(ids, out))[0].status == "skipped"  # found again by its real name
    assert os.listdir(os.fsencode(out)) == [b"caf\xe9_enhanced.jpg"]
    assert main([*cat_args, "export", str(root), "--to", str(out), "--all"]) == 0
    for line in capsys.readouterr().out.splitlines():
        d = json.loads(line)
        assert d["status"] == "skipped" and "\\xe9" in d["path"]
    assert main([*cat_args, "enhance", os.fsdecode(raw), "--out", str(tmp_path / "out2"), "--force"]) == 0
    d = json.loads(capsys.readouterr().out.splitlines()[0])
    assert d["status"] == "ok" and d["out_path"].endswith("caf\\xe9_enhanced.jpg")
    assert os.listdir(os.fsencode(tmp_path / "out2")) == [b"caf\xe9_enhanced.jpg"]
