"""The regression guard's margin: how much must Q gain before an edit counts as an improvement?

    python -m models.training.calibrate_guard                      # TRAIN: choose, write models/quality.json
    python -m models.training.calibrate_guard --split val --no-write --out runs/guard_val.json   # report only

The guard (``engine.enhance.guard``) keeps an enhancement when Q rates the result above the
original. Q is not exact: it moves a little between two versions of a photo no one can tell apart,
so "gained +0.01" is no evidence, and the app would keep (and export) an invisible change and show
the user a gain that is not there. This script measures that noise on views of clean photos with
the judge exactly as the guard calls it (``engine.assess.quality``), over edits that change nothing
a person can see:

* ``mirror``: the view against its mirror image (no edit at all: Q's own positional noise);
* ``resave_q95``: the view against a JPEG re-save at quality 95, 4:4:4;
* ``requant``: the view against itself with sub-level noise (sigma 0.3-0.6 of a level), re-quantised;
* ``restore_clean``: a clean JPEG of the view (quality 85-95) against our restorer's output on it,
  as the app runs it (levels measured, the dead zone), kept only where the output is within 45 dB
  of its input (issue 13's "unchanged in effect").

The margin is the ``--quantile`` (0.9) of the *signed* gain Q(b) - Q(a) over those pairs, taken
over both orders (an invisible edit is as likely to be judged up as down): at most one invisible
edit in ten then counts as a gain. Chosen on TRAIN views only; the VAL run reports the same
figures on photos the choice never saw, and beside them what the margin costs: the share of
**real restorations** (``quality_pairs.restoration_pair``: JPEG 15-65 and/or noise sigma 4-20, our
restorer at least 0.3 dB closer to the clean view) whose Q gain is above the margin (kept), and the
share of **harmful edits** (mild over-smoothing, over-sharpening, over-saturation, posterisation)
whose Q gain is above it (wrongly kept).

Writes ``models/quality.json`` (``model_sha256`` names the Q file it was made for; the guard applies
the margin only to that file): ``{"guard_margin": m, "calibration": {...}}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.training.data import REPO, discover, load_rgb

HARMFUL = ("smooth_bilateral", "smooth_nlmeans", "oversharpen", "oversaturate", "posterize")
MIN_EFFECT_PSNR = 45.0


def _u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def measure(split: str, n_views: int, seed: int, q_path: Path) -> dict[str, list[dict[str, Any]]]:
    from engine.assess import degrade as dg
    from engine.assess.quality import QualityModel
    from models.training import quality_pairs as qp
    from models.training.train_quality import OnnxRestorer, find_restorer

    q = QualityModel(q_path)
    rp = find_restorer()
    restorer = OnnxRestorer(rp, threads=2) if rp is not None else None
    photos = discover(split)
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict[str, Any]]] = {"invisible": [], "restoration": [], "harmful": []}
    order = rng.permutation(len(photos))
    for k in range(n_views):
        ph = photos[int(order[k % len(photos)])]
        u = qp.random_view(load_rgb(ph), rng, ph.hr)
        a8 = _u8(u)
        qa = q(a8)
        name = f"{ph.path.name}#{k}"
        out["invisible"].append({"kind": "mirror", "view": name, "a": qa, "b": q(np.ascontiguousarray(a8[:, ::-1]))})
        b = dg.jpeg(u, 95, subsampling=False)
        out["invisible"].append({"kind": "resave_q95", "view": name, "a": qa, "b": q(_u8(b))})
        s = float(rng.uniform(0.3, 0.6)) / 255.0
        b = u + rng.normal(0, s, u.shape).astype(np.float32)
        out["invisible"].append({"kind": "requant", "view": name, "a": qa, "b": q(_u8(b))})
        if restorer is not None:
            j = dg.to_float(dg.to_uint8(dg.jpeg(u, int(rng.integers(85, 96)), subsampling=bool(rng.random() < 0.8))))
            r = dg.to_float(dg.to_uint8(restorer(j)))
            mse = float(np.mean((r - j) ** 2))
            if mse == 0 or 10 * np.log10(1.0 / mse) >= MIN_EFFECT_PSNR:
                out["invisible"].append({"kind": "restore_clean", "view": name, "a": q(_u8(j)), "b": q(_u8(r))})
            kind, rest, deg, gain_db = qp.restoration_pair(u, rng, restorer)
            if gain_db >= qp.MIN_RESTORE_GAIN_DB:
                out["restoration"].append({"kind": kind, "view": name, "gain_db": gain_db,
                                           "a": q(_u8(deg)), "b": q(_u8(rest))})
        h = HARMFUL[k % len(HARMFUL)]
        b = getattr(qp, h)(u, rng, mild=True)
        out["harmful"].append({"kind": h, "view": name, "a": qa, "b": q(_u8(b))})
        if (k + 1) % 20 == 0:
            print(f"{k + 1}/{n_views} views", flush=True)
    return out


def summarise(res: dict[str, list[dict[str, Any]]], margin: float | None, quantile: float) -> dict[str, Any]:
    inv = res["invisible"]
    signed = np.array([r["b"] - r["a"] for r in inv] + [r["a"] - r["b"] for r in inv])
    chosen = float(np.quantile(signed, quantile)) if len(signed) else 0.0
    m = chosen if margin is None else margin
    s: dict[str, Any] = {"quantile": quantile, "margin_from_these": round(chosen, 4), "margin_applied": round(m, 4)}
    for key in ("invisible", "restoration", "harmful"):
        rows = res[key]
        per: dict[str, Any] = {}
        for kind in sorted({r["kind"] for r in rows}) + ["all"]:
            rr = [r for r in rows if kind in ("all", r["kind"])]
            g = np.array([r["b"] - r["a"] for r in rr])
            per[kind] = {"n": len(rr), "gain_mean": float(g.mean()) if len(g) else None,
                         "abs_gain_median": float(np.median(np.abs(g))) if len(g) else None,
                         "kept_at_0": float(np.mean(g > 0)) if len(g) else None,
                         "kept_at_margin": float(np.mean(g > m)) if len(g) else None}
        s[key] = per
    return s


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="train", choices=("train", "val"))
    ap.add_argument("--views", type=int, default=150)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--quantile", type=float, default=0.9)
    ap.add_argument("--quality", type=Path, default=REPO / "models" / "quality.onnx")
    ap.add_argument("--margin", type=float, default=None, help="report at this margin instead of the one found")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "guard_calibration.json")
    ap.add_argument("--no-write", action="store_true", help="do not write models/quality.json")
    args = ap.parse_args(argv)
    if args.split == "val" and not args.no_write:
        ap.error("the margin is chosen on TRAIN; a VAL run only reports (--no-write)")
    t0 = time.time()
    res = measure(args.split, args.views, args.seed, args.quality)
    summary = summarise(res, args.margin, args.quantile)
    summary.update({"split": args.split, "views": args.views, "seed": args.seed, "seconds": round(time.time() - t0),
                    "quality_sha256": hashlib.sha256(args.quality.read_bytes()).hexdigest()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": res}, indent=1))
    print(json.dumps(summary, indent=1))
    if not args.no_write:
        side = args.quality.with_suffix(".json")
        side.write_text(json.dumps({
            "model_sha256": summary["quality_sha256"],
            "guard_margin": round(max(0.0, summary["margin_from_these"]), 3),
            "calibration": {"command": "python -m models.training.calibrate_guard", "split": "train",
                            "views": args.views, "seed": args.seed, "quantile": args.quantile,
                            "invisible": summary["invisible"]["all"], "restoration": summary["restoration"]["all"],
                            "harmful": summary["harmful"]["all"]},
        }, indent=1) + "\n")
        print(f"wrote {side}")


if __name__ == "__main__":
    main()
