"""Train the blind restorer (deblur / denoise / deblock) and export ``models/restorer.onnx``.

    python -m models.training.train_restorer --minutes 80            # fresh or resumed run
    python -m models.training.train_restorer --export-only           # re-export last checkpoint

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
from models.training.data import REPO, CropSampler, discover
from models.training.nets import RestorerUNet, count_params


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


def load_init(net: torch.nn.Module, path: Path) -> None:
    """Weights from a checkpoint (``.pt``) or from an exported ONNX file (initializers by name)."""
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
        sd = net.state_dict()
        missing = [k for k in sd if k not in inits]
        if missing:
            raise SystemExit(f"{path}: no weights for {missing[:5]} (another architecture?)")
        net.load_state_dict({k: torch.from_numpy(inits[k].copy()) for k in sd})
    else:
        net.load_state_dict(torch.load(path, weights_only=False)["model"])


def val_set(seed: int = 1234, n: int = 48, size: int = 128) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed validation crops from held-out photos: blind mix and colour Gaussian noise sigma 25."""
    rng = np.random.default_rng(seed)
    sampler = CropSampler(discover("val"), rng)
    cfg = dg.DegradeConfig(p_saturation=0.0, p_clean=0.0)
    mixed = make_batch(sampler, rng, cfg, n, size)
    clean = []
    noisy = []
    for _ in range(n):
        u = dg.to_float(sampler.crop(size))
        clean.append(u)
        noisy.append(np.clip(u + rng.normal(0, 25 / 255, u.shape), 0, 1).astype(np.float32))
    t = lambda a: torch.from_numpy(np.stack(a).transpose(0, 3, 1, 2).copy()).float()  # noqa: E731
    return {"mixed": mixed, "sigma25": (t(noisy), t(clean)), "clean": (t(clean), t(clean))}


@torch.no_grad()
def evaluate(net: torch.nn.Module, vs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    net.eval()
    out = {}
    for k, (x, y) in vs.items():
        p = net(x).clamp(0, 1)
        mse = ((p - y) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
        out[k] = float((10 * torch.log10(1 / mse)).mean())
    net.train()
    return out


def export_onnx(net: torch.nn.Module, path: Path) -> None:
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    dummy = torch.rand(1, 3, 64, 64)
    torch.onnx.export(
        net, (dummy,), str(tmp), input_names=["image"], output_names=["restored"],
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
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    ckpt_path = run / "ckpt.pt"
    log_path = run / "log.jsonl"

    net = RestorerUNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    state = {"elapsed": 0.0, "step": 0, "best": None}
    rng = np.random.default_rng(args.seed)
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        rng.bit_generator.state = ck["rng"]
        print(f"resumed at step {state['step']}, {state['elapsed'] / 60:.1f} min", flush=True)
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
    budget = args.minutes * 60
    t_last = time.monotonic()
    last_ckpt = last_val = last_export = state["elapsed"]
    losses: list[float] = []

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "state": state,
                    "rng": rng.bit_generator.state}, tmp)
        tmp.replace(ckpt_path)

    while state["elapsed"] < budget:
        frac = state["elapsed"] / budget
        warm = 1.0 if args.init is not None else min(1.0, state["step"] / 300)
        lr = args.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, is_clean = make_batch_flags(sampler, rng, cfg, args.batch, args.crop)
        per = torch.sqrt((net(x) - y) ** 2 + 1e-6).mean(dim=(1, 2, 3))  # Charbonnier per crop
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
    export_onnx(net, args.out)
    export_onnx(net, run / "restorer_latest.onnx")
    print(f"done: {state['step']} steps, exported {args.out}", flush=True)


if __name__ == "__main__":
    main()
