"""Rendering recipes: a fast screen-size preview and the full-resolution render for export.

* **Preview** decodes the original at reduced scale (JPEG DCT scaling through
  ``engine.ingest.imageio.load_image(max_side=...)``), resizes to the screen size and runs the stages
  on that small copy. It is what the GUI's before/after shows; it is not used for export.
  Once a full render of the recipe exists (``Editor.enhance`` makes one to measure the gain,
  export makes one), the preview is its area-downscale instead: cheaper than running the stages
  again (a cache read and a resize) and closer to what export writes, since the restorer then
  saw native-resolution noise and blur.
* **Full** decodes at full resolution and replays the recipe there (the restorer is tiled, the
  tone operators are pointwise plus upsampled smooth maps), returning float32 pixels, the ICC
  profile and the EXIF block of the original.

Both apply the EXIF orientation (``load_image`` does), so the rendered pixels are upright.

Renders are cached on disk under the per-user cache folder (``PHOTOLIFT_CACHE`` overrides),
keyed by ``(content fingerprint, recipe hash, size)``: a changed file, a changed parameter or a
different size is a different entry. Previews are stored as 8-bit arrays; full renders as
16-bit so that 16-bit export loses nothing. Entries are written atomically (temporary file in
the same folder, fsync, rename), so a crash never leaves a torn entry under a real name; an
unreadable entry is deleted and recomputed. The cache is bounded (least recently used goes
first).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import cv2
import numpy as np

from engine.core.diskcache import touch
from engine.core.jobs import CancelToken, ProgressFn
from engine.enhance.pipeline import Pipeline, get_pipeline
from engine.enhance.recipes import Recipe, recipe_hash

if TYPE_CHECKING:
    from engine.ingest.imageio import LoadedImage

PREVIEW_SIDE = 1600
DEFAULT_CACHE_BYTES = 3 * 1024**3  # engine.core.diskcache: 0.75 of the default 4 GB limit


def cache_root() -> Path:
    """``PHOTOLIFT_CACHE`` or the per-user cache folder (``engine.core.paths.cache_dir``)."""
    from engine.core.paths import cache_dir

    return cache_dir()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file beside it, fsync, rename."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync, rename over ``path``; the temp
    file is removed on any failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RenderCache:
    """Disk cache of rendered arrays (``.npy``), bounded in bytes, atomic writes."""

    def __init__(self, root: Path | None = None, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = (root or cache_root()) / "renders"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._since_evict = 0
        self._bytes_since_evict = 0

    @staticmethod
    def key(fingerprint: str, rhash: str, size: str) -> str:
        return hashlib.sha256(f"{fingerprint}|{rhash}|{size}".encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self._path(key)
        try:
            arr = np.load(p, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            with contextlib.suppress(OSError):
                p.unlink()
            return None
        touch(p)  # LRU by mtime
        return arr

    def put(self, key: str, arr: np.ndarray) -> None:
        p = self._path(key)
        try:
            atomic_write(p, lambda f: np.save(f, np.ascontiguousarray(arr), allow_pickle=False))
        except OSError:
            return  # a cache that cannot be written is a slower cache, not an error
        with self._lock:
            self._since_evict += 1
            self._bytes_since_evict += arr.nbytes
            due = self._since_evict >= 32 or self._bytes_since_evict >= self.max_bytes // 16
            if due:
                self._since_evict = self._bytes_since_evict = 0
        if due:  # scanning the folder on every put would cost O(entries) each time
            self._evict()

    def _evict(self) -> None:
        from engine.core.diskcache import trim

        with self._lock:
            trim(self.root, self.max_bytes)


@dataclass(frozen=True)
class Rendered:
    """A full-resolution render: upright pixels plus the original's metadata."""

    rgb: np.ndarray  # float32 HxWx3 0..1, EXIF orientation applied
    icc: bytes | None
    exif: bytes | None
    orientation: int  # the original's EXIF orientation (1 = pixels were not rotated)
    from_cache: bool


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def fit_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (area filter) so the long side is at most ``max_side``."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def resize_to(rgb: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Area-resize ``rgb`` to ``shape`` (h, w, ...) unless it already has it."""
    if rgb.shape[:2] == tuple(shape[:2]):
        return rgb
    return cv2.resize(rgb, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_AREA)


