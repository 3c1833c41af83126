"""One decode per photo: a new or changed file is decoded once, at the scorer's scale, for its
row (size, EXIF), its thumbnail and its score, which are the same as the two-pass path's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

import engine.ingest.imageio as imageio
from app.cli import main
from db.catalog import Catalog
from db.schema import Photo, Score
from engine.assess.scoring import Scorer
from engine.core.runtime import clear_sessions
from engine.ingest.indexer import Indexer
from engine.library import Library
from tests.conftest import ImageFactory
from tests.onnx_fixtures import write_assessor


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clear_sessions()
    d = tmp_path / "models"
    write_assessor(d / "assessor.onnx")
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(d))
    return d


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = imageio.decode

    def counting(data, *a, **k):  # type: ignore[no-untyped-def]
        calls.append(len(data))
        return real(data, *a, **k)

    monkeypatch.setattr(imageio, "decode", counting)
    import engine.ingest.scan as scan

    monkeypatch.setattr(scan, "decode", counting)
    return calls


def _scores(url: str) -> dict[str, tuple[float, float, str]]:
    with Catalog.open(url) as cat, cat.session() as s:
        return {Path(p).name: (round(i, 5), round(q, 5), sev) for p, i, q, sev in s.execute(
            select(Photo.path, Score.improvability, Score.quality, Score.severity_json).join(
                Score, Score.photo_id == Photo.id))}


def test_score_decodes_each_new_file_once(models: Path, tmp_path: Path, make_image: ImageFactory,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(6):
        make_image(f"p{i}.jpg", 2600 if i % 2 else 300, 1800 if i % 2 else 200, seed=i)  # large ones: half scale
    root = tmp_path / "photos"
    calls_patch = pytest.MonkeyPatch()
    calls = _count_decodes(calls_patch)
    url = str(tmp_path / "one.sqlite")
    assert main(["--catalog", url, "score", str(root), "--json"]) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in recs] == ["ok"] * 6
    assert len(calls) == 6  # one decode per photo: row, thumbnail and score
    with Catalog.open(url) as cat:
        lib = Library(cat)
        with cat.session() as s:
            rows = s.scalars(select(Photo).order_by(Photo.path)).all()
        assert all(lib.thumbs.has(p.fingerprint or "") for p in rows)
        assert {(p.width, p.height) for p in rows} == {(300, 200), (2600, 1800)}  # full size, not decoded size
        for p in rows:  # thumbnails of the photo's shape (from the views' pre-reduction for large ones)
            th = lib.thumbs.get(p.fingerprint or "")
            assert th is not None and max(th.shape[:2]) == min(256, max(p.width or 0, p.height or 0))
            assert abs(th.shape[1] / th.shape[0] - (p.width or 1) / (p.height or 1)) < 0.02
    calls.clear()
    assert main(["--catalog", url, "score", str(root), "--json"]) == 0  # unchanged: a stat each, no decode
    capsys.readouterr()
    assert calls == []

    # the two-pass path (index, then score) gives the same scores
    calls_patch.undo()
    url2 = str(tmp_path / "two.sqlite")
    with Catalog.open(url2) as cat:
        for _ in Indexer(cat).index(root):
            pass
        with cat.session() as s:
            ids = list(s.scalars(select(Photo.id)))
        list(Scorer().score_photos(cat, ids))
    assert _scores(url) == _scores(url2)


def test_changed_file_is_rescored_from_its_one_decode(models: Path, tmp_path: Path, make_image: ImageFactory,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    make_image("a.jpg", 200, 150, seed=1)
    b = make_image("b.jpg", 200, 150, seed=2)
    root = tmp_path / "photos"
    url = str(tmp_path / "c.sqlite")
    assert main(["--catalog", url, "score", str(root), "--json"]) == 0
    capsys.readouterr()
    before = _scores(url)
    shutil.copy(tmp_path / "photos" / "a.jpg", b)  # b's content changes
    calls = _count_decodes(monkeypatch)
    assert main(["--catalog", url, "score", str(root), "--json"]) == 0
    capsys.readouterr()
    assert len(calls) == 1
    after = _scores(url)
    assert after["b.jpg"] == before["a.jpg"] and after["a.jpg"] == before["a.jpg"]


def test_heic_is_decoded_once_and_scored(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """HEIC has no reduced-scale decode: the one full decode feeds views and thumbnail alike (its
    small embedded thumbnail could not serve the views, which need the half-scale resolution)."""
    from PIL import Image

    if not imageio.HAVE_HEIF:
        pytest.skip("pillow-heif not available")
    from tests.conftest import make_rgb

    root = tmp_path / "photos"
    root.mkdir()
    try:
        Image.fromarray(make_rgb(200, 150, 4)).save(root / "a.heic", format="HEIF", quality=90)
    except Exception as e:  # noqa: BLE001 - libheif built without an encoder
        pytest.skip(f"cannot write HEIC here: {e}")
    calls_patch = pytest.MonkeyPatch()
    calls = _count_decodes(calls_patch)
    url = str(tmp_path / "c.sqlite")
    try:
        assert main(["--catalog", url, "score", str(root), "--json"]) == 0
    finally:
        calls_patch.undo()
    rec = json.loads(capsys.readouterr().out.splitlines()[0])
    assert rec["status"] == "ok" and isinstance(rec["improvability"], float)
    assert len(calls) == 1


def test_thumbnail_from_the_views_pre_reduction_matches_a_direct_shrink(models: Path, make_image: ImageFactory) -> None:
    """The indexer shrinks the views' area pre-reduction (a few hundred pixels) to the thumbnail
    instead of the whole half-scale decode: the same picture, within a grey level or two."""
    import os

    import cv2
    import numpy as np

    from engine.ingest.indexer import _examine, _Walked

    path = make_image("big.jpg", 2600, 1800, seed=4)
    st = os.stat(path)
    res = _examine(_Walked(str(path), os.fsencode(str(path)), st.st_size, st.st_mtime_ns), None,
                   Scorer(models / "assessor.onnx"))
    assert res.kind == "ok" and "_views" in res.values
    th = res.values["_thumb"]
    full = imageio.load_image(path).rgb
    ref = cv2.resize(full, (th.shape[1], th.shape[0]), interpolation=cv2.INTER_AREA)
    assert th.shape[:2] == (177, 256)
    assert float(np.abs(th.astype(np.float32) - ref.astype(np.float32)).mean()) < 3.0
