"""Scoring throughput beside a decode-only pass over the same 12 MP JPEGs, and enhancer vs assessor cost.

    .venv/bin/python bench/bench_score.py [--n 12] [--runs 3] [--workers 2] [--enhance-runs 2]

* Test files: ``--n`` 12 MP (4000x3000) JPEGs (quality 92) made once from the free-licensed
  wallpapers in ``../extra_data/photos`` (or synthetic photos when absent) under
  ``runs/bench_12mp/`` (never committed).
* Decode-only: the same decode the scorer does (``load_image(path, reduce=2)``, JPEG DCT
  scaling to 2000x1500) with the same number of threads, and nothing else. Also one full-size
  decode pass for reference.
* Scoring: ``Scorer.score_photos(force=True)`` on an indexed temporary catalog: decode, views,
  batched assessor inference, and the catalog writes.
* Enhancer: the one-click pipeline (``engine.enhance.pipeline``: restore, then tone when available) on
  one of the photos at full resolution, against the assessor's whole cost per photo.

Prints a JSON summary (medians of ``--runs``) and the markdown rows for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_files(n: int, out: Path) -> list[Path]:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    files = sorted(out.glob("bench_*.jpg"))
    if len(files) >= n:
        return files[:n]
    src = sorted((REPO.parent / "extra_data" / "photos").glob("*.jpg"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = out / f"bench_{i:02d}.jpg"
        if not p.exists():
            if src:
                im = Image.open(src[i % len(src)]).convert("RGB")
                # cover 4000x3000, centre crop
                s = max(4000 / im.width, 3000 / im.height)
                im = im.resize((max(4000, round(im.width * s)), max(3000, round(im.height * s))),
                               Image.Resampling.LANCZOS)
                x0, y0 = (im.width - 4000) // 2, (im.height - 3000) // 2
                im = im.crop((x0, y0, x0 + 4000, y0 + 3000))
            else:
                yy, xx = np.mgrid[0:3000, 0:4000].astype(np.float32)
                a = 128 + 100 * np.sin(xx / (50 + 10 * i)) * np.cos(yy / 70) + rng.normal(0, 6, (3000, 4000))
                im = Image.fromarray(np.clip(np.stack([a, a * 0.8, 255 - a], 2), 0, 255).astype(np.uint8))
            im.save(p, quality=92)
        paths.append(p)
    return paths


def decode_pass(paths: list[Path], workers: int, reduce: int) -> float:
    from engine.ingest.imageio import load_image

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        for img in ex.map(lambda p: load_image(p, reduce=reduce), paths):
            assert img.rgb.size
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--enhance-runs", type=int, default=2)
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args(argv)

    from db.catalog import Catalog
    from engine.assess.scoring import Scorer
    from engine.ingest.indexer import Indexer

    files = make_files(args.n, REPO / "runs" / "bench_12mp")
    scorer = Scorer(args.model, workers=args.workers, batch_size=args.batch)
    res: dict[str, object] = {"files": len(files), "size": "4000x3000 JPEG q92", "workers": args.workers,
                              "intra_op_threads": scorer.intra_op_threads, "batch": args.batch,
                              "cores": os.cpu_count(), "model_version": scorer.model_version}
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog.open(str(Path(tmp) / "bench.sqlite"))
        try:
            for _ in Indexer(cat).index(str(files[0].parent)):
                pass
            from sqlalchemy import select

            from db.schema import Photo

            # score exactly the files timed by decode-only (the folder may hold more from a larger --n)
            wanted = {str(f.resolve()) for f in files}
            with cat.session() as s:
                ids = [i for (i, p) in s.execute(select(Photo.id, Photo.path).order_by(Photo.path))
                       if str(Path(p).resolve()) in wanted]
            assert len(ids) == len(files), (len(ids), len(files))
            # warm-up: session creation, page cache
            decode_pass(files[:2], args.workers, 2)
            list(scorer.score_photos(cat, ids[:2], force=True))
            dec, sco = [], []
            for _ in range(args.runs):
                dec.append(decode_pass(files, args.workers, 2))
                t0 = time.perf_counter()
                evs = list(scorer.score_photos(cat, ids, force=True))
                sco.append(time.perf_counter() - t0)
                assert all(e.status == "ok" for e in evs), [e.error for e in evs if e.status != "ok"]
            full = decode_pass(files, args.workers, 1)
        finally:
            cat.close()
    d_med, s_med = statistics.median(dec), statistics.median(sco)
    res.update({
        "decode_half_s": [round(x, 3) for x in dec], "score_s": [round(x, 3) for x in sco],
        "decode_only_photos_per_s": round(len(files) / d_med, 2),
        "scoring_photos_per_s": round(len(files) / s_med, 2),
        "scoring_over_decode_only": round(d_med / s_med, 3),
        # the machine's speed drifts between runs: each run's own pair, decode-only then scoring
        "pair_ratios": [round(d / s, 3) for d, s in zip(dec, sco, strict=True)],
        "full_decode_photos_per_s": round(len(files) / full, 2),
        "assessor_ms_per_photo": round(1000 * s_med / len(files), 1),
    })
    # model-only cost (views already made), for the record
    from engine.ingest.imageio import load_image

    img = load_image(files[0], reduce=2).rgb
    c, g = scorer.views(img)
    cb, gb = np.repeat(c[None], args.batch, 0), np.repeat(g[None], args.batch, 0)
    scorer.run_views(cb, gb)
    t0 = time.perf_counter()
    for _ in range(5):
        scorer.run_views(cb, gb)
    res["model_only_ms_per_photo"] = round(1000 * (time.perf_counter() - t0) / (5 * args.batch), 2)
    t0 = time.perf_counter()
    for _ in range(5):
        scorer.views(img)
    res["views_ms_per_photo"] = round(1000 * (time.perf_counter() - t0) / 5, 2)
    # the enhancer at full resolution
    if args.enhance_runs > 0:
        from engine.enhance.pipeline import Pipeline, StageUnavailable

        pipe = Pipeline()
        full_img = load_image(files[0]).rgb.astype(np.float32) / 255.0
        view = load_image(files[0], max_side=1024).rgb.astype(np.float32) / 255.0
        ops = []
        for op in ("restore", "tone"):
            try:
                pipe.plan(view, [op])
                ops.append(op)
            except StageUnavailable as e:
                res[f"{op}_unavailable"] = str(e)
        times = []
        for _ in range(args.enhance_runs):
            t0 = time.perf_counter()
            recipe = pipe.plan(view, ops)
            pipe.apply(recipe, full_img)
            times.append(time.perf_counter() - t0)
        e_med = statistics.median(times)
        res.update({"enhance_ops": ops, "enhance_s_per_photo": [round(x, 2) for x in times],
                    "enhancer_over_assessor": round(e_med / (s_med / len(files)), 1)})
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
