"""Contact sheets of the top and the bottom of a ranking, to look at (not a metric).

    python -m models.training.contact_sheet --by q            # rank by the quality model Q
    python -m models.training.contact_sheet --by improvability  # rank by the shipped assessor
    python -m models.training.contact_sheet --folder DIR --by improvability

The default set is real photos nothing was trained on: the CLIVE validation part (authentic
distortions) and the VAL photos of the training sets (clean), mixed. Writes
``runs/review/<by>_lowest.jpg`` and ``_highest.jpg`` (for ``--by improvability``:
``_most_improvable`` and ``_least_improvable``; ``--n`` photos each, with their scores; the red
badges are the assessor's reasons) and ``runs/review/<by>.json`` (the whole ranking).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from models.training.data import REPO, discover

OUT = REPO / "runs" / "review"
THUMB = 200


def review_set() -> list[tuple[str, Path, str]]:
    from models.training.iqa_data import load_clive

    items = [(f"CLIVE/{r.path.name}", r.path, f"mos {r.mos:.0f}") for r in load_clive("val")]
    items += [(f"{p.group}/{p.path.name}", p.path, "clean") for p in discover("val")]
    return items


def _load(path: Path) -> np.ndarray:
    from engine.ingest.imageio import load_image

    return np.asarray(load_image(path).rgb)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--by", choices=["q", "improvability", "assessor_quality"], default="q")
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.folder is not None:
        exts = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
        items = [(str(p.relative_to(args.folder)), p, "") for p in sorted(args.folder.rglob("*"))
                 if p.suffix.lower() in exts]
    else:
        items = review_set()
    from engine.assess.quality import get_quality_model, measure_reduce
    from engine.assess.scoring import get_scorer

    q = get_quality_model()
    scorer = get_scorer()
    rows = []
    for name, path, note in items:
        try:
            rgb = _load(path)
        except Exception as e:  # noqa: BLE001 - a review tool reports and goes on
            print(f"skip {name}: {e}")
            continue
        h, w = rgb.shape[:2]
        f = measure_reduce(w, h)
        small = rgb if f == 1 else np.asarray(Image.fromarray(rgb).reduce(f))
        a = scorer.assess_path(str(path))  # the app's own decode and views
        rows.append({"name": name, "path": str(path), "note": note, "q": q(small) if q else float("nan"),
                     "improvability": a.improvability, "assessor_quality": a.quality,
                     "recommended": a.recommended, "reasons": list(a.reasons)})
    key = args.by
    rows.sort(key=lambda r: -r[key] if key == "improvability" else r[key])  # worst/most improvable first
    (OUT / f"{key}.json").write_text(json.dumps(rows, indent=1))
    first, last = ("most_improvable", "least_improvable") if key == "improvability" else ("lowest", "highest")
    for part, sel in ((first, rows[: args.n]), (last, rows[-args.n:])):
        cols = 6
        sheet = Image.new("RGB", (cols * THUMB, ((len(sel) + cols - 1) // cols) * (THUMB + 44)), "white")
        d = ImageDraw.Draw(sheet)
        for i, r in enumerate(sel):
            im = Image.fromarray(_load(Path(r["path"])))
            im.thumbnail((THUMB, THUMB))
            x, y = (i % cols) * THUMB, (i // cols) * (THUMB + 44)
            sheet.paste(im, (x + (THUMB - im.width) // 2, y))
            d.text((x + 2, y + THUMB + 1), r["name"][-32:], fill="black")
            d.text((x + 2, y + THUMB + 13), f"Q {r['q']:.2f} imp {r['improvability']:+.2f} {r['note']}", fill="black")
            d.text((x + 2, y + THUMB + 25), ("REC " if r["recommended"] else "") + ",".join(r["reasons"])[:34],
                   fill="darkred")
        sheet.save(OUT / f"{key}_{part}.jpg", quality=88)
    print(f"{len(rows)} photos; sheets in {OUT}")


if __name__ == "__main__":
    main()
