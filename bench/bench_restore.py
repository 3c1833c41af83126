"""Benchmark of the tiled restorer (engine.enhance.restore): speed per megapixel, tile size, workers,
peak memory on a 24 MP photo, and agreement of tiled and single-pass output.

    python bench/bench_restore.py [--model models/restorer.onnx] [--runs 3] [--mp 2]
                                  [--tiles 256,384,512,768] [--rss-mp 24] [--json runs/bench_restore.json]

* Speed: a synthetic photo of ``--mp`` megapixels, every (tile, workers) configuration run
  ``--runs`` times, round-robin (so drifting load on a shared machine hits every configuration
  alike); median wall seconds per MP and median process CPU seconds per MP (all threads). On a
  machine shared with other jobs the wall time is inflated by the load; CPU seconds are much
  less affected, and ``cpu/2`` estimates the wall time on 2 dedicated cores if the two threads
  scale perfectly (an optimistic bound: compare configurations by ratios within one run).
* Memory: a child process allocates a ``--rss-mp`` photo (3:2), restores it with the default
  Restorer, and reports its peak resident set (``VmHWM`` from /proc, and ``ru_maxrss``), plus
  the peak before the restore (interpreter + onnxruntime + input).
* Agreement: PSNR between the default tiled output and one single pass over the whole image.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.assess.metrics import psnr  # noqa: E402
from engine.core import runtime  # noqa: E402
from engine.enhance.restore import DEFAULT_BORDER, DEFAULT_OVERLAP, DEFAULT_TILE, Restorer, default_workers  # noqa: E402


def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients, edges and texture plus mild noise; float32 0..1 (content does not change
    the cost of a convolutional network, but keeps the agreement check meaningful)."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    xx = np.arange(w, dtype=np.float32)[None, :]
    step = 512
    for r in range(0, h, step):
        yy = np.arange(r, min(h, r + step), dtype=np.float32)[:, None]
        band = img[r : r + step]
        band[..., 0] = 0.5 + 0.4 * np.sin(xx / 37.0) * np.cos(yy / 53.0)
        band[..., 1] = (xx / w * 0.6 + yy / h * 0.3)
        band[..., 2] = 0.5 + 0.25 * np.sign(np.sin(xx / 91.0 + yy / 61.0))
        band += rng.normal(0, 0.03, band.shape).astype(np.float32)
    np.clip(img, 0, 1, out=img)
    return img


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child_rss(model: str, mp: float, tile: int, workers: int) -> None:
    w = int(round((mp * 1e6 * 1.5) ** 0.5))
    h = int(round(mp * 1e6 / w))
    img = synthetic_photo(h, w)
    r = Restorer(model, tile=tile, workers=workers)
    runtime.get_session(r.model_path, r.threads)
    before = vm_hwm_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    out = r.run(img)
    res = {"h": h, "w": w, "mp": h * w / 1e6, "tile": tile, "workers": workers, "tiles": r.tile_count(h, w),
           "hwm_before_mb": before, "hwm_mb": vm_hwm_mb(),
           "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
           "input_mb": img.nbytes / 2**20, "output_mb": out.nbytes / 2**20}
    print(json.dumps(res), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(runtime.models_dir() / "restorer.onnx"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mp", type=float, default=2.0)
    ap.add_argument("--tiles", default="256,384,512,768")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--overlaps", default=str(DEFAULT_OVERLAP))
    ap.add_argument("--rss-mp", type=float, default=24.0, help="0 to skip the memory run")
    ap.add_argument("--rss-tile", type=int, default=DEFAULT_TILE)
    ap.add_argument("--json", type=Path, default=REPO / "runs" / "bench_restore.json")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child_rss(args.model, args.rss_mp, args.rss_tile, int(args.workers.split(",")[0]))
        return

    report: dict[str, object] = {"model": args.model, "model_version": runtime.model_version(Path(args.model)),
                                 "cores": runtime.cpu_count(), "loadavg_start": os.getloadavg()}
    print(f"model {args.model} ({report['model_version']}), cores {report['cores']}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    # ---- speed
    w = int(round((args.mp * 1e6 * 1.5) ** 0.5))
    h = int(round(args.mp * 1e6 / w))
    img = synthetic_photo(h, w, 1)
    mp = h * w / 1e6
    configs = [(int(t), int(k), int(o)) for t in args.tiles.split(",") for k in args.workers.split(",")
               for o in args.overlaps.split(",")]
    restorers = {c: Restorer(args.model, tile=c[0], workers=c[1], overlap=c[2]) for c in configs}
    for r in restorers.values():  # warm-up: session creation and first-run allocations
        r.run(img[:256, :256])
    walls: dict[tuple[int, int, int], list[float]] = {c: [] for c in configs}
    cpus: dict[tuple[int, int, int], list[float]] = {c: [] for c in configs}
    for i in range(args.runs):
        for c in configs:
            t0, c0 = time.perf_counter(), time.process_time()
            restorers[c].run(img)
            walls[c].append((time.perf_counter() - t0) / mp)
            cpus[c].append((time.process_time() - c0) / mp)
            print(f"  run {i + 1} tile {c[0]} workers {c[1]} overlap {c[2]}: {walls[c][-1]:.2f} s/MP wall, "
                  f"{cpus[c][-1]:.2f} CPU-s/MP", flush=True)
    speed = []
    for c in configs:
        speed.append({"tile": c[0], "workers": c[1], "overlap": c[2], "threads_per_worker": restorers[c].threads,
                      "tiles": restorers[c].tile_count(h, w), "wall_s_per_mp": statistics.median(walls[c]),
                      "cpu_s_per_mp": statistics.median(cpus[c]),
                      "est_dedicated_2core_s_per_mp": statistics.median(cpus[c]) / 2})
    report["speed"] = {"image": [h, w], "mp": mp, "runs": args.runs, "results": speed}
    print(f"\nspeed on {w}x{h} ({mp:.2f} MP), median of {args.runs}:")
    print("| tile | overlap | workers x threads | tiles | wall s/MP | CPU s/MP | CPU/2 (2 dedicated cores, est.) |")
    print("|---|---|---|---|---|---|---|")
    for s in speed:
        print(f"| {s['tile']} | {s['overlap']} | {s['workers']} x {s['threads_per_worker']} | {s['tiles']} | "
              f"{s['wall_s_per_mp']:.2f} | {s['cpu_s_per_mp']:.2f} | {s['est_dedicated_2core_s_per_mp']:.2f} |")

    # ---- agreement of tiled and single pass (real network: receptive field > discarded band)
    ah, aw = min(h, 1024), min(w, 1536)
    sub = img[:ah, :aw]
    tiled = Restorer(args.model).run(sub)
    tiled64 = Restorer(args.model, overlap=64).run(sub)
    single_tile = ((max(ah, aw) + 2 * DEFAULT_BORDER + 7) // 8) * 8 + 8
    single = Restorer(args.model, tile=single_tile).run(sub)
    report["agreement"] = {"image": [ah, aw], "psnr_tiled_vs_single_db": psnr(tiled, single),
                           "max_abs_diff": float(np.abs(tiled - single).max()),
                           "psnr_overlap64_vs_single_db": psnr(tiled64, single),
                           "max_abs_diff_overlap64": float(np.abs(tiled64 - single).max())}
    print(f"\ntiled (tile {DEFAULT_TILE}, overlap {DEFAULT_OVERLAP}) vs single pass on {aw}x{ah}: "
          f"PSNR {report['agreement']['psnr_tiled_vs_single_db']:.1f} dB, "  # type: ignore[index]
          f"max |diff| {report['agreement']['max_abs_diff']:.4f}; overlap 64: "  # type: ignore[index]
          f"{report['agreement']['psnr_overlap64_vs_single_db']:.1f} dB", flush=True)  # type: ignore[index]
    del tiled, tiled64, single, sub

    # ---- peak memory of a child process on a big photo
    if args.rss_mp > 0:
        cmd = [sys.executable, __file__, "--_child", "--model", args.model, "--rss-mp", str(args.rss_mp),
               "--rss-tile", str(args.rss_tile), "--workers", str(default_workers())]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        child["children_ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        report["memory"] = child
        print(f"\npeak memory, {child['w']}x{child['h']} ({child['mp']:.1f} MP), tile {child['tile']}: "
              f"VmHWM {child['hwm_mb']:.0f} MB (before restore {child['hwm_before_mb']:.0f} MB; "
              f"input {child['input_mb']:.0f} MB + output {child['output_mb']:.0f} MB), "
              f"{child['wall_s']:.1f} s wall, {child['cpu_s'] / child['mp']:.2f} CPU-s/MP", flush=True)

    report["loadavg_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
