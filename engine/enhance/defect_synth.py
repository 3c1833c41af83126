"""Synthetic camera defects: put the same defects at the same sensor positions into a series of
clean photos (the evaluation ``bench/eval_defects.py`` and the tests use it; nothing at run time).

Dust and smudges are soft multiplicative attenuation discs, lines are thin attenuating strokes,
applied in linear light (what a shadow on the sensor does) and encoded back to sRGB; hot pixels
are pixels forced bright; a bias is a gain per channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


@dataclass
class Spot:
    kind: str  # dust, line
    cx: float  # 0..1 of the frame
    cy: float
    radius: float  # pixels (dust) / half length (line)
    opacity: float  # 0..1: the fraction of light taken at the centre
    angle: float = 0.0  # line only, radians
    width: float = 1.5  # line only, pixels

    def bbox(self, w: int, h: int) -> list[float]:
        if self.kind == "line":
            dx, dy = np.cos(self.angle) * self.radius, np.sin(self.angle) * self.radius
            xs = [self.cx * w - dx, self.cx * w + dx]
            ys = [self.cy * h - dy, self.cy * h + dy]
            return [min(xs) / w, min(ys) / h, max(xs) / w, max(ys) / h]
        return [(self.cx * w - self.radius) / w, (self.cy * h - self.radius) / h,
                (self.cx * w + self.radius) / w, (self.cy * h + self.radius) / h]


@dataclass
class CameraDefects:
    spots: list[Spot] = field(default_factory=list)
    hot: list[tuple[int, int]] = field(default_factory=list)  # (x, y) pixels
    gains: tuple[float, float, float] | None = None  # per-channel multiplicative bias (linear light)

    def transmission(self, w: int, h: int) -> np.ndarray:
        """The attenuation map (1 = all light passes) of the spots, HxW float32."""
        t: np.ndarray = np.ones((h, w), np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for s in self.spots:
            if s.kind == "dust":
                d = np.sqrt((xx - s.cx * w) ** 2 + (yy - s.cy * h) ** 2)
                # a soft disc: full shadow inside ~0.6 R, fading to nothing at R (penumbra)
                prof = np.clip((s.radius - d) / (0.4 * s.radius), 0.0, 1.0)
                prof = prof * prof * (3 - 2 * prof)
                t *= 1.0 - s.opacity * prof
            else:
                m = np.zeros((h, w), np.float32)
                dx, dy = np.cos(s.angle) * s.radius, np.sin(s.angle) * s.radius
                p0 = (int(round((s.cx * w - dx) * 16)), int(round((s.cy * h - dy) * 16)))
                p1 = (int(round((s.cx * w + dx) * 16)), int(round((s.cy * h + dy) * 16)))
                cv2.line(m, p0, p1, 1.0, max(1, int(round(s.width))), lineType=cv2.LINE_AA, shift=4)
                m = np.asarray(cv2.GaussianBlur(m, (0, 0), 0.6), np.float32)
                t = (t * (1.0 - s.opacity * np.clip(m / max(float(m.max()), 1e-6), 0, 1))).astype(np.float32)
        return t

    def apply(self, rgb_u8: np.ndarray) -> np.ndarray:
        """The photo as this camera would have taken it (uint8 in, uint8 out)."""
        h, w = rgb_u8.shape[:2]
        lin = srgb_to_linear(rgb_u8.astype(np.float32) / 255.0)
        if self.spots:
            lin = lin * self.transmission(w, h)[..., None]
        if self.gains is not None:
            lin = lin * np.asarray(self.gains, np.float32)
        out = (linear_to_srgb(lin) * 255.0 + 0.5).astype(np.uint8)
        for x, y in self.hot:
            if 0 <= x < w and 0 <= y < h:
                out[y, x] = np.maximum(out[y, x], 235)
        return out


def random_defects(rng: np.random.Generator, w: int, h: int, n_dust: tuple[int, int] = (1, 4),
                   radius: tuple[float, float] = (10.0, 30.0), opacity: tuple[float, float] = (0.1, 0.4),
                   lines: int = 0, hot: int = 0, line_opacity: tuple[float, float] = (0.3, 0.8)) -> CameraDefects:
    """Random dust spots (and optionally lines and hot pixels), kept apart and off the border.
    ``line_opacity``: the range of the lines' opacity (above ``defects.LINE_DIVIDE_MAX``'s ~93 %
    a line is inpainted rather than divided out)."""
    spots: list[Spot] = []
    for _ in range(int(rng.integers(n_dust[0], n_dust[1] + 1))):
        for _try in range(50):
            r = float(rng.uniform(*radius))
            cx = float(rng.uniform(r + 4, w - r - 4)) / w
            cy = float(rng.uniform(r + 4, h - r - 4)) / h
            if all(np.hypot((cx - s.cx) * w, (cy - s.cy) * h) > r + s.radius + 10 for s in spots):
                spots.append(Spot("dust", cx, cy, r, float(rng.uniform(*opacity))))
                break
    for _ in range(lines):
        spots.append(Spot("line", float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7)),
                          float(rng.uniform(0.1, 0.25)) * min(w, h), float(rng.uniform(*line_opacity)),
                          angle=float(rng.uniform(0, np.pi)), width=float(rng.uniform(1.0, 2.5))))
    hp = [(int(rng.integers(2, w - 2)), int(rng.integers(2, h - 2))) for _ in range(hot)]
    return CameraDefects(spots, hp)


def to_json(d: CameraDefects) -> dict[str, Any]:
    return {"spots": [s.__dict__ for s in d.spots], "hot": d.hot, "gains": d.gains}


__all__ = ["CameraDefects", "Spot", "linear_to_srgb", "random_defects", "srgb_to_linear", "to_json"]
