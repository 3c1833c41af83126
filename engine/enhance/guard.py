"""The regression guard: did an enhancement make the photo better?

After an enhance the result is rendered at full resolution and both the original and the result
are measured with the quality model Q (``engine.assess.quality``; the assessor's quality head when
Q is not installed) on copies of the same size, made the same way (long side at most 2048 px by an
integer area reduction). ``measured_gain`` is the difference. When neither Q nor the assessor is
installed the gain is None and the note says it was not measured. An edit *helped* when Q gained
more than Q's own noise (``margin``: ``engine.assess.quality.guard_margin``, calibrated on edits no
one can see; 0 for the assessor's head); a smaller gain is reported as no measurable gain. Used by the editor
(``engine.enhance.edits``) and for files outside the catalog (``engine.export.files``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Guard:
    """Quality of the original and of the result, as measured by Q (or the assessor's quality head)."""

    quality_before: float | None
    quality_after: float | None
    note: str = ""
    margin: float = 0.0  # the least gain that counts (Q's noise on invisible edits)

    @property
    def gain(self) -> float | None:
        if self.quality_before is None or self.quality_after is None:
            return None
        return self.quality_after - self.quality_before

    @property
    def helped(self) -> bool | None:
        """Q gained more than its noise; None when not measured."""
        g = self.gain
        return None if g is None else g > self.margin


def _scorer_or_reason() -> tuple[Any | None, str]:
    try:
        from engine.assess.scoring import get_scorer
    except ImportError as e:
        return None, f"quality not measured: the assessor is not available ({e})"
    try:
        return get_scorer(), ""
    except FileNotFoundError as e:
        return None, f"quality not measured: no assessor model ({e})"
    except Exception as e:  # a broken model file must not block editing
        return None, f"quality not measured: the assessor failed to load ({e})"


def same_size_views(before: np.ndarray, after: np.ndarray, reduce: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images at the same size made the same way (area resize by ``reduce``)."""
    if before.shape != after.shape:
        after = cv2.resize(after, (before.shape[1], before.shape[0]), interpolation=cv2.INTER_AREA)
    if reduce > 1:
        size = (max(1, before.shape[1] // reduce), max(1, before.shape[0] // reduce))
        before = cv2.resize(before, size, interpolation=cv2.INTER_AREA)
        after = cv2.resize(after, size, interpolation=cv2.INTER_AREA)
    return before, after


def measure(before_u8: np.ndarray, after_u8: np.ndarray) -> Guard:
    """Quality of the original and of the result (full-resolution uint8 arrays of the same photo).

    With the quality model Q installed (``engine.assess.quality``), Q itself on both at the same reduced
    size: the gain the method is defined by. Without it, the assessor's quality head (a cheaper
    approximation of Q) on the scorer's views; without either, not measured."""
    h, w = before_u8.shape[:2]
    try:
        from engine.assess.quality import get_quality_model, guard_margin, measure_reduce

        q = get_quality_model()
        if q is not None:
            b, a = same_size_views(before_u8, after_u8, measure_reduce(w, h))
            return Guard(q(b), q(a), "", guard_margin(q.path))
    except Exception as e:  # noqa: BLE001 - a broken model file falls back to the assessor
        log.warning("quality model failed, measuring with the assessor: %s", e)
    scorer, reason = _scorer_or_reason()
    if scorer is None:
        return Guard(None, None, reason)
    b, a = same_size_views(before_u8, after_u8, int(scorer.reduce_for(w, h)))
    qb = float(scorer.assess(b).quality)
    qa = float(scorer.assess(a).quality)
    return Guard(qb, qa, "")


def guard_message(g: Guard, applied: bool) -> str:
    if g.gain is None:
        return f"enhanced; {g.note or 'quality not measured'}"
    if g.helped:
        return f"enhanced: quality {g.quality_before:.3f} -> {g.quality_after:.3f} ({g.gain:+.3f})"
    tail = "kept, undo to go back" if applied else "not applied"
    if g.gain > 0:
        return (f"no measurable gain: quality {g.quality_before:.3f} -> {g.quality_after:.3f} ({g.gain:+.3f}, "
                f"within the quality model's noise of {g.margin:.2f}); {tail}")
    return (f"the enhancement did not help: quality {g.quality_before:.3f} -> {g.quality_after:.3f} "
            f"({g.gain:+.3f}); {tail}")
