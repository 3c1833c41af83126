"""A catalog that protects itself: integrity checks, rolling backups, restore.

- **At open** (:func:`quick_check`): SQLite's ``PRAGMA quick_check`` (every page and index
  structure, without cross-checking index contents): 26 ms for a 10,000-photo catalog, 160 ms for
  100,000 (docs/BENCHMARKS.md). A damaged catalog is refused with :class:`CatalogDamaged`, whose
  message names the newest good backup and ``photolift catalog restore``.
- **On demand** (``photolift catalog check``): the full ``PRAGMA integrity_check`` plus
  ``PRAGMA foreign_key_check``.
- **Rolling backups** (:func:`maybe_daily_backup`, called after a successful open): when the
  newest backup is older than a day, the live catalog is copied with SQLite's online backup API
  (consistent even while other processes write; the WAL is included) into
  ``<catalog>.backups/catalog-<UTC stamp>.sqlite``: written under a temporary name, checked, then
  renamed, so a backup under a final name is always complete and good. :data:`KEEP` are kept.
- **Restore** (:func:`restore`): the damaged file (with its ``-wal``/``-shm``) is moved aside to
  ``<catalog>.damaged-<stamp>`` (never deleted), then the chosen backup is copied into place.
  Photos indexed, scores and edits made after the backup are not in it; originals and exported
  files are untouched, and indexing the folders again brings photos and scores back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from db.catalog import CatalogDamaged, CatalogError

log = logging.getLogger(__name__)

KEEP = 5
MAX_AGE = timedelta(days=1)
_NAME_RE = re.compile(r"^catalog-(\d{8}T\d{6})(?:-(\w+))?\.sqlite$")


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    taken_at: datetime  # UTC
    reason: str
    size: int

    def describe(self) -> str:
        local = self.taken_at.astimezone()
        return f"{self.path} (taken {local:%Y-%m-%d %H:%M}, {self.size / 1e6:.1f} MB)"


def backups_dir(db_file: Path) -> Path:
    return db_file.with_name(db_file.name + ".backups")


def list_backups(db_file: Path) -> list[BackupInfo]:
    """The backups of a catalog, newest first."""
    folder = backups_dir(db_file)
    out: list[BackupInfo] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for e in entries:
        m = _NAME_RE.match(e.name)
        if not m:
            continue
        try:
            taken = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            size = e.stat().st_size
        except (ValueError, OSError):
            continue
        out.append(BackupInfo(Path(e.path), taken, m.group(2) or "daily", size))
    out.sort(key=lambda b: (b.taken_at, b.path.name), reverse=True)
    return out


def _problems(conn: sqlite3.Connection, pragma: str) -> list[str]:
    rows = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}").fetchall()]
    return [] if rows == ["ok"] else rows


def check_file(db_file: Path, full: bool = False) -> list[str]:
    """Problems found in a SQLite file (empty list: fine). ``full`` runs integrity_check and the
    foreign-key check, otherwise quick_check only. Never raises for a damaged file."""
    try:
        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=15)
    except sqlite3.Error as e:
        return [f"cannot open: {e}"]
    try:
        probs = _problems(conn, "integrity_check" if full else "quick_check")
        if full and not probs:
            fk = conn.execute("PRAGMA foreign_key_check").fetchall()
            probs += [f"row {r[1]} of {r[0]} refers to a missing row of {r[2]}" for r in fk[:20]]
        return probs
    except sqlite3.Error as e:
        return [str(e)]
    finally:
        conn.close()


def newest_good_backup(db_file: Path) -> BackupInfo | None:
    for b in list_backups(db_file):
        if not check_file(b.path):
            return b
    return None


def damage_message(where: object, detail: str) -> str:
    """What a user reads when the catalog is damaged: what happened, what to run, what is kept."""
    msg = f"the catalog {where} is damaged ({detail})."
    db_file = Path(str(where)) if "://" not in str(where) else None
    best = newest_good_backup(db_file) if db_file is not None else None
    if best is not None:
        msg += (f" The newest good backup is {best.describe()}. Run `photolift catalog restore` to put it back "
                f"(the damaged file is kept beside it; photos, scores and edits newer than the backup come "
                f"back by indexing again). Your photos are not affected.")
    else:
        msg += (" No backup of it exists. Your photos and exported files are not affected; move the damaged "
                "file aside (or use another --catalog) and index your folders again.")
    return msg


def quick_check(db_file: Path) -> None:
    """Raise :class:`CatalogDamaged` if ``PRAGMA quick_check`` finds a problem."""
    probs = check_file(db_file)
    if probs:
        raise CatalogDamaged(damage_message(db_file, "; ".join(probs[:3])))


def _stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")


def take_backup(db_file: Path, reason: str = "daily", keep: int = KEEP) -> BackupInfo:
    """Copy the live catalog into its backups folder (online backup API); prune to ``keep``."""
    folder = backups_dir(db_file)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    final = folder / f"catalog-{_stamp(now)}{'-' + reason if reason != 'daily' else ''}.sqlite"
    n = 2
    while final.exists():
        final = folder / f"catalog-{_stamp(now)}-{reason}{n}.sqlite"
        n += 1
    tmp = folder / f".{final.name}.{os.getpid()}.part"
    try:
        src = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=15)
        try:
            dst = sqlite3.connect(str(tmp))
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        probs = check_file(tmp)
        if probs:
            raise CatalogDamaged(f"the backup of {db_file} failed its check ({'; '.join(probs[:3])}); "
                                 "the catalog itself may be damaged: run `photolift catalog check`")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    for old in list_backups(db_file)[keep:]:
        with contextlib.suppress(OSError):
            old.path.unlink()
    info = next(b for b in list_backups(db_file) if b.path == final)
    log.info("catalog backed up to %s", final)
    return info


def maybe_daily_backup(db_file: Path, max_age: timedelta = MAX_AGE) -> BackupInfo | None:
    """Take a backup when the newest is older than ``max_age``; failures are logged, never raised
    (a full disk must not stop the user from opening the catalog)."""
    if not db_file.exists():
        return None
    backups = list_backups(db_file)
    if backups and datetime.now(UTC) - backups[0].taken_at < max_age:
        return None
    try:
        return take_backup(db_file)
    except (OSError, sqlite3.Error, CatalogError) as e:
        log.warning("could not back up the catalog %s: %s", db_file, e)
        return None


@dataclass(frozen=True)
class Restored:
    source: BackupInfo
    damaged_kept_as: Path | None


def restore(db_file: Path, backup: Path | None = None) -> Restored:
    """Put a backup in place of the catalog (see the module doc). ``backup``: a file, default the
    newest good one. Raises :class:`CatalogError` when there is none or it fails its check."""
    if backup is None:
        chosen = newest_good_backup(db_file)
        if chosen is None:
            raise CatalogError(f"no good backup of {db_file} was found in {backups_dir(db_file)}")
    else:
        backup = Path(backup)
        if not backup.is_file():
            raise CatalogError(f"no such backup: {backup}")
        probs = check_file(backup)
        if probs:
            raise CatalogError(f"the backup {backup} is damaged too ({'; '.join(probs[:3])}); choose another "
                               f"(`photolift catalog list`)")
        st = backup.stat()
        chosen = BackupInfo(backup, datetime.fromtimestamp(st.st_mtime, UTC), "chosen", st.st_size)
    kept: Path | None = None
    if db_file.exists():
        kept = db_file.with_name(f"{db_file.name}.damaged-{_stamp()}")
        os.replace(db_file, kept)
        for side in ("-wal", "-shm"):
            p = db_file.with_name(db_file.name + side)
            if p.exists():
                os.replace(p, kept.with_name(kept.name + side))
    tmp = db_file.with_name(f".{db_file.name}.restore.{os.getpid()}.part")
    src = sqlite3.connect(f"file:{chosen.path}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(str(tmp))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    os.replace(tmp, db_file)
    log.info("catalog %s restored from %s", db_file, chosen.path)
    return Restored(chosen, kept)
