"""Train the face restorer in two stages and export ``models/face_restorer.onnx``.

    python -m models.training.train_face_restorer --stage codebook --minutes 10
    python -m models.training.train_face_restorer --stage restore --minutes 35
    python -m models.training.train_face_restorer --stage restore --export-only

Stage ``codebook`` learns the codebook on clean training faces (a VQ autoencoder, EMA codebook,
``runs/face_vq/ckpt.pt``). Stage ``restore`` starts from it, freezes the codebook and trains the
restorer on (``face_data.random_degrade`` -> clean) pairs with ``w`` drawn per sample (0 half of
the time, else uniform): L1 to the clean face at every ``w`` plus, for the encoder, an L2 pull of
its bottleneck features towards the codes the clean face selects (so the generated path at ``w=1``
starts from the right codes). Cosine learning rate over ``--minutes``; resumable; checkpoints
every two minutes under ``runs/face_restorer/``. Held-out faces (``face_data``, split ``val``)
are only used for the log line.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from engine.assess import degrade as dg
from models.training import face_data as fd
from models.training.data import REPO
from models.training.face_nets import Export, FaceRestorer, FaceVQ, count_params

RUNS = REPO / "runs"


def batch_clean(faces: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    idx = rng.integers(0, len(faces), n)
    return np.stack([fd.augment(faces[i], rng) for i in idx])


def to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).float()


def val_psnr(net: FaceRestorer, val: np.ndarray, w: float, n: int = 64) -> float:
    rng = np.random.default_rng(7)
    xs = np.stack([fd.apply(f, fd.LEVELS["strong"], rng) for f in val[:n]])
    ys = val[:n].astype(np.float32) / 255.0
    net.eval()
    with torch.no_grad():
        out = []
        for i in range(0, n, 16):
            x = to_t(xs[i : i + 16])
            out.append(net(x, torch.full((x.shape[0], 1, 1, 1), w), torch.zeros(x.shape[0], 1, 128, 128)))
        y = torch.cat(out).clamp(0, 1).numpy().transpose(0, 2, 3, 1)
    net.train()
    mse = ((y - ys) ** 2).reshape(n, -1).mean(1)
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def train_codebook(minutes: float, batch: int) -> None:
    out = RUNS / "face_vq"
    out.mkdir(parents=True, exist_ok=True)
    ck = out / "ckpt.pt"
    net = FaceVQ()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    elapsed = 0.0
    it = 0
    if ck.is_file():
        s = torch.load(ck)
        net.load_state_dict(s["net"])
        opt.load_state_dict(s["opt"])
        elapsed, it = s["elapsed"], s["it"]
    faces = fd.load_faces("train")
    rng = np.random.default_rng(it + 1)
    print(f"params {count_params(net)}", flush=True)
    t0 = time.time() - elapsed
    last = time.time()
    while (time.time() - t0) < minutes * 60:
        frac = (time.time() - t0) / (minutes * 60)
        for g in opt.param_groups:
            g["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        x = to_t(batch_clean(faces, rng, batch))
        y, commit = net(x)
        loss = F.l1_loss(y, x) + 0.25 * commit
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        if it % 50 == 0:
            used = int((net.cb.ema_n > 0.01).sum())
            print(f"it {it} t {time.time() - t0:.0f}s loss {loss.item():.4f} codes used {used}", flush=True)
        if time.time() - last > 120:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": time.time() - t0, "it": it}, ck)
            last = time.time()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": time.time() - t0, "it": it}, ck)
    print("done", it, flush=True)


def load_onnx_weights(net: FaceRestorer, path: Path) -> None:
    """Initialise ``net`` from an exported ``face_restorer.onnx`` (its initializers keep the
    parameter names under ``net.``); the codebook's EMA statistics are not exported and are only
    used by stage 1."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    sd = net.state_dict()
    missing = []
    for k in sd:
        a = inits.get("net." + k, inits.get(k))
        if a is None:
            missing.append(k)
        else:
            sd[k] = torch.from_numpy(np.array(a)).reshape(sd[k].shape)
    net.load_state_dict(sd)
    print(f"initialised from {path.name}; not in the file: {missing}", flush=True)


