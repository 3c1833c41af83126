"""Cost of the background face scan (engine.enhance.face_scan) per photo, beside the index of the
same files, in one run.

    .venv/bin/python bench/bench_face_scan.py [--n 24] [--runs 3] [--workers 2]

Files: ``--n`` 12 MP JPEGs of ``runs/bench_12mp/`` (bench/bench_score.py's ``make_files``; free
wallpapers, no faces). Per run, on a fresh catalog: ``index`` (rows, EXIF, thumbnails; no scoring)
then ``faces`` (the scan: a reduced decode to the planner's 1600 px view and the detector, for
every photo). Prints the medians in seconds and per photo.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from bench_score import make_files

    from db.catalog import Catalog
    from engine.enhance.face_scan import scan
    from engine.ingest.indexer import Indexer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    files = make_files(args.n, REPO / "runs" / "bench_12mp")
    root = str(files[0].parent)
    res: dict[str, list[float]] = {"index": [], "faces": []}
    found = 0
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp, Catalog.open(str(Path(tmp) / "c.sqlite")) as cat:
            t = time.perf_counter()
            for _ev in Indexer(cat, None, workers=args.workers).index(root):
                pass
            res["index"].append(time.perf_counter() - t)
            t = time.perf_counter()
            events = list(scan(cat, root, workers=args.workers))
            res["faces"].append(time.perf_counter() - t)
            found = sum(e.count or 0 for e in events)
    n = len(list(Path(root).glob("*.jpg")))
    med = {k: round(statistics.median(v), 3) for k, v in res.items()}
    print(json.dumps({"photos": n, "workers": args.workers, "runs": args.runs, "median_s": med,
                      "per_photo_s": {k: round(v / max(1, n), 4) for k, v in med.items()}, "faces_found": found},
                     indent=1))


if __name__ == "__main__":
    main()
