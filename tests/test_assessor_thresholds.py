"""The recommendation threshold's rule (models/training/eval_assessor.py): best F-beta over the
precision-recall curve, F0.5 for the recommendation (precision weighs twice recall)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # the training extra (eval_assessor imports the training helpers)

from models.training.eval_assessor import ALWAYS_OFF, RECOMMEND_BETA, best_f1_threshold  # noqa: E402


def _curve() -> tuple[np.ndarray, np.ndarray]:
    # scores 10..1; positives at 10, 9, 8, 6, 4, 2: recall pays for the low cuts, precision does not
    score = np.arange(10, 0, -1, dtype=np.float64)
    pos = np.isin(score, [10, 9, 8, 6, 4, 2])
    return score, pos


def test_f1_and_f_half_pick_their_own_points_of_the_curve() -> None:
    score, pos = _curve()
    thr1, f1, p1, r1 = best_f1_threshold(score, pos)
    thr5, f5, p5, r5 = best_f1_threshold(score, pos, beta=0.5)
    # F1: every cut down to score 2 (6 of 9 recommended are positive: P 0.667, R 1.0, F1 0.8)
    assert thr1 == pytest.approx(1.5) and f1 == pytest.approx(0.8) and (p1, r1) == (pytest.approx(2 / 3), 1.0)
    # F0.5: stop after the first three (P 1.0, R 0.5, F0.5 = 1.25 * 0.5 / (0.25 + 0.5) = 0.833)
    assert thr5 == pytest.approx(7.5) and f5 == pytest.approx(1.25 * 0.5 / 0.75)
    assert (p5, r5) == (1.0, 0.5)
    assert thr5 > thr1


def test_the_shipped_rule_weighs_precision_and_keeps_the_unreliable_badges_off() -> None:
    assert RECOMMEND_BETA < 1.0
    assert {"motion_blur", "color_cast"} <= set(ALWAYS_OFF)
