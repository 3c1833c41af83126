"""How degraded a photo is, measured from its pixels: the restorer's conditioning.

The level-aware restorer (``models/restorer.onnx`` with a ``levels`` input) is told how much
noise and how much JPEG compression the pixels it sees carry, as FFDNet is told its noise map.
Both numbers come from the pixels alone (no file metadata), so a PNG re-save of a JPEG, a
screenshot or a crop is measured the same way, and training computes exactly what inference
computes on the same window.

* :func:`noise_level`: the standard deviation of the noise, in 0..1 units, by Immerkær's fast
  estimator (the Laplacian-difference operator whose response to a locally planar image is zero)
  on the pixels whose local gradient is in the lower half, so edges and texture count less.
  Per channel, averaged. Texture still reads as some noise; the network is trained with the
  same estimate on clean textured crops, so it learns what the number means.
* :func:`jpeg_quality`: the quality of the last JPEG compression, from the periodicity of the
  8x8 DCT coefficients of the luma (decoded JPEG coefficients cluster on multiples of the
  quantisation step). The block grid is assumed to start at (0, 0), as it does for a decoded
  file and for the tiles of :mod:`engine.enhance.restore` (tiles start on multiples of 8).
  Returns 100 where no quantisation is found.
* :func:`levels_vector`: both, scaled as the network's input.
* :data:`JPEG_ZONE`: the dead zone of deblocking. At a measured quality of 72 and above the
  restorer is told JPEG level 0 (noise only): on 24 held-out VAL crops its deblocking gained
  +0.05 dB at quality 75, +0.04 at 80, and lost 0.06 at 85 and 0.30 at 90, against +0.30 at 70 and
  +0.44 to +0.62 at 30-60 (``models/training/eval_jpeg_zone.py``, models/restorer.md). Below the zone
  the gain is measurable; inside it deblocking changes good JPEGs (every phone photo) by a fraction
  of a level for nothing, and the quality judge scored that change down by up to 4 points.
  Training is unchanged: the network still learns every level.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from engine.ingest.imageio import IJG_LUMA50

_LAPLACE_DIFF = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
# scale of the operator's response to unit white noise: sqrt(pi/2) / 6 (Immerkær 1996)
_IMMERKAER = math.sqrt(math.pi / 2.0) / 6.0

# the IJG (libjpeg) luminance table at quality 50, 8x8 (the one the file-header reading uses too)
_IJG_LUMA = IJG_LUMA50.reshape(8, 8)
# low frequencies used for the step estimate (most reliable: large, populated, not all zero)
_FREQS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2))

NOISE_SCALE = 10.0  # levels[0] = sigma * 10: sigma 25/255 -> ~1
MAX_NOISE_PIXELS = 1 << 20  # larger windows are measured on a centred crop of this many pixels
MAX_JPEG_BLOCKS = 16384


def noise_level(img: np.ndarray) -> float:
    """Noise standard deviation (0..1 units) of a float32 HxWx3 (or HxW) image in 0..1."""
    a = np.asarray(img, np.float32)
    if a.ndim == 2:
        a = a[..., None]
    h, w = a.shape[:2]
    if h < 5 or w < 5:
        return 0.0
    if h * w > MAX_NOISE_PIXELS:
        side = int(math.sqrt(MAX_NOISE_PIXELS))
        y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
        a = a[y0 : y0 + side, x0 : x0 + side]
    gray = a.mean(axis=2)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1]
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1]
    g = np.abs(gx) + np.abs(gy)
    flat = g <= np.median(g)
    if not flat.any():
        return 0.0
    sig = []
    for c in range(a.shape[2]):
        r = cv2.filter2D(np.ascontiguousarray(a[..., c]), cv2.CV_32F, _LAPLACE_DIFF)[1:-1, 1:-1]
        sig.append(_IMMERKAER * float(np.abs(r[flat]).mean()))
    return float(np.mean(sig))


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16.0) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


_DCT = _dct_matrix()


def _ijg_step(base: float, quality: int) -> float:
    q = min(100, max(1, quality))
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return float(max(1, min(255, math.floor((base * scale + 50) / 100))))


def jpeg_quality(img: np.ndarray) -> int:
    """Estimated IJG quality (1..100) of the last JPEG compression; 100 when none is found."""
    a = np.asarray(img, np.float32)
    if a.ndim == 3:
        y = (0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]) * 255.0
    else:
        y = a * 255.0
    h, w = (y.shape[0] // 8) * 8, (y.shape[1] // 8) * 8
    if h < 16 or w < 16:
        return 100
    blocks = y[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    if len(blocks) > MAX_JPEG_BLOCKS:
        idx = np.linspace(0, len(blocks) - 1, MAX_JPEG_BLOCKS).astype(int)
        blocks = blocks[idx]
    coef = _DCT @ (blocks - 128.0) @ _DCT.T
    # score each candidate quality by how well the coefficients sit on its steps
    best_q, best_score = 100, 0.0
    cols = [coef[:, i, j] for i, j in _FREQS]
    for q in range(5, 96):
        score = 0.0
        for (i, j), c in zip(_FREQS, cols, strict=True):
            step = _ijg_step(_IJG_LUMA[i, j], q)
            if step < 3:
                continue
            nz = c[np.abs(c) > step / 2]  # coefficients quantised to zero say nothing
            if len(nz) < 20:
                continue
            r = nz / step
            off = np.abs(r - np.round(r))  # 0 on the lattice, 0.25 on average off it
            score += (0.25 - float(off.mean())) * math.sqrt(len(nz))
        if score > best_score:
            best_q, best_score = q, score
    return best_q if best_score > 2.0 else 100


def jpeg_level(quality: int) -> float:
    """Compression level in 0..1 from an IJG quality: 0 at 95 and above, 1 at 10 and below."""
    return float(np.clip((95 - quality) / 85.0, 0.0, 1.0))


JPEG_ZONE = 72  # measured IJG quality from which the restorer is told JPEG level 0 (module docstring)


def restore_jpeg_level(quality: int, zone: int | None = JPEG_ZONE) -> float:
    """The JPEG level the restorer is told at inference: :func:`jpeg_level`, but 0 from ``zone`` up."""
    if zone is not None and quality >= zone:
        return 0.0
    return jpeg_level(quality)


def deblocks(jpeg_quality: int | None) -> bool:
    """Whether one click would deblock a JPEG whose file was saved at ``jpeg_quality`` (read from its
    quantisation table, ``photos.jpeg_quality``): below :data:`JPEG_ZONE`, or unknown (not a JPEG,
    or indexed before the catalog kept it). The pixel estimate the restorer uses finds the same
    last compression (it reads the lattice of the last quantisation), so the two agree."""
    return jpeg_quality is None or jpeg_quality < JPEG_ZONE


def reasons_skipped(jpeg_quality: int | None) -> frozenset[str]:
    """Degradations not to name as a photo's reasons although the assessor rates them above
    threshold: ``compression`` for a JPEG of quality ``JPEG_ZONE`` or above, which the enhancer does
    not deblock (its gain there is nil), so the reason would promise what one click does not do.
    On 99 clean held-out JPEGs (quality 75-100) the assessor put ``compression`` on 13, every one of
    quality 75 or above (models/assessor.md)."""
    return frozenset() if deblocks(jpeg_quality) else frozenset({"compression"})


def levels_vector(img: np.ndarray, quality: int | None = None) -> np.ndarray:
    """``[noise * NOISE_SCALE, jpeg level]`` as float32 ``(1, 2)``, the network's ``levels`` input."""
    q = jpeg_quality(img) if quality is None else quality
    return np.array([[noise_level(img) * NOISE_SCALE, jpeg_level(q)]], np.float32)
