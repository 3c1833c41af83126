"""Train the face detector on composites and export ``models/face_detector.onnx``.

    python -m models.training.train_face_detector --minutes 15
    python -m models.training.train_face_detector --export-only
    python -m models.training.train_face_detector --minutes 25 --run face_detector_hn \
        --init-onnx models/face_detector.onnx --real train,scenes --export-to runs/face_detector_hn/face_detector.onnx

Composites (``face_composite``) of TRAIN faces (``face_data``, split ``train``) pasted into TRAIN
scenes (``data.discover('train')``) at box widths 10 to 160 px on 192x192 canvases; held-out faces
and held-out scenes are kept for ``eval_faces``. CenterNet targets at stride 4: a Gaussian centre
heat map (focal loss) and log box width/height at the centre cells (L1). Cosine learning rate over
``--minutes``; resumable from ``runs/<run>/ckpt.pt``.

``--real train,scenes`` mixes in real photos (``--real-share`` of each batch): crops of the photos
of each labelled part (CLIVE train; the TRAIN scene photos) around the boxes a detector returned
there and that were labelled by eye (``face_boxes_real``: ``runs/face_real/<part>_boxes.json`` and
``models/training/face_boxes_real_<part>.csv``): the boxes labelled "not a face" (lamps, flowers,
text, patterns) as hard negatives, those labelled "face" as real positives. With ``scenes``, the
scene photos with a labelled face are no longer composite backgrounds (their faces were negatives). ``--init-onnx`` starts
from an exported detector (its batch norms are folded into the convolutions, so they stay frozen
as identities while fine-tuning).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from models.training import face_composite as fc
from models.training import face_data as fd
from models.training.data import REPO
from models.training.face_nets import Detector, count_params

RUNS = REPO / "runs"
STRIDE = 4


def load_fused_onnx(net: Detector, path: Path) -> None:
    """Initialise ``net`` from an exported detector: the stage convolutions were exported with
    their batch norms folded in (anonymous initializers, in graph order), the 1x1 and head
    convolutions by name. The batch norms become identities; keep them frozen (:func:`freeze_bn`)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    stage = [mod for name, mod in net.named_modules()
             if isinstance(mod, torch.nn.Conv2d) and name.startswith(("s1.", "s2.", "s3.", "s4.", "s5."))]
    anon = [n for n in convs if n.input[1] not in ("l2.weight", "l3.weight", "l4.weight", "l5.weight",
                                                    "head.0.weight", "head.2.weight")]
    assert len(anon) == len(stage), (len(anon), len(stage))
    with torch.no_grad():
        for node, conv in zip(anon, stage, strict=True):
            conv.weight.copy_(torch.from_numpy(np.array(inits[node.input[1]])))
            conv.bias.copy_(torch.from_numpy(np.array(inits[node.input[2]])))  # type: ignore[union-attr]
        sd = net.state_dict()
        for k in sd:
            if k.split(".")[0] in ("l2", "l3", "l4", "l5", "head"):
                sd[k].copy_(torch.from_numpy(np.array(inits[k])))
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.fill_(1.0)
                mod.bias.zero_()
                mod.running_mean.zero_()  # type: ignore[operator]
                mod.running_var.fill_(1.0 - mod.eps)  # type: ignore[operator]


def freeze_bn(net: Detector) -> None:
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
            for q in mod.parameters():
                q.requires_grad_(False)


