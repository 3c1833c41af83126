"""Thumbnail disk cache, keyed by content fingerprint and size, written atomically.

A file is ``<root>/<fp[:2]>/<fp>-<size>.jpg``: a moved or renamed photo keeps its thumbnail, an
edited one gets a new key, and a crash can leave at most a stray ``.tmp-*`` file (never read),
never a half-written thumbnail under a real name (vimiv's thumbnail_manager and the freedesktop
thumbnail spec work the same way).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

THUMB_SIZE = 256  # longest side of the thumbnail made while indexing
JPEG_QUALITY = 85


def fit_size(w: int, h: int, size: int) -> tuple[int, int]:
    s = size / max(w, h)
    if s >= 1:
        return w, h
    return max(1, round(w * s)), max(1, round(h * s))


def shrink(rgb: np.ndarray, size: int) -> np.ndarray:
    """Fit an RGB uint8 array into size x size (never enlarges)."""
    h, w = rgb.shape[:2]
    tw, th = fit_size(w, h, size)
    if (tw, th) == (w, h):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((tw, th), Image.Resampling.BICUBIC, reducing_gap=2.0))


class ThumbnailCache:
    """Thumbnails on disk; with ``max_bytes``, trimmed (least recently used first, see
    :mod:`engine.core.diskcache`) every :data:`TRIM_EVERY` writes and by :meth:`trim`."""

    TRIM_EVERY = 500

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._puts = 0
        self._lock = threading.Lock()

    def trim(self) -> int:
        from engine.core.diskcache import trim

        if self.max_bytes is None:
            return 0
        return trim(self.root, self.max_bytes)

    def path_for(self, fingerprint: str, size: int = THUMB_SIZE) -> Path:
        return self.root / fingerprint[:2] / f"{fingerprint}-{size}.jpg"

    def has(self, fingerprint: str, size: int = THUMB_SIZE) -> bool:
        return self.path_for(fingerprint, size).is_file()

    def get(self, fingerprint: str, size: int = THUMB_SIZE) -> np.ndarray | None:
        """The cached thumbnail, or None if absent or unreadable (then it is simply remade)."""
        p = self.path_for(fingerprint, size)
        try:
            with Image.open(p) as im:
                out = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError):
            return None
        if self.max_bytes is not None:
            from engine.core.diskcache import touch

            touch(p)
        return out

    def put(self, fingerprint: str, rgb: np.ndarray, size: int = THUMB_SIZE) -> Path:
        """Shrink ``rgb`` to ``size`` and store it atomically (temp file + rename in the same folder)."""
        dest = self.path_for(fingerprint, size)
        dest.parent.mkdir(parents=True, exist_ok=True)
        thumb = shrink(rgb, size)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".jpg", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                Image.fromarray(thumb).save(f, "JPEG", quality=JPEG_QUALITY)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if self.max_bytes is not None:
            with self._lock:
                self._puts += 1
                due = self._puts % self.TRIM_EVERY == 0
            if due:
                self.trim()
        return dest
