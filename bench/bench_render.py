"""Benchmark of rendering and export for a 12 MP JPEG (see docs/BENCHMARKS.md, "Enhancement
pipeline and export").

    .venv/bin/python bench/bench_render.py [--image PATH] [--runs 3] [--models DIR] [--full]

Without ``--image`` a 4000x3000 JPEG with photo-like texture and sensor noise is generated in a
temporary folder. Models come from ``--models`` (else ``PHOTOLIFT_MODELS`` / ``models/``);
the preview and full-render figures need ``restorer.onnx`` and ``tone.onnx`` there. Reported
numbers are medians over ``--runs`` runs; caches are cleared before every uncached run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_photo(path: Path, w: int = 4000, h: int = 3000, seed: int = 0) -> None:
    import cv2
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.random((h // 50, w // 50, 3), dtype=np.float32)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    detail = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 1.5)[..., None]
    img = np.clip(0.75 * img + 0.35 * (detail - 0.5) + rng.normal(0, 0.03, (h, w, 3)).astype(np.float32), 0, 1)
    Image.fromarray((img * 255).astype(np.uint8)).save(path, "JPEG", quality=90)


class Timing(float):
    """Median wall seconds (the float) plus the median CPU seconds of the process (all threads):
    on a shared machine CPU time is far less inflated by the load than wall time."""

    cpu: float

    def __new__(cls, wall: float, cpu: float) -> Timing:
        t = super().__new__(cls, wall)
        t.cpu = cpu
        return t


def median_time(fn: Callable[[], object], runs: int, setup: Callable[[], None] | None = None) -> Timing:
    walls, cpus = [], []
    for _ in range(runs):
        if setup is not None:
            setup()
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return Timing(statistics.median(walls), statistics.median(cpus))


def ms(t: Timing) -> str:
    return f"{t * 1000:.0f} ms wall, {t.cpu * 1000:.0f} ms CPU"


def sec(t: Timing) -> str:
    return f"{t:.2f} s wall, {t.cpu:.2f} s CPU"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--models", type=Path)
    ap.add_argument("--full", action="store_true", help="also time the full-resolution render and export")
    ap.add_argument("--enhance", action="store_true",
                    help="also time Editor.enhance (plan, full render, regression guard, preview) in a temp catalog")
    args = ap.parse_args()
    if args.models:
        os.environ["PHOTOLIFT_MODELS"] = str(args.models)
    tmp = Path(tempfile.mkdtemp(prefix="bench_render_"))
    os.environ["PHOTOLIFT_CACHE"] = str(tmp / "cache")
    try:
        from engine.core.runtime import cpu_count, models_dir
        from engine.enhance.pipeline import Pipeline
        from engine.enhance.render import RenderCache, Renderer
        from engine.export.exporter import write_export
        from engine.ingest.imageio import load_image
        from engine.ingest.indexer import fingerprint

        src = args.image or tmp / "photo12mp.jpg"
        if args.image is None:
            make_photo(src)
        w, h = load_image(src, max_side=64).size
        print(f"image {src} {w}x{h} ({w * h / 1e6:.1f} MP); cores {cpu_count()}; models {models_dir()}; "
              f"load average {os.getloadavg()[0]:.1f}")
        fp = fingerprint(src)
        cache = RenderCache(tmp / "cache")
        pipe = Pipeline()
        r = Renderer(pipe, cache)

        def clear() -> None:
            shutil.rmtree(cache.root, ignore_errors=True)

        t = median_time(lambda: r.load_view(src, 1600), args.runs)
        print(f"decode at 1600 px (DCT-scaled + area resize): {ms(t)}")
        view = r.load_view(src, 1600)
        t = median_time(lambda: pipe.plan(view.astype(np.float32) / 255.0), args.runs)
        print(f"plan (tone parameters predicted): {ms(t)}")
        recipe = pipe.plan(view.astype(np.float32) / 255.0)
        for ops in (("restore", "tone"), ("tone",), ("restore",)):
            from engine.enhance.recipes import Recipe

            sub = Recipe(stages=tuple(s for s in recipe.stages if s.name in ops), strength=recipe.strength)
            t = median_time(lambda sub=sub: r.preview(src, fp, sub, 1600), args.runs, setup=clear)
            print(f"preview 1600 px, {'+'.join(ops)}, uncached: {ms(t)}")
        r.preview(src, fp, recipe, 1600)
        t = median_time(lambda: r.preview(src, fp, recipe, 1600), args.runs)
        print(f"preview 1600 px, cached: {ms(t)}")
        if args.full:
            t = median_time(lambda: r.full(src, fp, recipe), 1 if args.runs < 3 else args.runs, setup=clear)
            print(f"full render {w}x{h}, restore+tone, uncached: {sec(t)}")
            r.full(src, fp, recipe)
            t = median_time(lambda: r.full(src, fp, recipe), args.runs)
            print(f"full render, cached (16-bit .npy): {sec(t)}")
            rendered = r.full(src, fp, recipe)
            out = tmp / "out"
            out.mkdir()
            import itertools

            stems = itertools.count()  # a new name each time (a rerun into the same name is a no-op)
            for fmt, bits in (("jpeg", 8), ("png", 8), ("tiff", 8), ("tiff", 16), ("png", 16)):
                t = median_time(lambda fmt=fmt, bits=bits: write_export(rendered, out, f"x{next(stems)}", fmt, 92,
                                                                        bits, recipe), args.runs)
                print(f"encode+write+verify {fmt} {bits}-bit: {sec(t)}")
        if args.enhance:
            from db.catalog import Catalog
            from engine.enhance.edits import Editor
            from engine.ingest.indexer import Indexer

            lib = tmp / "lib"
            lib.mkdir()
            shutil.copy(src, lib / "p.jpg")
            cat = Catalog.open(str(tmp / "cat.sqlite"))
            try:
                for _ in Indexer(cat, workers=1).index(lib):
                    pass
                ed = Editor(cat, renderer=Renderer(pipe, RenderCache(tmp / "cache2")))
                res: list[object] = []
                t = median_time(lambda: res.append(ed.enhance(1)), args.runs,
                                setup=lambda: shutil.rmtree(tmp / "cache2", ignore_errors=True))
                print(f"Editor.enhance (plan + full render + guard + preview), uncached: {sec(t)}; last: {res[-1]}")
                t = median_time(lambda: ed.preview(1, 1600), args.runs)
                print(f"Editor.preview 1600 px right after enhance: {ms(t)}")
            finally:
                cat.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
