"""The light half of indexing: walking a folder tree, fingerprinting and decoding one file.

Nothing here touches the catalog (no SQLAlchemy import): the indexer (:mod:`engine.ingest.indexer`,
whose module docstring explains the algorithm and the fingerprint) records what these find.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat as stat_mod
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.core.jobs import CancelToken, Progress, ProgressFn, no_progress
from engine.core.paths import display_path
from engine.ingest.imageio import SUPPORTED_EXTENSIONS, ImageError, LoadedImage, decode
from engine.ingest.thumbnails import THUMB_SIZE

log = logging.getLogger(__name__)

STATUS_OK = "ok"  # db.schema.STATUS_OK (the catalog is not imported here)
CHANGING = "the file changed while it was being read (still being copied?); retried next scan"
SAMPLE = 64 * 1024
# Folders no photo library wants indexed: OS trash and metadata, NAS thumbnail stores, app caches.
SYSTEM_DIRS = frozenset({
    "$recycle.bin", "system volume information", "recycler", "lost+found", "@eadir", "#recycle",
    "__macosx", ".trashes", ".spotlight-v100", ".fseventsd", ".thumbnails", "@recycle", ".@__thumb",
})


def fingerprint_bytes(data: bytes | memoryview, size: int | None = None) -> str:
    size = len(data) if size is None else size
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    if size <= 3 * SAMPLE:
        h.update(data)
    else:
        mid = size // 2 - SAMPLE // 2
        h.update(data[:SAMPLE])
        h.update(data[mid:mid + SAMPLE])
        h.update(data[size - SAMPLE:])
    return h.hexdigest()


def fingerprint(path: str | os.PathLike[str]) -> str:
    """The fast content fingerprint of a file, reading at most 192 KiB (see module docstring)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= 3 * SAMPLE:
            return fingerprint_bytes(f.read(), size)
        head = f.read(SAMPLE)
        f.seek(size // 2 - SAMPLE // 2)
        mid = f.read(SAMPLE)
        f.seek(size - SAMPLE)
        tail = f.read(SAMPLE)
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    for part in (head, mid, tail):
        h.update(part)
    return h.hexdigest()


@dataclass
class _Walked:
    path: str  # file-system str (may carry surrogate escapes)
    pb: bytes
    size: int
    mtime_ns: int


@dataclass
class _Existing:
    id: int
    size: int
    mtime_ns: int
    status: str
    error_code: str | None
    fingerprint: str | None


@dataclass
class _Result:
    walked: _Walked
    existing: _Existing | None
    kind: str  # 'ok', 'touched', 'error', 'vanished'
    fingerprint: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_code: str | None = None


def _hidden(entry: os.DirEntry[str]) -> bool:
    name = entry.name
    if name.startswith(".") or name.lower() in SYSTEM_DIRS:
        return True
    if sys.platform == "win32":  # pragma: no cover - Windows attribute bits
        try:
            attrs = entry.stat(follow_symlinks=False).st_file_attributes  # type: ignore[attr-defined]
            return bool(attrs & (stat_mod.FILE_ATTRIBUTE_HIDDEN | stat_mod.FILE_ATTRIBUTE_SYSTEM))  # type: ignore[attr-defined]
        except OSError:
            return False
    return False


def _bad_link(path: str) -> str | None:
    """Why a symbolic link cannot be followed (a loop, a missing target), or None."""
    try:
        os.stat(path)
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a loop of symbolic links; not followed"
        if isinstance(e, FileNotFoundError):
            return f"broken symbolic link (points to {display_path(os.readlink(path))}, which does not exist)"
        return f"symbolic link not readable: {e.strerror or e}"


def missing_reason(path: str | os.PathLike[str]) -> str:
    """Why ``path`` cannot be opened, in words: no such file or folder, a loop of links..."""
    p = os.fspath(path)
    if os.path.islink(p):
        why = _bad_link(p)
        if why is not None:
            return why.split(";")[0]
    return "no such file or folder"


def walk(root: str, cancel: CancelToken | None = None, progress: ProgressFn = no_progress,
         on_skip: Callable[[str, str], None] | None = None) -> list[_Walked]:
    """Every supported, non-hidden file under ``root`` with its size and mtime (one stat each)."""
    out: list[_Walked] = []
    try:
        st = os.stat(root)
    except OSError as e:
        raise FileNotFoundError(f"cannot read folder {root}: {e.strerror}") from e
    seen_dirs = {(st.st_dev, st.st_ino)}
    stack = [root]
    last = time.monotonic()
    while stack:
        if cancel is not None:
            cancel.raise_if_cancelled()
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda x: x.name)
        except OSError as err:
            if on_skip:
                on_skip(d, f"folder not readable: {err.strerror or err}")
            continue
        subdirs: list[str] = []
        d_real: str | None = None
        for ent in entries:
            if _hidden(ent):
                continue
            supported = os.path.splitext(ent.name)[1].lower() in SUPPORTED_EXTENSIONS
            try:
                if ent.is_symlink():
                    why = _bad_link(ent.path)
                    if why is not None:
                        if on_skip and (supported or "loop" in why):
                            on_skip(ent.path, why)
                        continue
                if ent.is_dir():  # follows symlinks; loops are cut by the inode set
                    dst = ent.stat()
                    key = (dst.st_dev, dst.st_ino)
                    if ent.is_symlink():
                        d_real = d_real or os.path.realpath(d)
                        target = os.path.realpath(ent.path)
                        if d_real == target or d_real.startswith(os.path.join(target, "")):
                            if on_skip:
                                on_skip(ent.path, f"symbolic link to a folder above it ({display_path(target)}); "
                                                  "not followed (a loop: its photos would be indexed twice)")
                            continue
                    if key not in seen_dirs:
                        seen_dirs.add(key)
                        subdirs.append(ent.path)
                    continue
                if not supported:
                    continue
                fst = ent.stat()
                if not stat_mod.S_ISREG(fst.st_mode):
                    continue
            except OSError:  # vanished entry: nothing to index
                continue
            out.append(_Walked(ent.path, os.fsencode(ent.path), fst.st_size, fst.st_mtime_ns))
        stack.extend(reversed(subdirs))
        now = time.monotonic()
        if now - last > 0.25:
            last = now
            progress(Progress(len(out), None, f"scanning {display_path(d)}"))
    return out


