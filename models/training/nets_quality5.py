"""The quality model Q, version 5: version 3's statistics plus tone and colour-cast statistics.

Why (models/quality.md, "Version 5"): on TRAIN views, Q version 4 ranks a clean view above its
colour-shifted copy for only 78% of pairs and above its overdone local tone mapping for 70% (every
other family 89-100%): nothing in its 349 statistics measures a white-balance error beyond the mean
opponent colour, or a histogram flattened by local equalisation. Version 5 adds
``N_TONE`` statistics, all on the half-resolution level (cheap; the guard's budget is about 1 s per
12 MP photo):

* **colour cast** (the illuminant estimates of colour constancy, as log ratios to green):
  gray-world on linear values, gray-edge (mean gradient magnitude per channel), white-patch (a soft
  maximum per channel), the angle between the gray-edge estimate and neutral, and the mean
  opponent colours of near-neutral pixels (a cast moves the greys);
* **local tone mapping and contrast**: the entropy of the soft luminance histogram (equalisation
  flattens it), the spread of local contrast across the frame (local operators make it uniform),
  low-frequency halos (band-pass energy at a coarse scale against the coarse contrast), and
  the detail in the shadows against the midtones (lifted shadows raise it).

The head is version 3's (``nets_quality3.QualityNetV3``: five members averaged in logit space);
only the feature function differs, so ``QualityNetV5`` is version 3's class with its own forward.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from models.training.nets_quality import _blur, _gauss1d, _lme, _luma, _mean
from models.training.nets_quality3 import QualityNetV3, quality_features_v3

_EPS = 1e-6
_G2 = _gauss1d(2.0, 6)
_G8 = _gauss1d(8.0, 24)


def _blur_rep(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian with replicate padding (works on maps smaller than the kernel)."""
    r = (k.numel() - 1) // 2
    kx = k.view(1, 1, 1, -1)
    ky = k.view(1, 1, -1, 1)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), kx)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), ky)


def _lin(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp_min(_EPS) ** 2.4)


def _log_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.log(a + 1e-4) - torch.log(b + 1e-4)


def colour_cast_stats(x: torch.Tensor) -> list[torch.Tensor]:
    """Illuminant estimates as log ratios R/G and B/G (gray-world in linear light, gray-edge,
    white-patch), the gray-edge angle from neutral, and the opponent colours of near-neutral pixels."""
    out: list[torch.Tensor] = []
    lin = _lin(x)
    gw = [_mean(lin[:, c:c + 1]) for c in range(3)]
    out += [_log_ratio(gw[0], gw[1]), _log_ratio(gw[2], gw[1])]
    xs = _blur(x)
    ge = []
    for c in range(3):
        ch = xs[:, c:c + 1]
        gx = ch[..., :, 1:] - ch[..., :, :-1]
        gy = ch[..., 1:, :] - ch[..., :-1, :]
        ge.append(0.5 * (_mean(gx.abs()) + _mean(gy.abs())))
    out += [_log_ratio(ge[0], ge[1]), _log_ratio(ge[2], ge[1])]
    s = ge[0] + ge[1] + ge[2]
    n = (ge[0] ** 2 + ge[1] ** 2 + ge[2] ** 2 + _EPS).sqrt()
    out.append(torch.acos((s / (n * 3.0 ** 0.5)).clamp(-0.999999, 0.999999)))
    wp = [_lme(x[:, c:c + 1], 30.0) for c in range(3)]
    out += [_log_ratio(wp[0], wp[1]), _log_ratio(wp[2], wp[1])]
    mx = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    y = _luma(x)
    w = torch.sigmoid((0.12 - (mx - mn)) * 40.0) * torch.sigmoid((y - 0.08) * 40.0) * torch.sigmoid((0.95 - y) * 40.0)
    ws = _mean(w) + 1e-4
    rg = x[:, 0:1] - x[:, 1:2]
    yb = 0.5 * (x[:, 0:1] + x[:, 1:2]) - x[:, 2:3]
    out += [_mean(w * rg) / ws, _mean(w * yb) / ws, torch.log(ws)]
    return out


def tone_map_stats(x: torch.Tensor) -> list[torch.Tensor]:
    """Histogram entropy, spread of local contrast, coarse halos, and shadow detail."""
    y = _luma(x)
    cs = torch.linspace(0.0, 1.0, 16)
    h = torch.stack([_mean(torch.exp(-0.5 * ((y - float(c)) / 0.035) ** 2)) for c in cs], dim=1)
    p = h / (h.sum(dim=1, keepdim=True) + _EPS)
    ent = -(p * torch.log(p + 1e-8)).sum(dim=1)
    mu = _blur(y, _G2)
    loc = (_blur(y * y, _G2) - mu * mu).clamp_min(0).add(1e-6).sqrt()
    lm = _mean(loc)
    lsd = (_mean(loc * loc) - lm * lm).clamp_min(0).add(_EPS).sqrt()
    y4 = F.avg_pool2d(y, 4)
    band = _blur_rep(y4, _G2) - _blur_rep(y4, _G8)
    m4 = _mean(y4)
    coarse = (_mean(y4 * y4) - m4 * m4).clamp_min(0).add(_EPS).sqrt()
    halo = torch.log(_mean(band * band).add(1e-8).sqrt()) - torch.log(coarse + 1e-3)
    dark = torch.sigmoid((0.2 - mu) * 30.0)
    mid = torch.sigmoid((mu - 0.3) * 30.0) * torch.sigmoid((0.7 - mu) * 30.0)
    d_dark = _mean(loc * dark) / (_mean(dark) + 1e-3)
    d_mid = _mean(loc * mid) / (_mean(mid) + 1e-3)
    return [ent, lsd / (lm + 1e-3), halo, torch.log(d_dark + 1e-3) - torch.log(d_mid + 1e-3), torch.log(_mean(dark) + 1e-3)]


def tone_features(x: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] RGB 0..1 -> [N, N_TONE], on the half-resolution level."""
    x1 = F.avg_pool2d(x.clamp(0.0, 1.0), 2)
    return torch.stack(colour_cast_stats(x1) + tone_map_stats(x1), dim=1)


def quality_features_v5(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([quality_features_v3(x), tone_features(x)], dim=1)


N_TONE = int(tone_features(torch.rand(1, 3, 64, 64)).shape[1])
N_FEATURES_V5 = int(quality_features_v5(torch.rand(1, 3, 64, 64)).shape[1])


class QualityNetV5(QualityNetV3):
    """Version 3's head on ``quality_features_v5``."""

    def __init__(self, hidden: int = 64, n_features: int = N_FEATURES_V5, members: int = 5) -> None:
        super().__init__(hidden=hidden, n_features=n_features, members=members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + 9.0 * torch.sigmoid(self.head(quality_features_v5(x)))


def from_v3(net: QualityNetV3) -> QualityNetV5:
    """A packed ensemble (``train_quality3.pack_members``) as a version-5 network (same weights)."""
    out = QualityNetV5(hidden=net.hidden, n_features=int(net.feat_mean.shape[0]), members=net.members)
    out.load_state_dict(net.state_dict())
    return out.eval()
