"""Train the quality model (perceived quality 1..10 from pixels alone).

    python -m models.training.train_quality --minutes 12          # data + training + export
    python -m models.training.train_quality --export-only

No human ratings are at hand, so the target is built from full-reference measures between a
degraded crop and its clean original (``quality_target``), and a pairwise ranking loss keeps the
order between versions of the same crop. Every degradation of ``engine.assess.degrade`` is covered
(blur kinds, noise kinds, clipping, JPEG) plus the tonal ones (under/over exposure, low
contrast, haze, colour cast, desaturation), and, when a restorer ONNX exists, restorer outputs
(so that Q is calibrated on what the enhancer produces: its delta labels depend on it).

Writes ``runs/quality/quality_torch.pt`` (the torch weights; the tone model uses QualityNet as a
differentiable loss term) and ``models/quality.onnx``. See models/quality.md.
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

from engine.assess import degrade as dg
from engine.assess import metrics
from models.training.data import REPO, CropSampler, discover
from models.training.nets_assess import QualityNet, count_params

RUN = REPO / "runs" / "quality"


def _half(x: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.resize(x, (max(1, x.shape[1] // 2), max(1, x.shape[0] // 2)),
                                 interpolation=cv2.INTER_AREA))


def fr_measures(clean: np.ndarray, img: np.ndarray, colour_scale: float = 1.0) -> dict[str, float]:
    """Full-reference measures of ``img`` against ``clean`` (float HxWx3 0..1) and the quality target.

    ``colour_scale`` < 1 computes CIEDE2000 on a reduced copy (colour shifts are low-frequency;
    used for whole photos, where the full-size computation would dominate the label cost).
    """
    c = np.clip(clean, 0, 1).astype(np.float32)
    v = np.clip(img, 0, 1).astype(np.float32)
    s1 = metrics.ssim(v, c)
    ch, vh = _half(c), _half(v)
    s2 = metrics.ssim(vh, ch)
    if colour_scale < 1.0 and min(c.shape[:2]) * colour_scale >= 16:
        sz = (max(1, round(c.shape[1] * colour_scale)), max(1, round(c.shape[0] * colour_scale)))
        de = metrics.ciede2000(cv2.resize(v, sz, interpolation=cv2.INTER_AREA),
                               cv2.resize(c, sz, interpolation=cv2.INTER_AREA))
    else:
        de = metrics.ciede2000(v, c)
    ss = float(np.clip(0.15 * s1 + 0.85 * s2, 0.0, 1.0))
    ds = float(np.clip((1.0 - ss) / 0.5, 0.0, 1.0)) ** 0.75
    dc = float(np.clip((de - 1.0) / 45.0, 0.0, 1.0)) ** 0.85
    d = 1.0 - (1.0 - ds) * (1.0 - dc)
    return {"ssim": s1, "ssim_half": s2, "ciede2000": de, "quality": 10.0 - 9.0 * d}


def quality_target(clean: np.ndarray, img: np.ndarray) -> float:
    """Full-reference quality 1..10 of ``img`` against ``clean`` (float HxWx3 0..1).

    ``10 - 9 * D`` with ``D = 1 - (1 - d_struct) * (1 - d_colour)``:

    * ``d_struct`` from SSIM, weighted 0.15 at full scale and 0.85 at half scale (viewing at a
      normal distance: plain full-scale SSIM rates sigma-15 noise worse than JPEG q10, which
      people do not), mapped ``clip((1 - s) / 0.5) ** 0.75``;
    * ``d_colour`` from the mean CIEDE2000 difference (SSIM is nearly blind to exposure and
      colour shifts), ``clip((dE - 1) / 45) ** 0.85`` (1 is about a just noticeable difference).

    Calibrated on training crops so that, on average: JPEG q90 ~ 9.1, q50 ~ 8.0, q10 ~ 5.7;
    Gaussian noise sigma 15 ~ 5.0, 25 ~ 3.2, 50 ~ 1.4; Gaussian blur sigma 0.8 ~ 8.4, 1.8 ~ 5.6;
    1 stop under ~ 5.6, 3 stops under ~ 1.0; strong haze ~ 2.4; mild cast ~ 9.3 (models/quality.md).
    """
    return fr_measures(clean, img)["quality"]


class OnnxRestorer:
    """Direct onnxruntime use of the restorer contract (training code only; the app uses engine.enhance.restore)."""

    def __init__(self, path: Path, threads: int = 1, jpeg_zone: int | None | str = "engine") -> None:
        """``jpeg_zone``: as ``engine.enhance.levels.restore_jpeg_level`` (default: the engine's)."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.path = path
        self.jpeg_zone = jpeg_zone

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w, _ = img.shape
        ph, pw = (-h) % 8, (-w) % 8
        x = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else img
        feed = {"image": x.transpose(2, 0, 1)[None].astype(np.float32)}
        if "levels" in {i.name for i in self.sess.get_inputs()}:  # level-aware (version 2): as the engine tells it
            from engine.enhance import levels

            zone = levels.JPEG_ZONE if isinstance(self.jpeg_zone, str) else self.jpeg_zone
            feed["levels"] = np.array([[levels.noise_level(img) * levels.NOISE_SCALE,
                                        levels.restore_jpeg_level(levels.jpeg_quality(img), zone)]], np.float32)
        y = self.sess.run(None, feed)[0][0]
        return np.clip(y.transpose(1, 2, 0)[:h, :w], 0, 1).astype(np.float32)


def find_restorer() -> Path | None:
    for p in (REPO / "models" / "restorer.onnx", REPO / "runs" / "restorer" / "restorer_latest.onnx"):
        if p.exists():
            return p
    return None


GROUP = 5


def make_group(u: np.ndarray, rng: np.random.Generator, restorer: OnnxRestorer | None
               ) -> tuple[list[np.ndarray], list[float], list[str]]:
    """Versions of one clean crop: clean, blind, single-stage, tonal, restored (or blind again)."""
    blind = dg.DegradeConfig(p_clean=0.0, p_saturation=0.15)
    imgs: list[np.ndarray] = [u]
    kinds = ["clean"]
    r1 = dg.degrade(u, rng, blind)
    imgs.append(r1.image)
    kinds.append("+".join(a.kind for a in r1.applied))
    stage = str(rng.choice(["blur", "noise", "jpeg", "saturation"], p=[0.35, 0.35, 0.2, 0.1]))
    if stage == "blur":
        v, a = dg.apply_blur(u, rng)
    elif stage == "noise":
        v, a = dg.apply_noise(u, rng)
    elif stage == "jpeg":
        v, a = dg.apply_jpeg(u, rng)
    else:
        v, a = dg.apply_saturation(u, rng)
    imgs.append(np.clip(v, 0, 1).astype(np.float32))
    kinds.append(a.kind)
    t = dg.tone_degrade(u, rng)
    tv = t.image
    tk = "+".join(a.kind for a in t.applied)
    if rng.random() < 0.3:
        r = dg.degrade(tv, rng, blind)
        tv = r.image
        tk += "+" + "+".join(a.kind for a in r.applied)
    imgs.append(tv)
    kinds.append(tk)
    if restorer is not None:
        imgs.append(restorer(r1.image))
        kinds.append("restored")
    else:
        r2 = dg.degrade(u, rng, blind)
        imgs.append(r2.image)
        kinds.append("+".join(a.kind for a in r2.applied))
    targets = [quality_target(u, v) for v in imgs]
    return imgs, targets, kinds


def make_data(split: str, n_groups: int, size: int, seed: int, budget_s: float,
              restorer: OnnxRestorer | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sampler = CropSampler(discover(split), rng)
    xs: list[np.ndarray] = []
    ts: list[float] = []
    ks: list[str] = []
    t0 = time.monotonic()
    for i in range(n_groups):
        if time.monotonic() - t0 > budget_s:
            break
        u = dg.to_float(sampler.crop(size))
        imgs, targets, kinds = make_group(u, rng, restorer)
        xs += [dg.to_uint8(v) for v in imgs]
        ts += targets
        ks += kinds
        if i % 200 == 0:
            print(f"  {split}: {i} groups, {time.monotonic() - t0:.0f}s", flush=True)
    return {"x": np.stack(xs), "t": np.array(ts, np.float32), "kind": np.array(ks)}


def pairwise_loss(pred: torch.Tensor, target: torch.Tensor, group: int) -> torch.Tensor:
    """Margin ranking between versions of the same crop whose targets differ by > 0.5."""
    p = pred.reshape(-1, group)
    t = target.reshape(-1, group)
    dp = p[:, :, None] - p[:, None, :]
    dt = t[:, :, None] - t[:, None, :]
    mask = (dt > 0.5).float()
    loss = torch.relu(0.25 * dt.clamp(max=2.0) - dp) * mask
    return loss.sum() / mask.sum().clamp_min(1.0)


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


def _rank(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a), np.float64)
    r[order] = np.arange(len(a))
    # average ties
    vals, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=r)
    return np.asarray((sums / counts)[inv])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(_rank(np.asarray(a)), _rank(np.asarray(b)))


