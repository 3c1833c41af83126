"""Camera defects: what one camera gets wrong in every photo, found from a series of its photos.

A camera with a defect makes the same mistake at the same sensor position in every photo: dust on
the sensor or a smudge on the lens is a soft multiplicative attenuation blob, a scratch in the lens
or its cover is a thin line, a stuck or hot pixel is always lit, and a body or lens can be
consistently too dark, tinted, flat or soft in one corner. One photo cannot tell a dust blob from
a bird; a series can, because scene content does not stay at one sensor position.

**Series** (:func:`group_series`): photos of one body (make, model, EXIF body serial), lens and
sensor pixel size. Photos are compared in the *sensor frame* (EXIF orientation undone), so
portrait and landscape shots of one camera pool. Photos without camera EXIF are grouped by folder
and pixel size (the best guess that they come from one device).

**Detection** (:func:`detect_series`), one decode per photo at a reduced scale (long side
at least :data:`WORK_SIDE` by a power-of-two JPEG DCT scaling, so no resize follows), in a
thread pool:

* per photo, the high-pass of log luminance ``r = L - lowpass(L)`` (multiplicative attenuation is
  an additive offset in log, in gamma-encoded sRGB as well since sRGB is close to a power law)
  and a weight ``w = 1 / (local texture + noise at that brightness)``, zero where the photo is
  clipped (an attenuation is invisible in blown highlights and black shadows);
* across the series, the weighted mean ``M = sum(w r) / sum(w)`` (streaming: no stack of photos is
  kept), and the same for the first and second half of the series apart (a split-half check; in
  catalog order, so a burst of one scene stays in one half);
* blobs: difference-of-Gaussian filters of ``M`` at several scales, each divided by a local robust
  noise estimate of that filter's own output (the median absolute deviation in blocks), so the
  threshold is in units of *this series'* noise and a defect-free series gives nothing; a
  candidate must also stand out in both halves of the series;
* lines: the ridge strength (largest Hessian eigenvalue) of ``M`` at small scales, normalised the
  same way; an elongated component is a ``line``;
* how many photos show it: per photo, a matched-filter estimate of the attenuation at the defect
  from a small stored copy of ``r`` and ``w`` (:data:`EVIDENCE_SIDE`); the photo shows it when the
  region is not clipped and the estimate is at least half the series' depth;
* hot pixels: from up to :data:`HOT_SAMPLE` photos decoded at full or half scale (the work image
  is made from that same decode): pixels much brighter than their 3x3 median in most of them;
* biases: per photo mean log luminance, colour (log R/G, log B/G), contrast (std of log
  luminance) and the sharpness of each corner relative to the four; per series the median,
  compared with the median of the library's other cameras (exposure, colour, contrast; colour also
  with neutral when there is no other camera) and, for a corner, with the other corners.

**Correction** (:func:`apply_correction`, the ``defects`` recipe stage): attenuation correction
(divide by the estimated attenuation map, stored in the recipe at the resolution it was
estimated) for dust, smudges and faint lines; OpenCV inpainting for opaque lines and
obstructions; median repair for hot pixels; gains and a contrast curve for biases; an unsharp
mask in a soft corner. The parameters are in the photo's own (oriented) frame in 0..1, so the
stage replays at any resolution.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import cv2
import numpy as np

from engine.core.jobs import CancelToken, Progress, ProgressFn, no_progress

log = logging.getLogger(__name__)

WORK_SIDE = 640  # the detection decode's long side is at least this: full size / 1, 2, 4 or 8


def work_reduce(width: int, height: int) -> int:
    """The DCT reduction of the detection decode: the largest of 1, 2, 4, 8 that keeps the long
    side >= WORK_SIDE (a 4000x3000 photo is examined at 1000x750; dust of 10 px radius is 2.5)."""
    r = 1
    while r < 8 and max(width, height) // (2 * r) >= WORK_SIDE:
        r *= 2
    return r
EVIDENCE_SIDE = 256  # long side of the per-photo copy kept to count the photos showing a defect
HOT_SAMPLE = 40  # photos per series examined for hot pixels
MIN_SERIES = 10  # fewer photos than this: no detection (a series must outvote its scenes)
EVIDENCE_BUDGET = 1500  # photos per series whose evidence is kept (more: an even sample, scaled)
BLOB_Z = 5.0  # threshold of the blob filter in units of the series' own noise (bench/eval_defects.py)
HALF_Z = 1.5  # each half of the series must show it at least this strongly (its own noise units)
LINE_Z = 6.0
FLOOR_FRACTION = 0.5  # the blob filter's noise is never below this share of the map's local robust spread
FLOOR_BLOCK = 8  # ... measured in blocks of this many times the scale
LINE_ELONGATION = 5.0
OPAQUE = 0.5  # log attenuation above which a line or area is inpainted instead of divided (~40 %)
# A line whose attenuation was measured directly (``_refine``) is divided out up to this depth (log
# units of display luminance: 1.2 leaves 30 % of it, about 7 % of the light), inpainted only beyond.
# On the 8 lines of bench/eval_defects.py --lines 1 --seed 2 (opacity 38-79 %, 1-2.5 px) dividing
# by the measured map gained +5.8 to +18.5 dB inside the line where inpainting a 1-2 px line's
# dilated band gained -6.5 to +6.9: the band loses the texture under and beside the line
# (docs/BENCHMARKS.md, camera defects, for the held-out seeds).
LINE_DIVIDE_MAX = 1.2
KINDS = ("dust", "smudge", "line", "obstruction", "hot_pixel", "bias")
DETECTOR_VERSION = "3"  # 2: refined lines divided out up to LINE_DIVIDE_MAX; 3: near-opaque lines measured


# ---------------------------------------------------------------------------------------------
# Orientation: the oriented photo <-> the sensor frame (EXIF orientation 1)
# ---------------------------------------------------------------------------------------------
def to_display(a: np.ndarray, orientation: int) -> np.ndarray:
    """Sensor-frame array -> the photo as displayed (what ``engine.ingest.imageio.decode`` returns):
    the same transposes as PIL's for EXIF orientation 1..8."""
    o = orientation if orientation in range(1, 9) else 1
    if o == 1:
        return a
    if o == 2:
        return a[:, ::-1]
    if o == 3:
        return a[::-1, ::-1]
    if o == 4:
        return a[::-1]
    if o == 5:
        return np.swapaxes(a, 0, 1)
    if o == 6:
        return np.rot90(a, -1)
    if o == 7:
        return np.swapaxes(a, 0, 1)[::-1, ::-1]
    return np.rot90(a, 1)  # 8


def to_sensor(a: np.ndarray, orientation: int) -> np.ndarray:
    """The displayed photo -> the sensor frame (inverse of :func:`to_display`)."""
    o = orientation if orientation in range(1, 9) else 1
    if o in (1, 2, 3, 4, 5, 7):  # self-inverse
        return to_display(a, o)
    if o == 6:
        return np.rot90(a, 1)
    return np.rot90(a, -1)  # 8


def point_to_display(u: float, v: float, orientation: int) -> tuple[float, float]:
    """A point in 0..1 of the sensor frame -> 0..1 of the displayed photo."""
    o = orientation if orientation in range(1, 9) else 1
    return {1: (u, v), 2: (1 - u, v), 3: (1 - u, 1 - v), 4: (u, 1 - v), 5: (v, u),
            6: (1 - v, u), 7: (1 - v, 1 - u), 8: (v, 1 - u)}[o]


def bbox_to_display(b: Sequence[float], orientation: int) -> list[float]:
    pts = [point_to_display(x, y, orientation) for x in (b[0], b[2]) for y in (b[1], b[3])]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [min(xs), min(ys), max(xs), max(ys)]


def sensor_size(width: int, height: int, orientation: int | None) -> tuple[int, int]:
    return (height, width) if (orientation or 1) in (5, 6, 7, 8) else (width, height)


# ---------------------------------------------------------------------------------------------
# Series
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhotoRef:
    """What detection needs of one catalog photo (plain data: crosses threads)."""

    id: int
    path: str  # file-system path
    fingerprint: str
    width: int  # as stored (after orientation)
    height: int
    orientation: int
    make: str | None = None
    model: str | None = None
    serial: str | None = None
    lens: str | None = None


@dataclass(frozen=True)
class Series:
    key: str
    camera: str  # readable: make model (serial), lens
    width: int  # sensor frame
    height: int
    photos: tuple[PhotoRef, ...]

    @property
    def members(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(DETECTOR_VERSION.encode())
        for p in sorted(self.photos, key=lambda p: p.id):
            h.update(f"{p.id}:{p.fingerprint};".encode())
        return h.hexdigest()


def _clean(s: str | None) -> str:
    return " ".join((s or "").split())


def camera_name(make: str | None, model: str | None, serial: str | None, lens: str | None,
                folder: str | None = None, size: tuple[int, int] | None = None) -> str:
    mk, md = _clean(make), _clean(model)
    if md.lower().startswith(mk.lower()):  # "Canon" + "Canon EOS 5D" -> "Canon EOS 5D"
        mk = ""
    name = " ".join(x for x in (mk, md) if x)
    if not name:
        where = f" in {folder}" if folder else ""
        dims = f" ({size[0]}x{size[1]})" if size else ""
        return f"unknown camera{where}{dims}"
    if serial:
        name += f" #{_clean(serial)}"
    if lens:
        name += f", {_clean(lens)}"
    if size:
        name += f" ({size[0]}x{size[1]})"
    return name


def series_key_of(p: PhotoRef) -> tuple[str, str]:
    """(key, readable camera) of the series ``p`` belongs to."""
    sw, sh = sensor_size(p.width, p.height, p.orientation)
    folder = None
    if not _clean(p.make) and not _clean(p.model):
        folder = os.path.dirname(p.path)
    parts = [_clean(p.make).lower(), _clean(p.model).lower(), _clean(p.serial).lower(), _clean(p.lens).lower(),
             f"{sw}x{sh}", folder or ""]
    key = hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return key, camera_name(p.make, p.model, p.serial, p.lens, folder, (sw, sh))


def group_series(photos: Iterable[PhotoRef]) -> list[Series]:
    """Photos grouped by camera (see the module docstring), largest series first."""
    groups: dict[str, list[PhotoRef]] = {}
    names: dict[str, str] = {}
    for p in photos:
        if not p.width or not p.height:
            continue
        k, name = series_key_of(p)
        groups.setdefault(k, []).append(p)
        names[k] = name
    out = []
    for k, ps in groups.items():
        sw, sh = sensor_size(ps[0].width, ps[0].height, ps[0].orientation)
        out.append(Series(k, names[k], sw, sh, tuple(sorted(ps, key=lambda p: p.id))))
    out.sort(key=lambda s: (-len(s.photos), s.camera))
    return out


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------
@dataclass
class Detection:
    """One defect of a series. ``bbox`` is ``[x0, y0, x1, y1]`` in 0..1 of the sensor frame."""

    kind: str
    bbox: list[float]
    photos: int
    series: int
    confidence: float
    params: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    dismissed: bool = False


@dataclass
class SeriesResult:
    series: Series
    detections: list[Detection]
    stats: dict[str, Any]
    used: int  # photos that could be decoded
    errors: int


def _fit(w: int, h: int, side: int) -> tuple[int, int]:
    s = min(1.0, side / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))


