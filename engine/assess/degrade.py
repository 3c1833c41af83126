"""The degradation model ``v = C(S(u * k) + n)`` and the tonal degradations.

Shared by every training pipeline (restorer, quality model, assessor, tone model) and by the
tests. Images are float32 RGB arrays ``(H, W, 3)`` in 0..1. Every call is seeded through a
``numpy.random.Generator`` and reports what it applied and how strongly, so that labels
(severities) come from the same place as the pixels.

Stages:

* **k, blur**: isotropic and anisotropic Gaussian, defocus disk, motion trajectory.
* **S, sensor saturation**: an exposure gain followed by clipping at 1.
* **n, noise**: Gaussian, signal-dependent Poisson-Gaussian, chroma (low-frequency colour)
  noise, spatially correlated noise as after demosaicing and in-camera denoising.
* **C, compression**: JPEG at quality 10 to 95.

A random subset of stages is applied; with some probability blur and noise swap places
(noise that was blurred by in-camera processing). Compression is always last, as in a camera.

Also provided: the shallow depth-of-field case (part of the frame blurred, *not* a defect)
and tonal degradations (under/over exposure, low contrast, haze, colour cast, washed-out
colour) used by the tone model and the assessor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

# The order of the assessor's severity outputs. Fixed here, documented in the model card.
SEVERITY_NAMES: tuple[str, ...] = (
    "motion_blur",
    "defocus_blur",
    "noise",
    "compression",
    "clipped_highlights",
    "underexposure",
    "overexposure",
    "low_contrast",
    "haze",
    "color_cast",
)

Image = np.ndarray


@dataclass
class Applied:
    """One applied stage: its kind, a 0..1 strength on a scale shared across kinds, params."""

    kind: str
    strength: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DegradeResult:
    image: Image
    applied: list[Applied]
    # The clean image to restore towards when it is not the input photo itself: the camera
    # pipeline's noiseless rendering (demosaicked, colour-corrected, sharpened as the camera
    # would), or the clean photo resized as a messaging app resized the degraded one.
    target: Image | None = None

    @property
    def severity(self) -> dict[str, float]:
        """Severity per name in ``SEVERITY_NAMES`` (max over the stages that feed it)."""
        sev = {n: 0.0 for n in SEVERITY_NAMES}
        for a in self.applied:
            key = _SEVERITY_OF.get(a.kind)
            if key is not None:
                sev[key] = max(sev[key], float(a.strength))
        return sev

    def severity_vector(self) -> np.ndarray:
        s = self.severity
        return np.array([s[n] for n in SEVERITY_NAMES], dtype=np.float32)


_SEVERITY_OF = {
    "motion_blur": "motion_blur",
    "gaussian_blur": "defocus_blur",
    "aniso_blur": "defocus_blur",
    "defocus_blur": "defocus_blur",
    "gaussian_noise": "noise",
    "poisson_gaussian_noise": "noise",
    "chroma_noise": "noise",
    "correlated_noise": "noise",
    "jpeg": "compression",
    "camera_noise": "noise",
    "recompress": "compression",
    "saturation_clip": "clipped_highlights",
    "underexposure": "underexposure",
    "overexposure": "overexposure",
    "low_contrast": "low_contrast",
    "haze": "haze",
    "color_cast": "color_cast",
    "desaturate": "low_contrast",
}

# ---------------------------------------------------------------------------- kernels


def gaussian_kernel(sigma_x: float, sigma_y: float | None = None, theta: float = 0.0,
                    size: int | None = None) -> np.ndarray:
    """Normalised (an)isotropic Gaussian kernel, rotated by ``theta`` radians."""
    sy = sigma_x if sigma_y is None else sigma_y
    if size is None:
        size = int(2 * math.ceil(3 * max(sigma_x, sy)) + 1)
    size = max(3, size | 1)
    r = size // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    c, s = math.cos(theta), math.sin(theta)
    xr = c * xx + s * yy
    yr = -s * xx + c * yy
    k = np.exp(-0.5 * ((xr / max(sigma_x, 1e-3)) ** 2 + (yr / max(sy, 1e-3)) ** 2))
    return (k / k.sum()).astype(np.float32)


def disk_kernel(radius: float) -> np.ndarray:
    """Defocus disk (pillbox) with anti-aliased edge."""
    r = max(radius, 0.5)
    size = int(2 * math.ceil(r) + 3)
    c = size // 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - c
    # 4x supersampled coverage for a soft edge
    sub = np.zeros((size, size))
    for dy in (-0.375, -0.125, 0.125, 0.375):
        for dx in (-0.375, -0.125, 0.125, 0.375):
            sub += ((xx + dx) ** 2 + (yy + dy) ** 2) <= r * r
    k = sub / sub.sum()
    return k.astype(np.float32)


def motion_kernel(rng: np.random.Generator, length: float, size: int | None = None) -> np.ndarray:
    """A camera-shake trajectory: a smooth random walk of ``length`` pixels, rasterised."""
    length = max(length, 1.0)
    if size is None:
        size = int(2 * math.ceil(length / 2 + 2) + 1)
    n = max(8, int(length * 4))
    angle = rng.uniform(0, 2 * math.pi)
    curvature = rng.normal(0, 0.6 / max(length, 1.0), n).cumsum()
    step = length / n
    xs = np.cumsum(np.cos(angle + curvature) * step)
    ys = np.cumsum(np.sin(angle + curvature) * step)
    xs -= (xs.max() + xs.min()) / 2
    ys -= (ys.max() + ys.min()) / 2
    k = np.zeros((size, size), np.float64)
    c = size // 2
    for x, y in zip(xs, ys, strict=True):
        # bilinear splat
        fx, fy = x + c, y + c
        x0, y0 = int(math.floor(fx)), int(math.floor(fy))
        ax, ay = fx - x0, fy - y0
        for xi, yi, w in ((x0, y0, (1 - ax) * (1 - ay)), (x0 + 1, y0, ax * (1 - ay)),
                          (x0, y0 + 1, (1 - ax) * ay), (x0 + 1, y0 + 1, ax * ay)):
            if 0 <= xi < size and 0 <= yi < size:
                k[yi, xi] += w
    k /= k.sum()
    return k.astype(np.float32)


def convolve(img: Image, kernel: np.ndarray) -> Image:
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


# ---------------------------------------------------------------------------- stages


def apply_blur(img: Image, rng: np.random.Generator, kind: str | None = None,
               strength: float | None = None) -> tuple[Image, Applied]:
    """Blur with a random kernel. ``strength`` in 0..1 maps to the kernel's spread."""
    kind = kind or str(rng.choice(["gaussian_blur", "aniso_blur", "defocus_blur", "motion_blur"],
                                  p=[0.25, 0.2, 0.25, 0.3]))
    s = float(rng.uniform(0.1, 1.0) if strength is None else strength)
    if kind == "gaussian_blur":
        sigma = 0.6 + 2.4 * s
        k = gaussian_kernel(sigma)
        params: dict[str, Any] = {"sigma": sigma}
    elif kind == "aniso_blur":
        sx = 0.6 + 2.8 * s
        sy = sx * rng.uniform(0.3, 0.9)
        theta = rng.uniform(0, math.pi)
        k = gaussian_kernel(sx, sy, theta)
        params = {"sigma_x": sx, "sigma_y": sy, "theta": theta}
    elif kind == "defocus_blur":
        radius = 0.8 + 4.2 * s
        k = disk_kernel(radius)
        params = {"radius": radius}
    elif kind == "motion_blur":
        length = 2.0 + 14.0 * s
        k = motion_kernel(rng, length)
        params = {"length": length}
    else:
        raise ValueError(f"unknown blur kind {kind!r}")
    return convolve(img, k), Applied(kind, s, params)