@torch.no_grad()
def predict(net: QualityNet, x: np.ndarray) -> np.ndarray:
    net.eval()
    out = [net(to_tensor(x[i : i + 128])).numpy() for i in range(0, len(x), 128)]
    net.train()
    return np.concatenate(out)


def metrics_of(net: QualityNet, data: dict[str, np.ndarray]) -> dict[str, float]:
    p = predict(net, data["x"])
    t = data["t"]
    # pairwise order within groups: share of pairs (target gap > 0.5) ranked right
    pg, tg = p.reshape(-1, GROUP), t.reshape(-1, GROUP)
    dt = tg[:, :, None] - tg[:, None, :]
    dp = pg[:, :, None] - pg[:, None, :]
    m = dt > 0.5
    return {"pearson": round(pearson(p, t), 4), "spearman": round(spearman(p, t), 4),
            "mae": round(float(np.abs(p - t).mean()), 3),
            "pair_acc": round(float((dp[m] > 0).mean()), 4)}


def export_onnx(net: QualityNet, path: Path) -> None:
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(net, (torch.rand(1, 3, 96, 96),), str(tmp), input_names=["image"],
                      output_names=["quality"],
                      dynamic_axes={"image": {0: "n", 2: "height", 3: "width"}, "quality": {0: "n"}},
                      opset_version=17, dynamo=False)
    tmp.replace(path)
    net.train()