class RealCrops:
    """Crops of labelled real photos around the detector's own boxes (see the module doc)."""

    def __init__(self, splits: list[str]) -> None:
        from models.training.face_boxes_real import OUT, load_photo

        self.photos: dict[str, np.ndarray] = {}
        self.faces: dict[str, list[list[float]]] = {}
        self.items: list[tuple[str, list[float], int]] = []
        for split in splits:
            rows = json.loads((OUT / f"{split}_boxes.json").read_text())
            with open(Path(__file__).with_name(f"face_boxes_real_{split}.csv"), newline="") as f:
                lab = {int(r["index"]): int(r["label"]) for r in csv.DictReader(f)}
            for r in rows:
                if r["i"] not in lab:
                    continue
                name = r["photo"]
                if name not in self.photos:
                    rgb = load_photo(name)
                    if rgb is None:
                        continue
                    self.photos[name] = rgb.astype(np.float32) / 255.0
                    self.faces[name] = []
                if lab[r["i"]]:
                    self.faces[name].append(r["box"])
                self.items.append((name, r["box"], lab[r["i"]]))
        self.pos = [it for it in self.items if it[2]]
        # a photo with a labelled face may hold more faces the detector did not box (a crowd):
        # its other boxes are not used as negatives
        self.neg = [it for it in self.items if not it[2] and not self.faces[it[0]]]
        print(f"real crops: {len(self.pos)} faces, {len(self.neg)} hard negatives (photos without a labelled face), "
              f"{len(self.photos)} photos", flush=True)

    def photos_with_faces(self) -> set[str]:
        return {k for k, v in self.faces.items() if v}

    def sample(self, rng: np.random.Generator, side: int) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
        positive = bool(self.pos and rng.random() < 0.3)
        pool = self.pos if positive else self.neg
        name, box, _ = pool[int(rng.integers(len(pool)))]
        img = self.photos[name]
        h, w = img.shape[:2]
        bx0, by0, bx1, by1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
        bs = max(bx1 - bx0, by1 - by0, 4.0)
        # a face is cropped tightly (little room for the unlabelled faces of a group), a negative
        # with its context; after resizing the box is 38-150 px
        hi = 2.5 if positive else 5.0
        cs = float(min(min(w, h), max(side / 8, bs * rng.uniform(1.3, hi))))
        x0 = float(rng.uniform(max(0.0, bx1 - cs), max(0.0, min(w - cs, bx0)) + 1e-3))
        y0 = float(rng.uniform(max(0.0, by1 - cs), max(0.0, min(h - cs, by0)) + 1e-3))
        x0, y0 = min(max(0.0, x0), w - cs), min(max(0.0, y0), h - cs)
        k = side / cs
        M = np.float32([[k, 0, -x0 * k], [0, k, -y0 * k]])
        crop = cv2.warpAffine(img, M, (side, side), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
        boxes = []
        for f in self.faces[name]:
            fx0, fy0, fx1, fy1 = (f[0] * w - x0) * k, (f[1] * h - y0) * k, (f[2] * w - x0) * k, (f[3] * h - y0) * k
            if 0 <= (fx0 + fx1) / 2 < side and 0 <= (fy0 + fy1) / 2 < side:
                boxes.append((fx0, fy0, fx1, fy1))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
            boxes = [(side - b[2], b[1], side - b[0], b[3]) for b in boxes]
        return np.ascontiguousarray(crop), boxes


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
               side: int, real: RealCrops | None = None, real_share: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, hs, ss, ms = [], [], [], []
    for _ in range(n):
        if real is not None and rng.random() < real_share:
            img, boxes = real.sample(rng, side)
        else:
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
    ap.add_argument("--run", default="face_detector", help="run folder under runs/ (its ckpt.pt is resumed)")
    ap.add_argument("--init-onnx", type=Path, default=None, help="with no checkpoint: start from this export")
    ap.add_argument("--real", default=None,
                    help="comma list of labelled parts to mix in: train (CLIVE) and/or scenes (module doc)")
    ap.add_argument("--real-share", type=float, default=0.35)
    ap.add_argument("--export-to", type=Path, default=None, help="default: models/face_detector.onnx")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    run = RUNS / a.run
    run.mkdir(parents=True, exist_ok=True)
    ck = run / "ckpt.pt"
    net = Detector()
    fused = a.init_onnx is not None
    if fused and not ck.is_file():
        load_fused_onnx(net, a.init_onnx)
    elapsed, it = 0.0, 0
    state = torch.load(ck) if ck.is_file() else None
    if state is not None:
        net.load_state_dict(state["net"])
        elapsed, it = state["elapsed"], state["it"]
        fused = fused or bool(state.get("fused"))
    if fused:
        freeze_bn(net)
    opt = torch.optim.AdamW([q for q in net.parameters() if q.requires_grad], lr=a.lr, weight_decay=1e-4)
    if state is not None:
        opt.load_state_dict(state["opt"])
    out_path = a.export_to or REPO / "models" / "face_detector.onnx"
    if a.export_only:
        export(net, out_path)
        return
    print(f"params {count_params(net)}", flush=True)
    _, faces = fd.load_faces_raw("train")
    real = RealCrops(a.real.split(",")) if a.real else None
    if real is not None and "scenes" in a.real.split(","):
        # the scene photos with a real face (labelled) are no background for composites: their
        # faces would be negatives; they come in through the real crops, faces labelled
        from models.training.data import discover, load_rgb

        skip = real.photos_with_faces()
        paths = [p for p in discover("train") if str(p.path) not in skip]
        scenes = [load_rgb(p, 700) for p in paths]
        print(f"composite backgrounds: {len(scenes)} scenes ({len(skip)} with labelled faces left out)", flush=True)
    else:
        scenes = fc.load_scenes("train", 700)
    rng = np.random.default_rng(it + 5)
    t0 = time.time() - elapsed
    last = time.time()
    while time.time() - t0 < a.minutes * 60:
        frac = (time.time() - t0) / (a.minutes * 60)
        for g in opt.param_groups:
            g["lr"] = a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        x, heat, size, mask = make_batch(scenes, faces, rng, a.batch, a.side, real, a.real_share)
        if fused:
            freeze_bn(net)
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
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": time.time() - t0, "it": it,
                        "fused": fused}, ck)
            last = time.time()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": time.time() - t0, "it": it,
                        "fused": fused}, ck)
    export(net, out_path)


if __name__ == "__main__":
    main()
