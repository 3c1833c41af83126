"""Train the quality model Q, version 3: version 2's evidence, colour/texture statistics, textured
pairs, an ensemble head.

    python -m models.training.train_quality3 --build --workers 2   # feature caches (runs/quality3)
    python -m models.training.train_quality3 --cv                  # 5-fold CV on the CLIVE train part
    python -m models.training.train_quality3 --fit                 # fit, export models/quality.onnx

What changed from version 2 (``train_quality2``, whose fitting losses and evidence this reuses):

* features: ``nets_quality3.quality_features_v3`` (version 2's 237 statistics plus colour NSS,
  log-derivative, GM-LOG, chroma-vs-luminance texture and halo statistics);
* evidence: besides every pair of version 2, each view brings, with probability ``TEXTURE_P``, its
  most textured crop (of four, 320-512 px, as the evaluation picks them from VAL photos) against
  one mildly smoothed version (bilateral, NL-means, Gaussian, our restorer on a lightly noisy
  copy) and one mildly noisy version (Gaussian sigma 3-8, Poisson-Gaussian, chroma noise):
  version 2 ranked a textured crop above both only 55% of the time;
* the head: ``members`` heads fitted from different seeds and bootstrap draws of the rated
  photos, averaged in logit space.

The VAL photos (``data.is_validation``) and the CLIVE validation part are never fitted or tuned on.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from models.training import train_quality2 as t2
from models.training.data import REPO, discover, load_rgb

RUN = REPO / "runs" / "quality3"
VERSIONS_PER_VIEW = 6
# views per photo, by data set (fewer than version 2's: each image now costs twice the features)
VIEWS = {"CBSD432": 1, "CQ100": 4, "SunHays80": 3, "Unsplash_Okolors": 12, "photos": 12}
TEXTURE_P = 0.6
TEXTURE_SMOOTH = ("bilateral", "nlmeans", "gaussian", "restorer")
TEXTURE_NOISE = ("gaussian_noise", "poisson_gaussian", "chroma_noise")
V4_RESTORE_P = 0.6  # version 4: share of views that bring a successful restoration (restored beats degraded)
V4_TIE_P = 0.5  # version 4: share of views that bring an invisible edit (a tie)
V5_TONE_FIX_P = 0.6  # version 5: share of views that bring a tone correction (corrected beats degraded)
V5_TONE_CLEAN_P = 0.4  # version 5: share of views on which the tone stage's edit of the clean view is tried
GRADE_REF_DB = 40.0  # version 5: a degradation's graded gain is this minus its PSNR against the clean view


def texture_versions(t: np.ndarray, rng: np.random.Generator, restorer: Any) -> list[tuple[str, np.ndarray]]:
    """One mildly smoothed and one mildly noisy version of a textured crop (the order is known:
    the clean crop is better than both)."""
    from models.training import quality_pairs as qp

    sk = str(rng.choice(TEXTURE_SMOOTH if restorer is not None else TEXTURE_SMOOTH[:3]))
    if sk == "bilateral":
        s = qp.smooth_bilateral(t, rng, mild=True)
    elif sk == "nlmeans":
        s = qp.smooth_nlmeans(t, rng, mild=True)
    elif sk == "gaussian":
        s = qp.smooth_gaussian(t, rng, mild=True)
    else:
        s = qp.restorer_overdone(t, rng, restorer, mild=True)
    nk = str(rng.choice(TEXTURE_NOISE))
    if nk == "gaussian_noise":
        n = np.clip(t + rng.normal(0, float(rng.uniform(3, 8)) / 255.0, t.shape).astype(np.float32), 0, 1)
    elif nk == "poisson_gaussian":
        n = np.clip(qp.dg.apply_noise(t, rng, "poisson_gaussian_noise", float(rng.uniform(0.1, 0.2)))[0], 0, 1)
    else:
        n = np.clip(qp.dg.apply_noise(t, rng, "chroma_noise", float(rng.uniform(0.1, 0.2)))[0], 0, 1)
    return [(f"texture_smooth_{sk}", np.asarray(s, np.float32)), (f"texture_noise_{nk}", np.asarray(n, np.float32))]


def build_views(split: str) -> list[tuple[int, int]]:
    return [(i, k) for i, ph in enumerate(discover(split)) for k in range(VIEWS.get(ph.group, 1))]


def run_shard(split: str, shard: int, nshards: int, seed: int, out: str, v4: bool = False,
              view_step: int = 1, v5: bool = False) -> str:
    """Feature cache of one shard of ``split``'s views. ``v4``: also version 4's evidence
    (``train_quality4``: successful restorations and invisible edits, from a random stream of their
    own, so the version-3 evidence of the same seed is unchanged). ``v5`` (implies ``v4``): version
    5's statistics (``nets_quality5.quality_features_v5``), each pair's graded gain in dB
    (``pair_gain``: for a degradation or an edit that overdoes tone or colour
    (``quality_pairs.OVERDONE_FAMILIES``), ``GRADE_REF_DB`` minus its PSNR against the clean view; for a
    restoration or a tone correction, its PSNR gain; NaN for the rest), and version 5's evidence from
    a third stream: our tone stage's corrections of tonal degradations, and its edits of clean views."""
    import torch

    torch.set_num_threads(1)
    from models.training import quality_pairs as qp
    from models.training.nets_quality3 import quality_features_v3

    feat_fn = quality_features_v3
    correct = None
    if v5:
        from engine.enhance import tone as tone_stage
        from models.training.nets_quality5 import quality_features_v5

        feat_fn = quality_features_v5
        v4 = True

        def correct(img: np.ndarray) -> np.ndarray:
            return tone_stage.enhance(img)[0]
    from models.training.train_quality import OnnxRestorer, find_restorer

    rp = find_restorer()
    restorer = OnnxRestorer(rp, threads=1) if rp is not None else None
    photos = discover(split)
    jobs = build_views(split)[::view_step][shard::nshards]
    cache: dict[int, np.ndarray] = {}
    feats: list[np.ndarray] = []
    rows: dict[str, list[Any]] = {k: [] for k in ("view", "role", "kind", "mild", "group", "texture")}
    pairs: list[tuple[int, int, str, int]] = []
    gains: list[float] = []  # one per pair (version 5)
    ties: list[tuple[int, int]] = []
    tie_kind: list[str] = []
    deblock = OnnxRestorer(rp, threads=1, jpeg_zone=None) if (v4 and rp is not None) else None
    kinds = [*qp.FAILURES, "restorer_overdone"] if restorer is not None else list(qp.FAILURES)
    t0 = time.time()

    def add(img: np.ndarray, view: int, role: str, kind: str, mild: int, group: str, tex: float) -> int:
        feats.append(t2._features(feat_fn, img))
        for k, v in zip(("view", "role", "kind", "mild", "group", "texture"), (view, role, kind, mild, group, tex),
                        strict=True):
            rows[k].append(v)
        return len(feats) - 1

    for j, (pi, k) in enumerate(jobs):
        rng = np.random.default_rng([seed, 3, pi, k])
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
            mild = int(rng.random() < t2.MILD_P)
            if kind == "restorer_overdone":
                v = qp.restorer_overdone(u, rng, restorer, mild=bool(mild))
            else:
                v = qp.FAILURES[str(kind)](u, rng, mild=bool(mild))
            pairs.append((ci, add(v, vid, "version", str(kind), mild, ph.group, tex), str(kind), mild))
            graded = qp.FAMILY.get(str(kind)) == "degradation" or qp.FAMILY.get(str(kind)) in qp.OVERDONE_FAMILIES
            gains.append(max(0.0, GRADE_REF_DB - qp._psnr(v, u)) if graded else float("nan"))
        intent = qp.intent_kind(u)
        if intent is not None:
            vc = qp.correct_intent(u, rng, intent)
            vi = add(vc, vid, "version", f"intent_{intent}", 0, ph.group, tex)
            pairs.append((ci, vi, f"intent_{intent}", 0))
            # graded like the tonal errors it mirrors (version 5: a tone fix of a tonal degradation is
            # graded, so the clean bright/dark/foggy photo against its "correction" must be too, or
            # the judge learns that darkening a bright photo pays; models/quality.md)
            gains.append(max(0.0, GRADE_REF_DB - qp._psnr(vc, u)))
            rows["role"][ci] = f"clean_{intent}"
        if rng.random() < 0.3:
            gk = str(rng.choice(["dark", "bright"]))
            g = qp.grade_intent(u, rng, gk)
            gi = add(g, vid, f"graded_{gk}", "graded", 0, ph.group, tex)
            vi = add(qp.FAILURES["noise"](g, rng, mild=True), vid, "version", f"graded_{gk}_noise", 1, ph.group, tex)
            pairs.append((gi, vi, f"graded_{gk}_noise", 1))
            gains.append(float("nan"))
        if rng.random() < TEXTURE_P:
            cands = [qp.random_view(cache[pi], rng, ph.hr, (320, 512)) for _ in range(4)]
            tc = max(cands, key=qp.texture_score)
            if min(tc.shape[:2]) >= 64:
                ttex = qp.texture_score(tc)
                ti = add(tc, vid, "clean_texture", "clean", 0, ph.group, ttex)
                for kind, v in texture_versions(tc, rng, restorer):
                    pairs.append((ti, add(v, vid, "version", kind, 1, ph.group, ttex), kind, 1))
                    gains.append(float("nan"))
        if v4 and restorer is not None:
            r4 = np.random.default_rng([seed, 4, pi, k])
            if r4.random() < V4_RESTORE_P:
                kind4, rest_img, deg_img, gain = qp.restoration_pair(u, r4, restorer)
                if gain >= qp.MIN_RESTORE_GAIN_DB:
                    di = add(deg_img, vid, "version", kind4, 0, ph.group, tex)
                    pairs.append((add(rest_img, vid, "restored", kind4, 0, ph.group, tex), di, kind4, 0))
                    gains.append(float(gain))
            if r4.random() < V4_TIE_P:
                kind4, a_img, b_img, _dpsnr, tie = qp.invisible_pair(u, r4, deblock)
                if tie:
                    ai = add(a_img, vid, "tie", kind4, 1, ph.group, tex)
                    ties.append((ai, add(b_img, vid, "tie", kind4, 1, ph.group, tex)))
                    tie_kind.append(kind4)
        if v5 and correct is not None:
            r5 = np.random.default_rng([seed, 5, pi, k])
            if r5.random() < V5_TONE_FIX_P:
                kind5, fixed, deg5, gain5 = qp.tone_correction_pair(u, r5, correct)
                if gain5 >= qp.MIN_TONE_GAIN_DB:
                    di = add(deg5, vid, "version", kind5, 0, ph.group, tex)
                    pairs.append((add(fixed, vid, "restored", kind5, 0, ph.group, tex), di, kind5, 0))
                    gains.append(float(gain5))
            if r5.random() < V5_TONE_CLEAN_P:
                edited, p5 = qp.tone_on_clean(u, correct)
                if p5 < qp.TONE_ON_CLEAN_MAX_DB:
                    pairs.append((ci, add(edited, vid, "version", "tone_on_clean", 1, ph.group, tex), "tone_on_clean", 1))
                    gains.append(max(0.0, GRADE_REF_DB - p5))
        if j % 20 == 0:
            print(f"[{split} {shard}] {j}/{len(jobs)} views, {len(feats)} images, {time.time() - t0:.0f} s",
                  flush=True)
    path = Path(out) / f"cache_{split}_{shard}.npz"
    np.savez_compressed(path, feats=np.stack(feats), pairs=np.array([p[:2] for p in pairs], np.int64),
                        pair_kind=np.array([p[2] for p in pairs]), pair_mild=np.array([p[3] for p in pairs]),
                        **({"ties": np.array(ties, np.int64).reshape(-1, 2), "tie_kind": np.array(tie_kind, dtype=str)}
                           if v4 else {}),
                        **({"pair_gain": np.array(gains, np.float32)} if v5 else {}),
                        **{k: np.array(v) for k, v in rows.items()})
    return str(path)


