from __future__ import annotations

import math

import numpy as np
import pytest

from engine.assess.metrics import ciede2000, ciede2000_lab, psnr, srgb_to_lab, ssim


def _img(h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5.0)], axis=2)
    return np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32)


def test_psnr_known_value() -> None:
    a = np.zeros((10, 10, 3), np.float32)
    b = a + 0.1  # MSE = 0.01 -> 20 dB
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-4)
    assert psnr(a, a) == math.inf
    assert psnr(a, a, max_db=100.0) == 100.0


def test_psnr_uint8_is_scaled() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 51, np.uint8)  # 0.2 -> MSE 0.04 -> 13.98 dB
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.04), abs=1e-6)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError):
        ssim(np.zeros((4, 4, 3)), np.zeros((5, 4, 3)))


def _naive_ssim_plane(x: np.ndarray, y: np.ndarray, win: int = 11, sigma: float = 1.5) -> float:
    r = win // 2
    ax = np.arange(-r, r + 1)
    g = np.exp(-(ax**2) / (2 * sigma**2))
    g /= g.sum()
    k = np.outer(g, g)
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(r, x.shape[0] - r):
        for j in range(r, x.shape[1] - r):
            px = x[i - r : i + r + 1, j - r : j + r + 1]
            py = y[i - r : i + r + 1, j - r : j + r + 1]
            mx, my = (k * px).sum(), (k * py).sum()
            vx = (k * px * px).sum() - mx * mx
            vy = (k * py * py).sum() - my * my
            cxy = (k * px * py).sum() - mx * my
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_definition() -> None:
    a = _img(24, 22, 1).astype(np.float64)
    b = np.clip(a + np.random.default_rng(5).normal(0, 0.08, a.shape), 0, 1)
    expect = np.mean([_naive_ssim_plane(a[:, :, c], b[:, :, c]) for c in range(3)])
    assert ssim(a, b) == pytest.approx(expect, abs=1e-9)
    luma = np.array([0.299, 0.587, 0.114])
    assert ssim(a, b, channel="luma") == pytest.approx(_naive_ssim_plane(a @ luma, b @ luma), abs=1e-9)


def test_ssim_properties() -> None:
    a = _img()
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(2)
    light = np.clip(a + rng.normal(0, 0.02, a.shape), 0, 1)
    heavy = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    assert 1.0 > ssim(a, light) > ssim(a, heavy) > 0.0
    # symmetric
    assert ssim(a, heavy) == pytest.approx(ssim(heavy, a), abs=1e-12)


def test_ssim_tiny_images() -> None:
    a = _img(1, 1)
    assert ssim(a, a) == pytest.approx(1.0)
    b = _img(5, 3)
    assert ssim(b, b) == pytest.approx(1.0)
    assert ssim(b, np.clip(b + 0.3, 0, 1)) < 1.0


# Sharma, Wu, Dalal (2005) CIEDE2000 test data (pairs 1, 2, 7, 13, 15, 25, 26)
SHARMA = [
    ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
    ((50, 3.1571, -77.2803), (50, 0, -82.7485), 2.8615),
    ((50, 0, 0), (50, -1, 2), 2.3669),
    ((50, 2.49, -0.001), (50, -2.49, 0.0009), 7.1792),
    ((50, 2.49, -0.001), (50, -2.49, 0.0011), 7.2195),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
]


def test_ciede2000_sharma_pairs() -> None:
    a = np.array([p[0] for p in SHARMA], float)
    b = np.array([p[1] for p in SHARMA], float)
    np.testing.assert_allclose(ciede2000_lab(a, b), [p[2] for p in SHARMA], atol=1e-4)


def test_lab_and_ciede2000_on_rgb() -> None:
    white = np.ones((2, 2, 3))
    lab = srgb_to_lab(white)
    np.testing.assert_allclose(lab[0, 0], [100.0, 0.0, 0.0], atol=1e-3)
    a = _img()
    assert ciede2000(a, a) == pytest.approx(0.0, abs=1e-9)
    warm = np.clip(a * np.array([1.1, 1.0, 0.9]), 0, 1)
    assert ciede2000(a, warm) > 1.0
