"""The ``--cluster ADDRESS`` option shared by ``score``, ``rank``, ``enhance`` and ``export``.

Not a command (no ``add_parser``/``run`` pair is loaded from here by ``app.cli``). Without the
option a job runs on the local thread pool, as always; with it, on a Ray cluster
(:mod:`engine.cluster`). Ray missing is a usage problem the user can fix (exit 2, with the
command that installs it); a cluster that cannot be reached is a failure of the command (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from app.services import CommandFailed, UsageError, check_cluster_installed, connect_cluster

if TYPE_CHECKING:
    from app.services import Cluster

ENV = "PHOTOLIFT_CLUSTER"


def add_cluster_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", default=os.environ.get(ENV) or None, metavar="ADDRESS",
                   help="run the heavy work on a Ray cluster: 'auto' (this machine's cluster, or start one here), "
                        "ray://HOST:PORT or HOST:PORT (needs: pip install 'photolift[ray]'; env PHOTOLIFT_CLUSTER)")


def open_cluster(args: argparse.Namespace, command: str) -> Cluster | int | None:
    """The connected cluster for ``args.cluster`` (give it to ``Services.attach_cluster``), None
    without the option, or an exit code (int) after printing why it cannot be used."""
    address = getattr(args, "cluster", None)
    if not address:
        return None
    try:
        cluster = connect_cluster(address)
    except UsageError as e:
        print(f"photolift {command}: {e}", file=sys.stderr)
        return 2
    except CommandFailed as e:
        print(f"photolift {command}: {e}", file=sys.stderr)
        return 1
    if not getattr(args, "quiet", False) and not getattr(args, "json", False):
        print(f"photolift {command}: on the Ray cluster at {address} ({cluster.describe()})", file=sys.stderr)
    return cluster


def check_cluster_option(args: argparse.Namespace, command: str) -> int | None:
    """With ``--cluster``: exit code 2 (after saying how to install it) when Ray is missing, before any work."""
    if not getattr(args, "cluster", None):
        return None
    try:
        check_cluster_installed()
    except UsageError as e:
        print(f"photolift {command}: {e}", file=sys.stderr)
        return 2
    return None
