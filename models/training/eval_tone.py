"""Evaluate the tone stage against classical baselines on held-out photos.

    python -m models.training.eval_tone                                   # models/tone.onnx
    python -m models.training.eval_tone --model fid=runs/tone/fid/tone.onnx --model q=runs/tone/q/tone.onnx \
        --quality runs/quality/quality_torch.pt --json runs/tone/eval.json

Data: every photo of the VAL split (``models.training.data.discover("val")``; never seen in
training), decoded with the long side capped at ``--max-side``. Photo ``i`` gets one known tonal
degradation from ``engine.assess.degrade``, cycling through the single kinds (under/over exposure, flat
contrast, haze, colour cast, washed-out colour) and a "mixed" case of two stages
(``tone_degrade``); strengths and choices come from a generator seeded by ``(--seed, i)``.
Each method sees only the degraded photo; error is measured to the clean original:
PSNR (dB, higher is better) and mean CIEDE2000 (lower is better; computed on every second pixel
in each direction, an unbiased estimate of the mean that costs a quarter). The same methods also
run on the clean photos: PSNR of output vs input shows whether a well-exposed photo is left alone.

Baselines, computed in the same run: doing nothing; auto-levels (per-channel 0.5/99.5 percentile
stretch); autocontrast (one stretch from luminance percentiles for all channels, so hue is
kept); CLAHE (OpenCV, L of Lab, clip 2.0, 8x8 tiles); gray-world white balance.
With ``--quality``, the mean score of helper D's no-reference QualityNet (1..10) is reported too.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.assess import degrade as dg
from engine.assess.metrics import ciede2000, psnr
from engine.enhance import tone as T
from models.training.data import REPO, discover, load_rgb

KINDS = ("underexposure", "overexposure", "low_contrast", "haze", "color_cast", "desaturate", "mixed")


# ----------------------------------------------------------------------------- baselines


def auto_levels(x: np.ndarray, cut: float = 0.5) -> np.ndarray:
    lo = np.percentile(x.reshape(-1, 3), cut, axis=0)
    hi = np.percentile(x.reshape(-1, 3), 100 - cut, axis=0)
    return np.clip((x - lo) / np.maximum(hi - lo, 1e-3), 0, 1).astype(np.float32)


def autocontrast(x: np.ndarray, cut: float = 0.5) -> np.ndarray:
    y = dg.luminance(x)
    lo, hi = np.percentile(y, cut), np.percentile(y, 100 - cut)
    return np.clip((x - lo) / max(hi - lo, 1e-3), 0, 1).astype(np.float32)


def clahe(x: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(dg.to_uint8(x), cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
    return dg.to_float(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


def gray_world(x: np.ndarray) -> np.ndarray:
    m = x.reshape(-1, 3).mean(axis=0)
    return np.clip(x * (m.mean() / np.maximum(m, 1e-3)), 0, 1).astype(np.float32)


def ciede_fast(a: np.ndarray, b: np.ndarray) -> float:
    return float(ciede2000(a[::2, ::2], b[::2, ::2]))


# ----------------------------------------------------------------------------- the run

TECH_KINDS = ("blur", "noise", "jpeg")


def technical_case(u: np.ndarray, i: int, seed: int) -> tuple[np.ndarray, str]:
    """Photo ``i`` with one technical degradation only (no tonal problem), seeded by (seed, i)."""
    rng = np.random.default_rng([seed, i, 1])
    kind = TECH_KINDS[i % len(TECH_KINDS)]
    if kind == "blur":
        x = dg.apply_blur(u, rng, strength=float(rng.uniform(0.15, 0.6)))[0]
    elif kind == "noise":
        x = dg.apply_noise(u, rng, kind="gaussian_noise", strength=float(rng.uniform(0.1, 0.5)))[0]
    else:
        x = dg.apply_jpeg(u, rng, quality=int(rng.integers(15, 60)))[0]
    return np.clip(x, 0.0, 1.0).astype(np.float32), kind


def planned(x: np.ndarray, path: Path, version: int, flag: str) -> dict[str, Any]:
    """The tone parameters the app would plan for ``x``: the model's calibrated dead zones and its
    quality check (``<model>.json``), as ``engine.enhance.pipeline.Pipeline.plan`` applies them.
    ``flag`` "nogate": neither; "noq": dead zones only."""
    p = {**T.predict_params(x, model_path=path, gate=flag != "nogate"), "version": version}
    return T.quality_checked(x, p, path) if flag in ("", None) else p


_restorer: Any = None


def restorer() -> Any:
    global _restorer
    if _restorer is None:
        from engine.enhance.restore import get_restorer

        _restorer = get_restorer()
    return _restorer



def degrade_case(u: np.ndarray, i: int, seed: int) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng([seed, i])
    kind = KINDS[i % len(KINDS)]
    if kind == "mixed":
        r = dg.tone_degrade(u, rng, max_stages=2)
        while len(r.applied) < 2:
            r = dg.tone_degrade(u, rng, max_stages=2)
        return r.image, kind
    return dg.apply_tone(u, rng, kind)[0], kind


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[],
                    help="name=path of a tone ONNX (repeatable); name=path@1 renders with parameter version 1 "
                         "(before the white-protecting shoulder), to compare both in one run; name=path#nogate "
                         "leaves out the calibration (<model>.json), name=path#noq its quality check only")
    ap.add_argument("--quality", type=Path, default=None,
                    help="Q for the Q column: a QualityNet checkpoint or models/quality.onnx")
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--limit", type=int, default=0, help="first N val photos only (0 = all)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--technical", action="store_true",
                    help="also photos with only technical degradations (blur, noise or JPEG): the one-click "
                         "order restore -> tone (tone parameters predicted from the degraded photo, as the "
                         "pipeline plans them), to count how often the tone stage lowers PSNR there")
    args = ap.parse_args(argv)

    models: dict[str, tuple[Path, int, str]] = {}
    for spec in args.model or [f"tone=({T.default_model_path()})"]:
        name, _, path = spec.partition("=")
        path, _, flag = path.partition("#")
        path, _, ver = path.partition("@")
        models[name] = (Path(path.strip("()")), int(ver or T.PARAMS_VERSION), flag)

    qnet = None
    if args.quality is not None:
        from models.training.labels import QModel

        qnet = QModel(args.quality)

    def qscore(img: np.ndarray) -> float:
        assert qnet is not None
        return qnet(np.ascontiguousarray(img, np.float32))

    methods: dict[str, Any] = {"nothing": lambda x: x, "auto-levels": auto_levels, "autocontrast": autocontrast,
                               "CLAHE": clahe, "gray-world": gray_world}
    for name, (path, ver, flag) in models.items():
        methods[name] = lambda x, p=path, v=ver, f=flag: T.apply_params(x, planned(x, p, v, f))

    photos = discover("val")
    if args.limit:
        photos = photos[: args.limit]
    t0 = time.time()
    # rows[(case, method)] -> list of metric dicts
    rows: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    tech: dict[str, list[float]] = defaultdict(list)
    tech_de: dict[str, list[float]] = defaultdict(list)
    tech_kind: dict[tuple[str, str], list[float]] = defaultdict(list)
    secs: dict[str, float] = defaultdict(float)
    for i, ph in enumerate(photos):
        u = dg.to_float(load_rgb(ph, args.max_side))
        x, kind = degrade_case(u, i, args.seed)
        for mname, fn in methods.items():
            for case, inp in ((kind, x), ("clean", u)):
                ts = time.perf_counter()
                out = fn(inp)
                secs[mname] += time.perf_counter() - ts
                rec = {"psnr": min(psnr(out, u), 60.0), "de00": ciede_fast(out, u)}
                if qnet is not None:
                    rec["q"] = qscore(out)
                rows[(case, mname)].append(rec)
                if case != "clean":
                    rows[("all degraded", mname)].append(rec)
        if args.technical:
            xt, tkind = technical_case(u, i, args.seed)
            r = restorer().run(xt)
            base = {"input": min(psnr(xt, u), 60.0), "restore": min(psnr(r, u), 60.0)}
            tech["input"].append(base["input"])
            tech["restore"].append(base["restore"])
            for name, (path, ver, flag) in models.items():
                out = T.apply_params(r, planned(xt, path, ver, flag))
                v = min(psnr(out, u), 60.0)
                tech[name].append(v)
                tech_de[name].append(ciede_fast(out, r))
                tech_kind[(tkind, name)].append(v - base["restore"])
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(photos)} photos, {time.time() - t0:.0f}s", flush=True)

    cases = ["all degraded", *KINDS, "clean"]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for case in cases:
        for mname in methods:
            recs = rows.get((case, mname), [])
            if not recs:
                continue
            summary.setdefault(case, {})[mname] = {
                k: float(np.mean([r[k] for r in recs])) for k in recs[0]} | {"n": len(recs)}
    # the table
    cols = list(methods)
    print(f"\nVAL photos: {len(photos)}, long side {args.max_side}, seed {args.seed}, {time.time() - t0:.0f}s")
    metric_names = ["psnr", "de00"] + (["q"] if qnet is not None else [])
    labels = {"psnr": "PSNR dB (higher better)", "de00": "CIEDE2000 (lower better)", "q": "QualityNet 1..10"}
    for m in metric_names:
        print(f"\n{labels[m]}\n")
        print("| case | n | " + " | ".join(cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        for case in cases:
            if case not in summary:
                continue
            vals = [summary[case].get(c, {}).get(m, float("nan")) for c in cols]
            n = int(next(iter(summary[case].values()))["n"])
            fmt = "{:.2f}" if m != "de00" else "{:.2f}"
            print(f"| {case} | {n} | " + " | ".join(fmt.format(v) for v in vals) + " |")
    print("\nclean photos: PSNR of output vs input (the clean photo is the input), per method above ('clean' row)")
    print("seconds per photo (both cases, incl. prediction): " +
          ", ".join(f"{k} {v / (2 * len(photos)):.3f}" for k, v in secs.items()))
    technical: dict[str, dict[str, float]] = {}
    if args.technical:
        print("\nTechnical degradations only (blur, noise or JPEG), restore -> tone; PSNR dB to the clean photo\n")
        print("| method | mean PSNR | vs restore alone, mean dB | photos where tone lowers PSNR by > 0.1 dB "
              "| photos below the input | tone's change, CIEDE2000 |")
        print("|---|---|---|---|---|---|")
        inp, rst = np.array(tech["input"]), np.array(tech["restore"])
        print(f"| input (nothing) | {inp.mean():.2f} | | | | |")
        print(f"| restore | {rst.mean():.2f} | 0 | | {int((rst < inp - 0.1).sum())}/{len(inp)} | |")
        for name in models:
            v = np.array(tech[name])
            technical[name] = {"psnr": float(v.mean()), "vs_restore": float((v - rst).mean()),
                               "lowered": int((v < rst - 0.1).sum()), "below_input": int((v < inp - 0.1).sum()),
                               "de00": float(np.mean(tech_de[name])), "n": len(v)}
            t = technical[name]
            print(f"| restore -> {name} | {t['psnr']:.2f} | {t['vs_restore']:+.2f} | {t['lowered']}/{len(v)} "
                  f"| {t['below_input']}/{len(v)} | {t['de00']:.2f} |")
        for (k, name), d in sorted(tech_kind.items()):
            print(f"  {k:>6} {name}: tone vs restore {np.mean(d):+.2f} dB (n={len(d)})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "technical": technical, "photos": len(photos), "max_side": args.max_side,
                                         "seed": args.seed, "models": {k: f"{v[0]}@{v[1]}{'#' + v[2] if v[2] else ''}" for k, v in models.items()}},
                                        indent=1))
    return 0


if __name__ == "__main__":
    _ = REPO
    raise SystemExit(main())
