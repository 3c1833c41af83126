"""Pairs whose order is known, for training and evaluating the quality model Q.

From a clean photo ``u`` (float32 HxWx3, 0..1, at native or downscaled resolution) this module
makes versions that are worse than ``u`` for a known reason: every degradation of
``engine.assess.degrade`` and every way an enhancer goes wrong (``FAILURES``). The order "clean beats
version" is the evidence; nothing else about the version is assumed.

Photos that are dark, bright or foggy *by intent* are clean: ``intent_kind`` recognises them from
their statistics (a dark photo that still reaches bright highlights is low-key, not
underexposed), and ``correct_intent`` makes the "corrected" version a naive auto-fix would give
(auto exposure to mid-grey, darkening a high-key photo, stretching and dehazing a foggy one),
which the original must beat. ``grade_intent`` makes low- and high-key grades of a clean photo
(a tone curve that keeps the black and white points), which are clean too.

Families, for reporting (``FAMILY``): degradation, smoothing (texture loss), oversharpening,
banding, clipping, crushed shadows, oversaturation, local tone mapping, colour shift, contrast,
dehaze.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from engine.assess import degrade as dg
from engine.enhance import tone

Img = np.ndarray
Rng = np.random.Generator


def _u8(x: Img) -> np.ndarray:
    return dg.to_uint8(x)


def _f(x: np.ndarray) -> Img:
    return np.asarray(x, np.float32) / 255.0


def _luma(x: Img) -> np.ndarray:
    return dg.luminance(x)


# ----------------------------------------------------------------------------- failures


def smooth_bilateral(u: Img, rng: Rng, mild: bool = False) -> Img:
    sc = float(rng.uniform(0.04, 0.08) if mild else rng.uniform(0.08, 0.2))
    ss = float(rng.uniform(2, 4) if mild else rng.uniform(3, 8))
    out = u
    for _ in range(1 if mild else int(rng.integers(1, 3))):
        out = cv2.bilateralFilter(out, 9, sc, ss)
    return np.asarray(out, np.float32)


def smooth_nlmeans(u: Img, rng: Rng, mild: bool = False) -> Img:
    h = float(rng.uniform(4, 7) if mild else rng.uniform(7, 16))
    return _f(cv2.fastNlMeansDenoisingColored(_u8(u), None, h, h, 5, 15))


def smooth_edge_preserving(u: Img, rng: Rng, mild: bool = False) -> Img:
    ss = float(rng.uniform(10, 30) if mild else rng.uniform(30, 80))
    sr = float(rng.uniform(0.08, 0.15) if mild else rng.uniform(0.15, 0.45))
    return _f(cv2.edgePreservingFilter(_u8(u)[:, :, ::-1].copy(), flags=1, sigma_s=ss, sigma_r=sr)[:, :, ::-1])


def smooth_median(u: Img, rng: Rng, mild: bool = False) -> Img:
    k = 3 if mild else int(rng.choice([3, 5]))
    return _f(cv2.medianBlur(_u8(u), k))


def smooth_gaussian(u: Img, rng: Rng, mild: bool = False) -> Img:
    s = float(rng.uniform(0.5, 0.9) if mild else rng.uniform(0.9, 2.0))
    return np.asarray(cv2.GaussianBlur(u, (0, 0), s), np.float32)


def oversharpen(u: Img, rng: Rng, mild: bool = False) -> Img:
    r = float(rng.uniform(0.8, 3.0))
    amount = float(rng.uniform(0.8, 1.5) if mild else rng.uniform(1.5, 4.0))
    b = cv2.GaussianBlur(u, (0, 0), r)
    return np.clip(u + amount * (u - b), 0, 1).astype(np.float32)


def posterize(u: Img, rng: Rng, mild: bool = False) -> Img:
    levels = int(rng.integers(24, 48) if mild else rng.integers(6, 24))
    return (np.round(u * (levels - 1)) / (levels - 1)).astype(np.float32)


def banding(u: Img, rng: Rng, mild: bool = False) -> Img:
    """Smooth gradients cut into steps: a denoiser's flat areas requantised (sky banding)."""
    s = cv2.bilateralFilter(u, 9, 0.1, 6)
    levels = int(rng.integers(32, 64) if mild else rng.integers(12, 32))
    return (np.round(s * (levels - 1)) / (levels - 1)).astype(np.float32)


