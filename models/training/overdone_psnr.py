"""Median PSNR against the clean view of each edit that overdoes tone or colour, mild and strong.

    python -m models.training.overdone_psnr models/training/quality5_overdone_psnr.json   # 15 s

Q version 5b grades the margin of "the clean view beats this edit" by the edit's size in dB, as
version 5 does for the degradations (``train_quality5.grade_overdone``). The version-5 cache of
2026-12-07 was built before overdone edits stored their PSNR, so this table (80 TRAIN views, seed
123; the VAL photos are not used) stands in for each pair's own value; a cache built since stores it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from models.training import quality_pairs as qp
from models.training.data import discover, load_rgb

KINDS = ("highlight_clip", "crush_shadows", "oversaturate", "overdone_local_tone", "colour_shift",
         "overdone_contrast", "overdone_dehaze", "oversharpen")


def main(argv: list[str] | None = None) -> None:
    out_path = Path((argv if argv is not None else sys.argv[1:])[0])
    photos = discover("train")
    rng = np.random.default_rng(123)
    res: dict[str, list[float]] = {}
    for i in rng.choice(len(photos), 80, replace=False):
        ph = photos[int(i)]
        u = qp.random_view(load_rgb(ph, 3000 if ph.hr else None), rng, ph.hr)
        for k in KINDS:
            for mild in (0, 1):
                res.setdefault(f"{k}|{mild}", []).append(qp._psnr(qp.FAILURES[k](u, rng, mild=bool(mild)), u))
    out = {k: round(float(np.median(v)), 3) for k, v in res.items()}
    out_path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
