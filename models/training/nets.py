"""Network definitions (torch). Only training code imports this."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.leaky_relu(self.c1(x), 0.1))


class RestorerUNet(nn.Module):
    """Residual UNet: widths 16/32/64, middle 128. Predicts a residual added to the input.

    Spatial size must be a multiple of 8; the engine pads tiles accordingly.
    """

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), mid: int = 128) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.head = nn.Conv2d(3, w1, 3, padding=1)
        self.e1 = ResBlock(w1)
        self.d1 = nn.Conv2d(w1, w2, 2, stride=2)
        self.e2 = ResBlock(w2)
        self.d2 = nn.Conv2d(w2, w3, 2, stride=2)
        self.e3 = ResBlock(w3)
        self.d3 = nn.Conv2d(w3, mid, 2, stride=2)
        self.m = ResBlock(mid)
        self.u3 = nn.ConvTranspose2d(mid, w3, 2, stride=2)
        self.r3 = ResBlock(w3)
        self.u2 = nn.ConvTranspose2d(w3, w2, 2, stride=2)
        self.r2 = ResBlock(w2)
        self.u1 = nn.ConvTranspose2d(w2, w1, 2, stride=2)
        self.r1 = ResBlock(w1)
        self.tail = nn.Conv2d(w1, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = self.e1(self.head(x))
        h2 = self.e2(self.d1(h1))
        h3 = self.e3(self.d2(h2))
        m = self.m(self.d3(h3))
        y = self.r3(self.u3(m) + h3)
        y = self.r2(self.u2(y) + h2)
        y = self.r1(self.u1(y) + h1)
        return x + self.tail(y)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


class FiLM(nn.Module):
    """Per-channel scale and shift from the levels vector; zero-initialised (identity at start)."""

    def __init__(self, n_levels: int, ch: int, hidden: int = 32) -> None:
        super().__init__()
        self.l1 = nn.Linear(n_levels, hidden)
        self.l2 = nn.Linear(hidden, 2 * ch)
        nn.init.zeros_(self.l2.weight)
        nn.init.zeros_(self.l2.bias)

    def forward(self, h: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        gb = self.l2(F.leaky_relu(self.l1(levels), 0.1))[:, :, None, None]
        g, b = gb.chunk(2, dim=1)
        return h * (1 + g) + b


class LevelRestorerUNet(RestorerUNet):
    """The residual UNet told how degraded its input is (``levels``: noise, JPEG; see
    ``engine.enhance.levels``), as FFDNet is told its noise map: every stage's features are
    scaled and shifted per channel (FiLM) by a small network of the levels. With the FiLM
    layers at zero it is exactly :class:`RestorerUNet`, so it starts from a trained blind model.
    """

    N_LEVELS = 2

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), mid: int = 128) -> None:
        super().__init__(widths, mid)
        w1, w2, w3 = widths
        self.f1, self.f2, self.f3 = FiLM(2, w1), FiLM(2, w2), FiLM(2, w3)
        self.fm = FiLM(2, mid)
        self.g3, self.g2, self.g1 = FiLM(2, w3), FiLM(2, w2), FiLM(2, w1)

    def forward(self, x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h1 = self.f1(self.e1(self.head(x)), levels)
        h2 = self.f2(self.e2(self.d1(h1)), levels)
        h3 = self.f3(self.e3(self.d2(h2)), levels)
        m = self.fm(self.m(self.d3(h3)), levels)
        y = self.g3(self.r3(self.u3(m) + h3), levels)
        y = self.g2(self.r2(self.u2(y) + h2), levels)
        y = self.g1(self.r1(self.u1(y) + h1), levels)
        return x + self.tail(y)