def highlight_clip(u: Img, rng: Rng, mild: bool = False) -> Img:
    stops = float(rng.uniform(0.4, 0.8) if mild else rng.uniform(0.8, 2.0))
    return dg.linear_to_srgb(np.clip(dg.srgb_to_linear(u) * 2.0**stops, 0, 1))


def crush_shadows(u: Img, rng: Rng, mild: bool = False) -> Img:
    black = float(rng.uniform(0.05, 0.1) if mild else rng.uniform(0.1, 0.3))
    return np.clip((u - black) / (1 - black), 0, 1).astype(np.float32)


def oversaturate(u: Img, rng: Rng, mild: bool = False) -> Img:
    s = float(rng.uniform(0.35, 0.6) if mild else rng.uniform(0.6, 1.5))
    return np.clip(tone.saturation_vibrance(u, s, float(rng.uniform(0, 0.5))), 0, 1).astype(np.float32)


def overdone_local_tone(u: Img, rng: Rng, mild: bool = False) -> Img:
    kind = int(rng.integers(0, 2))
    if kind == 0:
        a = float(rng.uniform(0.6, 0.9) if mild else rng.uniform(0.9, 1.5))
        p = dict(tone.NEUTRAL, shadows=a, highlights=float(rng.uniform(0.5, 1.5)))
        return np.clip(tone.apply_params(u, p), 0, 1).astype(np.float32)
    lab = cv2.cvtColor(u, cv2.COLOR_RGB2LAB)
    L = np.clip(lab[:, :, 0] * 2.55, 0, 255).astype(np.uint8)
    clip = float(rng.uniform(2.5, 4) if mild else rng.uniform(4, 12))
    cl = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(L)
    lab[:, :, 0] = cl.astype(np.float32) / 2.55
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0, 1).astype(np.float32)


def colour_shift(u: Img, rng: Rng, mild: bool = False) -> Img:
    t = float(rng.uniform(0.12, 0.2) if mild else rng.uniform(0.2, 0.5)) * float(rng.choice([-1, 1]))
    g = float(rng.uniform(-0.15, 0.15))
    return np.clip(tone.white_balance_exposure(u, t, g, 0.0), 0, 1).astype(np.float32)


def overdone_contrast(u: Img, rng: Rng, mild: bool = False) -> Img:
    c = float(rng.uniform(0.45, 0.6) if mild else rng.uniform(0.6, 0.9))
    return np.clip(tone.contrast_curve(u, c), 0, 1).astype(np.float32)


def overdone_dehaze(u: Img, rng: Rng, mild: bool = False) -> Img:
    a = float(rng.uniform(0.6, 0.75) if mild else rng.uniform(0.75, 0.95))
    p = dict(tone.NEUTRAL, dehaze=a, airlight=tone.estimate_airlight(u))
    return np.clip(tone.apply_params(u, p), 0, 1).astype(np.float32)


def _deg_blur(u: Img, rng: Rng, mild: bool = False) -> Img:
    return np.clip(dg.apply_blur(u, rng, strength=float(rng.uniform(0.05, 0.2) if mild else rng.uniform(0.2, 1)))[0],
                   0, 1).astype(np.float32)


def _deg_noise(u: Img, rng: Rng, mild: bool = False) -> Img:
    s = float(rng.uniform(0.06, 0.16) if mild else rng.uniform(0.16, 1.0))
    return np.clip(dg.apply_noise(u, rng, strength=s)[0], 0, 1).astype(np.float32)


def _deg_jpeg(u: Img, rng: Rng, mild: bool = False) -> Img:
    q = int(rng.integers(45, 70) if mild else rng.integers(8, 45))
    return np.clip(dg.apply_jpeg(u, rng, quality=q)[0], 0, 1).astype(np.float32)


def _deg_blind(u: Img, rng: Rng, mild: bool = False) -> Img:
    return dg.degrade(u, rng, dg.DegradeConfig(p_clean=0.0, p_saturation=0.1)).image


def _deg_tone(u: Img, rng: Rng, mild: bool = False) -> Img:
    kind = str(rng.choice(["underexposure", "overexposure", "low_contrast", "haze", "color_cast", "desaturate"]))
    s = float(rng.uniform(0.35, 0.6) if mild else rng.uniform(0.6, 1.0))
    return dg.apply_tone(u, rng, kind, s)[0]


