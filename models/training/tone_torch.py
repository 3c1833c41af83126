"""Differentiable torch twins of the tone operators in ``engine/enhance/tone.py``, and the parameter net.

Images are ``[B, 3, H, W]`` float tensors in 0..1; parameters are ``[B]`` tensors keyed by
``engine.enhance.tone.PARAM_NAMES`` (plus ``airlight`` ``[B, 3]``). The twins skip the working-copy
resize of the engine (training images are already smaller than ``WORK_SIDE``), so on such
images the two implementations compute the same function; ``tests/test_tone_twins.py`` checks it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from engine.enhance import tone as T

_LUMA = (0.2126, 0.7152, 0.0722)

Params = dict[str, torch.Tensor]


def luminance(x: torch.Tensor) -> torch.Tensor:
    return _LUMA[0] * x[:, 0:1] + _LUMA[1] * x[:, 1:2] + _LUMA[2] * x[:, 2:3]


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    hi = ((x + 0.055) / 1.055).clamp_min(1e-8) ** 2.4
    return torch.where(x <= 0.04045, x / 12.92, hi)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    hi = 1.055 * x.clamp_min(1e-6) ** (1 / 2.4) - 0.055
    return torch.where(x <= 0.0031308, x * 12.92, hi)


def _radius(h: int, w: int, frac: float) -> int:
    return T._radius(min(h, w), frac)


def _box1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    # running sums: O(1) per pixel whatever the radius (avg_pool2d with a big kernel is slow on CPU)
    c = torch.cumsum(x, dim=dim)
    n = x.shape[dim]
    zero = torch.zeros_like(c.narrow(dim, 0, 1))
    c = torch.cat([zero, c], dim=dim)
    k = 2 * r + 1
    return (c.narrow(dim, k, n - k + 1) - c.narrow(dim, 0, n - k + 1)) / k


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window with mirrored borders (cv2 BORDER_REFLECT_101)."""
    x = F.pad(x, (r, r, r, r), mode="reflect")
    return _box1d(_box1d(x, r, 2), r, 3)


