"""Full-reference image metrics on float images in 0..1: PSNR, SSIM, CIEDE2000.

Conventions (shared by training, evaluation and tests):

* Images are ``float`` arrays ``(H, W, 3)`` (or ``(H, W)``) in 0..1; uint8 input is scaled by 1/255.
  The data range is 1.0. Nothing is clipped: pass clipped images if that is what you measure.
* ``psnr(a, b)``: ``10 log10(1 / MSE)`` over all pixels and channels. Identical images give
  ``inf`` unless ``max_db`` is given (then the value is capped there).
* ``ssim(a, b)``: Wang et al. 2004 SSIM with an 11x11 Gaussian window (sigma 1.5),
  ``K1 = 0.01``, ``K2 = 0.03``, computed on each channel separately and averaged over channels
  (``channel="rgb"``, the default; the convention of scikit-image's ``channel_axis`` and of most
  colour-restoration papers), or on BT.601 luma (``channel="luma"``, the convention of
  super-resolution papers on Y). Windows are taken only where they fit inside the image
  ("valid" region, like the reference MATLAB code), so no border padding biases the score;
  images smaller than the window fall back to a window that fits.
* ``ciede2000(a, b)``: mean CIEDE2000 colour difference between sRGB images (D65), as used to
  judge colour shifts of tone operators. ``ciede2000_map`` gives the per-pixel map.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_LUMA_601 = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def _as_float(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    return a.astype(np.float64)


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_float(a), _as_float(b)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    if x.size == 0:
        raise ValueError("empty image")
    return x, y


def mse(a: np.ndarray, b: np.ndarray) -> float:
    x, y = _check_pair(a, b)
    return float(np.mean((x - y) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, max_db: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB for data range 1.0 (``inf`` for identical images)."""
    m = mse(a, b)
    if m <= 0.0:
        return float("inf") if max_db is None else float(max_db)
    v = 10.0 * math.log10(1.0 / m)
    return v if max_db is None else min(v, float(max_db))


def _ssim_plane(x: np.ndarray, y: np.ndarray, win: int, sigma: float) -> float:
    c1 = (0.01 * 1.0) ** 2
    c2 = (0.03 * 1.0) ** 2
    h, w = x.shape
    win = min(win, h if h % 2 else h - 1, w if w % 2 else w - 1)
    win = max(win, 1)
    if win == 1:
        # a single pixel per window: SSIM reduces to the luminance term per pixel
        return float(np.mean((2 * x * y + c1) / (x * x + y * y + c1)))
    g1 = cv2.getGaussianKernel(win, sigma)
    g = (g1 @ g1.T).astype(np.float64)

    def filt(z: np.ndarray) -> np.ndarray:
        full = cv2.filter2D(z, cv2.CV_64F, g, borderType=cv2.BORDER_REFLECT_101)
        r = win // 2
        return full[r : h - r, r : w - r]

    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray, channel: str = "rgb", win: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM (Gaussian window), per channel averaged (``"rgb"``) or on luma (``"luma"``)."""
    x, y = _check_pair(a, b)
    if x.ndim == 2:
        return _ssim_plane(x, y, win, sigma)
    if x.ndim != 3:
        raise ValueError(f"expected HxW or HxWxC, got {x.shape}")
    if channel == "luma":
        if x.shape[2] != 3:
            raise ValueError("luma SSIM needs 3 channels")
        return _ssim_plane(x @ _LUMA_601, y @ _LUMA_601, win, sigma)
    if channel != "rgb":
        raise ValueError(f"channel must be 'rgb' or 'luma', not {channel!r}")
    return float(np.mean([_ssim_plane(np.ascontiguousarray(x[:, :, c]), np.ascontiguousarray(y[:, :, c]),
                                      win, sigma) for c in range(x.shape[2])]))


# ---------------------------------------------------------------------------- colour


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..1 (D65) to CIE L*a*b*, float64 (H, W, 3)."""
    c = _as_float(rgb)
    lin = np.where(c <= 0.04045, c / 12.92, ((np.clip(c, 0.0, None) + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def ciede2000_lab(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 difference of two Lab arrays (kL = kC = kH = 1)."""
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c1 = np.hypot(a1, b1)
    c2 = np.hypot(a2, b2)
    cbar = (c1 + c2) / 2
    g = 0.5 * (1 - np.sqrt(cbar**7 / (cbar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dlp = l2 - l1
    dcp = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, dh)
    dh = np.where(dh < -180, dh + 360, dh)
    zero = (c1p * c2p) == 0
    dh = np.where(zero, 0.0, dh)
    dhp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    lbp = (l1 + l2) / 2
    cbp = (c1p + c2p) / 2
    hsum = h1p + h2p
    hbp = np.where(np.abs(h1p - h2p) > 180, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2), hsum / 2)
    hbp = np.where(zero, hsum, hbp)
    t = (1 - 0.17 * np.cos(np.radians(hbp - 30)) + 0.24 * np.cos(np.radians(2 * hbp))
         + 0.32 * np.cos(np.radians(3 * hbp + 6)) - 0.20 * np.cos(np.radians(4 * hbp - 63)))
    dtheta = 30 * np.exp(-(((hbp - 275) / 25) ** 2))
    rc = 2 * np.sqrt(cbp**7 / (cbp**7 + 25.0**7))
    sl = 1 + 0.015 * (lbp - 50) ** 2 / np.sqrt(20 + (lbp - 50) ** 2)
    sc = 1 + 0.045 * cbp
    sh = 1 + 0.015 * cbp * t
    rt = -np.sin(np.radians(2 * dtheta)) * rc
    return np.asarray(np.sqrt((dlp / sl) ** 2 + (dcp / sc) ** 2 + (dhp / sh) ** 2
                              + rt * (dcp / sc) * (dhp / sh)))


def ciede2000_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 between two sRGB images (H, W, 3) in 0..1."""
    x, y = _check_pair(a, b)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected HxWx3, got {x.shape}")
    return ciede2000_lab(srgb_to_lab(x), srgb_to_lab(y))


def ciede2000(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference between two sRGB images in 0..1."""
    return float(np.mean(ciede2000_map(a, b)))
