"""Which process owns something, and whether that process still runs.

The batch queue records the owner of each job (``this_process()``) so that only the batches of
processes that are gone are resumed; export names its temporary files with the writer's pid so
that only the leftovers of gone processes are removed (``pid_alive``).

An owner is ``host|pid|start``; ``start`` identifies the process's start (the boot id and the start
time in clock ticks, from ``/proc`` on Linux; empty where the system does not say), so a pid
reused after a reboot or a wrap-around is not taken for the owner. A process of another machine
cannot be checked from here: it counts as running.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a process of another user too)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_of(pid: int) -> str:
    """The boot id and start time of process ``pid`` ('' where unknown)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, starttime
    except (OSError, IndexError):
        return ""


def this_process() -> str:
    """The owner id of the calling process."""
    pid = os.getpid()
    return f"{socket.gethostname()}|{pid}|{_start_of(pid)}"


def owner_gone(owner: str | None) -> bool:
    """True when the process ``owner`` names has ended, as far as this machine can tell: a
    missing or unreadable owner is gone; a process of another machine is not."""
    if not owner:
        return True
    host, _, rest = owner.partition("|")
    pid_text, _, start = rest.partition("|")
    if host != socket.gethostname():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    if not pid_alive(pid):
        return True
    now = _start_of(pid)
    return bool(start and now and now != start)  # the pid now belongs to another process
