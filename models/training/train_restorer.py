"""Train the restorer (deblur / denoise / deblock) and export ``models/restorer.onnx``.

    python -m models.training.train_restorer --minutes 80            # fresh or resumed run
    python -m models.training.train_restorer --export-only           # re-export last checkpoint

Version 2 (level-aware, realistic degradations), warm-started from the blind version 1:

    python -m models.training.train_restorer --arch level --data realistic \
        --init models/restorer.onnx --run-dir runs/restorer2 --minutes 100 --lr 5e-4 \
        --p-clean 0.3 --clean-weight 2 --commit-ckpt models/training/checkpoints/restorer_v2.pt

``--arch level`` is :class:`nets.LevelRestorerUNet` (inputs ``image`` and ``levels``, see
``engine.enhance.levels``; the levels of each training crop are computed from the degraded crop
exactly as the engine computes them from a tile, except the JPEG level, which is the known quality
of the last compression, the engine's estimate of which is checked in eval_restorer).
``--data realistic`` draws pairs from ``engine.assess.degrade.degrade_realistic`` (camera
pipeline, web JPEGs, messaging recompression, the synthetic mix) instead of ``degrade``.
``--sitting-minutes`` stops this sitting early with a checkpoint while the schedule stays tied
to the whole ``--minutes`` budget; ``--commit-ckpt PATH`` also writes a small resumable copy
(weights and optimizer moments in float16) that can be committed and resumed from with
``--resume-from PATH``.

The learning-rate schedule is tied to the time budget (cosine over ``--minutes``), so a run
resumed after a kill continues the same schedule. A checkpoint is written every two minutes
to ``runs/restorer/ckpt.pt``; an interim ONNX (``runs/restorer/restorer_latest.onnx``) every ten,
so downstream pipelines (delta labels) can be built before the run ends.

Training pairs come from ``engine.assess.degrade.degrade`` on clean crops of the training split; the
validation split (``data.is_validation``) is never seen here.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from engine.assess import degrade as dg
from engine.enhance import levels as lv
from models.training.data import REPO, CropSampler, discover
from models.training.nets import LevelRestorerUNet, RestorerUNet, count_params


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


def make_batch(sampler: CropSampler, rng: np.random.Generator, cfg: dg.DegradeConfig, n: int,
               size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _ = make_batch_flags(sampler, rng, cfg, n, size)
    return x, y


def make_batch_flags(sampler: CropSampler, rng: np.random.Generator, cfg: dg.DegradeConfig, n: int,
                     size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Degraded crops, their clean targets, and 1.0 where a crop was left clean."""
    xs, ys, clean = [], [], []
    for _ in range(n):
        u = dg.to_float(sampler.crop(size))
        r = dg.degrade(u, rng, cfg)
        xs.append(r.image)
        ys.append(u)
        clean.append(0.0 if r.applied else 1.0)
    x = torch.from_numpy(np.stack(xs).transpose(0, 3, 1, 2).copy()).float()
    y = torch.from_numpy(np.stack(ys).transpose(0, 3, 1, 2).copy()).float()
    return x, y, torch.tensor(clean)


def last_jpeg_quality(applied: list[dg.Applied]) -> int:
    q = 100
    for a in applied:
        if a.kind == "jpeg":
            q = int(a.params["quality"])
        elif a.kind == "recompress":
            q = int(a.params["qualities"][-1])
    return q


