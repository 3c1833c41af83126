"""Cost of Q itself, the shipped model beside an earlier version, interleaved in one run.

    .venv/bin/python bench/bench_quality.py [--other runs/quality3/quality_v2.onnx] [--runs 15]

Both sessions are made as ``engine.core.runtime`` makes them (2 intra-op threads here: the guard runs
one Q at a time) and run on the same 768x576 image (Q's viewing scale for a 4:3 photo, the size
``engine.assess.quality`` feeds it), alternately, so machine noise hits both alike. Prints each one's
median seconds per call and their ratio. ``--other`` defaults to version 2 from git (59418b1).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--other", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import onnxruntime as ort

    other = args.other
    if other is None:
        other = Path(tempfile.mkdtemp()) / "quality_v2.onnx"
        other.write_bytes(subprocess.run(["git", "show", "59418b1:models/quality.onnx"], cwd=REPO, check=True,
                                         capture_output=True).stdout)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.enable_cpu_mem_arena = False
    sess = {"shipped": ort.InferenceSession(str(REPO / "models" / "quality.onnx"), so,
                                            providers=["CPUExecutionProvider"]),
            "other": ort.InferenceSession(str(other), so, providers=["CPUExecutionProvider"])}
    x = np.random.default_rng(0).random((1, 3, 576, 768), dtype=np.float32)
    times: dict[str, list[float]] = {k: [] for k in sess}
    for s in sess.values():  # warm-up
        s.run(None, {"image": x})
    for _ in range(args.runs):
        for k, s in sess.items():
            t = time.perf_counter()
            s.run(None, {"image": x})
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"shipped {med['shipped']:.3f} s, other ({other.name}) {med['other']:.3f} s, "
          f"ratio {med['shipped'] / med['other']:.2f} (median of {args.runs}, 768x576, {args.threads} threads)")


if __name__ == "__main__":
    main()
