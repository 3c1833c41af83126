"""Fine-tune the assessor's last layer on the user's graded ratings, in numpy.

Ratings (``ratings.rating``): 2 significant improvement, 1 moderate, 0 neutral, -1 regressed.
A grade says in which *interval* of gain a photo lies, in the model's own units (quality points)
relative to the recommendation threshold ``T``: 2 -> at least 2 T; 1 -> 1.1 T .. 2 T (just above
the threshold); 0 -> -0.25 T .. 0.9 T (below it); -1 -> under -0.25 T. A margin of 0.1 T keeps a
rated photo clearly on its side of the threshold.

The new layer ``w, b`` minimises the squared distance of each rated prediction to its grade's
interval (zero inside it), regularised *toward the shipped head* ``w0, b0``::

    min  sum_i dist(w . e_i + b, [lo_i, hi_i])^2  +  lam * (|w - w0|^2 + (b - b0)^2)

with ``lam = prior * mean(|e - mean(e)|^2) / dim``: the shipped head counts as about ``prior``
ratings in every direction of the embedding, so a handful of ratings nudges it and a thousand
override it. Photos the shipped head already places in their grade's interval cost nothing, so
the order the network learned inside a grade is not pulled flat (``fit_head``, kept for
comparison, pulls every photo of a grade to one value; the two are compared in
models/assessor.md). Solved by an active-set Newton iteration of closed-form ridge solves, which
stops when the set of violated intervals repeats (a few iterations; capped at 100). The result is stored as a
``heads`` row (float32 ``w`` then ``b``), made the active head of that model version, and every
stored score of that version is re-headed from its stored embedding (no image is decoded again),
so rankings change at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from engine.assess.scoring import LastLayer

RATING_TARGETS = {2: 2.5, 1: 1.25, 0: 0.0, -1: -0.5}  # point targets, times the recommendation threshold
RATING_INTERVALS = {2: (2.0, np.inf), 1: (1.1, 2.0), 0: (-0.25, 0.9), -1: (-np.inf, -0.25)}  # times T
DEFAULT_PRIOR = 32.0


def rating_targets(ratings: np.ndarray, threshold: float) -> np.ndarray:
    t = max(float(threshold), 0.1)
    r = np.asarray(ratings, np.int64)
    bad = ~np.isin(r, list(RATING_TARGETS))
    if bad.any():
        raise ValueError(f"ratings must be in -1..2, got {sorted(set(r[bad].tolist()))}")
    return np.array([RATING_TARGETS[int(x)] * t for x in r], np.float64)


def rating_intervals(ratings: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` of the gain each grade stands for, in quality points (``RATING_INTERVALS`` x T)."""
    t = max(float(threshold), 0.1)
    r = np.asarray(ratings, np.int64)
    bad = ~np.isin(r, list(RATING_INTERVALS))
    if bad.any():
        raise ValueError(f"ratings must be in -1..2, got {sorted(set(r[bad].tolist()))}")
    lo = np.array([RATING_INTERVALS[int(x)][0] * t for x in r], np.float64)
    hi = np.array([RATING_INTERVALS[int(x)][1] * t for x in r], np.float64)
    return lo, hi


def _ridge_setup(embeddings: np.ndarray, n: int, base: LastLayer) -> tuple[np.ndarray, np.ndarray, float]:
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or len(e) != n:
        raise ValueError(f"embeddings {e.shape} and {n} ratings do not match")
    dim = e.shape[1]
    w0 = np.asarray(base.w, np.float64).reshape(-1)
    if w0.shape[0] != dim:
        raise ValueError(f"head has {w0.shape[0]} weights, embeddings have {dim}")
    theta0 = np.concatenate([w0, [float(base.b)]])
    if n == 0:
        return np.zeros((0, dim + 1)), theta0, 1.0
    x = np.hstack([e, np.ones((n, 1))])
    # the prior is measured in the spread of the rated embeddings (not their offset from 0), so it
    # weighs the same whatever the scale of the embedding and however similar the photos are
    spread = float(np.mean(np.sum((e - e.mean(axis=0)) ** 2, axis=1))) / dim
    floor = 0.01 * float(np.mean(np.sum(e * e, axis=1))) / dim  # one rating must not be fitted exactly
    return x, theta0, max(spread, floor, 1e-12)


def fit_head_intervals(embeddings: np.ndarray, lo: np.ndarray, hi: np.ndarray, base: LastLayer,
                       prior: float = DEFAULT_PRIOR, max_iter: int = 100) -> LastLayer:
    """The head closest to ``base`` whose predictions fall in ``[lo, hi]`` (squared-hinge, ridge)."""
    lo = np.asarray(lo, np.float64).reshape(-1)
    hi = np.asarray(hi, np.float64).reshape(-1)
    if len(lo) != len(hi) or np.any(lo > hi):
        raise ValueError("each interval needs lo <= hi")
    x, theta0, scale = _ridge_setup(embeddings, len(lo), base)
    dim1 = len(theta0)
    if len(lo) == 0:
        return LastLayer(theta0[:-1].copy(), float(theta0[-1]))
    lam = prior * scale
    theta = theta0.copy()
    active_prev: np.ndarray | None = None
    for _ in range(max_iter):
        p = x @ theta
        below, above = p < lo, p > hi
        active = below | above
        if active_prev is not None and np.array_equal(active, active_prev):
            break
        active_prev = active
        target = np.where(below, lo, np.where(above, hi, 0.0))
        xa = x[active]
        theta = np.linalg.solve(xa.T @ xa + lam * np.eye(dim1), xa.T @ target[active] + lam * theta0)
    return LastLayer(theta[:-1], float(theta[-1]))


def fit_head(embeddings: np.ndarray, targets: np.ndarray, base: LastLayer, prior: float = DEFAULT_PRIOR
             ) -> LastLayer:
    """Ridge regression of point ``targets`` on ``embeddings`` regularised toward ``base`` (closed form).

    Kept for comparison (models/training/eval_finetune.py); the app fits intervals."""
    t = np.asarray(targets, np.float64).reshape(-1)
    x, theta0, scale = _ridge_setup(embeddings, len(t), base)
    if len(t) == 0:
        return LastLayer(theta0[:-1].copy(), float(theta0[-1]))
    a = x.T @ x + prior * scale * np.eye(len(theta0))
    theta = np.linalg.solve(a, x.T @ t + prior * scale * theta0)
    return LastLayer(theta[:-1], float(theta[-1]))


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

    from db.queries import refresh_current_scores
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
    lo, hi = rating_intervals(np.array([latest[p] for p in rated]), scorer.thresholds.improvability)
    layer = fit_head_intervals(e, lo, hi, base, prior)
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
            s.flush()
            refresh_current_scores(s)
        return int(h.id), n

    head_id, n = catalog.write(write)
    return FinetuneResult(head_id, len(rated), n, layer)


def deactivate_heads(catalog: Any, model: str, model_version: str) -> None:
    """Go back to the shipped last layer (the head rows stay, for the record)."""
    from sqlalchemy import delete, update

    from db.queries import refresh_current_scores
    from db.schema import Head, Score

    def write(s: Any) -> None:
        s.execute(update(Head).where(Head.model == model, Head.model_version == model_version).values(active=False))
        s.execute(delete(Score).where(Score.model == model, Score.model_version == model_version, Score.head != ""))
        refresh_current_scores(s)

    catalog.write(write)
