"""Paths: how one is shown to people, and the per-user locations of the catalog (data dir) and
caches (thumbnails).

``PHOTOLIFT_CATALOG`` overrides the catalog location (a path or SQLAlchemy URL) and
``PHOTOLIFT_CACHE`` the cache folder. A catalog given explicitly as a SQLite file gets its cache
next to it (``<file>-cache/``), so a test or a second library never mixes thumbnails with the
user's own; the per-user default catalog uses the per-user cache dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from db.location import APP_NAME, data_dir, default_catalog_location, sqlite_file, to_url

__all__ = ["cache_dir", "cache_dir_for", "data_dir", "default_catalog_location", "display_path", "thumbnail_dir"]


def display_path(path: str | bytes | os.PathLike[str]) -> str:
    """A path as people (and JSON, and the catalog's text columns) see it: always valid UTF-8,
    bytes that are not are shown as ``\\xNN``. Open files by the exact name, never by this."""
    b = path if isinstance(path, bytes) else os.fsencode(path)
    return b.decode("utf-8", "backslashreplace")


def cache_dir() -> Path:
    env = os.environ.get("PHOTOLIFT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def cache_dir_for(catalog_url: str) -> Path:
    """The cache folder that belongs with a catalog (see module docstring)."""
    if os.environ.get("PHOTOLIFT_CACHE"):
        return cache_dir()
    f = sqlite_file(catalog_url)
    if f is None:
        return cache_dir()
    default = sqlite_file(to_url(str(data_dir() / "catalog.sqlite")))
    if default is not None and f.resolve() == default.resolve():
        return cache_dir()
    return f.with_name(f.name + "-cache")


def thumbnail_dir(catalog_url: str) -> Path:
    return cache_dir_for(catalog_url) / "thumbnails"
