"""engine.assess.finetune: last-layer fine-tuning on graded ratings moves the ranking toward them."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from db.catalog import Catalog
from db.schema import Head, Photo, Rating, Score
from engine.assess.finetune import (
    base_head_from_scores,
    deactivate_heads,
    finetune_catalog,
    fit_head,
    fit_head_intervals,
    rating_intervals,
    rating_targets,
)
from engine.assess.scoring import LastLayer, Scorer
from engine.core.runtime import clear_sessions
from engine.ingest.indexer import fingerprint
from tests.onnx_fixtures import _assessor_weights, write_assessor


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def test_fit_head_without_ratings_is_the_base_and_moves_with_them() -> None:
    rng = np.random.default_rng(0)
    e = rng.normal(size=(40, 8))
    base = LastLayer(rng.normal(size=8), 0.2)
    same = fit_head(e[:0], np.zeros(0), base)
    np.testing.assert_allclose(same.w, base.w)
    # ratings that follow another direction pull the head toward it
    true_w = rng.normal(size=8)
    t = e @ true_w
    tuned = fit_head(e, t, base, prior=1.0)
    assert _spearman(tuned(e), t) > _spearman(base(e), t) + 0.2
    # strong prior keeps the base
    stiff = fit_head(e, t, base, prior=1e6)
    np.testing.assert_allclose(stiff.w, base.w, atol=1e-3)
    with pytest.raises(ValueError):
        rating_targets(np.array([3]), 1.0)
    assert list(rating_targets(np.array([2, 1, 0, -1]), 1.0)) == [2.5, 1.25, 0.0, -0.5]


def test_interval_fit_keeps_a_head_that_already_agrees_and_corrects_one_that_does_not() -> None:
    rng = np.random.default_rng(3)
    e = rng.normal(size=(60, 8))
    base = LastLayer(rng.normal(size=8), 0.1)
    thr = 1.0
    assert fit_head_intervals(e[:0], np.zeros(0), np.zeros(0), base).w.tolist() == base.w.tolist()
    lo, hi = rating_intervals(np.array([2, 1, 0, -1]), thr)
    assert lo.tolist() == [2.0, 1.1, -0.25, -np.inf] and hi.tolist() == [np.inf, 2.0, 0.9, -0.25]
    with pytest.raises(ValueError):
        rating_intervals(np.array([5]), thr)

    def grade(gain: np.ndarray) -> np.ndarray:
        return np.select([gain >= 2.0, gain >= 1.1, gain >= -0.25], [2, 1, 0], -1)

    # grades that the shipped head already satisfies cost nothing: the head (and so the order
    # inside each grade) is kept exactly
    clear = np.abs(base(e) - 1.0) > 0.1  # off the margin band around the threshold
    same = fit_head_intervals(e[clear], *rating_intervals(grade(base(e[clear])), thr), base, prior=1.0)
    np.testing.assert_allclose(same.w, base.w, atol=1e-12)
    # grades from another taste pull the predictions into their intervals
    other = LastLayer(rng.normal(size=8), 0.5)
    g = grade(other(e))
    lo, hi = rating_intervals(g, thr)
    tuned = fit_head_intervals(e, lo, hi, base, prior=1.0)

    def inside(layer: LastLayer) -> float:
        p = layer(e)
        return float(np.mean((p >= lo - 1e-9) & (p <= hi + 1e-9)))

    assert inside(tuned) > inside(base) + 0.3
    assert _spearman(tuned(e), other(e)) > _spearman(base(e), other(e)) + 0.2
    with pytest.raises(ValueError):
        fit_head_intervals(e[:1], np.array([1.0]), np.array([0.0]), base)


def test_base_head_recovered_from_scores() -> None:
    rng = np.random.default_rng(1)
    e = rng.normal(size=(30, 6))
    w, b = rng.normal(size=6), -0.3
    rec = base_head_from_scores(e, e @ w + b)
    np.testing.assert_allclose(rec.w, w, atol=1e-8)
    assert rec.b == pytest.approx(b)
    layer = LastLayer(w, b)
    back = LastLayer.from_bytes(layer.to_bytes())
    np.testing.assert_allclose(back.w, w, atol=1e-6)


def test_a_handful_of_consistent_ratings_reorders_the_catalog(tmp_path: Path, tmp_catalog: Catalog,
                                                              make_image) -> None:  # type: ignore[no-untyped-def]
    clear_sessions()
    model = write_assessor(tmp_path / "m" / "assessor.onnx")
    w = _assessor_weights(16, 10, 0)
    model.with_suffix(".json").write_text(json.dumps({"head": {"w": w["w_imp"][:, 0].tolist(), "b": 0.0},
                                                       "thresholds": {"improvability": 0.5}}))
    sc = Scorer(model, workers=1, batch_size=4)
    from PIL import Image

    from tests.conftest import make_rgb

    rng = np.random.default_rng(3)
    paths = []
    for i in range(16):  # photos that differ in exposure and contrast, so their embeddings differ
        img = make_rgb(128, 96, seed=i).astype(np.float32) * rng.uniform(0.3, 1.0) + rng.uniform(0, 80)
        p = tmp_path / f"r{i}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
        paths.append(p)

    def add(s):  # type: ignore[no-untyped-def]
        ids = []
        for p in paths:
            ph = Photo(path=str(p), path_bytes=str(p).encode(), size=1, mtime_ns=0, fingerprint=fingerprint(p),
                       indexed_at=datetime.now())
            s.add(ph)
            s.flush()
            ids.append(ph.id)
        return ids

    ids = tmp_catalog.write(add)
    events = list(sc.score_photos(tmp_catalog, ids))
    base = {e.photo_id: e.assessment.improvability for e in events if e.assessment}
    # the user disagrees with the shipped head: rates its 3 lowest as significant and its 3 highest neutral
    order = sorted(ids, key=lambda i: base[i])
    liked, disliked = order[:3], order[-3:]

    def rate(s):  # type: ignore[no-untyped-def]
        for pid in liked:
            s.add(Rating(photo_id=pid, rating=2, created_at=datetime.now()))
        for pid in disliked:
            s.add(Rating(photo_id=pid, rating=0, created_at=datetime.now()))

    tmp_catalog.write(rate)
    res = finetune_catalog(tmp_catalog, sc)
    assert res.n_ratings == 6 and res.rescored == 16
    with tmp_catalog.session() as s:
        head = s.execute(select(Head).where(Head.active.is_(True))).scalar_one()
        assert head.n_ratings == 6 and head.model_version == sc.model_version
        tuned = {r.photo_id: r.improvability for r in s.execute(
            select(Score).where(Score.head == str(head.id))).scalars()}
    assert set(tuned) == set(ids)
    # the library (grid, rank, score, export) reads the head's rows as every photo's current score
    from engine.library import Library

    lib = Library(tmp_catalog)
    assert {i: lib.photo(i).score.improvability for i in ids} == pytest.approx(tuned)  # type: ignore[union-attr]
    assert np.mean([tuned[i] for i in liked]) > np.mean([tuned[i] for i in disliked])
    assert np.mean([base[i] for i in liked]) < np.mean([base[i] for i in disliked])
    rank_before = [order.index(i) for i in liked]
    rank_after = sorted(ids, key=lambda i: tuned[i])
    assert np.mean([rank_after.index(i) for i in liked]) > np.mean(rank_before) + 3
    # new scores by this scorer now use the active head
    ev = list(sc.score_photos(tmp_catalog, ids[:2], force=True))
    assert all(e.assessment is not None for e in ev)
    assert ev[0].assessment is not None and ev[0].assessment.improvability == pytest.approx(tuned[ids[0]], abs=1e-4)
    deactivate_heads(tmp_catalog, sc.model_name, sc.model_version)
    with tmp_catalog.session() as s:
        assert s.execute(select(Score).where(Score.head != "")).first() is None
    # back to the base rows (of the force-rescored two: their new base rows)
    assert all(lib.photo(i).score.head == "" for i in ids)  # type: ignore[union-attr]
    assert lib.photo(ids[5]).score.improvability == pytest.approx(base[ids[5]])  # type: ignore[union-attr]


def test_finetune_needs_rated_scored_photos(tmp_path: Path, tmp_catalog: Catalog) -> None:
    clear_sessions()
    sc = Scorer(write_assessor(tmp_path / "assessor.onnx"))
    with pytest.raises(ValueError, match="no rated photo"):
        finetune_catalog(tmp_catalog, sc)
