"""New-folder throughput of ``photolift score DIR`` (one decode per photo) beside a decode-only
pass over the same files, and beside the two-pass path it replaced, in one run.

    .venv/bin/python bench/bench_ingest.py [--n 16] [--runs 3] [--workers 2]

Files: ``--n`` 12 MP JPEGs of ``runs/bench_12mp/`` (made by bench/bench_score.py's ``make_files``).
Per run, in this order, each on a fresh catalog (every file is new to it):

* ``decode``: a half-scale decode of every file (``load_image(path, reduce=2)``, what the views
  need), ``--workers`` threads, in this process: the floor;
* ``decode-pillow``: the same files through Pillow alone (``draft`` to half scale, ``load``; the
  pixels stay in Pillow, no array is made) and ``decode-opencv`` (``cv2.imdecode`` with
  ``IMREAD_REDUCED_COLOR_2``, straight into an array): bare half-scale decodes as another
  program would time them, same threads. The ratios are also given against the fastest of the
  three (``floor``);
* ``startup``: ``photolift score EMPTY_DIR`` as a subprocess (imports, catalog open, ONNX session);
* ``score``: ``photolift score DIR --json`` as a subprocess, start-up included (index, thumbnails,
  scores: one decode per file), on a new catalog;
* ``score-known-catalog``: the same on a catalog that already exists (a user's second folder: the
  catalog is not created and migrated first);
* ``two-pass``: ``photolift index DIR`` then ``photolift score DIR`` (the index decodes for the
  thumbnail and EXIF, the scorer decodes again), start-up of both included;
* ``gui``: the GUI's open-folder path without widgets, ``Services.index_job`` then
  ``Services.score_job``, in this process.

Prints the medians (seconds) and the ratios decode/score, decode/gui, decode/two-pass (1.0 = as
fast as decoding alone). The subprocesses run with Python's bytecode cache (as an installed
photolift does; ``PYTHONDONTWRITEBYTECODE`` is removed from their environment and one warm-up run
writes the cache), so start-up is not inflated by compiling photolift's own modules each time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cli(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def bare_decode_pass(paths: list[Path], workers: int, how: str) -> float:
    """Half-scale decodes with nothing else: Pillow (``draft`` + ``load``) or OpenCV."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    import cv2
    import numpy as np
    from PIL import Image

    def one(p: Path) -> int:
        data = p.read_bytes()
        if how == "opencv":
            return int(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_2).size)
        im = Image.open(io.BytesIO(data))
        im.draft(None, (im.size[0] // 2, im.size[1] // 2))
        im.load()
        return im.size[0]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        for v in ex.map(one, paths):
            assert v
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from bench_score import decode_pass, make_files

    from engine.core.jobs import CancelToken

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    files = make_files(args.n, REPO / "runs" / "bench_12mp")
    work = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    lib = work / "photos"
    lib.mkdir()
    for f in files:
        os.link(f, lib / f.name) if os.stat(f).st_dev == os.stat(work).st_dev else shutil.copy(f, lib / f.name)
    (work / "empty").mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), PHOTOLIFT_CACHE=str(work / "cache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    res: dict[str, list[float]] = {k: [] for k in ("decode", "decode-pillow", "decode-opencv", "startup", "score", "score-known-catalog",
                                                   "two-pass", "gui")}
    try:
        cli(["--catalog", str(work / "warm.sqlite"), "score", str(lib), "--json"], env)  # writes the bytecode cache
        shutil.rmtree(work / "cache", ignore_errors=True)
        for r in range(args.runs):
            paths = sorted(lib.glob("*.jpg"))
            res["decode"].append(decode_pass(paths, args.workers, 2))
            res["decode-pillow"].append(bare_decode_pass(paths, args.workers, "pillow"))
            res["decode-opencv"].append(bare_decode_pass(paths, args.workers, "opencv"))
            res["startup"].append(cli(["--catalog", str(work / f"s{r}.sqlite"), "score", str(work / "empty")], env))
            res["score"].append(cli(["--catalog", str(work / f"a{r}.sqlite"), "score", str(lib), "--json",
                                     "--workers", str(args.workers)], env))
            known = work / f"known{r}.sqlite"
            cli(["--catalog", str(known), "score", str(work / "empty")], env)  # the catalog exists
            shutil.rmtree(work / "cache", ignore_errors=True)
            res["score-known-catalog"].append(cli(["--catalog", str(known), "score", str(lib), "--json",
                                                   "--workers", str(args.workers)], env))
            shutil.rmtree(work / "cache", ignore_errors=True)
            res["two-pass"].append(cli(["--catalog", str(work / f"b{r}.sqlite"), "index", str(lib), "-q"], env)
                                   + cli(["--catalog", str(work / f"b{r}.sqlite"), "score", str(lib), "--json",
                                          "--workers", str(args.workers)], env))
            from app.services import Services

            shutil.rmtree(work / "cache", ignore_errors=True)
            t = time.perf_counter()
            sv = Services.open(str(work / f"g{r}.sqlite"), threads=args.workers)
            try:
                for _ in sv.index_job(str(lib))(lambda p: None, CancelToken()):
                    pass
                for _ in sv.score_job(str(lib))(lambda p: None, CancelToken()):
                    pass
            finally:
                sv.close()
            res["gui"].append(time.perf_counter() - t)
            shutil.rmtree(work / "cache", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: round(statistics.median(v), 3) for k, v in res.items()}
    out = {"n": args.n, "workers": args.workers, "runs": args.runs, "median_s": med,
           "decode_over_score": round(med["decode"] / med["score"], 3),
           "decode_over_score_known_catalog": round(med["decode"] / med["score-known-catalog"], 3),
           "decode_over_gui": round(med["decode"] / med["gui"], 3),
           "decode_over_two_pass": round(med["decode"] / med["two-pass"], 3),
           "photos_per_s_score": round(args.n / med["score"], 2)}
    floor = min(med["decode"], med["decode-pillow"], med["decode-opencv"])
    out.update({"floor_s": floor,
                "floor_over_score": round(floor / med["score"], 3),
                "floor_over_score_known_catalog": round(floor / med["score-known-catalog"], 3),
                "floor_over_gui": round(floor / med["gui"], 3)})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
