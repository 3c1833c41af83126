"""How much the level-aware restorer's deblocking gains at each JPEG quality: the data behind the
dead zone (``engine.enhance.levels.JPEG_ZONE``).

    python -m models.training.eval_jpeg_zone [--limit 24] [--crop 320]

On ``--limit`` VAL photos (``data.discover("val")``, evenly over the sorted list, centre crop),
each compressed by OpenCV at every quality in ``QUALITIES`` (4:2:0, seeded), the shipped restorer
runs through the engine (tiled, strength 1, noise measured) twice: told the JPEG quality measured
from the pixels (``levels.jpeg_quality``) with the dead zone switched off (``jpeg_zone=None``), and told quality 95
(JPEG level 0: noise only). Prints the mean PSNR gain over the JPEG of each, and of the engine's
default (the dead zone on), per quality. Training-split photos are never used; CLIVE is not
looked at (its photos are where the dead zone is checked, ``eval_real_gain``).
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np

from engine.assess.metrics import psnr
from engine.enhance import levels
from engine.enhance.restore import Restorer
from models.training.data import REPO, discover, load_rgb

QUALITIES = (30, 40, 50, 60, 65, 70, 75, 80, 85, 90)


def jpeg(u: np.ndarray, q: int) -> np.ndarray:
    bgr = cv2.cvtColor(np.round(u * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--crop", type=int, default=320)
    a = ap.parse_args()
    photos = discover("val")
    idx = np.linspace(0, len(photos) - 1, a.limit).astype(int)
    rest = Restorer()
    rows: dict[int, dict[str, list[float]]] = {q: {"measured": [], "level0": [], "default": [], "q_est": []}
                                               for q in QUALITIES}
    for i in idx:
        u = load_rgb(photos[i]).astype(np.float32) / 255.0
        h, w = u.shape[:2]
        c = min(a.crop, h, w)
        u = u[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
        for q in QUALITIES:
            v = jpeg(u, q)
            base = psnr(v, u)
            qe = levels.jpeg_quality(v)
            r = rows[q]
            r["q_est"].append(qe)
            r["measured"].append(psnr(rest.run(v, jpeg_quality=qe, jpeg_zone=None), u) - base)
            r["level0"].append(psnr(rest.run(v, jpeg_quality=95), u) - base)
            r["default"].append(psnr(rest.run(v), u) - base)
    out = {q: {k: float(np.mean(x)) for k, x in r.items()} for q, r in rows.items()}
    print("| JPEG quality | measured quality | gain, told measured quality (dB) | gain, level 0 | gain, engine default |")
    print("|---|---|---|---|---|")
    for q, r in out.items():
        print(f"| {q} | {r['q_est']:.1f} | {r['measured']:+.2f} | {r['level0']:+.2f} | {r['default']:+.2f} |")
    dest = REPO / "runs" / "eval_jpeg_zone.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"limit": a.limit, "crop": a.crop, "rows": out}, indent=1))


if __name__ == "__main__":
    main()
