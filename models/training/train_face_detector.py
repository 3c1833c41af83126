"""Train the face detector on composites and export ``models/face_detector.onnx``.

    python -m models.training.train_face_detector --minutes 15
    python -m models.training.train_face_detector --export-only

Composites (``face_composite``) of TRAIN faces (``face_data``, split ``train``) pasted into TRAIN
scenes (``data.discover('train')``) at box widths 10 to 160 px on 192x192 canvases; held-out faces
and held-out scenes are kept for ``eval_faces``. CenterNet targets at stride 4: a Gaussian centre
heat map (focal loss) and log box width/height at the centre cells (L1). Cosine learning rate over
``--minutes``; resumable from ``runs/face_detector/ckpt.pt``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.training import face_composite as fc
from models.training import face_data as fd
from models.training.data import REPO
from models.training.face_nets import Detector, count_params

RUNS = REPO / "runs" / "face_detector"
STRIDE = 4


def targets(boxes: list[tuple[float, float, float, float]], h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gh, gw = h // STRIDE, w // STRIDE
    heat = np.zeros((gh, gw), np.float32)
    size = np.zeros((2, gh, gw), np.float32)
    mask = np.zeros((gh, gw), np.float32)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2 / STRIDE - 0.5, (y0 + y1) / 2 / STRIDE - 0.5
        bw, bh = (x1 - x0) / STRIDE, (y1 - y0) / STRIDE
        sig = max(0.5, 0.12 * math.sqrt(bw * bh))
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sig * sig))
        heat = np.maximum(heat, g)
        ix, iy = int(round(cx)), int(round(cy))
        if 0 <= ix < gw and 0 <= iy < gh:
            heat[iy, ix] = 1.0
            size[:, iy, ix] = (math.log(max(bw, 0.5)), math.log(max(bh, 0.5)))
            mask[iy, ix] = 1.0
    return heat, size, mask


def focal(logit: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    neg = 1 - pos
    lp = -torch.log(p) * (1 - p) ** 2 * pos
    ln = -torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return (lp.sum() + ln.sum()) / n


def make_batch(scenes: list[np.ndarray], faces: list[np.ndarray], rng: np.random.Generator, n: int,
               side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, hs, ss, ms = [], [], [], []
    for _ in range(n):
        k = int(rng.choice([0, 1, 2, 3], p=[0.15, 0.45, 0.25, 0.15]))
        img, boxes = fc.composite(scenes, faces, rng, side, side, k, 10, 160, decoys=int(rng.integers(0, 3)))
        h, s, m = targets(boxes, side, side)
        xs.append(img.transpose(2, 0, 1))
        hs.append(h)
        ss.append(s)
        ms.append(m)
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(hs)), torch.from_numpy(np.stack(ss)),
            torch.from_numpy(np.stack(ms)))


def export(net: Detector, path: Path) -> None:
    net.eval()
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(net, (torch.rand(1, 3, 256, 320),), str(tmp), input_names=["image"], output_names=["maps"],
                      dynamic_axes={"image": {2: "h", 3: "w"}, "maps": {2: "gh", 3: "gw"}},
                      opset_version=17, dynamo=False)
    tmp.replace(path)
    net.train()
    print("exported", path, path.stat().st_size, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--side", type=int, default=192)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    RUNS.mkdir(parents=True, exist_ok=True)
    ck = RUNS / "ckpt.pt"
    net = Detector()
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    elapsed, it = 0.0, 0
    if ck.is_file():
        s = torch.load(ck)
        net.load_state_dict(s["net"])
        opt.load_state_dict(s["opt"])
        elapsed, it = s["elapsed"], s["it"]
    out_path = REPO / "models" / "face_detector.onnx"
    if a.export_only:
        export(net, out_path)
        return
    print(f"params {count_params(net)}", flush=True)
    scenes = fc.load_scenes("train", 700)
    _, faces = fd.load_faces_raw("train")
    rng = np.random.default_rng(it + 5)
    t0 = time.time() - elapsed
    last = time.time()
    while time.time() - t0 < a.minutes * 60:
        frac = (time.time() - t0) / (a.minutes * 60)
        for g in opt.param_groups:
            g["lr"] = a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        x, heat, size, mask = make_batch(scenes, faces, rng, a.batch, a.side)
        out = net(x)
        lh = focal(out[:, 0], heat)
        ls = (F.l1_loss(out[:, 1:], size, reduction="none") * mask[:, None]).sum() / mask.sum().clamp(min=1)
        loss = lh + 0.5 * ls
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        if it % 50 == 0:
            print(f"it {it} t {time.time() - t0:.0f}s heat {lh.item():.3f} size {ls.item():.3f}", flush=True)
        if time.time() - last > 120:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": time.time() - t0, "it": it}, ck)
            last = time.time()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": time.time() - t0, "it": it}, ck)
    export(net, out_path)


if __name__ == "__main__":
    main()
