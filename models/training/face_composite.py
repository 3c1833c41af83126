"""Composites for the face detector: UTKFace faces pasted into scene photos.

A face is pasted with a feathered elliptical mask at a random size, rotation, lighting and blur,
and the whole composite may then be blurred, noised and JPEG-compressed. Non-face patches cut from
other scenes are pasted the same way (same mask, same edge), so the detector cannot learn to find
the pasting instead of the face. The face box of an aligned 200x200 UTKFace crop is ``FACE_BOX``
(forehead to chin, cheek to cheek); a rotated face's box is the bounding box of that rotated box's
inscribed ellipse.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from engine.assess import degrade as dg
from models.training.data import discover, load_rgb

FACE_BOX = (30.0, 30.0, 170.0, 190.0)  # x0, y0, x1, y1 in the 200x200 aligned crop


def load_scenes(split: str, max_side: int = 900) -> list[np.ndarray]:
    return [load_rgb(p, max_side) for p in discover(split)]


def _mask(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size * 200.0
    cx, cy, ax, ay = 100.0, 108.0, 88.0, 100.0
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return np.clip((1.0 - r) / 0.12, 0, 1).astype(np.float32)


def scene_canvas(scenes: list[np.ndarray], rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    s = scenes[int(rng.integers(len(scenes)))]
    sh, sw = s.shape[:2]
    scale = max(w / sw, h / sh) * float(rng.uniform(1.0, 1.6))
    r = cv2.resize(s, (max(w, math.ceil(sw * scale)), max(h, math.ceil(sh * scale))), interpolation=cv2.INTER_AREA)
    y = int(rng.integers(0, r.shape[0] - h + 1))
    x = int(rng.integers(0, r.shape[1] - w + 1))
    c = r[y : y + h, x : x + w].astype(np.float32) / 255.0
    if rng.random() < 0.5:
        c = c[:, ::-1]
    return np.ascontiguousarray(c)


def paste(canvas: np.ndarray, patch200: np.ndarray, rng: np.random.Generator, face_w: float,
          cx: float, cy: float, angle: float) -> tuple[float, float, float, float]:
    """Paste a 200x200 patch so that its FACE_BOX is ``face_w`` wide, centred at (cx, cy), rotated.

    Returns the face box (x0, y0, x1, y1) in canvas pixels."""
    h, w = canvas.shape[:2]
    bx0, by0, bx1, by1 = FACE_BOX
    s = face_w / (bx1 - bx0)
    bcx, bcy = (bx0 + bx1) / 2, (by0 + by1) / 2
    m = cv2.getRotationMatrix2D((bcx, bcy), angle, s)
    m[0, 2] += cx - bcx
    m[1, 2] += cy - bcy
    img = cv2.warpAffine(patch200.astype(np.float32) / 255.0, m, (w, h), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    msk = cv2.warpAffine(_mask(200), m, (w, h), flags=cv2.INTER_LINEAR)
    canvas *= 1 - msk[:, :, None]
    canvas += img * msk[:, :, None]
    # rotated box: bounding box of the ellipse inscribed in the (scaled) face box
    a = (bx1 - bx0) / 2 * s
    b = (by1 - by0) / 2 * s
    t = math.radians(angle)
    hw = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
    hh = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
    return cx - hw, cy - hh, cx + hw, cy + hh


def light(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = face.astype(np.float32) / 255.0
    if rng.random() < 0.6:
        f = f ** float(rng.uniform(0.6, 1.7)) * float(rng.uniform(0.6, 1.2))
        f = f * rng.uniform(0.85, 1.15, (1, 1, 3)).astype(np.float32)
    if rng.random() < 0.3:  # side light
        g = np.linspace(float(rng.uniform(0.4, 1.0)), float(rng.uniform(1.0, 1.4)), 200, dtype=np.float32)
        f = f * (g[None, :, None] if rng.random() < 0.5 else g[None, ::-1, None])
    if rng.random() < 0.1:
        f = np.repeat(f.mean(axis=2, keepdims=True), 3, axis=2)
    if rng.random() < 0.5:
        f[:] = f[:, ::-1]
    return (np.clip(f, 0, 1) * 255).astype(np.uint8)


def composite(scenes: list[np.ndarray], faces: list[np.ndarray], rng: np.random.Generator, w: int, h: int,
              n_faces: int, min_face: float, max_face: float, decoys: int = 1,
              degrade: bool = True) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A scene crop of w x h with ``n_faces`` faces (log-uniform sizes) and ``decoys`` non-face pastes."""
    canvas = scene_canvas(scenes, rng, w, h)
    boxes: list[tuple[float, float, float, float]] = []
    for _ in range(decoys):
        src = scene_canvas(scenes, rng, 200, 200)
        fw = float(np.exp(rng.uniform(np.log(min_face), np.log(max_face))))
        paste(canvas, (src * 255).astype(np.uint8), rng, fw, float(rng.uniform(0, w)), float(rng.uniform(0, h)),
              float(rng.uniform(-30, 30)))
    for _ in range(n_faces):
        for _try in range(10):
            fw = float(np.exp(rng.uniform(np.log(min_face), np.log(max_face))))
            fw = min(fw, 0.8 * min(w, h))
            cx = float(rng.uniform(fw * 0.5, w - fw * 0.5))
            cy = float(rng.uniform(fw * 0.6, h - fw * 0.6))
            ang = float(rng.normal(0, 12)) if rng.random() < 0.9 else float(rng.uniform(-60, 60))
            # keep faces apart (overlap would make the labels ambiguous)
            if all(abs(cx - (b[0] + b[2]) / 2) > (fw + (b[2] - b[0])) * 0.55 or
                   abs(cy - (b[1] + b[3]) / 2) > (fw * 1.15 + (b[3] - b[1])) * 0.55 for b in boxes):
                break
        else:
            continue
        face = light(faces[int(rng.integers(len(faces)))], rng)
        if rng.random() < 0.3:
            face = cv2.GaussianBlur(face, (0, 0), float(rng.uniform(0.5, 3.0)))
        boxes.append(paste(canvas, face, rng, fw, cx, cy, ang))
    out = np.clip(canvas, 0, 1)
    if degrade:
        if rng.random() < 0.3:
            out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 1.8)))
        if rng.random() < 0.4:
            out = np.clip(out + rng.normal(0, float(rng.uniform(2, 20)) / 255, out.shape).astype(np.float32), 0, 1)
        if rng.random() < 0.4:
            out = dg.jpeg(out, int(rng.integers(25, 90)))
    return out.astype(np.float32), boxes
