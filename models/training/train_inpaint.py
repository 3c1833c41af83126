"""Train the learned inpainter of the ``defects`` stage and export ``models/inpaint.onnx``.

    python -m models.training.train_inpaint --minutes 90          # fresh or resumed run
    python -m models.training.train_inpaint --export-only         # re-export the last checkpoint
    python -m models.training.eval_inpaint                        # against OpenCV's inpainting

What it learns: to fill the pixels a camera defect hides (a scratch or crack of the lens or its
cover, an opaque obstruction) from the pixels around them. Inputs: the photo with the hidden pixels
set to 0 and the mask (1 = hidden); output: the photo with the hidden pixels filled (the network
predicts all pixels; the known ones are pasted back, in training and at run time, so only the
hole is learned). Training pairs are clean crops of the training photos (``models.training.data``,
the validation split is never seen) with synthetic masks of the kinds the detector reports:
thin lines and polylines 1-7 px wide (scratches, cracks, hair), ellipses and blobs (obstructions,
dust too opaque to divide out), and mixtures of both.

Network: a small residual U-Net (widths 24/48/96, middle 96 with dilated convolutions for a wide
receptive field at low cost), about 0.6 M parameters, that refines a coarse fill (normalised
convolution of the known pixels, :func:`coarse_fill`); plain convolutions, so it runs in
onnxruntime on the CPU like the restorer. Loss: L1 inside the hole (x 6) plus L1 on a 4-pixel
ring around it (the seam), plus a small gradient L1 inside the hole (texture, not just colour).

The learning-rate schedule is cosine over ``--minutes``, so a run resumed after a kill continues
the same schedule; a checkpoint every two minutes to ``runs/inpaint/ckpt.pt``.

The ONNX contract: inputs ``image`` float32 [1,3,H,W] RGB 0..1 (hidden pixels 0) and ``mask``
float32 [1,1,H,W] (1 = fill), H and W multiples of 8; output ``inpainted`` [1,3,H,W].
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.training.data import REPO, CropSampler, discover


# -- masks --------------------------------------------------------------------------------------------
def random_mask(rng: np.random.Generator, size: int, kind: str | None = None) -> np.ndarray:
    """A float32 [size, size] mask (1 = hidden) like the defects the detector reports."""
    kind = kind or str(rng.choice(["line", "polyline", "blob", "mixed"], p=[0.35, 0.25, 0.25, 0.15]))
    m = np.zeros((size, size), np.uint8)
    if kind in ("line", "mixed"):
        for _ in range(int(rng.integers(1, 3))):
            p0 = rng.integers(0, size, 2)
            ang = rng.uniform(0, np.pi)
            ln = rng.uniform(0.3, 1.2) * size
            p1 = (p0 + ln * np.array([np.cos(ang), np.sin(ang)])).astype(int)
            cv2.line(m, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, int(rng.integers(1, 8)))
    if kind == "polyline":
        pts = [rng.integers(0, size, 2)]
        for _ in range(int(rng.integers(2, 6))):
            step = rng.normal(0, size / 4, 2)
            pts.append(np.clip(pts[-1] + step, 0, size - 1).astype(int))
        cv2.polylines(m, [np.array(pts, np.int32)], False, 1, int(rng.integers(1, 6)))
    if kind in ("blob", "mixed"):
        for _ in range(int(rng.integers(1, 3))):
            c = tuple(int(v) for v in rng.integers(size // 6, size - size // 6, 2))
            ax = tuple(int(v) for v in rng.integers(3, size // 5, 2))
            cv2.ellipse(m, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    if m.sum() == 0:
        m[size // 2, :] = 1
    return m.astype(np.float32)


# -- the network ----------------------------------------------------------------------------------------
class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.c2(F.leaky_relu(self.c1(x), 0.1))


def box_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of each k x k window with zero padding, as two 1-D passes: O(2k) per pixel in
    onnxruntime, where a k x k AveragePool is O(k^2) (at k = 47 it was 78 % of the network's time).
    Divided by :func:`box_sum` of ones it is the mean over the window's in-frame pixels."""
    p = k // 2
    r = F.avg_pool2d(x, (k, 1), 1, (p, 0), count_include_pad=True)
    return F.avg_pool2d(r, (1, k), 1, (0, p), count_include_pad=True)


