"""The ``faces`` stage: find faces, restore each with the codebook face restorer, paste it back.

Planning (:func:`detect`) runs ``models/face_detector.onnx`` on the screen view and stores the face
boxes in the recipe in the photo's own frame (0..1), so replay at any resolution needs no detector.
Applying (:func:`apply_faces`) needs the exact ``models/face_restorer.onnx`` the recipe names:

1. crop a square around each box with the margin of the aligned training faces (the box is
   forehead to chin, cheek to cheek: 0.70 of the crop wide, 0.80 high), resampled to 128x128
   (area averaging down, bicubic up; outside the photo by reflection);
2. restore it with fidelity weight ``w`` = the stage's strength (0 faithful .. 1 generated); the
   noise the restorer injects at ``w > 0`` is drawn from a generator seeded by the face's box, so a
   render is reproducible;
3. take the *change* (restored - input, at 128 px), remove its mean colour inside the face (colour
   matching: the restorer must not shift skin tone), resample it to the crop's size in the photo,
   and add it under a feathered elliptical mask. Adding the change rather than pasting the 128-px
   face keeps a large face's own fine detail where the restorer has nothing to add.

On a photo without faces the stage changes nothing (no box, no pixel touched).
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.core import runtime

DETECTOR_MODEL = "face_detector"
RESTORER_MODEL = "face_restorer"
FACE_SIZE = 128
DETECT_SIDE = 1024  # long side the detector sees (the view is reduced to it; never enlarged)
DETECT_MULTIPLE = 32
DEFAULT_THRESHOLD = 0.4
# Boxes narrower and shorter than this (pixels of the image the detector sees) are dropped: on real
# photos most of the detector's small boxes are not faces (CLIVE train photos labelled by eye,
# models/face_detector.md: at 24 px the boxes fall to a third and 36 of 40 faces stay), and a face
# that small gives the restorer nothing to work from.
MIN_FACE_PX = 24.0
DEFAULT_W = 0.0  # the planned fidelity weight: faithful (identity first; see models/face_restorer.md)
STRIDE = 4
# the face box inside the aligned 200x200 training crops (models/training/face_composite.FACE_BOX)
BOX_IN_CROP = (30.0, 30.0, 170.0, 190.0)
CROP = 200.0


@dataclass(frozen=True)
class Face:
    """A detected face: box in the photo's frame (0..1) and the detector's score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(self.x0, 5), round(self.y0, 5), round(self.x1, 5), round(self.y1, 5)],
                "score": round(self.score, 4)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Face:
        b = [float(v) for v in d["box"]]
        return Face(b[0], b[1], b[2], b[3], float(d.get("score", 1.0)))


def _as_float(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    return np.asarray(a, dtype=np.float32)


# ------------------------------------------------------------------------------------ detection


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0 = np.maximum(a[0], b[:, 0])
    y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2])
    y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.asarray(inter / np.maximum(area, 1e-9))