@dataclass
class Decoded:
    """One file read, fingerprinted and decoded (what :func:`read_decode` gives for a good file)."""

    img: LoadedImage
    fields: dict[str, Any]
    fingerprint: str


def read_decode(w: _Walked, existing: _Existing | None,
                reduce_for: Callable[[int | None, int | None], int] | None) -> Decoded | _Result:
    """Read, fingerprint and decode ``w`` once; never raises for bad files.

    ``reduce_for`` chooses the decode's DCT scale from the pixel size (the scorer's); without
    it the decode is just large enough for the thumbnail. A result that is not a
    :class:`Decoded` is final: the content did not change (``touched``), or the file is bad,
    gone or still being written (``error``, ``vanished``)."""
    ext = os.path.splitext(w.path)[1].lower()
    try:
        if existing is not None and existing.fingerprint and existing.status == STATUS_OK:
            # size or mtime changed: a cheap fingerprint first, the content may be the same
            fp0 = fingerprint(w.path)
            if fp0 == existing.fingerprint:
                return _Result(w, existing, "touched", fingerprint=fp0)
        with open(w.path, "rb") as f:
            data = f.read()
        fp = fingerprint_bytes(data)
        if len(data) != w.size:
            return _Result(w, existing, "error", fingerprint=fp, error_code="changing", error=CHANGING)
        if reduce_for is None:
            img, fields = decode(data, ext, max_side=THUMB_SIZE)
        else:
            img, fields = decode(data, ext, reduce_for=reduce_for)
        del data
        st2 = os.stat(w.path)
        if st2.st_size != w.size or st2.st_mtime_ns != w.mtime_ns:
            return _Result(w, existing, "error", fingerprint=fp, error_code="changing", error=CHANGING)
    except FileNotFoundError:
        return _Result(w, existing, "vanished", error="deleted or moved during the scan", error_code="vanished")
    except PermissionError:
        return _Result(w, existing, "error", error_code="permission",
                       error="permission denied: cannot read the file")
    except ImageError as e:
        fp_or_none: str | None = None
        with contextlib.suppress(OSError):
            fp_or_none = fingerprint(w.path)
        return _Result(w, existing, "error", fingerprint=fp_or_none, error=e.reason, error_code=e.code)
    except OSError as e:
        return _Result(w, existing, "error", error_code="io", error=f"read error: {e.strerror or e}")
    except Exception as e:  # a decoder bug must not stop the batch; record it as such
        log.exception("unexpected error indexing %s", display_path(w.pb))
        return _Result(w, existing, "error", error_code="decode",
                       error=f"unexpected decoder failure ({type(e).__name__}: {e})")
    return Decoded(img, fields, fp)


__all__ = ["SAMPLE", "SYSTEM_DIRS", "Decoded", "fingerprint", "fingerprint_bytes", "missing_reason",
           "read_decode", "walk"]