def coarse_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalised convolution: each hidden pixel gets the mean of the known pixels in the
    smallest window (5, 11, 23, 47 px) that holds enough of them. The network learns the
    residual over this, so it starts from plausible colours instead of black."""
    known = 1.0 - mask
    num = image * known
    out = image * known
    done = torch.zeros_like(mask)
    ones = torch.ones_like(mask)
    for k in (5, 11, 23, 47):
        cnt = box_sum(ones, k)  # in-frame pixels of each window (count_include_pad=False)
        n = box_sum(num, k) / cnt
        d = box_sum(known, k) / cnt
        est = n / (d + 1e-6)
        take = ((d > 0.05).float() * (1.0 - done)) * mask
        out = out + est * take
        done = torch.clamp(done + take, 0.0, 1.0)
    rest = mask * (1.0 - done)  # holes wider than 47 px: the image mean of the known pixels
    mean = num.sum(dim=(2, 3), keepdim=True) / (known.sum(dim=(2, 3), keepdim=True) + 1e-6)
    return out + mean * rest


class InpaintUNet(nn.Module):
    def __init__(self, w: tuple[int, int, int] = (24, 48, 96)) -> None:
        super().__init__()
        self.e1 = _Block(4, w[0])
        self.e2 = _Block(w[0], w[1])
        self.e3 = _Block(w[1], w[2])
        self.mid = nn.Sequential(_Block(w[2], w[2], 2), _Block(w[2], w[2], 4))
        self.u2 = nn.Conv2d(w[2], w[1], 1)
        self.d2 = _Block(2 * w[1], w[1])
        self.u1 = nn.Conv2d(w[1], w[0], 1)
        self.d1 = _Block(2 * w[0], w[0])
        self.out = nn.Conv2d(w[0], 3, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        filled = coarse_fill(image, mask)
        x = torch.cat([filled, mask], 1)
        e1 = self.e1(x)
        e2 = self.e2(F.avg_pool2d(e1, 2))
        e3 = self.e3(F.avg_pool2d(e2, 2))
        m = self.mid(F.avg_pool2d(e3, 2))
        m = F.interpolate(m, scale_factor=2.0, mode="nearest") + e3
        d2 = self.d2(torch.cat([F.interpolate(self.u2(m), scale_factor=2.0, mode="nearest"), e2], 1))
        d1 = self.d1(torch.cat([F.interpolate(self.u1(d2), scale_factor=2.0, mode="nearest"), e1], 1))
        pred = torch.clamp(filled + self.out(d1), 0.0, 1.0)
        return image * (1 - mask) + pred * mask  # known pixels pasted back


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# -- data, loss, evaluation --------------------------------------------------------------------------------
def make_batch(sampler: CropSampler, rng: np.random.Generator, n: int, size: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    ys, ms = [], []
    for _ in range(n):
        ys.append(sampler.crop(size).astype(np.float32) / 255.0)
        ms.append(random_mask(rng, size))
    y = torch.from_numpy(np.stack(ys).transpose(0, 3, 1, 2).copy())
    m = torch.from_numpy(np.stack(ms)[:, None].copy())
    return y, m


def loss_fn(pred: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    ring = (F.max_pool2d(m, 9, 1, 4) - m).clamp(0, 1)
    hole = (pred - y).abs() * m
    seam = (pred - y).abs() * ring
    gx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    gy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    grad = ((gx(pred) - gx(y)).abs() * m[..., :, 1:]).sum() + ((gy(pred) - gy(y)).abs() * m[..., 1:, :]).sum()
    nm = m.sum().clamp_min(1.0) * 3
    return (6 * hole.sum() + seam.sum() + 0.5 * grad) / nm


def cv2_inpaint(y: np.ndarray, m: np.ndarray, method: int = cv2.INPAINT_TELEA) -> np.ndarray:
    u8 = (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)
    u8[m > 0] = 0
    return cv2.inpaint(u8, (m > 0).astype(np.uint8), 5, method).astype(np.float32) / 255.0


def val_set(seed: int = 4321, n: int = 48, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    sampler = CropSampler(discover("val"), rng)
    return make_batch(sampler, rng, n, size)


@torch.no_grad()
def evaluate(net: nn.Module, vs: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """PSNR inside the holes: the network, and OpenCV's Telea inpainting on the same crops."""
    net.eval()
    y, m = vs
    p = net(y, m)
    net.train()
    out: dict[str, list[float]] = {"net": [], "cv2_telea": []}
    for i in range(y.shape[0]):
        yi = y[i].permute(1, 2, 0).numpy()
        mi = m[i, 0].numpy() > 0
        pi = p[i].permute(1, 2, 0).numpy()
        ci = cv2_inpaint(yi, mi)
        for k, img in (("net", pi), ("cv2_telea", ci)):
            mse = float(np.mean((img[mi] - yi[mi]) ** 2))
            out[k].append(10 * math.log10(1 / max(mse, 1e-10)))
    return {k: float(np.mean(v)) for k, v in out.items()}