def guided_coeffs(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    mi, mp = box(guide, r), box(src, r)
    cov = box(guide * src, r) - mi * mp
    var = box(guide * guide, r) - mi * mi
    a = cov / (var + eps)
    b = mp - a * mi
    return box(a, r), box(b, r)


def min_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Square min filter, mirrored borders; separable, as running minima of shifted slices."""
    h, w = x.shape[-2:]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    rows = y[..., 0:h, :]
    for i in range(1, 2 * r + 1):
        rows = torch.minimum(rows, y[..., i : i + h, :])
    out = rows[..., 0:w]
    for i in range(1, 2 * r + 1):
        out = torch.minimum(out, rows[..., i : i + w])
    return out


def _b(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


@torch.no_grad()
def estimate_airlight(x: torch.Tensor) -> torch.Tensor:
    """Twin of ``engine.enhance.tone.estimate_airlight`` for images below the working size: [B, 3]."""
    b, _, h, w = x.shape
    dark = min_filter(x.min(dim=1, keepdim=True).values, _radius(h, w, T.DARK_RADIUS)).view(b, -1)
    n = max(1, dark.shape[1] // 1000)
    idx = dark.topk(n, dim=1).indices  # [B, n]
    flat = x.reshape(b, 3, -1)
    a = torch.gather(flat, 2, idx[:, None, :].expand(b, 3, n)).mean(dim=2)
    return a.clamp(0.5, 1.0)


def dehaze(x: torch.Tensor, amount: torch.Tensor, airlight: torch.Tensor) -> torch.Tensor:
    _, _, h, w = x.shape
    a = airlight.view(-1, 3, 1, 1)
    dark = min_filter((x / a).min(dim=1, keepdim=True).values, _radius(h, w, T.DARK_RADIUS))
    t = 1.0 - _b(amount) * dark
    y = luminance(x)
    ca, cb = guided_coeffs(y, t, _radius(h, w, T.GF_RADIUS), T.GF_EPS)
    t = (ca * y + cb).clamp(T.T_MIN, 1.0)
    return ((x - a) / t + a).clamp(0.0, 1.0)


def white_balance_exposure(x: torch.Tensor, temperature: torch.Tensor, tint: torch.Tensor,
                           exposure: torch.Tensor) -> torch.Tensor:
    logg = torch.stack([temperature - tint / 3, 2 * tint / 3, -temperature - tint / 3], dim=1)
    g = torch.exp(logg + exposure[:, None] * math.log(2.0)).view(-1, 3, 1, 1)
    return linear_to_srgb(srgb_to_linear(x) * g)


def levels(x: torch.Tensor, black: torch.Tensor, white: torch.Tensor) -> torch.Tensor:
    white = torch.maximum(white, black + T.MIN_WIDTH)
    return ((x - _b(black)) / _b(white - black)).clamp(0.0, 1.0)


def protect_white(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return y + (x - y).clamp_min(0.0) * x ** T.WHITE_KNEE


def base_curve(b: torch.Tensor, shadows: torch.Tensor, highlights: torch.Tensor) -> torch.Tensor:
    t = b ** (2.0 ** -_b(shadows))
    return 1.0 - (1.0 - t).clamp_min(1e-6) ** (2.0 ** -_b(highlights))


def local_tone(x: torch.Tensor, shadows: torch.Tensor, highlights: torch.Tensor) -> torch.Tensor:
    _, _, h, w = x.shape
    y = luminance(x)
    ca, cb = guided_coeffs(y, y, _radius(h, w, T.GF_RADIUS), T.GF_EPS)
    base = (ca * y + cb).clamp(1e-3, 1.0)
    gain = (base_curve(base, shadows, highlights) / base).clamp(T.GAIN_MIN, T.GAIN_MAX)
    return (x * gain).clamp(0.0, 1.0)


def contrast_curve(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (x - _b(c) / (2 * math.pi) * torch.sin(2 * math.pi * x)).clamp(0.0, 1.0)


def saturation_vibrance(x: torch.Tensor, saturation: torch.Tensor, vibrance: torch.Tensor) -> torch.Tensor:
    y = luminance(x)
    chroma = x.max(dim=1, keepdim=True).values - x.min(dim=1, keepdim=True).values
    k = ((1 + _b(saturation)) * (1 + _b(vibrance) * (1 - chroma))).clamp_min(0.0)
    return (y + (x - y) * k).clamp(0.0, 1.0)


def apply_params(x: torch.Tensor, p: Params, version: int = T.PARAMS_VERSION) -> torch.Tensor:
    """The engine's chain on a batch. ``p`` holds [B] tensors (and ``airlight`` [B, 3]);
    ``version`` is the parameter version whose operators to mirror."""
    x = x.clamp(0.0, 1.0)
    air = p.get("airlight")
    if air is None:
        air = estimate_airlight(x)
    x = dehaze(x, p["dehaze"], air)
    pre_in = x
    x = white_balance_exposure(x, p["temperature"], p["tint"], p["exposure"])
    x = levels(x, p["black"], p["white"])
    if version >= 2:
        x = protect_white(pre_in, x)
    x = local_tone(x, p["shadows"], p["highlights"])
    x = contrast_curve(x, p["contrast"])
    return saturation_vibrance(x, p["saturation"], p["vibrance"])


# ----------------------------------------------------------------------------- the network


def image_stats(x: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """Global statistics tone depends on, [B, 3 + 3 + 2 + 2 + bins]: channel means and standard
    deviations, smooth luminance extremes, mean dark channel (haze) and chroma (saturation), and a
    soft luminance histogram. All ONNX-exportable."""
    cm = x.mean(dim=(2, 3))
    cs = (x.var(dim=(2, 3), unbiased=False) + 1e-6).sqrt()
    y = luminance(x).flatten(1)  # [B, HW]
    n = math.log(y.shape[1])
    hi = torch.logsumexp(y * 20.0, dim=1, keepdim=True) / 20.0 - n / 20.0
    lo = -torch.logsumexp(-y * 20.0, dim=1, keepdim=True) / 20.0 + n / 20.0
    mx = x.max(dim=1).values
    mn = x.min(dim=1).values
    dark = mn.mean(dim=(1, 2))[:, None]
    chroma = (mx - mn).mean(dim=(1, 2))[:, None]
    centres = (torch.arange(bins, dtype=x.dtype) + 0.5) / bins
    w = torch.exp(-0.5 * ((y[:, None, :] - centres[None, :, None]) * bins) ** 2)  # [B, bins, HW]
    hist = w.mean(dim=2)
    hist = hist / (hist.sum(dim=1, keepdim=True) + 1e-6)
    return torch.cat([cm, cs, lo, hi, dark, chroma, hist * 4.0], dim=1)


class ToneNet(nn.Module):
    """Downscaled view [B, 3, 128, 128] -> bounded operator parameters [B, len(PARAM_NAMES)].

    Four strided conv blocks with global mean and standard-deviation pooling, concatenated with
    hand statistics (``image_stats``: colour moments, luminance histogram, dark channel, chroma),
    a small MLP, and a sigmoid into each parameter's ``BOUNDS`` interval. The last layer starts
    with zero weights and a bias at the neutral value, so the untrained net changes nothing.
    """

    def __init__(self, width: int = 32, bins: int = 16) -> None:
        super().__init__()
        w = width
        self.bins = bins
        layers: list[nn.Module] = []
        chans = [3, w // 2, w, 2 * w, 2 * w]
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
                       nn.Conv2d(b, b, 3, padding=1), nn.LeakyReLU(0.1)]
        self.features = nn.Sequential(*layers)
        nstat = 3 + 3 + 2 + 2 + bins
        self.mlp = nn.Sequential(nn.Linear(4 * w + nstat, 96), nn.LeakyReLU(0.1), nn.Linear(96, 64),
                                 nn.LeakyReLU(0.1), nn.Linear(64, len(T.PARAM_NAMES)))
        lo = torch.tensor([T.BOUNDS[k][0] for k in T.PARAM_NAMES])
        hi = torch.tensor([T.BOUNDS[k][1] for k in T.PARAM_NAMES])
        neu = torch.tensor([T.NEUTRAL[k] for k in T.PARAM_NAMES])
        self.register_buffer("lo", lo)
        self.register_buffer("span", hi - lo)
        # sigmoid(bias) = neutral position inside the interval
        frac = ((neu - lo) / (hi - lo)).clamp(1e-3, 1 - 1e-3)
        last = self.mlp[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.log(frac / (1 - frac)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x * 2.0 - 1.0)
        mean = f.mean(dim=(2, 3))
        std = (f.var(dim=(2, 3), unbiased=False) + 1e-6).sqrt()
        z = torch.cat([mean, std, image_stats(x, self.bins)], dim=1)
        return self.lo + self.span * torch.sigmoid(self.mlp(z))


def to_params(v: torch.Tensor) -> Params:
    return {k: v[:, i] for i, k in enumerate(T.PARAM_NAMES)}


def neutral_params(n: int) -> Params:
    return {k: torch.full((n,), T.NEUTRAL[k]) for k in T.PARAM_NAMES}
