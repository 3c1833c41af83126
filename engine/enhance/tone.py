"""Tone and exposure operators (numpy/OpenCV) and the learned ``tone`` stage.

The stage is a fixed chain of global and local operators with a dozen parameters. A small
network (``models/tone.onnx``) predicts the parameters from a 128x128 view of the photo
(:func:`predict_params`); the operators then run at full resolution (:func:`apply_params`).
The parameters are a plain JSON object, so a recipe records them and replays them exactly.

Chain, in this order (each stage is the identity at its neutral value, see ``NEUTRAL``):

1. ``dehaze``: dark-channel-prior dehazing (He et al. 2009), strength ``dehaze`` 0..0.95 and
   atmospheric light ``airlight`` (RGB, estimated from the image by :func:`estimate_airlight`
   when the parameters are predicted, and stored so that replay is deterministic).
   The transmission is refined by a guided filter.
2. ``white balance`` and ``exposure`` in linear light: per-channel gains
   ``exp([t, g, -t] - g/3)`` (``temperature`` t, ``tint`` g), times ``2 ** exposure``.
3. ``levels``: ``(x - black) / (white - black)`` (auto-levels style; undoes flat contrast and
   uniform veiling haze). Stages 2 and 3 together are faded out toward white
   (:func:`protect_white`, parameter version 2), so clipped whites stay white.
4. ``local tone mapping``: a base/detail split of luminance by an edge-preserving (guided)
   filter; a curve on the base only (``shadows`` lifts it, ``highlights`` compresses it), applied
   as a smooth gain map, so local detail is kept (backlit and high-dynamic-range scenes).
5. ``contrast``: a global S-curve ``x - c sin(2 pi x) / (2 pi)`` (monotonic for ``|c| < 1``).
6. ``saturation`` and ``vibrance``: chroma scaled by ``(1 + s)(1 + v (1 - chroma))``
   around BT.709 luminance.

The spatial operators (guided filter, dark channel) run on a working copy whose long side is
at most ``WORK_SIDE`` pixels, with radii proportional to its size; their smooth outputs (the
guided filter's linear coefficients) are upsampled and applied to the full-resolution pixels
("fast guided filter", He and Sun 2015). So memory and time scale with the pixel count only
through pointwise work, and a preview and a full render agree.

``models/training/tone_torch.py`` holds a differentiable torch twin of every operator;
``tests/test_tone_twins.py`` checks that the two agree.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

Image = np.ndarray
log = logging.getLogger(__name__)

# Order of the network's output vector (also written into the ONNX metadata, key "params").
PARAM_NAMES: tuple[str, ...] = (
    "dehaze",
    "temperature",
    "tint",
    "exposure",
    "black",
    "white",
    "shadows",
    "highlights",
    "contrast",
    "saturation",
    "vibrance",
)

NEUTRAL: dict[str, float] = {
    "dehaze": 0.0,
    "temperature": 0.0,
    "tint": 0.0,
    "exposure": 0.0,
    "black": 0.0,
    "white": 1.0,
    "shadows": 0.0,
    "highlights": 0.0,
    "contrast": 0.0,
    "saturation": 0.0,
    "vibrance": 0.0,
}

# Bounds the network's outputs are squashed into; apply_params clamps to them as well so a
# hand-edited recipe cannot drive an operator outside its well-behaved range.
BOUNDS: dict[str, tuple[float, float]] = {
    "dehaze": (0.0, 0.95),
    "temperature": (-0.6, 0.6),
    "tint": (-0.3, 0.3),
    "exposure": (-2.5, 3.5),
    "black": (-0.2, 0.6),
    "white": (0.4, 1.3),
    "shadows": (0.0, 1.5),
    "highlights": (0.0, 1.5),
    "contrast": (-0.9, 0.9),
    "saturation": (-0.8, 1.5),
    "vibrance": (-0.8, 1.5),
}

# 2: the white-protecting shoulder after WB/exposure/levels (:func:`protect_white`); version-1
# recipes replay without it, exactly as they were made.
PARAMS_VERSION = 2
WHITE_KNEE = 8.0  # exponent of that shoulder
WORK_SIDE = 384  # long side of the working copy for the spatial operators
NET_SIDE = 128  # the network's input view
GF_RADIUS = 0.04  # guided filter radius, fraction of the working copy's short side
GF_EPS = 0.01
DARK_RADIUS = 0.015  # dark-channel patch radius, fraction of the short side
T_MIN = 0.25  # lowest transmission the dehazer divides by
GAIN_MIN, GAIN_MAX = 0.25, 4.0  # local tone mapping gain limits
MIN_WIDTH = 0.05  # smallest white - black

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


# ----------------------------------------------------------------------------- helpers


def luminance(img: Image) -> np.ndarray:
    """BT.709 luminance of an RGB float image (on the sRGB-encoded values)."""
    return np.asarray(img @ _LUMA, dtype=np.float32)


def srgb_to_linear(x: Image) -> Image:
    x = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
    hi = cv2.pow((x + np.float32(0.055)) / np.float32(1.055), 2.4)
    return np.where(x <= 0.04045, x / np.float32(12.92), hi).astype(np.float32)


def linear_to_srgb(x: Image) -> Image:
    x = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
    hi = np.float32(1.055) * cv2.pow(np.maximum(x, np.float32(1e-8)), 1.0 / 2.4) - np.float32(0.055)
    return np.where(x <= 0.0031308, x * np.float32(12.92), hi).astype(np.float32)


def _radius(short_side: int, frac: float) -> int:
    # reflect padding needs r < side
    return int(max(1, min(round(frac * short_side), short_side - 1)))


def box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, mirrored borders (the torch twin pads with 'reflect')."""
    k = 2 * r + 1
    return np.asarray(cv2.boxFilter(x, -1, (k, k), normalize=True, borderType=cv2.BORDER_REFLECT_101),
                      np.float32)


