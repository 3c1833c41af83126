"""Quality model Q, version 3 (torch): version 2's statistics, colour and texture statistics added,
and an ensemble head.

``QualityNetV3()(x: float [N,3,H,W] in 0..1) -> [N] in 1..10``, the same contract as versions 1
and 2 (fully convolutional, any H, W >= 64, differentiable: the tone model uses it in its loss).

What version 2 missed, and the statistics added here for it (``extra_features``), at pyramid
levels 0-2 unless said otherwise:

* **colour natural-scene statistics** (FRIQUEE's finding: on authentically distorted photos
  much of what people see is in the colour channels): MSCN statistics of the two opponent
  chroma channels and of saturation (variance, shape, kurtosis);
* **log-derivative statistics** (DESIQUE): differences of log luminance between neighbours
  (horizontal, vertical, diagonal): energy, shape, kurtosis;
* **gradient magnitude and Laplacian of Gaussian, jointly normalised** (GM-LOG, Xue et al. 2014):
  soft histograms of both responses after adaptive normalisation, and their correlation,
  at levels 0-1;
* **chroma against luminance detail in textured blocks**: fine chroma noise on a busy texture
  is what version 2 missed most (a third of textured crops with mild chroma noise scored above
  their clean original). Natural texture lives mostly in luminance and its high-pass residual
  is correlated across the colour channels; chroma noise adds chroma detail that is not. Per
  8x8 block: the log ratio of chroma to luminance high-pass energy and the correlation of the
  residual between channels, pooled with texture weights (mean, soft maximum, soft minimum);
* **halos and ringing** (over-sharpening): the band-pass response in a ring just outside
  strong edges relative to the response on them, and the kurtosis of the band-pass response,
  at levels 0-1.

The head is an ensemble of ``members`` small heads of version 2's form (standardised features,
linear term plus a one-layer MLP), fitted from different seeds and averaged in logit space:
with 588 rated photos the variance of a single fit is a large part of its error.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from models.training.nets_quality import LEVELS, _blur, _gauss1d, _lme, _luma, _mean, quality_features

_EPS = 1e-6
_G3 = _gauss1d(3.0, 9)
_G1 = _gauss1d(1.0, 3)


def _std(v: torch.Tensor) -> torch.Tensor:
    m = _mean(v)
    return (_mean(v * v) - m * m).clamp_min(0).add(_EPS).sqrt()


def _nss3(m: torch.Tensor) -> list[torch.Tensor]:
    """Energy, shape (E|m| / sqrt(E m^2)) and log kurtosis of a zero-centred coefficient map."""
    m2 = _mean(m * m) + _EPS
    return [torch.log(m2), _mean(m.abs()) / m2.sqrt(), torch.log(_mean(m**4) / (m2 * m2) + _EPS)]


def _mscn(ch: torch.Tensor, c: float = 1.0 / 255.0) -> torch.Tensor:
    mu = _blur(ch)
    sig = ((_blur(ch * ch) - mu * mu).clamp_min(0.0) + _EPS).sqrt()
    return (ch - mu) / (sig + c)


def _colour_stats(x: torch.Tensor) -> list[torch.Tensor]:
    rg = x[:, 0:1] - x[:, 1:2]
    yb = 0.5 * (x[:, 0:1] + x[:, 1:2]) - x[:, 2:3]
    mx = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    sat = (mx - mn) / (mx + 0.05)
    out: list[torch.Tensor] = []
    for ch in (rg, yb, sat):
        out += _nss3(_mscn(ch))
    return out


def _logderiv_stats(y: torch.Tensor) -> list[torch.Tensor]:
    ly = torch.log(y + 0.05)
    out: list[torch.Tensor] = []
    for d in (ly[..., :, 1:] - ly[..., :, :-1], ly[..., 1:, :] - ly[..., :-1, :],
              ly[..., 1:, 1:] - ly[..., :-1, :-1]):
        out += _nss3(d)
    return out


def _gmlog_stats(y: torch.Tensor) -> list[torch.Tensor]:
    ys = _blur(y, _G1)
    yp = F.pad(ys, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (yp[..., 1:-1, 2:] - yp[..., 1:-1, :-2])
    gy = 0.5 * (yp[..., 2:, 1:-1] - yp[..., :-2, 1:-1])
    gm = (gx * gx + gy * gy + 1e-10).sqrt()
    lg = (4 * ys - yp[..., :-2, 1:-1] - yp[..., 2:, 1:-1] - yp[..., 1:-1, :-2] - yp[..., 1:-1, 2:]).abs()
    n = (_blur(gm * gm + lg * lg, _G3) + 1e-6).sqrt()
    gn, ln = gm / (n + 0.002), lg / (n + 0.002)
    out: list[torch.Tensor] = []
    for v, top in ((gn, 2.4), (ln, 2.4)):
        for c in torch.linspace(0.0, top, 8):
            out.append(_mean(torch.exp(-0.5 * ((v - float(c)) / (top / 14.0)) ** 2)))
    cg, cl = gn - _mean(gn).view(-1, 1, 1, 1), ln - _mean(ln).view(-1, 1, 1, 1)
    out.append(_mean(cg * cl) / (_std(gn) * _std(ln) + _EPS))
    return out


def _chroma_texture_stats(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    k = 8
    hy = y - _blur(y)
    rg = x[:, 0:1] - x[:, 1:2]
    yb = 0.5 * (x[:, 0:1] + x[:, 1:2]) - x[:, 2:3]
    hc2 = (rg - _blur(rg)) ** 2 + (yb - _blur(yb)) ** 2
    ey = F.avg_pool2d(hy * hy, k)
    ec = F.avg_pool2d(hc2, k)
    r = torch.log((ec + 1e-7) / (ey + 1e-7))
    w = ey / (ey.reshape(ey.shape[0], -1).sum(1).view(-1, 1, 1, 1) + 1e-9)
    wr = (r * w).reshape(r.shape[0], -1).sum(1)
    hp = x - _blur(x)
    a, b, c = hp[:, 0:1], hp[:, 1:2], hp[:, 2:3]
    corr = []
    for p, q in ((a, b), (b, c)):
        pq = F.avg_pool2d(p * q, k)
        pp, qq = F.avg_pool2d(p * p, k), F.avg_pool2d(q * q, k)
        corr.append(pq / (pp * qq + 1e-12).sqrt())
    cm = 0.5 * (corr[0] + corr[1])
    wc = (cm * w).reshape(cm.shape[0], -1).sum(1)
    return [wr, _mean(r), _lme(r, 4.0), wc, -_lme(-cm, 4.0), _mean(cm)]


def _halo_stats(y: torch.Tensor) -> list[torch.Tensor]:
    d = _blur(y, _G1) - _blur(y, _G3)
    yp = F.pad(y, (1, 1, 1, 1), mode="replicate")
    g = ((yp[..., 1:-1, 2:] - yp[..., 1:-1, :-2]) ** 2 + (yp[..., 2:, 1:-1] - yp[..., :-2, 1:-1]) ** 2 + 1e-10).sqrt()
    thr = _lme(g, 30.0).view(-1, 1, 1, 1) * 0.5
    edge = torch.sigmoid((g - thr) / (0.1 * thr + 1e-4))
    near = F.max_pool2d(edge, 9, stride=1, padding=4)
    ring = (near - F.max_pool2d(edge, 3, stride=1, padding=1)).clamp_min(0.0)
    ad = d.abs()
    e_ring = (ad * ring).reshape(ad.shape[0], -1).sum(1) / (ring.reshape(ad.shape[0], -1).sum(1) + 1.0)
    e_edge = (ad * edge).reshape(ad.shape[0], -1).sum(1) / (edge.reshape(ad.shape[0], -1).sum(1) + 1.0)
    m2 = _mean(d * d) + 1e-10
    return [torch.log(e_ring + 1e-5) - torch.log(e_edge + 1e-5), torch.log(_mean(d**4) / (m2 * m2) + _EPS),
            torch.log(e_ring + 1e-5)]


def extra_features(x: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] RGB 0..1 -> [N, N_EXTRA] (see the module docstring)."""
    x = x.clamp(0.0, 1.0)
    pyr = [x]
    for _ in range(LEVELS - 1):
        pyr.append(F.avg_pool2d(pyr[-1], 2))
    feats: list[torch.Tensor] = []
    for i, xi in enumerate(pyr[:3]):
        yi = _luma(xi)
        feats += _colour_stats(xi)
        feats += _logderiv_stats(yi)
        feats += _chroma_texture_stats(xi, yi)
        if i < 2:
            feats += _gmlog_stats(yi)
            feats += _halo_stats(yi)
    return torch.stack(feats, dim=1)


