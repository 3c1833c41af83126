"""engine.assess.scoring: the assessor service against a tiny real assessor-contract ONNX graph."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from db.catalog import Catalog
from db.schema import Photo, Score
from engine.assess.degrade import SEVERITY_NAMES
from engine.assess.scoring import Scorer, Thresholds, get_scorer
from engine.core.jobs import CancelToken, JobCancelled, Progress
from engine.core.runtime import clear_sessions
from engine.ingest.indexer import fingerprint
from tests.conftest import make_rgb
from tests.onnx_fixtures import assessor_reference, write_assessor


@pytest.fixture
def model(tmp_path: Path) -> Path:
    clear_sessions()
    return write_assessor(tmp_path / "models" / "assessor.onnx")


def _add_photos(cat: Catalog, paths: list[Path]) -> list[int]:
    def fn(s):  # type: ignore[no-untyped-def]
        ids = []
        for p in paths:
            ph = Photo(path=str(p), path_bytes=str(p).encode(), size=p.stat().st_size if p.exists() else 0,
                       mtime_ns=0, fingerprint=fingerprint(p) if p.exists() else f"fp-{p.name}", indexed_at=datetime.now())
            s.add(ph)
            s.flush()
            ids.append(ph.id)
        return ids

    return cat.write(fn)


def test_assess_matches_the_graph_and_thresholds(model: Path) -> None:
    sc = Scorer(model, thresholds=Thresholds(improvability=0.0, severity={n: 0.5 for n in SEVERITY_NAMES}))
    assert sc.k == 4 and len(sc.model_version) == 12
    img = make_rgb(200, 150, seed=1)
    a = sc.assess(img)
    c, g = sc.views(img)
    ref = assessor_reference(c[None], g[None])
    assert a.improvability == pytest.approx(float(ref["improvability"][0]), abs=1e-4)
    assert a.quality == pytest.approx(float(ref["quality"][0]), abs=1e-4)
    assert 1.0 <= a.quality <= 10.0
    assert list(a.severity) == list(SEVERITY_NAMES)
    assert a.embedding.shape == (16,)
    assert a.recommended == (a.improvability >= 0.0)
    assert set(a.reasons) == {n for n, v in a.severity.items() if v >= 0.5}
    # a batch gives the same numbers as one by one, and different images differ
    b = sc.assess_many([img, make_rgb(120, 90, seed=5), img])
    assert b[0].improvability == pytest.approx(a.improvability, abs=1e-5)
    assert b[2].improvability == pytest.approx(a.improvability, abs=1e-5)
    assert b[1].improvability != pytest.approx(a.improvability, abs=1e-4)
    json.dumps(a.to_json())


def test_sidecar_thresholds_and_missing_model(model: Path, tmp_path: Path) -> None:
    model.with_suffix(".json").write_text(json.dumps({"thresholds": {"improvability": 123.0,
                                                                     "severity": {"noise": 0.0}}}))
    sc = Scorer(model)
    a = sc.assess(make_rgb(100, 80))
    assert not a.recommended and "noise" in a.reasons
    from engine.core.runtime import ModelMissing

    with pytest.raises(ModelMissing):
        Scorer(tmp_path / "nope.onnx")
    assert get_scorer(model) is get_scorer(model)


def test_score_photos_stores_per_version_skips_and_reports_bad_files(model: Path, tmp_catalog: Catalog,
                                                                     make_image) -> None:  # type: ignore[no-untyped-def]
    paths = [make_image(f"p{i}.jpg", 160, 120, seed=i) for i in range(5)]
    bad = paths[0].parent / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ids = _add_photos(tmp_catalog, paths + [bad])
    sc = Scorer(model, workers=2, batch_size=2)
    seen: list[Progress] = []
    events = list(sc.score_photos(tmp_catalog, ids + [99999], progress=seen.append))
    by_status = {s: [e for e in events if e.status == s] for s in ("ok", "error", "skipped")}
    assert len(by_status["ok"]) == 5 and len(by_status["error"]) == 2
    assert any("no such photo" in (e.error or "") for e in by_status["error"])
    assert seen[-1].done == seen[-1].total == 7
    with tmp_catalog.session() as s:
        rows = s.execute(select(Score)).scalars().all()
        assert len(rows) == 5
        assert {r.model_version for r in rows} == {sc.model_version}
        assert all(r.head == "" and len(np.frombuffer(r.embedding, np.float32)) == 16 for r in rows)
        assert all(set(json.loads(r.severity_json)) == set(SEVERITY_NAMES) for r in rows)
        broken = s.get(Photo, ids[-1])
        assert broken is not None and broken.status == "error" and "cannot score" in (broken.error or "")
    # the stored score is the same as scoring the decoded image directly
    direct = sc.assess_path(str(paths[1]))
    ev = next(e for e in events if e.photo_id == ids[1])
    assert ev.assessment is not None
    assert ev.assessment.improvability == pytest.approx(direct.improvability, abs=1e-5)
    # second pass: already scored for this version and content
    again = list(sc.score_photos(tmp_catalog, ids[:5]))
    assert [e.status for e in again] == ["skipped"] * 5
    forced = list(sc.score_photos(tmp_catalog, ids[:5], force=True))
    assert [e.status for e in forced] == ["ok"] * 5
    with tmp_catalog.session() as s:
        assert s.execute(select(func.count(Score.id))).scalar_one() == 5  # replaced, not duplicated


def test_cancel_stops_between_batches_and_leaves_whole_rows(model: Path, tmp_catalog: Catalog,
                                                            make_image) -> None:  # type: ignore[no-untyped-def]
    paths = [make_image(f"c{i}.jpg", 96, 96, seed=i) for i in range(12)]
    ids = _add_photos(tmp_catalog, paths)
    sc = Scorer(model, workers=2, batch_size=3)
    token = CancelToken()
    got = []
    with pytest.raises(JobCancelled):
        for ev in sc.score_photos(tmp_catalog, ids, cancel=token):
            got.append(ev)
            if len(got) == 4:
                token.cancel()
    assert 4 <= len(got) < 12
    with tmp_catalog.session() as s:
        n = s.execute(select(func.count(Score.id))).scalar_one()
    assert n % 3 == 0 and n >= 3 and n < 12  # whole batches only
    assert not [t for t in threading.enumerate() if t.name.startswith("score-decode")]
