"""Look at the one-click enhancement on real, untouched photos at the tonal extremes of VAL.

    python -m models.training.review_real [--per 4] [--max-side 768] [--out runs/review_real]

There is no reference for a real photo that is dark, bright, flat or hazy as taken, so this is a
review aid, not a score: from the held-out VAL photos (never degraded here) it picks the ``--per``
darkest (median luminance), brightest, flattest (spread of luminance, p95 - p5) and haziest (mean
dark channel, a haze proxy) photos, runs the shipped one-click recipe (``restore,tone`` through
``engine.enhance.pipeline``, exactly what the app applies), and writes a before | after contact sheet
(``sheet.png``) with, per photo, the luminance statistics before and after, the tone parameters
the network chose and Q before and after (``summary.json``). Look at the sheet.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from engine.enhance.pipeline import Pipeline
from models.training.data import REPO, discover, load_rgb
from models.training.labels import QModel, _default_quality


def stats(rgb: np.ndarray) -> dict[str, float]:
    x = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb
    lum = 0.2126 * x[..., 0] + 0.7152 * x[..., 1] + 0.0722 * x[..., 2]
    dark = cv2.erode(x.min(axis=2), np.ones((15, 15), np.uint8))
    p5, p50, p95 = np.percentile(lum, [5, 50, 95])
    return {"median": round(float(p50), 3), "spread": round(float(p95 - p5), 3),
            "dark_channel": round(float(dark.mean()), 3), "clipped": round(float((x.max(axis=2) >= 0.995).mean()), 3),
            "black": round(float((x.max(axis=2) <= 0.02).mean()), 3)}


def pick(items: list[dict[str, Any]], per: int) -> list[tuple[str, dict[str, Any]]]:
    chosen: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    orders = {"darkest": lambda d: d["stats"]["median"], "brightest": lambda d: -d["stats"]["median"],
              "flattest": lambda d: d["stats"]["spread"], "haziest": lambda d: -d["stats"]["dark_channel"]}
    for why, key in orders.items():
        n = 0
        for d in sorted(items, key=key):
            if d["name"] in seen:
                continue
            chosen.append((why, d))
            seen.add(d["name"])
            n += 1
            if n == per:
                break
    return chosen


def label(img: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(img)
    dr = ImageDraw.Draw(im)
    dr.rectangle((0, 0, im.width, 14), fill=(0, 0, 0))
    dr.text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(im)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per", type=int, default=4)
    ap.add_argument("--max-side", type=int, default=768)
    ap.add_argument("--thumb", type=int, default=300, help="height of each image on the sheet")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "review_real")
    ap.add_argument("--candidate", type=Path, default=None,
                    help="a candidate tone ONNX: a third column, restore -> the candidate's tone (its "
                         "calibrated dead zones applied when <candidate>.json is made for it)")
    ap.add_argument("--typical", type=int, default=0, help="also N photos from the middle of VAL (every k-th)")
    args = ap.parse_args(argv)
    photos = discover("val")
    items = []
    for p in photos:
        rgb = load_rgb(p, max_side=args.max_side)
        items.append({"name": p.path.name, "group": p.group, "photo": p, "stats": stats(rgb)})
    q = QModel(_default_quality())
    pipe = Pipeline()
    rows, summary = [], []
    chosen = pick(items, args.per)
    if args.typical:
        names = {d["name"] for _, d in chosen}
        rest = [d for d in items if d["name"] not in names]
        chosen += [("typical", d) for d in rest[:: max(1, len(rest) // args.typical)][: args.typical]]
    for why, d in chosen:
        u8 = load_rgb(d["photo"], max_side=args.max_side)
        x = u8.astype(np.float32) / 255.0
        recipe = pipe.plan(x, "restore,tone")
        y = pipe.apply(recipe, x)
        y8 = (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)
        tone_params = next((st.params for st in recipe.stages if st.name == "tone"), {})
        rec = {"why": why, "name": d["name"], "group": d["group"], "before": d["stats"], "after": stats(y8),
               "q_before": round(q(x), 2), "q_after": round(q(y8.astype(np.float32) / 255.0), 2),
               "tone": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in tone_params.items()
                        if k != "airlight"}}
        summary.append(rec)
        h = args.thumb
        w = max(1, round(u8.shape[1] * h / u8.shape[0]))
        a = cv2.resize(u8, (w, h), interpolation=cv2.INTER_AREA)
        b = cv2.resize(y8, (w, h), interpolation=cv2.INTER_AREA)
        a = label(a, f"{why}: {d['name'][:28]}  Q {rec['q_before']}")
        b = label(b, f"one-click  Q {rec['q_after']}  median {rec['before']['median']}->{rec['after']['median']}")
        cells = [a, np.full((h, 6, 3), 255, np.uint8), b]
        if args.candidate is not None:
            from engine.enhance import tone as T

            yr = pipe.apply(pipe.plan(x, "restore"), x)
            pc = T.predict_params(x, model_path=args.candidate)
            yc8 = (np.clip(T.apply_params(yr, pc), 0, 1) * 255 + 0.5).astype(np.uint8)
            rec["q_candidate"] = round(q(yc8.astype(np.float32) / 255.0), 2)
            rec["after_candidate"] = stats(yc8)
            c = cv2.resize(yc8, (w, h), interpolation=cv2.INTER_AREA)
            cells += [np.full((h, 6, 3), 255, np.uint8),
                      label(c, f"candidate  Q {rec['q_candidate']}  median {rec['after_candidate']['median']}")]
        rows.append(np.hstack(cells))
        print(json.dumps({k: v for k, v in rec.items() if k != "tone"}), flush=True)
    width = max(r.shape[1] for r in rows)
    rows = [np.hstack([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)]) for r in rows]
    cols = 1 if args.candidate is not None else 2
    half = -(-len(rows) // cols)
    left = np.vstack([np.vstack([r, np.full((6, width, 3), 255, np.uint8)]) for r in rows[:half]])
    sheet = left
    if cols == 2:
        right_rows = rows[half:] + [np.full_like(rows[0], 255)] * (half - len(rows[half:]))
        right = np.vstack([np.vstack([r, np.full((6, width, 3), 255, np.uint8)]) for r in right_rows])
        sheet = np.hstack([left, np.full((left.shape[0], 12, 3), 255, np.uint8), right])
    args.out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out / "sheet.png")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out / 'sheet.png'} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
