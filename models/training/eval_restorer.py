"""Evaluate the restorer on the held-out validation split, beside classical baselines.

    python -m models.training.eval_restorer [--model models/restorer.onnx] [--limit 36] [--crop 320]
    python -m models.training.eval_restorer --tune-baselines     # re-pick the baselines' settings

Protocol (fixed, reproducible; every number of one table comes from one run):

* Photos: ``models.training.data.discover("val")`` (the name-hash split no training script sees),
  ``--limit`` of them taken evenly over the sorted list (so every data set is represented),
  loaded with ``data.load_rgb`` (SunHays80 downscaled 2x; HR photos capped at 1600 px on the long
  side), then a fixed centre crop of at most ``--crop`` x ``--crop`` pixels.
* Cases (degraded from the clean crop ``u``, then quantised to 8 bits as a photo file would be):
  colour Gaussian noise sigma 15/25/50 (i.i.d. per channel, clipped to 0..1), JPEG quality
  10/20/30/40 (OpenCV, 4:2:0), Gaussian blur sigma 1.5, motion blur (random trajectory of length
  9 px from ``engine.assess.degrade.motion_kernel``), mixed blind degradations
  (``engine.assess.degrade.degrade`` with p_clean=0 and no saturation, as in training), and clean
  (``u`` itself). Seeds are fixed per photo and case.
* Realistic cases (version 2): camera photos from ``engine.assess.degrade.camera_pipeline`` at a
  low and a high ISO (strength 0.45 and 0.85, camera JPEG quality 90, no blur), whose reference
  is the pipeline's noiseless rendering, and a messaging copy (``recompress`` of the clean crop:
  downscaled, JPEG once or twice), whose reference is the clean crop resized the same way.
* Methods: the restorer through the shipped engine (``engine.enhance.restore.Restorer``, tiled, strength
  1, levels measured from the pixels for a level-aware model); ``--baseline-model`` (the previous
  restorer) the same way; BM3D (the ``bm3d`` package, ``bm3d_rgb``) on the noise cases with the
  true sigma (an oracle the restorers do not get) and on the camera and clean cases with the sigma
  measured by ``engine.enhance.levels.noise_level``, on the first ``--bm3d-limit`` photos only (it
  takes 10-15 s per crop here); doing nothing; OpenCV ``fastNlMeansDenoisingColored`` (template 7, search 21, ``h`` =
  ``hColor`` per case, see ``NLM_H``); unsharp mask (``x + a (x - G_s * x)``, sigma and amount
  per case, see ``USM``). The baseline settings were picked per case by ``--tune-baselines``:
  best mean PSNR on 8 *training*-split crops (never on the validation photos). Non-local means
  is not run on the two pure-blur cases (it is a denoiser; it would be the identity there).
* Metrics (``engine.assess.metrics``): PSNR (dB) and SSIM (Gaussian window, per RGB channel, averaged),
  each against the clean crop, averaged over photos. For the clean case the reference is the
  input itself: PSNR(output, input) is the harm done to a clean photo.

Writes ``runs/eval_restorer/<model version>.json`` and ``.md`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.assess import degrade as dg
from engine.assess.metrics import psnr, ssim
from engine.core import runtime
from engine.enhance import levels
from engine.enhance.restore import Restorer
from models.training.data import REPO, Photo, discover, load_rgb

SEED = 20251122
HR_MAX_SIDE = 1600

# Baseline settings per case, from `--tune-baselines` (best mean PSNR on 8 training-split 256x256
# crops, run 2026-11-22; grids NLM_GRID and USM_GRID below).
NLM_H: dict[str, float] = {
    "noise15": 8, "noise25": 16, "noise50": 30, "jpeg10": 6, "jpeg20": 3, "jpeg30": 3, "jpeg40": 3,
    "mixed": 5, "clean": 1,
}
# (sigma, amount); amount 0 (= doing nothing) won wherever sharpening only amplifies noise/blocks.
USM: dict[str, tuple[float, float]] = {
    "noise15": (1.0, 0.0), "noise25": (1.0, 0.0), "noise50": (1.0, 0.0), "jpeg10": (1.0, 0.0),
    "jpeg20": (1.0, 0.0), "jpeg30": (1.0, 0.0), "jpeg40": (1.0, 0.0), "gblur": (2.0, 1.5),
    "mblur": (2.0, 0.5), "mixed": (1.0, 0.0), "clean": (1.0, 0.0),
}
NLM_GRID = (1, 3, 5, 6, 8, 10, 12, 14, 16, 20, 24, 30, 36)
USM_GRID = tuple((s, a) for s in (1.0, 2.0) for a in (0.0, 0.25, 0.5, 1.0, 1.5, 2.0))


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    # the degraded image, or (degraded, reference) where the reference is not the clean crop
    make: Callable[[np.ndarray, np.random.Generator], np.ndarray | tuple[np.ndarray, np.ndarray]]
    nlm: bool = True
    bm3d_sigma: float | None = None  # true sigma (x255); 0 = measured from the pixels; None = not run


def _quantise(x: np.ndarray) -> np.ndarray:
    return dg.to_uint8(x).astype(np.float32) / np.float32(255.0)


def _noise(sigma: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def f(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(u + rng.normal(0, sigma / 255.0, u.shape).astype(np.float32), 0, 1)

    return f


def _jpeg(q: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    return lambda u, rng: dg.jpeg(u, q, subsampling=True)


def _gblur(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return dg.convolve(u, dg.gaussian_kernel(1.5))


def _mblur(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return dg.convolve(u, dg.motion_kernel(rng, 9.0))


def _mixed(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return dg.degrade(u, rng, dg.DegradeConfig(p_saturation=0.0, p_clean=0.0)).image


def _camera(strength: float) -> Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]:
    def f(u: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        r = dg.camera_pipeline(u, rng, strength=strength, blur=False, quality=90)
        assert r.target is not None
        return r.image, r.target

    return f


def _messaging(u: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r = dg.recompress(u, rng, u)
    assert r.target is not None
    return r.image, r.target


CASES: tuple[Case, ...] = (
    Case("noise15", "Gaussian noise σ=15", _noise(15)),
    Case("noise25", "Gaussian noise σ=25", _noise(25), bm3d_sigma=25),
    Case("noise50", "Gaussian noise σ=50", _noise(50), bm3d_sigma=50),
    Case("jpeg10", "JPEG q=10", _jpeg(10)),
    Case("jpeg20", "JPEG q=20", _jpeg(20)),
    Case("jpeg30", "JPEG q=30", _jpeg(30)),
    Case("jpeg40", "JPEG q=40", _jpeg(40)),
    Case("gblur", "Gaussian blur σ=1.5", _gblur, nlm=False),
    Case("mblur", "Motion blur, 9 px", _mblur, nlm=False),
    Case("mixed", "Mixed blind (degrade)", _mixed),
    Case("camera_lo", "Camera photo, low ISO", _camera(0.45), bm3d_sigma=0),
    Case("camera_hi", "Camera photo, high ISO", _camera(0.85), bm3d_sigma=0),
    Case("messaging", "Messaging copy (resize, JPEG x1-2)", _messaging),
    Case("clean", "Clean (vs input)", lambda u, rng: u.copy(), bm3d_sigma=0),
)
METHODS = ("none", "nlm", "bm3d", "usm", "prev", "model")
METHOD_LABEL = {"none": "Do nothing", "nlm": "NL-means (OpenCV)", "bm3d": "BM3D", "usm": "Unsharp mask",
                "prev": "Previous restorer", "model": "Restorer"}
# baseline settings for the realistic cases: tuned like the others (--tune-baselines), 2026-12-06
NLM_H.update({"camera_lo": 1, "camera_hi": 6, "messaging": 1})
USM.update({"camera_lo": (1.0, 0.0), "camera_hi": (1.0, 0.0), "messaging": (1.0, 0.0)})


def bm3d_denoise(x: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    if sigma <= 0:
        return x.copy()
    return np.clip(bm3d.bm3d_rgb(x, sigma), 0, 1).astype(np.float32)


def nlm(x: np.ndarray, h: float) -> np.ndarray:
    out = cv2.fastNlMeansDenoisingColored(dg.to_uint8(x), None, float(h), float(h), 7, 21)
    return out.astype(np.float32) / np.float32(255.0)


def usm(x: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    if amount == 0:
        return x.copy()
    blur = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(x + amount * (x - blur), 0, 1).astype(np.float32)


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = min(h, size), min(w, size)
    y, x = (h - ch) // 2, (w - cw) // 2
    return img[y : y + ch, x : x + cw]


def pick(photos: list[Photo], limit: int) -> list[Photo]:
    if limit <= 0 or limit >= len(photos):
        return photos
    idx = np.unique(np.linspace(0, len(photos) - 1, limit).round().astype(int))
    return [photos[i] for i in idx]


def load_crop(ph: Photo, crop: int) -> np.ndarray:
    img = load_rgb(ph, HR_MAX_SIDE if ph.hr else None)
    return dg.to_float(np.ascontiguousarray(centre_crop(img, crop)))


def degraded(u: np.ndarray, case_index: int, photo_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, reference): the reference is the clean crop unless the case says otherwise."""
    rng = np.random.default_rng([SEED, photo_index, case_index])
    made = CASES[case_index].make(u, rng)
    if isinstance(made, tuple):
        return _quantise(made[0]), made[1]
    return _quantise(made), u


