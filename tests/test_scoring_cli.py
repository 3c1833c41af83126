"""``photolift score PATH... --json``: index if needed, score, one JSON object per photo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from engine.core.runtime import clear_sessions
from tests.onnx_fixtures import write_assessor


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clear_sessions()
    d = tmp_path / "models"
    write_assessor(d / "assessor.onnx")
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(d))
    return d


def test_score_folder_and_files_json(models: Path, tmp_path: Path, make_image, capsys) -> None:  # type: ignore[no-untyped-def]
    a = make_image("a.jpg", 160, 120, seed=1)
    make_image("sub/b.png", 100, 90, seed=2)
    (a.parent / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cat = str(tmp_path / "cat.sqlite")
    assert main(["--catalog", cat, "score", str(a.parent), "--json"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(recs) == 3
    by = {Path(r["path"]).name: r for r in recs}
    assert by["broken.jpg"]["status"] == "error" and by["broken.jpg"]["error"]
    for name in ("a.jpg", "b.png"):
        r = by[name]
        assert r["status"] == "ok" and r["error"] is None
        assert 1.0 <= r["quality"] <= 10.0 and isinstance(r["recommended"], bool)
        assert isinstance(r["improvability"], float) and len(r["severity"]) >= 8
        assert r["model"]["name"] == "assessor" and len(r["model"]["version"]) == 12
    # a single file (already indexed and scored) and a missing path: same numbers, exit 0
    assert main(["--catalog", cat, "score", str(a), str(tmp_path / "nope.jpg"), "--json"]) == 0
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert again[0]["status"] == "error" and "no such" in again[0]["error"]
    assert again[1]["improvability"] == by["a.jpg"]["improvability"]


def test_score_new_file_is_indexed_and_missing_model_fails(models: Path, tmp_path: Path, make_image,
                                                          capsys) -> None:  # type: ignore[no-untyped-def]
    p = make_image("x.jpg", 120, 100)
    cat = str(tmp_path / "c2.sqlite")
    assert main(["--catalog", cat, "score", str(p)]) == 0
    out = capsys.readouterr().out
    assert "x.jpg" in out and "q " in out
    (models / "assessor.onnx").unlink()
    assert main(["--catalog", cat, "score", str(p)]) == 1
    assert "not found" in capsys.readouterr().err


def test_rank_scores_a_non_utf8_file_name(models: Path, tmp_path: Path, make_image, capsys) -> None:  # type: ignore[no-untyped-def]
    import os
    import shutil

    src = make_image("lib/plain.jpg", 140, 100, seed=3)
    odd = os.fsencode(str(src.parent)) + b"/caf\xe9-latin1.jpg"  # a Latin-1 name, not valid UTF-8
    shutil.copyfile(src, os.fsdecode(odd))
    cat = str(tmp_path / "c3.sqlite")
    assert main(["--catalog", cat, "rank", str(src.parent), "--json"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by = {r["path"].rsplit("/", 1)[-1]: r for r in recs}
    assert set(by) == {"plain.jpg", "caf\\xe9-latin1.jpg"}
    odd_rec = by["caf\\xe9-latin1.jpg"]
    assert odd_rec["status"] == "ok", odd_rec["error"]
    # same pixels, same score
    assert odd_rec["improvability"] == by["plain.jpg"]["improvability"]


def test_rank_text_has_a_header_and_says_what_it_counts(models: Path, tmp_path: Path, make_image, capsys) -> None:  # type: ignore[no-untyped-def]
    src = make_image("lib2/one.jpg", 140, 100, seed=5)
    cat = str(tmp_path / "c4.sqlite")
    assert main(["--catalog", cat, "rank", str(src.parent)]) == 0
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert lines[0].split()[:3] == ["gain", "qual.", "why"] and lines[0].rstrip().endswith("path")
    assert len(lines) == 2 and lines[1].rstrip().endswith("one.jpg")
    assert "indexed 1/1" in cap.err and "scored 1/1" in cap.err  # scoring is not reported as indexing