def guided_coeffs(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The guided filter's smoothed linear coefficients: output = A * guide + B."""
    mi, mp = box(guide, r), box(src, r)
    cov = box(guide * src, r) - mi * mp
    var = box(guide * guide, r) - mi * mi
    a = cov / (var + np.float32(eps))
    b = mp - a * mi
    return box(a, r), box(b, r)


def min_filter(x: np.ndarray, r: int) -> np.ndarray:
    k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    return np.asarray(cv2.erode(x, k, borderType=cv2.BORDER_REFLECT_101), np.float32)


def work_copy(img: Image) -> Image:
    """The working copy for the spatial operators (the image itself when already small)."""
    h, w = img.shape[:2]
    s = WORK_SIDE / max(h, w)
    if s >= 1.0:
        return img
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA), np.float32)


def _upsample(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    if x.shape[:2] == (h, w):
        return x
    return np.asarray(cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


def clean_params(params: Mapping[str, Any]) -> dict[str, float]:
    """Known scalar parameters clamped to ``BOUNDS``; missing ones are neutral."""
    out: dict[str, float] = {}
    for k in PARAM_NAMES:
        v = float(params.get(k, NEUTRAL[k]))
        if not math.isfinite(v):
            v = NEUTRAL[k]
        lo, hi = BOUNDS[k]
        out[k] = min(max(v, lo), hi)
    return out


def scale_params(params: Mapping[str, Any], strength: float) -> dict[str, float]:
    """Move every parameter from neutral (strength 0) to its value (1), or beyond (up to 2)."""
    s = float(min(max(strength, 0.0), 2.0))
    p = clean_params(params)
    return clean_params({k: NEUTRAL[k] + s * (p[k] - NEUTRAL[k]) for k in PARAM_NAMES})


# ----------------------------------------------------------------------------- operators


def estimate_airlight(img: Image) -> list[float]:
    """Atmospheric light: mean colour of the 0.1% pixels with the brightest dark channel."""
    small = work_copy(np.asarray(img, np.float32))
    r = _radius(min(small.shape[:2]), DARK_RADIUS)
    dark = min_filter(small.min(axis=2), r).ravel()
    n = max(1, dark.size // 1000)
    idx = np.argpartition(dark, dark.size - n)[-n:]
    a = small.reshape(-1, 3)[idx].mean(axis=0)
    return [float(v) for v in np.clip(a, 0.5, 1.0)]


def dehaze(img: Image, amount: float, airlight: list[float] | np.ndarray) -> Image:
    """Dark channel prior dehazing: ``J = (I - A) / t + A``, ``t = 1 - amount * dark(I / A)``."""
    if amount <= 0.0:
        return img
    a = np.asarray(airlight, np.float32).reshape(1, 1, 3)
    small = work_copy(img)
    short = min(small.shape[:2])
    dark = min_filter((small / a).min(axis=2), _radius(short, DARK_RADIUS))
    t = np.float32(1.0) - np.float32(amount) * dark
    ca, cb = guided_coeffs(luminance(small), t, _radius(short, GF_RADIUS), GF_EPS)
    h, w = img.shape[:2]
    t_full = _upsample(ca, (h, w)) * luminance(img) + _upsample(cb, (h, w))
    t_full = np.clip(t_full, T_MIN, 1.0)[:, :, None]
    return np.clip((img - a) / t_full + a, 0.0, 1.0).astype(np.float32)


def white_balance_exposure(img: Image, temperature: float, tint: float, exposure: float) -> Image:
    """Per-channel gains and an exposure change in linear light."""
    if temperature == 0.0 and tint == 0.0 and exposure == 0.0:
        return img
    g = np.exp(np.array([temperature - tint / 3, 2 * tint / 3, -temperature - tint / 3])) * 2.0 ** exposure
    return linear_to_srgb(srgb_to_linear(img) * g.astype(np.float32).reshape(1, 1, 3))


def levels(img: Image, black: float, white: float) -> Image:
    if black == 0.0 and white == 1.0:
        return img
    white = max(white, black + MIN_WIDTH)
    return np.clip((img - np.float32(black)) / np.float32(white - black), 0.0, 1.0).astype(np.float32)


def protect_white(x: Image, y: Image) -> Image:
    """Fade a darkening ``x -> y`` out toward white: ``y + max(x - y, 0) * x ** WHITE_KNEE``.

    Darkening cannot bring back what an 8-bit photo clipped: lowering exposure (or a white
    point above 1) only turns a white background or a blown sky flat grey, the commonest way
    an automatic fix ruins a high-key photo. With the shoulder, white stays white and values
    below ~0.7 get the full correction; the map stays monotonic (its slope is positive for
    any ``y <= x``). Brightening is untouched.
    """
    return (y + np.maximum(x - y, np.float32(0.0)) * np.power(x, np.float32(WHITE_KNEE))).astype(np.float32)


def params_version(params: Mapping[str, Any]) -> int:
    """Version of a parameter set; sets without one predate versioning (version 1)."""
    try:
        return int(params.get("version", 1))
    except (TypeError, ValueError):
        return 1


def base_curve(b: np.ndarray, shadows: float, highlights: float) -> np.ndarray:
    """Curve on the base layer: a gamma that lifts (shadows) and one that compresses the top."""
    t = np.power(b, np.float32(2.0 ** -shadows))
    return np.float32(1.0) - np.power(np.float32(1.0) - t, np.float32(2.0 ** -highlights))


def local_tone(img: Image, shadows: float, highlights: float) -> Image:
    """Base/detail split by a guided filter on luminance; the curve acts on the base only."""
    if shadows == 0.0 and highlights == 0.0:
        return img
    small = work_copy(img)
    ys = luminance(small)
    ca, cb = guided_coeffs(ys, ys, _radius(min(small.shape[:2]), GF_RADIUS), GF_EPS)
    h, w = img.shape[:2]
    base = np.clip(_upsample(ca, (h, w)) * luminance(img) + _upsample(cb, (h, w)), 1e-3, 1.0)
    gain = np.clip(base_curve(base, shadows, highlights) / base, GAIN_MIN, GAIN_MAX)
    return np.clip(img * gain[:, :, None], 0.0, 1.0).astype(np.float32)


def contrast_curve(img: Image, c: float) -> Image:
    if c == 0.0:
        return img
    k = np.float32(c / (2 * math.pi))
    return np.clip(img - k * np.sin(np.float32(2 * math.pi) * img), 0.0, 1.0).astype(np.float32)


def saturation_vibrance(img: Image, saturation: float, vibrance: float) -> Image:
    if saturation == 0.0 and vibrance == 0.0:
        return img
    y = luminance(img)[:, :, None]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]  # np.max(axis=2) is ~4x slower on HxWx3
    chroma = (np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b))[:, :, None]
    k = np.maximum(np.float32(1 + saturation) * (np.float32(1.0) + np.float32(vibrance) * (1 - chroma)), 0.0)
    return np.clip(y + (img - y) * k, 0.0, 1.0).astype(np.float32)


def apply_reference(rgb: Image, params: Mapping[str, Any], strength: float = 1.0) -> Image:
    """The chain written as one full-image pass per operator: the plain reference that
    :func:`apply_params` must match (it is what the torch twins mirror)."""
    img = np.clip(np.asarray(rgb, np.float32), 0.0, 1.0)
    p = scale_params(params, strength)
    if strength <= 0.0:
        return img.copy()
    if p["dehaze"] > 0.0:
        img = dehaze(img, p["dehaze"], _airlight(img, params))
    pre_in = img
    img = white_balance_exposure(img, p["temperature"], p["tint"], p["exposure"])
    img = levels(img, p["black"], p["white"])
    if params_version(params) >= 2:
        img = protect_white(pre_in, img)
    img = local_tone(img, p["shadows"], p["highlights"])
    img = contrast_curve(img, p["contrast"])
    return saturation_vibrance(img, p["saturation"], p["vibrance"])


def _airlight(img: Image, params: Mapping[str, Any]) -> list[float]:
    air = params.get("airlight")
    return estimate_airlight(img) if air is None else [float(v) for v in air]


# --- the fast path: per-channel lookup tables, coefficient maps from the working copy, strips

_LUT_N = 65536
_LUT_X = np.linspace(0.0, 1.0, _LUT_N, dtype=np.float32)
STRIP_ROWS = 64  # rows per strip: a few MB of temporaries, whatever the photo size


def _lut_index(x: np.ndarray) -> np.ndarray:
    idx = x * np.float32(_LUT_N - 1)
    idx += np.float32(0.5)
    np.clip(idx, 0, _LUT_N - 1, out=idx)
    return idx.astype(np.uint16)


def _channel_luts(p: Mapping[str, float], version: int = PARAMS_VERSION
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """[3, N] tables for the per-channel stages before (WB, exposure, levels) and after
    (contrast curve) local tone mapping; None where the stages are neutral."""
    pre = None
    if not (p["temperature"] == 0.0 and p["tint"] == 0.0 and p["exposure"] == 0.0
            and p["black"] == 0.0 and p["white"] == 1.0):
        x3 = np.repeat(_LUT_X[None, :, None], 3, axis=2)  # [1, N, 3] "image"
        y3 = levels(white_balance_exposure(x3, p["temperature"], p["tint"], p["exposure"]), p["black"], p["white"])
        if version >= 2:
            y3 = protect_white(x3, y3)
        pre = np.ascontiguousarray(y3[0].T)
    post = None
    if p["contrast"] != 0.0:
        post = contrast_curve(_LUT_X[None, :, None], p["contrast"])[0, :, 0]
    return pre, post


class _RowUpsampler:
    """Bilinear upsampling (cv2.resize's half-pixel convention) of small maps, one strip at a time."""

    def __init__(self, small_hw: tuple[int, int], full_hw: tuple[int, int]) -> None:
        self.hs, self.ws = small_hw
        self.h, self.w = full_hw

    def rows(self, m: np.ndarray, y0: int, y1: int) -> np.ndarray:
        if (self.hs, self.ws) == (self.h, self.w):
            return m[y0:y1]
        ys = (np.arange(y0, y1, dtype=np.float64) + 0.5) * (self.hs / self.h) - 0.5
        ys = np.clip(ys, 0, self.hs - 1)
        i0 = np.floor(ys).astype(np.int64)
        i1 = np.minimum(i0 + 1, self.hs - 1)
        f = (ys - i0).astype(np.float32)[:, None]
        r = m[i0] * (1 - f) + m[i1] * f
        return np.asarray(cv2.resize(r, (self.w, y1 - y0), interpolation=cv2.INTER_LINEAR), np.float32)


def _lum(strip: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.transform(strip, _LUMA.reshape(1, 3)), np.float32).reshape(strip.shape[:2])


def apply_params(rgb: Image, params: Mapping[str, Any], strength: float = 1.0) -> Image:
    """Run the operator chain on a float32 RGB image (H, W, 3) in 0..1; returns a new array.

    ``strength`` moves every parameter linearly from neutral (0 = the input unchanged) to
    the given values (1). Unknown keys are ignored, missing ones are neutral.

    The spatial stages are planned on the working copy (coefficient maps of the guided
    filters); the full-resolution pixels are then processed in strips of ``STRIP_ROWS`` rows,
    with the per-channel stages as lookup tables. On images no larger than ``WORK_SIDE`` this
    computes :func:`apply_reference` (up to the tables' 1/65535 steps).
    """
    img = np.asarray(rgb, np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {img.shape}")
    p = scale_params(params, strength)
    if strength <= 0.0:
        return np.clip(img, 0.0, 1.0)
    h, w = img.shape[:2]
    small = np.clip(work_copy(img), 0.0, 1.0)
    short = min(small.shape[:2])
    r_gf = _radius(short, GF_RADIUS)
    up = _RowUpsampler(small.shape[:2], (h, w))
    pre, post = _channel_luts(p, params_version(params))

    # plan on the working copy: the same stages, so the maps see what the full image will be
    haze = None
    air = np.ones((1, 1, 3), np.float32)
    if p["dehaze"] > 0.0:
        air = np.asarray(_airlight(small, params), np.float32).reshape(1, 1, 3)
        dark = min_filter((small / air).min(axis=2), _radius(short, DARK_RADIUS))
        t = np.float32(1.0) - np.float32(p["dehaze"]) * dark
        haze = guided_coeffs(luminance(small), t, r_gf, GF_EPS)
        ts = np.clip(haze[0] * luminance(small) + haze[1], T_MIN, 1.0)[:, :, None]
        small = np.clip((small - air) / ts + air, 0.0, 1.0).astype(np.float32)
    if pre is not None:
        small = np.stack([pre[c][_lut_index(small[:, :, c])] for c in range(3)], axis=2)
    local = None
    gain_lut = None
    if not (p["shadows"] == 0.0 and p["highlights"] == 0.0):
        ys = luminance(small)
        local = guided_coeffs(ys, ys, r_gf, GF_EPS)
        b = np.maximum(_LUT_X, np.float32(1e-3))
        gain_lut = np.clip(base_curve(b, p["shadows"], p["highlights"]) / b, GAIN_MIN, GAIN_MAX).astype(np.float32)
    sat = not (p["saturation"] == 0.0 and p["vibrance"] == 0.0)

    pre_flat = None if pre is None else np.ascontiguousarray(pre.reshape(-1))
    offs = np.arange(3, dtype=np.int32) * _LUT_N
    out = np.empty_like(img)
    for y0 in range(0, h, STRIP_ROWS):
        y1 = min(h, y0 + STRIP_ROWS)
        x = np.clip(img[y0:y1], 0.0, 1.0)
        if haze is not None:
            t = np.clip(up.rows(haze[0], y0, y1) * _lum(x) + up.rows(haze[1], y0, y1), T_MIN, 1.0)
            x -= air
            x /= t[:, :, None]
            x += air
            np.clip(x, 0.0, 1.0, out=x)
        if pre_flat is not None:
            x = np.take(pre_flat, _lut_index(x) + offs)
        if local is not None and gain_lut is not None:
            base = up.rows(local[0], y0, y1) * _lum(x) + up.rows(local[1], y0, y1)
            np.clip(base, 0.0, 1.0, out=base)
            x *= np.take(gain_lut, _lut_index(base))[:, :, None]
            np.minimum(x, np.float32(1.0), out=x)
        if post is not None:
            x = np.take(post, _lut_index(x))
        if sat:
            yv = _lum(x)[:, :, None]
            r, g, b = x[:, :, 0], x[:, :, 1], x[:, :, 2]
            chroma = np.maximum(np.maximum(r, g), b)
            chroma -= np.minimum(np.minimum(r, g), b)
            k = np.float32(1 + p["saturation"]) * (np.float32(1.0) + np.float32(p["vibrance"]) * (1 - chroma))
            np.maximum(k, 0.0, out=k)
            x -= yv
            x *= k[:, :, None]
            x += yv
            np.clip(x, 0.0, 1.0, out=x)
        out[y0:y1] = x
    return out


# ----------------------------------------------------------------------------- the model


def default_model_path() -> Path:
    try:
        from engine.core.runtime import models_dir

        return Path(models_dir()) / "tone.onnx"
    except ImportError:  # runtime module not present yet
        return Path(__file__).resolve().parents[2] / "models" / "tone.onnx"


_lock = threading.Lock()
_sessions: dict[Path, Any] = {}


def _session(path: Path) -> Any:
    try:
        from engine.core.runtime import get_session

        return get_session(path)
    except ImportError:
        import onnxruntime as ort

        with _lock:
            s = _sessions.get(path)
            if s is None:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                _sessions[path] = s
            return s


def net_view(rgb: Image) -> np.ndarray:
    """The network's input: the whole frame squeezed to NET_SIDE^2, float32 [1, 3, S, S]."""
    img = np.clip(np.asarray(rgb, np.float32), 0.0, 1.0)
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) >= NET_SIDE else cv2.INTER_LINEAR
    v = cv2.resize(img, (NET_SIDE, NET_SIDE), interpolation=interp)
    return np.ascontiguousarray(v.transpose(2, 0, 1)[None], dtype=np.float32)


def gate_params(params: Mapping[str, Any], deadzone: Mapping[str, float]) -> dict[str, float]:
    """Leave out changes too small to need making (the "change only what needs changing" gate).

    For each parameter with a dead zone ``t > 0`` the predicted change ``d`` from neutral is
    multiplied by ``clip((|d| - t) / t, 0, 1)``: changes up to ``t`` are dropped, changes of
    ``2t`` or more are kept whole, and the ramp between is continuous (no jump when a photo
    crosses the threshold). The network's small corrections to photos without a tonal problem
    are what the dead zones remove; ``deadzone`` comes from the model's calibration file.
    """
    p = clean_params(params)
    for k in PARAM_NAMES:
        t = float(deadzone.get(k, 0.0))
        if t <= 0.0:
            continue
        d = p[k] - NEUTRAL[k]
        g = min(max((abs(d) - t) / t, 0.0), 1.0)
        p[k] = NEUTRAL[k] + d * g
    return p


@dataclass(frozen=True)
class Calibration:
    """What ``<model>.json`` says about one tone model file (``models/training/calibrate_tone.py``).

    ``deadzone``: per-parameter dead zones for :func:`gate_params`. ``q_margin``: the tone stage is
    kept only where the quality model Q rates the toned photo more than this above the photo
    (:func:`keep_by_quality`); None = no such check.
    """

    deadzone: dict[str, float] = field(default_factory=dict)
    q_margin: float | None = None


_calib_lock = threading.Lock()
_calibrations: dict[Path, Calibration] = {}


def calibration_for(model_path: Path) -> Calibration:
    """The calibration made for this model file (``<model>.json``).

    The file names the sha256 of the model it was made for; for any other file (a different
    or retrained network) nothing applies, with a warning, since its figures would be wrong.
    Missing file: nothing applies.
    """
    path = Path(model_path)
    with _calib_lock:
        hit = _calibrations.get(path)
        if hit is not None:
            return hit
        cal = Calibration()
        side = path.with_suffix(".json")
        if side.is_file():
            import hashlib
            import json

            try:
                raw = json.loads(side.read_text(encoding="utf-8"))
                sha = hashlib.sha256(path.read_bytes()).hexdigest()
                if raw.get("model_sha256") == sha:
                    dz = {k: float(v) for k, v in dict(raw.get("deadzone", {})).items() if k in NEUTRAL}
                    m = raw.get("q_margin")
                    cal = Calibration(dz, None if m is None else float(m))
                else:
                    log.warning("%s was calibrated for another model; tone changes are not gated", side.name)
            except (OSError, ValueError, TypeError, AttributeError) as e:
                log.warning("unreadable tone calibration %s (%s); tone changes are not gated", side, e)
        _calibrations[path] = cal
        return cal


def gate_for(model_path: Path) -> dict[str, float]:
    """The dead zones calibrated for this model file (:func:`calibration_for`)."""
    return calibration_for(model_path).deadzone


QUALITY_SIDE = 768  # long side of the copy the quality check renders and judges


def keep_by_quality(view: Image, params: Mapping[str, Any], margin: float,
                    quality: Callable[[np.ndarray], float]) -> tuple[bool, float, float]:
    """Whether the tone change is worth making, by the judge: ``quality`` (Q of an RGB uint8
    image) on ``view`` reduced to ``QUALITY_SIDE`` and on the same copy with ``params`` applied.
    Returns (keep, Q before, Q after); keep when Q gains more than ``margin``."""
    img: np.ndarray = np.clip(np.asarray(view, np.float32), 0.0, 1.0)
    h, w = img.shape[:2]
    if max(h, w) > QUALITY_SIDE:
        s = QUALITY_SIDE / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    before = (img * 255.0 + 0.5).astype(np.uint8)
    after = (np.clip(apply_params(img, params), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    qb, qa = float(quality(before)), float(quality(after))
    return qa - qb > margin, qb, qa


def quality_checked(view: Image, params: Mapping[str, Any], model_path: Path) -> dict[str, Any]:
    """``params`` if the judge Q says the change helps by the model's calibrated margin
    (``<model>.json``, ``q_margin``), otherwise neutral (the stage then changes nothing); what Q
    said is added as ``quality_check``. Without a margin or without Q installed, ``params`` as they
    are. Used by ``Pipeline.plan`` and by the training labels and evaluation, so all three agree."""
    margin = calibration_for(model_path).q_margin
    if margin is None:
        return dict(params)
    from engine.assess.quality import get_quality_model

    q = get_quality_model()
    if q is None:
        return dict(params)
    keep, qb, qa = keep_by_quality(view, params, margin, q)
    note = {"q_before": round(qb, 4), "q_after": round(qa, 4), "margin": margin, "kept": keep,
            "q_version": q.version}
    out = dict(params) if keep else neutral_like(params)
    return {**out, "quality_check": note}


def neutral_like(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every operator at its neutral value (the stage then changes nothing);
    other keys (``airlight``, ``version``, notes) kept."""
    return {**dict(params), **NEUTRAL}


def predict_params(rgb: Image, model_path: Path | None = None, gate: bool = True) -> dict[str, Any]:
    """Predict the operator parameters for a float32 RGB image (any size, 0..1).

    Returns a JSON-serialisable dict: every name of ``PARAM_NAMES``, the estimated
    ``airlight`` and ``version``. With ``gate`` (the default), changes below the model's
    calibrated dead zones are dropped (:func:`gate_params`); the stored parameters are the
    gated ones, so a recipe replays exactly what was shown.
    """
    path = Path(model_path) if model_path is not None else default_model_path()
    sess = _session(path)
    name = sess.get_inputs()[0].name
    out = np.asarray(sess.run(None, {name: net_view(rgb)})[0], np.float32).reshape(-1)
    if out.size != len(PARAM_NAMES):
        raise ValueError(f"{path.name}: expected {len(PARAM_NAMES)} outputs, got {out.size}")
    params: dict[str, Any] = {k: float(v) for k, v in zip(PARAM_NAMES, out, strict=True)}
    dz = gate_for(path) if gate else {}
    params = dict(gate_params(params, dz)) if dz else dict(clean_params(params))
    params["airlight"] = estimate_airlight(rgb)
    params["version"] = PARAMS_VERSION
    return params


def enhance(rgb: Image, strength: float = 1.0, model_path: Path | None = None) -> tuple[Image, dict[str, Any]]:
    """Predict and apply in one call; returns the image and the parameters used."""
    params = predict_params(rgb, model_path)
    return apply_params(rgb, params, strength), params
