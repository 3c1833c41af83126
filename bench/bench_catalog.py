"""Cost of the catalog's self-protection: the integrity check at open, the rolling backup, the
full check, and the opening of a catalog as a whole, on synthetic catalogs of N photos (every
photo scored, with a 256-byte embedding, as the scorer writes them).

    .venv/bin/python bench/bench_catalog.py [--photos 10000 100000] [--runs 5]

Prints, per size: file size, median ms of ``PRAGMA quick_check`` (run at every open),
``Catalog.open`` + close with and without the check, ``PRAGMA integrity_check`` (``photolift
catalog check``) and one backup (``db.backup.take_backup``, taken at most daily).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_catalog(path: Path, n: int) -> None:
    from db.catalog import Catalog
    from db.schema import Photo, Score

    cat = Catalog.open(str(path))
    now = datetime.now()
    rnd = random.Random(0)

    def fill(s: object) -> None:
        s.execute(Photo.__table__.insert(), [  # type: ignore[attr-defined]
            {"path": f"/plib/d{i // 1000}/p{i}.jpg", "path_bytes": f"/plib/d{i // 1000}/p{i}.jpg".encode(),
             "size": i, "mtime_ns": i, "fingerprint": f"{i:032x}", "status": "ok", "indexed_at": now,
             "has_gps": False} for i in range(n)])
        s.execute(Score.__table__.insert(), [  # type: ignore[attr-defined]
            {"photo_id": i + 1, "model": "a", "model_version": "v", "fingerprint": f"{i:032x}",
             "improvability": rnd.random(), "quality": 5.0, "severity_json": '{"noise": 0.5, "blur": 0.1}',
             "embedding": os.urandom(256), "recommended": False, "head": "", "scored_at": now} for i in range(n)])

    cat.write(fill)
    cat.close()


def median_ms(fn: object, runs: int) -> float:
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        ts.append(time.perf_counter() - t)
    return round(statistics.median(ts) * 1000, 1)


def main(argv: list[str] | None = None) -> None:
    from db import backup
    from db.catalog import Catalog

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_catalog_"))
    try:
        for n in args.photos:
            path = work / f"c{n}.sqlite"
            make_catalog(path, n)
            size_mb = path.stat().st_size / 2**20
            quick = median_ms(lambda path=path: backup.check_file(path), args.runs)
            full = median_ms(lambda path=path: backup.check_file(path, full=True), max(1, args.runs // 2))
            open_checked = median_ms(lambda path=path: Catalog.open(str(path), backups=False).close(), args.runs)
            open_plain = median_ms(lambda path=path: Catalog.open(str(path), check=False, backups=False).close(),
                                   args.runs)
            bk = median_ms(lambda path=path: backup.take_backup(path, reason="bench", keep=1), max(1, args.runs // 2))
            print(f"{n:>7} photos, {size_mb:6.1f} MB: quick_check {quick} ms; open+close {open_checked} ms "
                  f"(without the check {open_plain} ms); integrity_check {full} ms; backup {bk} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
