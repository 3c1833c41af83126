"""Faces for the face models: the held-out split, a cached array, and the face degradation.

The faces are ``faces/UTKFace_6000`` of the shared data (200x200 aligned crops, JPEG about q75).
Clean targets are the crops reduced to ``SIZE`` (128) with area averaging, which removes most of
the JPEG blocking. The split is fixed by name: a face is held out when the sha1 of its file name
modulo 10 is 0 (about 600 faces, ``split="val"``); no face model trains on them.

The face degradation is the restorer's degradation model (``engine.assess.degrade``) plus
downscaling: blur, downscale by ``scale``, noise, JPEG, then bicubic back to ``SIZE``: the
restorer always sees (and the engine always feeds it) a ``SIZE`` x ``SIZE`` crop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from engine.assess import degrade as dg
from models.training.data import REPO, data_roots

SIZE = 128
CACHE = REPO / "data_cache"


def faces_dir() -> Path:
    return data_roots()[0] / "faces" / "UTKFace_6000"


def is_face_validation(name: str) -> bool:
    """The held-out faces: sha1(file name) % 10 == 0."""
    return int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:4], "big") % 10 == 0


def face_names(split: str) -> list[str]:
    names = sorted(p.name for p in faces_dir().glob("*.jpg"))
    if split == "all":
        return names
    return [n for n in names if is_face_validation(n) == (split == "val")]


def load_faces(split: str, size: int = SIZE) -> np.ndarray:
    """uint8 (N, size, size, 3) of the split, cached under ``data_cache/`` (git-ignored)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"faces_{split}_{size}.npy"
    if path.is_file():
        return np.load(path)
    out = []
    for n in face_names(split):
        with Image.open(faces_dir() / n) as im:
            a = np.asarray(im.convert("RGB"))
        out.append(cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA))
    arr = np.stack(out)
    np.save(path, arr)
    return arr


def load_faces_raw(split: str) -> tuple[list[str], list[np.ndarray]]:
    """The 200x200 originals (for composites)."""
    names = face_names(split)
    imgs = []
    for n in names:
        with Image.open(faces_dir() / n) as im:
            imgs.append(np.asarray(im.convert("RGB")).copy())
    return names, imgs


@dataclass(frozen=True)
class FaceDegrade:
    """One face degradation: blur sigma (at SIZE), downscale factor, noise sigma (/255), JPEG quality."""

    blur: float
    scale: float
    noise: float
    jpeg_q: int


# the evaluation levels (fixed parameters, the same for every face)
LEVELS: dict[str, FaceDegrade] = {
    "light": FaceDegrade(blur=0.8, scale=2.0, noise=5.0, jpeg_q=70),
    "medium": FaceDegrade(blur=1.2, scale=3.0, noise=10.0, jpeg_q=50),
    "strong": FaceDegrade(blur=1.6, scale=4.0, noise=15.0, jpeg_q=40),
}


def apply(u: np.ndarray, d: FaceDegrade, rng: np.random.Generator) -> np.ndarray:
    """Degrade a float32 SIZE x SIZE face with ``d``; returns float32 SIZE x SIZE (bicubic up)."""
    img = dg.to_float(u)
    h, w = img.shape[:2]
    if d.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), d.blur)
    sw, sh = max(4, round(w / d.scale)), max(4, round(h / d.scale))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    if d.noise > 0:
        small = small + np.asarray(rng.normal(0, d.noise / 255.0, small.shape), np.float32)
    small = np.clip(small, 0, 1)
    if d.jpeg_q < 100:
        small = dg.jpeg(small, d.jpeg_q)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(up, 0, 1).astype(np.float32)


def random_degrade(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The training degradation: random blur kind (degradation model), scale 1..5, noise, JPEG."""
    img = dg.to_float(u)
    h, w = img.shape[:2]
    if rng.random() < 0.7:
        if rng.random() < 0.7:
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 2.4)))
        else:
            img, _ = dg.apply_blur(img, rng, strength=float(rng.uniform(0.05, 0.5)))
    scale = float(rng.choice([1.0, rng.uniform(1.0, 5.0), 4.0], p=[0.1, 0.6, 0.3]))
    sw, sh = max(4, round(w / scale)), max(4, round(h / scale))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA) if scale > 1 else img
    if rng.random() < 0.8:
        if rng.random() < 0.7:
            small = small + rng.normal(0, float(rng.uniform(1, 25)) / 255.0, small.shape).astype(np.float32)
        else:
            small, _ = dg.apply_noise(small, rng, strength=float(rng.uniform(0.05, 0.5)))
    small = np.clip(small, 0, 1)
    if rng.random() < 0.8:
        small = dg.jpeg(small, int(rng.integers(20, 90)), subsampling=bool(rng.random() < 0.7))
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) if scale > 1 else small
    return np.clip(up, 0, 1).astype(np.float32)


def augment(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip, small shift/scale/rotation and a mild colour jitter of a clean uint8 face."""
    h, w = u.shape[:2]
    if rng.random() < 0.5:
        u = u[:, ::-1]
    if rng.random() < 0.7:
        ang = float(rng.uniform(-8, 8))
        sc = float(rng.uniform(0.92, 1.1))
        m = cv2.getRotationMatrix2D((w / 2 + rng.uniform(-4, 4), h / 2 + rng.uniform(-4, 4)), ang, sc)
        u = cv2.warpAffine(np.ascontiguousarray(u), m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    f = u.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        f = f * rng.uniform(0.85, 1.15, (1, 1, 3)).astype(np.float32) + np.float32(rng.uniform(-0.05, 0.05))
    return np.clip(f, 0, 1).astype(np.float32)


def bicubic_check() -> None:  # pragma: no cover - a manual look
    v = load_faces("val")
    rng = np.random.default_rng(0)
    from engine.assess.metrics import psnr

    for name, d in LEVELS.items():
        ps = [psnr(apply(f, d, rng), dg.to_float(f)) for f in v[:100]]
        print(name, float(np.mean(ps)))


if __name__ == "__main__":
    print(len(face_names("train")), len(face_names("val")))
    load_faces("train")
    load_faces("val")
    bicubic_check()