def tune_baselines(n: int = 8, crop: int = 256) -> dict[str, object]:
    """Pick NL-means h and unsharp-mask settings per case on training-split crops."""
    photos = pick(discover("train"), n)
    crops = [load_crop(p, crop) for p in photos]
    out: dict[str, object] = {}
    for ci, case in enumerate(CASES):
        pairs = [degraded(u, ci, 10_000 + i)[::-1] for i, u in enumerate(crops)]
        best_usm = max(USM_GRID, key=lambda sa: float(np.mean([psnr(usm(x, *sa), u) for u, x in pairs])))
        rec: dict[str, object] = {"usm": best_usm}
        if case.nlm:
            rec["nlm_h"] = max(NLM_GRID, key=lambda h: float(np.mean([psnr(nlm(x, h), u) for u, x in pairs])))
        out[case.key] = rec
        print(case.key, rec, flush=True)
    return out


def evaluate(model: Path, limit: int, crop: int, log: Callable[[str], None] = print,
             baseline_model: Path | None = None, bm3d_limit: int = 12) -> dict[str, object]:
    photos = pick(discover("val"), limit)
    if not photos:
        raise SystemExit("no validation photos found (PHOTOLIFT_DATA?)")
    restorer = Restorer(model)
    previous = Restorer(baseline_model) if baseline_model is not None else None
    estimates: dict[str, list[float]] = {}
    sums: dict[tuple[str, str], list[tuple[float, float]]] = {}
    times: dict[str, float] = {m: 0.0 for m in METHODS}
    pixels = 0
    t_start = time.monotonic()
    groups: dict[str, int] = {}
    per_photo: list[dict[str, object]] = []
    for pi, ph in enumerate(photos):
        u = load_crop(ph, crop)
        groups[ph.group] = groups.get(ph.group, 0) + 1
        pixels += u.shape[0] * u.shape[1]
        rec: dict[str, object] = {"photo": f"{ph.group}/{ph.path.name}", "size": [u.shape[1], u.shape[0]]}
        per_photo.append(rec)
        for ci, case in enumerate(CASES):
            x, ref = degraded(u, ci, pi)
            if case.key == "clean":
                ref = x
            outs: dict[str, np.ndarray] = {"none": x}
            sig = levels.noise_level(x)
            estimates.setdefault(f"{case.key}:noise255", []).append(sig * 255)
            estimates.setdefault(f"{case.key}:jpeg_q", []).append(levels.jpeg_quality(x))
            if case.bm3d_sigma is not None and pi < bm3d_limit:
                t = time.perf_counter()
                outs["bm3d"] = bm3d_denoise(x, case.bm3d_sigma / 255 if case.bm3d_sigma else sig)
                times["bm3d"] += time.perf_counter() - t
            if previous is not None:
                t = time.perf_counter()
                outs["prev"] = previous.run(x)
                times["prev"] += time.perf_counter() - t
            t = time.perf_counter()
            outs["usm"] = usm(x, *USM[case.key])
            times["usm"] += time.perf_counter() - t
            if case.nlm:
                t = time.perf_counter()
                outs["nlm"] = nlm(x, NLM_H[case.key])
                times["nlm"] += time.perf_counter() - t
            t = time.perf_counter()
            outs["model"] = restorer.run(x)
            times["model"] += time.perf_counter() - t
            for m, y in outs.items():
                sums.setdefault((case.key, m), []).append((psnr(y, ref, max_db=100.0), ssim(y, ref)))
            rec[case.key] = {m: round(sums[(case.key, m)][-1][0], 3) for m in outs}
        log(f"[{pi + 1}/{len(photos)}] {ph.group}/{ph.path.name} {u.shape[1]}x{u.shape[0]} "
            f"{time.monotonic() - t_start:.0f} s")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for case in CASES:
        results[case.key] = {}
        for m in METHODS:
            v = sums.get((case.key, m))
            if v:
                a = np.array(v)
                results[case.key][m] = {"psnr": float(a[:, 0].mean()), "ssim": float(a[:, 1].mean()),
                                        "psnr_min": float(a[:, 0].min()), "n": len(v)}
    # clean: share of photos kept within 38 dB of the input
    clean = np.array([p for p, _ in sums[("clean", "model")]])
    return {
        "model": str(model), "model_version": runtime.model_version(model),
        "baseline_model": str(baseline_model) if baseline_model else None,
        "baseline_version": runtime.model_version(baseline_model) if baseline_model else None,
        "bm3d_photos": min(bm3d_limit, len(photos)),
        "level_estimates": {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                            for k, v in estimates.items()},
        "photos": len(photos), "groups": groups, "crop": crop, "megapixels": pixels / 1e6,
        "seed": SEED, "results": results,
        "clean_model_psnr_min": float(clean.min()), "clean_model_share_ge_38db": float((clean >= 38).mean()),
        "seconds": time.monotonic() - t_start, "method_seconds": times, "per_photo_psnr": per_photo,
        "model_s_per_mp": times["model"] / (pixels * len(CASES) / 1e6),
        "machine": f"{platform.machine()}, {runtime.cpu_count()} cores, load average {np.round(__import__('os').getloadavg(), 2).tolist()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown(rep: dict[str, object]) -> str:
    res: dict[str, dict[str, dict[str, float]]] = rep["results"]  # type: ignore[assignment]
    methods = [m for m in METHODS if any(m in r for r in res.values())]
    lines = [
        f"Validation split: {rep['photos']} held-out photos ({', '.join(f'{k} {v}' for k, v in rep['groups'].items())}), "  # type: ignore[attr-defined]
        f"centre crops up to {rep['crop']}x{rep['crop']}; model `{Path(str(rep['model'])).name}` "
        f"({rep['model_version']}); PSNR dB / SSIM against the clean crop (clean row: against the input).",
        "",
        "| Case | " + " | ".join(METHOD_LABEL[m] for m in methods) + " | Gain of restorer |",
        "|---|" + "---|" * (len(methods) + 1),
    ]
    for case in CASES:
        r = res[case.key]
        cells = []
        for m in methods:
            if m in r and r[m]["psnr"] >= 99.99:
                cells.append("∞ / 1.000 (identity)")
            elif m in r:
                star = "*" if m == "bm3d" else ""
                cells.append(f"{r[m]['psnr']:.2f} / {r[m]['ssim']:.3f}{star}")
            else:
                cells.append("n/a")
        gain = r["model"]["psnr"] - r["none"]["psnr"] if case.key != "clean" else float("nan")
        g = f"{gain:+.2f} dB" if not math.isnan(gain) else "—"
        lines.append(f"| {case.label} | " + " | ".join(cells) + f" | {g} |")
    lines += [
        "",
        f"Clean photos: restorer output vs input, mean {res['clean']['model']['psnr']:.2f} dB, "
        f"worst {rep['clean_model_psnr_min']:.2f} dB; {100 * float(rep['clean_model_share_ge_38db']):.0f}% "  # type: ignore[arg-type]
        f"of photos at or above 38 dB.",
        f"*BM3D on the first {rep.get('bm3d_photos')} photos only (its own average, not comparable "
        "cell by cell); true sigma on the Gaussian cases, measured sigma on the camera and clean cases.",
        "Previous restorer: " + str(rep.get("baseline_version")) + "; level estimates (mean): "
        + ", ".join(f"{k} {v['mean']:.1f}" for k, v in rep.get("level_estimates", {}).items()  # type: ignore[attr-defined]
                    if k.split(":")[0] in ("noise15", "noise25", "noise50", "jpeg10", "jpeg30", "camera_hi", "clean")),
        "Baselines, settings per case picked on training-split crops (`--tune-baselines`): NL-means h = "
        + ", ".join(f"{k} {v:g}" for k, v in NLM_H.items()) + "; unsharp mask (sigma, amount) = "
        + ", ".join(f"{k} ({s:g}, {a:g})" for k, (s, a) in USM.items())
        + " (amount 0: sharpening only hurt, so the baseline is the input).",
        f"Run: {float(rep['seconds']):.0f} s on {rep['machine']} ({rep['date']}); restorer "  # type: ignore[arg-type]
        f"{float(rep['model_s_per_mp']):.2f} s/MP wall inside this run (shared machine).",  # type: ignore[arg-type]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=runtime.models_dir() / "restorer.onnx")
    ap.add_argument("--limit", type=int, default=36, help="number of validation photos (0 = all)")
    ap.add_argument("--crop", type=int, default=320)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "eval_restorer")
    ap.add_argument("--tune-baselines", action="store_true")
    ap.add_argument("--baseline-model", type=Path, default=None, help="the previous restorer, run beside")
    ap.add_argument("--bm3d-limit", type=int, default=12, help="photos BM3D runs on (slow)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(runtime.cpu_count())
    if args.tune_baselines:
        print(json.dumps(tune_baselines(), indent=1))
        return
    rep = evaluate(args.model, args.limit, args.crop, baseline_model=args.baseline_model,
                   bm3d_limit=args.bm3d_limit)
    md = markdown(rep)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{rep['model_version']}"
    stem.with_suffix(".json").write_text(json.dumps(rep, indent=2))
    stem.with_suffix(".md").write_text(md + "\n")
    (args.out / "latest.md").write_text(md + "\n")
    print(md)
    print(f"\nwrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