def _deg_tone_blind(u: Img, rng: Rng, mild: bool = False) -> Img:
    t = dg.tone_degrade(u, rng).image
    return dg.degrade(t, rng, dg.DegradeConfig(p_clean=0.0)).image


FAILURES: dict[str, Callable[..., Img]] = {
    "blur": _deg_blur,
    "noise": _deg_noise,
    "jpeg": _deg_jpeg,
    "blind": _deg_blind,
    "tone": _deg_tone,
    "tone_blind": _deg_tone_blind,
    "smooth_bilateral": smooth_bilateral,
    "smooth_nlmeans": smooth_nlmeans,
    "smooth_edge_preserving": smooth_edge_preserving,
    "smooth_median": smooth_median,
    "smooth_gaussian": smooth_gaussian,
    "oversharpen": oversharpen,
    "posterize": posterize,
    "banding": banding,
    "highlight_clip": highlight_clip,
    "crush_shadows": crush_shadows,
    "oversaturate": oversaturate,
    "overdone_local_tone": overdone_local_tone,
    "colour_shift": colour_shift,
    "overdone_contrast": overdone_contrast,
    "overdone_dehaze": overdone_dehaze,
}

FAMILY: dict[str, str] = {
    "blur": "degradation", "noise": "degradation", "jpeg": "degradation", "blind": "degradation",
    "tone": "degradation", "tone_blind": "degradation",
    "smooth_bilateral": "smoothing", "smooth_nlmeans": "smoothing", "smooth_edge_preserving": "smoothing",
    "smooth_median": "smoothing", "smooth_gaussian": "smoothing", "restorer_overdone": "smoothing",
    "oversharpen": "oversharpening", "posterize": "banding", "banding": "banding",
    "highlight_clip": "clipping", "crush_shadows": "crushed_shadows", "oversaturate": "oversaturation",
    "overdone_local_tone": "local_tone_mapping", "colour_shift": "colour_shift",
    "overdone_contrast": "contrast", "overdone_dehaze": "dehaze",
}


def restorer_overdone(u: Img, rng: Rng, restorer: Callable[[Img], Img], mild: bool = False) -> Img:
    """Our own restorer pushed too far: run on the photo with added noise (it smooths what it
    takes for noise, texture included), with a strength above 1 on half of the cases."""
    sigma = float(rng.uniform(6, 12) if mild else rng.uniform(12, 30)) / 255.0
    noisy = np.clip(u + rng.normal(0, sigma, u.shape).astype(np.float32), 0, 1)
    r = restorer(noisy)
    if rng.random() < 0.5:
        s = float(rng.uniform(1.0, 1.6))
        r = np.clip(noisy + s * (r - noisy), 0, 1)
    return r.astype(np.float32)


# ----------------------------------------------------------------------------- intent


def intent_kind(u: Img) -> str | None:
    """'dark', 'bright' or 'foggy' when a clean photo is so by its look (by intent), else None."""
    y = _luma(u)
    m = float(y.mean())
    p1, p99 = (float(v) for v in np.percentile(y, [1, 99]))
    if m < 0.3 and p99 > 0.65:
        return "dark"
    if m > 0.62 and p1 < 0.45:
        return "bright"
    small = cv2.resize(u, (64, 64), interpolation=cv2.INTER_AREA)
    dark_channel = float(small.min(axis=2).mean())
    if dark_channel > 0.35 and float(y.std()) < 0.16 and m > 0.4:
        return "foggy"
    return None


def grade_intent(u: Img, rng: Rng, kind: str) -> Img:
    """A low-key ('dark') or high-key ('bright') grade of a clean photo: a curve on luminance that
    keeps the black and white points (so highlights still reach white, shadows black)."""
    y = _luma(u)[..., None]
    g = float(rng.uniform(1.7, 2.6)) if kind == "dark" else float(rng.uniform(0.4, 0.6))
    y2 = np.power(np.clip(y, 0, 1), g)
    gain = y2 / np.maximum(y, 1e-4)
    return np.clip(u * gain, 0, 1).astype(np.float32)


