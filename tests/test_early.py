"""A starting ``photolift score`` decodes the first new photos while it imports and opens the
catalog (app.prestart, engine.ingest.early): the indexer takes those decodes instead of reading
the files again, the catalog ends exactly as without them, and nothing is decoded early that
the catalog already holds."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

import engine.ingest.scan as scan
from app.cli import main
from app.prestart import _score_folders, start_early
from db.catalog import Catalog
from db.quick import catalog_file, known_files
from engine.assess.scoring import Scorer
from engine.assess.views import decode_reduction
from engine.core.runtime import clear_sessions
from engine.ingest.early import EarlyDecoder
from engine.ingest.indexer import Indexer
from engine.ingest.thumbnails import ThumbnailCache
from tests.conftest import ImageFactory
from tests.onnx_fixtures import write_assessor


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clear_sessions()
    d = tmp_path / "models"
    write_assessor(d / "assessor.onnx")
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(d))
    return d


def _photos(make_image: ImageFactory, n: int, folder: Path) -> list[Path]:
    return [make_image(f"p{i:02d}.jpg", 2600 if i % 3 == 0 else 320, 1800 if i % 3 == 0 else 240, seed=i,
                       folder=folder) for i in range(n)]


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = scan.decode

    def counting(data, ext, *a, **k):  # type: ignore[no-untyped-def]
        calls.append(ext)
        return real(data, ext, *a, **k)

    monkeypatch.setattr(scan, "decode", counting)
    return calls


def _rows(url: str) -> dict[str, tuple[object, ...]]:
    from sqlalchemy import select

    from db.schema import Photo, Score

    with Catalog.open(url) as cat, cat.session() as s:
        return {Path(p).name: (w, h, fp, round(i, 5), round(q, 5), sev) for p, w, h, fp, i, q, sev in s.execute(
            select(Photo.path, Photo.width, Photo.height, Photo.fingerprint, Score.improvability, Score.quality,
                   Score.severity_json).join(Score, Score.photo_id == Photo.id))}


def test_command_line_recognised() -> None:
    here = os.getcwd()
    assert _score_folders(["score", here]) == ([here], os.environ.get("PHOTOLIFT_CATALOG"), 2)
    assert _score_folders(["--catalog", "x.sqlite", "score", here, "--workers", "3", "--json"]) == (
        [here], "x.sqlite", 3)
    assert _score_folders(["score", "--catalog=y.sqlite", here]) == ([here], "y.sqlite", 2)
    assert _score_folders(["index", here]) is None  # only score
    assert _score_folders(["score", here, "--cluster", "local"]) is None  # the cluster's workers decode
    assert _score_folders(["score", "/no/such/folder"]) is None
    assert _score_folders(["score", here, "--workers", "0"]) is None  # the command reports that itself
    assert _score_folders(["--help"]) is None
    assert start_early(["score", here, "--catalog", "postgresql://u@h/db"]) is None  # a server: no glance


def test_known_files(tmp_path: Path, make_image: ImageFactory, models: Path) -> None:
    root = tmp_path / "photos"
    _photos(make_image, 3, root)
    db = tmp_path / "k.sqlite"
    assert known_files(db, str(root)) == {}  # no catalog yet: everything is new
    assert main(["--catalog", str(db), "index", str(root), "-q"]) == 0
    got = known_files(db, os.path.realpath(root))
    assert got is not None and sorted(Path(os.fsdecode(p)).name for p in got) == ["p00.jpg", "p01.jpg", "p02.jpg"]
    st = os.stat(root / "p01.jpg")
    assert got[os.fsencode(os.path.realpath(root / "p01.jpg"))] == (st.st_size, st.st_mtime_ns)
    assert known_files(db, str(tmp_path / "elsewhere")) == {}
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    assert known_files(bad, str(root)) is None  # cannot tell: nothing is decoded early
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    assert known_files(other, str(root)) is None
    assert catalog_file(str(db)) == db.absolute()
    assert catalog_file(f"sqlite:///{db}") == db
    assert catalog_file("postgresql://u@h/db") is None


def test_early_decodes_are_used_once_and_change_nothing(models: Path, tmp_path: Path, make_image: ImageFactory,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "photos"
    _photos(make_image, 7, root)
    # the reference: no early decoding
    url_a = str(tmp_path / "a.sqlite")
    with Catalog.open(url_a) as cat:
        scorer = Scorer(workers=2)
        for _ in Indexer(cat, ThumbnailCache(tmp_path / "ta"), workers=2, scorer=scorer).index(str(root)):
            pass
    calls = _count_decodes(monkeypatch)
    url_b = str(tmp_path / "b.sqlite")
    early = EarlyDecoder([str(root)], lambda r: known_files(Path(url_b), r), decode_reduction, workers=2, max_files=5)
    assert early.wait()
    assert early.decoded == 5 and len(calls) == 5  # the first five of the walk, and no more
    with Catalog.open(url_b) as cat:
        idx = Indexer(cat, ThumbnailCache(tmp_path / "tb"), workers=2, scorer=Scorer(workers=2), early=early)
        for _ in idx.index(str(root)):
            pass
    early.close()
    assert early.taken == 5
    assert len(calls) == 7  # each photo decoded once: five early, two by the indexer
    assert _rows(url_b) == _rows(url_a)


def test_a_file_changed_after_its_early_decode_is_read_again(models: Path, tmp_path: Path,
                                                             make_image: ImageFactory) -> None:
    root = tmp_path / "photos"
    _photos(make_image, 2, root)
    url = str(tmp_path / "c.sqlite")
    early = EarlyDecoder([str(root)], lambda r: known_files(Path(url), r), decode_reduction, workers=1)
    assert early.wait() and early.decoded == 2
    p = make_image("p01.jpg", 500, 400, seed=99, folder=root)  # replaced after the early decode
    with Catalog.open(url) as cat:
        for _ in Indexer(cat, None, workers=1, scorer=Scorer(workers=1), early=early).index(str(root)):
            pass
    early.close()
    assert early.taken == 1
    row = _rows(url)["p01.jpg"]
    assert row[:3] == (500, 400, scan.fingerprint(p))


def test_nothing_the_catalog_holds_is_decoded_early(models: Path, tmp_path: Path, make_image: ImageFactory,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "photos"
    _photos(make_image, 4, root)
    url = str(tmp_path / "d.sqlite")
    assert main(["--catalog", url, "score", str(root), "--json"]) == 0
    first = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in first] == ["ok"] * 4
    make_image("new.jpg", 320, 240, seed=50, folder=root)
    calls = _count_decodes(monkeypatch)
    early = start_early(["--catalog", url, "score", str(root)])
    assert early is not None and early.decoder.wait()
    assert early.decoder.decoded == 1 and calls == [".jpg"]  # only the new one
    early.close()
    calls.clear()
    monkeypatch.setenv("PHOTOLIFT_NO_EARLY", "1")
    assert main(["--catalog", url, "score", str(root), "--json"]) == 0
    again = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(again) == 5 and len(calls) == 1