def run_clive(out: str, seed: int, crops: int = 2, features: str = "v3") -> str:
    """CLIVE photos whole and as ``crops`` random crops each (the same crops as version 2's cache);
    ``features`` "v5": version 5's statistics."""
    import torch

    torch.set_num_threads(1)
    from models.training.iqa_data import load_clive
    from models.training.iqa_data import load_rgb as load_rated
    from models.training.nets_quality3 import quality_features_v3

    feat_fn = quality_features_v3
    if features == "v5":
        from models.training.nets_quality5 import quality_features_v5

        feat_fn = quality_features_v5
    feats, mos, img_id, val, crop = [], [], [], [], []
    rated = load_clive("all")
    for i, r in enumerate(rated):
        rng = np.random.default_rng([seed, 7, i])
        a = load_rated(r.path).astype(np.float32) / 255.0
        views = [a]
        h, w, _ = a.shape
        for _ in range(crops):
            ch, cw = int(rng.integers(int(0.64 * h), h)), int(rng.integers(int(0.64 * w), w))
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            views.append(a[y0:y0 + ch, x0:x0 + cw])
        for c, v in enumerate(views):
            feats.append(t2._features(feat_fn, v))
            mos.append(r.mos)
            img_id.append(i)
            val.append(r.val)
            crop.append(c)
        if i % 100 == 0:
            print(f"[clive] {i}/{len(rated)}", flush=True)
    path = Path(out) / "cache_clive.npz"
    np.savez_compressed(path, feats=np.stack(feats), mos=np.array(mos), img=np.array(img_id),
                        val=np.array(val), crop=np.array(crop), names=np.array([r.path.name for r in rated]))
    return str(path)