def _lum(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of 8-bit RGB, 0..1, float32 (OpenCV's float conversion: the exact weights)."""
    g: np.ndarray = cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return np.multiply(g, np.float32(1.0 / 255.0), out=g)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return a
    return cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _lowpass(a: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur, computed on a reduced copy (sigma in pixels of ``a``)."""
    h, w = a.shape
    f = max(1, int(sigma // 4))
    if f == 1:
        return _blur(a, sigma)
    small = cv2.resize(a, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    small = _blur(small, sigma / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


WIDE_SIGMA = 5.0  # from this sigma on, a Gaussian blur is computed at half resolution


def _wide_blur(a: np.ndarray, sigma: float, from_sigma: float = 0.0) -> np.ndarray:
    """``_blur``, computed at half resolution from ``WIDE_SIGMA`` on (a quarter of the pixels and
    half the taps: about 8x less work for the same result within a small fraction of the band's
    amplitude). The area reduction and the linear enlargement widen the blur by about 0.9 px^2 in
    variance; the half-resolution sigma is narrowed to make up for it."""
    h, w = a.shape[:2]
    if sigma < (from_sigma or WIDE_SIGMA) or min(h, w) < 32:
        return _blur(a, sigma)
    small = cv2.resize(a, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    small = _blur(small, math.sqrt(max(sigma * sigma - 0.92, 1.0)) / 2.0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


SCALES = (1.5, 3.0, 6.0, 12.0, 24.0)  # DoG scales at the work size (blob radius ~1.5-2x)
WEIGHT_FLOOR = 1e-4  # (0.01)^2: a spot of ~2 % is below what any one photo can show


@dataclass
class _PhotoEvidence:
    d: list[np.ndarray]  # per scale: the photo's difference of Gaussians of log luminance
    w: list[np.ndarray]  # per scale: its weight (1 / local variance of that DoG; 0 where clipped)
    r: np.ndarray  # the sum of the DoGs (a band-pass of log luminance) at the evidence size
    rw: np.ndarray  # its weight at the evidence size
    stats: dict[str, float]
    hot: np.ndarray | None  # bool mask of bright isolated pixels at hot-pixel scale, or None


def _photo_stats(rgb: np.ndarray, lum: np.ndarray) -> dict[str, float]:
    f = rgb.astype(np.float32) * (1.0 / 255.0) + 0.01
    mid = (lum > 0.06) & (lum < 0.94)
    if mid.sum() < 100:
        mid = np.ones_like(mid)
    L = np.log(lum + 0.01)
    lr = np.log(f[..., 0] / f[..., 1])[mid]
    lb = np.log(f[..., 2] / f[..., 1])[mid]
    h, w = lum.shape
    ch, cw = max(8, h // 5), max(8, w // 5)
    lap = np.abs(cv2.Laplacian(L, cv2.CV_32F, ksize=3))
    corners = [lap[:ch, :cw], lap[:ch, -cw:], lap[-ch:, :cw], lap[-ch:, -cw:]]  # tl tr bl br
    e = np.array([float(np.mean(c)) + 1e-4 for c in corners])
    le = np.log(e) - np.log(e).mean()
    return {"lum": float(L.mean()), "cr": float(np.median(lr)), "cb": float(np.median(lb)),
            "contrast": float(L.std()), "c_tl": float(le[0]), "c_tr": float(le[1]), "c_bl": float(le[2]),
            "c_br": float(le[3])}


def _scales(side: int) -> tuple[float, ...]:
    return tuple(x for x in SCALES if x * 16 < side)


def _level(s: float) -> int:
    """The reduction at which the band of scale ``s`` is computed and accumulated (a pyramid:
    a band of scale 12 needs no more than a quarter of the pixels)."""
    return 1 if s < 6 else int(s // 3)


def _evidence(rgb_work: np.ndarray, hot_rgb: np.ndarray | None, ev_size: tuple[int, int],
              hot_bar: int = 50) -> _PhotoEvidence:
    """Per-scale DoGs of log luminance and their weights: a spot is the same DoG in every photo,
    the scene is not; weighting by the local variance of the photo's texture lets smooth areas
    (where a spot is visible at all) outvote textured ones at every scale. Each band lives at its
    pyramid level (:func:`_level`)."""
    lum = _lum(rgb_work)
    L = np.log(lum + 0.01)
    h, w = L.shape
    side = max(h, w)
    scales = _scales(side)
    clipped = ((lum > 0.97) | (lum < 0.02)).astype(np.float32)
    levels: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {1: (L, lum, clipped)}

    def level(f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # a pyramid: each level is an area reduction of the one below it
        if f not in levels:
            g = max(k for k in levels if k < f and f % k == 0)
            size = (max(1, w // f), max(1, h // f))
            levels[f] = tuple(cv2.resize(a, size, interpolation=cv2.INTER_AREA)  # type: ignore[assignment]
                              for a in levels[g])
        return levels[f]

    blurred: dict[tuple[int, float], np.ndarray] = {}

    def blur_L(f: int, sigma: float) -> np.ndarray:
        # the same blur of the same level is needed by two neighbouring scales
        if (f, sigma) not in blurred:
            blurred[(f, sigma)] = _wide_blur(level(f)[0], sigma)
        return blurred[(f, sigma)]

    ds: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    noise_of: dict[int, np.ndarray] = {}
    band0: np.ndarray | None = None
    for i, s in enumerate(scales):
        f = _level(s)
        Lf, lumf, clf = level(f)
        sl = s / f
        d = blur_L(f, sl) - blur_L(f, 2 * sl)
        if i == 0:
            band0 = d
        # the weight comes from the texture of a finer band (two octaves down): a spot is smooth
        # at fine scales, so it does not lower its own weight, while scene texture does
        if i < 2 or f == 1:
            tb = band0 if f == 1 else None
        else:
            tb = blur_L(f, 0.75) - blur_L(f, 1.5)
        if tb is None:  # pragma: no cover - level 1 always has band 0
            tb = d
        # the local variance is a smooth map: half resolution serves from sigma 2.5
        v = _wide_blur(tb * tb, 2 * sl, from_sigma=2.5)
        if f not in noise_of:
            noise_of[f] = np.square(0.004 / (lumf + 0.01))
        wt = 1.0 / (v + noise_of[f] * (1.0 / (s * s)) + WEIGHT_FLOOR)
        cl = (clf > 0).astype(np.uint8)
        if cl.any():
            k = int(sl) * 2 + 1
            wt[cv2.dilate(cl, np.ones((k, k), np.uint8)) > 0] = 0.0
        ds.append(d.astype(np.float32, copy=False))
        ws.append(wt.astype(np.float32, copy=False))
    e = ev_size[0] / w
    Le = cv2.resize(L, ev_size, interpolation=cv2.INTER_AREA)
    r_ev = _blur(Le, max(0.5, scales[0] * e)) - _lowpass(Le, max(2.0, 2 * scales[-1] * e))
    mid = len(scales) // 2
    w_ev = cv2.resize(ws[mid], ev_size, interpolation=cv2.INTER_AREA)
    hot = None
    if hot_rgb is not None:
        # the brightest channel; np.max(axis=2) over 3 interleaved bytes is ~12x slower
        m = np.maximum(np.maximum(hot_rgb[..., 0], hot_rgb[..., 1]), hot_rgb[..., 2])
        med = cv2.medianBlur(m, 3)
        hot = (m.astype(np.int16) - med.astype(np.int16)) > hot_bar
    small = cv2.resize(rgb_work, ev_size, interpolation=cv2.INTER_AREA)
    return _PhotoEvidence(ds, ws, r_ev.astype(np.float32), w_ev.astype(np.float32),
                          _photo_stats(small, _lum(small)), hot)


def _load(p: PhotoRef, work: tuple[int, int], hot_scale: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(work-size RGB in the sensor frame, hot-pixel-scale RGB in the sensor frame or None)."""
    from engine.ingest.imageio import decode

    with open(p.path, "rb") as f:
        data = f.read()
    ext = os.path.splitext(p.path)[1]
    if hot_scale is not None:
        img, _ = decode(data, ext, reduce=hot_scale)
        big = np.ascontiguousarray(to_sensor(img.rgb, img.orientation))
        small = cv2.resize(big, work, interpolation=cv2.INTER_AREA) if big.shape[1::-1] != work else big
        return small, big
    full = max(p.width, p.height)
    img, _ = decode(data, ext, reduce=max(1, round(full / max(work))))
    rgb = np.ascontiguousarray(to_sensor(img.rgb, img.orientation))
    if rgb.shape[1::-1] != work:
        rgb = cv2.resize(rgb, work, interpolation=cv2.INTER_AREA)
    return rgb, None


def _block_sigma(d: np.ndarray, block: int) -> np.ndarray:
    """Robust local noise of ``d``: 1.4826 x the median |d| in blocks, smoothly upsampled."""
    h, w = d.shape
    bh, bw = max(1, h // block), max(1, w // block)
    hh, ww = bh * block if h >= block else h, bw * block if w >= block else w
    a = np.abs(d[:hh, :ww])
    if h >= block and w >= block:
        blocks = a.reshape(bh, block, bw, block).transpose(0, 2, 1, 3).reshape(bh, bw, -1)
        s = np.median(blocks, axis=2).astype(np.float32) * 1.4826
    else:
        s = np.full((1, 1), float(np.median(a)) * 1.4826, np.float32)
    floor = max(float(np.median(s)) * 0.5, 1e-6)  # a very flat block must not make noise look like signal
    s = np.maximum(s, floor)
    return cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR)


def _dog(m: np.ndarray, s: float) -> np.ndarray:
    return _blur(m, s) - _blur(m, 2.0 * s)


def _ridge(m: np.ndarray, s: float) -> np.ndarray:
    """Largest Hessian eigenvalue of ``m`` at scale ``s`` (positive in a dark line), scale-normalised."""
    b = _blur(m, s)
    dxx = cv2.Sobel(b, cv2.CV_32F, 2, 0, ksize=3)
    dyy = cv2.Sobel(b, cv2.CV_32F, 0, 2, ksize=3)
    dxy = cv2.Sobel(b, cv2.CV_32F, 1, 1, ksize=3)
    tr = dxx + dyy
    disc = np.sqrt(((dxx - dyy) * 0.5) ** 2 + dxy * dxy)
    return (tr * 0.5 + disc) * (s * s)


def _encode(a: np.ndarray, dtype: Any) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _decode_arr(s: str, shape: Sequence[int], dtype: Any) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype).reshape(tuple(int(x) for x in shape))


def _elongation(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return 1.0
    c = np.cov(np.stack([xs, ys]).astype(np.float64))
    ev = np.sort(np.linalg.eigvalsh(c))
    return float(np.sqrt(max(ev[1], 1e-9) / max(ev[0], 1.0 / 12)))


class _Accumulator:
    def __init__(self, shape: tuple[int, int], ev_shape: tuple[int, int], scales: Sequence[float]) -> None:
        self.shape = shape
        sh = [(max(1, shape[0] // _level(s)), max(1, shape[1] // _level(s))) for s in scales]
        self.swd = [[np.zeros(x, np.float32) for x in sh] for _ in range(2)]
        self.sw = [[np.zeros(x, np.float32) for x in sh] for _ in range(2)]
        # for the standard error of the weighted mean: sum w^2 d^2, sum w^2 d, sum w^2
        self.sw2dd = [np.zeros(x, np.float32) for x in sh]
        self.sw2d = [np.zeros(x, np.float32) for x in sh]
        self.sw2 = [np.zeros(x, np.float32) for x in sh]
        self.ev_shape = ev_shape
        self.ev_r: list[np.ndarray] = []
        self.ev_w: list[np.ndarray] = []
        self.stats: list[dict[str, float]] = []
        self.hot_count: np.ndarray | None = None
        self.hot_n = 0
        self.n = 0

    def add(self, e: _PhotoEvidence, keep_evidence: bool, half: int) -> None:
        for i, (d, w) in enumerate(zip(e.d, e.w, strict=True)):
            wd = w * d
            self.swd[half][i] += wd
            self.sw[half][i] += w
            w2 = w * w
            self.sw2[i] += w2
            wd *= w
            self.sw2d[i] += wd
            wd *= d
            self.sw2dd[i] += wd
        self.n += 1
        self.stats.append(e.stats)
        if keep_evidence:
            rw = e.rw / max(float(e.rw.max()), 1e-12)  # relative weights: float16 range
            self.ev_r.append((e.r * rw).astype(np.float16))
            self.ev_w.append(rw.astype(np.float16))
        if e.hot is not None:
            if self.hot_count is None:
                self.hot_count = np.zeros(e.hot.shape, np.uint16)
            if e.hot.shape == self.hot_count.shape:
                self.hot_count += e.hot
                self.hot_n += 1

    def _up(self, a: np.ndarray) -> np.ndarray:
        if a.shape == self.shape:
            return a
        return cv2.resize(a, self.shape[::-1], interpolation=cv2.INTER_LINEAR)

    def _mean_level(self, i: int) -> np.ndarray:
        return _mean(self.swd[0][i] + self.swd[1][i], self.sw[0][i] + self.sw[1][i])

    def stderr(self, i: int) -> np.ndarray:
        """Standard error of the weighted mean of scale ``i``: sqrt(sum w^2 (d-m)^2) / sum w."""
        m = self._mean_level(i)
        sw = self.sw[0][i] + self.sw[1][i]
        num = self.sw2dd[i] - 2 * m * self.sw2d[i] + m * m * self.sw2[i]
        return self._up((np.sqrt(np.maximum(num, 0.0)) / np.maximum(sw, 1e-12)).astype(np.float32))

    def neff(self, i: int) -> np.ndarray:
        """Effective number of photos behind the weighted mean: (sum w)^2 / sum w^2."""
        sw = self.sw[0][i] + self.sw[1][i]
        return self._up((sw * sw / np.maximum(self.sw2[i], 1e-20)).astype(np.float32))

    def mean(self, i: int, half: int | None = None) -> np.ndarray:
        if half is None:
            return self._up(self._mean_level(i))
        return self._up(_mean(self.swd[half][i], self.sw[half][i]))


def _mean(swr: np.ndarray, sw: np.ndarray) -> np.ndarray:
    return np.where(sw > 0, swr / np.maximum(sw, 1e-12), 0.0).astype(np.float32)


def _count_showing(acc: _Accumulator, profile: np.ndarray, region: tuple[slice, slice]) -> tuple[int, float]:
    """(photos whose own matched-filter attenuation at ``region`` is >= half the series' profile,
    the amplitude of the profile that fits the photos best).

    Per photo, the least-squares scale ``a`` of the profile in its band-pass residual (1.0 = the
    series' estimate exactly); the photo shows the defect when the region is not mostly clipped
    and ``a >= 0.5``. The pooled fit ``sum(w a den) / sum(w den)`` corrects the amplitude of the
    series' estimate (whose bands were weighted differently)."""
    if not acc.ev_r:
        return 0, 1.0
    t = profile
    if float((t * t).sum()) <= 0:
        return 0, 1.0
    n = 0
    num_all = den_all = 0.0
    on = t < 0
    for er, ew in zip(acc.ev_r, acc.ev_w, strict=True):
        w = ew[region].astype(np.float32)
        wr = er[region].astype(np.float32)
        if float((w[on] <= 0).mean()) >= 0.5:
            continue
        num = float((wr * t).sum())
        den = float((w * t * t).sum())
        if den <= 0:
            continue
        num_all += num
        den_all += den
        if num / den >= 0.5:
            n += 1
    total = acc.n
    if len(acc.ev_r) < total:  # evidence kept for an even sample: scale the count
        n = round(n * total / len(acc.ev_r))
    k = num_all / den_all if den_all > 0 else 1.0
    return n, float(k)


def detect_series(series: Series, workers: int | None = None, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None,
                  loader: Callable[[PhotoRef, tuple[int, int], int | None],
                                   tuple[np.ndarray, np.ndarray | None]] | None = None) -> SeriesResult:
    """Find the fixed-position defects of one series and its per-photo statistics.

    Biases need the other cameras of the library: :func:`find_biases` adds them afterwards.
    """
    progress = progress or no_progress
    loader = loader or _load
    n = len(series.photos)
    red = work_reduce(series.width, series.height)
    work = (max(1, series.width // red), max(1, series.height // red))
    ev = _fit(series.width, series.height, EVIDENCE_SIDE)
    ev_shape = (ev[1], ev[0])
    acc = _Accumulator((work[1], work[0]), ev_shape, _scales(max(work)))
    if n < MIN_SERIES:
        return SeriesResult(series, [], {}, 0, 0)
    hot_every = max(1, n // HOT_SAMPLE)
    hot_scale = 1 if max(series.width, series.height) <= 3000 else 2
    ev_every = max(1, -(-n // EVIDENCE_BUDGET))
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    errors = 0

    def job(i: int) -> _PhotoEvidence | None:
        p = series.photos[i]
        hot = hot_scale if (i % hot_every == 0 and i // hot_every < HOT_SAMPLE) else None
        try:
            rgb, big = loader(p, work, hot)
        except Exception as e:  # noqa: BLE001 - a bad file is skipped and counted, the series goes on
            log.info("defects: cannot read %s: %s", p.path, e)
            return None
        # at half scale a hot pixel is averaged with three neighbours: a lower bar
        return _evidence(rgb, big, ev, 50 if hot_scale == 1 else 30)

    for i, e in _pool_map(job, range(n), workers, cancel):
        if e is None:
            errors += 1
        else:
            # the halves are the first and second half in catalog order (about capture order), so a
            # burst or a tripod session of one scene falls in one half and cannot pass for a defect
            acc.add(e, keep_evidence=(i % ev_every == 0), half=int(2 * i >= n))
        progress(Progress(i + 1, n, f"{series.camera}: photo {i + 1} of {n}"))
    if acc.n < MIN_SERIES:
        return SeriesResult(series, [], _series_stats(acc), acc.n, errors)
    dets = _merge(_find_spots(acc, series, work))
    _refine(series, dets, work, loader, workers, cancel)
    dets += _find_hot(acc, series)
    return SeriesResult(series, dets, _series_stats(acc), acc.n, errors)


def _pool_map(fn: Callable[[int], Any], items: Iterable[int], workers: int, cancel: CancelToken | None
              ) -> Iterable[tuple[int, Any]]:
    """``(i, fn(i))`` in order, at most ``2 * workers`` ahead (each result holds a photo's maps)."""
    from collections import deque

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="defects") as pool:
        window: deque[tuple[int, Any]] = deque()
        it = iter(items)
        try:
            while True:
                while len(window) < 2 * workers:
                    i = next(it, None)
                    if i is None:
                        break
                    window.append((i, pool.submit(fn, i)))
                if not window:
                    return
                if cancel is not None and cancel.cancelled:
                    cancel.raise_if_cancelled()
                i, fut = window.popleft()
                yield i, fut.result()
        finally:
            for _, f in window:
                f.cancel()


REFINE_PHOTOS = 48  # photos decoded again to measure each spot's attenuation directly


def _refine(series: Series, dets: list[Detection], work: tuple[int, int],
            loader: Callable[[PhotoRef, tuple[int, int], int | None], tuple[np.ndarray, np.ndarray | None]],
            workers: int, cancel: CancelToken | None) -> None:
    """Measure each spot's attenuation map directly: in up to :data:`REFINE_PHOTOS` photos, the log
    luminance around the spot minus a quadratic surface fitted to a ring outside it, averaged with
    weights from how smooth each photo's ring is. The band-pass estimate of the detection loses
    part of a small spot's depth; this does not, and it replaces the stored patch when enough
    photos had a usable ring."""
    spots = [d for d in dets if d.kind in ("dust", "smudge", "line") and "patch" in d.params]
    if not spots:
        return
    W, H = work
    jobs = []
    for d in spots:
        x0, y0, x1, y1 = _region_px(d.params["region"], W, H)
        sh = d.params["shape"]
        if (y1 - y0, x1 - x0) != (sh[0], sh[1]):
            continue
        pv = _decode_arr(d.params["patch"], sh, np.float16).astype(np.float32)
        line = d.kind == "line"
        inner = pv < (-0.15 * float(-pv.min()) if line else 0.0)
        if not inner.any():
            continue
        # a line's background is the photo smoothed across it with the line left out (a thin
        # band); a spot's is a quadratic surface fitted on a wide ring
        m = 6 if line else max(4, int(0.5 * max(sh)))
        ex0, ey0, ex1, ey1 = max(0, x0 - m), max(0, y0 - m), min(W, x1 + m), min(H, y1 + m)
        hole: np.ndarray = np.zeros((ey1 - ey0, ex1 - ex0), np.uint8)
        hole[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0] = inner
        hole = cv2.dilate(hole, np.ones((3, 3) if line else (5, 5), np.uint8))
        ring = (cv2.dilate(hole, np.ones((2 * m + 1, 2 * m + 1), np.uint8)) > 0) & (hole == 0)
        if ring.sum() < 20:
            continue
        yy, xx = np.mgrid[0:hole.shape[0], 0:hole.shape[1]].astype(np.float32)
        xs, ys = xx / max(1, hole.shape[1]), yy / max(1, hole.shape[0])
        basis = np.stack([np.ones_like(xs), xs, ys, xs * xs, ys * ys, xs * ys], -1)
        jobs.append({"d": d, "line": line, "known": (hole == 0).astype(np.float32),
                     "box": (ex0, ey0, ex1, ey1), "in": (x0 - ex0, y0 - ey0, x1 - ex0, y1 - ey0),
                     "ring": ring, "basis": basis, "num": np.zeros(hole.shape, np.float64),
                     "den": np.zeros(hole.shape, np.float64), "n": 0})
    if not jobs:
        return
    n = len(series.photos)
    idx = sorted({int(round(k * (n - 1) / max(1, min(n, REFINE_PHOTOS) - 1))) for k in range(min(n, REFINE_PHOTOS))})

    def load(i: int) -> np.ndarray | None:
        try:
            rgb, _ = loader(series.photos[i], work, None)
        except Exception:  # noqa: BLE001 - an unreadable photo simply does not count
            return None
        return _lum(rgb)

    for _i, lum in _pool_map(load, idx, workers, cancel):
        if lum is None:
            continue
        for j in jobs:
            ex0, ey0, ex1, ey1 = j["box"]
            lc = lum[ey0:ey1, ex0:ex1]
            if lc.shape != j["ring"].shape:
                continue
            clip = (lc > 0.97) | (lc < 0.03)
            on = j["known"] == 0
            if j["line"] and not (clip & on & (lc > 0.5)).any() and float(np.mean(clip[j["ring"]])) < 0.02:
                # black pixels on a line whose surroundings are neither black nor white are the
                # line's own doing: a line that takes nearly all the light is black in every photo
                # and must be measured there (its log depth saturates near 4.6, deep enough to be
                # filled in); skipping such photos left it unmeasured, divided by the shallow
                # band-pass estimate, and still visible
                clip = clip & (lc > 0.5)
            if (clip & on).any():
                continue  # clipped on the defect: its attenuation cannot be seen in this photo
            ring = j["ring"] & ~clip
            if ring.sum() < 20:
                continue
            L = np.log(lc + 0.01)
            if j["line"]:
                k = j["known"] * (~clip)
                # normalised convolution, widening until the known pixels carry the estimate
                bg = np.zeros_like(L)
                todo = np.ones(L.shape, bool)
                for sg in (2.0, 4.0, 8.0, 16.0):
                    kw = _blur(k, sg)
                    ok = todo & (kw > 0.15)
                    bg[ok] = (_blur(L * k, sg)[ok] / kw[ok])
                    todo &= ~ok
                if todo.any():
                    bg[todo] = float((L * k).sum() / max(float(k.sum()), 1.0))
                res = L - bg
                fine = L - _blur(L, 2.0)
                var = float(np.mean(fine[ring] ** 2))
            else:
                A = j["basis"][ring]
                coef, *_ = np.linalg.lstsq(A, L[ring], rcond=None)
                res = L - j["basis"] @ coef
                var = float(np.mean(res[ring] ** 2))
            w = 1.0 / (var + 1e-4)
            j["num"] += w * res
            j["den"] += w
            j["n"] += 1
    for j in jobs:
        if j["n"] < 8:
            continue
        d = j["d"]
        est = (j["num"] / j["den"]).astype(np.float32)
        a0, b0, a1, b1 = j["in"]
        old = _decode_arr(d.params["patch"], d.params["shape"], np.float16).astype(np.float32)
        new = np.minimum(est[b0:b1, a0:a1], 0.0)
        support = cv2.dilate((old < 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
        new = new * np.clip(_blur(support, 1.0) * 1.5, 0, 1)
        if d.params.get("round"):
            new = _radial(new, old < 0)
        d.params["patch"] = _encode(new, np.float16)
        d.params["depth"] = round(float(-new.min()), 4)
        d.params["refined"] = j["n"]
        if j["line"]:  # a faint line is divided out, an opaque one filled in
            d.params["method"] = "inpaint" if d.params["depth"] > LINE_DIVIDE_MAX else "divide"


def _merge(dets: list[Detection]) -> list[Detection]:
    """Drop the fragments of a stronger spot (a large spot's penumbra also rings at fine scales)
    and large soft shapes in a corner of the frame (lens vignetting and the photographers' own
    dark corners, which a band-pass sees as blobs; corner shading is the bias check's business)."""
    def corner(d: Detection) -> bool:
        b = d.bbox
        touches_x = b[0] <= 0.02 or b[2] >= 0.98
        touches_y = b[1] <= 0.02 or b[3] >= 0.98
        return touches_x and touches_y and (b[2] - b[0]) * (b[3] - b[1]) > 0.004

    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: float(d.params.get("z", 0.0))):  # strongest (most negative) first
        if d.kind in ("dust", "smudge") and corner(d):
            continue
        cx, cy = (d.bbox[0] + d.bbox[2]) / 2, (d.bbox[1] + d.bbox[3]) / 2
        inside = False
        for k in kept:
            if k.kind == "hot_pixel":
                continue
            mx, my = 0.5 * (k.bbox[2] - k.bbox[0]), 0.5 * (k.bbox[3] - k.bbox[1])
            if k.bbox[0] - mx <= cx <= k.bbox[2] + mx and k.bbox[1] - my <= cy <= k.bbox[3] + my:
                inside = True
                break
        if not inside:
            kept.append(d)
    return kept


def _series_stats(acc: _Accumulator) -> dict[str, Any]:
    if not acc.stats:
        return {}
    keys = acc.stats[0].keys()
    out: dict[str, Any] = {"n": len(acc.stats)}
    for k in keys:
        v = np.array([s[k] for s in acc.stats])
        med = float(np.median(v))
        mad = float(np.median(np.abs(v - med))) * 1.4826
        out[k] = [round(med, 5), round(mad, 5)]
    return out


def _find_spots(acc: _Accumulator, series: Series, work: tuple[int, int]) -> list[Detection]:
    h, w = work[1], work[0]
    side = max(h, w)
    scales = _scales(side)
    Ds = [acc.mean(i) for i in range(len(scales))]
    M = np.sum(Ds, axis=0)  # the band-pass log attenuation: sum of the scales' DoGs
    zmin = np.zeros((h, w), np.float32)
    zscale = np.zeros((h, w), np.int8)
    # the frame's edge: filters see a reflected border there, and decoders' edge rows are odd
    edge = np.ones((h, w), bool)
    b = max(3, side // 100)
    edge[b:-b, b:-b] = False
    sigs: list[np.ndarray] = []
    for i, s in enumerate(scales):
        d = Ds[i]
        # the noise of the weighted mean: its standard error (inflated where few photos carry
        # the weight, since then it is itself uncertain), never below half the local robust
        # spread of the map (scene structure shared by many photos of a series)
        se = acc.stderr(i)
        neff = acc.neff(i)
        sig = np.maximum(se * np.sqrt(np.maximum(1.0, 8.0 / np.maximum(neff, 1e-3))),
                         FLOOR_FRACTION * _block_sigma(d, max(24, int(FLOOR_BLOCK * s))))
        sig = np.maximum(sig, 1e-6)
        z = d / sig
        # split-half: both halves of the series must lean the same way
        za = acc.mean(i, 0) / (sig * 1.4142)
        zb = acc.mean(i, 1) / (sig * 1.4142)
        z[(za > -HALF_Z) | (zb > -HALF_Z)] = 0.0
        z[edge] = 0.0
        sigs.append(sig)
        better = z < zmin
        zmin[better] = z[better]
        zscale[better] = i
    # ridges (dark lines) at the two finest scales of the fine band
    fine = Ds[0] + (Ds[1] if len(Ds) > 1 else 0)
    rz = np.zeros((h, w), np.float32)
    for s in (1.0, 2.0):
        rr = _ridge(fine, s)
        sig = _block_sigma(rr, 32)
        rz = np.maximum(rz, rr / sig)
    rz[edge] = 0.0
    Ma = np.sum([acc.mean(i, 0) for i in range(len(scales))], axis=0)
    Mb = np.sum([acc.mean(i, 1) for i in range(len(scales))], axis=0)
    out: list[Detection] = []
    used = np.zeros(M.shape, bool)
    # blobs
    cand = (zmin < -BLOB_Z * 0.6).astype(np.uint8)
    ncomp, lab, st, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    for c in range(1, ncomp):
        comp = lab == c
        peak = float(zmin[comp].min())
        if peak > -BLOB_Z:
            continue
        iy, ix = np.unravel_index(np.argmin(np.where(comp, zmin, 0)), M.shape)
        si = int(zscale[iy, ix])
        s = scales[si]
        elong = _elongation(comp)
        det = _spot_detection(acc, series, M, comp, s, peak, elong, work)
        if det is not None:
            out.append(det)
            used |= comp
    # lines not already found as elongated blobs
    cand = ((rz > LINE_Z * 0.5) & ~cv2.dilate(used.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool))
    ncomp, lab, st, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=8)
    for c in range(1, ncomp):
        if st[c, cv2.CC_STAT_AREA] < max(12, side // 40):
            continue
        comp = lab == c
        if float(rz[comp].max()) < LINE_Z:
            continue
        elong = _elongation(comp)
        if elong < LINE_ELONGATION:
            continue
        # the split-half check: both halves are darker along the line than beside it
        ring = cv2.dilate(comp.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~comp
        full = float(M[ring].mean()) - float(M[comp].mean())
        ok = full > 0 and all(float(m[ring].mean()) - float(m[comp].mean()) > 0.4 * full for m in (Ma, Mb))
        if not ok:
            continue
        # the line itself: the strong part of the ridge (the component also holds weaker scene
        # structure it touches), which is what is measured and corrected
        core = comp & (rz >= 0.8 * LINE_Z)
        if core.sum() < max(8, side // 60):
            continue
        det = _spot_detection(acc, series, M, core, 1.0, -float(rz[comp].max()), _elongation(core), work,
                              line=True)
        if det is not None:
            out.append(det)
    return out


def _spot_detection(acc: _Accumulator, series: Series, M: np.ndarray, comp: np.ndarray, s: float, peak: float,
                    elong: float, work: tuple[int, int], line: bool = False) -> Detection | None:
    h, w = M.shape
    ys, xs = np.nonzero(comp)
    pad = int(np.ceil(2.5 * s)) + 2
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    sm = _blur(M, max(0.7, s * 0.35)) if not line else M
    patch = np.minimum(sm[y0:y1, x0:x1], 0.0)
    depth = float(-patch.min())
    if depth <= 0.01:
        return None
    # the defect's extent: where the smoothed estimate is deeper than 15 % of its depth, connected
    # to the component, feathered to zero at the edge
    core = (patch < -0.08 * depth).astype(np.uint8)
    seed = comp[y0:y1, x0:x1].astype(np.uint8)
    nlab, lab2 = cv2.connectedComponents(core, connectivity=8)
    keep = np.isin(lab2, np.unique(lab2[(seed > 0) & (core > 0)])) & (core > 0)
    if line or not keep.any():  # a line is its ridge (the map around it holds scene noise too)
        keep = cv2.dilate(seed, np.ones((3, 3), np.uint8)) > 0
    soft = cv2.dilate(keep.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    soft = _blur(soft, 1.0)
    patch = patch * np.clip(soft * 1.5, 0, 1)
    if not line and elong < 2.0:
        patch = _radial(patch, keep)
        round_spot = True
    else:
        round_spot = False
    # the band-pass lost what its widest blur took from the spot: A = P + G*A, solved by iteration
    low = 2.0 * _scales(max(h, w))[-1]
    canvas = np.zeros((h, w), np.float32)
    p0 = patch.copy()
    for _ in range(3):
        canvas[y0:y1, x0:x1] = patch
        patch = np.minimum(p0 + _lowpass(canvas, low)[y0:y1, x0:x1] * (p0 < 0), 0.0)
    depth = float(-patch.min())
    ky, kx = np.nonzero(keep)
    bx0, bx1 = (x0 + kx.min()) / w, (x0 + kx.max() + 1) / w
    by0, by1 = (y0 + ky.min()) / h, (y0 + ky.max() + 1) / h
    area = float(keep.sum()) / (h * w)
    radius = float(np.sqrt(keep.sum() / np.pi)) / max(h, w)
    if line or elong >= LINE_ELONGATION:
        kind = "obstruction" if depth > OPAQUE and not line else "line"
    elif depth > OPAQUE or area > 0.02:
        kind = "obstruction" if depth > OPAQUE else "smudge"
    else:
        kind = "smudge" if radius > 0.1 else "dust"
    # opaque areas are filled from around them; a line is divided out by its map unless it is
    # nearly opaque (``LINE_DIVIDE_MAX``): even the detection scale's shallower estimate of a line
    # (before ``_refine``) gained +1.4 to +4.1 dB inside the line by division where inpainting its
    # dilated band lost 0.7 to 6.5 (bench/eval_defects.py --lines 1 --seed 6)
    method = "inpaint" if kind == "obstruction" or (kind == "line" and depth > LINE_DIVIDE_MAX) else "divide"
    # photos showing it, from the evidence copies
    ev_h, ev_w = acc.ev_shape
    ey0, ey1 = int(np.floor(y0 * ev_h / h)), int(np.ceil(y1 * ev_h / h))
    ex0, ex1 = int(np.floor(x0 * ev_w / w)), int(np.ceil(x1 * ev_w / w))
    ey1, ex1 = max(ey1, ey0 + 1), max(ex1, ex0 + 1)
    prof = cv2.resize(patch, (ex1 - ex0, ey1 - ey0), interpolation=cv2.INTER_AREA)
    shown, _k = _count_showing(acc, prof, (slice(ey0, ey1), slice(ex0, ex1)))
    conf = float(1.0 / (1.0 + np.exp(-(abs(peak) - BLOB_Z) / 1.5)))
    conf = round(0.5 + 0.5 * conf * min(1.0, acc.n / 30.0), 3)
    params: dict[str, Any] = {
        "method": method, "depth": round(depth, 4),
        "region": [x0 / w, y0 / h, x1 / w, y1 / h],
        "shape": [int(y1 - y0), int(x1 - x0)],
        "patch": _encode(patch, np.float16),
        "z": round(float(peak), 2), "round": round_spot,
    }
    if kind in ("line", "obstruction"):
        params["mask"] = _encode(np.packbits(keep.astype(np.uint8)), np.uint8)
    return Detection(kind, [round(bx0, 4), round(by0, 4), round(bx1, 4), round(by1, 4)], int(shown), acc.n,
                     conf, params)


def _radial(patch: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A round spot's attenuation as a radial profile around its centre: the median of each
    1-pixel ring, made monotonic outwards. Averaging over angles removes most of the scene noise
    left in the series' mean, which is what the correction divides by."""
    wgt = np.where(keep, -patch, 0.0)
    tot = float(wgt.sum())
    if tot <= 0:
        return patch
    yy, xx = np.mgrid[0:patch.shape[0], 0:patch.shape[1]].astype(np.float32)
    cy, cx = float((wgt * yy).sum() / tot), float((wgt * xx).sum() / tot)
    rr = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    ri = np.floor(rr).astype(np.int32)
    n = int(ri.max()) + 1
    prof = np.zeros(n, np.float32)
    for k in range(n):
        ring = patch[ri == k]
        prof[k] = float(np.median(ring)) if ring.size else 0.0
    # deepest at the centre, rising to 0: the mean of the upper and lower monotone envelopes
    # (a cheap isotonic fit; either envelope alone is biased by the noise of one ring)
    prof = np.minimum(0.5 * (np.maximum.accumulate(prof) + np.minimum.accumulate(prof[::-1])[::-1]), 0.0)
    depth = -float(prof.min())
    if depth <= 0:
        return patch
    out = np.interp(rr.ravel(), np.arange(n) + 0.5, prof).reshape(patch.shape).astype(np.float32)
    out[out > -0.03 * depth] = 0.0
    return out


def _find_hot(acc: _Accumulator, series: Series) -> list[Detection]:
    if acc.hot_count is None or acc.hot_n < MIN_SERIES:
        return []
    need = max(5, int(np.ceil(0.6 * acc.hot_n)))
    ys, xs = np.nonzero(acc.hot_count >= need)
    if len(xs) == 0 or len(xs) > 2000:  # thousands of "hot pixels": a repeated scene, not a sensor
        return []
    hh, ww = acc.hot_count.shape
    pts = [[round((x + 0.5) / ww, 6), round((y + 0.5) / hh, 6)] for x, y in zip(xs.tolist(), ys.tolist(), strict=True)]
    counts = acc.hot_count[ys, xs]
    shown = round(float(np.median(counts)) / acc.hot_n * acc.n)
    frac = float(np.median(counts)) / acc.hot_n
    x0, y0 = xs.min() / ww, ys.min() / hh
    x1, y1 = (xs.max() + 1) / ww, (ys.max() + 1) / hh
    return [Detection("hot_pixel", [round(x0, 4), round(y0, 4), round(x1, 4), round(y1, 4)], int(shown), acc.n,
                      round(min(0.99, 0.5 + 0.5 * frac), 3),
                      {"points": pts, "frame": [ww, hh], "sampled": acc.hot_n})]


# biases: thresholds on the series medians (log units), and the t-like consistency required
BIAS_LIMITS = {"lum": 0.25, "cr": 0.06, "cb": 0.06, "contrast": 0.12, "corner": 0.5}
NEUTRAL_COLOUR_LIMIT = 0.15


def find_biases(results: Sequence[SeriesResult]) -> None:
    """Add ``bias`` detections to each result: exposure, colour and contrast against the median of
    the other series (colour also against neutral), and a corner against the other corners."""
    usable = [r for r in results if r.stats.get("n", 0) >= MIN_SERIES]
    for r in usable:
        st = r.stats
        n = st["n"]
        others = [o.stats for o in usable if o is not r]
        values: dict[str, Any] = {}
        reasons: list[str] = []
        conf: list[float] = []

        def consistent(med: float, mad: float, ref: float, n: int = n) -> float:
            se = max(mad, 1e-3) * 1.2533 / np.sqrt(n)
            return abs(med - ref) / se

        for k in ("lum", "cr", "cb", "contrast"):
            med, mad = st[k]
            if len(others) >= 3:  # a median of at least three cameras: one biased camera cannot move it
                ref = float(np.median([o[k][0] for o in others]))
                lim = BIAS_LIMITS[k]
            elif k in ("cr", "cb"):
                ref, lim = 0.0, NEUTRAL_COLOUR_LIMIT
            else:
                continue
            if abs(med - ref) > lim and consistent(med, mad, ref) > 5:
                values[k] = round(ref - med, 4)  # the correction (log units)
                reasons.append(k)
                conf.append(min(0.99, 0.5 + (abs(med - ref) - lim) / lim * 0.5))
        for k in ("c_tl", "c_tr", "c_bl", "c_br"):
            med, mad = st[k]
            if med < -BIAS_LIMITS["corner"] and consistent(med, mad, 0.0) > 5:
                values.setdefault("soft_corners", {})[k[2:]] = round(-med, 4)
                reasons.append(f"soft corner {k[2:]}")
                conf.append(min(0.99, 0.5 + (-med - BIAS_LIMITS["corner"])))
        if values:
            r.detections.append(Detection("bias", [0.0, 0.0, 1.0, 1.0], r.used, r.used,
                                          round(float(np.mean(conf)), 3),
                                          {"correct": values, "what": reasons}))


# ---------------------------------------------------------------------------------------------
# Correction (the recipe stage)
# ---------------------------------------------------------------------------------------------
def display_params(d: Detection, orientation: int) -> dict[str, Any]:
    """The stage's parameters of one detection, in the frame of a photo with ``orientation``."""
    p = dict(d.params)
    item: dict[str, Any] = {"kind": d.kind, "bbox": bbox_to_display(d.bbox, orientation)}
    if d.kind == "hot_pixel":
        item["points"] = [list(point_to_display(u, v, orientation)) for u, v in p["points"]]
        fw, fh = p["frame"]
        item["frame"] = list(sensor_size(fw, fh, orientation)) if orientation in (5, 6, 7, 8) else [fw, fh]
        return item
    if d.kind == "bias":
        c = dict(p["correct"])
        if "soft_corners" in c:
            moved = {}
            for name, amt in c["soft_corners"].items():
                u = 0.0 if name[1] == "l" else 1.0
                v = 0.0 if name[0] == "t" else 1.0
                du, dv = point_to_display(u, v, orientation)
                moved[("t" if dv < 0.5 else "b") + ("l" if du < 0.5 else "r")] = amt
            c["soft_corners"] = moved
        item["correct"] = c
        return item
    shape = p["shape"]
    patch = to_display(_decode_arr(p["patch"], shape, np.float16), orientation)
    item.update(method=p["method"], region=bbox_to_display(p["region"], orientation),
                shape=list(patch.shape), patch=_encode(patch, np.float16))
    if "mask" in p:
        bits = np.unpackbits(_decode_arr(p["mask"], [-1], np.uint8))[: shape[0] * shape[1]].reshape(shape)
        m = to_display(bits, orientation)
        item["mask"] = _encode(np.packbits(m), np.uint8)
    return item


def _region_px(region: Sequence[float], w: int, h: int) -> tuple[int, int, int, int]:
    x0 = int(np.floor(region[0] * w))
    y0 = int(np.floor(region[1] * h))
    x1 = int(np.ceil(region[2] * w))
    y1 = int(np.ceil(region[3] * h))
    return max(0, x0), max(0, y0), min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))


def apply_correction(rgb: np.ndarray, params: dict[str, Any], strength: float = 1.0) -> np.ndarray:
    """The ``defects`` stage: correct ``rgb`` (float32 HxWx3 0..1, the photo as displayed at any
    resolution) with the stored ``params`` (:func:`stage_params`). Returns a new array."""
    out = np.array(rgb, dtype=np.float32, copy=True)
    h, w = out.shape[:2]
    items = params.get("items", [])
    for it in items:  # biases first: the spot maps were measured relative to the series' mean tone
        if it.get("kind") == "bias":
            out = _apply_bias(out, it["correct"], strength)
    learned = params.get("inpainter") is not None
    if learned and inpainter_version() != params["inpainter"].get("version"):
        log.warning("the recipe's inpainter %s is not installed (now %s); OpenCV's inpainting fills instead",
                    params["inpainter"].get("version"), inpainter_version())
        learned = False
    for it in items:
        kind = it.get("kind")
        if kind in ("dust", "smudge", "line", "obstruction"):
            _apply_spot(out, it, strength, w, h, learned)
        elif kind == "hot_pixel":
            _apply_hot(out, it, strength, w, h)
    return np.clip(out, 0.0, 1.0)


def _apply_spot(out: np.ndarray, it: dict[str, Any], strength: float, w: int, h: int,
                learned: bool = False) -> None:
    x0, y0, x1, y1 = _region_px(it["region"], w, h)
    rw, rh = x1 - x0, y1 - y0
    patch = _decode_arr(it["patch"], it["shape"], np.float16).astype(np.float32)
    if it.get("method") == "inpaint" and "mask" in it:
        sh = it["shape"]
        bits = np.unpackbits(_decode_arr(it["mask"], [-1], np.uint8))[: sh[0] * sh[1]].reshape(sh)
        m = cv2.resize(bits.astype(np.uint8) * 255, (rw, rh), interpolation=cv2.INTER_LINEAR)
        m = (m > 32).astype(np.uint8) * 255
        k = max(1, round(max(rw / max(1, sh[1]), rh / max(1, sh[0]))))
        m = cv2.dilate(m, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
        pad = max(8, 4 * k)
        ax0, ay0, ax1, ay1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
        big = np.zeros((ay1 - ay0, ax1 - ax0), np.uint8)
        big[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0] = m
        sel = big > 0
        if learned:  # the recipe was made with models/inpaint.onnx (models/inpaint.md)
            fixed = learned_inpaint(np.clip(out[ay0:ay1, ax0:ax1], 0.0, 1.0), sel)
        else:
            src = np.clip(out[ay0:ay1, ax0:ax1] * 255.0 + 0.5, 0, 255).astype(np.uint8)
            # Navier-Stokes: 1.3 dB above Telea inside line and blob holes (models/training/eval_inpaint.py)
            fixed = cv2.inpaint(src, big, max(3, 2 * k), cv2.INPAINT_NS).astype(np.float32) / 255.0
        region = out[ay0:ay1, ax0:ax1]
        region[sel] = region[sel] * (1 - strength) + fixed[sel] * strength
        return
    a = cv2.resize(patch, (rw, rh), interpolation=cv2.INTER_LINEAR)
    gain = np.exp(-a * strength)[..., None]
    out[y0:y1, x0:x1] *= gain


def _apply_hot(out: np.ndarray, it: dict[str, Any], strength: float, w: int, h: int) -> None:
    fw, fh = it.get("frame", [w, h])
    r = max(1, round(max(w / max(1, fw), h / max(1, fh))))  # one detection pixel = r output pixels
    for u, v in it["points"]:
        cx, cy = int(u * w), int(v * h)
        x0, x1 = max(0, cx - r // 2 - (r - 1) // 2 - 0), min(w, cx + r // 2 + 1)
        y0, y1 = max(0, cy - r // 2 - (r - 1) // 2 - 0), min(h, cy + r // 2 + 1)
        ax0, ax1, ay0, ay1 = max(0, x0 - r), min(w, x1 + r), max(0, y0 - r), min(h, y1 + r)
        ring = np.ones((ay1 - ay0, ax1 - ax0), bool)
        ring[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0] = False
        if not ring.any():
            continue
        med = np.median(out[ay0:ay1, ax0:ax1][ring], axis=0)
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - strength) + med * strength


def _apply_bias(out: np.ndarray, c: dict[str, Any], strength: float) -> np.ndarray:
    eps = 0.01
    if "contrast" in c or "lum" in c:
        lum = out[..., 0] * 0.299 + out[..., 1] * 0.587 + out[..., 2] * 0.114
        L = np.log(lum + eps)
        m = float(L.mean())
        Ln = L
        if "contrast" in c:
            # contrast is the std of log luminance; the stored value is ref - med (a difference of
            # stds); scale the deviations so the std moves by that amount
            sd = max(float(L.std()), 1e-3)
            Ln = m + (L - m) * max(0.5, min(2.0, (sd + c["contrast"] * strength) / sd))
        if "lum" in c:
            Ln = Ln + c["lum"] * strength
        g = (np.exp(Ln) - eps) / np.maximum(lum, 1e-4)
        out = out * np.clip(g, 0.0, 8.0)[..., None]
    if "cr" in c:
        out[..., 0] *= float(np.exp(c["cr"] * strength))
    if "cb" in c:
        out[..., 2] *= float(np.exp(c["cb"] * strength))
    sc = c.get("soft_corners") or {}
    if sc:
        h, w = out.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        blur = _blur(out, max(1.0, max(h, w) / 1000.0))
        detail = out - blur
        for name, amt in sc.items():
            cx = 0.0 if name[1] == "l" else w - 1.0
            cy = 0.0 if name[0] == "t" else h - 1.0
            d = np.sqrt(((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2)
            wgt = np.clip(1.0 - d / 0.6, 0.0, 1.0) ** 2
            gain = (float(np.exp(min(1.5, float(amt)))) - 1.0) * strength
            out = out + detail * (wgt * gain)[..., None]
    return out


# ---------------------------------------------------------------------------------------------
# The catalog: load series, store and read detections, plan the stage for one photo
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesReport:
    """A series and its defects, as stored (plain data for the GUI and the CLI)."""

    id: int
    key: str
    camera: str
    width: int
    height: int
    n_photos: int
    detected_at: datetime
    defects: tuple[Detection, ...]
    orientation: int  # the most common orientation of its photos (the frame the CLI reports in)
    reused: bool = False


def _photo_refs(catalog: Any, folder: str | None = None) -> list[PhotoRef]:
    from sqlalchemy import select

    from db.queries import under
    from db.schema import STATUS_OK, Photo

    with catalog.session() as s:
        q = select(Photo.id, Photo.path_bytes, Photo.fingerprint, Photo.width, Photo.height, Photo.orientation,
                   Photo.camera_make, Photo.camera_model, Photo.camera_serial, Photo.lens).where(
            Photo.status == STATUS_OK)
        if folder is not None:  # a relative or symlinked folder means the same photos
            q = q.where(under(Photo.path_bytes, os.path.realpath(folder)))
        rows = s.execute(q).all()
    return [PhotoRef(int(r[0]), os.fsdecode(r[1]), r[2] or "", int(r[3] or 0), int(r[4] or 0), int(r[5] or 1),
                     r[6], r[7], r[8], r[9]) for r in rows if r[3] and r[4]]


def series_of_folder(catalog: Any, folder: str) -> list[Series]:
    """The whole series (every catalog photo of those cameras) of the cameras of ``folder``'s photos."""
    mine = {series_key_of(p)[0] for p in _photo_refs(catalog, folder)}
    return [s for s in group_series(_photo_refs(catalog)) if s.key in mine]


def detect(catalog: Any, folder: str | None = None, force: bool = False, workers: int | None = None,
           progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> list[SeriesReport]:
    """Run (or reuse) the detection for the cameras of ``folder``'s photos (None: every camera) and
    store it. A series whose photos and contents did not change since its last detection is read
    back, not examined again (``force`` examines it anyway)."""
    progress = progress or no_progress
    every = group_series(_photo_refs(catalog))
    if folder is not None:
        mine = {series_key_of(p)[0] for p in _photo_refs(catalog, folder)}
        chosen = [s for s in every if s.key in mine]
    else:
        chosen = list(every)
    stored = _stored_series(catalog)
    todo = [s for s in chosen if force or stored.get(s.key, ("",))[0] != s.members]
    total = sum(len(s.photos) for s in todo if len(s.photos) >= MIN_SERIES)
    done = 0
    results: list[SeriesResult] = []
    for s in todo:
        base = done

        def prog(p: Progress, base: int = base) -> None:
            progress(Progress(base + p.done, total, p.message))

        res = detect_series(s, workers=workers, progress=prog, cancel=cancel)
        done += res.used + res.errors
        results.append(res)
    # biases compare with the other cameras: every stored series' statistics count
    others = [SeriesResult(Series(k, "", 0, 0, ()), [], st, int(st.get("n", 0)), 0)
              for k, (_, st) in stored.items() if k not in {r.series.key for r in results}]
    find_biases(results + others)
    for r in results:
        _store(catalog, r)
    keys = {s.key for s in chosen}
    return [rep for rep in reports(catalog) if rep.key in keys]


def _stored_series(catalog: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    from sqlalchemy import select

    from db.schema import DefectSeries

    with catalog.session() as s:
        return {k: (m, json.loads(st or "{}")) for k, m, st in
                s.execute(select(DefectSeries.key, DefectSeries.members, DefectSeries.stats_json)).all()}


def _same(a: Detection, b: Any) -> bool:
    """A new detection and a stored one are the same defect (their boxes overlap, same kind)."""
    if a.kind != b.kind:
        return False
    ix = min(a.bbox[2], b.x1) - max(a.bbox[0], b.x0)
    iy = min(a.bbox[3], b.y1) - max(a.bbox[1], b.y0)
    return ix > 0 and iy > 0


def _store(catalog: Any, r: SeriesResult) -> None:
    from sqlalchemy import select, update

    from db.schema import Defect, DefectSeries, Photo

    now = datetime.now()
    s_ = r.series

    def fn(s: Any) -> None:
        row = s.scalar(select(DefectSeries).where(DefectSeries.key == s_.key))
        if row is None:
            row = DefectSeries(key=s_.key, camera=s_.camera[:2000], width=s_.width, height=s_.height,
                               n_photos=len(s_.photos), members=s_.members, stats_json="{}", detected_at=now)
            s.add(row)
            s.flush()
        row.camera = s_.camera
        row.n_photos = len(s_.photos)
        row.members = s_.members
        row.stats_json = json.dumps(r.stats)
        row.detected_at = now
        old = list(s.scalars(select(Defect).where(Defect.series_id == row.id)))
        dismissed = [o for o in old if o.dismissed]
        for o in old:
            s.delete(o)
        s.flush()
        for d in r.detections:
            s.add(Defect(series_id=row.id, kind=d.kind, x0=d.bbox[0], y0=d.bbox[1], x1=d.bbox[2], y1=d.bbox[3],
                         photos=d.photos, series_size=d.series, confidence=d.confidence,
                         params_json=json.dumps(d.params), dismissed=any(_same(d, o) for o in dismissed),
                         detected_at=now))
        ids = [p.id for p in s_.photos]
        for i in range(0, len(ids), 500):
            s.execute(update(Photo).where(Photo.id.in_(ids[i:i + 500])).values(series_id=row.id))

    catalog.write(fn)


def _detection(row: Any) -> Detection:
    return Detection(row.kind, [row.x0, row.y0, row.x1, row.y1], row.photos, row.series_size, row.confidence,
                     json.loads(row.params_json or "{}"), id=row.id, dismissed=bool(row.dismissed))


def reports(catalog: Any, include_dismissed: bool = True) -> list[SeriesReport]:
    """Every stored series with its defects, largest first."""
    from sqlalchemy import func, select

    from db.schema import Defect, DefectSeries, Photo

    with catalog.session() as s:
        rows = list(s.scalars(select(DefectSeries)))
        defs = list(s.scalars(select(Defect).order_by(Defect.id)))
        ori = s.execute(select(Photo.series_id, Photo.orientation, func.count()).where(Photo.series_id.is_not(None))
                        .group_by(Photo.series_id, Photo.orientation)).all()
        best: dict[int, tuple[int, int]] = {}
        for sid, o, c in ori:
            if sid not in best or c > best[sid][1]:
                best[int(sid)] = (int(o or 1), int(c))
        by: dict[int, list[Detection]] = {}
        for d in defs:
            if include_dismissed or not d.dismissed:
                by.setdefault(d.series_id, []).append(_detection(d))
        out = [SeriesReport(r.id, r.key, r.camera, r.width, r.height, r.n_photos, r.detected_at,
                            tuple(by.get(r.id, [])), best.get(r.id, (1, 0))[0]) for r in rows]
    out.sort(key=lambda r: (-r.n_photos, r.camera))
    return out


def set_dismissed(catalog: Any, defect_id: int, dismissed: bool = True) -> None:
    from db.schema import Defect

    def fn(s: Any) -> None:
        d = s.get(Defect, int(defect_id))
        if d is None:
            raise KeyError(f"no defect {defect_id}")
        d.dismissed = dismissed

    catalog.write(fn)


def photo_defects(catalog: Any, photo_id: int) -> tuple[int, list[Detection]]:
    """(orientation, the undismissed defects of the photo's series); ``(1, [])`` when it has none."""
    from sqlalchemy import select

    from db.schema import Defect, Photo

    with catalog.session() as s:
        row = s.execute(select(Photo.series_id, Photo.orientation).where(Photo.id == int(photo_id))).first()
        if row is None or row[0] is None:
            return 1, []
        defs = [_detection(d) for d in s.scalars(select(Defect).where(Defect.series_id == row[0],
                                                                        Defect.dismissed.is_(False)))]
    return int(row[1] or 1), defs


def stage_params(catalog: Any, photo_id: int) -> dict[str, Any] | None:
    """The ``defects`` stage parameters of one photo (its series' undismissed, correctable defects
    in the photo's own frame), or None when there is nothing to correct."""
    orientation, defs = photo_defects(catalog, photo_id)
    items = [display_params(d, orientation) for d in defs if d.kind in KINDS]
    if not items:
        return None
    params = params_for(items)
    params["defect_ids"] = [d.id for d in defs]
    return params


def params_for(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The stage parameters of correction ``items`` (:func:`display_params`), naming the installed
    learned inpainter when an item is to be inpainted."""
    params: dict[str, Any] = {"version": DETECTOR_VERSION, "items": items}
    if any(it.get("method") == "inpaint" for it in items):
        ver = inpainter_version()
        if ver is not None:  # recorded, so the recipe replays with the inpainter it was made with
            params["inpainter"] = {"model": INPAINT_MODEL, "version": ver}
    return params


INPAINT_MODEL = "inpaint"  # models/inpaint.onnx (models/training/train_inpaint.py, models/inpaint.md)


def inpainter_version() -> str | None:
    """The installed learned inpainter's version, or None (OpenCV's Navier-Stokes then fills)."""
    from engine.core.runtime import model_version, models_dir

    path = models_dir() / f"{INPAINT_MODEL}.onnx"
    return model_version(path) if path.is_file() else None


INPAINT_TILE = 384  # the learned inpainter's tile (its inner part); memory stays bounded on long scratches
INPAINT_MARGIN = 48  # context around each tile: about the network's reach (coarse fill up to 47 px)


def learned_inpaint(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill ``hole`` (bool HxW) of ``rgb`` (float32 HxWx3 0..1) with models/inpaint.onnx; the
    known pixels come back unchanged. Run tile by tile (:data:`INPAINT_TILE` plus
    :data:`INPAINT_MARGIN` of context, only tiles that hold hole pixels), so a scratch across a
    24 MP frame costs what its tiles cost; each tile padded to a multiple of 8 by reflection."""
    from engine.core.runtime import get_session, models_dir

    sess = get_session(models_dir() / f"{INPAINT_MODEL}.onnx", None, mem_arena=False)
    h, w = hole.shape
    m = hole.astype(np.float32)
    hidden = rgb * (1.0 - m[..., None])
    out = rgb.astype(np.float32, copy=True)
    t, g = INPAINT_TILE, INPAINT_MARGIN
    for y0 in range(0, h, t):
        for x0 in range(0, w, t):
            y1, x1 = min(h, y0 + t), min(w, x0 + t)
            if not hole[y0:y1, x0:x1].any():
                continue
            cy0, cx0, cy1, cx1 = max(0, y0 - g), max(0, x0 - g), min(h, y1 + g), min(w, x1 + g)
            th, tw = cy1 - cy0, cx1 - cx0
            ph, pw = (-th) % 8, (-tw) % 8
            mode: Literal["reflect", "edge"] = "reflect" if min(th, tw) > max(ph, pw) else "edge"
            x = np.pad(hidden[cy0:cy1, cx0:cx1], ((0, ph), (0, pw), (0, 0)), mode=mode)
            mm = np.pad(m[cy0:cy1, cx0:cx1], ((0, ph), (0, pw)), mode=mode)
            res = sess.run(None, {"image": np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32),
                                  "mask": np.ascontiguousarray(mm[None, None], np.float32)})[0]
            filled = res[0].transpose(1, 2, 0)[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
            sel = hole[y0:y1, x0:x1]
            out[y0:y1, x0:x1][sel] = filled[sel]
    return out


def reasons_for_photo(catalog: Any, photo_ids: Sequence[int]) -> dict[int, list[str]]:
    """Photo id -> the kinds of undismissed defects of its series (for badges and reasons)."""
    from sqlalchemy import select

    from db.schema import Defect, Photo

    ids = sorted({int(i) for i in photo_ids})
    out: dict[int, list[str]] = {}
    with catalog.session() as s:
        for i in range(0, len(ids), 500):
            rows = s.execute(select(Photo.id, Defect.kind).join(Defect, Defect.series_id == Photo.series_id)
                             .where(Photo.id.in_(ids[i:i + 500]), Defect.dismissed.is_(False))).all()
            for pid, kind in rows:
                lst = out.setdefault(int(pid), [])
                if kind not in lst:
                    lst.append(kind)
    return out


def defect_records(rep: SeriesReport) -> list[dict[str, Any]]:
    """The CLI's JSON objects of one series (bbox in the frame of its most common orientation)."""
    out = []
    for d in rep.defects:
        out.append({"camera": rep.camera, "kind": d.kind, "bbox": [round(x, 4) for x in
                                                                    bbox_to_display(d.bbox, rep.orientation)],
                    "photos": d.photos, "series": d.series, "confidence": d.confidence, "id": d.id,
                    "dismissed": d.dismissed})
    return out


KIND_COLOURS = {"dust": (230, 80, 60), "smudge": (230, 150, 40), "line": (60, 140, 230),
                "obstruction": (170, 60, 200), "hot_pixel": (240, 220, 40), "bias": (120, 120, 120)}


def summary(rep: SeriesReport) -> str:
    """"3 dust spots, in 214 of 230 photos" (the undismissed defects; the most shown count)."""
    live = [d for d in rep.defects if not d.dismissed]
    if not live:
        return f"no defect found in {rep.n_photos} photos"
    names = {"dust": ("dust spot", "dust spots"), "smudge": ("smudge", "smudges"), "line": ("line", "lines"),
             "obstruction": ("obstruction", "obstructions"), "hot_pixel": ("hot pixel group", "hot pixel groups"),
             "bias": ("tone or colour bias", "tone or colour biases")}
    counts: dict[str, int] = {}
    for d in live:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    parts = [f"{n} {names.get(k, (k, k))[n > 1]}" for k, n in counts.items()]
    most = max(d.photos for d in live)
    return f"{', '.join(parts)}, in {most} of {rep.n_photos} photos"


def defect_map(rep: SeriesReport, side: int = 360, background: np.ndarray | None = None) -> np.ndarray:
    """An RGB picture of the frame (the series' usual orientation) with each defect's box drawn
    and numbered by its position in ``rep.defects``; dismissed ones dashed grey."""
    fw, fh = (rep.width, rep.height) if rep.orientation not in (5, 6, 7, 8) else (rep.height, rep.width)
    w, h = _fit(fw, fh, side)
    if background is not None and background.ndim == 3:
        img = cv2.resize(background, (w, h), interpolation=cv2.INTER_AREA)
        img = (img.astype(np.float32) * 0.6 + 40).astype(np.uint8)
    else:
        img = np.full((h, w, 3), 70, np.uint8)
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), (140, 140, 140), 1)
    for i, d in enumerate(rep.defects):
        if d.kind == "bias":
            continue
        col = (150, 150, 150) if d.dismissed else KIND_COLOURS.get(d.kind, (255, 255, 255))
        if d.kind == "hot_pixel":  # scattered single pixels: a ring at each, the number at the first
            pts = [point_to_display(u, v, rep.orientation) for u, v in d.params.get("points", [])[:500]]
            for u, v in pts:
                cv2.circle(img, (int(u * w), int(v * h)), 4, col, 1, cv2.LINE_AA)
            if pts:
                cv2.putText(img, str(i + 1), (int(pts[0][0] * w) + 6, int(pts[0][1] * h) + 4),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1, cv2.LINE_AA)
            continue
        b = bbox_to_display(d.bbox, rep.orientation)
        x0, y0 = int(b[0] * w), int(b[1] * h)
        x1, y1 = max(x0 + 3, int(np.ceil(b[2] * w))), max(y0 + 3, int(np.ceil(b[3] * h)))
        cv2.rectangle(img, (x0 - 2, y0 - 2), (x1 + 2, y1 + 2), col, 1 if d.dismissed else 2)
        cv2.putText(img, str(i + 1), (x1 + 4, max(10, y0 + 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1,
                    cv2.LINE_AA)
    return img


def example_crops(catalog: Any, rep: SeriesReport, d: Detection, n: int = 3, side: int = 120) -> list[np.ndarray]:
    """Crops of ``n`` photos of the series around the defect (as displayed), for the user to see
    it. Decodes at reduced scale: run it off the GUI thread."""
    from sqlalchemy import select

    from db.schema import STATUS_OK, Photo
    from engine.ingest.imageio import ImageError, load_image

    with catalog.session() as s:
        rows = s.execute(select(Photo.path_bytes, Photo.orientation).where(
            Photo.series_id == rep.id, Photo.status == STATUS_OK).order_by(Photo.id)).all()
    if not rows:
        return []
    step = max(1, len(rows) // n)
    out: list[np.ndarray] = []
    for pb, o in rows[::step][:n]:
        try:
            img = load_image(os.fsdecode(pb), max_side=1600).rgb
        except (ImageError, OSError):
            continue
        h, w = img.shape[:2]
        b = bbox_to_display(d.bbox, int(o or 1)) if d.kind != "bias" else [0.0, 0.0, 1.0, 1.0]
        cx, cy = (b[0] + b[2]) / 2 * w, (b[1] + b[3]) / 2 * h
        half = max(24.0, 1.5 * max((b[2] - b[0]) * w, (b[3] - b[1]) * h))
        x0, x1 = int(max(0, cx - half)), int(min(w, cx + half))
        y0, y1 = int(max(0, cy - half)), int(min(h, cy + half))
        crop = img[y0:y1, x0:x1]
        if crop.size == 0:
            continue
        out.append(cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if crop.shape[0] > side
                              else cv2.INTER_NEAREST))
    return out


__all__ = ["DETECTOR_VERSION", "KINDS", "Detection", "PhotoRef", "Series", "SeriesReport", "SeriesResult",
           "apply_correction", "bbox_to_display", "camera_name", "defect_records", "detect", "detect_series",
           "defect_map", "display_params", "example_crops", "find_biases", "group_series", "photo_defects", "reasons_for_photo", "reports",
           "sensor_size", "series_key_of", "series_of_folder", "set_dismissed", "stage_params", "summary", "to_display",
           "to_sensor"]