def apply_noise(img: Image, rng: np.random.Generator, kind: str | None = None,
                strength: float | None = None) -> tuple[Image, Applied]:
    """Add noise. ``strength`` 1 is about sigma 50/255 for Gaussian noise."""
    kind = kind or str(rng.choice(
        ["gaussian_noise", "poisson_gaussian_noise", "chroma_noise", "correlated_noise"],
        p=[0.35, 0.3, 0.15, 0.2]))
    s = float(rng.uniform(0.05, 1.0) if strength is None else strength)
    h, w, _ = img.shape
    if kind == "gaussian_noise":
        sigma = 50.0 / 255.0 * s
        if rng.random() < 0.3:  # grey (luma) noise
            n = np.repeat(rng.normal(0, sigma, (h, w, 1)), 3, axis=2)
        else:
            n = rng.normal(0, sigma, img.shape)
        out = img + n.astype(np.float32)
        params: dict[str, Any] = {"sigma": sigma * 255}
    elif kind == "poisson_gaussian_noise":
        # shot noise variance a*x plus read noise b^2; s=1 ~ sigma 50/255 at mid-grey
        a = (0.02 * s) ** 1.0 * 0.5
        b = 0.02 * s
        var = a * np.clip(img, 0, 1) + b * b
        out = img + (rng.standard_normal(img.shape) * np.sqrt(var)).astype(np.float32)
        params = {"a": a, "b": b}
    elif kind == "chroma_noise":
        sigma = 40.0 / 255.0 * s
        scale = int(rng.integers(2, 5))
        small = rng.normal(0, sigma, (h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        n = np.asarray(cv2.resize(small, (w + 2 * scale, h + 2 * scale), interpolation=cv2.INTER_CUBIC), np.float32)
        n = n[scale : scale + h, scale : scale + w]
        n -= n.mean(axis=2, keepdims=True) * 0.8  # mostly colour, little luma
        lum = rng.normal(0, sigma * 0.3, (h, w, 1)).astype(np.float32)
        out = img + n + lum
        params = {"sigma": sigma * 255, "scale": scale}
    elif kind == "correlated_noise":
        sigma = 50.0 / 255.0 * s
        n = rng.normal(0, 1, img.shape).astype(np.float32)
        blur = float(rng.uniform(0.5, 1.2))
        n = np.asarray(cv2.GaussianBlur(n, (0, 0), blur), np.float32)
        n *= sigma / max(float(n.std()), 1e-6)
        out = img + n
        params = {"sigma": sigma * 255, "corr": blur}
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return out.astype(np.float32), Applied(kind, s, params)


def apply_saturation(img: Image, rng: np.random.Generator,
                     strength: float | None = None) -> tuple[Image, Applied]:
    """Sensor saturation S: exposure gain then hard clip. Reported as clipped highlights."""
    s = float(rng.uniform(0.1, 1.0) if strength is None else strength)
    gain = 1.0 + 1.2 * s
    out = np.clip(img * gain, 0.0, 1.0)
    clipped = float((out >= 0.999).any(axis=2).mean())
    # the defect is the share of the frame that lost detail, not the gain
    sev = float(min(1.0, clipped * 3.0))
    return out, Applied("saturation_clip", sev, {"gain": gain, "clipped_fraction": clipped})


def jpeg(img: Image, quality: int, subsampling: bool = True) -> Image:
    u8 = to_uint8(img)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if not subsampling:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", u8[:, :, ::-1], params)
    if not ok:
        raise RuntimeError("JPEG encode failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if dec is None:
        raise RuntimeError("JPEG decode failed")
    return np.asarray(dec[:, :, ::-1], np.float32) / 255.0


def apply_jpeg(img: Image, rng: np.random.Generator,
               quality: int | None = None) -> tuple[Image, Applied]:
    q = int(rng.integers(10, 96) if quality is None else quality)
    # severity: q95 ~ 0, q10 ~ 1 (perceptually the drop is steep below ~40)
    sev = float(np.clip((95 - q) / 85.0, 0, 1) ** 0.7)
    return jpeg(img, q, subsampling=bool(rng.random() < 0.8)), Applied("jpeg", sev, {"quality": q})


def to_uint8(img: Image) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_float(img: np.ndarray) -> Image:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return img.astype(np.float32)


# ---------------------------------------------------------------------------- the model


@dataclass
class DegradeConfig:
    """Probabilities of each stage of ``v = C(S(u * k) + n)``."""

    p_blur: float = 0.45
    p_saturation: float = 0.1
    p_noise: float = 0.55
    p_jpeg: float = 0.5
    p_swap_blur_noise: float = 0.15
    p_clean: float = 0.12  # nothing at all: teaches "leave clean photos alone"


def degrade(u: Image, rng: np.random.Generator, cfg: DegradeConfig | None = None) -> DegradeResult:
    """Blind degradation: a random subset of the stages, reproducible from ``rng``."""
    cfg = cfg or DegradeConfig()
    img = to_float(u)
    applied: list[Applied] = []
    if rng.random() < cfg.p_clean:
        return DegradeResult(img.copy(), applied)
    stages: list[str] = []
    if rng.random() < cfg.p_blur:
        stages.append("blur")
    if rng.random() < cfg.p_saturation:
        stages.append("saturation")
    if rng.random() < cfg.p_noise:
        stages.append("noise")
    if not stages and rng.random() < 0.7:
        stages.append(str(rng.choice(["blur", "noise"])))
    if "blur" in stages and "noise" in stages and rng.random() < cfg.p_swap_blur_noise:
        bi, ni = stages.index("blur"), stages.index("noise")
        stages[bi], stages[ni] = stages[ni], stages[bi]
    for st in stages:
        if st == "blur":
            img, a = apply_blur(img, rng)
        elif st == "saturation":
            img, a = apply_saturation(img, rng)
        else:
            img, a = apply_noise(img, rng)
        applied.append(a)
    if rng.random() < cfg.p_jpeg or not applied:
        img, a = apply_jpeg(img, rng)
        applied.append(a)
    return DegradeResult(np.clip(img, 0.0, 1.0).astype(np.float32), applied)


def shallow_dof(u: Image, rng: np.random.Generator) -> DegradeResult:
    """Blur the background of the frame behind a smooth subject mask.

    Shallow depth of field is a choice, not a defect: the result reports a ``shallow_dof``
    stage with no severity, and the assessor must learn not to recommend it.
    """
    img = to_float(u)
    h, w, _ = img.shape
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    mask = np.clip(d - 1.0, 0.0, 1.0)[:, :, None]  # 0 on the subject, 1 in the background
    radius = float(rng.uniform(3.0, 8.0))
    background = convolve(img, disk_kernel(radius))
    out = img * (1 - mask) + background * mask
    return DegradeResult(out.astype(np.float32), [Applied("shallow_dof", 0.0, {"radius": radius})])


# ---------------------------------------------------------------------------- realistic


# Camera colour matrices (camera RGB -> linear sRGB, rows sum to 1), in the range published for
# consumer sensors: the off-diagonal terms are negative because camera primaries overlap.
def _random_ccm(rng: np.random.Generator) -> np.ndarray:
    off = rng.uniform(0.1, 0.45, (3, 3)) * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    m = -off * rng.dirichlet([2, 2, 2], 3) * 2
    np.fill_diagonal(m, 0.0)
    m[np.diag_indices(3)] = 1.0 - m.sum(axis=1)
    return m.astype(np.float32)


def camera_pipeline(u: Image, rng: np.random.Generator, strength: float | None = None,
                    blur: bool | None = None, quality: int | None = None) -> DegradeResult:
    """A photo as a small-sensor camera makes it, from the clean photo ``u`` taken as the scene.

    sRGB -> linear light (inverse gamma) -> camera RGB (inverse colour matrix, inverse white
    balance) -> optionally blurred by shake or defocus -> Bayer mosaic -> signal-dependent noise
    (shot noise ``a * x`` plus read noise ``b**2``, by ISO) -> demosaicking (edge-aware) -> white
    balance, colour matrix, gamma -> in-camera sharpening -> JPEG 4:2:0 at a camera quality.
    ``target`` is the same rendering without the noise and the compression (what the camera would
    have made of the scene with no noise), so a restorer learns to remove noise and blocking, not
    the camera's look. ``strength`` 0..1 maps to the ISO (log-uniform shot-noise gain).
    """
    img = to_float(u)
    h, w, _ = img.shape
    h2, w2 = h - h % 2, w - w % 2
    img = img[:h2, :w2]
    s = float(rng.uniform(0.0, 1.0) if strength is None else strength)
    a = 10.0 ** (-5.0 + 3.0 * s)  # shot-noise gain in raw units (base ISO .. ~12800)
    b = math.sqrt(a) * float(rng.uniform(0.05, 0.3)) + float(rng.uniform(0.0, 0.001))
    ccm = _random_ccm(rng)
    wb = np.array([rng.uniform(1.6, 2.6), 1.0, rng.uniform(1.3, 2.2)], np.float32)
    lin = srgb_to_linear(img)
    inv_ccm = np.asarray(np.linalg.inv(ccm).T, np.float32)
    cam = np.asarray(np.clip(lin @ inv_ccm, 0, 1) / wb, np.float32)
    applied: list[Applied] = []
    if blur if blur is not None else rng.random() < 0.25:
        kind = str(rng.choice(["motion_blur", "defocus_blur", "gaussian_blur"], p=[0.5, 0.3, 0.2]))
        cam, ab = apply_blur(cam, rng, kind, float(rng.uniform(0.05, 0.5)))
        applied.append(ab)
    mosaic = np.empty((h2, w2), np.float32)  # RGGB
    mosaic[0::2, 0::2] = cam[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = cam[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = cam[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = cam[1::2, 1::2, 2]
    var = np.asarray(a * np.clip(mosaic, 0, 1) + b * b, np.float32)
    noisy = mosaic + rng.standard_normal(size=mosaic.shape, dtype=np.float32) * np.sqrt(var)
    sharpen = float(rng.uniform(0.0, 0.8))
    radius = float(rng.uniform(0.6, 1.4))
    # in-camera noise reduction (on the noisy rendering only: it smooths detail with the noise)
    nr = float(rng.uniform(0.0, 0.3 + 0.7 * s)) if rng.random() < 0.5 else 0.0  # more at high ISO

    def develop(raw: np.ndarray, denoise: float = 0.0) -> Image:
        r16 = (np.clip(raw, 0, 1) * 65535.0 + 0.5).astype(np.uint16)
        # OpenCV names Bayer patterns by the second row's first two pixels: RGGB is "BayerBG".
        rgb = cv2.cvtColor(r16, cv2.COLOR_BayerBG2RGB_EA).astype(np.float32) / 65535.0
        out = linear_to_srgb(np.clip((rgb * wb) @ ccm.T, 0, 1))
        if denoise > 0:
            sm = cv2.bilateralFilter(out, 5, 0.02 + 0.08 * denoise, 2.0)
            out = out + denoise * (sm - out)
        if sharpen > 0:
            soft = cv2.GaussianBlur(out, (0, 0), radius)
            out = np.clip(out + sharpen * (out - soft), 0, 1)
        return out.astype(np.float32)

    target = develop(mosaic)
    out = develop(noisy, nr)
    applied.append(Applied("camera_noise", float(min(1.0, s * 1.2)),
                           {"a": a, "b": b, "sharpen": sharpen, "radius": radius, "nr": nr}))
    q = int(rng.integers(70, 98) if quality is None else quality)
    out = jpeg(out, q, subsampling=True)
    applied.append(Applied("jpeg", float(np.clip((95 - q) / 85.0, 0, 1) ** 0.7), {"quality": q}))
    return DegradeResult(out, applied, target)


def recompress(img: Image, rng: np.random.Generator, target: Image,
               scale: float | None = None) -> DegradeResult:
    """What a messaging app or a web page does to a photo: downscale, then JPEG once or twice.

    ``target`` (the clean version of ``img``) is resized the same way and returned as the
    result's target.
    """
    h, w, _ = img.shape
    sc = float(rng.uniform(0.5, 1.0) if scale is None else scale)
    if sc < 0.98:
        size = (max(8, int(round(w * sc))), max(8, int(round(h * sc))))
        img = np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA), np.float32)
        target = np.asarray(cv2.resize(target, size, interpolation=cv2.INTER_AREA), np.float32)
    qs = [int(rng.integers(60, 90))]
    if rng.random() < 0.6:
        qs.append(int(rng.integers(30, 85)))
    for q in qs:
        img = jpeg(img, q, subsampling=True)
    sev = float(np.clip((95 - min(qs)) / 85.0, 0, 1) ** 0.7)
    return DegradeResult(img, [Applied("recompress", sev, {"scale": sc, "qualities": qs})], target)


@dataclass
class RealisticConfig:
    """The restorer's training mix: camera photos, web and messaging copies, and the synthetic
    stages of :func:`degrade`, in realistic combinations (see :func:`degrade_realistic`)."""

    p_clean: float = 0.3
    p_camera: float = 0.22
    p_web: float = 0.08  # one JPEG at any quality, sometimes after mild blur
    p_messaging: float = 0.05  # resize + one or two JPEGs, sometimes of a camera photo
    # the rest: the synthetic mix of :func:`degrade` (blur, noise kinds, JPEG)


REALISTIC_BRANCHES = ("clean", "camera", "web", "messaging", "synthetic")


def realistic_branch(rng: np.random.Generator, cfg: RealisticConfig | None = None) -> str:
    """Which kind of pair :func:`degrade_realistic` makes next (drawn by the caller when it
    needs to know first: a messaging copy is smaller than its source)."""
    cfg = cfg or RealisticConfig()
    p = [cfg.p_clean, cfg.p_camera, cfg.p_web, cfg.p_messaging]
    p.append(max(0.0, 1.0 - sum(p)))
    return str(rng.choice(REALISTIC_BRANCHES, p=np.array(p) / sum(p)))


def degrade_realistic(u: Image, rng: np.random.Generator, cfg: RealisticConfig | None = None,
                      branch: str | None = None) -> DegradeResult:
    """One training pair for the restorer: ``image`` and ``target`` (the input photo where None).

    Mixes the camera pipeline, single JPEGs of web photos, messaging-app recompression (of a
    camera photo or of the clean one) and :func:`degrade`'s synthetic stages, so that real noise
    and blocking are learned beside the synthetic kinds the assessor and the labels use.
    """
    cfg = cfg or RealisticConfig()
    img = to_float(u)
    branch = branch or realistic_branch(rng, cfg)
    if branch == "clean":
        return DegradeResult(img.copy(), [])
    if branch == "camera":
        return camera_pipeline(img, rng)
    if branch == "web":
        applied: list[Applied] = []
        v = img
        if rng.random() < 0.3:
            v, ab = apply_blur(v, rng, str(rng.choice(["gaussian_blur", "motion_blur", "defocus_blur"])),
                               float(rng.uniform(0.05, 0.5)))
            applied.append(ab)
        v, aj = apply_jpeg(v, rng)
        applied.append(aj)
        return DegradeResult(np.clip(v, 0, 1).astype(np.float32), applied)
    if branch == "messaging":
        if rng.random() < 0.5:
            cam = camera_pipeline(img, rng)
            assert cam.target is not None
            m = recompress(cam.image, rng, cam.target)
            return DegradeResult(m.image, cam.applied + m.applied, m.target)
        return recompress(img, rng, img)
    return degrade(img, rng, DegradeConfig(p_saturation=0.0, p_clean=0.0))


# ---------------------------------------------------------------------------- tone


def luminance(img: Image) -> np.ndarray:
    return (0.2126 * img[..., 0] + 0.7152 * img[..., 1] + 0.0722 * img[..., 2]).astype(np.float32)


def srgb_to_linear(x: Image) -> Image:
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: Image) -> Image:
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def apply_tone(img: Image, rng: np.random.Generator, kind: str | None = None,
               strength: float | None = None) -> tuple[Image, Applied]:
    """One tonal degradation, in linear light where physics says so."""
    kind = kind or str(rng.choice(["underexposure", "overexposure", "low_contrast", "haze",
                                   "color_cast", "desaturate"]))
    s = float(rng.uniform(0.15, 1.0) if strength is None else strength)
    img = to_float(img)
    if kind == "underexposure":
        stops = 0.5 + 2.5 * s
        out = linear_to_srgb(srgb_to_linear(img) * 2.0 ** (-stops))
        params: dict[str, Any] = {"stops": -stops}
    elif kind == "overexposure":
        stops = 0.4 + 1.6 * s
        out = linear_to_srgb(srgb_to_linear(img) * 2.0 ** stops)
        params = {"stops": stops}
    elif kind == "low_contrast":
        amount = 0.2 + 0.55 * s
        mean = float(luminance(img).mean())
        out = img * (1 - amount) + mean * amount
        params = {"amount": amount}
    elif kind == "haze":
        t = 1.0 - (0.2 + 0.55 * s)
        airlight = np.array(rng.uniform(0.75, 0.95, 3), np.float32)
        airlight = airlight * 0.3 + airlight.mean() * 0.7
        h = img.shape[0]
        # thicker towards the top of the frame, as with distance in a landscape
        grad = np.linspace(1.0, 0.6, h, dtype=np.float32)[:, None, None] if rng.random() < 0.5 else 1.0
        tt = 1.0 - (1.0 - t) * grad
        out = img * tt + airlight * (1 - tt)
        params = {"transmission": t, "airlight": airlight.tolist()}
    elif kind == "color_cast":
        temp = rng.uniform(-1, 1)
        tint = rng.uniform(-0.5, 0.5)
        mag = 0.08 + 0.32 * s
        gains = np.array([1 + mag * temp, 1 + mag * tint * 0.5, 1 - mag * temp], np.float32)
        gains /= gains.mean()
        out = linear_to_srgb(srgb_to_linear(img) * gains)
        params = {"gains": gains.tolist()}
    elif kind == "desaturate":
        amount = 0.25 + 0.6 * s
        y = luminance(img)[..., None]
        out = img * (1 - amount) + y * amount
        params = {"amount": amount}
    else:
        raise ValueError(f"unknown tone kind {kind!r}")
    return np.clip(out, 0, 1).astype(np.float32), Applied(kind, s, params)


def tone_degrade(u: Image, rng: np.random.Generator, max_stages: int = 2) -> DegradeResult:
    """A random subset of one or more tonal degradations."""
    img = to_float(u)
    applied: list[Applied] = []
    n = int(rng.integers(1, max_stages + 1))
    kinds = list(rng.permutation(["underexposure", "overexposure", "low_contrast", "haze",
                                  "color_cast", "desaturate"]))
    for kind in kinds:
        if len(applied) >= n:
            break
        if kind == "overexposure" and any(a.kind == "underexposure" for a in applied):
            continue
        if kind == "underexposure" and any(a.kind == "overexposure" for a in applied):
            continue
        img, a = apply_tone(img, rng, str(kind))
        applied.append(a)
    return DegradeResult(img, applied)
