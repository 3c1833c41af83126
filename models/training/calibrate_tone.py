"""Calibrate the tone stage's dead zones on TRAIN photos and write ``<model>.json``.

    python -m models.training.calibrate_tone --model models/tone.onnx --limit 240

The tone network makes small corrections to photos that have no tonal problem (on VAL about
2.5 CIEDE2000 on average, where one just-noticeable difference is about 1). The gate
(``engine.enhance.tone.gate_params``) drops a parameter's change when it is below a dead zone
``t_k`` and keeps it whole from ``2 t_k``. Here ``t_k = alpha * s_k``, where ``s_k`` is the
90th percentile of ``|change_k|`` the network predicts on clean TRAIN photos, and one scalar
``alpha`` is chosen: the smallest on the grid whose mean CIEDE2000 on clean TRAIN photos is at
most ``--target`` (default 0.8, a margin under the issue's 1.0 for photos never seen), and the
figures for every alpha are printed so the cost on degraded photos is visible.

Data: TRAIN photos only (``models.training.data.discover("train")``), long side ``--max-side``;
degraded copies from the same generator as ``eval_tone`` but with another seed. VAL is never
read here, so ``eval_tone`` on VAL stays an honest test of the chosen gate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.assess import degrade as dg
from engine.assess.metrics import psnr
from engine.enhance import tone as T
from models.training.data import discover, load_rgb
from models.training.eval_tone import ciede_fast, degrade_case

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


MARGINS = (None, -0.1, 0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def q_gate_grid(clean: list, degraded: list, photos: list, scale: np.ndarray, alpha: float,
                args: argparse.Namespace) -> tuple[list[dict[str, Any]], float | None]:
    """Q before and after the (dead-zoned) tone on clean, tonally degraded and technically
    degraded TRAIN photos; for each margin, what keeping tone only where Q gains more than it
    does to each. Returns the grid and the chosen margin: the best degraded PSNR among margins
    with clean CIEDE2000 <= target and at most ``--max-lowered`` of technical photos lowered."""
    from models.training.eval_tone import technical_case
    from models.training.labels import QModel

    q = QModel(Path(T.default_model_path()).parent / "quality.onnx")
    dz = {k: float(alpha * s) for k, s in zip(T.PARAM_NAMES, scale, strict=True)}
    tech = []
    for i in range(len(photos)):
        u = clean[i][0]
        xt, _ = technical_case(u, i, args.seed)
        tech.append((xt, u, T.predict_params(xt, args.model, gate=False)))

    def measured(items: list) -> list[tuple[float, float, float, float, float]]:
        out = []
        for img, ref, p in items:
            pg = {**T.gate_params(p, dz), "airlight": p["airlight"], "version": p["version"]}
            y = T.apply_params(img, pg)
            out.append((q(img), q(y), min(psnr(img, ref), 60.0), min(psnr(y, ref), 60.0), ciede_fast(y, ref)))
        return out

    mc, md, mt = measured(clean), measured(degraded), measured(tech)
    base_de = [ciede_fast(img, ref) for img, ref, _ in clean]  # 0: the clean photo is the reference
    grid = []
    for m in MARGINS:
        def keep(r: tuple, m: float | None = m) -> bool:
            return m is None or r[1] - r[0] > m

        cde = float(np.mean([r[4] if keep(r) else b for r, b in zip(mc, base_de, strict=True)]))
        dps = float(np.mean([r[3] if keep(r) else r[2] for r in md]))
        low = float(np.mean([(r[3] if keep(r) else r[2]) < r[2] - 0.1 for r in mt]))
        kept = float(np.mean([keep(r) for r in md]))
        grid.append({"margin": m, "clean_de00": round(cde, 4), "degraded_psnr": round(dps, 4),
                     "technical_lowered": round(low, 4), "degraded_kept": round(kept, 4),
                     "clean_kept": round(float(np.mean([keep(r) for r in mc])), 4)})
        print(f"Q margin {m}: clean CIEDE {cde:.2f} kept {grid[-1]['clean_kept']:.2f} | degraded PSNR {dps:.2f} "
              f"kept {kept:.2f} | technical lowered {low:.2f}", flush=True)
    ok = [g for g in grid if g["clean_de00"] <= args.target and g["technical_lowered"] <= args.max_lowered]
    best = max(ok, key=lambda g: g["degraded_psnr"]) if ok else grid[-1]
    margin = best["margin"]
    # Q's own resolution: how much it moves between a clean photo and its mirror image, which no
    # one would rate differently. A gain smaller than the median of that is no evidence that the
    # edit helps, so the margin is at least that (the next step of the grid up). (A JPEG q95
    # re-save is not used: Q is built to see compression, and moves a median 0.19 for it.)
    floor = q_noise_floor([u for u, _, _ in clean], q)
    if margin is not None and margin < floor:
        margin = min((m for m in MARGINS if m is not None and m >= floor), default=MARGINS[-1])
    grid.append({"q_noise_floor_median_mirror": round(floor, 4)})
    print(f"Q noise floor (median |dQ| between clean photos and their mirror images): {floor:.3f}")
    print(f"chosen Q margin {margin} (best by the grid: {best['margin']})")
    return grid, margin


def q_noise_floor(images: list[np.ndarray], q: Any) -> float:
    """Median of |Q(x) - Q(mirror of x)| over clean photos x."""
    d = [abs(q(np.ascontiguousarray(u[:, ::-1])) - q(u)) for u in images]
    return float(np.median(d)) if d else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=T.default_model_path())
    ap.add_argument("--limit", type=int, default=240, help="TRAIN photos used (evenly spread)")
    ap.add_argument("--max-side", type=int, default=384)
    ap.add_argument("--target", type=float, default=0.8, help="mean CIEDE2000 allowed on clean photos")
    ap.add_argument("--quantile", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--dry-run", action="store_true", help="print, do not write the .json")
    ap.add_argument("--q-gate", action="store_true",
                    help="also choose the quality margin: the tone stage is kept only where Q of the toned "
                         "photo beats Q of the photo by more than it (engine.enhance.tone.q_gate)")
    ap.add_argument("--q-alpha", type=float, default=None, help="dead-zone scale used with the Q gate")
    ap.add_argument("--max-lowered", type=float, default=0.05,
                    help="Q gate: largest share of technical-only photos whose PSNR tone may lower")
    args = ap.parse_args(argv)

    photos = discover("train")
    if args.limit and len(photos) > args.limit:
        idx = np.linspace(0, len(photos) - 1, args.limit).round().astype(int)
        photos = [photos[i] for i in idx]
    t0 = time.time()
    clean, degraded = [], []  # (image, reference, raw params)
    for i, ph in enumerate(photos):
        u = dg.to_float(load_rgb(ph, args.max_side))
        x, _ = degrade_case(u, i, args.seed)
        clean.append((u, u, T.predict_params(u, args.model, gate=False)))
        degraded.append((x, u, T.predict_params(x, args.model, gate=False)))
    print(f"{len(photos)} TRAIN photos predicted in {time.time() - t0:.0f}s", flush=True)

    dev = np.array([[abs(p[k] - T.NEUTRAL[k]) for k in T.PARAM_NAMES] for _, _, p in clean])
    scale = np.quantile(dev, args.quantile, axis=0)
    print(f"clean |change| q{args.quantile:.2f}: " + ", ".join(f"{k} {v:.3f}" for k, v in zip(T.PARAM_NAMES, scale, strict=True)))

    rows = []
    for a in ALPHAS:
        dz = {k: float(a * s) for k, s in zip(T.PARAM_NAMES, scale, strict=True)}

        def run(items: list, dz: dict[str, float] = dz) -> tuple[float, float]:
            ps, des = [], []
            for img, ref, p in items:
                q = {**T.gate_params(p, dz), "airlight": p["airlight"], "version": p["version"]}
                out = T.apply_params(img, q)
                ps.append(min(psnr(out, ref), 60.0))
                des.append(ciede_fast(out, ref))
            return float(np.mean(ps)), float(np.mean(des))

        cp, cd = run(clean)
        dp, dd = run(degraded)
        rows.append((a, cp, cd, dp, dd))
        print(f"alpha {a:.2f}: clean PSNR {cp:.2f} CIEDE {cd:.2f} | degraded PSNR {dp:.2f} CIEDE {dd:.2f}  "
              f"({time.time() - t0:.0f}s)", flush=True)

    ok = [r for r in rows if r[2] <= args.target]
    chosen = ok[0] if ok else rows[-1]
    alpha = chosen[0]
    print(f"chosen alpha {alpha} (clean CIEDE {chosen[2]:.2f}, degraded PSNR {chosen[3]:.2f} vs ungated {rows[0][3]:.2f})")
    if args.q_gate:
        alpha = float(args.q_alpha) if args.q_alpha is not None else alpha
        q_grid, margin = q_gate_grid(clean, degraded, photos, scale, alpha, args)
    cal: dict[str, Any] = {
        "model": Path(args.model).name,
        "model_sha256": hashlib.sha256(Path(args.model).read_bytes()).hexdigest(),
        "alpha": alpha,
        "quantile": args.quantile,
        "deadzone": {k: round(float(alpha * s), 5) for k, s in zip(T.PARAM_NAMES, scale, strict=True)},
        "calibration": {
            "data": f"{len(photos)} TRAIN photos, long side {args.max_side}, seed {args.seed}",
            "command": "python -m models.training.calibrate_tone " + " ".join(argv if argv is not None else sys.argv[1:]),
            "target_clean_ciede2000": args.target,
            "grid": [dict(zip(("alpha", "clean_psnr", "clean_de00", "degraded_psnr", "degraded_de00"),
                              (round(v, 4) for v in r), strict=True)) for r in rows],
        },
    }
    if args.q_gate:
        cal["q_margin"] = margin
        cal["deadzone"] = {k: round(float(alpha * s), 5) for k, s in zip(T.PARAM_NAMES, scale, strict=True)}
        cal["alpha"] = alpha
        cal["calibration"]["q_gate_grid"] = q_grid
    if not args.dry_run:
        out = Path(args.model).with_suffix(".json")
        out.write_text(json.dumps(cal, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
