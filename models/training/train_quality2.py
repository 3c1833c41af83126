"""Train the quality model Q, version 2: human opinion plus pairs whose order is known.

    python -m models.training.train_quality2 --build --workers 2   # feature caches (27 min on 2 cores)
    python -m models.training.train_quality2 --cv                  # choose the head's settings (CLIVE train, 5 folds)
    python -m models.training.train_quality2 --fit                 # fit, export models/quality.onnx

Evidence (models/quality.md):

* human opinion: the CLIVE photos of the train part (``iqa_data.load_clive("train")``), whole
  and as two random crops each (a crop keeps the photo's score: authentic distortions cover the frame);
* known-order pairs from clean views of the TRAIN photos (``data.discover("train")``; high
  resolution photos downscaled 2.5-6x): the clean view beats each of its versions made by
  ``quality_pairs.FAILURES`` (every degradation of ``engine.assess.degrade`` and every way an enhancer
  goes wrong) and by our own restorer pushed too far; photos dark, bright or foggy by intent beat
  their naive "corrections"; low/high-key grades of clean views beat their noisy versions;
* anchors: clean views should score at least ``ANCHOR`` (a clean photo is not a 3 out of 10).

The network (``nets_quality.QualityNetV2``) computes fixed features; only its head is learned,
so the features are computed once into ``runs/quality2/cache_*.npz`` and the head is fitted on
them (about 4 minutes on the 2-core CPU). The VAL photos and the CLIVE validation part are never
fitted or tuned on: ``eval_quality.py`` makes its own VAL images and runs the exported ONNX on them.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from models.training.data import REPO, discover, load_rgb

RUN = REPO / "runs" / "quality2"
ANCHOR = 7.0
VIEWS = {"CBSD432": 2, "CQ100": 4, "SunHays80": 3, "Unsplash_Okolors": 18, "photos": 18}
VERSIONS_PER_VIEW = 9
MILD_P = 0.4


def _features(net_feat: Any, img: np.ndarray) -> np.ndarray:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(np.clip(img, 0, 1).transpose(2, 0, 1)[None], np.float32))
    if min(x.shape[-2:]) < 64:
        raise ValueError("view too small")
    with torch.no_grad():
        return net_feat(x)[0].numpy().astype(np.float32)


def build_views(split: str) -> list[tuple[int, int]]:
    """(photo index, view number) jobs for ``split`` (VIEWS per photo, by data set)."""
    return [(i, k) for i, ph in enumerate(discover(split)) for k in range(VIEWS.get(ph.group, 2))]


def run_shard(split: str, shard: int, nshards: int, seed: int, out: str) -> str:
    import torch

    torch.set_num_threads(1)
    from models.training import quality_pairs as qp
    from models.training.nets_quality import quality_features
    from models.training.train_quality import OnnxRestorer, find_restorer

    rp = find_restorer()
    restorer = OnnxRestorer(rp, threads=1) if rp is not None else None
    photos = discover(split)
    jobs = build_views(split)[shard::nshards]
    cache: dict[int, np.ndarray] = {}
    feats: list[np.ndarray] = []
    rows: dict[str, list[Any]] = {k: [] for k in ("view", "role", "kind", "mild", "group", "texture")}
    pairs: list[tuple[int, int, str, int]] = []  # better, worse, kind, mild
    kinds = [*qp.FAILURES, "restorer_overdone"] if restorer is not None else list(qp.FAILURES)
    t0 = time.time()

    def add(img: np.ndarray, view: int, role: str, kind: str, mild: int, group: str, tex: float) -> int:
        feats.append(_features(quality_features, img))
        rows["view"].append(view)
        rows["role"].append(role)
        rows["kind"].append(kind)
        rows["mild"].append(mild)
        rows["group"].append(group)
        rows["texture"].append(tex)
        return len(feats) - 1

    for j, (pi, k) in enumerate(jobs):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1, pi, k])
        ph = photos[pi]
        if pi not in cache:
            cache.clear()
            cache[pi] = load_rgb(ph, 3000 if ph.hr else None)
        u = qp.random_view(cache[pi], rng, ph.hr)
        if min(u.shape[:2]) < 64:
            continue
        vid = pi * 1000 + k
        tex = qp.texture_score(u)
        ci = add(u, vid, "clean", "clean", 0, ph.group, tex)
        for kind in rng.choice(kinds, size=VERSIONS_PER_VIEW, replace=False):
            mild = int(rng.random() < MILD_P)
            if kind == "restorer_overdone":
                v = qp.restorer_overdone(u, rng, restorer, mild=bool(mild))
            else:
                v = qp.FAILURES[str(kind)](u, rng, mild=bool(mild))
            vi = add(v, vid, "version", str(kind), mild, ph.group, tex)
            pairs.append((ci, vi, str(kind), mild))
        intent = qp.intent_kind(u)
        if intent is not None:
            vi = add(qp.correct_intent(u, rng, intent), vid, "version", f"intent_{intent}", 0, ph.group, tex)
            pairs.append((ci, vi, f"intent_{intent}", 0))
            rows["role"][ci] = f"clean_{intent}"
        if rng.random() < 0.3:
            kind = str(rng.choice(["dark", "bright"]))
            g = qp.grade_intent(u, rng, kind)
            gi = add(g, vid, f"graded_{kind}", "graded", 0, ph.group, tex)
            # (an earlier build also paired the grade with its "correction": not a known order, see
            # usable_pairs; the rng draw is kept so that builds stay reproducible)
            qp.correct_intent(g, rng, kind)
            vi = add(qp.FAILURES["noise"](g, rng, mild=True), vid, "version", f"graded_{kind}_noise", 1,
                     ph.group, tex)
            pairs.append((gi, vi, f"graded_{kind}_noise", 1))
        if j % 20 == 0:
            print(f"[{split} {shard}] {j}/{len(jobs)} views, {len(feats)} images, {time.time() - t0:.0f} s",
                  flush=True)
    path = Path(out) / f"cache_{split}_{shard}.npz"
    np.savez_compressed(path, feats=np.stack(feats), pairs=np.array([p[:2] for p in pairs], np.int64),
                        pair_kind=np.array([p[2] for p in pairs]), pair_mild=np.array([p[3] for p in pairs]),
                        **{k: np.array(v) for k, v in rows.items()})
    return str(path)


def run_clive(out: str, seed: int, crops: int = 2) -> str:
    import torch

    torch.set_num_threads(1)
    from models.training.iqa_data import load_clive, load_rgb
    from models.training.nets_quality import quality_features

    feats, mos, img_id, val, crop = [], [], [], [], []
    rated = load_clive("all")
    for i, r in enumerate(rated):
        rng = np.random.default_rng([seed, 7, i])
        a = load_rgb(r.path).astype(np.float32) / 255.0
        views = [a]
        h, w, _ = a.shape
        for _ in range(crops):
            ch, cw = int(rng.integers(int(0.64 * h), h)), int(rng.integers(int(0.64 * w), w))
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            views.append(a[y0:y0 + ch, x0:x0 + cw])
        for c, v in enumerate(views):
            feats.append(_features(quality_features, v))
            mos.append(r.mos)
            img_id.append(i)
            val.append(r.val)
            crop.append(c)
        if i % 100 == 0:
            print(f"[clive] {i}/{len(rated)}", flush=True)
    path = Path(out) / "cache_clive.npz"
    np.savez_compressed(path, feats=np.stack(feats), mos=np.array(mos), img=np.array(img_id),
                        val=np.array(val), crop=np.array(crop),
                        names=np.array([r.path.name for r in rated]))
    return str(path)


def load_cache(split: str, root: Path = RUN) -> dict[str, np.ndarray]:
    """Concatenate the shards of one synthetic split (pair indices re-based)."""
    out: dict[str, list[np.ndarray]] = {}
    base = 0
    for p in sorted(root.glob(f"cache_{split}_*.npz")):
        z = dict(np.load(p))
        z["pairs"] = z["pairs"] + base
        if "ties" in z:
            z["ties"] = z["ties"] + base
        base += len(z["feats"])
        for k, v in z.items():
            out.setdefault(k, []).append(v)
    if not out:
        raise FileNotFoundError(f"no caches for {split} in {root}: run --build first")
    return {k: np.concatenate(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- fitting


from models.training.train_quality import pearson, spearman  # noqa: E402  (rank ties averaged)

DEFAULTS: dict[str, float] = {"hidden": 64, "wd": 3e-3, "lr": 3e-3, "steps": 1500, "w_pair": 1.0,
                              "w_rank": 1.0, "w_anchor": 0.3, "margin": 0.3, "dropout": 0.2}


def usable_pairs(syn: dict[str, np.ndarray]) -> np.ndarray:
    """Mask of the pairs whose order is known. A low/high-key grade against its "correction" is
    not: correcting a synthetic grade gives back something close to the clean photo, which is
    as good (the cache has these pairs; only the grade against its noisy version is kept)."""
    k = syn["pair_kind"].astype(str)
    return ~(np.char.startswith(k, "graded_") & ~np.char.endswith(k, "_noise"))


def fit_head(clive: dict[str, np.ndarray], syn: dict[str, np.ndarray], clive_rows: np.ndarray,
             cfg: dict[str, float], seed: int = 0, log: bool = False) -> Any:
    """Fit QualityNetV2's head on cached features; returns the network (eval mode)."""
    import torch
    from torch.nn import functional as F

    from models.training.iqa_data import mos_to_quality
    from models.training.nets_quality import QualityNetV2

    torch.manual_seed(seed)
    fc = torch.from_numpy(clive["feats"][clive_rows]).float()
    yc = torch.from_numpy(np.asarray(mos_to_quality(clive["mos"][clive_rows]))).float()
    fs = torch.from_numpy(syn["feats"]).float()
    usable = usable_pairs(syn)
    pr = torch.from_numpy(syn["pairs"][usable])
    # per-pair margin: graded by the pair's gain in dB where the cache has it (version 5)
    margins = torch.full((len(pr),), float(cfg["margin"]))
    if "pair_gain" in syn and float(cfg.get("margin_slope", 0.0)):
        g = torch.from_numpy(np.nan_to_num(syn["pair_gain"][usable].astype(np.float32), nan=0.0))
        margins = margins + float(cfg["margin_slope"]) * g.clamp(0.0, float(cfg.get("gain_cap", 12.0)))
    anchor = torch.from_numpy(np.char.startswith(syn["role"].astype(str), "clean")
                              | np.char.startswith(syn["role"].astype(str), "graded"))
    net = QualityNetV2(hidden=int(cfg["hidden"]), n_features=fc.shape[1])
    net.drop.p = float(cfg["dropout"])
    allf = torch.cat([fc, fs])
    net.feat_mean.copy_(allf.mean(0))
    net.feat_std.copy_(allf.std(0).clamp_min(1e-4))
    opt = torch.optim.AdamW(net.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["wd"]))
    steps = int(cfg["steps"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(cfg["lr"]), total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    ties = torch.from_numpy(syn["ties"]) if ("ties" in syn and len(syn["ties"]) and cfg.get("w_tie", 0.0)) \
        else None
    net.train()
    for it in range(steps):
        qc = 1 + 9 * torch.sigmoid(net.head(fc))
        l_mos = F.smooth_l1_loss(qc, yc)
        # pairwise rank within a random subset of the rated photos
        idx = torch.randint(0, len(fc), (512,), generator=gen)
        jdx = torch.randint(0, len(fc), (512,), generator=gen)
        d = yc[idx] - yc[jdx]
        keep = d.abs() > 0.3
        l_rank = F.softplus(-(qc[idx] - qc[jdx])[keep] * torch.sign(d[keep]) / 0.3).mean() if keep.any() \
            else qc.sum() * 0
        sel = torch.randint(0, len(pr), (4096,), generator=gen)
        p = pr[sel]
        tsel = ties[torch.randint(0, len(ties), (1024,), generator=gen)] if ties is not None else None
        used = torch.unique(p.reshape(-1) if tsel is None else torch.cat([p.reshape(-1), tsel.reshape(-1)]))
        qs = torch.zeros(len(fs))
        qs[used] = 1 + 9 * torch.sigmoid(net.head(fs[used]))
        l_pair = F.softplus((margins[sel] - (qs[p[:, 0]] - qs[p[:, 1]])) / 0.15).mean() * 0.15
        anc = used[anchor[used]]
        l_anchor = F.softplus((ANCHOR - qs[anc]) / 0.3).mean() * 0.3
        loss = l_mos + cfg["w_rank"] * l_rank + cfg["w_pair"] * l_pair + cfg["w_anchor"] * l_anchor
        if tsel is not None:  # invisible edits: equal within a tolerance (Q version 4)
            gap = (qs[tsel[:, 0]] - qs[tsel[:, 1]]).abs()
            loss = loss + cfg["w_tie"] * (F.softplus((gap - float(cfg["tie_tol"])) / 0.1).mean() * 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (it % 250 == 0 or it == steps - 1):
            print(f"step {it}: mos {l_mos.item():.3f} rank {l_rank.item():.3f} pair {l_pair.item():.3f} "
                  f"anchor {l_anchor.item():.3f}", flush=True)
    net.eval()
    return net


def predict(net: Any, feats: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return (1 + 9 * torch.sigmoid(net.head(torch.from_numpy(feats).float()))).numpy()


def pair_accuracy(q: np.ndarray, syn: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of known-order pairs ranked right, by kind."""
    from models.training.quality_pairs import FAMILY

    keep = usable_pairs(syn)
    right = q[syn["pairs"][keep, 0]] > q[syn["pairs"][keep, 1]]
    out: dict[str, float] = {"all": float(right.mean())}
    kinds = syn["pair_kind"].astype(str)[keep]
    for k in sorted(set(kinds)):
        out[k] = float(right[kinds == k].mean())
    fam = np.array([FAMILY.get(k, "intent") for k in kinds])
    for f in sorted(set(fam)):
        out[f"family:{f}"] = float(right[fam == f].mean())
    return out


def clive_eval(net: Any, clive: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, float]:
    whole = rows[clive["crop"][rows] == 0]
    q = predict(net, clive["feats"][whole])
    return {"srocc": spearman(q, clive["mos"][whole]), "plcc": pearson(q, clive["mos"][whole]), "n": len(whole)}


def cross_validate(cfg: dict[str, float], folds: int = 5, seed: int = 0) -> dict[str, float]:
    clive = dict(np.load(RUN / "cache_clive.npz"))
    syn = load_cache("train")
    train_imgs = np.unique(clive["img"][~clive["val"]])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(train_imgs)
    sr, pl = [], []
    preds = np.zeros(len(clive["img"]))
    for f in range(folds):
        held = set(perm[f::folds].tolist())
        is_held = np.array([i in held for i in clive["img"]])
        tr = np.where(~clive["val"] & ~is_held)[0]
        te = np.where(~clive["val"] & is_held)[0]
        net = fit_head(clive, syn, tr, cfg, seed=seed + f)
        r = clive_eval(net, clive, te)
        if f == 0:
            pa = pair_accuracy(predict(net, syn["feats"]), syn)
        sr.append(r["srocc"])
        pl.append(r["plcc"])
        w = te[clive["crop"][te] == 0]
        preds[w] = predict(net, clive["feats"][w])
    w = np.where(~clive["val"] & (clive["crop"] == 0))[0]
    fams = {k: v for k, v in pa.items() if k.startswith("family:")}
    return {"cv_srocc_mean": float(np.mean(sr)), "cv_plcc_mean": float(np.mean(pl)),
            "cv_srocc_pooled": spearman(preds[w], clive["mos"][w]), "train_pairs_all": pa["all"],
            "train_pairs_worst_family": min(fams.items(), key=lambda kv: kv[1]),
            "train_pairs_worst_kind": min(((k, v) for k, v in pa.items() if ":" not in k and k != "all"),
                                          key=lambda kv: kv[1])}


def export(net: Any, path: Path, meta: dict[str, Any]) -> None:
    import onnx
    import torch

    class Wrap(torch.nn.Module):
        def __init__(self, n: Any) -> None:
            super().__init__()
            self.n = n

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.n(x)

    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(Wrap(net).eval(), torch.rand(1, 3, 96, 128), str(tmp), input_names=["image"],
                      output_names=["quality"], dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "quality": {0: "n"}},
                      opset_version=17, dynamo=False)
    m = onnx.load(str(tmp))
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, json.dumps(v) if not isinstance(v, str) else v
    onnx.save(m, str(path))
    tmp.unlink()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="store_true", help="compute the feature caches")
    ap.add_argument("--cv", action="store_true", help="5-fold cross-validation on CLIVE train")
    ap.add_argument("--fit", action="store_true", help="fit on all training evidence and export")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="head setting KEY=VALUE (see DEFAULTS)")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "quality.onnx")
    args = ap.parse_args(argv)
    RUN.mkdir(parents=True, exist_ok=True)
    cfg = dict(DEFAULTS)
    for kv in args.set:
        k, v = kv.split("=", 1)
        cfg[k] = float(v)
    if args.build:
        t0 = time.time()
        with ProcessPoolExecutor(args.workers) as ex:
            futs = [ex.submit(run_clive, str(RUN), args.seed)]
            futs += [ex.submit(run_shard, "train", s, args.workers, args.seed, str(RUN)) for s in range(args.workers)]
            for f in futs:
                print(f.result(), flush=True)
        print(f"caches built in {time.time() - t0:.0f} s")
    if args.cv:
        r = cross_validate(cfg, seed=args.seed)
        print(json.dumps({"cfg": cfg, **r}))
        with open(RUN / "cv.jsonl", "a") as log:
            log.write(json.dumps({"cfg": cfg, **r}) + "\n")
    if args.fit:
        import torch

        t0 = time.time()
        clive = dict(np.load(RUN / "cache_clive.npz"))
        syn = load_cache("train")
        rows = np.where(~clive["val"])[0]
        net = fit_head(clive, syn, rows, cfg, seed=args.seed, log=True)
        tr = pair_accuracy(predict(net, syn["feats"]), syn)
        fit_s = time.time() - t0
        ck = {"model": net.state_dict(), "config": {"hidden": int(cfg["hidden"]),
                                                    "n_features": int(syn["feats"].shape[1])},
              "cfg": cfg, "train_pairs": tr}
        torch.save(ck, RUN / "quality2_torch.pt")
        ckpt = REPO / "models" / "training" / "checkpoints"
        ckpt.mkdir(exist_ok=True)
        torch.save(ck, ckpt / "quality_v2.pth")  # *.pt is ignored; this one is small and committed
        export(net, args.out, {"version": "2", "cfg": cfg})
        summary = {"cfg": cfg, "fit_seconds": fit_s, "train_pairs_all": tr["all"],
                   "n_clive_rows": int(len(rows)), "n_synthetic_images": int(len(syn["feats"])),
                   "n_pairs": int(len(syn["pairs"]))}
        (RUN / "fit.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
