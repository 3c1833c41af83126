"""Face networks (torch; training only): the codebook restorer, the detector, the identity net.

**FaceRestorer**: a U-Net on 128x128 faces. The encoder's features at 16x16 are quantized against
a codebook of ``K`` codes learned first on clean faces (stage 1, a VQ autoencoder); the decoder
starts from a blend of the quantized code features (generation) and the encoder's own continuous
features (reconstruction). At 32, 64 and 128 px, a *linear gated fusion* block combines the
decoder's features with the encoder's skip features: a per-location gate ``g = sigmoid(conv([d, e]))``
and ``d + (1 - w) * g * conv(e)``. ``w`` (0 faithful .. 1 generated) scales the skips and the
bottleneck blend down and the noise injected into the decoder (a per-channel learned scale times a
noise map that is an *input*, so the engine's result is reproducible) up.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


class RB(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(act(self.c1(x)))


class Encoder(nn.Module):
    def __init__(self, ch: tuple[int, int, int, int] = (16, 32, 96, 192)) -> None:
        super().__init__()
        c1, c2, c3, c4 = ch
        self.head = nn.Conv2d(3, c1, 3, padding=1)
        self.b1 = RB(c1)
        self.d1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.b2 = RB(c2)
        self.d2 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.b3 = RB(c3)
        self.d3 = nn.Conv2d(c3, c4, 3, stride=2, padding=1)
        self.b4 = nn.Sequential(RB(c4), RB(c4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        e1 = self.b1(self.head(x * 2 - 1))
        e2 = self.b2(act(self.d1(e1)))
        e3 = self.b3(act(self.d2(e2)))
        z = self.b4(act(self.d3(e3)))
        return z, [e1, e2, e3]


class Fuse(nn.Module):
    """Linear gated fusion: d + (1 - w) * sigmoid(conv([d, e])) * conv(e)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(2 * ch, ch, 3, padding=1)
        self.proj = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, d: torch.Tensor, e: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([d, e], 1)))
        return d + keep * g * self.proj(e)


