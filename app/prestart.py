"""What a command starts before the rest of photolift is imported.

``photolift score DIR`` on new photos first spends half a second or more importing SQLAlchemy and
onnxruntime, opening the catalog and creating the assessor's session. :func:`start_early` is
called by :mod:`app.cli` before any of that, with the command line: for ``score`` on folders
(not on a cluster, whose workers decode) it starts an :class:`engine.ingest.early.EarlyDecoder`
on them, which decodes the first new photos in the meantime; :meth:`app.services.Services.index_paths`
hands it to the indexer, which takes what matches its own walk. This module is the one other
door from the command line into the engine (next to :mod:`app.services`), and it imports only
what the early decode needs: no SQLAlchemy, no onnxruntime.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.ingest.early import EarlyDecoder

log = logging.getLogger(__name__)

# options of the command line that take a value (global ones and score's), to find the
# subcommand and its folders without building the full parser (which imports every command)
_VALUE_OPTIONS = {"--catalog", "--workers", "--model", "--cluster"}


@dataclass
class EarlyStart:
    """A running early decode (see the module docstring); close it when the command is done."""

    decoder: EarlyDecoder
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.decoder.close()
        log.info("early decode: %d photos decoded while starting, %d used by the indexer",
                 self.decoder.decoded, self.decoder.taken)


def _score_folders(argv: Sequence[str]) -> tuple[list[str], str | None, int] | None:
    """(folders, --catalog value, --workers) of a ``score`` command line; None for anything else."""
    command = None
    catalog = os.environ.get("PHOTOLIFT_CATALOG")
    workers = 2
    folders: list[str] = []
    it = iter(argv)
    for tok in it:
        if tok == "--":
            rest = list(it)
            if command is None:
                return None
            folders += [t for t in rest]
            break
        if tok.startswith("--") and "=" in tok:
            name, _, value = tok.partition("=")
        elif tok in _VALUE_OPTIONS:
            name, value = tok, next(it, "")
        elif tok.startswith("-"):
            if tok in ("-h", "--help"):
                return None
            continue
        else:
            if command is None:
                command = tok
                if command != "score":
                    return None
            else:
                folders.append(tok)
            continue
        if name == "--cluster":
            return None  # on a cluster the workers decode
        if name == "--catalog":
            catalog = value
        elif name == "--workers":
            if not value.isdigit() or int(value) < 1:
                return None
            workers = int(value)
    if command != "score":
        return None
    dirs = [f for f in folders if os.path.isdir(f)]
    return (dirs, catalog, workers) if dirs else None


def start_early(argv: Sequence[str]) -> EarlyStart | None:
    """Start decoding for a ``score`` command line (see the module docstring), or None."""
    if os.environ.get("PHOTOLIFT_NO_EARLY"):
        return None
    parsed = _score_folders(argv)
    if parsed is None:
        return None
    folders, catalog, workers = parsed
    from db.quick import catalog_file, known_files

    db_file = catalog_file(catalog)
    if db_file is None:
        return None  # a catalog on a server: nothing to glance at without its driver
    from engine.assess.views import decode_reduction
    from engine.ingest.early import EarlyDecoder

    return EarlyStart(EarlyDecoder(folders, lambda root: known_files(db_file, root), decode_reduction,
                                   workers=workers))


__all__ = ["EarlyStart", "start_early"]
