"""Real photos with human opinion scores: LIVE In the Wild (CLIVE), 700 of its photos.

``../shared/data/iqa/CLIVE_train700`` (``PHOTOLIFT_DATA``): ``mos.csv`` lists ``image``,
``original_name``, ``mos`` (0-100), ``mos_std``. The photos are research data: never copied into
the repository; their README.txt copyright notice goes with any copy, and LIVE is acknowledged
in models/quality.md.

The validation part is fixed by name (the same stable hash as ``data.is_validation``, about one
photo in six): no script fits or tunes anything on it; models/quality.md reports on it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.training.data import data_roots, is_validation

CLIVE = "iqa/CLIVE_train700"


def mos_to_quality(mos: float | np.ndarray) -> np.ndarray:
    """Opinion score 0..100 onto Q's scale 1..10 (linear)."""
    return 1.0 + 9.0 * np.asarray(mos, np.float64) / 100.0


@dataclass(frozen=True)
class Rated:
    path: Path
    mos: float
    mos_std: float
    val: bool


def clive_root() -> Path:
    return data_roots()[0] / CLIVE


def load_clive(split: str = "all") -> list[Rated]:
    """The rated photos of ``split`` ("train", "val" or "all"), in ``mos.csv`` order."""
    root = clive_root()
    out: list[Rated] = []
    with open(root / "mos.csv", newline="") as f:
        for row in csv.DictReader(f):
            p = root / row["image"]
            val = is_validation(Path(row["original_name"]))
            if split == "all" or (split == "val") == val:
                out.append(Rated(p, float(row["mos"]), float(row["mos_std"]), val))
    return out


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