def export_onnx(net: nn.Module, path: Path) -> None:
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(net, (torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)), str(tmp),
                      input_names=["image", "mask"], output_names=["inpainted"],
                      dynamic_axes={"image": {2: "height", 3: "width"}, "mask": {2: "height", 3: "width"},
                                    "inpainted": {2: "height", 3: "width"}},
                      opset_version=17, dynamo=False)
    tmp.replace(path)
    net.train()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=90.0, help="total training time budget")
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "inpaint")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "inpaint.onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-every", type=float, default=300.0, help="seconds of training between validations")
    ap.add_argument("--export-only", action="store_true")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    ckpt_path = run / "ckpt.pt"
    log_path = run / "log.jsonl"
    net = InpaintUNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    state: dict[str, float] = {"elapsed": 0.0, "step": 0}
    rng = np.random.default_rng(args.seed)
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        rng.bit_generator.state = ck["rng"]
        print(f"resumed at step {int(state['step'])}, {state['elapsed'] / 60:.1f} min", flush=True)
    if args.export_only:
        export_onnx(net, args.out)
        print(f"exported {args.out}")
        return
    print(f"params {count_params(net):,}", flush=True)
    sampler = CropSampler(discover("train"), rng)
    vs = val_set()
    budget = args.minutes * 60
    t_last = time.monotonic()
    last_ckpt = last_val = state["elapsed"]
    losses: list[float] = []

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "state": state,
                    "rng": rng.bit_generator.state}, tmp)
        tmp.replace(ckpt_path)

    while state["elapsed"] < budget:
        frac = state["elapsed"] / budget
        lr = args.lr * min(1.0, state["step"] / 200) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        y, m = make_batch(sampler, rng, args.batch, args.crop)
        loss = loss_fn(net(y, m), y, m)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        opt.step()
        losses.append(float(loss.item()))
        now = time.monotonic()
        state["elapsed"] += now - t_last
        t_last = now
        state["step"] += 1
        if state["elapsed"] - last_val > args.val_every or state["elapsed"] >= budget:
            last_val = state["elapsed"]
            ps = evaluate(net, vs)
            rec = {"step": int(state["step"]), "min": round(state["elapsed"] / 60, 2), "lr": lr,
                   "loss": float(np.mean(losses[-200:])), **{f"psnr_hole_{k}": round(v, 3) for k, v in ps.items()}}
            print(json.dumps(rec), flush=True)
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            t_last = time.monotonic()
        if state["elapsed"] - last_ckpt > 120:
            last_ckpt = state["elapsed"]
            save()
    save()
    export_onnx(net, args.out)
    print(f"done: {int(state['step'])} steps, exported {args.out}", flush=True)


if __name__ == "__main__":
    main()
