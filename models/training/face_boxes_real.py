"""The face detector on real photos: sheets of its boxes to label by eye, and its precision.

Composites overstate the detector's precision on real photos (models/face_detector.md): most of
its boxes on CLIVE photos are clouds, flowers, walls. This measures it on real photos with
labels made by looking, so the threshold can be chosen on one part and reported on the other.

    python -m models.training.face_boxes_real sheets --split train   # runs/face_real/train_*.png
    (look at the sheets; write models/training/face_boxes_real_<split>.csv: index,label
     with label 1 = a human face, 0 = not a face)
    python -m models.training.face_boxes_real report --split train   # precision per threshold

Several detectors, compared blind on the same photos: ``--models shipped=models/face_detector.onnx,
new=runs/x/face_detector.onnx``. The sheets then show the union of their boxes (boxes of two
detectors overlapping by IoU >= 0.5 are one item), numbered by the best score of any, without
saying which detector found what; the report gives each detector's precision and faces found.

Photos: ``../shared/data/iqa/CLIVE_train700`` (real photos with authentic distortions; never used
to train the detector), split by ``iqa_data`` (``val`` = the IQA validation part); or ``scenes``:
the TRAIN scene photos the composites are made from (``data.discover('train')``, at 700 px), whose
real faces were negatives until they were labelled here. Every box the
engine's detector returns at threshold ``LOW`` on the photo as the face stage sees it (CLIVE photos
are 500 px: the whole photo) is listed in ``runs/face_real/<split>_boxes.json`` in a fixed order;
the sheets number them. Only numbers (box index and label) are committed, no pixels.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np

from engine.enhance.faces import DEFAULT_THRESHOLD, FaceDetector
from models.training.data import REPO
from models.training.iqa_data import clive_root, load_clive

OUT = REPO / "runs" / "face_real"
LOW = float(os.environ.get("PHOTOLIFT_FACE_LOW", "0.4"))  # the shipped threshold: every box the scan stores
TILE = 112
PER_SHEET = 48


def parse_models(spec: str) -> dict[str, Path]:
    out = {}
    for part in spec.split(","):
        name, _, path = part.partition("=")
        out[name] = Path(path) if path else REPO / "models" / "face_detector.onnx"
    return out


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


SCENE_SIDE = 700  # the scenes' long side, as the composites load them (train_face_detector)


def split_photos(split: str) -> list[str]:
    """The photos of ``split``: paths relative to the CLIVE folder, or absolute for ``scenes``."""
    if split == "scenes":
        from models.training.data import discover

        return [str(p.path) for p in discover("train")]
    return [str(r.path.relative_to(clive_root())) for r in load_clive(split)]


def load_photo(name: str) -> np.ndarray | None:
    """uint8 RGB of a photo named as :func:`split_photos` names it (scenes at ``SCENE_SIDE``)."""
    from PIL import Image

    path = clive_root() / name  # an absolute name stays itself
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if Path(name).is_absolute() and max(im.size) > SCENE_SIDE:
                k = SCENE_SIDE / max(im.size)
                im = im.resize((round(im.width * k), round(im.height * k)), Image.Resampling.LANCZOS)
            return np.asarray(im, dtype=np.uint8).copy()
    except OSError:
        return None


def boxes(split: str, models: dict[str, Path]) -> list[dict[str, object]]:
    dets = {k: FaceDetector(p) for k, p in models.items()}
    rows: list[dict[str, object]] = []
    for name in split_photos(split):
        rgb = load_photo(name)
        if rgb is None:
            continue
        items: list[dict[str, object]] = []
        for key, det in dets.items():
            for f in det.detect(rgb, threshold=LOW):
                box = [f.x0, f.y0, f.x1, f.y1]
                same = [it for it in items if key not in it["scores"]  # type: ignore[operator]
                        and _iou(it["box"], box) >= 0.5]  # type: ignore[arg-type]
                if same:
                    same[0]["scores"][key] = round(float(f.score), 4)  # type: ignore[index]
                else:
                    items.append({"photo": name, "box": box, "scores": {key: round(float(f.score), 4)},
                                  "w": rgb.shape[1], "h": rgb.shape[0]})
        rows += items
    return rows


def _scores(row: dict[str, object]) -> dict[str, float]:
    if "scores" in row:
        return dict(row["scores"])  # type: ignore[call-overload]
    return {"shipped": float(row["score"])}  # type: ignore[arg-type]  # the first sheets: one detector


def crop(row: dict[str, object], root: Path) -> np.ndarray:
    rgb = load_photo(str(row["photo"]))
    assert rgb is not None
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in row["box"])  # type: ignore[attr-defined]
    cx, cy = (x0 + x1) / 2 * w, (y0 + y1) / 2 * h
    side = max((x1 - x0) * w, (y1 - y0) * h) * 1.6 + 8
    a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    c, d = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    tile = cv2.resize(bgr[b:d, a:c], (TILE, TILE), interpolation=cv2.INTER_AREA)
    # the box itself, in the tile
    sx, sy = TILE / max(1, c - a), TILE / max(1, d - b)
    cv2.rectangle(tile, (int((x0 * w - a) * sx), int((y0 * h - b) * sy)),
                  (int((x1 * w - a) * sx), int((y1 * h - b) * sy)), (0, 255, 255), 1)
    return tile


def sheets(split: str, models: dict[str, Path], name: str | None = None) -> None:
    name = name or split
    OUT.mkdir(parents=True, exist_ok=True)
    rows = sorted(boxes(split, models), key=lambda r: -max(_scores(r).values()))
    blind = len(models) > 1
    for k, r in enumerate(rows):  # numbered best first
        r["i"] = k
    (OUT / f"{name}_boxes.json").write_text(json.dumps(rows, indent=0))
    root = clive_root()
    cols = 8
    for s in range(0, len(rows), PER_SHEET):
        part = rows[s:s + PER_SHEET]
        n_rows = -(-len(part) // cols)
        sheet = np.full((n_rows * (TILE + 18), cols * TILE, 3), 255, np.uint8)
        for k, row in enumerate(part):
            y, x = (k // cols) * (TILE + 18), (k % cols) * TILE
            sheet[y:y + TILE, x:x + TILE] = crop(row, root)
            label = f"{row['i']}" if blind else f"{row['i']} {max(_scores(row).values()):.2f}"
            cv2.putText(sheet, label, (x + 2, y + TILE + 13),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.imwrite(str(OUT / f"{name}_{s // PER_SHEET:02d}.png"), sheet)
    print(f"{len(rows)} boxes on {len({r['photo'] for r in rows})} photos -> {OUT}")


def labels_path(split: str) -> Path:
    return Path(__file__).with_name(f"face_boxes_real_{split}.csv")


def box_px(row: dict[str, object]) -> float:
    """The larger side of a box in pixels of the photo (CLIVE photos are detected at their size)."""
    x0, y0, x1, y1 = (float(v) for v in row["box"])  # type: ignore[attr-defined]
    return max((x1 - x0) * float(row["w"]), (y1 - y0) * float(row["h"]))  # type: ignore[arg-type]


def report(split: str, min_px: float = 0.0, name: str | None = None) -> dict[str, object]:
    name = name or split
    rows = json.loads((OUT / f"{name}_boxes.json").read_text())
    rows = [r for r in rows if box_px(r) >= min_px]
    with open(labels_path(name), newline="") as f:
        lab = {int(r["index"]): int(r["label"]) for r in csv.DictReader(f)}
    missing = [r["i"] for r in rows if r["i"] not in lab]
    if missing:
        raise SystemExit(f"{len(missing)} boxes have no label, first {missing[:10]}")
    keys = sorted({k for r in rows for k in _scores(r)})
    out: dict[str, object] = {"split": split, "min_px": min_px, "items": len(rows), "photos": len({r["photo"] for r in rows}),
                              "faces_among_items": sum(lab[r["i"]] for r in rows)}
    for key in keys:
        table = []
        for t in (0.4, 0.5, 0.6, 0.7, 0.8):
            kept = [r for r in rows if _scores(r).get(key, -1.0) >= t]
            tp = sum(lab[r["i"]] for r in kept)
            table.append({"threshold": t, "boxes": len(kept), "faces": tp,
                          "precision": round(tp / len(kept), 3) if kept else None,
                          "photos_with_a_false_box": len({r["photo"] for r in kept if not lab[r["i"]]})})
        out[key] = table
    out["shipped_threshold"] = DEFAULT_THRESHOLD
    print(json.dumps(out, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["sheets", "report"])
    ap.add_argument("--split", choices=["train", "val", "scenes"], default="train")
    ap.add_argument("--models", default="shipped=", help="name=path,...; a path left out: models/face_detector.onnx")
    ap.add_argument("--min-px", type=float, default=0.0,
                    help="report: only boxes at least this large (engine.enhance.faces.MIN_FACE_PX)")
    ap.add_argument("--name", default=None,
                    help="name of this labelling (files runs/face_real/NAME_*, face_boxes_real_NAME.csv); default: the split")
    a = ap.parse_args()
    if a.what == "sheets":
        sheets(a.split, parse_models(a.models), a.name)
    else:
        report(a.split, a.min_px, a.name)


if __name__ == "__main__":
    main()