def save(net: QualityNet, opt: torch.optim.Optimizer, state: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "state": state, "config": {}}, tmp)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=12.0, help="training time budget (after data)")
    ap.add_argument("--data-minutes", type=float, default=6.0, help="time budget for making the training data")
    ap.add_argument("--groups", type=int, default=2400, help="max clean crops (x5 versions) for training")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch-groups", type=int, default=12)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--remake-data", action="store_true")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--onnx", type=Path, default=REPO / "models" / "quality.onnx")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    RUN.mkdir(parents=True, exist_ok=True)
    ckpt = RUN / "quality_torch.pt"
    net = QualityNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    state: dict = {"elapsed": 0.0, "step": 0}
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=False)
        net.load_state_dict(ck["model"])
        if "opt" in ck:
            opt.load_state_dict(ck["opt"])
        state = ck.get("state", state)
        print(f"resumed at step {state['step']}", flush=True)
    if args.export_only:
        export_onnx(net, args.onnx)
        print(f"exported {args.onnx}")
        return
    print(f"QualityNet params {count_params(net):,}", flush=True)

    rpath = find_restorer()
    restorer = OnnxRestorer(rpath) if rpath else None
    print(f"restorer for 'restored' samples: {rpath}", flush=True)
    tr_path, va_path = RUN / "train_data.npz", RUN / "val_data.npz"
    if args.remake_data or not tr_path.exists():
        t0 = time.monotonic()
        tr = make_data("train", args.groups, args.size, args.seed, args.data_minutes * 60, restorer)
        np.savez(tr_path, **tr)
        va = make_data("val", 160, args.size, args.seed + 1, 120, restorer)
        np.savez(va_path, **va)
        print(f"data: {len(tr['x'])} train, {len(va['x'])} val images in {time.monotonic() - t0:.0f}s", flush=True)
    tr = dict(np.load(tr_path))
    va = dict(np.load(va_path))
    n_groups = len(tr["x"]) // GROUP
    rng = np.random.default_rng(args.seed + 2)
    budget = args.minutes * 60 + state["elapsed"] if state["step"] else args.minutes * 60
    t_last = time.monotonic()
    last_save = state["elapsed"]
    log = (RUN / "log.jsonl").open("a")
    while state["elapsed"] < budget:
        frac = state["elapsed"] / budget
        lr = args.lr * min(1.0, (state["step"] + 1) / 100) * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        gi = rng.choice(n_groups, args.batch_groups, replace=False)
        idx = (gi[:, None] * GROUP + np.arange(GROUP)[None]).reshape(-1)
        xb = tr["x"][idx]
        # flips/rotations keep the target (the degradations are isotropic on average)
        k = int(rng.integers(0, 4))
        xb = np.ascontiguousarray(np.rot90(xb, k, axes=(1, 2)))
        x = to_tensor(xb)
        t = torch.from_numpy(tr["t"][idx])
        p = net(x)
        loss = torch.nn.functional.smooth_l1_loss(p, t) + 0.5 * pairwise_loss(p, t, GROUP)
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["step"] += 1
        now = time.monotonic()
        state["elapsed"] += now - t_last
        t_last = now
        if state["elapsed"] - last_save > 90 or state["elapsed"] >= budget:
            last_save = state["elapsed"]
            save(net, opt, state, ckpt)
            m = metrics_of(net, va)
            rec = {"step": state["step"], "min": round(state["elapsed"] / 60, 2), "lr": lr,
                   "loss": round(float(loss), 4), **{f"val_{k}": v for k, v in m.items()}}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            t_last = time.monotonic()
    save(net, opt, state, ckpt)
    export_onnx(net, args.onnx)
    m = metrics_of(net, va)
    per_kind: dict[str, list[float]] = {}
    p = predict(net, va["x"])
    for kk, pp, tt in zip(va["kind"], p, va["t"], strict=True):
        key = "restored" if kk == "restored" else ("clean" if kk == "clean" else str(kk).split("+")[0])
        per_kind.setdefault(key, []).append(abs(float(pp) - float(tt)))
    summary = {"final": m, "mae_by_first_kind": {k: round(float(np.mean(v)), 2) for k, v in sorted(per_kind.items())},
               "train_images": len(tr["x"]), "val_images": len(va["x"]), "steps": state["step"],
               "minutes": round(state["elapsed"] / 60, 1), "restorer": str(rpath)}
    (RUN / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