def realistic_batch(sampler: CropSampler, rng: np.random.Generator, n: int, size: int,
                    cfg: dg.RealisticConfig | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Degraded crops, targets, levels (n, 2) and 1.0 where a crop was left clean.

    A messaging copy is made from a crop twice the size (it is downscaled by up to 2); every
    crop is cut from the degraded image at an offset on the 8x8 block grid, as tiles are."""
    xs, ys, lvs, clean = [], [], [], []
    for _ in range(n):
        branch = dg.realistic_branch(rng, cfg)
        src = size * 2 if branch == "messaging" else size
        u = dg.to_float(sampler.crop(src))
        r = dg.degrade_realistic(u, rng, cfg, branch)
        t = r.target if r.target is not None else u
        h, w = r.image.shape[:2]
        y0 = int(rng.integers(0, (h - size) // 8 + 1)) * 8
        x0 = int(rng.integers(0, (w - size) // 8 + 1)) * 8
        img = np.ascontiguousarray(r.image[y0 : y0 + size, x0 : x0 + size])
        xs.append(img)
        ys.append(t[y0 : y0 + size, x0 : x0 + size])
        lvs.append([lv.noise_level(img) * lv.NOISE_SCALE, lv.jpeg_level(last_jpeg_quality(r.applied))])
        clean.append(0.0 if r.applied else 1.0)
    x = torch.from_numpy(np.stack(xs).transpose(0, 3, 1, 2).copy()).float()
    y = torch.from_numpy(np.stack(ys).transpose(0, 3, 1, 2).copy()).float()
    return x, y, torch.tensor(lvs, dtype=torch.float32), torch.tensor(clean)


def batch_levels(x: torch.Tensor, applied: list[list[dg.Applied]]) -> torch.Tensor:
    a = x.numpy().transpose(0, 2, 3, 1)
    return torch.tensor([[lv.noise_level(a[i]) * lv.NOISE_SCALE, lv.jpeg_level(last_jpeg_quality(applied[i]))]
                         for i in range(len(a))], dtype=torch.float32)


def load_init(net: torch.nn.Module, path: Path) -> None:
    """Weights from a checkpoint (``.pt``) or from an exported ONNX file (initializers by name)."""
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
        sd = net.state_dict()
        # a level-aware net starts from a blind one: its FiLM layers keep their identity init
        film = {k for k in sd if k.split(".")[0] in {"f1", "f2", "f3", "fm", "g1", "g2", "g3"}}
        missing = [k for k in sd if k not in inits and k not in film]
        if missing:
            raise SystemExit(f"{path}: no weights for {missing[:5]} (another architecture?)")
        sd.update({k: torch.from_numpy(inits[k].copy()) for k in sd if k in inits})
        net.load_state_dict(sd)
    else:
        net.load_state_dict(torch.load(path, weights_only=False)["model"], strict=False)


ValSet = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def val_set(seed: int = 1234, n: int = 48, size: int = 128) -> ValSet:
    """Fixed validation crops from held-out photos: blind mix, colour Gaussian noise sigma 25,
    clean crops, and (version 2) the realistic mix; each with its levels."""
    rng = np.random.default_rng(seed)
    sampler = CropSampler(discover("val"), rng)
    cfg = dg.DegradeConfig(p_saturation=0.0, p_clean=0.0)
    xs, ys, apps = [], [], []
    for _ in range(n):
        u = dg.to_float(sampler.crop(size))
        r = dg.degrade(u, rng, cfg)
        xs.append(r.image)
        ys.append(u)
        apps.append(r.applied)
    clean = []
    noisy = []
    for _ in range(n):
        u = dg.to_float(sampler.crop(size))
        clean.append(u)
        noisy.append(np.clip(u + rng.normal(0, 25 / 255, u.shape), 0, 1).astype(np.float32))
    t = lambda a: torch.from_numpy(np.stack(a).transpose(0, 3, 1, 2).copy()).float()  # noqa: E731
    out: ValSet = {}
    for name, x, y, ap in (("mixed", t(xs), t(ys), apps), ("sigma25", t(noisy), t(clean), [[]] * n),
                           ("clean", t(clean), t(clean), [[]] * n)):
        out[name] = (x, y, batch_levels(x, ap))
    rx, ry, rl, _ = realistic_batch(sampler, rng, n, size, dg.RealisticConfig(p_clean=0.0))
    out["realistic"] = (rx, ry, rl)
    return out


def run_net(net: torch.nn.Module, x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    return net(x, levels) if isinstance(net, LevelRestorerUNet) else net(x)


@torch.no_grad()
def evaluate(net: torch.nn.Module, vs: ValSet) -> dict[str, float]:
    net.eval()
    out = {}
    for k, (x, y, levels) in vs.items():
        p = run_net(net, x, levels).clamp(0, 1)
        mse = ((p - y) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
        out[k] = float((10 * torch.log10(1 / mse)).mean())
    net.train()
    return out


def export_onnx(net: torch.nn.Module, path: Path) -> None:
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    dummy = torch.rand(1, 3, 64, 64)
    if isinstance(net, LevelRestorerUNet):
        args: tuple[torch.Tensor, ...] = (dummy, torch.zeros(1, LevelRestorerUNet.N_LEVELS))
        names = ["image", "levels"]
    else:
        args, names = (dummy,), ["image"]
    torch.onnx.export(
        net, args, str(tmp), input_names=names, output_names=["restored"],
        dynamic_axes={"image": {2: "height", 3: "width"}, "restored": {2: "height", 3: "width"}},
        opset_version=17, dynamo=False,
    )
    tmp.replace(path)
    net.train()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=80.0, help="total training time budget")
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "restorer")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "restorer.onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from these weights, a checkpoint or an exported .onnx (fine-tuning; fresh optimizer and schedule)")
    ap.add_argument("--p-clean", type=float, default=0.15,
                    help="share of crops left clean (identity target): keeps clean photos untouched")
    ap.add_argument("--clean-weight", type=float, default=1.0,
                    help="loss weight of the clean crops relative to degraded ones")
    ap.add_argument("--arch", choices=["blind", "level"], default="blind")
    ap.add_argument("--data", choices=["synthetic", "realistic"], default="synthetic")
    ap.add_argument("--sitting-minutes", type=float, default=None,
                    help="stop this sitting after this long (checkpointed); the schedule runs over --minutes")
    ap.add_argument("--commit-ckpt", type=Path, default=None,
                    help="also write a small float16 resumable checkpoint here (to commit)")
    ap.add_argument("--resume-from", type=Path, default=None,
                    help="resume from a committed checkpoint when RUN_DIR has none")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    ckpt_path = run / "ckpt.pt"
    log_path = run / "log.jsonl"

    net: RestorerUNet = LevelRestorerUNet() if args.arch == "level" else RestorerUNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    state = {"elapsed": 0.0, "step": 0, "best": None}
    rng = np.random.default_rng(args.seed)
    resume = ckpt_path if ckpt_path.exists() else args.resume_from
    if resume is not None and resume.exists():
        ck = torch.load(resume, weights_only=False)
        ck["model"] = {k: v.float() for k, v in ck["model"].items()}
        for st in ck["opt"]["state"].values():
            for k in ("exp_avg", "exp_avg_sq"):
                if k in st:
                    st[k] = st[k].float()
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        rng.bit_generator.state = ck["rng"]
        print(f"resumed from {resume} at step {state['step']}, {state['elapsed'] / 60:.1f} min", flush=True)
    elif args.init is not None:
        load_init(net, args.init)
        print(f"initialised from {args.init}", flush=True)
    if args.export_only:
        export_onnx(net, args.out)
        print(f"exported {args.out}")
        return

    print(f"params {count_params(net):,}", flush=True)
    sampler = CropSampler(discover("train"), rng)
    vs = val_set()
    # Clean crops (p_clean) teach the identity, which keeps clean photos untouched (>38 dB).
    # Saturation is off: clipped highlights cannot be restored, the target would be unreachable.
    cfg = dg.DegradeConfig(p_saturation=0.0, p_clean=args.p_clean)
    rcfg = dg.RealisticConfig(p_clean=args.p_clean)
    budget = args.minutes * 60
    sitting_end = budget if args.sitting_minutes is None else min(budget, state["elapsed"] + args.sitting_minutes * 60)
    t_last = time.monotonic()
    last_ckpt = last_val = last_export = state["elapsed"]
    losses: list[float] = []

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "state": state,
                    "rng": rng.bit_generator.state}, tmp)
        tmp.replace(ckpt_path)
        if args.commit_ckpt is not None:
            small_opt = opt.state_dict()
            small_opt["state"] = {k: {kk: (vv.half() if kk in ("exp_avg", "exp_avg_sq") else vv)
                                      for kk, vv in st.items()} for k, st in small_opt["state"].items()}
            args.commit_ckpt.parent.mkdir(parents=True, exist_ok=True)
            ctmp = args.commit_ckpt.with_suffix(".tmp")
            torch.save({"model": {k: v.half() for k, v in net.state_dict().items()}, "opt": small_opt,
                        "state": state, "rng": rng.bit_generator.state, "arch": args.arch,
                        "data": args.data, "minutes": args.minutes}, ctmp)
            ctmp.replace(args.commit_ckpt)

    while state["elapsed"] < sitting_end:
        frac = state["elapsed"] / budget
        warm = 1.0 if args.init is not None else min(1.0, state["step"] / 300)
        lr = args.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        if args.data == "realistic":
            x, y, levels, is_clean = realistic_batch(sampler, rng, args.batch, args.crop, rcfg)
        else:
            x, y, is_clean = make_batch_flags(sampler, rng, cfg, args.batch, args.crop)
            levels = torch.zeros(args.batch, 2)
        per = torch.sqrt((run_net(net, x, levels) - y) ** 2 + 1e-6).mean(dim=(1, 2, 3))  # Charbonnier per crop
        w = 1.0 + (args.clean_weight - 1.0) * is_clean
        loss = (per * w).sum() / w.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        opt.step()
        losses.append(loss.item())
        now = time.monotonic()
        state["elapsed"] += now - t_last
        t_last = now
        state["step"] += 1
        if state["elapsed"] - last_val > 300 or state["elapsed"] >= budget:
            last_val = state["elapsed"]
            ps = evaluate(net, vs)
            rec = {"step": state["step"], "min": round(state["elapsed"] / 60, 2), "lr": lr,
                   "loss": float(np.mean(losses[-200:])), **{f"psnr_{k}": round(v, 3) for k, v in ps.items()}}
            print(json.dumps(rec), flush=True)
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            t_last = time.monotonic()  # validation time does not count against the budget
        if state["elapsed"] - last_ckpt > 120:
            last_ckpt = state["elapsed"]
            save()
        if state["elapsed"] - last_export > 600:
            last_export = state["elapsed"]
            export_onnx(net, run / "restorer_latest.onnx")
            t_last = time.monotonic()
    save()
    export_onnx(net, run / "restorer_latest.onnx")
    if state["elapsed"] < budget:
        print(f"sitting over at step {state['step']} ({state['elapsed'] / 60:.1f} of {args.minutes:.0f} min); "
              f"resume with the same command", flush=True)
        return
    export_onnx(net, args.out)
    print(f"done: {state['step']} steps, exported {args.out}", flush=True)


if __name__ == "__main__":
    main()
