"""Train the quality model Q, version 5: version 4 plus tone, graded margins and colour-cast statistics.

    python -m models.training.train_quality5 --build --workers 2   # synthetic feature caches (runs/quality5)
    python -m models.training.train_quality5 --clive               # CLIVE cache (version 5's statistics)
    python -m models.training.train_quality5 --fit                 # fit; writes runs/quality5/quality.onnx
    python -m models.training.train_quality5 --fit --out models/quality.onnx   # ... or ships it
    python -m models.training.train_quality5 --export-only --out models/quality.onnx   # from the committed checkpoint
    python -m models.training.train_quality5 --build --views-scale 0.05 --out-dir runs/quality5_smoke  # smoke run

Why (models/quality.md, "Version 5"): the labels of the improvability model are Q's gain, and Q
version 4 gains little from a tonal correction (on the labels of 2026-12-07, tonal fixes 3.3 dB closer
to the clean photo gained 0.5 points where noise removal gains 3-4), so the improvability model ranks
tonal problems low against what one-click actually does for them; and on its own TRAIN views version
4 orders only 78% of colour shifts and 70% of overdone local tone mapping right. Version 5 keeps
version 4's evidence, features and seeds and adds:

* **version 5's statistics** (``nets_quality5``): colour-cast estimates (gray-world, gray-edge,
  white-patch, the greys' colour) and local tone mapping statistics (histogram entropy, spread of
  local contrast, coarse halos, shadow detail): 364 statistics in all;
* **graded margins**: a pair whose gain in dB is known must be ranked by at least
  ``margin + margin_slope * min(gain, gain_cap)`` points, not a flat 0.3 — for "the clean view beats
  its degradation" the gain is ``GRADE_REF_DB`` (40) minus the degradation's PSNR, for a restoration
  or a tone correction its PSNR gain. So a large tonal error has to cost as much as the noise or
  blur that costs as many dB;
* **tone corrections** (``quality_pairs.tone_correction_pair``): for ``V5_TONE_FIX_P`` of the views a
  tonal degradation (under/over exposure, low contrast, haze, colour cast, desaturation) against our
  shipped tone stage's correction of it, "corrected beats degraded" when the correction is at least
  1 dB closer to the clean view;
* **the tone stage on a clean view** (``quality_pairs.tone_on_clean``): for ``V5_TONE_CLEAN_P`` of the
  views, when the stage changes the clean view by more than 38 dB PSNR, the clean view beats it.

Settings (``margin_slope`` 0.08 points per dB, ``gain_cap`` 12 dB, the rest version 4's) were chosen
before any fit and not tuned. The VAL photos and the CLIVE validation part are never fitted or tuned on.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from models.training import train_quality2 as t2
from models.training import train_quality3 as t3
from models.training.data import REPO

RUN = REPO / "runs" / "quality5"
DEFAULTS: dict[str, float] = {**t3.DEFAULTS, "w_tie": 1.0, "tie_tol": 0.15, "margin_slope": 0.08, "gain_cap": 12.0}


def grade_intent(syn: dict[str, np.ndarray], off: bool = False) -> None:
    """The clean photo that is dark, bright or foggy by intent against its naive correction
    (``intent_*`` pairs): graded by the correction's size in dB since 2026-12-08 (the build stores
    ``GRADE_REF_DB - PSNR``), like the tone fixes that teach the opposite direction. Q v5b was fitted
    without it: its bright photos lose to darker, contrastier edits (models/quality.md, "Version 5
    through the whole chain"). ``off``: those pairs keep the flat margin, as for v5b."""
    if not off:
        return
    kinds = syn["pair_kind"].astype(str)
    syn["pair_gain"][np.char.startswith(kinds, "intent_")] = np.nan


def grade_overdone(syn: dict[str, np.ndarray], table_path: Path | None, off: bool = False) -> None:
    """Version 5b: graded margins for the edits that overdo tone or colour too. Version 5a graded only
    the degradations (a tonal degradation costs up to 1.26 points) and left the overdone edits at 0.3,
    so it learned that more contrast, saturation and dehaze is better (models/quality.md). Where the
    cache has no PSNR for an overdone edit (built before it stored one), the median PSNR of that kind
    and strength on TRAIN views (``table_path``) stands in; ``tone_on_clean`` pairs then get the bound
    that made them pairs (38 dB). ``off``: those pairs keep no gain (the flat margin)."""
    from models.training import quality_pairs as qp

    kinds = syn["pair_kind"].astype(str)
    fam = np.array([qp.FAMILY.get(k, "") for k in kinds])
    over = np.isin(fam, list(qp.OVERDONE_FAMILIES))
    if off:
        syn["pair_gain"][over] = np.nan
        return
    missing = over & ~np.isfinite(syn["pair_gain"])
    if not missing.any():
        return
    if table_path is None:
        raise SystemExit("this cache has no PSNR for overdone edits: give --overdone-psnr (or --no-overdone-grading)")
    table = json.loads(table_path.read_text())
    for i in np.where(missing)[0]:
        key = f"{kinds[i]}|{int(syn['pair_mild'][i])}"
        psnr = table.get(key, qp.TONE_ON_CLEAN_MAX_DB if kinds[i] == "tone_on_clean" else None)
        if psnr is not None:
            syn["pair_gain"][i] = max(0.0, t3.GRADE_REF_DB - float(psnr))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="store_true", help="compute the synthetic feature caches")
    ap.add_argument("--clive", action="store_true", help="compute the CLIVE feature cache")
    ap.add_argument("--fit", action="store_true", help="fit on all training evidence and export")
    ap.add_argument("--overdone-psnr", type=Path, default=None,
                    help="version 5b on a cache built before overdone edits carried their PSNR: a JSON of the "
                         "median PSNR per 'kind|mild' (models/training/quality5_overdone_psnr.json) that grades them")
    ap.add_argument("--no-overdone-grading", action="store_true",
                    help="version 5a: only degradations, restorations and tone corrections are graded")
    ap.add_argument("--no-intent-grading", action="store_true",
                    help="dark/bright/foggy-by-intent pairs keep the flat margin (as Q v5b was fitted)")
    ap.add_argument("--export-only", action="store_true", help="export the committed checkpoint (no caches needed)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--views-scale", type=float, default=1.0, help="fraction of the views (a smoke run)")
    ap.add_argument("--set", action="append", default=[], help="head setting KEY=VALUE (see DEFAULTS)")
    ap.add_argument("--out-dir", type=Path, default=RUN)
    ap.add_argument("--out", type=Path, default=None, help="ONNX path (default OUT_DIR/quality.onnx)")
    ap.add_argument("--checkpoint", type=Path,
                    default=REPO / "models" / "training" / "checkpoints" / "quality_v5.pth")
    args = ap.parse_args(argv)
    run = args.out_dir
    run.mkdir(parents=True, exist_ok=True)
    cfg = dict(DEFAULTS)
    for kv in args.set:
        k, v = kv.split("=", 1)
        cfg[k] = float(v)
    step = max(1, round(1 / args.views_scale))
    if args.export_only:
        import torch

        from models.training.nets_assess import load_quality

        ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        out = args.out or run / "quality.onnx"
        t2.export(load_quality(args.checkpoint), out, {"version": "5", "cfg": ck["cfg"]})
        print(f"exported {args.checkpoint} -> {out}", flush=True)
        return
    if args.clive:
        print(t3.run_clive(str(run), 0, features="v5"), flush=True)
    if args.build:
        t0 = time.time()
        with ProcessPoolExecutor(args.workers) as ex:
            futs = [ex.submit(t3.run_shard, "train", s, args.workers, args.seed, str(run), True, step, True)
                    for s in range(args.workers)]
            for f in futs:
                print(f.result(), flush=True)
        print(f"caches built in {time.time() - t0:.0f} s", flush=True)
    if args.fit:
        import torch

        from models.training.nets_quality5 import from_v3

        t0 = time.time()
        clive = dict(np.load(run / "cache_clive.npz"))
        syn = t2.load_cache("train", run)
        grade_overdone(syn, args.overdone_psnr, off=args.no_overdone_grading)
        grade_intent(syn, off=args.no_intent_grading)
        rows = np.where(~clive["val"])[0]
        net = from_v3(t3.fit_ensemble(clive, syn, rows, cfg, seed=args.seed, log=True, workers=args.workers))
        q = t2.predict(net, syn["feats"])
        tr = t2.pair_accuracy(q, syn)
        ties = syn.get("ties", np.zeros((0, 2), np.int64))
        tie_gap = float(np.abs(q[ties[:, 0]] - q[ties[:, 1]]).mean()) if len(ties) else None
        ck = {"model": net.state_dict(), "config": {"hidden": int(cfg["hidden"]), "members": int(cfg["members"]),
                                                    "n_features": int(syn["feats"].shape[1]), "features": "v5"},
              "cfg": cfg, "train_pairs": tr, "train_tie_gap": tie_gap}
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ck, args.checkpoint)  # small and committed
        out = args.out or run / "quality.onnx"
        t2.export(net, out, {"version": "5", "cfg": cfg})
        summary = {"cfg": cfg, "fit_seconds": time.time() - t0, "train_pairs": tr, "train_tie_gap": tie_gap,
                   "n_ties": int(len(ties)), "n_clive_rows": int(len(rows)),
                   "n_synthetic_images": int(len(syn["feats"])), "n_pairs": int(len(syn["pairs"])), "onnx": str(out)}
        (run / "fit.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