def decode_maps(maps: np.ndarray, scale: float, width: int, height: int, threshold: float,
                max_faces: int = 64, min_px: float = MIN_FACE_PX) -> list[Face]:
    """Detector output (3, gh, gw) at ``scale`` (detector px per photo px) -> faces in 0..1; boxes
    smaller than ``min_px`` detector pixels on both sides are left out."""
    logit = maps[0].astype(np.float32)
    heat = 1.0 / (1.0 + np.exp(-logit))
    peak = heat == cv2.dilate(heat, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero(peak & (heat >= threshold))
    if len(ys) == 0:
        return []
    order = np.argsort(-heat[ys, xs])[: max_faces * 4]
    boxes, scores = [], []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        bw = math.exp(float(np.clip(maps[1, y, x], -3, 8))) * STRIDE
        bh = math.exp(float(np.clip(maps[2, y, x], -3, 8))) * STRIDE
        if max(bw, bh) < min_px:
            continue
        cx, cy = (x + 0.5) * STRIDE, (y + 0.5) * STRIDE
        boxes.append([(cx - bw / 2) / scale / width, (cy - bh / 2) / scale / height,
                      (cx + bw / 2) / scale / width, (cy + bh / 2) / scale / height])
        scores.append(float(heat[y, x]))
    if not boxes:
        return []
    b = np.array(boxes, np.float64)
    keep: list[int] = []
    for i in range(len(b)):
        if keep and (_iou(b[i], b[keep]) > 0.3).any():
            continue
        keep.append(i)
        if len(keep) >= max_faces:
            break
    out = []
    for i in keep:
        x0, y0, x1, y1 = (float(np.clip(v, 0.0, 1.0)) for v in b[i])
        if x1 - x0 > 0 and y1 - y0 > 0:
            out.append(Face(x0, y0, x1, y1, scores[i]))
    return out


class FaceDetector:
    """``models/face_detector.onnx`` over one shared session. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise runtime.ModelMissing(f"face detector model not found: {self.path}")

    @property
    def version(self) -> str:
        return runtime.model_version(self.path)

    def detect(self, rgb: np.ndarray, threshold: float = DEFAULT_THRESHOLD, side: int = DETECT_SIDE) -> list[Face]:
        """Faces in ``rgb`` (HxWx3, float 0..1 or uint8), boxes in 0..1, best first."""
        img = _as_float(rgb)
        h, w = img.shape[:2]
        scale = min(1.0, side / max(h, w))
        dw, dh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA) if scale < 1.0 else img
        ph = -(-dh // DETECT_MULTIPLE) * DETECT_MULTIPLE
        pw = -(-dw // DETECT_MULTIPLE) * DETECT_MULTIPLE
        pad = cv2.copyMakeBorder(np.ascontiguousarray(small), 0, ph - dh, 0, pw - dw, cv2.BORDER_REPLICATE)
        x = np.ascontiguousarray(np.clip(pad, 0, 1).transpose(2, 0, 1)[None], dtype=np.float32)
        sess = runtime.get_session(self.path, mem_arena=False)
        maps = np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])[0]
        return decode_maps(maps, dw / w, w, h, threshold)


# ------------------------------------------------------------------------------------ restoring


def crop_geometry(face: Face, width: int, height: int) -> tuple[float, float, float]:
    """(centre x, centre y, side) in photo pixels of the square crop that frames ``face`` the way
    the training faces are framed."""
    bx0, by0, bx1, by1 = BOX_IN_CROP
    fw = (face.x1 - face.x0) * width
    fh = (face.y1 - face.y0) * height
    side = float(round(max(fw / ((bx1 - bx0) / CROP), fh / ((by1 - by0) / CROP), 8.0)))  # whole pixels
    cx = (face.x0 + face.x1) / 2 * width - ((bx0 + bx1) / 2 / CROP - 0.5) * side
    cy = (face.y0 + face.y1) / 2 * height - ((by0 + by1) / 2 / CROP - 0.5) * side
    return cx, cy, side


def _crop_matrix(cx: float, cy: float, side: float) -> np.ndarray:
    """Affine photo -> 128-px crop."""
    s = FACE_SIZE / side
    return np.array([[s, 0.0, FACE_SIZE / 2 - s * cx], [0.0, s, FACE_SIZE / 2 - s * cy]], np.float64)


def face_mask(size: int) -> np.ndarray:
    """Feathered ellipse over the face inside a crop of ``size`` px (1 inside, 0 at the crop edge)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = (np.float32(size) / np.float32(CROP))
    cx, cy, ax, ay = 100.0 * t, 110.0 * t, 80.0 * t, 92.0 * t
    r = np.sqrt(((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2)
    return np.clip((1.0 - r) / 0.25, 0.0, 1.0).astype(np.float32)


def _seed(face: Face) -> int:
    key = f"{face.x0:.5f},{face.y0:.5f},{face.x1:.5f},{face.y1:.5f}".encode()
    return int.from_bytes(hashlib.sha1(key).digest()[:8], "little")


class FaceRestorer:
    """``models/face_restorer.onnx``: (image 1x3x128x128, w (1,), noise 1x1x128x128) -> restored."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise runtime.ModelMissing(f"face restorer model not found: {self.path}")

    @property
    def version(self) -> str:
        return runtime.model_version(self.path)

    def restore(self, crop: np.ndarray, w: float, seed: int = 0) -> np.ndarray:
        """Restore one 128x128 float32 face crop at fidelity weight ``w``."""
        return self.restore_many(crop[None], w, [seed])[0]

    def restore_many(self, crops: np.ndarray, w: float, seeds: list[int]) -> np.ndarray:
        """Restore N 128x128 crops (N, 128, 128, 3) at one ``w``; one noise seed per crop."""
        x = np.ascontiguousarray(np.clip(crops, 0, 1).transpose(0, 3, 1, 2), dtype=np.float32)
        noise = np.concatenate([np.random.default_rng(s).standard_normal((1, 1, FACE_SIZE, FACE_SIZE))
                                for s in seeds]).astype(np.float32)
        sess = runtime.get_session(self.path, mem_arena=False)
        names = [i.name for i in sess.get_inputs()]
        y = sess.run(None, {names[0]: x, names[1]: np.full((len(x),), w, np.float32), names[2]: noise})[0]
        return np.asarray(y.transpose(0, 2, 3, 1), np.float32)


def restore_face(img: np.ndarray, face: Face, restorer: FaceRestorer, w: float) -> tuple[np.ndarray, int, int]:
    """The change to add for one face: (delta patch, x0, y0) in photo pixels, already masked."""
    h, wd = img.shape[:2]
    cx, cy, side = crop_geometry(face, wd, h)
    m = _crop_matrix(cx, cy, side)
    if side > FACE_SIZE:
        # cut the square at full resolution (reflected outside the photo), then reduce by area
        # averaging: warpAffine cannot average, and a reduced face must not alias
        t = np.array([[1.0, 0.0, side / 2 - cx], [0.0, 1.0, side / 2 - cy]], np.float64)
        sq = cv2.warpAffine(img, t, (int(side), int(side)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        crop = cv2.resize(sq, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
    else:
        crop = cv2.warpAffine(img, m, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT_101)
    crop = np.clip(crop, 0, 1).astype(np.float32)
    restored = restorer.restore(crop, w, _seed(face))
    delta = restored - crop
    mask = face_mask(FACE_SIZE)
    # colour matching: no mean colour change inside the face
    delta -= (delta * mask[:, :, None]).sum(axis=(0, 1)) / max(float(mask.sum()), 1e-6)
    delta *= mask[:, :, None]
    # back into the photo: the patch covering the crop's square
    px0 = max(0, int(math.floor(cx - side / 2)))
    py0 = max(0, int(math.floor(cy - side / 2)))
    px1 = min(wd, int(math.ceil(cx + side / 2)))
    py1 = min(h, int(math.ceil(cy + side / 2)))
    if px1 <= px0 or py1 <= py0:
        return np.zeros((0, 0, 3), np.float32), 0, 0
    inv = cv2.invertAffineTransform(m)
    inv[0, 2] -= px0
    inv[1, 2] -= py0
    back = cv2.warpAffine(delta, inv, (px1 - px0, py1 - py0), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0, 0.0, 0.0))
    return back.astype(np.float32), px0, py0


def apply_faces(rgb: np.ndarray, params: dict[str, Any], strength: float, model_path: Path) -> np.ndarray:
    """Apply a ``faces`` stage: restore every face of ``params['faces']`` with ``w = strength``.

    ``rgb`` is not modified; without faces the input is returned unchanged (a copy)."""
    img = np.clip(_as_float(rgb), 0.0, 1.0)
    faces = [Face.from_dict(d) for d in params.get("faces", [])]
    if not faces:
        return img.copy()
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in 0..1, got {strength}")
    restorer = get_face_restorer(model_path)
    out = img.copy()
    for f in faces:
        patch, x0, y0 = restore_face(img, f, restorer, float(strength))
        if patch.size:
            ph, pw = patch.shape[:2]
            out[y0 : y0 + ph, x0 : x0 + pw] += patch
    np.clip(out, 0.0, 1.0, out=out)
    return out


_lock = threading.Lock()
_detectors: dict[str, FaceDetector] = {}
_restorers: dict[str, FaceRestorer] = {}


def get_face_detector(path: Path | None = None) -> FaceDetector:
    p = Path(path) if path is not None else runtime.models_dir() / f"{DETECTOR_MODEL}.onnx"
    with _lock:
        d = _detectors.get(str(p.resolve()))
        if d is None:
            d = FaceDetector(p)
            _detectors[str(p.resolve())] = d
        return d


def get_face_restorer(path: Path | None = None) -> FaceRestorer:
    p = Path(path) if path is not None else runtime.models_dir() / f"{RESTORER_MODEL}.onnx"
    with _lock:
        r = _restorers.get(str(p.resolve()))
        if r is None:
            r = FaceRestorer(p)
            _restorers[str(p.resolve())] = r
        return r


def detect(view: np.ndarray, path: Path | None = None, threshold: float = DEFAULT_THRESHOLD) -> list[Face]:
    """Faces of a photo's screen view (the planning step of the ``faces`` stage)."""
    return get_face_detector(path).detect(view, threshold)


__all__ = ["DETECTOR_MODEL", "RESTORER_MODEL", "Face", "FaceDetector", "FaceRestorer", "apply_faces",
           "crop_geometry", "decode_maps", "detect", "face_mask", "get_face_detector", "get_face_restorer"]
