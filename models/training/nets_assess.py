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

from engine.degrade import SEVERITY_NAMES


class QualityNet(nn.Module):
    """Small no-reference quality CNN.

    The first convolution runs at full resolution (noise and JPEG blocking live at the pixel
    scale); four stride-2 stages follow. Spatial mean and standard deviation of the last
    features are pooled, so the score is defined for any size and does not depend on it much.
    The output is ``1 + 9 * sigmoid(z)``.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        chans = [(3, w, 1), (w, w + 8, 2), (w + 8, w + 8, 1), (w + 8, 2 * w, 2), (2 * w, 2 * w, 1),
                 (2 * w, 3 * w, 2), (3 * w, 4 * w, 2)]
        layers: list[nn.Module] = []
        for cin, cout, s in chans:
            layers += [nn.Conv2d(cin, cout, 3, stride=s, padding=1), nn.LeakyReLU(0.1)]
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(2 * 4 * w + 6, 64)
        self.fc2 = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x * 2.0 - 1.0)
        mean = f.mean(dim=(2, 3))
        std = (f.var(dim=(2, 3), unbiased=False) + 1e-6).sqrt()
        # global colour statistics of the input: exposure and cast are global properties
        xm = x.mean(dim=(2, 3))
        xs = (x.var(dim=(2, 3), unbiased=False) + 1e-6).sqrt()
        h = F.leaky_relu(self.fc1(torch.cat([mean, std, xm, xs], dim=1)), 0.1)
        return 1.0 + 9.0 * torch.sigmoid(self.fc2(h).squeeze(1))


def load_quality(path: str | Path, device: str = "cpu") -> QualityNet:
    """The trained QualityNet in eval mode (``runs/quality/quality_torch.pt``)."""
    ck = torch.load(path, map_location=device, weights_only=False)
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
    """Stem (3x3, stride 2) then inverted residual stages; global average + std pooling."""

    def __init__(self, cfg: tuple[tuple[int, int, int], ...] = ((16, 1, 1), (24, 2, 2), (32, 2, 2),
                                                                (48, 2, 2), (64, 1, 1)),
                 stem: int = 16, out: int = 96) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(stem), nn.ReLU6(inplace=True)]
        cin = stem
        for cout, n, s in cfg:
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1))
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
    on it in numpy (engine/finetune.py).
    """

    def __init__(self, embed: int = 64) -> None:
        super().__init__()
        self.crop_net = Backbone()
        self.global_net = Backbone(cfg=((16, 1, 1), (24, 1, 2), (32, 1, 2), (48, 1, 2)), out=64)
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
