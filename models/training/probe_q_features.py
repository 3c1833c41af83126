"""Do learned features add to Q's fixed statistics on human opinion? A cross-validation probe.

    python -m models.training.probe_q_features [--out runs/probe_q_features]

On CLIVE's *training* part only (the validation part by name is never read): for every photo,
Q v3's 349 fixed statistics (``nets_quality3.quality_features_v3``), the restorer's encoder
features (per-channel mean and standard deviation of each encoder stage of
``models/restorer.onnx``'s blind UNet plus three statistics of the residual it would add; 483
numbers) and the assessor's 64-number embedding. Ridge regression on standardised features,
5 folds (fixed permutation, seed 0), Spearman correlation of the out-of-fold predictions with
the mean opinion score, for a few ridge strengths. A probe, not a model: it says which evidence
is worth building into the next Q; the strengths are not chosen on anything reported elsewhere.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.training.data import REPO


def features(limit: int = 0) -> dict[str, np.ndarray]:
    import torch

    from engine.assess.scoring import Scorer
    from models.training import train_quality2 as t2
    from models.training.iqa_data import load_clive, load_rgb
    from models.training.nets import RestorerUNet
    from models.training.nets_quality3 import quality_features_v3
    from models.training.train_restorer import load_init

    torch.set_num_threads(1)
    rated = load_clive("train")
    if limit:
        rated = rated[:limit]
    net = RestorerUNet()
    load_init(net, REPO / "models" / "restorer.onnx")
    net.eval()
    sc = Scorer(workers=1)
    out: dict[str, list[np.ndarray]] = {"stats": [], "enc": [], "emb": []}
    mos = []
    for i, r in enumerate(rated):
        a = load_rgb(r.path)
        mos.append(r.mos)
        out["stats"].append(np.nan_to_num(t2._features(quality_features_v3, a.astype(np.float32) / 255.0)))
        x = torch.from_numpy(a.astype(np.float32).transpose(2, 0, 1)[None] / 255)
        x = x[:, :, : x.shape[2] // 8 * 8, : x.shape[3] // 8 * 8]
        with torch.no_grad():
            h1 = net.e1(net.head(x))
            h2 = net.e2(net.d1(h1))
            h3 = net.e3(net.d2(h2))
            m = net.m(net.d3(h3))
            feats = []
            for f in (h1, h2, h3, m):
                feats += [f.mean(dim=(2, 3)).flatten(), f.std(dim=(2, 3)).flatten()]
            res = net(x) - x
            feats.append(torch.stack([res.abs().mean(), res.std(), (res**2).mean().sqrt()]))
        out["enc"].append(torch.cat(feats).numpy())
        crops, glob = sc.views(a)
        o = sc.run_views(crops[None] if crops.ndim == 4 else crops, glob[None] if glob.ndim == 3 else glob)
        out["emb"].append(np.asarray(o["embedding"]).reshape(-1))
        if i % 100 == 0:
            print(f"{i}/{len(rated)}", flush=True)
    res = {k: np.stack(v).astype(np.float64) for k, v in out.items()}
    res["mos"] = np.array(mos)
    return res


def ridge_cv(x: np.ndarray, y: np.ndarray, alpha: float, folds: int = 5) -> float:
    from scipy.stats import spearmanr

    idx = np.random.default_rng(0).permutation(len(y))
    pred = np.zeros_like(y)
    for f in np.array_split(idx, folds):
        tr = np.setdiff1d(idx, f)
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-8
        a, b = (x[tr] - mu) / sd, (x[f] - mu) / sd
        w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y[tr] - y[tr].mean()))
        pred[f] = b @ w + y[tr].mean()
    return float(spearmanr(pred, y)[0])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "probe_q_features")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)
    f = features(args.limit)
    y = f["mos"]
    sets = {"stats": ["stats"], "enc": ["enc"], "stats+enc": ["stats", "enc"], "stats+emb": ["stats", "emb"],
            "stats+enc+emb": ["stats", "enc", "emb"]}
    rep: dict[str, dict[str, float]] = {}
    for name, ks in sets.items():
        x = np.concatenate([f[k] for k in ks], axis=1)
        rep[name] = {f"alpha_{a:g}": round(ridge_cv(x, y, a), 3) for a in (10, 100, 300, 1000, 3000)}
        print(name, x.shape[1], rep[name], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps({"n": len(y), "results": rep}, indent=1))


if __name__ == "__main__":
    main()