class Decoder(nn.Module):
    def __init__(self, ch: tuple[int, int, int, int] = (16, 32, 96, 192)) -> None:
        super().__init__()
        c1, c2, c3, c4 = ch
        self.m = nn.Sequential(RB(c4), RB(c4))
        self.u3 = nn.Conv2d(c4, c3, 3, padding=1)
        self.f3 = Fuse(c3)
        self.r3 = RB(c3)
        self.u2 = nn.Conv2d(c3, c2, 3, padding=1)
        self.f2 = Fuse(c2)
        self.r2 = RB(c2)
        self.u1 = nn.Conv2d(c2, c1, 3, padding=1)
        self.f1 = Fuse(c1)
        self.r1 = RB(c1)
        self.tail = nn.Conv2d(c1, 3, 3, padding=1)
        self.n3 = nn.Parameter(torch.zeros(1, c3, 1, 1))
        self.n2 = nn.Parameter(torch.zeros(1, c2, 1, 1))
        self.n1 = nn.Parameter(torch.zeros(1, c1, 1, 1))

    def forward(self, z: torch.Tensor, skips: list[torch.Tensor] | None, keep: torch.Tensor,
                w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        d = self.m(z)
        d = act(self.u3(F.interpolate(d, scale_factor=2.0, mode="nearest")))
        d = d + w * self.n3 * F.avg_pool2d(noise, 4)
        if skips is not None:
            d = self.f3(d, skips[2], keep)
        d = self.r3(d)
        d = act(self.u2(F.interpolate(d, scale_factor=2.0, mode="nearest")))
        d = d + w * self.n2 * F.avg_pool2d(noise, 2)
        if skips is not None:
            d = self.f2(d, skips[1], keep)
        d = self.r2(d)
        d = act(self.u1(F.interpolate(d, scale_factor=2.0, mode="nearest")))
        d = d + w * self.n1 * noise
        if skips is not None:
            d = self.f1(d, skips[0], keep)
        d = self.r1(d)
        return self.tail(d)


class Codebook(nn.Module):
    """K codes of dimension ``dim``, EMA-updated (stage 1), frozen afterwards."""

    codes: torch.Tensor
    ema_n: torch.Tensor
    ema_sum: torch.Tensor

    def __init__(self, k: int = 512, dim: int = 64, ch: int = 192) -> None:
        super().__init__()
        self.pre = nn.Conv2d(ch, dim, 1)
        self.post = nn.Conv2d(dim, ch, 1)
        self.register_buffer("codes", torch.randn(k, dim) * 0.1)
        self.register_buffer("ema_n", torch.ones(k))
        self.register_buffer("ema_sum", self.codes.clone())

    def nearest(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, dim, H, W) -> (quantized (B, dim, H, W), indices (B*H*W,))."""
        b, c, hh, ww = h.shape
        flat = h.permute(0, 2, 3, 1).reshape(-1, c)
        d = (flat * flat).sum(1, keepdim=True) - 2 * flat @ self.codes.t() + (self.codes * self.codes).sum(1)[None]
        idx = d.argmin(1)
        q = self.codes[idx].reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        return q, idx

    @torch.no_grad()
    def ema_update(self, h: torch.Tensor, idx: torch.Tensor, decay: float = 0.99) -> None:
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        onehot = F.one_hot(idx, self.codes.shape[0]).float()
        self.ema_n.mul_(decay).add_(onehot.sum(0), alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(onehot.t() @ flat, alpha=1 - decay)
        n = self.ema_n.sum()
        cnt = (self.ema_n + 1e-5) / (n + self.codes.shape[0] * 1e-5) * n
        self.codes.copy_(self.ema_sum / cnt[:, None])
        # restart dead codes on random features
        dead = self.ema_n < 1e-3
        if bool(dead.any()):
            r = flat[torch.randint(0, flat.shape[0], (int(dead.sum()),))]
            self.codes[dead] = r
            self.ema_sum[dead] = r
            self.ema_n[dead] = 1.0


class FaceVQ(nn.Module):
    """Stage 1: VQ autoencoder on clean faces (encoder, codebook, decoder without skips)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = Encoder()
        self.cb = Codebook()
        self.dec = Decoder()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, _ = self.enc(x)
        h = self.cb.pre(z)
        q, idx = self.cb.nearest(h)
        if self.training:
            self.cb.ema_update(h, idx)
        commit = F.mse_loss(h, q.detach())
        qs = h + (q - h).detach()
        one = torch.ones(1, 1, 1, 1)
        y = self.dec(self.cb.post(qs), None, one, one * 0, torch.zeros(x.shape[0], 1, x.shape[2], x.shape[3]))
        return y, commit


class FaceRestorer(nn.Module):
    """Stage 2: degraded face (B,3,128,128), w (B,1,1,1), noise (B,1,128,128) -> restored face."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = Encoder()
        self.cb = Codebook()
        self.dec = Decoder()

    def features(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        z, skips = self.enc(x)
        h = self.cb.pre(z)
        q, _ = self.cb.nearest(h)
        return h, q, skips

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        h, q, skips = self.features(x, w)
        b = w * self.cb.post(q) + (1 - w) * self.cb.post(h)
        y = self.dec(b, skips, 1 - w, w, noise)
        return x + y


class Export(nn.Module):
    """ONNX wrapper: image (1,3,128,128), w (1,) and noise (1,1,128,128) -> restored, clipped."""

    def __init__(self, net: FaceRestorer) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.net(image, w.reshape(-1, 1, 1, 1), noise), 0.0, 1.0)


# ---------------------------------------------------------------------------------- detector


class Detector(nn.Module):
    """CenterNet-style face detector: stride-4 maps of centre heat (logit) and log box size.

    Output (B, 3, H/4, W/4): channel 0 = centre logit, 1 = log(width / 4 px), 2 = log(height / 4 px).
    Fully convolutional; input sides must be multiples of 16.
    """

    def __init__(self, ch: tuple[int, int, int, int] = (16, 32, 64, 96)) -> None:
        super().__init__()
        c1, c2, c3, c4 = ch

        def down(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                                 nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True))

        self.s1 = down(3, c1)     # /2
        self.s2 = down(c1, c2)    # /4
        self.s3 = down(c2, c3)    # /8
        self.s4 = down(c3, c4)    # /16
        self.s5 = down(c4, c4)    # /32
        self.l4 = nn.Conv2d(c4, c3, 1)
        self.l3 = nn.Conv2d(c3, c3, 1)
        self.l5 = nn.Conv2d(c4, c3, 1)
        self.l2 = nn.Conv2d(c2, c3, 1)
        self.head = nn.Sequential(nn.Conv2d(c3, c3, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c3, 3, 1))
        self.head[-1].bias.data[0] = -4.0  # type: ignore[index,operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 2 - 1
        f2 = self.s2(self.s1(x))
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        f5 = self.s5(f4)
        p = self.l4(f4) + F.interpolate(self.l5(f5), scale_factor=2.0, mode="nearest")
        p = self.l3(f3) + F.interpolate(p, scale_factor=2.0, mode="nearest")
        p = self.l2(f2) + F.interpolate(p, scale_factor=2.0, mode="nearest")
        return self.head(F.relu(p))


# ---------------------------------------------------------------------------------- identity


class IdentityNet(nn.Module):
    """64x64 face -> L2-normalised 128-d embedding (instance discrimination over training faces)."""

    def __init__(self, n_classes: int, dim: int = 128) -> None:
        super().__init__()

        def blk(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                                 nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(blk(3, 32), blk(32, 64), blk(64, 128), blk(128, 192))  # 4x4
        self.fc = nn.Linear(192 * 16, dim)
        self.cls = nn.Parameter(torch.randn(n_classes, dim) * 0.01)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x * 2 - 1).flatten(1)
        return F.normalize(self.fc(f), dim=1)

    def logits(self, e: torch.Tensor, scale: float = 16.0) -> torch.Tensor:
        return scale * e @ F.normalize(self.cls, dim=1).t()


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