class Renderer:
    """Renders recipes for previews and exports, through the disk cache."""

    def __init__(self, pipeline: Pipeline | None = None, cache: RenderCache | None = None) -> None:
        self.pipeline = pipeline or get_pipeline()
        self.cache = cache if cache is not None else RenderCache()

    # -- decoding -----------------------------------------------------------------------------
    @staticmethod
    def load_view(path: Path, max_side: int | None) -> np.ndarray:
        """The original, upright, uint8, long side at most ``max_side`` (None: full size)."""
        from engine.ingest.imageio import load_image

        img = load_image(path, max_side=max_side)
        rgb = np.ascontiguousarray(img.rgb)
        return fit_side(rgb, max_side) if max_side else rgb

    # -- preview ------------------------------------------------------------------------------
    def preview(self, path: Path, fingerprint: str, recipe: Recipe | None,
                max_side: int = PREVIEW_SIDE) -> tuple[np.ndarray, np.ndarray]:
        """``(before, after)`` uint8 arrays of the same screen size; ``after`` is ``before``
        when ``recipe`` is None or empty. The decoded original is cached too (keyed by the
        content fingerprint), so a cached preview costs two small reads, not a decode."""
        before = self.cached_view(path, fingerprint, max_side)
        if recipe is None or recipe.is_identity:
            return before, before
        rhash = recipe_hash(recipe)
        key = self.cache.key(fingerprint, rhash, f"preview{max_side}")
        after = self.cache.get(key)
        if after is None or after.shape != before.shape or after.dtype != np.uint8:
            full = self.cache.get(self.cache.key(fingerprint, rhash, "full"))
            if full is not None and full.dtype == np.uint16 and full.ndim == 3:
                # the full render exists (made by enhance or export): its downscale is both
                # faster and closer to what export writes than running the stages again
                after = resize_to(to_uint8(full.astype(np.float32) / 65535.0), before.shape)
            else:
                after = to_uint8(self.pipeline.apply(recipe, before.astype(np.float32) / 255.0))
            self.cache.put(key, after)
        return before, after

    def store_preview(self, path: Path, fingerprint: str, recipe: Recipe, full_rgb: np.ndarray,
                      max_side: int = PREVIEW_SIDE) -> None:
        """Cache the screen-size preview of a full render just made (so the first preview
        after an enhance costs a decode and a cache read, not a second run of the stages)."""
        if recipe.is_identity:
            return
        shape = self.cached_view(path, fingerprint, max_side).shape
        key = self.cache.key(fingerprint, recipe_hash(recipe), f"preview{max_side}")
        small = resize_to(full_rgb, shape)
        self.cache.put(key, small if small.dtype == np.uint8 else to_uint8(small))

    def cached_view(self, path: Path, fingerprint: str, max_side: int) -> np.ndarray:
        """``load_view`` through the cache (only when a fingerprint is known)."""
        if not fingerprint:
            return self.load_view(path, max_side)
        key = self.cache.key(fingerprint, "original", f"preview{max_side}")
        view = self.cache.get(key)
        if view is None or view.dtype != np.uint8 or view.ndim != 3:
            view = self.load_view(path, max_side)
            self.cache.put(key, view)
        return view

    def render_view(self, rgb_u8: np.ndarray, recipe: Recipe) -> np.ndarray:
        """Apply ``recipe`` to an already-decoded uint8 view (no cache)."""
        return to_uint8(self.pipeline.apply(recipe, rgb_u8.astype(np.float32) / 255.0))

    # -- full resolution ----------------------------------------------------------------------
    def full(self, path: Path, fingerprint: str, recipe: Recipe | None,
             progress: ProgressFn | None = None, cancel: CancelToken | None = None,
             store: bool = True, original: LoadedImage | None = None) -> Rendered:
        """Render ``recipe`` on the full-resolution original (the original if ``recipe`` is
        None). ``store=False`` does not keep the result in the cache (one-shot renders).
        ``original``: the file already decoded at full resolution (``load_image(path)``) by a
        caller that needs its pixels too (the regression guard), so it is not decoded twice.
        Raises ``engine.ingest.imageio.ImageError`` for an unreadable original and
        ``engine.enhance.recipes.ModelGone`` when a model the recipe needs is gone."""
        from engine.ingest.imageio import load_image

        if recipe is not None and not recipe.is_identity:
            self.pipeline.check(recipe)  # fail before the (slow) decode when a model is gone
        img = original if original is not None else load_image(path)
        orientation = int(img.orientation or 1)
        if recipe is None or recipe.is_identity:
            return Rendered(np.asarray(img.rgb, np.float32) / 255.0, img.icc, img.exif, orientation, False)
        key = self.cache.key(fingerprint, recipe_hash(recipe), "full")
        cached = self.cache.get(key)
        if cached is not None and cached.dtype == np.uint16 and cached.shape == img.rgb.shape:
            return Rendered(cached.astype(np.float32) / 65535.0, img.icc, img.exif, orientation, True)
        icc, exif = img.icc, img.exif
        src = np.asarray(img.rgb, np.float32) / 255.0
        del img  # keep one full-size copy alive, not two (unless the caller keeps ``original``)
        out = self.pipeline.apply(recipe, src, progress=progress, cancel=cancel)
        del src
        if store:
            self.cache.put(key, to_uint16(out))
        return Rendered(out, icc, exif, orientation, False)