def load_cache(split: str) -> dict[str, np.ndarray]:
    return t2.load_cache(split, RUN)


# ----------------------------------------------------------------------------- fitting

DEFAULTS: dict[str, float] = {**t2.DEFAULTS, "w_pair": 3.0, "members": 5, "bootstrap": 1.0}


_SHARED: Any = None


def _fit_member(job: tuple[np.ndarray, int, bool]) -> Any:
    import torch

    torch.set_num_threads(1)
    clive, syn, cfg = _SHARED
    rows, seed, log = job
    return t2.fit_head(clive, syn, rows, cfg, seed=seed, log=log)


def fit_ensemble(clive: dict[str, np.ndarray], syn: dict[str, np.ndarray], clive_rows: np.ndarray,
                 cfg: dict[str, float], seed: int = 0, log: bool = False, workers: int = 2) -> Any:
    """``members`` version-2 heads, each fitted (``train_quality2.fit_head``) from its own seed on
    a bootstrap draw of the rated photos (all crops of a drawn photo go together), then packed
    into one ``QualityNetV3`` whose logit is their mean."""
    members = int(cfg["members"])
    rng = np.random.default_rng(seed)
    imgs = np.unique(clive["img"][clive_rows])
    jobs = []
    for m in range(members):
        if cfg.get("bootstrap", 1.0) and members > 1:
            draw = rng.choice(imgs, size=len(imgs), replace=True)
            rows = clive_rows[np.isin(clive["img"][clive_rows], draw)]
        else:
            rows = clive_rows
        jobs.append((rows, seed * 100 + m, log and m == 0))
    global _SHARED
    _SHARED = (clive, syn, cfg)
    if workers > 1 and members > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
            nets = list(ex.map(_fit_member, jobs))
    else:
        nets = [_fit_member(j) for j in jobs]
    return pack_members(nets, hidden=int(cfg["hidden"]))


