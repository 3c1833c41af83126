"""The assessor's views of a photo: K native-resolution crops plus one global view.

Shared by training (models/training) and inference (engine.assess.scoring), so both see exactly the
same pixels. Noise and JPEG blocking vanish when a photo is shrunk, so the crops are taken at
the resolution the photo was decoded at (full, or half scale for large JPEGs); exposure,
contrast, cast and haze are global properties, seen in the downscaled global view.

How the crops are chosen: candidate squares on a half-overlapping grid are ranked by their
detail (mean absolute Laplacian of a small grey copy), and the K crops are taken at evenly
spaced quantiles of that ranking, from the most detailed to the flattest. Detailed crops show
blur and ringing (and, in a shallow depth-of-field shot, the sharp subject); flat crops show
noise, banding and blocking. The choice is deterministic, so a photo always gets the same score.
"""

from __future__ import annotations

import cv2
import numpy as np

K_CROPS = 4  # crops per photo
CROP = 96  # crop side in pixels, at decoded resolution
GLOBAL = 128  # side of the global view
REDUCE_FROM_SIDE = 2400  # photos this large (long side) are decoded at half scale for the views


def decode_reduction(width: int | None, height: int | None) -> int:
    """The DCT scale the views are made from: half scale for large photos (noise and blocking
    survive a 2x reduction), full scale otherwise (the scorer's rule)."""
    if width and height and max(width, height) >= REDUCE_FROM_SIDE:
        return 2
    return 1


def _pad_to(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = max(0, side - h), max(0, side - w)
    if not ph and not pw:
        return img
    mode = "reflect" if h > 1 and w > 1 and ph < h and pw < w else "edge"
    return np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode=mode)  # type: ignore[call-overload]


def _as_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {a.shape}")
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        elif a.dtype == np.uint16:
            a = (a >> 8).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError("empty image")
    return a


def crop_positions(rgb: np.ndarray, k: int = K_CROPS, size: int = CROP,
                   rng: np.random.Generator | None = None, small: np.ndarray | None = None
                   ) -> list[tuple[int, int]]:
    """Top-left corners of the K crops (see module doc). ``rng`` jitters them (training only).

    ``small`` is an area-reduced copy of ``rgb`` to measure detail on (made here if not given).
    """
    h, w = rgb.shape[:2]
    if h <= size and w <= size:
        return [(0, 0)] * k
    stride = size // 2
    ys = list(range(0, max(1, h - size + 1), stride))
    xs = list(range(0, max(1, w - size + 1), stride))
    if ys[-1] != max(0, h - size):
        ys.append(max(0, h - size))
    if xs[-1] != max(0, w - size):
        xs.append(max(0, w - size))
    # detail of each candidate on a grey copy reduced so that a crop is ~8 pixels wide
    f = max(1, size // 8)
    src = small if small is not None else rgb
    small_d = cv2.resize(src, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small_d, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=3))
    integ = cv2.integral(lap).astype(np.float64)
    cs = max(1, size // f)
    yy, xx = np.meshgrid(np.asarray(ys), np.asarray(xs), indexing="ij")
    yy, xx = yy.ravel(), xx.ravel()
    y0 = np.minimum(yy // f, lap.shape[0] - 1)
    x0 = np.minimum(xx // f, lap.shape[1] - 1)
    y1 = np.minimum(y0 + cs, lap.shape[0])
    x1 = np.minimum(x0 + cs, lap.shape[1])
    area = np.maximum(1, (y1 - y0) * (x1 - x0))
    score = (integ[y1, x1] - integ[y0, x1] - integ[y1, x0] + integ[y0, x0]) / area
    # stable order: most detailed first, ties by position
    order = np.lexsort((xx, yy, -score))
    n = len(order)
    picks = [int(order[min(n - 1, round(i * (n - 1) / max(1, k - 1)))]) for i in range(k)]
    out = []
    for i in picks:
        y, x = int(yy[i]), int(xx[i])
        if rng is not None:
            y = int(np.clip(y + rng.integers(-stride // 2, stride // 2 + 1), 0, max(0, h - size)))
            x = int(np.clip(x + rng.integers(-stride // 2, stride // 2 + 1), 0, max(0, w - size)))
        out.append((y, x))
    return out


def pre_reduce(rgb: np.ndarray, size: int = CROP, global_size: int = GLOBAL) -> np.ndarray:
    """Area reduction by the largest integer factor that keeps the global view and the detail
    map (one value per ``size // 8`` pixels) fully resolved; the few edge pixels that do not fill
    a whole block are dropped so the factor is exact."""
    h, w = rgb.shape[:2]
    r = int(min(max(1, size // 8), min(h, w) // (2 * global_size)))
    if r < 2:
        return rgb
    hh, ww = (h // r) * r, (w // r) * r
    return cv2.resize(rgb[:hh, :ww], (ww // r, hh // r), interpolation=cv2.INTER_AREA)


def make_views(rgb_uint8: np.ndarray, k: int = K_CROPS, size: int = CROP, global_size: int = GLOBAL,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(crops float32 [K,3,S,S], global float32 [3,G,G])`` in 0..1 from an RGB image.

    Accepts any size (small images are reflect-padded to one crop) and uint8, uint16 or float
    input. ``rng`` is for training-time jitter of the crop positions only.
    """
    crops, glob, _small = make_views_and_small(rgb_uint8, k, size, global_size, rng)
    return crops, glob


def make_views_and_small(rgb_uint8: np.ndarray, k: int = K_CROPS, size: int = CROP, global_size: int = GLOBAL,
                         rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`make_views` plus the shared pre-reduction (:func:`pre_reduce`, uint8 RGB), which
    the indexer reuses for the grid thumbnail instead of reducing the whole decode a second time
    (an area resize of a 3 MP decode to 256 px costs more than all the views)."""
    rgb = _as_rgb_uint8(rgb_uint8)
    h, w = rgb.shape[:2]
    # One shared pre-reduction by an exact integer factor (OpenCV's fast area path, ~4 ms for a
    # 3 MP decode) feeds both the detail map and the global view; two direct non-integer area
    # reductions of the decode cost ~25 ms, more than the network.
    small = pre_reduce(rgb, size, global_size)
    pos = crop_positions(rgb, k, size, rng, small=small)
    crops = np.empty((k, 3, size, size), np.float32)
    for i, (y, x) in enumerate(pos):
        c = _pad_to(rgb[y : y + size, x : x + size], size)
        crops[i] = c.transpose(2, 0, 1).astype(np.float32) * (1.0 / 255.0)
    sh, sw = small.shape[:2]
    interp = cv2.INTER_AREA if (sh >= global_size and sw >= global_size) else cv2.INTER_LINEAR
    g = cv2.resize(small, (global_size, global_size), interpolation=interp)
    glob = g.transpose(2, 0, 1).astype(np.float32) * (1.0 / 255.0)
    return crops, np.ascontiguousarray(glob), small