def mild_degrade(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A face with little wrong: one of a good JPEG (q60-95), faint noise or a slight blur."""
    img = dg.to_float(u)
    k = rng.integers(0, 3)
    if k == 0:
        img = dg.jpeg(img, int(rng.integers(60, 96)), subsampling=bool(rng.random() < 0.7))
    elif k == 1:
        img = img + rng.normal(0, float(rng.uniform(1, 5)) / 255.0, img.shape).astype(np.float32)
    else:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 0.7)))
    return np.clip(img, 0, 1).astype(np.float32)


def degrade_for_training(u: np.ndarray, rng: np.random.Generator, clean_share: float) -> np.ndarray:
    """``face_data.random_degrade``, except that a ``clean_share`` of the faces is left as it is
    and as many again only mildly degraded (target: the clean face in both cases), so the
    restorer learns to leave a face with nothing (or little) to fix alone instead of smoothing it."""
    r = rng.random()
    if r < clean_share:
        return dg.to_float(u).astype(np.float32)
    if r < 2 * clean_share:
        return mild_degrade(u, rng)
    return fd.random_degrade(u, rng)


def train_restore(minutes: float, batch: int, lr: float, crop: int, init_onnx: Path | None = None,
                  run: str = "face_restorer", clean_share: float = 0.0,
                  export_to: Path | None = None) -> None:
    out = RUNS / run
    out.mkdir(parents=True, exist_ok=True)
    ck = out / "ckpt.pt"
    net = FaceRestorer()
    opt_state = None
    elapsed, it = 0.0, 0
    if ck.is_file():
        s = torch.load(ck)
        net.load_state_dict(s["net"])
        opt_state = s["opt"]
        elapsed, it = s["elapsed"], s["it"]
    elif init_onnx is not None:
        load_onnx_weights(net, init_onnx)
    if (RUNS / "face_vq" / "ckpt.pt").is_file():
        vq = FaceVQ()
        vq.load_state_dict(torch.load(RUNS / "face_vq" / "ckpt.pt")["net"])
        if not ck.is_file() and init_onnx is None:
            net.enc.load_state_dict(vq.enc.state_dict())
            net.cb.load_state_dict(vq.cb.state_dict())
            net.dec.load_state_dict(vq.dec.state_dict(), strict=False)
        teacher_enc, teacher_cb = vq.enc, vq.cb
    elif init_onnx is not None:
        # no stage-1 checkpoint: the clean face's codes come from a frozen copy of the
        # initial encoder (it was pulled towards stage 1's codes while it trained)
        # (also when resuming: the teacher is the initial model, not the resumed one)
        frozen = FaceRestorer()
        load_onnx_weights(frozen, init_onnx)
        teacher_enc, teacher_cb = frozen.enc, frozen.cb
    else:
        raise SystemExit("no runs/face_vq/ckpt.pt: run --stage codebook first, or give --init-onnx")
    for m in (teacher_enc, teacher_cb):
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    # the codebook's codes are buffers (never trained here); its projections stay trainable
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    faces = fd.load_faces("train")
    val = fd.load_faces("val")
    rng = np.random.default_rng(it + 11)
    print(f"params {count_params(net)}", flush=True)
    t0 = time.time() - elapsed
    last = time.time()
    last_val = time.time()
    while (time.time() - t0) < minutes * 60:
        frac = (time.time() - t0) / (minutes * 60)
        for g in opt.param_groups:
            g["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        clean = batch_clean(faces, rng, batch)
        deg = np.stack([degrade_for_training(c, rng, clean_share) for c in clean])
        if crop < 128:  # random aligned crops: a 96x96 crop costs 0.56 of a whole face
            oy, ox = (int(v) * 8 for v in rng.integers(0, (128 - crop) // 8 + 1, 2))
            deg, clean = deg[:, oy : oy + crop, ox : ox + crop], clean[:, oy : oy + crop, ox : ox + crop]
        x, y = to_t(deg), to_t(clean)
        wv = np.where(rng.random(batch) < 0.5, 0.0, rng.random(batch)).astype(np.float32)
        w = torch.from_numpy(wv).reshape(-1, 1, 1, 1)
        noise = torch.randn(batch, 1, x.shape[2], x.shape[3])
        h, q, skips = net.features(x, w)
        b = w * net.cb.post(q) + (1 - w) * net.cb.post(h)
        pred = x + net.dec(b, skips, 1 - w, w, noise)
        with torch.no_grad():
            zc, _ = teacher_enc(y)
            qc, _ = teacher_cb.nearest(teacher_cb.pre(zc))
        loss = F.l1_loss(pred, y) + 0.1 * F.mse_loss(h, qc)
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        if it % 50 == 0:
            print(f"it {it} t {time.time() - t0:.0f}s loss {loss.item():.4f}", flush=True)
        if time.time() - last_val > 300:
            print(f"val strong PSNR w=0 {val_psnr(net, val, 0.0):.2f} w=1 {val_psnr(net, val, 1.0):.2f}", flush=True)
            last_val = time.time()
        if time.time() - last > 120:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": time.time() - t0, "it": it}, ck)
            last = time.time()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "elapsed": time.time() - t0, "it": it}, ck)
    print(f"done it {it}; val strong PSNR w=0 {val_psnr(net, val, 0.0):.2f} w=1 {val_psnr(net, val, 1.0):.2f}",
          flush=True)
    export(net, export_to or REPO / "models" / "face_restorer.onnx")


def export(net: FaceRestorer, path: Path) -> None:
    net.eval()
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(Export(net), (torch.rand(1, 3, 128, 128), torch.zeros(1), torch.zeros(1, 1, 128, 128)),
                      str(tmp), input_names=["image", "w", "noise"], output_names=["restored"],
                      dynamic_axes={"image": {0: "n"}, "w": {0: "n"}, "noise": {0: "n"}, "restored": {0: "n"}},
                      opset_version=17, dynamo=False)
    tmp.replace(path)
    print("exported", path, path.stat().st_size, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=["codebook", "restore"], required=True)
    ap.add_argument("--minutes", type=float, default=35.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--init-onnx", type=Path, default=None,
                    help="with no checkpoint in runs/face_restorer: start from this exported model's weights")
    ap.add_argument("--run", default="face_restorer",
                    help="run folder under runs/ (its ckpt.pt is resumed)")
    ap.add_argument("--clean-share", type=float, default=0.0,
                    help="share of faces left clean, and as many again mildly degraded (target: clean)")
    ap.add_argument("--export-to", type=Path, default=None,
                    help="where the finished run's ONNX goes (default: models/face_restorer.onnx)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.export_only:
        net = FaceRestorer()
        net.load_state_dict(torch.load(RUNS / a.run / "ckpt.pt")["net"])
        export(net, a.export_to or REPO / "models" / "face_restorer.onnx")
    elif a.stage == "codebook":
        train_codebook(a.minutes, a.batch)
    else:
        train_restore(a.minutes, a.batch, a.lr, a.crop, a.init_onnx, a.run, a.clean_share, a.export_to)


if __name__ == "__main__":
    main()