def pack_members(nets: list[Any], hidden: int) -> Any:
    """Version-2 heads, each with its own standardisation, as one ``QualityNetV3`` (the first
    member's constants; the others' folded into their first layers). Equal logits as long as no
    standardised feature reaches the +-8 clamp of a member."""
    import torch

    from models.training.nets_quality3 import QualityNetV3

    net = QualityNetV3(hidden=hidden, n_features=int(nets[0].feat_mean.shape[0]), members=len(nets))
    with torch.no_grad():
        net.feat_mean.copy_(nets[0].feat_mean)
        net.feat_std.copy_(nets[0].feat_std)
        for i, h in enumerate(nets):
            # z_h = (f - m_h) / s_h = (z * s + m - m_h) / s_h, z the packed standardisation
            scale = net.feat_std / h.feat_std
            shift = (net.feat_mean - h.feat_mean) / h.feat_std
            for dst, src in ((net.fc1[i], h.fc1), (net.lin[i], h.lin)):
                dst.weight.copy_(src.weight * scale)
                dst.bias.copy_(src.bias + src.weight @ shift)
            net.fc2[i].load_state_dict(h.fc2.state_dict())
    net.eval()
    return net


def _fit_fold(split: tuple[np.ndarray, np.ndarray, int]) -> Any:
    clive, syn, cfg = _SHARED
    return fit_ensemble(clive, syn, split[0], cfg, seed=split[2], workers=1)


