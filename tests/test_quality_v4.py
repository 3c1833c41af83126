"""Q version 4's evidence: successful restorations are ordered pairs, invisible edits are ties."""

from __future__ import annotations

import numpy as np

from models.training import quality_pairs as qp
from tests.conftest import make_texture


def _clean() -> np.ndarray:
    return make_texture(128, 96, seed=3).astype(np.float32) / 255.0


def test_a_restoration_counts_only_when_it_brings_the_photo_closer() -> None:
    u = _clean()
    kind, r, v, gain = qp.restoration_pair(u, np.random.default_rng(1), lambda x: u)  # an oracle restorer
    assert kind.startswith("restored_") and kind in qp.FAMILY
    assert v.shape == r.shape == u.shape and gain >= qp.MIN_RESTORE_GAIN_DB
    kind, r, v, gain = qp.restoration_pair(u, np.random.default_rng(1), lambda x: x)  # a restorer that does nothing
    assert abs(gain) < 1e-6 and gain < qp.MIN_RESTORE_GAIN_DB


def test_invisible_edits_are_ties_and_visible_ones_are_not() -> None:
    u = _clean()
    kind, a, b, _d, tie = qp.invisible_pair(u, np.random.default_rng(0), None)
    assert kind == "tie_requant" and tie and 0 < float(np.abs(a - b).max()) <= 4 / 255
    # a "deblocking" that smooths the photo visibly is not a tie
    import cv2

    hits = [qp.invisible_pair(u, np.random.default_rng(s), lambda x: cv2.GaussianBlur(x, (0, 0), 1.5))
            for s in range(8)]
    deblocks = [h for h in hits if h[0] == "tie_deblock"]
    assert deblocks and not any(h[4] for h in deblocks)
    hits = [qp.invisible_pair(u, np.random.default_rng(s), lambda x: x) for s in range(8)]
    assert all(h[4] for h in hits if h[0] == "tie_deblock")
