"""Fine-tune the assessor's last layer on the user's graded ratings, in numpy.

Ratings (``ratings.rating``): 2 significant improvement, 1 moderate, 0 neutral, -1 regressed.
Each is turned into a target gain in the model's own units (quality points) relative to the
recommendation threshold ``T``: 2 -> 2.5 T, 1 -> 1.25 T, 0 -> 0, -1 -> -0.5 T. So a photo rated
"moderate" should land just above the threshold and a "neutral" one well below it.

The new layer ``w, b`` solves ridge regression *toward the shipped head* ``w0, b0``::

    min  sum_i (w . e_i + b - t_i)^2  +  lam * (|w - w0|^2 + (b - b0)^2)

with ``lam = prior * mean(|e - mean(e)|^2) / dim``: the shipped head counts as about ``prior`` ratings in
every direction of the embedding, so a handful of ratings nudges it and a thousand override it.
Closed form, no iteration. The result is stored as a ``heads`` row (float32 ``w`` then ``b``),
made the active head of that model version, and every stored score of that version is re-headed
from its stored embedding (no image is decoded again), so rankings change at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from engine.scoring import LastLayer

RATING_TARGETS = {2: 2.5, 1: 1.25, 0: 0.0, -1: -0.5}  # times the recommendation threshold
DEFAULT_PRIOR = 8.0


def rating_targets(ratings: np.ndarray, threshold: float) -> np.ndarray:
    t = max(float(threshold), 0.1)
    r = np.asarray(ratings, np.int64)
    bad = ~np.isin(r, list(RATING_TARGETS))
    if bad.any():
        raise ValueError(f"ratings must be in -1..2, got {sorted(set(r[bad].tolist()))}")
    return np.array([RATING_TARGETS[int(x)] * t for x in r], np.float64)


def fit_head(embeddings: np.ndarray, targets: np.ndarray, base: LastLayer, prior: float = DEFAULT_PRIOR
             ) -> LastLayer:
    """Ridge regression of ``targets`` on ``embeddings`` regularised toward ``base`` (closed form)."""
    e = np.asarray(embeddings, np.float64)
    t = np.asarray(targets, np.float64).reshape(-1)
    if e.ndim != 2 or len(e) != len(t):
        raise ValueError(f"embeddings {e.shape} and targets {t.shape} do not match")
    dim = e.shape[1]
    w0 = np.asarray(base.w, np.float64).reshape(-1)
    if w0.shape[0] != dim:
        raise ValueError(f"head has {w0.shape[0]} weights, embeddings have {dim}")
    if len(e) == 0:
        return LastLayer(w0.copy(), float(base.b))
    x = np.hstack([e, np.ones((len(e), 1))])
    theta0 = np.concatenate([w0, [float(base.b)]])
    # the prior is measured in the spread of the rated embeddings (not their offset from 0), so it
    # weighs the same whatever the scale of the embedding and however similar the photos are
    spread = float(np.mean(np.sum((e - e.mean(axis=0)) ** 2, axis=1))) / dim
    floor = 0.01 * float(np.mean(np.sum(e * e, axis=1))) / dim  # one rating must not be fitted exactly
    lam = prior * max(spread, floor, 1e-12)
    a = x.T @ x + lam * np.eye(dim + 1)
    rhs = x.T @ t + lam * theta0
    theta = np.linalg.solve(a, rhs)
    return LastLayer(theta[:dim], float(theta[dim]))


def base_head_from_scores(embeddings: np.ndarray, improvability: np.ndarray) -> LastLayer:
    """Recover the shipped linear head from stored (embedding, improvability) pairs.

    Used when the model ships no sidecar with its head: improvability is exactly linear in the
    embedding, so least squares recovers it when there are at least ``dim + 1`` varied photos
    (minimum-norm otherwise).
    """
    e = np.asarray(embeddings, np.float64)
    x = np.hstack([e, np.ones((len(e), 1))])
    theta, *_ = np.linalg.lstsq(x, np.asarray(improvability, np.float64), rcond=None)
    return LastLayer(theta[:-1], float(theta[-1]))


@dataclass(frozen=True)
class FinetuneResult:
    head_id: int
    n_ratings: int
    rescored: int
    layer: LastLayer


def finetune_catalog(catalog: Any, scorer: Any, prior: float = DEFAULT_PRIOR, activate: bool = True
                     ) -> FinetuneResult:
    """Fit a head on every rating in ``catalog`` whose photo has a base score of ``scorer``'s model
    version, store it as the active head, and re-head every stored score of that version.

    The latest rating of a photo wins. Raises ``ValueError`` when there is nothing to fit on.
    """
    from sqlalchemy import delete, select, update

    from db.schema import Head, Rating, Score

    with catalog.session() as s:
        base_rows = s.execute(select(Score.photo_id, Score.embedding, Score.improvability, Score.quality,
                                     Score.severity_json, Score.fingerprint).where(
            Score.model == scorer.model_name, Score.model_version == scorer.model_version,
            Score.head == "")).all()
        ratings = s.execute(select(Rating.photo_id, Rating.rating).order_by(Rating.created_at, Rating.id)).all()
    emb_of = {pid: np.frombuffer(e, np.float32) for pid, e, *_ in base_rows if e}
    latest: dict[int, int] = {}
    for pid, r in ratings:
        latest[int(pid)] = int(r)
    rated = [pid for pid in latest if pid in emb_of]
    if not rated:
        raise ValueError("no rated photo has a stored score of this model version; score them first")
    base = scorer.base_head
    if base is None:
        pids = [r[0] for r in base_rows if r[1]]
        base = base_head_from_scores(np.stack([emb_of[p] for p in pids]),
                                     np.array([r[2] for r in base_rows if r[1]]))
    e = np.stack([emb_of[p] for p in rated])
    t = rating_targets(np.array([latest[p] for p in rated]), scorer.thresholds.improvability)
    layer = fit_head(e, t, base, prior)
    now = datetime.now()

    def write(s: Any) -> tuple[int, int]:
        if activate:
            s.execute(update(Head).where(Head.model == scorer.model_name,
                                         Head.model_version == scorer.model_version).values(active=False))
        h = Head(model=scorer.model_name, model_version=scorer.model_version, created_at=now,
                 weights=layer.to_bytes(), n_ratings=len(rated), active=activate)
        s.add(h)
        s.flush()
        key = str(h.id)
        n = 0
        if activate:
            s.execute(delete(Score).where(Score.model == scorer.model_name,
                                          Score.model_version == scorer.model_version, Score.head != ""))
            for pid, emb, _imp, q, sev_json, fp in base_rows:
                if not emb:
                    continue
                e1 = np.frombuffer(emb, np.float32)
                a = scorer.make_assessment(float(layer(e1[None])[0]), float(q), json.loads(sev_json), e1)
                s.add(scorer.score_row(pid, fp, a, key, now))
                n += 1
        return int(h.id), n

    head_id, n = catalog.write(write)
    return FinetuneResult(head_id, len(rated), n, layer)


def deactivate_heads(catalog: Any, model: str, model_version: str) -> None:
    """Go back to the shipped last layer (the head rows stay, for the record)."""
    from sqlalchemy import delete, update

    from db.schema import Head, Score

    def write(s: Any) -> None:
        s.execute(update(Head).where(Head.model == model, Head.model_version == model_version).values(active=False))
        s.execute(delete(Score).where(Score.model == model, Score.model_version == model_version, Score.head != ""))

    catalog.write(write)
