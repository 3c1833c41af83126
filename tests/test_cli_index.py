"""CLI ``index`` and ``rank``: exit codes, JSON lines, and a real ``kill -9`` in the middle of a scan."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from app.cli import main
from app.services import Services
from db.catalog import Catalog
from db.queries import refresh_current_scores
from db.schema import Photo, Score
from tests.conftest import ImageFactory

ROOT = Path(__file__).resolve().parents[1]


def test_index_reports_bad_files_and_exits_0(make_image: ImageFactory, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "photos"
    make_image("a.jpg")
    (root / "bad.jpg").write_text("<html>oops</html>")
    cat = str(tmp_path / "c.sqlite")
    assert main(["--catalog", cat, "index", str(root), "-q"]) == 0
    out = capsys.readouterr().out
    assert "bad.jpg" in out and "HTML" in out and "2 files: 1 added" in out and "1 bad" in out
    assert main(["--catalog", cat, "index", str(root), "--json", "-q"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[-1]["event"] == "done" and lines[-1]["counts"]["unchanged"] == 2


def test_index_usage_and_catalog_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cat = tmp_path / "c.sqlite"
    assert main(["--catalog", str(cat), "index", str(tmp_path / "nope"), "-q"]) == 2
    assert "no such folder" in capsys.readouterr().err
    Catalog.open(str(cat)).close()
    con = sqlite3.connect(cat)
    con.execute("UPDATE catalog_info SET value='999' WHERE key='schema_version'")
    con.commit()
    con.close()
    assert main(["--catalog", str(cat), "index", str(tmp_path), "-q"]) == 1
    assert "newer photolift" in capsys.readouterr().err


def test_rank_json_nulls_until_scored_then_sorted(make_image: ImageFactory, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "photos"
    for i in range(3):
        make_image(f"p{i}.jpg", seed=i)
    (root / "zero.jpg").write_bytes(b"")
    cat = str(tmp_path / "c.sqlite")
    assert main(["--catalog", cat, "rank", str(root), "--json", "--no-score", "-q"]) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(recs) == 4
    for r in recs:
        assert {"path", "status", "error", "improvability", "quality", "recommended", "severity", "model"} <= set(r)
        assert r["improvability"] is None and r["model"] is None
    assert recs[-1]["status"] == "error" and recs[-1]["error"] == "empty file (0 bytes)"

    with Catalog.open(cat) as c:
        def fn(s):  # type: ignore[no-untyped-def]
            for i, p in enumerate(s.scalars(select(Photo).where(Photo.status == "ok").order_by(Photo.path))):
                s.add(Score(photo_id=p.id, model="assessor", model_version="abc", fingerprint=p.fingerprint,
                            improvability=float(i), quality=5.0, severity_json='{"noise": 0.5}',
                            recommended=i == 2, scored_at=datetime.now()))
            refresh_current_scores(s)  # what every writer of scores does
        c.write(fn)
    assert main(["--catalog", cat, "rank", str(root), "--json", "--top", "2", "--no-score", "-q"]) == 0
    top = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [Path(r["path"]).name for r in top] == ["p2.jpg", "p1.jpg"]
    assert top[0]["recommended"] is True and top[0]["model"] == {"name": "assessor", "version": "abc"}


def _spawn(cat: Path, root: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "app.cli", "--catalog", str(cat), "index", str(root)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen[str], done: int) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("indexed ") and int(line.split()[1].split("/")[0]) >= done:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)


def _state(cat: Path) -> tuple[int, set[str]]:
    con = sqlite3.connect(cat)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = con.execute("SELECT path, status, fingerprint FROM photos").fetchall()
    finally:
        con.close()
    assert len({r[0] for r in rows}) == len(rows)  # no duplicates
    assert all(r[1] == "ok" and r[2] for r in rows)
    return len(rows), {r[2] for r in rows}


@pytest.mark.slow
def test_kill_9_mid_scan_twice_then_resume(make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    n = 400
    for i in range(n):
        make_image(f"d{i // 100}/p{i:03d}.jpg", 48, 32, seed=i)
    before = {p: p.read_bytes() for p in root.rglob("*.jpg")}
    cat = tmp_path / "c.sqlite"

    proc = _spawn(cat, root)
    _kill_after(proc, 50)
    assert proc.returncode == -signal.SIGKILL
    n1, fps = _state(cat)
    assert n1 < n  # really killed mid-scan

    proc = _spawn(cat, root)
    _kill_after(proc, n1 + 50)
    n2, _ = _state(cat)
    assert n1 <= n2 <= n

    with Catalog.open(str(cat)) as c:
        from engine.library import Library

        lib = Library(c)
        events = list(lib.index(root))
        counts = events[-1].counts
        assert counts is not None and counts["unchanged"] == n2 and counts["added"] == n - n2
        assert lib.count(str(root), {"status": "ok"}) == n
        for fp in fps:  # every thumbnail under a real name is a whole JPEG (atomic writes)
            t = lib.thumbs.get(fp)
            assert t is not None and t.shape[2] == 3
    assert {p: p.read_bytes() for p in root.rglob("*.jpg")} == before  # originals untouched


def test_rank_scores_unscored_photos_through_the_hook(make_image: ImageFactory, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from app.commands import rank_cmd

    root = tmp_path / "photos"
    for i in range(3):
        make_image(f"p{i}.jpg", seed=i)
    (root / "bad.jpg").write_bytes(b"")
    asked: list[list[int]] = []

    def hook(services: Services, ids: list[int], quiet: bool) -> str | None:
        asked.append(list(ids))

        def fn(s):  # type: ignore[no-untyped-def]
            for pid in ids:
                p = s.get(Photo, pid)
                s.add(Score(photo_id=pid, model="fake", model_version="1", fingerprint=p.fingerprint,
                            improvability=float(pid), quality=5.0, severity_json="{}", recommended=False,
                            scored_at=datetime.now()))
            refresh_current_scores(s)
        services.catalog.write(fn)
        return None

    args = argparse.Namespace(catalog=str(tmp_path / "c.sqlite"), dir=str(root), top=None, json=True,
                              no_score=False, quiet=True)
    assert rank_cmd.run(args, score_hook=hook) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(asked) == 1 and len(asked[0]) == 3  # only the good, unscored photos
    assert [r["improvability"] for r in recs[:3]] == sorted((r["improvability"] for r in recs[:3]), reverse=True)
    assert recs[3]["status"] == "error" and recs[3]["improvability"] is None
    assert rank_cmd.run(args, score_hook=hook) == 0  # second time: nothing left to score
    assert len(asked) == 1