def correct_intent(u: Img, rng: Rng, kind: str) -> Img:
    """What a naive auto-correction does to an intentionally dark, bright or foggy photo."""
    y = _luma(u)
    if kind == "dark":
        target = float(rng.uniform(0.42, 0.5))
        lin = dg.srgb_to_linear(u)
        gain = dg.srgb_to_linear(np.float32(target)) / max(float(dg.srgb_to_linear(y).mean()), 1e-4)
        return dg.linear_to_srgb(np.clip(lin * gain, 0, 1))
    if kind == "bright":
        g = float(np.log(rng.uniform(0.42, 0.5)) / np.log(max(float(y.mean()), 1e-3)))
        return np.power(np.clip(u, 0, 1), g).astype(np.float32)
    lo, hi = np.percentile(y, [0.5, 99.5])
    st = np.clip((u - lo) / max(hi - lo, 0.05), 0, 1).astype(np.float32)
    p = dict(tone.NEUTRAL, dehaze=float(rng.uniform(0.8, 0.95)), saturation=float(rng.uniform(0.3, 0.8)),
             airlight=tone.estimate_airlight(u))
    return np.clip(tone.apply_params(st, p), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- views


def texture_score(u: Img) -> float:
    """Mean gradient magnitude of luminance at this scale (fine texture -> high)."""
    y = _luma(u)
    gx = np.abs(np.diff(y, axis=1)).mean()
    gy = np.abs(np.diff(y, axis=0)).mean()
    return float(gx + gy)


def random_view(img_u8: np.ndarray, rng: Rng, hr: bool, long_side: tuple[int, int] = (320, 768)) -> Img:
    """A clean view: high-resolution photos downscaled 2.5-6x (the cleanest fine texture there is)
    then cropped; others cropped at native scale or mildly downscaled."""
    h, w, _ = img_u8.shape
    if hr:
        f = float(rng.uniform(2.5, 6.0))
        img_u8 = cv2.resize(img_u8, (max(64, round(w / f)), max(64, round(h / f))), interpolation=cv2.INTER_AREA)
        h, w, _ = img_u8.shape
    side = int(rng.integers(long_side[0], long_side[1] + 1))
    cw = min(w, side)
    ch = min(h, int(side * rng.uniform(0.6, 1.0)))
    ch, cw = max(ch, min(h, 64)), max(cw, min(w, 64))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    c = img_u8[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        c = c[:, ::-1]
    return dg.to_float(np.ascontiguousarray(c))


# ----------------------------------------------------------------------------- successful and invisible edits
# (evidence of Q version 4: a judge fitted only on "clean beats every way an edit goes wrong" learns
# that our restorer's signature is bad even where the restorer helped; version 3 scored every
# deblocked copy below its JPEG, at q50 too where it was 0.5 dB closer to the clean photo, and moved by
# up to 4 points for an invisible change. models/quality.md)

MIN_RESTORE_GAIN_DB = 0.3  # a restoration at least this much closer to the clean photo beats its input
TIE_MAX_DB = 0.15  # an edit that moves PSNR against the clean photo by less than this is a tie
TIE_MIN_PSNR_DB = 50.0  # ... as is one that changes the photo by less than this (under ~0.8 of a level RMS)
RESTORE_DEGRADATIONS = ("jpeg", "noise", "jpeg_noise")


def _psnr(a: Img, b: Img) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 99.0 if mse <= 1e-12 else 10.0 * float(np.log10(1.0 / mse))


def restoration_pair(u: Img, rng: Rng, restorer: Callable[[Img], Img]) -> tuple[str, Img, Img, float]:
    """``(kind, restored, degraded, gain_db)``: a degraded copy of ``u`` (JPEG quality 15-65, Gaussian
    noise sigma 4-20, or noise then JPEG, quantised to 8 bits as a file is) and our restorer's output on
    it (``restorer``: levels measured, as the app runs it). ``gain_db`` is PSNR(restored, u) -
    PSNR(degraded, u); the caller keeps "restored beats degraded" when it is at least
    ``MIN_RESTORE_GAIN_DB``."""
    kind = str(rng.choice(RESTORE_DEGRADATIONS))
    v = u
    if kind in ("noise", "jpeg_noise"):
        sigma = float(rng.uniform(4, 20)) / 255.0
        v = np.clip(v + rng.normal(0, sigma, v.shape).astype(np.float32), 0, 1)
    if kind in ("jpeg", "jpeg_noise"):
        v = dg.jpeg(v, int(rng.integers(15, 66)), subsampling=bool(rng.random() < 0.8))
    v = dg.to_float(dg.to_uint8(v))
    r = dg.to_float(dg.to_uint8(restorer(v)))
    return f"restored_{kind}", r, v, _psnr(r, u) - _psnr(v, u)


def invisible_pair(u: Img, rng: Rng, deblock: Callable[[Img], Img] | None) -> tuple[str, Img, Img, float, bool]:
    """``(kind, a, b, dpsnr_db, tie)``: two versions of ``u`` no one can tell apart. ``tie`` when the
    edit moves PSNR against ``u`` by at most ``TIE_MAX_DB`` or changes the photo by less than
    ``TIE_MIN_PSNR_DB`` (PSNR of ``b`` against ``a``; at such fidelity a PSNR difference against ``u``
    means nothing). ``tie_deblock``: a good JPEG (quality 76-95) against our restorer's
    deblocking of it (``deblock``: the restorer told the JPEG level, no dead zone; what version 2 did
    to every phone photo before ``levels.JPEG_ZONE``); ``tie_requant``: the photo against itself
    with sub-level noise (sigma 0.3-0.6 of a level) re-quantised."""
    if deblock is not None and rng.random() < 0.7:
        a = dg.jpeg(u, int(rng.integers(76, 96)), subsampling=bool(rng.random() < 0.8))
        b = dg.to_float(dg.to_uint8(deblock(a)))
        kind = "tie_deblock"
    else:
        a = dg.to_float(dg.to_uint8(u))
        b = dg.to_float(dg.to_uint8(u + rng.normal(0, float(rng.uniform(0.3, 0.6)) / 255.0, u.shape).astype(np.float32)))
        kind = "tie_requant"
    d = _psnr(b, u) - _psnr(a, u)
    return kind, a, b, d, bool(abs(d) <= TIE_MAX_DB or _psnr(a, b) >= TIE_MIN_PSNR_DB)


FAMILY.update({f"restored_{k}": "restoration" for k in RESTORE_DEGRADATIONS})


# ----------------------------------------------------------------------------- version 5: tone

MIN_TONE_GAIN_DB = 1.0  # a tone correction at least this much closer to the clean photo beats its input
TONE_ON_CLEAN_MAX_DB = 38.0  # the tone stage changing a clean view more than this is an unwanted edit
TONE_KINDS = ("underexposure", "overexposure", "low_contrast", "haze", "color_cast", "desaturate")


def tone_correction_pair(u: Img, rng: Rng, correct: Callable[[Img], Img]) -> tuple[str, Img, Img, float]:
    """``(kind, corrected, degraded, gain_db)``: a tonal degradation of ``u`` (one of ``TONE_KINDS``
    at strength 0.35-1, as the labels' degradation model makes them, quantised to 8 bits) and our tone
    stage's correction of it (``correct``: the shipped tone network with its dead zones, as the app
    runs it). ``gain_db`` is PSNR(corrected, u) - PSNR(degraded, u); the caller keeps "corrected beats
    degraded" when it is at least ``MIN_TONE_GAIN_DB``, and grades the pair's margin by it (a fix that
    brings the photo 4 dB closer to the clean photo should gain more than one that brings it 1 dB)."""
    kind = str(rng.choice(TONE_KINDS))
    v = dg.to_float(dg.to_uint8(dg.apply_tone(u, rng, kind, float(rng.uniform(0.35, 1.0)))[0]))
    r = dg.to_float(dg.to_uint8(correct(v)))
    return f"tone_fix_{kind}", r, v, _psnr(r, u) - _psnr(v, u)


def tone_on_clean(u: Img, correct: Callable[[Img], Img]) -> tuple[Img, float]:
    """``(edited, psnr_db)``: our tone stage applied to a clean view, and how much it changed it
    (PSNR against the view). Below ``TONE_ON_CLEAN_MAX_DB`` the clean view beats the edit: the stage
    changed what needed no change."""
    a = dg.to_float(dg.to_uint8(u))
    r = dg.to_float(dg.to_uint8(correct(a)))
    return r, _psnr(r, a)


FAMILY.update({f"tone_fix_{k}": "tone_fix" for k in TONE_KINDS})
FAMILY["tone_on_clean"] = "tone_on_clean"
# Version 5b: an edit that overdoes tone or colour costs what a tonal degradation of the same size
# costs (graded margins for both sides, not only for the degradations)
OVERDONE_FAMILIES = frozenset({"clipping", "crushed_shadows", "oversaturation", "local_tone_mapping", "colour_shift",
                               "contrast", "dehaze", "oversharpening", "tone_on_clean"})