def cross_validate(cfg: dict[str, float], folds: int = 5, seed: int = 0, cols: np.ndarray | None = None,
                   workers: int = 2) -> dict[str, Any]:
    clive = dict(np.load(RUN / "cache_clive.npz"))
    syn = load_cache("train")
    if cols is not None:
        clive["feats"], syn["feats"] = clive["feats"][:, cols], syn["feats"][:, cols]
    train_imgs = np.unique(clive["img"][~clive["val"]])
    perm = np.random.default_rng(seed).permutation(train_imgs)
    preds = np.zeros(len(clive["img"]))
    sr = []
    pa: dict[str, float] = {}
    splits = []
    for f in range(folds):
        held = np.isin(clive["img"], perm[f::folds])
        splits.append((np.where(~clive["val"] & ~held)[0], np.where(~clive["val"] & held)[0], seed + f))
    global _SHARED
    _SHARED = (clive, syn, cfg)
    import multiprocessing as mp

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        nets = list(ex.map(_fit_fold, splits))
    for f, ((_, te, _), net) in enumerate(zip(splits, nets, strict=True)):
        sr.append(t2.clive_eval(net, clive, te)["srocc"])
        if f == 0:
            pa = t2.pair_accuracy(t2.predict(net, syn["feats"]), syn)
        w = te[clive["crop"][te] == 0]
        preds[w] = t2.predict(net, clive["feats"][w])
    w = np.where(~clive["val"] & (clive["crop"] == 0))[0]
    fams = {k: v for k, v in pa.items() if k.startswith("family:")}
    return {"cv_srocc_mean": float(np.mean(sr)), "cv_srocc_pooled": t2.spearman(preds[w], clive["mos"][w]),
            "train_pairs_all": pa["all"], "train_pairs_families": fams,
            "train_pairs_texture": {k: v for k, v in pa.items() if k.startswith("texture_")}}


def assemble_clive() -> Path:
    """runs/quality3/cache_clive.npz from version 2's CLIVE cache and the extra statistics of the
    same views (``cache_clive_extra.npz``), when both exist; else compute it."""
    out = RUN / "cache_clive.npz"
    base, extra = RUN.parent / "quality2" / "cache_clive.npz", RUN / "cache_clive_extra.npz"
    if base.exists() and extra.exists():
        b = dict(np.load(base))
        b["feats"] = np.concatenate([b["feats"], np.load(extra)["feats"]], axis=1)
        np.savez_compressed(out, **b)
        return out
    return Path(run_clive(str(RUN), 0))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="store_true", help="compute the synthetic feature caches")
    ap.add_argument("--clive", action="store_true", help="compute (or assemble) the CLIVE feature cache")
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
    if args.clive:
        print(assemble_clive())
    if args.build:
        t0 = time.time()
        with ProcessPoolExecutor(args.workers) as ex:
            futs = [ex.submit(run_shard, "train", s, args.workers, args.seed, str(RUN)) for s in range(args.workers)]
            for f in futs:
                print(f.result(), flush=True)
        print(f"caches built in {time.time() - t0:.0f} s")
    if args.cv:
        r = cross_validate(cfg, seed=args.seed, workers=args.workers)
        print(json.dumps({"cfg": cfg, **r}))
        with open(RUN / "cv.jsonl", "a") as log:
            log.write(json.dumps({"cfg": cfg, **r}) + "\n")
    if args.fit:
        import torch

        t0 = time.time()
        clive = dict(np.load(RUN / "cache_clive.npz"))
        syn = load_cache("train")
        rows = np.where(~clive["val"])[0]
        net = fit_ensemble(clive, syn, rows, cfg, seed=args.seed, log=True, workers=args.workers)
        tr = t2.pair_accuracy(t2.predict(net, syn["feats"]), syn)
        ck = {"model": net.state_dict(), "config": {"hidden": int(cfg["hidden"]), "members": int(cfg["members"]),
                                                    "n_features": int(syn["feats"].shape[1])},
              "cfg": cfg, "train_pairs": tr}
        ckpt = REPO / "models" / "training" / "checkpoints"
        ckpt.mkdir(exist_ok=True)
        torch.save(ck, ckpt / "quality_v3.pth")  # small and committed (*.pt is ignored)
        t2.export(net, args.out, {"version": "3", "cfg": cfg})
        summary = {"cfg": cfg, "fit_seconds": time.time() - t0, "train_pairs_all": tr["all"],
                   "n_clive_rows": int(len(rows)), "n_synthetic_images": int(len(syn["feats"])),
                   "n_pairs": int(len(syn["pairs"]))}
        (RUN / "fit.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
