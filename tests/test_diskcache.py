"""Bounded caches: renders and thumbnails stay under their limit, least recently used go first,
and the limit is one preference stored in the catalog (GUI and CLI obey the same number)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from db.catalog import Catalog
from engine.core import diskcache
from engine.enhance.render import RenderCache
from engine.ingest.thumbnails import ThumbnailCache


def test_render_cache_stays_under_its_limit_and_keeps_what_was_used(tmp_path: Path) -> None:
    arr = np.zeros((100, 100, 3), np.uint16)  # 60 kB each
    limit = 20 * arr.nbytes
    cache = RenderCache(tmp_path, max_bytes=limit)
    cache.put("k0", arr)
    for i in range(1, 200):
        cache.put(f"k{i}", arr + i)
        if i % 10 == 0:
            time.sleep(0.01)
            assert cache.get("k0") is not None  # read often: never the least recently used
        used = diskcache.usage(tmp_path / "renders")
        assert used <= limit + cache.max_bytes // 16 + 32 * arr.nbytes  # trimmed every few writes
    cache._evict()
    assert diskcache.usage(tmp_path / "renders") <= limit
    assert cache.get("k0") is not None and cache.get("k199") is not None
    assert cache.get("k1") is None  # the oldest unused one went


def test_thumbnail_cache_trims_least_recently_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ThumbnailCache, "TRIM_EVERY", 10)
    rng = np.random.default_rng(0)
    t = ThumbnailCache(tmp_path / "thumbnails", max_bytes=None)
    one = t.put("ff" * 16, rng.integers(0, 255, (200, 300, 3), np.uint8)).stat().st_size
    t.max_bytes = 30 * one
    for i in range(100):
        t.put(f"{i:032x}", rng.integers(0, 255, (200, 300, 3), np.uint8))
        if i % 5 == 0:
            assert t.get("ff" * 16) is not None
    t.trim()
    assert diskcache.usage(tmp_path / "thumbnails") <= 30 * one * 1.05
    assert t.get("ff" * 16) is not None and t.get(f"{99:032x}") is not None
    assert t.get(f"{0:032x}") is None


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    d = tmp_path / "renders" / "ab"
    d.mkdir(parents=True)
    old = d / ".tmp-x.part"
    old.write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = d / ".tmp-y.part"
    fresh.write_bytes(b"y")  # a writer may still be busy with it
    diskcache.trim(tmp_path / "renders", 10**9)
    assert not old.exists() and fresh.exists()


def test_the_limit_lives_in_the_catalog_and_the_cli_sets_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = str(tmp_path / "c.sqlite")
    with Catalog.open(url) as cat:
        assert diskcache.limits(cat).total_mb == diskcache.DEFAULT_LIMIT_MB
    assert main(["--catalog", url, "catalog", "cache", "--limit", "512"]) == 0
    assert "limit 512 MB, set now" in capsys.readouterr().out
    with Catalog.open(url) as cat:
        lim = diskcache.limits(cat)
        assert lim.total_mb == 512 and lim.render_bytes + lim.thumbnail_bytes == 512 * 2**20
        from engine.library import Library

        assert Library(cat).thumbs.max_bytes == lim.thumbnail_bytes
    assert main(["--catalog", url, "catalog", "cache", "--limit", "10"]) == 2


def test_services_apply_a_new_limit_to_the_running_caches(tmp_path: Path) -> None:
    from app.services import Services

    sv = Services.open(str(tmp_path / "c.sqlite"))
    try:
        assert sv.cache_limit_mb() == diskcache.DEFAULT_LIMIT_MB
        assert sv.cache_used_bytes() == 0
        assert sv.set_cache_limit_mb(300) == 300
        assert sv.cache_limit_mb() == 300
        assert sv.library.thumbs.max_bytes == diskcache.Limits(300).thumbnail_bytes
        assert sv.set_cache_limit_mb(1) == diskcache.MIN_LIMIT_MB  # never below the floor
    finally:
        sv.close()
