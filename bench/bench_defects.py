"""Speed of the camera-defect detection over indexed photos (``engine.enhance.defects.detect``).

Writes ``--n`` JPEGs of ``--size`` (default 4000x3000, a 12 MP camera) spread over ``--cameras``
camera models (EXIF make/model), made from the clean photos of ``$PHOTOLIFT_DATA/train/CQ100``
scaled up with mild noise (or the tests' synthetic scenes when those are missing), into a folder
outside the repository (kept for reruns), indexes it, then times a forced detection (every series
examined: decode at reduced scale, accumulate, find, refine, hot pixels from up to 40 photos per
series at half scale) with ``--workers`` threads. Prints seconds and photos per second.

Usage: ``python bench/bench_defects.py [--n 200] [--size 4000x3000] [--cameras 4] [--workers 2] [--unique K]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.catalog import Catalog  # noqa: E402
from engine.enhance import defects as D  # noqa: E402
from engine.library import Library  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--root", default="/tmp/photolift_bench_defects")
    ap.add_argument("--unique", type=int, default=0,
                    help="make only this many different photos: photo i shows scene i // cameras, "
                         "so every camera's series still has no repeated scene (a large library "
                         "without hours of JPEG encoding); 0: every photo different")
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.split("x"))
    root = Path(a.root) / (f"v2_{a.n}_{w}x{h}_{a.cameras}" + (f"_u{a.unique}" if a.unique else ""))
    lib = root / "lib"
    data = Path(os.environ.get("PHOTOLIFT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    srcs = sorted(p for p in (data / "train" / "CQ100").glob("*")
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"))
    rng = np.random.default_rng(0)
    t0 = time.time()
    if not lib.is_dir():
        lib.mkdir(parents=True)
        first_of: dict[int, Path] = {}
        for i in range(a.n):
            ex = piexif.dump({"0th": {piexif.ImageIFD.Make: b"BenchCam",
                                      piexif.ImageIFD.Model: f"Model {i % a.cameras}".encode()},
                              "Exif": {}, "GPS": {}})
            scene_i = (i // a.cameras) % a.unique if a.unique else i
            if scene_i in first_of:  # the same encoded scene under this photo's camera: EXIF only
                piexif.insert(ex, str(first_of[scene_i]), str(lib / f"{i:05d}.jpg"))
                continue
            if srcs:  # a different random crop (and flip) of a clean photo each time: no scene repeats
                with Image.open(srcs[int(rng.integers(len(srcs)))]) as im:
                    sw, sh = im.size
                    cw, ch = int(sw * rng.uniform(0.55, 0.8)), int(sh * rng.uniform(0.55, 0.8))
                    cx, cy = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
                    crop = im.convert("RGB").crop((cx, cy, cx + cw, cy + ch))
                    if rng.random() < 0.5:
                        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                    base = np.asarray(crop.resize((w, h), Image.Resampling.BICUBIC), np.float32)
            else:
                from tests.test_defects import scene

                base = scene(rng, w, h).astype(np.float32)
            img = np.clip(base + rng.normal(0, 2.0, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(lib / f"{i:05d}.jpg", quality=90, exif=ex)
            first_of[scene_i] = lib / f"{i:05d}.jpg"
    t_make = time.time() - t0
    cat = Catalog.open(str(root / "catalog.sqlite"))
    t0 = time.time()
    for _ in Library(cat, thumb_dir=root / "thumbs").index(str(lib)):
        pass
    t_index = time.time() - t0
    t0 = time.time()
    reps = D.detect(cat, str(lib), force=True, workers=a.workers)
    t_detect = time.time() - t0
    cat.close()
    print(json.dumps({"photos": a.n, "size": [w, h], "cameras": a.cameras, "workers": a.workers,
                      "cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
                      "seconds_make": round(t_make, 1), "seconds_index": round(t_index, 1),
                      "seconds_detect": round(t_detect, 1), "photos_per_s": round(a.n / t_detect, 1),
                      "defects": {r.camera: [d.kind for d in r.defects] for r in reps}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
