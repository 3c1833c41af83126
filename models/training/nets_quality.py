"""Quality model Q, version 2 (torch): fixed perceptual features plus a small learned head.

``QualityNetV2()(x: float [N,3,H,W] in 0..1) -> [N] in 1..10``, fully convolutional, any H, W >= 64,
the same call signature as version 1 (the tone model uses it as a differentiable loss term).

Why fixed features: the human-opinion evidence is 585 rated photos (CLIVE, train part), far too
few to learn a perception of quality from pixels on a CPU budget; the known-order pairs are
plentiful but synthetic. Natural-scene statistics are what no-reference quality measures that
generalise are built on (BRISQUE, NIQE, FRIQUEE), so the network computes a few hundred of them,
differentiably and at four scales, and learns only how to weigh them (``head``). Every feature is
a pooled statistic, so the score is defined for any image size.

The features (``quality_features``), per pyramid level (area halving, levels 0-3):

* MSCN coefficients (local mean-subtracted, contrast-normalised luminance, 7x7 Gaussian, as in
  BRISQUE): variance, a generalised-Gaussian shape proxy E|m| / sqrt(E m^2), log kurtosis and
  skew; paired products with the four neighbours (H, V, both diagonals): mean, left and right
  spread (asymmetric generalised Gaussian), shape proxy. Noise makes these Gaussian; blur makes
  them peaky; texture keeps natural heavy tails.
* local contrast (sigma map of the MSCN step), pooled over 8x8 blocks: mean, spread, soft
  maximum and soft minimum of its logarithm (a photo with any sharp region, shallow focus
  included, has a high soft maximum; the soft minimum is the noise floor of its flattest region);
* a contrast-invariant sharpness index |Laplacian| / local sigma: mean, spread, soft maximum;
* noise in flat regions: the high-pass residual weighted by flatness, for luminance and the two
  opponent chroma channels, and the correlation of the residual between colour channels (natural
  texture is correlated across channels, sensor and chroma noise much less);
* structure-tensor coherence weighted by energy (grass, fabric and hair are oriented, noise is not);
* the share of exactly flat neighbours (posterisation and banding leave runs of equal values).

The sharpest regions and the centre (levels 0-2, blocks of 4 and 16 px): soft maxima of the
sharpness index and of local contrast, their means over the middle half of the frame, the soft
minimum of local contrast; band (difference-of-Gaussian) energies at five levels and their
ratios (the fall-off of detail with scale); HSV saturation mean and spread.

Global, once: the JPEG 8x8 grid strength (rows and columns); luminance mean, spread, a soft
10-bin histogram, shares of crushed shadows and clipped highlights (any channel), the soft 1%
and 99% levels and their range; colourfulness, mean and spread of chroma, share of extreme
chroma, mean opponent colours (cast); dark channel and coarse contrast (haze); global vs local
contrast (overdone local tone mapping).

The head: features are standardised by constants fixed from the training set (buffers), then
a two-layer MLP (``hidden`` units, leaky ReLU) gives ``z``; the output is ``1 + 9 * sigmoid(z)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

LEVELS = 4
_EPS = 1e-6


def _gauss1d(sigma: float, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


_G7 = _gauss1d(7.0 / 6.0, 3)


def _blur(y: torch.Tensor, k: torch.Tensor = _G7) -> torch.Tensor:
    """Separable Gaussian of a [N,C,H,W] map, reflect padding (size kept)."""
    r = (k.numel() - 1) // 2
    c = int(y.shape[1])  # a constant in the exported graph (1 or 3 channels, never dynamic)
    kx = k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous()
    ky = k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous()
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), kx, groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), ky, groups=c)


def _lme(v: torch.Tensor, t: float) -> torch.Tensor:
    flat = v.reshape(v.shape[0], -1)
    # log-mean-exp; the count is taken from the tensor so the ONNX graph keeps it dynamic
    cnt = torch.ones_like(flat).sum(dim=1)
    return (torch.logsumexp(t * flat, dim=1) - torch.log(cnt)) / t


def _mean(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1).mean(dim=1)


def _mscn_stats(y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """BRISQUE-like statistics of one luminance level [N,1,H,W]; also returns the sigma map."""
    mu = _blur(y)
    var = (_blur(y * y) - mu * mu).clamp_min(0.0)
    sig = (var + _EPS).sqrt()
    m = (y - mu) / (sig + 1.0 / 255.0)
    out: list[torch.Tensor] = []
    m2 = _mean(m * m) + _EPS
    out.append(torch.log(m2))
    out.append(_mean(m.abs()) / m2.sqrt())
    out.append(torch.log(_mean(m**4) / (m2 * m2) + _EPS))
    out.append(_mean(m**3) / m2.pow(1.5))
    shifts = (m[..., :, 1:] * m[..., :, :-1], m[..., 1:, :] * m[..., :-1, :],
              m[..., 1:, 1:] * m[..., :-1, :-1], m[..., 1:, :-1] * m[..., :-1, 1:])
    for p in shifts:
        neg = (p < 0).to(p.dtype)
        pos = 1.0 - neg
        left = ((p * p * neg).reshape(p.shape[0], -1).sum(1) / (neg.reshape(p.shape[0], -1).sum(1) + 1.0)
                + _EPS).sqrt()
        right = ((p * p * pos).reshape(p.shape[0], -1).sum(1) / (pos.reshape(p.shape[0], -1).sum(1) + 1.0)
                 + _EPS).sqrt()
        p2 = _mean(p * p) + _EPS
        out += [_mean(p), torch.log(left + _EPS), torch.log(right + _EPS), _mean(p.abs()) / p2.sqrt()]
    return out, sig


def _level_stats(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    out, sig = _mscn_stats(y)
    # local contrast, pooled over 8x8 blocks (a level is at least 8 px: inputs are >= 64)
    k = 8
    ls = torch.log(F.avg_pool2d(sig, k) + 1e-3)
    out += [_mean(ls), (_mean(ls * ls) - _mean(ls) ** 2).clamp_min(0).add(_EPS).sqrt(),
            _lme(ls, 4.0), -_lme(-ls, 4.0)]
    # contrast-invariant sharpness: |Laplacian| / (local sigma + c)
    yp = F.pad(y, (1, 1, 1, 1), mode="replicate")
    lap = (4 * y - yp[..., :-2, 1:-1] - yp[..., 2:, 1:-1] - yp[..., 1:-1, :-2] - yp[..., 1:-1, 2:]).abs()
    si = F.avg_pool2d(lap, k) / (F.avg_pool2d(sig, k) + 0.01)
    lsi = torch.log(si + 1e-3)
    out += [_mean(lsi), (_mean(lsi * lsi) - _mean(lsi) ** 2).clamp_min(0).add(_EPS).sqrt(), _lme(lsi, 4.0)]
    # flat-region noise: high-pass residual of luminance and chroma, weighted by flatness
    flat_w = torch.exp(-_blur(sig) / 0.02)
    wsum = flat_w.reshape(flat_w.shape[0], -1).sum(1) + 1.0
    rg = x[:, 0:1] - x[:, 1:2]
    yb = 0.5 * (x[:, 0:1] + x[:, 1:2]) - x[:, 2:3]
    for ch in (y, rg, yb):
        hp = (ch - _blur(ch)).abs()
        out.append(torch.log((hp * flat_w).reshape(hp.shape[0], -1).sum(1) / wsum + 1e-4))
        out.append(torch.log(_mean(hp) + 1e-4))
    # cross-channel correlation of the high-pass residual (texture: correlated; noise: not)
    hpc = x - _blur(x)
    r, g, b = hpc[:, 0:1], hpc[:, 1:2], hpc[:, 2:3]
    rr, gg, bb = _mean(r * r) + 1e-8, _mean(g * g) + 1e-8, _mean(b * b) + 1e-8
    out += [_mean(r * g) / (rr * gg).sqrt(), _mean(g * b) / (gg * bb).sqrt()]
    # structure-tensor coherence weighted by energy
    gx = yp[..., 1:-1, 2:] - yp[..., 1:-1, :-2]
    gy = yp[..., 2:, 1:-1] - yp[..., :-2, 1:-1]
    jxx, jyy, jxy = _blur(gx * gx), _blur(gy * gy), _blur(gx * gy)
    tr = jxx + jyy
    coh = ((jxx - jyy) ** 2 + 4 * jxy * jxy + 1e-10).sqrt() / (tr + 1e-6)
    out.append((coh * tr).reshape(coh.shape[0], -1).sum(1) / (tr.reshape(tr.shape[0], -1).sum(1) + 1e-6))
    out.append(torch.log(_mean(tr) + 1e-6))
    # share of exactly flat neighbours (posterisation, banding), only where the level is not flat
    dx = (y[..., :, 1:] - y[..., :, :-1]).abs()
    out.append(_mean(torch.sigmoid((0.25 / 255.0 - dx) * 4000.0)))
    return out


def _blockiness(y: torch.Tensor) -> list[torch.Tensor]:
    """Strongest 8-pixel periodicity of the column and row differences (JPEG grid, any alignment)."""
    out = []
    for d in ((y[..., :, 1:] - y[..., :, :-1]).abs().mean(dim=(1, 2)),
              (y[..., 1:, :] - y[..., :-1, :]).abs().mean(dim=(1, 3))):
        # mean difference at each of the 8 offsets (strided slices keep the graph size-independent)
        per = torch.stack([d[:, j::8].mean(dim=1) for j in range(8)], dim=1)
        out.append(torch.log((per.amax(dim=1) + 1e-4) / (per.mean(dim=1) + 1e-4)))
    return out


def _global_stats(x: torch.Tensor, y: torch.Tensor, pyr: list[torch.Tensor]) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    out += _blockiness(y)
    ym = _mean(y)
    ys = (_mean(y * y) - ym * ym).clamp_min(0).add(_EPS).sqrt()
    out += [ym, ys]
    centres = torch.linspace(0.05, 0.95, 10)
    for c in centres:
        out.append(_mean(torch.exp(-0.5 * ((y - float(c)) / 0.06) ** 2)))
    out.append(_mean(torch.sigmoid((0.02 - y) * 300.0)))  # crushed shadows
    out.append(_mean(torch.sigmoid((y - 0.98) * 300.0)))  # clipped highlights (luminance)
    xmax = x.amax(dim=1, keepdim=True)
    xmin = x.amin(dim=1, keepdim=True)
    out.append(_mean(torch.sigmoid((xmax - 0.985) * 300.0)))  # any channel clipped
    out.append(_mean(torch.sigmoid((0.015 - xmin) * 300.0)))  # any channel at zero
    hi = _lme(y, 40.0)
    lo = -_lme(-y, 40.0)
    out += [hi, lo, hi - lo]
    rg = x[:, 0] - x[:, 1]
    yb = 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
    sr = (_mean(rg * rg) - _mean(rg) ** 2).clamp_min(0).add(_EPS).sqrt()
    sy = (_mean(yb * yb) - _mean(yb) ** 2).clamp_min(0).add(_EPS).sqrt()
    out.append((sr * sr + sy * sy).sqrt() + 0.3 * (_mean(rg) ** 2 + _mean(yb) ** 2 + _EPS).sqrt())
    chroma = (xmax - xmin)[:, 0]
    cm = _mean(chroma)
    out += [cm, (_mean(chroma * chroma) - cm * cm).clamp_min(0).add(_EPS).sqrt(),
            _mean(torch.sigmoid((chroma - 0.75) * 40.0)), _mean(rg), _mean(yb)]
    # haze: dark channel at level 2; coarse contrast at level 3; global vs local contrast
    x2 = pyr[2]
    dch = -F.max_pool2d(-x2.amin(dim=1, keepdim=True), 5, stride=2, padding=2)
    out.append(_mean(dch))
    y3 = pyr[3]
    y3m = _mean(y3)
    coarse = (_mean(y3 * y3) - y3m * y3m).clamp_min(0).add(_EPS).sqrt()
    out.append(torch.log(coarse + 1e-3))
    y2 = 0.2126 * x2[:, 0:1] + 0.7152 * x2[:, 1:2] + 0.0722 * x2[:, 2:3]
    loc = (_blur(y2 * y2, _gauss1d(4.0, 8)) - _blur(y2, _gauss1d(4.0, 8)) ** 2).clamp_min(0).add(_EPS).sqrt()
    out.append(torch.log(_mean(loc) + 1e-3) - torch.log(coarse + 1e-3))
    return out


def _luma(x: torch.Tensor) -> torch.Tensor:
    return 0.2126 * x[:, 0:1] + 0.7152 * x[:, 1:2] + 0.0722 * x[:, 2:3]


def _centre(m: torch.Tensor) -> torch.Tensor:
    """The middle half of a map in each direction (where the subject usually is)."""
    h, w = m.shape[-2], m.shape[-1]
    return m[..., h // 4 : h - h // 4, w // 4 : w - w // 4]


def _sharpness_stats(x: torch.Tensor, ys: list[torch.Tensor]) -> list[torch.Tensor]:
    """The sharpest regions, the centre, and band energies (people judge a photo by its subject:
    shallow focus behind a sharp subject is fine, a soft subject is not)."""
    out: list[torch.Tensor] = []
    bands = []
    for y in ys:
        bands.append(torch.log(_mean((y - _blur(y)) ** 2) + 1e-8))
    out += bands
    out += [bands[i] - bands[i + 1] for i in range(len(bands) - 1)]
    for y in ys[:3]:
        mu = _blur(y)
        sig = ((_blur(y * y) - mu * mu).clamp_min(0) + _EPS).sqrt()
        yp = F.pad(y, (1, 1, 1, 1), mode="replicate")
        lap = (4 * y - yp[..., :-2, 1:-1] - yp[..., 2:, 1:-1] - yp[..., 1:-1, :-2] - yp[..., 1:-1, 2:]).abs()
        for k in (4, 16):
            si = torch.log(F.avg_pool2d(lap, k) / (F.avg_pool2d(sig, k) + 0.01) + 1e-3)
            out += [_lme(si, 8.0), _lme(si, 16.0), _lme(_centre(si), 4.0), _mean(_centre(si))]
            ls = torch.log(F.avg_pool2d(sig, k) + 1e-3)
            out += [_lme(ls, 8.0), -_lme(-ls, 8.0), _mean(_centre(ls))]
    mx = x.amax(dim=1)
    mn = x.amin(dim=1)
    sat = (mx - mn) / (mx + 1e-3)
    sm = _mean(sat)
    out += [sm, (_mean(sat * sat) - sm * sm).clamp_min(0).add(_EPS).sqrt(), _mean(_centre(_luma(x))), _mean(mx)]
    return out


def quality_features(x: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] RGB 0..1 (H, W >= 64) -> [N, N_FEATURES] (see the module docstring)."""
    x = x.clamp(0.0, 1.0)
    pyr = [x]
    for _ in range(LEVELS - 1):
        pyr.append(F.avg_pool2d(pyr[-1], 2))
    feats: list[torch.Tensor] = []
    for xi in pyr:
        feats += _level_stats(xi, _luma(xi))
    feats += _global_stats(x, _luma(x), pyr)
    feats += _sharpness_stats(x, [_luma(p) for p in pyr] + [_luma(F.avg_pool2d(pyr[-1], 2))])
    return torch.stack(feats, dim=1)


N_FEATURES = int(quality_features(torch.rand(1, 3, 64, 64)).shape[1])


class QualityNetV2(nn.Module):
    """Fixed features, standardised, then a small MLP; output ``1 + 9 * sigmoid(z)``."""

    def __init__(self, hidden: int = 64, n_features: int = N_FEATURES) -> None:
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.hidden = hidden
        self.fc1 = nn.Linear(n_features, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        self.lin = nn.Linear(n_features, 1)
        self.drop = nn.Dropout(0.2)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        """Features [N, F] -> logit z [N]."""
        z = ((f - self.feat_mean) / self.feat_std).clamp(-8.0, 8.0)
        h = F.leaky_relu(self.fc1(self.drop(z)), 0.1)
        return self.fc2(self.drop(h)).squeeze(1) + self.lin(z).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + 9.0 * torch.sigmoid(self.head(quality_features(x)))


def load_quality_v2(path: str | Path, device: str = "cpu") -> QualityNetV2:
    ck = torch.load(path, map_location=device, weights_only=False)
    net = QualityNetV2(**ck.get("config", {}))
    net.load_state_dict(ck["model"])
    net.eval()
    return net
