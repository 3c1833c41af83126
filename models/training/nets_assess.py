"""The quality model and the assessor (torch). Only training code imports this.

* ``QualityNet``: perceived quality 1..10 from pixels alone, fully convolutional, any H, W >= 64.
  Also used by the tone model (helper E) as a differentiable loss term, so its call signature
  ``QualityNet()(x: float [N,3,H,W] in 0..1) -> [N] in 1..10`` is a promise.
* ``Assessor``: MobileNetV2-class backbone (depthwise-separable inverted residual blocks) shared by
  K native-resolution crops and one global view; heads improvability, quality, severity and the
  embedding (the input of the last improvability layer). See models/assessor.md.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from engine.assess.degrade import SEVERITY_NAMES


def _grad_mag(z: torch.Tensor) -> torch.Tensor:
    dx = (z[..., :, 1:] - z[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    dy = (z[..., 1:, :] - z[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return dx + dy


def _blockiness(y: torch.Tensor) -> torch.Tensor:
    """Strongest 8-pixel periodicity of the column and row differences (JPEG grid, any alignment)."""
    out = []
    for d in ((y[..., :, 1:] - y[..., :, :-1]).abs().mean(dim=(1, 2)),
              (y[..., 1:, :] - y[..., :-1, :]).abs().mean(dim=(1, 3))):
        n = d.shape[1] // 8 * 8
        per = d[:, :n].reshape(d.shape[0], -1, 8).mean(dim=1)  # [N, 8] mean diff at each offset
        out.append(torch.log((per.amax(dim=1) + 1e-4) / (per.mean(dim=1) + 1e-4)))
    return torch.stack(out, dim=1)


N_STATS = 26


def image_stats(x: torch.Tensor) -> torch.Tensor:
    """Differentiable hand-made statistics of an image batch [N,3,H,W] in 0..1 -> [N, N_STATS].

    Tone (channel means and spreads, luminance moments, crushed and clipped shares), sharpness
    (gradient energy at three scales and their ratios, Laplacian), noise (high-pass energy, also
    in flat regions), JPEG blocking (8-pixel periodicity), colour (colourfulness, cast) and haze
    (dark channel, coarse contrast). They give the quality model a fast start on a CPU budget;
    the CNN branch learns what they miss.
    """
    n = x.shape[0]
    m = x.mean(dim=(2, 3))
    s = (x.var(dim=(2, 3), unbiased=False) + 1e-6).sqrt()
    y = (0.2126 * x[:, 0:1] + 0.7152 * x[:, 1:2] + 0.0722 * x[:, 2:3])
    ym = y.mean(dim=(1, 2, 3))
    ys = (y.var(dim=(1, 2, 3), unbiased=False) + 1e-6).sqrt()
    yskew = ((y - ym.view(n, 1, 1, 1)) ** 3).mean(dim=(1, 2, 3)) / ys**3
    dark = torch.sigmoid((0.04 - y) / 0.01).mean(dim=(1, 2, 3))
    bright = torch.sigmoid((y - 0.96) / 0.01).mean(dim=(1, 2, 3))
    y2 = F.avg_pool2d(y, 2)
    y4 = F.avg_pool2d(y2, 2)
    g1, g2, g4 = _grad_mag(y), _grad_mag(y2), _grad_mag(y4)
    lg1, lg2, lg4 = torch.log(g1 + 1e-3), torch.log(g2 + 1e-3), torch.log(g4 + 1e-3)
    hp = y - F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    smooth = F.avg_pool2d(F.pad(y, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    sg = (smooth[..., :, 2:] - smooth[..., :, :-2]).abs()[..., 1:-1, :] + \
        (smooth[..., 2:, :] - smooth[..., :-2, :]).abs()[..., :, 1:-1]
    w = torch.exp(-sg / 0.02)
    hpc = hp[..., 1:-1, 1:-1].abs()
    noise_flat = torch.log((hpc * w).sum(dim=(1, 2, 3)) / (w.sum(dim=(1, 2, 3)) + 1e-3) + 1e-4)
    noise_all = torch.log(hp.abs().mean(dim=(1, 2, 3)) + 1e-4)
    lap = y[..., 1:-1, 1:-1] * 4 - y[..., :-2, 1:-1] - y[..., 2:, 1:-1] - y[..., 1:-1, :-2] - y[..., 1:-1, 2:]
    llap = torch.log(lap.abs().mean(dim=(1, 2, 3)) + 1e-4)
    blk = _blockiness(y)
    rg = x[:, 0] - x[:, 1]
    yb = 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
    colourful = ((rg.var(dim=(1, 2), unbiased=False) + yb.var(dim=(1, 2), unbiased=False) + 1e-6).sqrt()
                 + 0.3 * (rg.mean(dim=(1, 2)) ** 2 + yb.mean(dim=(1, 2)) ** 2 + 1e-6).sqrt())
    dch = -F.max_pool2d(-x.amin(dim=1, keepdim=True), 7, stride=4)
    y8 = F.avg_pool2d(y4, 2)
    coarse = (y8.var(dim=(1, 2, 3), unbiased=False) + 1e-6).sqrt()
    return torch.cat([m, s, torch.stack([ym, ys, yskew, dark, bright, lg1, lg2, lg4, lg1 - lg2, lg2 - lg4,
                                         noise_flat, noise_all, llap], dim=1), blk,
                      torch.stack([colourful, rg.mean(dim=(1, 2)), yb.mean(dim=(1, 2)),
                                   dch.mean(dim=(1, 2, 3)), coarse], dim=1)], dim=1)


class QualityNet(nn.Module):
    """Small no-reference quality model: a CNN branch plus differentiable image statistics.

    The CNN's first convolution runs at full resolution (noise and JPEG blocking live at the
    pixel scale); four stride-2 stages follow; spatial mean and standard deviation of its last
    features are pooled, so the score is defined for any size >= 64 and depends little on it.
    ``image_stats`` adds hand-made statistics (normalised by a batch-norm layer). The output is
    ``1 + 9 * sigmoid(z)``. Batch normalisation makes it train several times faster on the
    CPU; as a loss term use it in eval mode with frozen weights (``load_quality`` does
    ``eval()``; call ``requires_grad_(False)`` too).
    """

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        w = width
        chans = [(3, w, 1), (w, w + 8, 2), (w + 8, w + 8, 1), (w + 8, 2 * w, 2), (2 * w, 2 * w, 1),
                 (2 * w, 3 * w, 2), (3 * w, 4 * w, 2)]
        layers: list[nn.Module] = []
        for cin, cout, s in chans:
            layers += [nn.Conv2d(cin, cout, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.1)]
        self.features = nn.Sequential(*layers)
        self.stat_norm = nn.BatchNorm1d(N_STATS)
        self.fc1 = nn.Linear(2 * 4 * w + N_STATS, 64)
        self.fc2 = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x * 2.0 - 1.0)
        mean = f.mean(dim=(2, 3))
        std = (f.var(dim=(2, 3), unbiased=False) + 1e-6).sqrt()
        st = self.stat_norm(image_stats(x))
        h = F.leaky_relu(self.fc1(torch.cat([mean, std, st], dim=1)), 0.1)
        return 1.0 + 9.0 * torch.sigmoid(self.fc2(h).squeeze(1))


def load_quality(path: str | Path, device: str = "cpu") -> nn.Module:
    """A trained Q in eval mode: version 3 (``nets_quality3.QualityNetV3``, the checkpoint
    ``models/training/checkpoints/quality_v3.pth``), version 2 (``nets_quality.QualityNetV2``,
    ``quality_v2.pth``) or version 1 (``runs/quality/quality_torch.pt``).
    Both are ``(x: [N,3,H,W] 0..1) -> [N] 1..10``."""
    ck = torch.load(path, map_location=device, weights_only=False)
    if ck.get("config", {}).get("features") == "v5":
        from models.training.nets_quality5 import QualityNetV5

        cfg5 = {k: v for k, v in ck["config"].items() if k != "features"}
        net5 = QualityNetV5(**cfg5)
        net5.load_state_dict(ck["model"])
        return net5.eval()
    if "members" in ck.get("config", {}):
        from models.training.nets_quality3 import QualityNetV3

        net3 = QualityNetV3(**ck["config"])
        net3.load_state_dict(ck["model"])
        return net3.eval()
    if "n_features" in ck.get("config", {}):
        from models.training.nets_quality import QualityNetV2

        net2 = QualityNetV2(**ck["config"])
        net2.load_state_dict(ck["model"])
        return net2.eval()
    net = QualityNet(**ck.get("config", {}))
    net.load_state_dict(ck["model"])
    net.eval()
    return net


# ---------------------------------------------------------------------------- assessor


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project (linear), residual if it fits."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        hid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(inplace=True),
            nn.Conv2d(hid, hid, 3, stride=stride, padding=1, groups=hid, bias=False), nn.BatchNorm2d(hid),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class Backbone(nn.Module):
    """Stem (3x3, stride 2) then inverted residual stages ``(out, repeats, stride, expansion)``;
    global average + standard-deviation pooling (the spread of features carries noise and blur)."""

    def __init__(self, cfg: tuple[tuple[int, int, int, int], ...] = ((16, 1, 1, 2), (24, 2, 2, 3), (40, 2, 2, 3),
                                                                     (64, 1, 2, 3)),
                 stem: int = 16, out: int = 96) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(stem), nn.ReLU6(inplace=True)]
        cin = stem
        for cout, n, s, e in cfg:
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, e))
                cin = cout
        layers += [nn.Conv2d(cin, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU6(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_dim = 2 * out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net(x * 2.0 - 1.0)
        mean = f.mean(dim=(2, 3))
        std = (f.var(dim=(2, 3), unbiased=False) + 1e-6).sqrt()
        return torch.cat([mean, std], dim=1)


class Assessor(nn.Module):
    """K crops + one global view -> improvability, quality, severity, embedding.

    Crops go through ``crop_net`` (native-resolution evidence: noise, blocking, blur), the global
    view through ``global_net`` (exposure, contrast, cast, haze, composition). Crop features are
    pooled by mean and max over K (max: a defect visible in one crop counts). The embedding is
    the ReLU hidden layer that feeds the improvability head, so a new last layer can be fitted
    on it in numpy (engine/assess/finetune.py).
    """

    def __init__(self, embed: int = 64) -> None:
        super().__init__()
        self.crop_net = Backbone()
        self.global_net = Backbone(cfg=((24, 1, 2, 2), (32, 1, 2, 3), (48, 1, 2, 3)), out=64)
        d = 2 * self.crop_net.out_dim + self.global_net.out_dim
        self.trunk = nn.Sequential(nn.Linear(d, 128), nn.ReLU(inplace=True), nn.Dropout(0.1))
        self.embed = nn.Sequential(nn.Linear(128, embed), nn.ReLU())
        self.head_improv = nn.Linear(embed, 1)
        self.head_quality = nn.Linear(128, 1)
        self.head_severity = nn.Linear(128, len(SEVERITY_NAMES))

    def forward(self, crops: torch.Tensor, glob: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n, k, c, s, _ = crops.shape
        fc = self.crop_net(crops.reshape(n * k, c, s, s)).reshape(n, k, -1)
        fg = self.global_net(glob)
        h = self.trunk(torch.cat([fc.mean(dim=1), fc.amax(dim=1), fg], dim=1))
        emb = self.embed(h)
        improv = self.head_improv(emb).squeeze(1)
        quality = 1.0 + 9.0 * torch.sigmoid(self.head_quality(h).squeeze(1))
        severity = torch.sigmoid(self.head_severity(h))
        return improv, quality, severity, emb


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
