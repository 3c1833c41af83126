"""Train the tone parameter network and export ``models/tone.onnx``.

    python -m models.training.train_tone --minutes 12 --out runs/tone/fid            # fidelity only
    python -m models.training.train_tone --minutes 12 --out runs/tone/q --quality-weight 0.02 \
        --quality runs/quality/quality_torch.pt                                       # + quality term
    python -m models.training.train_tone --out runs/tone/q --export-only --onnx models/tone.onnx
    python -m models.training.train_tone --init models/tone.onnx --steps 300 --lr 5e-4 --out runs/tone/ftQ3 \
        --quality models/training/checkpoints/quality_v3.pth --quality-weight 0.1        # fine-tune the shipped net

Method (learned perceptual enhancement): ``ToneNet`` sees a 128x128 view of a photo and outputs
the parameters of the operator chain of ``engine/enhance/tone.py``; the differentiable twins of those
operators (``tone_torch``) render the result, and the loss is

    L = L1(out, clean) + colour term (L1 of per-image channel means)
        + quality_weight * (10 - Q(out)) / 9

where ``Q`` is helper D's frozen no-reference ``QualityNet`` (1..10). Inputs are clean crops of
the TRAIN split with one or two tonal degradations from ``engine.assess.degrade.tone_degrade``
(under/over exposure, flat contrast, haze, colour cast, washed-out colour); ``--p-clean`` of them
are left clean and must come back unchanged. The learning rate follows a cosine over the time
budget; a checkpoint is written every two minutes and a resumed run continues the schedule.
The data stream is seeded apart from torch, so two runs with the same ``--seed`` see the same
batches whatever their loss.
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
from engine.enhance import tone as T
from models.training import tone_torch as TT
from models.training.data import REPO, CropSampler, discover

SIZE = T.NET_SIDE


def whole_crop(img: np.ndarray, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A square crop of 55-100% of the short side (tone needs context), resized, flipped."""
    h, w, _ = img.shape
    side = int(min(h, w) * rng.uniform(0.55, 1.0))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    c = cv2.resize(img[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        c = c[:, ::-1]
    return dg.to_float(np.ascontiguousarray(c))


def make_batch(images: list[np.ndarray], probs: np.ndarray, rng: np.random.Generator, n: int,
               p_clean: float) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    xs, ys, kinds = [], [], []
    for _ in range(n):
        u = whole_crop(images[int(rng.choice(len(images), p=probs))], rng)
        if rng.random() < p_clean:
            x, kind = u, "clean"
        else:
            r = dg.tone_degrade(u, rng, max_stages=2)
            x, kind = r.image, "+".join(a.kind for a in r.applied)
        xs.append(x)
        ys.append(u)
        kinds.append(kind)
    t = lambda a: torch.from_numpy(np.stack(a).transpose(0, 3, 1, 2).copy()).float()  # noqa: E731
    return t(xs), t(ys), kinds


def fidelity(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    l1 = (out - ref).abs().mean()
    colour = (out.mean(dim=(2, 3)) - ref.mean(dim=(2, 3))).abs().mean()
    return l1 + colour


def psnr_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def render(net: TT.ToneNet, x: torch.Tensor) -> torch.Tensor:
    return TT.apply_params(x, TT.to_params(net(x)))


def export_onnx(net: TT.ToneNet, path: Path) -> None:
    import onnx

    net = net.eval()
    dummy = torch.rand(1, 3, SIZE, SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(net, (dummy,), str(tmp), input_names=["view"], output_names=["params"],
                      dynamic_axes={"view": {0: "n"}, "params": {0: "n"}}, opset_version=17, dynamo=False)
    m = onnx.load(str(tmp))
    meta = m.metadata_props.add()
    meta.key, meta.value = "params", json.dumps(list(T.PARAM_NAMES))
    meta = m.metadata_props.add()
    meta.key, meta.value = "input", f"RGB 0..1 [N,3,{SIZE},{SIZE}], the whole frame resized"
    onnx.checker.check_model(m)
    onnx.save(m, str(tmp))
    tmp.replace(path)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """ToneNet weights from an exported tone ONNX (its initialisers keep the parameter names) or
    from a training checkpoint."""
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        inits = {i.name: i for i in onnx.load(str(path)).graph.initializer}
        keys = TT.ToneNet().state_dict().keys()
        missing = [k for k in keys if k not in inits]
        if missing:
            raise SystemExit(f"{path} is not a ToneNet export (missing {missing[:3]})")
        return {k: torch.from_numpy(numpy_helper.to_array(inits[k]).copy()) for k in keys}
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=12.0, help="time budget (ignored with --steps)")
    ap.add_argument("--steps", type=int, default=0, help="step budget: same data for runs compared")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "tone" / "fid")
    ap.add_argument("--onnx", type=Path, default=None, help="also export here at the end")
    ap.add_argument("--quality", type=Path, default=None, help="QualityNet checkpoint (quality term)")
    ap.add_argument("--quality-weight", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--p-clean", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from these weights (a tone ONNX such as models/tone.onnx, or a ckpt.pt) "
                         "with a fresh optimiser and schedule; ignored when --out holds a checkpoint")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "ckpt.pt"
    net = TT.ToneNet()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    state = {"elapsed": 0.0, "step": 0}
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        print(f"resumed at step {state['step']} ({state['elapsed'] / 60:.1f} min)", flush=True)
    elif args.init is not None:
        net.load_state_dict(load_weights(args.init))
        print(f"initialised from {args.init}", flush=True)
    if args.export_only:
        export_onnx(net, args.onnx or out / "tone.onnx")
        return 0

    qnet = None
    if args.quality_weight > 0:
        if args.quality is None or not args.quality.exists():
            raise SystemExit(f"--quality-weight needs a QualityNet checkpoint, got {args.quality}")
        from models.training.nets_assess import load_quality

        qnet = load_quality(args.quality)
        for p in qnet.parameters():
            p.requires_grad_(False)

    t0 = time.time()
    photos = discover("train")
    sampler = CropSampler(photos, np.random.default_rng(0), hr_max_side=args.max_side)
    images = [im if max(im.shape[:2]) <= args.max_side else
              cv2.resize(im, None, fx=args.max_side / max(im.shape[:2]), fy=args.max_side / max(im.shape[:2]),
                         interpolation=cv2.INTER_AREA) for im in sampler.images]
    print(f"loaded {len(images)} train photos in {time.time() - t0:.0f}s", flush=True)

    # fixed validation crops from VAL photos
    vrng = np.random.default_rng(1234)
    vimgs = [dg.to_uint8(dg.to_float(im)) for im in CropSampler(discover("val"), vrng, hr_max_side=512).images]
    vprobs = np.full(len(vimgs), 1.0 / len(vimgs))
    vx, vy, vkinds = make_batch(vimgs, vprobs, vrng, 96, p_clean=0.2)
    vclean = torch.tensor([k == "clean" for k in vkinds])

    # the data stream is seeded by (seed, step), so a resumed run sees fresh batches reproducibly
    probs = sampler.p
    log = open(out / "log.jsonl", "a")  # noqa: SIM115
    budget = args.minutes * 60
    last_ck = time.time()
    start_elapsed = state["elapsed"]
    t_start = time.time()
    run_loss = run_fid = run_q = 0.0
    nrun = 0
    while True:
        elapsed = start_elapsed + time.time() - t_start
        frac = state["step"] / args.steps if args.steps else elapsed / budget
        if frac >= 1.0:
            break
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([args.seed, state["step"]])
        x, y, _ = make_batch(images, probs, rng, args.batch, args.p_clean)
        net.train()
        o = render(net, x)
        fid = fidelity(o, y)
        loss = fid
        qterm = torch.zeros(())
        if qnet is not None:
            qterm = ((10.0 - qnet(o)) / 9.0).mean()
            loss = loss + args.quality_weight * qterm
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        run_loss += float(loss.detach())
        run_fid += float(fid.detach())
        run_q += float(qterm.detach())
        nrun += 1
        if state["step"] % 50 == 0:
            net.eval()
            with torch.no_grad():
                vo = render(net, vx)
                p = psnr_t(vo, vy)
                p0 = psnr_t(vx, vy)
            rec = {"step": state["step"], "min": round(elapsed / 60, 2), "lr": lr, "loss": run_loss / nrun,
                   "fid": run_fid / nrun, "qterm": run_q / nrun,
                   "val_psnr_deg": float(p[~vclean].mean()), "val_psnr_deg_input": float(p0[~vclean].mean()),
                   "val_psnr_clean": float(p[vclean].clamp_max(60).mean())}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            run_loss = run_fid = run_q = 0.0
            nrun = 0
        if time.time() - last_ck > 120:
            state["elapsed"] = start_elapsed + time.time() - t_start
            torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "state": state,
                        "args": vars(args) | {"out": str(out), "onnx": str(args.onnx), "quality": str(args.quality)}},
                       ckpt_path)
            last_ck = time.time()
    state["elapsed"] = start_elapsed + time.time() - t_start
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "state": state,
                "args": vars(args) | {"out": str(out), "onnx": str(args.onnx), "quality": str(args.quality)}},
               ckpt_path)
    export_onnx(net, out / "tone.onnx")
    if args.onnx is not None:
        export_onnx(net, args.onnx)
    print(f"done: {state['step']} steps; exported {out / 'tone.onnx'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
