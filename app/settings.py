"""Every user setting, declared once with its type, default and description, on top of QSettings.

Picard's ``options.py`` + ``config_upgrade.py`` pattern: one table of ``Setting`` objects is the
only place a key, a type or a default is written; the stored settings carry a version, and
``upgrade()`` moves old stores forward one step at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

log = logging.getLogger(__name__)

SETTINGS_VERSION = 3
_VERSION_KEY = "meta/settings_version"


@dataclass(frozen=True)
class Setting:
    key: str
    type: type
    default: Any
    description: str


_ALL: dict[str, Setting] = {}


def _declare(key: str, type_: type, default: Any, description: str) -> Setting:
    if key in _ALL:
        raise ValueError(f"setting {key!r} declared twice")
    s = Setting(key, type_, default, description)
    _ALL[key] = s
    return s


# -- library / view
RECENT_FOLDERS = _declare("library/recent_folders", list, [], "Recently opened library folders, newest first.")
LAST_FOLDER = _declare("library/last_folder", str, "", "The folder shown when photolift starts without one.")
SORT = _declare("library/sort", str, "improvability", "Grid order: improvability, quality, date or name.")
THUMB_SIZE = _declare("library/thumb_size", int, 168, "Edge of a grid cell's thumbnail in logical pixels.")
MAX_RECENT = 10
# -- scoring / jobs
OWN_THRESHOLD = _declare("scoring/own_threshold", bool, False,
                         "Use THRESHOLD instead of the model's own threshold for 'recommended'.")
THRESHOLD = _declare("scoring/threshold", float, 1.0,
                     "Improvability at or above which a photo counts as recommended (when OWN_THRESHOLD).")
THREADS = _declare("jobs/threads", int, 0, "Worker threads for scoring and enhancement (0 = one per core).")
CLUSTER = _declare("jobs/cluster", str, "",
                   "Ray cluster for scoring, batch enhance and export: 'auto', ray://HOST:PORT or HOST:PORT "
                   "(empty = this computer's thread pool; needs pip install 'photolift[ray]').")
CATALOG = _declare("catalog/location", str, "",
                   "Catalog file or SQLAlchemy URL (empty = the per-user catalog). Takes effect on restart.")
# -- enhancement
STRENGTH = _declare("enhance/strength", float, 1.0, "Strength of the one-click enhancement, 0..1.")
FACES = _declare("enhance/faces", bool, False, "Restore faces (the opt-in faces stage) in one-click enhance.")
FACE_W = _declare("enhance/face_w", float, 0.0,
                  "The faces stage's balance: 0 faithful (the face's own features) .. 1 generated (learned detail).")
# -- export defaults
EXPORT_DIR = _declare("export/folder", str, "", "Default export folder.")
EXPORT_FORMAT = _declare("export/format", str, "jpeg", "Default export format: jpeg, png or tiff.")
EXPORT_QUALITY = _declare("export/quality", int, 92, "JPEG quality of exports, 1..100.")
EXPORT_TEMPLATE = _declare("export/template", str, "{name}_enhanced",
                           "Export file name template; fields {name}, {id}, {gain}, {date}, {camera}.")
# -- window state (opaque Qt blobs)
WINDOW_GEOMETRY = _declare("window/geometry", QByteArray, QByteArray(), "Main window geometry.")
WINDOW_STATE = _declare("window/state", QByteArray, QByteArray(), "Main window toolbars and docks.")
SPLITTER_STATE = _declare("window/splitter", QByteArray, QByteArray(), "Grid / details splitter sizes.")
COMPARE_MODE = _declare("view/compare_mode", str, "split", "Photo view comparison: single, split or side.")


def all_settings() -> list[Setting]:
    return list(_ALL.values())


def _upgrade_1_to_2(qs: QSettings) -> None:
    # Version 1 kept the recent folders under "recent" as one ";"-joined string.
    old = qs.value("recent")
    if isinstance(old, str) and old:
        qs.setValue(RECENT_FOLDERS.key, [p for p in old.split(";") if p])
    qs.remove("recent")


def _upgrade_2_to_3(qs: QSettings) -> None:
    # Version 2 said "use the model's threshold" with a negative threshold, which cannot tell
    # that apart from a real negative gain threshold; version 3 has a separate switch.
    raw = qs.value(THRESHOLD.key)
    if raw is None:
        return
    try:
        thr = float(raw)
    except (TypeError, ValueError):
        qs.remove(THRESHOLD.key)
        return
    qs.setValue(OWN_THRESHOLD.key, thr >= 0)
    if thr < 0:
        qs.remove(THRESHOLD.key)


_UPGRADES: dict[int, Callable[[QSettings], None]] = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3}


class Settings:
    """Typed access to the declared settings. ``qsettings`` defaults to the application's own store."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self._qs = qsettings if qsettings is not None else QSettings()
        self.upgrade()

    @property
    def qsettings(self) -> QSettings:
        return self._qs

    def upgrade(self) -> None:
        if not self._qs.allKeys():
            self._qs.setValue(_VERSION_KEY, SETTINGS_VERSION)
            return
        version = _to_int(self._qs.value(_VERSION_KEY), 1)
        if version > SETTINGS_VERSION:
            log.warning("settings were written by a newer photolift (v%s); unknown keys are ignored", version)
            return
        while version < SETTINGS_VERSION:
            step = _UPGRADES.get(version)
            if step is not None:
                log.info("upgrading settings from v%d to v%d", version, version + 1)
                step(self._qs)
            version += 1
            self._qs.setValue(_VERSION_KEY, version)

    def get(self, setting: Setting) -> Any:
        raw = self._qs.value(setting.key)
        if raw is None:
            return _copy(setting.default)
        try:
            return _convert(raw, setting.type)
        except (TypeError, ValueError):
            log.warning("setting %s has a bad value %r; using the default", setting.key, raw)
            return _copy(setting.default)

    def set(self, setting: Setting, value: Any) -> None:
        if setting.key not in _ALL:
            raise KeyError(setting.key)
        self._qs.setValue(setting.key, _convert(value, setting.type))

    def reset(self, setting: Setting) -> None:
        self._qs.remove(setting.key)

    def add_recent_folder(self, folder: str) -> list[str]:
        recent = [f for f in self.get(RECENT_FOLDERS) if f != folder]
        recent.insert(0, folder)
        del recent[MAX_RECENT:]
        self.set(RECENT_FOLDERS, recent)
        self.set(LAST_FOLDER, folder)
        return recent

    def sync(self) -> None:
        self._qs.sync()


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else v


def _to_int(v: Any, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _convert(raw: Any, type_: type) -> Any:
    # QSettings' INI/native backends hand back strings for numbers and a bare string for a
    # one-element list, so convert on every read rather than trust the stored type.
    if type_ is bool:
        if isinstance(raw, str):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return bool(raw)
    if type_ is int:
        return int(float(raw))
    if type_ is float:
        return float(raw)
    if type_ is str:
        return str(raw)
    if type_ is list:
        if raw is None or raw == "":
            return []
        if isinstance(raw, str):
            return [raw]
        return [str(x) for x in raw]
    if type_ is QByteArray:
        return raw if isinstance(raw, QByteArray) else QByteArray(raw)
    return type_(raw)
