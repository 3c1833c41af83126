"""Train the assessor on the delta labels and export ``models/assessor.onnx``.

    python -m models.training.labels                    # make the labels first
    python -m models.training.train_assessor --minutes 15
    python -m models.training.train_assessor --minutes 37   # resume runs/assessor/ckpt.pt to a 37-minute whole
    python -m models.training.eval_assessor             # metrics + thresholds (models/assessor.json)

Heads and losses: improvability <- delta (smooth L1, in quality points), quality <- Q(original)
(smooth L1 / 3), severity <- the known severities of the degradation model (binary cross
entropy, order ``SEVERITY_NAMES``). A tenth of the training photos (by name) is held out for
monitoring; the validation split (``data.is_validation``) is only used by eval_assessor.

The export writes the ONNX graph (opset 17, ``dynamo=False``) and a sidecar ``assessor.json``
with the view geometry, the last improvability layer (for fine-tuning in the app) and the
recommendation thresholds (defaults here; eval_assessor replaces them with the values chosen
on the precision-recall curve).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from engine.assess.degrade import SEVERITY_NAMES
from engine.assess.views import CROP, GLOBAL, K_CROPS
from models.training.data import REPO
from models.training.labels import OUT as LABELS
from models.training.labels import load_labels
from models.training.nets_assess import Assessor, count_params

RUN = REPO / "runs" / "assessor"


def _holdout(names: np.ndarray) -> np.ndarray:
    return np.array([hashlib.sha1(str(n).encode()).digest()[1] % 10 == 0 for n in names])


def batch_tensors(L: dict[str, np.ndarray], idx: np.ndarray, rng: np.random.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    c = L["crops"][idx].astype(np.float32) / 255.0
    g = L["glob"][idx].astype(np.float32) / 255.0
    if rng is not None:
        flip = rng.random(len(idx)) < 0.5
        c[flip] = c[flip][..., ::-1]
        g[flip] = g[flip][..., ::-1]
        # crops are a set: their order carries no meaning, rotations of a crop neither
        k = int(rng.integers(0, 4))
        c = np.rot90(c, k, axes=(3, 4))
    return torch.from_numpy(np.ascontiguousarray(c)), torch.from_numpy(np.ascontiguousarray(g))


def losses(net: Assessor, L: dict[str, np.ndarray], idx: np.ndarray, rng: np.random.Generator | None
           ) -> tuple[torch.Tensor, dict[str, float]]:
    c, g = batch_tensors(L, idx, rng)
    imp, q, sev, _ = net(c, g)
    d = torch.from_numpy(L["delta"][idx].astype(np.float32))
    qt = torch.from_numpy(L["q_orig"][idx].astype(np.float32))
    st = torch.from_numpy(L["sev"][idx].astype(np.float32))
    li = F.smooth_l1_loss(imp, d)
    lq = F.smooth_l1_loss(q, qt) / 3.0
    ls = F.binary_cross_entropy(sev.clamp(1e-5, 1 - 1e-5), st)
    loss = li + 0.3 * lq + 0.5 * ls
    return loss, {"imp": float(li), "q": float(lq), "sev": float(ls)}


@torch.no_grad()
def predict(net: Assessor, L: dict[str, np.ndarray], idx: np.ndarray, bs: int = 64) -> dict[str, np.ndarray]:
    net.eval()
    outs: dict[str, list[np.ndarray]] = {"improvability": [], "quality": [], "severity": [], "embedding": []}
    for i in range(0, len(idx), bs):
        c, g = batch_tensors(L, idx[i : i + bs], None)
        for k, v in zip(outs, net(c, g), strict=True):
            outs[k].append(v.numpy())
    net.train()
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in outs.items()}


def export(net: Assessor, path: Path, thresholds: dict | None = None) -> None:
    net = net.to(memory_format=torch.contiguous_format)
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    crops = torch.rand(2, K_CROPS, 3, CROP, CROP)
    glob = torch.rand(2, 3, GLOBAL, GLOBAL)
    torch.onnx.export(net, (crops, glob), str(tmp), input_names=["crops", "global"],
                      output_names=["improvability", "quality", "severity", "embedding"],
                      dynamic_axes={"crops": {0: "N"}, "global": {0: "N"}, "improvability": {0: "N"},
                                    "quality": {0: "N"}, "severity": {0: "N"}, "embedding": {0: "N"}},
                      opset_version=17, dynamo=False)
    tmp.replace(path)
    side = path.with_suffix(".json")
    old = json.loads(side.read_text()) if side.exists() else {}
    meta = {
        "model": "assessor",
        "views": {"k": K_CROPS, "crop": CROP, "global": GLOBAL},
        "severity_names": list(SEVERITY_NAMES),
        "head": {"w": net.head_improv.weight.detach().numpy()[0].astype(float).tolist(),
                 "b": float(net.head_improv.bias.detach().numpy()[0])},
        "thresholds": thresholds or old.get("thresholds") or {"improvability": 1.0,
                                                              "severity": {n: 0.35 for n in SEVERITY_NAMES}},
    }
    side.write_text(json.dumps(meta, indent=1))
    net.train()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labels", type=Path, nargs="+", default=[LABELS],
                    help="label folders (their train sets are concatenated)")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "assessor.onnx")
    ap.add_argument("--fresh", action="store_true", help="start from scratch, ignoring runs/assessor/ckpt.pt (without it a run resumes "
                         "there; --minutes is then the whole budget, the cosine schedule follows it)")
    ap.add_argument("--export-only", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    RUN.mkdir(parents=True, exist_ok=True)
    ckpt = RUN / "ckpt.pt"
    net = Assessor()
    if args.export_only:
        net.load_state_dict(torch.load(ckpt, weights_only=False)["model"])
        export(net, args.out)
        print(f"exported {args.out}")
        return
    net = net.to(memory_format=torch.channels_last)  # depthwise convolutions are ~2x faster so on the CPU
    parts = [load_labels("train", d) for d in args.labels]
    L = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    hold = _holdout(L["photo"])
    tr_idx, mon_idx = np.flatnonzero(~hold), np.flatnonzero(hold)
    print(f"assessor params {count_params(net):,}; labels {len(hold)} ({len(tr_idx)} train, "
          f"{len(mon_idx)} monitor)", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-3)
    rng = np.random.default_rng(args.seed)
    budget = args.minutes * 60
    elapsed, step, t_last, last_log = 0.0, 0, time.monotonic(), 0.0
    warm_from = 0  # the learning rate ramps up over 50 steps from here
    if ckpt.exists() and not args.fresh:
        # resume: the cosine follows the whole budget (--minutes is the total, not what is left)
        ck = torch.load(ckpt, weights_only=False)
        net.load_state_dict(ck["model"])
        step, elapsed = int(ck["step"]), float(ck["elapsed"])
        last_log = elapsed
        if "opt" in ck:
            opt.load_state_dict(ck["opt"])
        else:  # a checkpoint without the optimiser's moments: ramp up again
            warm_from = step
        print(f"resumed at step {step} ({elapsed / 60:.1f} of {args.minutes:g} min)", flush=True)
        if elapsed >= budget:
            print(f"the budget of {args.minutes:g} min is spent: nothing to train (give a larger --minutes)",
                  flush=True)
    log = (RUN / "log.jsonl").open("a")
    from models.training.train_quality import pearson, spearman

    while elapsed < budget:
        frac = elapsed / budget
        lr = args.lr * min(1.0, (step - warm_from + 1) / 50) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = rng.choice(tr_idx, args.batch, replace=len(tr_idx) < args.batch)
        loss, parts = losses(net, L, idx, rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        now = time.monotonic()
        elapsed += now - t_last
        t_last = now
        if elapsed - last_log > 60 or elapsed >= budget:
            last_log = elapsed
            p = predict(net, L, mon_idx)
            sp = spearman(p["improvability"], L["delta"][mon_idx])
            rec = {"step": step, "min": round(elapsed / 60, 2), "lr": round(lr, 6), **{k: round(v, 4) for k, v in parts.items()},
                   "mon_spearman": round(sp, 4), "mon_pearson": round(pearson(p["improvability"], L["delta"][mon_idx]), 4),
                   "mon_q_spearman": round(spearman(p["quality"], L["q_orig"][mon_idx]), 4)}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed}, ckpt)
            t_last = time.monotonic()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed}, ckpt)
    export(net, args.out)
    print(f"exported {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {step} steps, "
          f"{elapsed / 60:.1f} min", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
