"""Full-resolution restoration with the restorer ONNX model, tile by tile, in flat memory.

``Restorer(model_path=None).run(rgb, strength, progress, cancel)`` takes a float32 ``(H, W, 3)``
RGB image in 0..1 of any size (1x1 included) and returns the restored image, same shape.

How it works (contract: ``models/restorer.onnx`` takes ``image`` [1,3,H,W] with H, W multiples
of 8 and returns ``restored``, see docs/ARCHITECTURE.md):

* The image is seen through a *virtual* canvas: ``border`` pixels of reflected context on each
  side (so the network's own zero padding never touches real pixels), rounded up to a multiple
  of 8 with more reflection. The canvas is never materialised: each tile gathers its pixels
  through reflected indices, so nothing bigger than a tile is ever copied.
* The canvas is cut into ``tile`` x ``tile`` tiles (multiples of 8, starting on multiples of 8 so
  the network's down-sampling grid is the same as in a single pass) that overlap by ``overlap``
  pixels. Each tile's output is weighted by a separable feathering window: zero on the outer
  ``overlap // 4`` pixels facing a neighbour (the band the network sees through its own zero
  padding), then a raised-cosine ramp, 1 inside; image edges keep weight 1. Because the tiles
  form a grid, the weights are normalised per axis in advance and each tile's weighted output is
  simply added into the result: memory is the input, the output and a few tiles, whatever the
  photo size (measured in ``bench/bench_restore.py``).
* For a network whose receptive field is smaller than the discarded band, the tiled result
  equals a single pass over the whole canvas (tested with a 3x3 fixture graph).
* A level-aware model (version 2: a second input ``levels`` [1, 2]) is told how noisy and how
  compressed its input is (``engine.enhance.levels``): the JPEG quality once for the photo (the
  block grid is the photo's), the noise per tile, measured on the tile it sees, as in training.
  Version 1 models (one input) run blind, so recipes made with them replay unchanged.
* ``strength`` blends: ``out = rgb + strength * (restored - rgb)``; 0 returns the input unchanged
  (without running the model), 1 the network output. The result is clipped to 0..1.
* One shared onnxruntime session per model file (``engine.core.runtime``); ``workers`` tiles run at
  once (default: one per core, at most 4), the session with ``thread_budget(workers)`` intra-op
  threads (2 x 1 beat 1 x 2 by 1.3 to 1.7 times on 2 cores).
* ``progress`` gets ``Progress(done_tiles, total_tiles)`` after every tile; ``cancel`` is checked
  between tiles and raises ``JobCancelled``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.core import runtime
from engine.core.jobs import CancelToken, JobCancelled, Progress, ProgressFn

MULTIPLE = 8
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
DEFAULT_BORDER = 16
MAX_DEFAULT_WORKERS = 4
MODEL_NAME = "restorer.onnx"


def _round_up(n: int, m: int) -> int:
    return ((n + m - 1) // m) * m


def reflect_indices(idx: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions onto 0..n-1 by reflection without repeating the edge
    (like ``cv2.BORDER_REFLECT_101`` / ``np.pad(mode="reflect")``), for any pad width."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    i = np.abs(idx) % period
    return np.where(i > n - 1, period - i, i)


@dataclass(frozen=True)
class AxisPlan:
    """Tiling of one axis of the virtual canvas."""

    length: int  # image length
    pad_before: int  # canvas position of image pixel 0
    canvas: int  # canvas length (multiple of 8)
    starts: tuple[int, ...]
    size: int  # tile length on this axis
    weights: tuple[np.ndarray, ...]  # per tile, already normalised so they sum to 1 per position


def _ramp(n: int) -> np.ndarray:
    k = (np.arange(n, dtype=np.float64) + 0.5) / n
    return 0.5 - 0.5 * np.cos(np.pi * k)


def _even_tiles(canvas: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """The fewest tiles of at most ``tile`` pixels covering ``canvas`` with neighbours overlapping by
    at least ``overlap``, all the same size and evenly spread (no nearly-empty last tile: work
    wasted on overlap stays close to the minimum). Sizes and starts are multiples of 8."""
    n = max(2, math.ceil((canvas - overlap) / (tile - overlap)))
    while True:
        size = _round_up(math.ceil((canvas + (n - 1) * overlap) / n), MULTIPLE)
        if size <= tile:
            step = _round_up(math.ceil((canvas - size) / (n - 1)), MULTIPLE)
            starts = [min(i * step, canvas - size) for i in range(n)]
            gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
            if all(0 < g <= size - overlap for g in gaps):
                return starts, size
        n += 1


def plan_axis(length: int, tile: int, overlap: int, border: int) -> AxisPlan:
    if length < 1:
        raise ValueError("empty image")
    canvas = _round_up(length + 2 * border, MULTIPLE)
    pad_before = border + (canvas - length - 2 * border) // 2
    if canvas <= tile:
        starts: list[int] = [0]
        size = canvas
    else:
        starts, size = _even_tiles(canvas, tile, overlap)
    discard = overlap // 4
    ramp = _ramp(overlap - 2 * discard)
    raw: list[np.ndarray] = []
    for i in range(len(starts)):
        w = np.ones(size, np.float64)
        if i > 0:
            w[:discard] = 0.0
            w[discard : overlap - discard] = ramp
        if i < len(starts) - 1:
            w[size - discard :] = 0.0
            w[size - overlap + discard : size - discard] = np.minimum(
                w[size - overlap + discard : size - discard], ramp[::-1])
        raw.append(w)
    total = np.zeros(canvas, np.float64)
    for s, w in zip(starts, raw, strict=True):
        total[s : s + size] += w
    # only the image part must be covered; the padding may be left out
    img = total[pad_before : pad_before + length]
    if not np.all(img > 0):
        raise AssertionError("tiling leaves pixels uncovered")  # cannot happen for tile >= 2*overlap
    safe = np.where(total > 0, total, 1.0)
    weights = tuple((w / safe[s : s + size]).astype(np.float32) for s, w in zip(starts, raw, strict=True))
    return AxisPlan(length, pad_before, canvas, tuple(starts), size, weights)


class Restorer:
    """Tiled full-resolution restoration with one shared ONNX session (see module doc)."""

    def __init__(self, model_path: Path | str | None = None, tile: int = DEFAULT_TILE,
                 overlap: int = DEFAULT_OVERLAP, border: int = DEFAULT_BORDER,
                 workers: int | None = None) -> None:
        self.model_path = Path(model_path) if model_path is not None else runtime.models_dir() / MODEL_NAME
        if not self.model_path.is_file():
            raise runtime.ModelMissing(f"restorer model not found: {self.model_path}")
        if overlap % MULTIPLE or overlap < MULTIPLE:
            raise ValueError(f"overlap must be a positive multiple of {MULTIPLE}")
        if tile % MULTIPLE or tile < 2 * overlap:
            raise ValueError(f"tile must be a multiple of {MULTIPLE} and at least 2 x overlap")
        if border < 0:
            raise ValueError("border must be >= 0")
        self.tile = int(tile)
        self.overlap = int(overlap)
        self.border = int(border)
        self.workers = max(1, int(workers)) if workers else default_workers()
        self.threads = runtime.thread_budget(self.workers)

    @property
    def model_version(self) -> str:
        return runtime.model_version(self.model_path)

    def plan(self, height: int, width: int) -> tuple[AxisPlan, AxisPlan]:
        return (plan_axis(height, self.tile, self.overlap, self.border),
                plan_axis(width, self.tile, self.overlap, self.border))

    def tile_count(self, height: int, width: int) -> int:
        py, px = self.plan(height, width)
        return len(py.starts) * len(px.starts)

    def run(self, rgb: np.ndarray, strength: float = 1.0, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None, noise: float | None = None,
            jpeg_quality: int | None = None, jpeg_zone: int | None = -1) -> np.ndarray:
        """Restore ``rgb`` (float32 HxWx3 in 0..1; uint8 is accepted and scaled).

        ``noise`` (sigma, 0..1 units) and ``jpeg_quality`` override what a level-aware model is
        told (default: measured from the pixels); a blind model ignores them. ``jpeg_zone``: the
        quality from which no deblocking is asked (default ``levels.JPEG_ZONE``; ``None``: none)."""
        img = _as_rgb_float(rgb)
        if not (isinstance(strength, int | float) and math.isfinite(strength) and 0.0 <= strength <= 1.0):
            raise ValueError(f"strength must be in 0..1, got {strength!r}")
        h, w, _ = img.shape
        if strength == 0.0:
            if cancel is not None:
                cancel.raise_if_cancelled()
            if progress is not None:
                progress(Progress(1, 1, "restore: strength 0, nothing to do"))
            return img.copy()
        py, px = self.plan(h, w)
        total = len(py.starts) * len(px.starts)
        sess = runtime.get_session(self.model_path, self.threads)
        inputs = [i.name for i in sess.get_inputs()]
        in_name = inputs[0]
        out_name = sess.get_outputs()[0].name
        level_aware = "levels" in inputs
        jpeg_lv = 0.0
        if level_aware:
            from engine.enhance import levels

            zone = levels.JPEG_ZONE if jpeg_zone == -1 else jpeg_zone
            q = levels.jpeg_quality(img) if jpeg_quality is None else int(jpeg_quality)
            jpeg_lv = levels.restore_jpeg_level(q, zone)
        out = np.zeros((h, w, 3), np.float32)

        def infer(x: np.ndarray) -> np.ndarray:
            if not level_aware:
                return np.asarray(sess.run([out_name], {in_name: x})[0])
            sigma = levels.noise_level(x[0].transpose(1, 2, 0)) if noise is None else float(noise)
            lv = np.array([[sigma * levels.NOISE_SCALE, jpeg_lv]], np.float32)
            return np.asarray(sess.run([out_name], {in_name: x, "levels": lv})[0])

        jobs = [(iy, ix) for iy in range(len(py.starts)) for ix in range(len(px.starts))]
        if progress is not None:
            progress(Progress(0, total, "restore"))
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="restore") if self.workers > 1 else None
        pending: deque[tuple[int, int, Future[np.ndarray]]] = deque()
        done = 0
        try:
            it = iter(jobs)
            exhausted = False
            while True:
                while not exhausted and (pool is None and not pending or
                                         pool is not None and len(pending) < self.workers + 1):
                    nxt = next(it, None)
                    if nxt is None:
                        exhausted = True
                        break
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    iy, ix = nxt
                    x = self._gather(img, py, px, iy, ix)
                    fut: Future[np.ndarray]
                    if pool is None:
                        fut = Future()
                        fut.set_result(infer(x))
                    else:
                        fut = pool.submit(infer, x)
                    pending.append((iy, ix, fut))
                if not pending:
                    break
                iy, ix, fut = pending.popleft()
                y = fut.result()
                self._scatter(out, y, py, px, iy, ix)
                done += 1
                if progress is not None:
                    progress(Progress(done, total, "restore"))
                if cancel is not None and done < total:
                    cancel.raise_if_cancelled()
        except JobCancelled:
            for _, _, f in pending:
                f.cancel()
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if strength != 1.0:
            # out = img + strength * (out - img), in place, in row chunks (no full-size temporaries)
            step = max(1, (1 << 20) // max(1, w))
            for r in range(0, h, step):
                o = out[r : r + step]
                i = img[r : r + step]
                np.subtract(o, i, out=o)
                np.multiply(o, np.float32(strength), out=o)
                np.add(o, i, out=o)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    @staticmethod
    def _gather(img: np.ndarray, py: AxisPlan, px: AxisPlan, iy: int, ix: int) -> np.ndarray:
        h, w, _ = img.shape
        rows = reflect_indices(np.arange(py.starts[iy], py.starts[iy] + py.size) - py.pad_before, h)
        cols = reflect_indices(np.arange(px.starts[ix], px.starts[ix] + px.size) - px.pad_before, w)
        t = img[rows[:, None], cols[None, :]]  # (ty, tx, 3) copy of one tile
        x = np.ascontiguousarray(t.transpose(2, 0, 1)[None], dtype=np.float32)
        np.clip(x, 0.0, 1.0, out=x)
        return x

    @staticmethod
    def _scatter(out: np.ndarray, y: np.ndarray, py: AxisPlan, px: AxisPlan, iy: int, ix: int) -> None:
        sy, sx = py.starts[iy], px.starts[ix]
        # tile rows that fall on image rows
        a0 = max(sy, py.pad_before)
        a1 = min(sy + py.size, py.pad_before + py.length)
        b0 = max(sx, px.pad_before)
        b1 = min(sx + px.size, px.pad_before + px.length)
        if a0 >= a1 or b0 >= b1:
            return
        t = y[0, :, a0 - sy : a1 - sy, b0 - sx : b1 - sx].transpose(1, 2, 0)
        t = np.nan_to_num(np.clip(t, 0.0, 1.0), nan=0.0)
        wy = py.weights[iy][a0 - sy : a1 - sy]
        wx = px.weights[ix][b0 - sx : b1 - sx]
        out[a0 - py.pad_before : a1 - py.pad_before, b0 - px.pad_before : b1 - px.pad_before] += (
            t * (wy[:, None, None] * wx[None, :, None]))


def default_workers() -> int:
    """Tiles run at once by default: one per core up to 4 (each with ``thread_budget`` threads).

    Measured on 2 cores (bench/bench_restore.py, docs/BENCHMARKS.md): 2 workers x 1 intra-op thread
    ran 1.3 to 1.7 times faster than 1 worker x 2 threads."""
    return max(1, min(MAX_DEFAULT_WORKERS, runtime.cpu_count()))


def _as_rgb_float(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError("empty image")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0)
    return np.asarray(a, dtype=np.float32)


_shared_lock = threading.Lock()
_shared: dict[str, Restorer] = {}


def get_restorer(model_path: Path | str | None = None) -> Restorer:
    """The shared ``Restorer`` for a model file (default ``models/restorer.onnx``)."""
    path = Path(model_path) if model_path is not None else runtime.models_dir() / MODEL_NAME
    key = str(path.resolve())
    with _shared_lock:
        r = _shared.get(key)
        if r is None:
            r = Restorer(path)
            _shared[key] = r
        return r
