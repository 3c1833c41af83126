"""Training photos: discovery, the held-out split, and in-memory crops.

The split is fixed by file name (a stable hash), never by random state, so every model
(restorer, quality, assessor, tone) holds out the same photos and no script tunes on them.
Data lives outside the repository (research licences): ``PHOTOLIFT_DATA`` or ``../shared/data``,
plus extra free-licensed wallpapers in ``PHOTOLIFT_EXTRA_DATA`` if present.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}

# SunHays80 is stored at JPEG ~q75: its "clean" pixels carry mild blocking, so it is shown
# to models only after a 2x downscale (which removes most of it).
DOWNSCALE_FIRST = {"SunHays80": 0.5}


def data_roots() -> list[Path]:
    roots = [Path(os.environ.get("PHOTOLIFT_DATA", REPO.parent / "shared" / "data"))]
    extra = os.environ.get("PHOTOLIFT_EXTRA_DATA", str(REPO.parent / "extra_data" / "photos"))
    if Path(extra).is_dir():
        roots.append(Path(extra))
    return roots


# Clean training photos live in these folders of the shared data; iqa/ (photos with authentic
# distortions and opinion scores) and faces/ (small JPEG ~q75 faces) are not clean scene photos
# and have their own loaders (models.training.iqa_data, the face models).
CLEAN_FOLDERS = ("train", "train_hr")


def photo_roots() -> list[Path]:
    """The folders ``discover`` searches: the clean ones of the shared data, then the extra photos."""
    roots = data_roots()
    out = [roots[0] / f for f in CLEAN_FOLDERS if (roots[0] / f).is_dir()]
    return out + roots[1:]


def is_validation(path: Path) -> bool:
    """About 1 photo in 6 is held out, chosen by a hash of its name."""
    h = hashlib.sha1(path.name.encode("utf-8")).digest()
    return h[0] % 6 == 0


@dataclass(frozen=True)
class Photo:
    path: Path
    group: str  # data set name
    hr: bool


def discover(split: str = "train") -> list[Photo]:
    """All photos of ``split`` ("train", "val" or "all")."""
    out: list[Photo] = []
    for root in photo_roots():
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() not in EXTS or not p.is_file():
                continue
            rel = p.relative_to(root).parts
            group = rel[-2] if len(rel) >= 2 else root.name
            hr = root.name == "train_hr" or root.name == "photos"
            val = is_validation(p)
            if split == "all" or (split == "val") == val:
                out.append(Photo(p, group, hr))
    return out


def load_rgb(photo: Photo, max_side: int | None = None) -> np.ndarray:
    """uint8 RGB, after the per-set downscale and an optional cap on the long side."""
    with Image.open(photo.path) as im:
        im = im.convert("RGB")
        scale = DOWNSCALE_FIRST.get(photo.group, 1.0)
        if max_side is not None:
            scale = min(scale, max_side / max(im.size))
        if scale < 1.0:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8).copy()


class CropSampler:
    """Random crops with scale jitter, flips and rotations from images held in memory."""

    def __init__(self, photos: list[Photo], rng: np.random.Generator, hr_max_side: int = 3000,
                 hr_weight: float = 3.0) -> None:
        self.rng = rng
        self.images: list[np.ndarray] = []
        weights: list[float] = []
        for ph in photos:
            img = load_rgb(ph, hr_max_side if ph.hr else None)
            self.images.append(img)
            weights.append(hr_weight if ph.hr else 1.0)
        w = np.array(weights, np.float64)
        self.p = w / w.sum()

    def crop(self, size: int) -> np.ndarray:
        import cv2

        img = self.images[int(self.rng.choice(len(self.images), p=self.p))]
        h, w, _ = img.shape
        scale = float(self.rng.uniform(0.5, 1.0)) if min(h, w) > 2 * size else 1.0
        src = int(round(size / scale))
        src = min(src, h, w)
        y = int(self.rng.integers(0, h - src + 1))
        x = int(self.rng.integers(0, w - src + 1))
        c = img[y : y + src, x : x + src]
        if src != size:
            c = cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
        k = int(self.rng.integers(0, 4))
        c = np.rot90(c, k)
        if self.rng.random() < 0.5:
            c = c[:, ::-1]
        return np.ascontiguousarray(c)
