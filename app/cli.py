"""The ``photolift`` command line. Subcommands live in ``app/commands/<name>.py``.

Each command module exposes ``add_parser(subparsers)`` and ``run(args) -> int``. Exit codes:
0 when the command did its job (bad files are reported, not fatal), 2 for usage errors,
1 when the command itself failed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from types import ModuleType

COMMANDS = ("open", "index", "score", "rank", "enhance", "export", "catalog", "defects", "faces")


def _load_commands() -> dict[str, ModuleType]:
    mods: dict[str, ModuleType] = {}
    for name in COMMANDS:
        modname = f"app.commands.{name}_cmd"
        try:
            mods[name] = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
    return mods


def build_parser(mods: dict[str, ModuleType]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="photolift", description="Find, enhance and export the photos that gain most.")
    p.add_argument("--catalog", default=os.environ.get("PHOTOLIFT_CATALOG"),
                   help="catalog path or SQLAlchemy URL (default: per-user catalog; env PHOTOLIFT_CATALOG)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command")
    for mod in mods.values():
        mod.add_parser(sub)
    # the global options are accepted after the subcommand too (``photolift index DIR --catalog X``);
    # SUPPRESS keeps a value given before the subcommand when none is given after it
    for sp in sub.choices.values():
        sp.add_argument("--catalog", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


EXIT_GRACE_S = 60.0  # after Ctrl-C, the longest a command may take to stop cleanly


def arm_exit_watchdog(seconds: float = EXIT_GRACE_S) -> threading.Timer:
    """Exit the process (status 130) if it is still running ``seconds`` from now.

    Ctrl-C stops a command by unwinding it (work in flight cancelled, catalog transactions rolled
    back, a Ray cluster shut down); a part that does not return (seen once: a cluster export did
    not exit within two minutes of Ctrl-C) must not keep the user waiting. The catalog stays
    consistent whatever the moment (every write is one transaction) and a rerun resumes."""
    def stop() -> None:
        print("interrupted (did not stop in time; exiting)", file=sys.stderr, flush=True)
        os._exit(130)

    t = threading.Timer(seconds, stop)
    t.daemon = True
    t.start()
    return t


def _interrupt(signum: int, frame: object) -> None:
    arm_exit_watchdog()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    mods = _load_commands()
    parser = build_parser(mods)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    command = args.command or "open"
    if command not in mods:
        parser.error(f"command {command!r} is not available")
    previous = None
    if (command != "open" and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        previous = signal.signal(signal.SIGINT, _interrupt)  # KeyboardInterrupt as before, and a deadline
    try:
        return int(mods[command].run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # A catalog problem a user can act on (busy, disk full, damaged) is a message, not a
        # traceback, wherever it surfaces; anything else is a bug and keeps its traceback.
        from app.services import explain_error

        err = explain_error(e, getattr(args, "catalog", None))
        if err is None:
            raise
        print(f"photolift {command}: {err}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
