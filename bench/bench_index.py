"""Indexing throughput: first run versus unchanged re-run, against the cost of just reading the files.

Generates (once, outside the repository) a tree of realistic JPEGs with EXIF: most of them
2-6 MP like phone/web exports, plus some 12 MP and 24 MP camera-size files, made from natural
photo content (our own generated gradients+texture when no photos are given) with mild noise
so they compress like real photos. Then, median of ``--repeats`` runs each:

* ``read``: read every file's bytes (the I/O floor, page cache warm);
* ``decode floor``: read + DCT-scaled decode to thumbnail size in 2 threads (the work the first
  run cannot avoid; the gap between this and the indexer is our own overhead);
* ``first run``: a fresh catalog, ``Library.index`` (fingerprint, decode, EXIF, thumbnail, DB);
* ``unchanged re-run``: the same again over an indexed tree;
* ``re-run of 10,000 files``: a second tree of 10,000 small JPEGs, indexed once, then re-run.

Usage: ``.venv/bin/python bench/bench_index.py [--root /tmp/photolift_bench] [--n 2000]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.catalog import Catalog  # noqa: E402
from engine.ingest.thumbnails import THUMB_SIZE  # noqa: E402
from engine.library import Library  # noqa: E402


def _exif(i: int, orientation: int) -> bytes:
    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"BenchCam", piexif.ImageIFD.Model: f"Model {i % 7}".encode(),
                piexif.ImageIFD.Orientation: orientation},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: f"2023:{1 + i % 12:02d}:{1 + i % 28:02d} 12:00:00".encode(),
                 piexif.ExifIFD.ISOSpeedRatings: 100 * (1 + i % 32), piexif.ExifIFD.ExposureTime: (1, 125),
                 piexif.ExifIFD.FNumber: (40, 10), piexif.ExifIFD.FocalLength: (35, 1)},
        "GPS": {},
    })


def _sources(photo_dir: str | None) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    if photo_dir and Path(photo_dir).is_dir():
        for p in sorted(Path(photo_dir).rglob("*.jpg"))[:24]:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("RGB")))
    if not out:
        rng = np.random.default_rng(0)
        for k in range(8):
            y, x = np.mgrid[0:600, 0:800].astype(np.float32)
            img = np.stack([127 + 100 * np.sin(x / (30 + 7 * k)), 127 + 100 * np.cos(y / (25 + 5 * k)),
                            127 + 60 * np.sin((x + y) / 50)], -1) + rng.normal(0, 12, (600, 800, 3))
            out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def generate(root: Path, n: int, n12: int, n24: int, photo_dir: str | None) -> None:
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == f"{n} {n12} {n24}":
        return
    if root.exists():
        shutil.rmtree(root)
    srcs = _sources(photo_dir)
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 3.0, (512, 512, 3)).astype(np.float32)
    sizes = [(1600, 1200), (2048, 1536), (2400, 1600), (2592, 1944), (3000, 2000)]
    t0 = time.perf_counter()
    for i in range(n):
        if i < n24:
            w, h = 6000, 4000
        elif i < n24 + n12:
            w, h = 4000, 3000
        else:
            w, h = sizes[i % len(sizes)]
        src = srcs[i % len(srcs)]
        im = Image.fromarray(src).resize((w, h), Image.Resampling.BILINEAR)
        a = np.asarray(im).astype(np.float32)
        oy, ox = rng.integers(0, 512, 2)
        tile = np.roll(noise, (int(oy), int(ox)), (0, 1))
        reps = (h // 512 + 1, w // 512 + 1, 1)
        a += np.tile(tile, reps)[:h, :w]
        a[0, 0] = i % 256  # every file distinct
        out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        d = root / f"{2015 + i % 9}" / f"{1 + (i // 9) % 12:02d}"
        d.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=90, exif=_exif(i, 6 if i % 5 == 0 else 1))
        (d / f"IMG_{i:05d}.jpg").write_bytes(buf.getvalue())
        if i % 200 == 0:
            print(f"  generated {i}/{n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    marker.write_text(f"{n} {n12} {n24}")


def generate_small(root: Path, n: int) -> None:
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == str(n):
        return
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(2)
    for i in range(n):
        d = root / f"{i // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        a = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(a).save(d / f"s{i:05d}.jpg", quality=80)
    marker.write_text(str(n))


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.jpg"))


CPU: list[float] = []  # process CPU seconds (all threads) of the last measurement


def _cpu_start() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _cpu_end(t: tuple[float, float]) -> float:
    CPU.append(time.process_time() - t[1])
    return time.perf_counter() - t[0]


def t_read(files: list[Path]) -> float:
    t = _cpu_start()
    for p in files:
        with open(p, "rb") as f:
            f.read()
    return _cpu_end(t)


def t_decode_floor(files: list[Path], workers: int = 2) -> float:
    def one(p: Path) -> None:
        with open(p, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            s = THUMB_SIZE / max(w, h)
            im.draft("RGB", (max(1, round(w * s)), max(1, round(h * s))))  # same DCT scale as the indexer
            im.load()

    t = _cpu_start()
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, files))
    return _cpu_end(t)


def t_index(cat_path: Path, root: Path, thumbs: Path) -> tuple[float, dict[str, int]]:
    with Catalog.open(str(cat_path)) as cat:
        lib = Library(cat, thumb_dir=thumbs)
        t = _cpu_start()
        events = list(lib.index(root))
        dt = _cpu_end(t)
    counts = events[-1].counts or {}
    return dt, counts


def measure(fn: object, repeats: int) -> tuple[float, float]:
    """(median wall s, median CPU s) over ``repeats`` calls of ``fn()``."""
    walls, cpus = [], []
    for _ in range(repeats):
        walls.append(fn())  # type: ignore[operator]
        cpus.append(CPU[-1])
    return statistics.median(walls), statistics.median(cpus)


def bench_queries(base: Path, n: int, repeats: int) -> dict[str, float]:
    """Median ms of Library.query/count over a synthetic catalog of ``n`` photos (90% scored)."""
    import random
    from datetime import datetime

    from db.queries import refresh_current_scores
    from db.schema import Photo, Score

    work = base / "query_run"
    shutil.rmtree(work, ignore_errors=True)
    cat = Catalog.open(str(work / "cat.sqlite"))
    now = datetime.now()
    rnd = random.Random(0)

    def fill(s: object) -> None:
        s.execute(Photo.__table__.insert(), [  # type: ignore[attr-defined]
            {"path": f"/plib/d{i // 1000}/p{i}.jpg", "path_bytes": f"/plib/d{i // 1000}/p{i}.jpg".encode(),
             "size": i, "mtime_ns": i, "fingerprint": f"{i:032x}", "status": "ok", "indexed_at": now,
             "has_gps": False} for i in range(n)])
        s.execute(Score.__table__.insert(), [  # type: ignore[attr-defined]
            {"photo_id": i + 1, "model": "a", "model_version": "v", "fingerprint": f"{i:032x}",
             "improvability": rnd.random(), "quality": 5.0, "severity_json": '{"noise": 0.5}',
             "recommended": False, "head": "", "scored_at": now} for i in range(n) if i % 10])
        refresh_current_scores(s)  # type: ignore[arg-type]

    cat.write(fill)
    lib = Library(cat, thumb_dir=work / "thumbs")
    out: dict[str, float] = {}

    def ms(fn: object) -> float:
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()  # type: ignore[operator]
            ts.append(time.perf_counter() - t)
        return round(statistics.median(ts) * 1000, 1)

    for sort in ("improvability", "quality", "date", "name"):
        out[f"{sort}_first_page_ms"] = ms(lambda sort=sort: lib.query("/plib", sort, {}, 0, 200))
        out[f"{sort}_offset_{n // 2}_ms"] = ms(lambda sort=sort: lib.query("/plib", sort, {}, n // 2, 200))
    out["count_ms"] = ms(lambda: lib.count("/plib"))
    out["count_recommended_ms"] = ms(lambda: lib.count("/plib", {"recommended": True}))
    cat.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "photolift_bench"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--n12", type=int, default=30, help="how many 12 MP files")
    ap.add_argument("--n24", type=int, default=20, help="how many 24 MP files")
    ap.add_argument("--rerun-n", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--photos", default=None, help="folder of real photos to draw content from")
    ap.add_argument("--query-n", type=int, default=100000, help="photos in the synthetic query catalog (0: skip)")
    ap.add_argument("--only-queries", action="store_true")
    args = ap.parse_args()
    base = Path(args.root)
    if args.query_n:
        q = bench_queries(base, args.query_n, args.repeats)
        print(json.dumps({"queries": q, "photos": args.query_n}, indent=2))
        if args.only_queries:
            return 0
    tree, small = base / "tree", base / "small"
    print("generating...", file=sys.stderr)
    generate(tree, args.n, args.n12, args.n24, args.photos)
    generate_small(small, args.rerun_n)
    files = files_of(tree)
    total_mb = sum(p.stat().st_size for p in files) / 1e6
    res: dict[str, object] = {"files": len(files), "total_mb": round(total_mb, 1)}
    t_read(files)  # warm the page cache the same way for every measurement
    res["read_s"], res["read_cpu_s"] = measure(lambda: t_read(files), args.repeats)
    res["decode_floor_s"], res["decode_floor_cpu_s"] = measure(lambda: t_decode_floor(files), args.repeats)
    res["decode_floor_1thread_s"], _ = measure(lambda: t_decode_floor(files, 1), args.repeats)
    firsts, reruns, first_cpu, rerun_cpu = [], [], [], []
    for k in range(args.repeats):
        work = base / f"run{k}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        dt, c = t_index(work / "cat.sqlite", tree, work / "thumbs")
        assert c.get("added") == len(files), c
        firsts.append(dt)
        first_cpu.append(CPU[-1])
        print(f"  first run {k}: {dt:.2f} s", file=sys.stderr)
        dt2, c2 = t_index(work / "cat.sqlite", tree, work / "thumbs")
        assert c2.get("unchanged") == len(files), c2
        reruns.append(dt2)
        rerun_cpu.append(CPU[-1])
    res["first_run_s"] = statistics.median(firsts)
    res["first_run_cpu_s"] = statistics.median(first_cpu)
    res["rerun_cpu_s"] = statistics.median(rerun_cpu)
    res["rerun_s"] = statistics.median(reruns)
    res["first_run_files_per_s"] = round(len(files) / res["first_run_s"], 1)  # type: ignore[operator]
    work = base / "small_run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    dt, c = t_index(work / "cat.sqlite", small, work / "thumbs")
    res["small_first_run_s"] = dt
    res["small_first_run_cpu_s"] = CPU[-1]
    small_reruns: list[float] = []
    small_cpu: list[float] = []
    for _ in range(args.repeats):
        dt2, c2 = t_index(work / "cat.sqlite", small, work / "thumbs")
        assert c2.get("unchanged") == args.rerun_n, c2
        small_reruns.append(dt2)
        small_cpu.append(CPU[-1])
    res["rerun_10k_s"] = statistics.median(small_reruns)
    res["rerun_10k_cpu_s"] = statistics.median(small_cpu)
    res["rerun_10k_all"] = [round(x, 3) for x in small_reruns]
    res["first_runs_all"] = [round(x, 2) for x in firsts]
    res["reruns_all"] = [round(x, 3) for x in reruns]
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
