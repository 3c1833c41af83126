"""Size limits of the caches that sit beside a catalog (renders and thumbnails), LRU by mtime.

One preference, stored in the catalog (``catalog_info['cache_limit_mb']``, so the GUI and every
CLI command on that catalog obey the same number), default :data:`DEFAULT_LIMIT_MB`. The render
cache (full-resolution 16-bit renders, ~72 MB for a 12 MP photo) gets :data:`RENDER_SHARE` of it,
thumbnails (~10-20 KB each) the rest. Each cache trims itself every few writes: the least
recently used files go (reads touch a file's mtime) until it is below :data:`LOW_WATER` of its
share, so trimming is rare and never on the read path. Everything in these folders can be made
again from the originals; nothing else lives there.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIMIT_KEY = "cache_limit_mb"
DEFAULT_LIMIT_MB = 4096
MIN_LIMIT_MB = 256
RENDER_SHARE = 0.75
LOW_WATER = 0.9
STALE_TEMP_S = 3600


@dataclass(frozen=True)
class Limits:
    total_mb: int

    @property
    def render_bytes(self) -> int:
        return int(self.total_mb * RENDER_SHARE * 1024 * 1024)

    @property
    def thumbnail_bytes(self) -> int:
        return int(self.total_mb * (1 - RENDER_SHARE) * 1024 * 1024)


def limits(catalog: Any) -> Limits:
    """The catalog's cache limit (the default when unset or unreadable)."""
    from sqlalchemy import select

    from db.schema import CatalogInfo

    try:
        with catalog.session() as s:
            v = s.scalars(select(CatalogInfo.value).where(CatalogInfo.key == LIMIT_KEY)).first()
        return Limits(max(MIN_LIMIT_MB, int(v))) if v is not None else Limits(DEFAULT_LIMIT_MB)
    except (ValueError, TypeError):
        return Limits(DEFAULT_LIMIT_MB)


def set_limit(catalog: Any, mb: int) -> Limits:
    """Store the cache limit (at least :data:`MIN_LIMIT_MB`) for this catalog."""
    from db.schema import CatalogInfo

    mb = max(MIN_LIMIT_MB, int(mb))

    def fn(s: Any) -> None:
        s.merge(CatalogInfo(key=LIMIT_KEY, value=str(mb)))

    catalog.write(fn)
    return Limits(mb)


def usage(root: Path) -> int:
    """Bytes under ``root`` (0 if it does not exist)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, f)).st_size
    return total


def touch(path: Path) -> None:
    """Mark a cache file as just used (LRU)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def trim(root: Path, max_bytes: int) -> int:
    """Delete least recently used files under ``root/*/`` until below ``LOW_WATER * max_bytes``
    (nothing when under ``max_bytes``); stale temporary files always go. Returns bytes freed."""
    now = time.time()
    files: list[tuple[int, int, str]] = []
    try:
        subdirs = [e.path for e in os.scandir(root) if e.is_dir()]
    except OSError:
        return 0
    for d in subdirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat()
            except OSError:
                continue
            if e.name.startswith("."):  # a temporary file (".tmp-*"): never read
                if now - st.st_mtime > STALE_TEMP_S:  # left by a killed writer
                    with contextlib.suppress(OSError):
                        os.unlink(e.path)
                continue
            files.append((st.st_mtime_ns, st.st_size, e.path))
    total = sum(s for _, s, _ in files)
    if total <= max_bytes:
        return 0
    target = int(max_bytes * LOW_WATER)
    freed = 0
    for _, size, p in sorted(files):
        with contextlib.suppress(OSError):
            os.unlink(p)
            freed += size
            total -= size
        if total <= target:
            break
    return freed
