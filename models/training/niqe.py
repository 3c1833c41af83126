"""NIQE (Mittal, Soundararajan and Bovik 2013), our implementation, as a baseline for Q.

A "completely blind" quality measure: the distance between a multivariate Gaussian fitted to
natural-scene-statistics features of the image's patches and one fitted to patches of pristine
photos. Lower is better (``score`` returns the distance; ``eval_quality`` negates it).

* luminance 0..255, two scales (the second by bicubic halving);
* MSCN coefficients (7x7 Gaussian, sigma 7/6, C = 1);
* per patch (96 px at scale 1, 48 at scale 2): the generalised Gaussian fit of MSCN (shape,
  variance) and the asymmetric generalised Gaussian fit of the four paired products (shape,
  mean, left and right variance): 18 features per scale, 36 in all;
* the pristine model uses only the sharpest patches (local sigma sum > 0.75 of the image's
  maximum), from the clean TRAIN photos (``fit_pristine``); the published NIQE model is not
  used (nothing is downloaded).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

PATCH = 96

_ALPHAS = np.arange(0.2, 10.0, 0.001)
_R_GGD = np.array([math.gamma(2 / a) ** 2 / (math.gamma(1 / a) * math.gamma(3 / a)) for a in _ALPHAS])


def _mscn(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = cv2.GaussianBlur(y, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE)
    var = cv2.GaussianBlur(y * y, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE) - mu * mu
    sig = np.sqrt(np.maximum(var, 0))
    return (y - mu) / (sig + 1.0), sig


def _ggd(x: np.ndarray) -> tuple[float, float]:
    s2 = float(np.mean(x * x))
    e = float(np.mean(np.abs(x)))
    rho = e * e / max(s2, 1e-12)
    a = float(_ALPHAS[np.argmin((_R_GGD - rho) ** 2)])
    return a, s2


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    left = x[x < 0]
    right = x[x >= 0]
    sl = math.sqrt(float(np.mean(left * left))) if left.size else 1e-6
    sr = math.sqrt(float(np.mean(right * right))) if right.size else 1e-6
    gamma = sl / max(sr, 1e-12)
    rhat = float(np.mean(np.abs(x))) ** 2 / max(float(np.mean(x * x)), 1e-12)
    rn = rhat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    a = float(_ALPHAS[np.argmin((_R_GGD - rn) ** 2)])
    const = math.sqrt(math.gamma(1 / a) / math.gamma(3 / a))
    mean = (sr - sl) * (math.gamma(2 / a) / math.gamma(1 / a)) * const
    return a, mean, sl * sl, sr * sr


def _patch_features(m: np.ndarray) -> list[float]:
    f: list[float] = list(_ggd(m))
    for p in (m[:, 1:] * m[:, :-1], m[1:, :] * m[:-1, :], m[1:, 1:] * m[:-1, :-1], m[1:, :-1] * m[:-1, 1:]):
        f += list(_aggd(p))
    return f


def features(rgb: np.ndarray, patch: int = PATCH, sharp_only: bool = False) -> np.ndarray:
    """[P, 36] patch features of an RGB image (uint8 or float 0..1)."""
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    y = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    h, w = y.shape
    if min(h, w) < 2 * patch:
        patch = max(16, min(h, w) // 2 // 8 * 8)
    feats = []
    for scale in (1, 2):
        ys = y if scale == 1 else cv2.resize(y, (w // 2, h // 2), interpolation=cv2.INTER_CUBIC)
        m, sig = _mscn(ys)
        ps = patch // scale
        rows = []
        sharp = []
        for i in range(0, ys.shape[0] - ps + 1, ps):
            for j in range(0, ys.shape[1] - ps + 1, ps):
                rows.append(_patch_features(m[i:i + ps, j:j + ps]))
                sharp.append(float(sig[i:i + ps, j:j + ps].sum()))
        feats.append((np.array(rows), np.array(sharp)))
    f = np.concatenate([feats[0][0], feats[1][0]], axis=1)
    if sharp_only:
        s = feats[0][1]
        f = f[s > 0.75 * s.max()]
    return f


class NIQE:
    def __init__(self, mu: np.ndarray, cov: np.ndarray) -> None:
        self.mu = mu
        self.cov = cov

    @classmethod
    def fit_pristine(cls, images: list[np.ndarray]) -> NIQE:
        f = np.concatenate([features(im, sharp_only=True) for im in images])
        f = f[np.isfinite(f).all(axis=1)]
        return cls(f.mean(axis=0), np.cov(f, rowvar=False))

    def score(self, rgb: np.ndarray) -> float:
        f = features(rgb)
        f = f[np.isfinite(f).all(axis=1)]
        mu2 = f.mean(axis=0)
        cov2 = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros_like(self.cov)
        d = self.mu - mu2
        inv = np.linalg.pinv((self.cov + cov2) / 2)
        return float(math.sqrt(max(float(d @ inv @ d), 0.0)))

    def save(self, path: Path) -> None:
        np.savez(path, mu=self.mu, cov=self.cov)

    @classmethod
    def load(cls, path: Path) -> NIQE:
        z = np.load(path)
        return cls(z["mu"], z["cov"])
