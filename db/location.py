"""Where the catalog lives: the per-user default, a path as a SQLAlchemy URL and back.

Light on purpose (no SQLAlchemy): :mod:`engine.core.paths` needs these without the catalog module.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "photolift"
CATALOG_FILENAME = "catalog.sqlite"


def data_dir() -> Path:
    """The per-user data directory (catalog lives here)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_catalog_location() -> str:
    """``PHOTOLIFT_CATALOG`` if set, else ``<user data dir>/catalog.sqlite``."""
    env = os.environ.get("PHOTOLIFT_CATALOG")
    if env:
        return env
    return str(data_dir() / CATALOG_FILENAME)


def to_url(url_or_path: str) -> str:
    """A file path becomes a ``sqlite:///`` URL (parent folders created); URLs pass through."""
    if "://" in url_or_path:
        return url_or_path
    p = Path(url_or_path).expanduser().absolute()
    p.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p}"


def sqlite_file(url: str) -> Path | None:
    """The database file behind a SQLite URL, or None (memory / other back ends)."""
    if not url.startswith("sqlite"):
        return None
    rest = url.split("://", 1)[1]
    if rest.startswith("/"):
        rest = rest[1:]
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


__all__ = ["APP_NAME", "CATALOG_FILENAME", "data_dir", "default_catalog_location", "sqlite_file", "to_url"]