def quality_features_v3(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([quality_features(x), extra_features(x)], dim=1)


N_EXTRA = int(extra_features(torch.rand(1, 3, 64, 64)).shape[1])
N_FEATURES_V3 = int(quality_features_v3(torch.rand(1, 3, 64, 64)).shape[1])


class QualityNetV3(nn.Module):
    """Fixed features (version 2's and ``extra_features``), standardised, then an ensemble of
    ``members`` heads (linear + one-layer MLP each), averaged in logit space; ``1 + 9 sigmoid(z)``."""

    def __init__(self, hidden: int = 64, n_features: int = N_FEATURES_V3, members: int = 5) -> None:
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.hidden, self.members = hidden, members
        self.fc1 = nn.ModuleList([nn.Linear(n_features, hidden) for _ in range(members)])
        self.fc2 = nn.ModuleList([nn.Linear(hidden, 1) for _ in range(members)])
        self.lin = nn.ModuleList([nn.Linear(n_features, 1) for _ in range(members)])
        self.drop = nn.Dropout(0.2)

    def member(self, z: torch.Tensor, i: int) -> torch.Tensor:
        h = F.leaky_relu(self.fc1[i](self.drop(z)), 0.1)
        return self.fc2[i](self.drop(h)).squeeze(1) + self.lin[i](z).squeeze(1)

    def standardise(self, f: torch.Tensor) -> torch.Tensor:
        return ((f - self.feat_mean) / self.feat_std).clamp(-8.0, 8.0)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        """Features [N, F] -> logit z [N] (the members' mean)."""
        z = self.standardise(f)
        return torch.stack([self.member(z, i) for i in range(self.members)], dim=0).mean(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + 9.0 * torch.sigmoid(self.head(quality_features_v3(x)))


def load_quality_v3(path: str | Path, device: str = "cpu") -> QualityNetV3:
    ck = torch.load(path, map_location=device, weights_only=False)
    net = QualityNetV3(**ck.get("config", {}))
    net.load_state_dict(ck["model"])
    net.eval()
    return net
