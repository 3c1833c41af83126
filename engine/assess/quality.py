"""The quality model Q (``models/quality.onnx``): perceived quality 1..10 of a whole image.

Q is the measure the method is defined by: a photo's gain is ``Q(enhanced) - Q(original)`` (the
assessor's labels, models/assessor.md). The assessor predicts that gain cheaply for every photo;
its quality head only mimics Q from four crops and a 128 px view and can miss what Q sees in the
whole frame. The regression guard therefore measures a result with Q itself when the model file
is installed (``engine.enhance.guard.measure``), on the original and the result at the same reduced size
(long side at most ``MAX_SIDE``), which Q then looks at with a long side of ``VIEW_SIDE``
(768 px, the scale it was fitted at). Q version 4 (models/quality.md) was fitted to human opinion
scores of real photos and to pairs whose order is known, including every way our own enhancer
goes wrong (smoothing away texture, halos, banding, clipping, over-saturation, overdone local
tone mapping, colour shifts) and textured crops against their mildly smoothed and noisy
versions, our restorer's measurably successful restorations above their input and invisible edits
as ties: fixed natural-scene, colour, sharpness, noise and tone statistics and a small learned
ensemble head (bench/bench_guard.py for its cost). The session
runs without onnxruntime's memory arena, so the memory its activations take is returned after
each call instead of staying resident.

Input of the network: float32 ``[N, 3, H, W]`` RGB 0..1, H and W >= 64; output ``quality`` [N].
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from engine.assess.views import _pad_to as pad_to

MODEL_NAME = "quality"
MIN_SIDE = 64
MAX_SIDE = 2048  # long side the guard reduces a render and its original to (cheap integer reduction)
# Long side Q itself looks at: the scale its evidence was at (views of 320-768 px, CLIVE's 500 px).
# Fed 2048 px, version 2 read a shallow-focus photo's soft background as blur and scored a
# bilateral-smoothed copy of it above the original (models/quality.md); every larger image is
# therefore area-resized to this long side first, so all photos are judged at one viewing scale.
VIEW_SIDE = 768


def default_model_path() -> Path:
    from engine.core.runtime import models_dir

    return models_dir() / f"{MODEL_NAME}.onnx"


def measure_reduce(width: int, height: int) -> int:
    """The integer area reduction that brings the long side to at most ``MAX_SIDE``."""
    return max(1, math.ceil(max(int(width), int(height)) / MAX_SIDE))


def to_view(rgb: np.ndarray, side: int = VIEW_SIDE) -> np.ndarray:
    """``rgb`` area-resized so that its long side is at most ``side`` (unchanged if it already is)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return rgb
    import cv2

    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA))


class QualityModel:
    """Q over one shared ONNX session (``engine.core.runtime.get_session``). Thread-safe."""

    def __init__(self, path: Path) -> None:
        from engine.core.runtime import model_version

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no quality model at {self.path}")
        self.version = model_version(self.path)

    def __call__(self, rgb_u8: np.ndarray) -> float:
        """Q of an RGB uint8 image of any size: seen at ``VIEW_SIDE`` at most, reflect-padded up to
        ``MIN_SIDE``."""
        from engine.core.runtime import get_session

        a = np.asarray(rgb_u8)
        if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 image, got {a.shape} {a.dtype}")
        a = to_view(a[:, :, :3])
        a = pad_to(a, MIN_SIDE)  # small sides only, by reflection (the assessor's crops too)
        x = np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1.0 / 255.0)
        sess = get_session(self.path, mem_arena=False)
        out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        return float(np.asarray(out).reshape(-1)[0])


_lock = threading.Lock()
_models: dict[str, QualityModel] = {}


def get_quality_model(path: Path | None = None) -> QualityModel | None:
    """The shared Q for ``path`` (default: the installed models folder), None when not installed."""
    p = Path(path) if path is not None else default_model_path()
    if not p.is_file():
        return None
    from engine.core.runtime import model_version

    key = f"{p.resolve()}|{model_version(p)}"
    with _lock:
        m = _models.get(key)
        if m is None:
            m = QualityModel(p)
            _models.clear()
            _models[key] = m
        return m


_margins: dict[tuple[str, int, int, int], float] = {}


def guard_margin(path: Path | None = None) -> float:
    """How much Q must gain before the regression guard counts an edit as an improvement: the
    ``guard_margin`` of ``<model>.json`` (``models/training/calibrate_guard.py``: the 90th percentile
    of Q's gain over edits no one can see, on TRAIN views), applied only to the model file whose
    sha256 that file names. 0.0 (any gain counts) without a calibration, or for another model file,
    with a warning, since its figure would be wrong."""
    import hashlib
    import json
    import logging

    p = Path(path) if path is not None else default_model_path()
    side = p.with_suffix(".json")
    try:  # the calibration and the model file it names: a replaced model must be checked again
        ms = p.stat()
        key = (str(side.resolve()), side.stat().st_mtime_ns, ms.st_mtime_ns, ms.st_size)
    except OSError:
        return 0.0
    with _lock:
        hit = _margins.get(key)
    if hit is not None:
        return hit
    m = 0.0
    try:
        raw = json.loads(side.read_text(encoding="utf-8"))
        if raw.get("model_sha256") == hashlib.sha256(p.read_bytes()).hexdigest():
            m = max(0.0, float(raw.get("guard_margin", 0.0)))
        else:
            logging.getLogger(__name__).warning("%s was calibrated for another quality model; the guard "
                                                "counts any gain", side.name)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        logging.getLogger(__name__).warning("unreadable guard calibration %s (%s); the guard counts any gain", side, e)
    with _lock:
        _margins[key] = m
    return m


__all__ = ["MAX_SIDE", "VIEW_SIDE", "QualityModel", "default_model_path", "get_quality_model", "guard_margin",
           "measure_reduce"]
