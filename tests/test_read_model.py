"""One read model: ``rank``, ``score``, ``export --recommended`` and the library query (the grid's)
agree on every photo's current score, including base and fine-tuned rows written with one
timestamp (the tie the old per-command queries broke differently), a stale score after the file
changed, and "photos under a folder" (one engine function)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

import engine.library
from app.cli import main
from db.catalog import Catalog
from db.queries import refresh_current_scores
from db.schema import Head, Photo, Score
from engine.assess.scoring import LastLayer
from engine.library import Library
from tests.pipeline_fixtures import scored_library

N = 8


@pytest.fixture
def library_dir(tmp_path: Path, make_image: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    return scored_library(tmp_path, make_image, monkeypatch, N, seed=10)


def _cli(capsys: Any, *args: str) -> list[dict[str, Any]]:
    assert main(list(args)) == 0
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


def _by_name(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(r["path"]).name: r for r in recs}


def _views(cat_path: str, root: Path, capsys: Any, out: Path) -> dict[str, dict[str, tuple[float | None, bool]]]:
    """(improvability, recommended) of every photo as each reader sees it."""
    score = _by_name(_cli(capsys, "--catalog", cat_path, "score", str(root), "--json"))
    rank = _by_name(_cli(capsys, "--catalog", cat_path, "rank", str(root), "--json", "--no-score", "-q"))
    exported = _by_name(_cli(capsys, "--catalog", cat_path, "export", str(root), "--to", str(out),
                             "--recommended"))
    with Catalog.open(cat_path) as cat:
        rows = Library(cat).query(str(root), "improvability", {}, 0, 1000)
    grid = {r.name: (r.improvability, bool(r.recommended)) for r in rows}
    return {
        "score": {n: (r["improvability"], r["recommended"]) for n, r in score.items()},
        "rank": {n: (r["improvability"], r["recommended"]) for n, r in rank.items()},
        "grid": {n: (None if v[0] is None else round(v[0], 4), v[1]) for n, v in grid.items()},
        "export": {n: (None, True) for n in exported},
    }


def _agree(v: dict[str, dict[str, tuple[float | None, bool]]]) -> None:
    assert len(v["score"]) == N
    assert v["score"] == v["rank"] == v["grid"]
    recommended = {n for n, (_i, rec) in v["score"].items() if rec}
    assert set(v["export"]) == recommended  # export chose exactly the recommended photos


def test_rank_score_export_and_grid_agree_on_every_photo(library_dir: Path, tmp_path: Path, catalog_url: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cat_path = catalog_url
    first = _by_name(_cli(capsys, "--catalog", cat_path, "score", str(library_dir), "--json"))
    # a threshold in the middle of this library's scores: some photos recommended, some not
    imps = sorted(r["improvability"] for r in first.values())
    thr = (imps[N // 2 - 1] + imps[N // 2]) / 2
    (library_dir.parent / "models" / "assessor.json").write_text(json.dumps({"thresholds": {"improvability": thr}}))
    _cli(capsys, "--catalog", cat_path, "score", str(library_dir), "--json", "--force")
    v = _views(cat_path, library_dir, capsys, tmp_path / "out1")
    _agree(v)
    assert 0 < sum(rec for _i, rec in v["score"].values()) < N

    # The tie: an active fine-tuned head whose row has the same timestamp as the base row, and
    # says the opposite; every reader takes the head's row (the newer, by id).
    with Catalog.open(cat_path) as cat:
        def tie(s: Any) -> str:
            base = s.scalars(select(Score).where(Score.recommended.is_(False)).order_by(Score.id)).first()
            dim = len(base.embedding) // 4  # a head of the right size: later scoring uses it
            h = Head(model=base.model, model_version=base.model_version, created_at=datetime.now(),
                     weights=LastLayer(np.zeros(dim), thr + 5.0).to_bytes(), n_ratings=1, active=True)
            s.add(h)
            s.flush()
            s.add(Score(photo_id=base.photo_id, model=base.model, model_version=base.model_version,
                        fingerprint=base.fingerprint, improvability=thr + 5.0, quality=base.quality,
                        severity_json=base.severity_json, recommended=True, head=str(h.id),
                        scored_at=base.scored_at))
            refresh_current_scores(s, [base.photo_id])
            return str(s.get(Photo, base.photo_id).path)

        tied = os.path.basename(cat.write(tie))
    v = _views(cat_path, library_dir, capsys, tmp_path / "out2")
    _agree(v)
    assert v["score"][tied] == (round(thr + 5.0, 4), True)

    # A stale score: the file changed. Indexing (here by rank --no-score, which indexes first and
    # does not score) clears its current score: no reader may show the old numbers until it is
    # rescored; score rescores it, and all agree again.
    from PIL import Image

    from tests.conftest import make_rgb

    changed = library_dir / "p0.jpg"
    Image.fromarray(make_rgb(100, 80, seed=99)).save(changed, quality=60)
    rank = _by_name(_cli(capsys, "--catalog", cat_path, "rank", str(library_dir), "--json", "--no-score", "-q"))
    assert rank["p0.jpg"]["improvability"] is None and rank["p0.jpg"]["status"] == "ok"
    with Catalog.open(cat_path) as cat:
        lib = Library(cat)
        pid = lib.photo_ids(library_dir, {"text": "/p0.jpg"})[0]
        assert lib.photo_record(pid)["improvability"] is None
        assert lib.photo_ids(library_dir, {"scored": False}) == [pid]
    v = _views(cat_path, library_dir, capsys, tmp_path / "out3")
    _agree(v)
    assert v["score"]["p0.jpg"][0] is not None


def test_photos_under_a_folder(tmp_catalog: Catalog, tmp_path: Path) -> None:
    """One function answers it: sub-folders included, a sibling with a longer name not, missing
    photos left out unless asked, non-UTF-8 names exact."""
    root = tmp_path / "lib"
    names = [b"a.jpg", b"sub/b.jpg", b"caf\xe9.jpg"]

    def add(s: Any) -> None:
        for i, rel in enumerate([*names, b"../lib2/x.jpg", b"gone.jpg"]):
            pb = os.path.normpath(os.fsencode(root) + b"/" + rel)
            s.add(Photo(path=os.fsdecode(pb).encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                        path_bytes=pb, size=1, mtime_ns=i, indexed_at=datetime.now(),
                        status="missing" if rel == b"gone.jpg" else "ok"))

    tmp_catalog.write(add)
    lib = Library(tmp_catalog)
    got = {os.fsencode(lib.photo(i).path) for i in lib.photo_ids(root)}
    assert got == {os.fsencode(root) + b"/" + n for n in names}
    assert len(lib.photo_ids(root, {"include_missing": True})) == 4
    assert len(lib.photo_ids(root / "sub")) == 1
    assert len(lib.photo_ids(None)) == 4  # the whole catalog, lib2 included, the missing one not


@pytest.mark.parametrize("sort", ["improvability", "-improvability", "quality", "-quality"])
def test_score_sorts_page_through_scored_then_the_rest(tmp_catalog: Catalog, sort: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Scored readable photos come from the score index, the rest from the general query (and deep
    pages from the general query alone): every page, wherever it starts or ends, equals the one order (nulls last, bad files after good ones
    among equals, then by value, then id), with ties in value."""
    import random

    rng = random.Random(1)
    rows: list[tuple[int, str, float | None, float | None]] = []

    def add(s: Any) -> None:
        for i in range(60):
            status = "error" if i % 7 == 0 else ("missing" if i % 11 == 0 else "ok")
            p = Photo(path=f"/no-such-lib/{i:03d}.jpg", path_bytes=f"/no-such-lib/{i:03d}.jpg".encode(), size=1, mtime_ns=i,
                      fingerprint=f"fp{i}", indexed_at=datetime.now(), status=status)
            s.add(p)
            s.flush()
            imp = qual = None
            if i % 3:  # two in three scored; values with ties
                imp, qual = float(rng.randint(-3, 3)), float(rng.randint(1, 4))
                s.add(Score(photo_id=p.id, model="m", model_version="v", fingerprint=f"fp{i}", improvability=imp,
                            quality=qual, severity_json="{}", recommended=imp > 1, scored_at=datetime.now()))
            rows.append((p.id, status, imp, qual))
        refresh_current_scores(s)

    tmp_catalog.write(add)
    key, desc = sort.lstrip("-"), sort.startswith("-")
    col = 2 if key == "improvability" else 3
    sign = -1 if (key == "improvability") != desc else 1

    def order(r: tuple[int, str, float | None, float | None]) -> tuple[int, int, float, int]:
        v = r[col]
        return (v is None, r[1] != "ok", 0.0 if v is None else sign * v, r[0])

    expected = [r[0] for r in sorted((r for r in rows if r[1] != "missing"), key=order)]
    lib = Library(tmp_catalog)
    assert [r.id for r in lib.query("/no-such-lib", sort, {}, 0, 1000)] == expected
    for offset, limit in [(0, 7), (5, 30), (30, 9), (33, 40), (45, 3), (52, 100), (80, 5)]:  # both paths:
        monkeypatch.setattr(engine.library, "INDEX_WALK_MAX", 10_000 if offset % 2 else 0)
        assert [r.id for r in lib.query("/no-such-lib", sort, {}, offset, limit)] == expected[offset:offset + limit], (
            offset, limit)
    assert [r.id for r in lib.query("/no-such-lib", sort, {"recommended": True}, 0, 1000)] == [
        i for i in expected if (next(r for r in rows if r[0] == i)[2] or 0) > 1]
    assert [r.id for r in lib.query("/no-such-lib", sort, {"scored": False}, 0, 1000)] == [
        i for i in expected if next(r for r in rows if r[0] == i)[2] is None]
