"""Cost of the regression guard (``engine.enhance.guard.measure``): time and memory, Q vs the assessor's head.

    .venv/bin/python bench/bench_guard.py [--size 4000x3000] [--runs 3]
    PHOTOLIFT_MODELS=DIR_WITHOUT_quality.onnx .venv/bin/python bench/bench_guard.py   # the fallback

The original is a 12 MP photo of ``runs/bench_12mp/`` (made by bench/bench_score.py) resized to
``--size``; the "result" is the same plus 6 levels. Prints the median time of ``measure`` over
``--runs``, the process's peak RSS before and after measuring, and the RSS left afterwards.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mb() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 // 2**20


def main(argv: list[str] | None = None) -> None:
    from engine.assess.quality import get_quality_model
    from engine.enhance.guard import measure
    from engine.ingest.imageio import load_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    src = sorted((REPO / "runs" / "bench_12mp").glob("*.jpg"))
    if not src:
        raise SystemExit("run bench/bench_score.py first (it makes runs/bench_12mp/)")
    before = cv2.resize(load_image(src[0]).rgb, (w, h), interpolation=cv2.INTER_CUBIC)
    after = np.clip(before.astype(np.int16) + 6, 0, 255).astype(np.uint8)
    measure(before[:256, :256], after[:256, :256])  # load the models
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        g = measure(before, after)
        times.append(time.perf_counter() - t0)
    gc.collect()
    by = "quality model Q" if get_quality_model() is not None else "assessor quality head (fallback)"
    print(f"{w}x{h}, measured with the {by}: median {statistics.median(times):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in times)}), gain {g.gain:+.3f}; peak RSS "
          f"{peak0} MB before measuring, {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB after; "
          f"RSS left {rss_mb()} MB")


if __name__ == "__main__":
    main()
