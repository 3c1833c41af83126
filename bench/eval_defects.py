"""Camera-defect detection and correction on synthetic series, end to end through the catalog.

Series are made from clean photos of one pixel size (default: ``$PHOTOLIFT_DATA/train/CBSD432``
and ``CQ100``; research data, never committed): each defective "camera" gets dust spots (and, with
``--lines``, lines; with ``--hot``, hot pixels) at fixed random positions, sizes and opacities,
applied in linear light to every photo of its series; defect-free cameras get none. Each camera's
photos are written as JPEG (quality 95) with its own EXIF make/model into a temporary library,
indexed with ``Library.index`` and examined with ``engine.enhance.defects.detect`` (the same path as
``photolift defects``). Reported:

* **detection rate**: injected dust spots of radius >= 10 px and opacity >= 10 % whose position
  lies inside a reported dust/smudge box (per spot, and per series: all its spots found);
* **false defects**: reported defects matching no injected one, per defect-free camera and per
  defective camera;
* **PSNR in corrected regions**: for each found spot, the ``defects`` stage (``engine.enhance.defects``
  parameters through ``Pipeline.apply``) run on every photo of the series; PSNR against the clean
  photo over the spot's pixels (transmission < 0.99), corrected versus uncorrected;
* **time**: indexing and detection wall time, photos per second.

Usage: ``python bench/eval_defects.py [--cameras 20] [--clean 10] [--photos 30,40] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.catalog import Catalog  # noqa: E402
from engine.enhance import defects as D  # noqa: E402
from engine.enhance.defect_synth import CameraDefects, random_defects  # noqa: E402
from engine.library import Library  # noqa: E402


def pair(s: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in s.split(","))
    return lo, hi


def data_root() -> Path:
    return Path(os.environ.get("PHOTOLIFT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pools(root: Path, split: str = "all") -> dict[tuple[int, int], list[Path]]:
    """Clean photos by pixel size; ``split`` "val": only those the training scripts hold out
    (``models.training.data.is_validation``), for measuring a learned stage (the inpainter)
    on photos it never saw."""
    from models.training.data import is_validation

    out: dict[tuple[int, int], list[Path]] = {}
    for d in ("train/CBSD432", "train/CQ100"):
        for p in sorted((root / d).glob("*")):
            if p.suffix.lower() not in (".jpg", ".png", ".bmp", ".tif", ".jpeg"):
                continue
            if split == "val" and not is_validation(p):
                continue
            with Image.open(p) as im:
                out.setdefault(im.size, []).append(p)
    return out


def load(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        return np.asarray(im.convert("RGB"))


def exif(i: int) -> bytes:
    return piexif.dump({"0th": {piexif.ImageIFD.Make: b"SynthCam", piexif.ImageIFD.Model: f"Body {i}".encode()},
                        "Exif": {}, "GPS": {}})


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse <= 1e-12 else 10 * np.log10(255.0 ** 2 / mse)


def inside(pt: tuple[float, float], b: list[float], tol: float = 0.0) -> bool:
    return b[0] - tol <= pt[0] <= b[2] + tol and b[1] - tol <= pt[1] <= b[3] + tol


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=20, help="defective cameras")
    ap.add_argument("--clean", type=int, default=10, help="defect-free cameras")
    ap.add_argument("--photos", default="30,40", help="photos per series: min,max")
    ap.add_argument("--radius", default="10,30")
    ap.add_argument("--opacity", default="0.1,0.4")
    ap.add_argument("--lines", type=int, default=0, help="lines per defective camera")
    ap.add_argument("--line-opacity", default="0.3,0.8", help="lines' opacity: min,max")
    ap.add_argument("--hot", type=int, default=0, help="hot pixels per defective camera")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--split", choices=["all", "val"], default="all",
                    help="val: only photos the training scripts hold out (for the learned inpainter)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--psnr-photos", type=int, default=5, help="photos per series corrected for the PSNR check")
    ap.add_argument("--json", default=None, help="write the summary here too")
    ap.add_argument("--reuse", action="store_true", help="the series already in --workdir (same arguments)")
    ap.add_argument("--blob-z", type=float, default=None, help="override engine.enhance.defects.BLOB_Z")
    ap.add_argument("--half-z", type=float, default=None, help="override engine.enhance.defects.HALF_Z")
    ap.add_argument("--scales", default=None, help="override engine.enhance.defects.SCALES (comma-separated)")
    ap.add_argument("--line-divide-max", type=float, default=None,
                    help="override engine.enhance.defects.LINE_DIVIDE_MAX (0.5: the rule before it, OPAQUE)")
    ap.add_argument("--floor", default=None, help="override FLOOR_FRACTION,FLOOR_BLOCK of engine.enhance.defects")
    a = ap.parse_args()
    if a.blob_z is not None:
        D.BLOB_Z = a.blob_z
    if a.half_z is not None:
        D.HALF_Z = a.half_z
    if a.line_divide_max is not None:
        D.LINE_DIVIDE_MAX = a.line_divide_max
    if a.floor:
        D.FLOOR_FRACTION, D.FLOOR_BLOCK = (float(x) for x in a.floor.split(","))
    if a.scales:
        D.SCALES = tuple(float(x) for x in a.scales.split(","))
    rng = np.random.default_rng(a.seed)
    pmin, pmax = (int(x) for x in a.photos.split(","))
    rad = pair(a.radius)
    opa = pair(a.opacity)
    lopa = pair(a.line_opacity)
    pool = pools(data_root(), a.split)
    sizes = [s for s, ps in pool.items() if len(ps) >= pmax]
    if not sizes:
        print("no pool of clean photos large enough; set PHOTOLIFT_DATA", file=sys.stderr)
        return 1
    work = Path(a.workdir or tempfile.mkdtemp(prefix="photolift_defects_")).resolve()
    lib_dir = work / "lib"
    truth: dict[str, tuple[CameraDefects, list[Path], tuple[int, int]]] = {}
    t0 = time.time()
    n_cam = a.cameras + a.clean
    for c in range(n_cam):
        size = sizes[int(rng.integers(len(sizes)))]
        n = int(rng.integers(pmin, pmax + 1))
        srcs = [pool[size][i] for i in rng.choice(len(pool[size]), n, replace=False)]
        w, h = size
        cd = (random_defects(rng, w, h, radius=rad, opacity=opa, lines=a.lines, hot=a.hot,
                             line_opacity=lopa)
              if c < a.cameras else CameraDefects())
        folder = lib_dir / f"cam{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        if not a.reuse:
            for i, src in enumerate(srcs):
                Image.fromarray(cd.apply(load(src))).save(folder / f"{i:03d}.jpg", quality=95, exif=exif(c))
        truth[f"Body {c}"] = (cd, srcs, size)
    t_make = time.time() - t0
    from engine.enhance.defect_synth import to_json

    (work / "truth.json").write_text(json.dumps({k: {"defects": to_json(v[0]), "size": v[2]}
                                                 for k, v in truth.items()}))
    cat = Catalog.open(str(work / "catalog.sqlite"))
    lib = Library(cat, thumb_dir=work / "thumbs")
    t0 = time.time()
    for _ in lib.index(str(lib_dir)):
        pass
    t_index = time.time() - t0
    n_photos = sum(len(v[1]) for v in truth.values())
    t0 = time.time()
    reps = D.detect(cat, str(lib_dir), force=True)
    t_detect = time.time() - t0
    found = total = 0
    lines_found = lines_total = 0
    hot_found = hot_total = 0
    series_all = series_n = 0
    false_clean: list[int] = []
    false_def: list[int] = []
    gains: list[float] = []
    gains_kind: dict[str, list[float]] = {"dust": [], "line": []}
    before_db: list[float] = []
    after_db: list[float] = []
    misses: list[dict[str, object]] = []
    spot_z: list[dict[str, object]] = []  # every target spot with the strongest |z| of what found it
    dumped: list[dict[str, object]] = []
    from engine.enhance.pipeline import get_pipeline
    from engine.enhance.recipes import Recipe, StageSpec

    for rep in reps:
        model = rep.camera.split(" (")[0].replace("SynthCam ", "")
        cd, srcs, (w, h) = truth[model]
        dets = list(rep.defects)
        matched: set[int] = set()
        all_found = True
        for s in cd.spots:
            hit = [i for i, d in enumerate(dets) if inside((s.cx, s.cy), d.bbox, 0.01)
                   and d.kind in ("dust", "smudge", "line", "obstruction")]
            matched.update(hit)
            if s.kind == "line":
                lines_total += 1
                lines_found += bool(hit)
            if s.kind == "dust" and s.radius >= 10 and s.opacity >= 0.1:
                zs = [abs(float(dets[i].params.get("z") or 0.0)) for i in hit]
                spot_z.append({"camera": model, "r": round(s.radius, 1), "op": round(s.opacity, 3),
                               "z": round(max(zs), 2) if zs else None})
                total += 1
                found += bool(hit)
                if not hit:
                    all_found = False
                    misses.append({"camera": model, "r": round(s.radius, 1), "op": round(s.opacity, 3),
                                   "at": [round(s.cx, 3), round(s.cy, 3)], "n": len(srcs)})
        if cd.hot:
            matched.update(i for i, d in enumerate(dets) if d.kind == "hot_pixel")
            got = {(round(u * w - 0.5), round(v * h - 0.5)) for d in dets if d.kind == "hot_pixel"
                   for u, v in d.params["points"]}
            hot_total += len(cd.hot)
            hot_found += sum(any(abs(x - gx) <= 1 and abs(y - gy) <= 1 for gx, gy in got) for x, y in cd.hot)
        if any(s.kind == "dust" for s in cd.spots):
            series_n += 1
            series_all += all_found
        for i, d in enumerate(dets):
            dumped.append({"camera": model, "kind": d.kind, "z": d.params.get("z"), "matched": i in matched,
                           "clean_camera": not (cd.spots or cd.hot)})
        extra = [d for i, d in enumerate(dets) if i not in matched]
        (false_def if cd.spots or cd.hot else false_clean).append(len(extra))
        # correction, measured inside the injected spots
        spots = [d for i, d in enumerate(dets) if i in matched and d.kind != "hot_pixel"]
        if spots and cd.spots:
            params = D.params_for([D.display_params(d, 1) for d in spots])  # as the app plans it
            recipe = Recipe(stages=(StageSpec("defects", 1.0, None, None, params),))
            t = cd.transmission(w, h)
            region = t < 0.99
            # per kind: the pixels of the found spots of that kind
            kind_regions = {}
            for kind in ("dust", "line"):
                found_k = [s for s in cd.spots if s.kind == kind and any(
                    inside((s.cx, s.cy), d.bbox, 0.01) for d in spots)]
                if found_k:
                    kind_regions[kind] = CameraDefects(found_k).transmission(w, h) < 0.99
            for src in srcs[: a.psnr_photos]:
                clean = load(src)
                bad = cd.apply(clean)
                # what the catalog holds is the JPEG; correct that
                import io

                buf = io.BytesIO()
                Image.fromarray(bad).save(buf, "JPEG", quality=95)
                bad = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
                fixed = get_pipeline().apply(recipe, bad.astype(np.float32) / 255.0)
                fixed8 = np.clip(fixed * 255 + 0.5, 0, 255).astype(np.uint8)
                pb, pa = psnr(bad[region], clean[region]), psnr(fixed8[region], clean[region])
                before_db.append(pb)
                after_db.append(pa)
                gains.append(pa - pb)
                for kind, reg in kind_regions.items():
                    gains_kind[kind].append(psnr(fixed8[reg], clean[reg]) - psnr(bad[reg], clean[reg]))
    summary = {
        "cameras_defective": a.cameras, "cameras_clean": a.clean, "photos": n_photos,
        "photos_per_series": [pmin, pmax], "radius_px": rad, "opacity": opa,
        "spots_target": total, "spots_found": found, "spot_detection_rate": round(found / max(1, total), 4),
        "series_all_spots_found": f"{series_all}/{series_n}",
        "lines_found": f"{lines_found}/{lines_total}", "hot_pixels_found": f"{hot_found}/{hot_total}",
        "false_defects_per_clean_camera": false_clean,
        "false_defects_per_defective_camera": false_def,
        "psnr_uncorrected_db": round(float(np.mean(before_db)), 2) if before_db else None,
        "psnr_corrected_db": round(float(np.mean(after_db)), 2) if after_db else None,
        "psnr_gain_db_mean": round(float(np.mean(gains)), 2) if gains else None,
        "psnr_gain_db_median": round(float(np.median(gains)), 2) if gains else None,
        "psnr_gain_db_p10": round(float(np.percentile(gains, 10)), 2) if gains else None,
        "psnr_gain_db_mean_by_kind": {k: round(float(np.mean(v)), 2) for k, v in gains_kind.items() if v},
        "seconds_make": round(t_make, 1), "seconds_index": round(t_index, 1), "seconds_detect": round(t_detect, 1),
        "detect_photos_per_s": round(n_photos / max(t_detect, 1e-6), 1),
        "misses": misses[:20],
        "detections": dumped,
        "spots": spot_z,
    }
    cat.close()
    print(json.dumps({k: v for k, v in summary.items() if k not in ("detections", "spots")}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
