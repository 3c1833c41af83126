"""``photolift catalog check|backup|list|restore``: look after the catalog itself.

- ``check``: the full integrity check (``PRAGMA integrity_check`` and the foreign-key check);
  exit 0 when it is fine, 1 when it is damaged (the message names the newest good backup).
- ``backup``: take a backup now (``<catalog>.backups/``; the daily ones are taken automatically).
- ``list``: the backups, newest first, each with whether it passes its check.
- ``cache [--limit MB]``: the size of the render and thumbnail caches beside the catalog and
  their limit (stored in the catalog, so the GUI and every command obey it); ``--limit`` sets it
  and trims the caches now.
- ``restore [BACKUP]``: put the newest good backup (or BACKUP) in place; the current file is
  moved aside, never deleted. Refused while another process has the catalog open for writing.

On a PostgreSQL catalog (``--catalog postgresql+psycopg://...``) ``check`` opens it (schema
at the newest revision, the server reachable) and leaves page checks to the server; ``cache``
works as on SQLite; ``backup``, ``list`` and ``restore`` are the server's job (``pg_dump`` and
``pg_restore``), and say so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.services import CatalogCare, CatalogError, Services, UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("catalog", help="check, back up or restore the catalog",
                              description="Check, back up, list backups of, or restore the catalog.")
    sp = p.add_subparsers(dest="action", required=True)
    sp.add_parser("check", help="full integrity check")
    sp.add_parser("backup", help="take a backup now")
    sp.add_parser("list", help="list the backups, newest first")
    c = sp.add_parser("cache", help="show the cache size and limit, or set the limit")
    c.add_argument("--limit", type=int, default=None, metavar="MB",
                   help="keep the render and thumbnail caches under MB megabytes (least recently used go first)")
    r = sp.add_parser("restore", help="put a backup in place of the catalog (the current file is kept aside)")
    r.add_argument("backup", nargs="?", default=None, help="backup file (default: the newest good one)")
    for action in sp.choices.values():  # ``photolift catalog check --catalog X`` too
        action.add_argument("--catalog", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _db_file(args: argparse.Namespace) -> Path | None:
    return CatalogCare.sqlite_file(getattr(args, "catalog", None))


def _in_use(db_file: Path) -> bool:
    """True when another connection holds a lock on the catalog (a running photolift)."""
    import sqlite3

    try:
        conn = sqlite3.connect(str(db_file), timeout=0.5)
    except sqlite3.Error:
        return False
    try:
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as e:
        return "locked" in str(e) or "busy" in str(e)
    except sqlite3.Error:
        return False  # damaged: cannot tell, and restoring is what the user asked for
    finally:
        conn.close()


def _cache(args: argparse.Namespace) -> int:
    services = Services.open(getattr(args, "catalog", None))
    try:
        if args.limit is not None:
            try:
                services.set_cache_limit_mb(args.limit, strict=True)
            except UsageError as e:
                print(f"photolift catalog: --limit: {e}", file=sys.stderr)
                return 2
        print(services.cache_report() + ("" if args.limit is None else ", set now") + ")")
    finally:
        services.close()
    return 0


def _server_catalog(args: argparse.Namespace) -> int:
    """``catalog`` on a database server (PostgreSQL): what each action means there."""
    where = CatalogCare.shown(getattr(args, "catalog", None))
    if args.action in ("backup", "list", "restore"):
        dump = "pg_dump --format=custom --file=photolift.dump" if args.action == "backup" else "pg_restore"
        print(f"photolift catalog: {where} is on a database server; photolift backs up and restores SQLite "
              f"catalogs only. Use the server's tools: {dump} (with the same host, user and database), "
              "or ask whoever runs the server", file=sys.stderr)
        return 2
    if args.action == "cache":
        try:
            return _cache(args)
        except CatalogError as e:
            print(f"photolift catalog: {e}", file=sys.stderr)
            return 1
    try:  # check: opening runs the schema checks; the server checks its own pages (data checksums)
        services = Services.open(getattr(args, "catalog", None))
        try:
            rev = services.schema_revision()
            n = services.count(None, {"include_missing": True})
        finally:
            services.close()
    except CatalogError as e:
        print(f"photolift catalog: {e}", file=sys.stderr)
        return 1
    print(f"{where}: ok (schema revision {rev}, {n} photos; page-level checks are the server's: "
          "data checksums, pg_amcheck)")
    return 0


def run(args: argparse.Namespace) -> int:
    db_file = _db_file(args)
    if db_file is None:
        return _server_catalog(args)
    action = args.action
    try:
        if action == "list":
            items = CatalogCare.backups(db_file)
            if not items:
                print(f"no backups of {db_file} (they go to {CatalogCare.backups_dir(db_file)})")
            for describe, probs in items:
                print(f"{describe}  {'ok' if not probs else 'DAMAGED: ' + probs[0]}")
            return 0
        if action == "restore":
            if db_file.exists() and _in_use(db_file):
                print(f"photolift catalog: {db_file} is in use by another photolift; close it first",
                      file=sys.stderr)
                return 1
            source, kept = CatalogCare.restore(db_file, Path(args.backup) if args.backup else None)
            print(f"restored {db_file} from {source}")
            if kept is not None:
                print(f"the previous file is kept as {kept}")
            print("photos, scores and edits newer than the backup come back by indexing your folders again")
            return 0
        if not db_file.exists():
            print(f"photolift catalog: there is no catalog at {db_file}", file=sys.stderr)
            return 1
        if action == "cache":
            return _cache(args)
        if action == "check":
            damage = CatalogCare.check(db_file)
            if damage:
                print(f"photolift catalog: {damage}", file=sys.stderr)
                return 1
            print(f"{db_file}: ok")
            return 0
        if action == "backup":
            print(f"backed up to {CatalogCare.take_backup(db_file)}")
            return 0
    except CatalogError as e:
        print(f"photolift catalog: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"photolift catalog: {e.strerror or e}", file=sys.stderr)
        return 1
    raise AssertionError(action)
