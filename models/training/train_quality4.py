"""Train the quality model Q, version 4: version 3 plus successful restorations and invisible edits.

    python -m models.training.train_quality4 --build --workers 2   # feature caches (runs/quality4)
    python -m models.training.train_quality4 --clive               # CLIVE cache (version 3's features)
    python -m models.training.train_quality4 --fit                 # fit, export models/quality.onnx
    python -m models.training.train_quality4 --build --views-scale 0.05 --out-dir runs/quality4_smoke  # a smoke run

Why: version 3 was fitted only on "the clean photo beats every way an edit goes wrong", our own
restorer pushed too far among them. It learned the restorer's signature as a defect: it scored every
deblocked copy of a JPEG below the JPEG, at quality 50 too where the copy is 0.5 dB closer to the
clean photo, and fell by up to 4 points for the invisible deblocking of a good phone JPEG
(models/quality.md, Limits). So the guard refused good restorations and the labels said JPEG photos
do not gain. Version 4 draws version 3's evidence with the same features and seeds (what differs:
"our restorer pushed too far" is now restorer version 2, told its measured levels, where version 3
was built with the blind version 1) and adds, from a random stream of its own
(``train_quality3.run_shard(..., v4=True)``):

* **successful restorations** (``quality_pairs.restoration_pair``): for ``V4_RESTORE_P`` of the views,
  a degraded copy (JPEG quality 15-65, Gaussian noise sigma 4-20, or both) against our restorer's
  output on it, as an ordered pair "restored beats degraded" when the restoration is at least
  ``MIN_RESTORE_GAIN_DB`` (0.3 dB) closer to the clean view. The clean view still beats both (the
  degraded copy through version 3's degradation pairs; the restored copy is not paired with it);
* **invisible edits** (``quality_pairs.invisible_pair``): for ``V4_TIE_P`` of the views, a tie between
  a good JPEG (quality 76-95) and our restorer's deblocking of it without the dead zone, or between
  the view and itself with sub-level noise re-quantised, kept when the edit moves PSNR against the
  clean view by at most ``TIE_MAX_DB`` (0.15 dB) or changes the photo by less than 50 dB. Loss: ``softplus((|Q(a) - Q(b)| - tie_tol) / 0.1)``
  x 0.1, weight ``w_tie``.

The VAL photos (``data.is_validation``) and the CLIVE validation part are never fitted or tuned on.
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

RUN = REPO / "runs" / "quality4"
DEFAULTS: dict[str, float] = {**t3.DEFAULTS, "w_tie": 1.0, "tie_tol": 0.15}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="store_true", help="compute the synthetic feature caches")
    ap.add_argument("--clive", action="store_true", help="compute the CLIVE feature cache")
    ap.add_argument("--fit", action="store_true", help="fit on all training evidence and export")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--views-scale", type=float, default=1.0, help="fraction of the views (a smoke run)")
    ap.add_argument("--set", action="append", default=[], help="head setting KEY=VALUE (see DEFAULTS)")
    ap.add_argument("--out-dir", type=Path, default=RUN)
    ap.add_argument("--out", type=Path, default=REPO / "models" / "quality.onnx")
    args = ap.parse_args(argv)
    run = args.out_dir
    run.mkdir(parents=True, exist_ok=True)
    cfg = dict(DEFAULTS)
    for kv in args.set:
        k, v = kv.split("=", 1)
        cfg[k] = float(v)
    step = max(1, round(1 / args.views_scale))  # a smoke run: every step-th view only
    if args.clive:
        print(t3.run_clive(str(run), 0), flush=True)
    if args.build:
        t0 = time.time()
        with ProcessPoolExecutor(args.workers) as ex:
            futs = [ex.submit(t3.run_shard, "train", s, args.workers, args.seed, str(run), True, step)
                    for s in range(args.workers)]
            for f in futs:
                print(f.result(), flush=True)
        print(f"caches built in {time.time() - t0:.0f} s", flush=True)
    if args.fit:
        import torch

        t0 = time.time()
        clive = dict(np.load(run / "cache_clive.npz"))
        syn = t2.load_cache("train", run)
        rows = np.where(~clive["val"])[0]
        net = t3.fit_ensemble(clive, syn, rows, cfg, seed=args.seed, log=True, workers=args.workers)
        q = t2.predict(net, syn["feats"])
        tr = t2.pair_accuracy(q, syn)
        ties = syn.get("ties", np.zeros((0, 2), np.int64))
        tie_gap = float(np.abs(q[ties[:, 0]] - q[ties[:, 1]]).mean()) if len(ties) else None
        ck = {"model": net.state_dict(), "config": {"hidden": int(cfg["hidden"]), "members": int(cfg["members"]),
                                                    "n_features": int(syn["feats"].shape[1])},
              "cfg": cfg, "train_pairs": tr, "train_tie_gap": tie_gap}
        ckpt = REPO / "models" / "training" / "checkpoints"
        ckpt.mkdir(exist_ok=True)
        torch.save(ck, ckpt / "quality_v4.pth")  # small and committed
        t2.export(net, args.out, {"version": "4", "cfg": cfg})
        summary = {"cfg": cfg, "fit_seconds": time.time() - t0, "train_pairs_all": tr["all"],
                   "train_pairs_restoration": tr.get("family:restoration"), "train_tie_gap": tie_gap,
                   "n_ties": int(len(ties)), "n_clive_rows": int(len(rows)),
                   "n_synthetic_images": int(len(syn["feats"])), "n_pairs": int(len(syn["pairs"]))}
        (run / "fit.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
