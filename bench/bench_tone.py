"""Speed and memory of the tone stage at 12 MP (the numbers in docs/BENCHMARKS.md, section Tone).

    python bench/bench_tone.py [--image PATH] [--runs 3] [--mp 12]

Without ``--image`` a synthetic 4000x3000 photo-like image is made (smooth scene + texture).
Times, median of ``--runs``: ``predict_params`` (view + ONNX + airlight), ``apply_params`` with
every operator active, and each operator alone. Peak Python-heap memory (tracemalloc, which
sees numpy buffers) of one ``apply_params`` call is reported too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.enhance import tone as T  # noqa: E402

ALL_ON = {"dehaze": 0.4, "temperature": 0.1, "tint": -0.05, "exposure": 0.5, "black": 0.03, "white": 0.95,
          "shadows": 0.5, "highlights": 0.3, "contrast": 0.2, "saturation": 0.1, "vibrance": 0.2}


def synthetic(mp: float) -> np.ndarray:
    w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    rng = np.random.default_rng(0)
    small = rng.random((h // 64 + 1, w // 64 + 1, 3)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 0.03, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


def timeit(fn, runs: int) -> str:  # type: ignore[no-untyped-def]
    """'wall s / CPU s' medians: on a shared machine the CPU time (all threads) is the steadier one."""
    ts, cs = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    return f"{statistics.median(ts):.3f} / {statistics.median(cs):.3f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mp", type=float, default=12.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--model", type=Path, default=None, help="tone ONNX (default models/tone.onnx)")
    args = ap.parse_args()
    if args.image:
        bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
        img = np.asarray(bgr[:, :, ::-1], np.float32) / 255.0
    else:
        img = synthetic(args.mp)
    h, w = img.shape[:2]
    res: dict[str, object] = {"size": f"{w}x{h}", "mp": round(w * h / 1e6, 2), "times": "wall s / CPU s, median"}
    T.predict_params(img, args.model)  # warm the session
    res["predict_params_s"] = timeit(lambda: T.predict_params(img, args.model), args.runs)
    params = dict(ALL_ON, airlight=T.estimate_airlight(img))
    res["apply_params_all_s"] = timeit(lambda: T.apply_params(img, params), args.runs)
    p = T.predict_params(img, args.model)
    res["apply_params_predicted_s"] = timeit(lambda: T.apply_params(img, p), args.runs)
    ops = {"dehaze": {"dehaze": 0.4, "airlight": params["airlight"]}, "wb_exposure": {"exposure": 0.5, "temperature": 0.1},
           "levels": {"black": 0.03, "white": 0.95}, "local_tone": {"shadows": 0.5, "highlights": 0.3},
           "contrast": {"contrast": 0.2}, "sat_vibrance": {"saturation": 0.1, "vibrance": 0.2}}
    for name, op in ops.items():
        res[f"op_{name}_s"] = timeit(lambda op=op: T.apply_params(img, op), args.runs)
    res["loadavg_1min"] = round(__import__("os").getloadavg()[0], 2)
    tracemalloc.start()
    T.apply_params(img, params)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    res["apply_peak_mib"] = round(peak / 2**20, 1)
    res["input_mib"] = round(img.nbytes / 2**20, 1)
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
