"""Export enhanced copies: atomic, never overwriting, with metadata.

For each photo the current recipe (``photos.current_recipe_id``; none = the original pixels) is
rendered at full resolution from the original, encoded (JPEG with a quality, PNG or TIFF, 8 or 16
bit), given the original's EXIF (see :mod:`engine.export.exifout`) and ICC profile, and written:

1. to a temporary file *in the target folder* (``.photolift-<pid>-<random>.part``; hidden, and
   not an image extension, so no indexer picks it up), write, flush, ``fsync``;
2. reopened and fully decoded to verify it (size and, for JPEG, the EXIF block);
3. moved to its final name with ``os.link`` (which fails rather than replace an existing file;
   if another file took the name meanwhile the next free name is used), then the temporary name
   is removed and the folder entry ``fsync``-ed. Filesystems without hard links fall back to
   ``os.rename`` after an existence check.

So a crash or ``kill -9`` at any moment leaves either nothing or a complete, verified file under
a final name, plus at worst a ``.part`` file that the next export into that folder removes
(only if the process that wrote it is gone). The ``exports`` table records each finished file;
a rerun skips photos already exported with the same recipe and format into the same folder and
whose file is still there, so an interrupted batch completes without duplicates
(``exports.format`` is ``jpeg``, ``png``, ``tiff``, or ``png16``/``tiff16`` for 16-bit files).

Names come from a template (``{name}``/``{stem}``: the original's name without extension,
``{id}``, ``{gain}``, ``{ext}``, ``{date}``, ``{camera}``); the original's sub-folder below its
library root is mirrored under the output folder; an existing name gets `` (2)``, `` (3)``...

Refused up front, before anything is written: an output folder that cannot be created or
written to, and an output folder inside a library folder of the catalog (its exports would be
indexed and ranked as new photos, and an export could land beside the originals). Per photo, as
an error result while the batch goes on: an original that is gone, or whose content changed
since it was indexed and scored (fingerprint mismatch), an unreadable original, a recipe whose
model is gone. Environment failures (disk full, quota, read-only file system, permission lost
mid-way) stop the batch: every remaining photo is reported as not exported, nothing is lost.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.jobs import CancelToken, Eta, JobCancelled, ProgressFn
from engine.core.paths import display_path
from engine.core.processes import pid_alive
from engine.enhance.recipes import Recipe, RecipeError, from_json
from engine.enhance.render import Rendered, Renderer, to_uint8, to_uint16
from engine.export import exifout
from engine.ingest.indexer import fingerprint

FORMATS: dict[str, str] = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif"}
FORMAT_ALIASES = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "tif": "tiff", "tiff": "tiff"}
TEMPLATE_FIELDS = ("name", "stem", "id", "gain", "ext", "date", "camera")
DEFAULT_TEMPLATE = "{name}_enhanced"
TMP_PREFIX = ".photolift-"
TMP_SUFFIX = ".part"
_ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class ExportError(Exception):
    """A problem with one photo's export (reason for people in the message)."""


class OutputDirError(ExportError):
    """The output folder cannot be used at all (not writable, inside the library...)."""


class EnvironmentFailure(ExportError):
    """The environment failed (disk full, read-only, permission): the batch stops."""


@dataclass(frozen=True)
class ExportResult:
    photo_id: int | None
    source: str
    status: str  # 'ok' | 'error' | 'skipped'
    out_path: str | None = None
    error: str | None = None
    recipe_id: int | None = None
    enhanced: bool = False
    warnings: tuple[str, ...] = ()
    fatal: bool = False  # the environment failed (disk full...): the export stopped here
    measured_gain: float | None = None  # of the exported edit, as the regression guard measured it

    @property
    def path(self) -> str:
        """The original's path (same as ``source``; the name the CLI's JSON uses)."""
        return self.source

    def to_json(self) -> dict[str, Any]:
        return {"photo_id": self.photo_id, "path": self.source, "status": self.status, "out_path": self.out_path,
                "error": self.error, "recipe_id": self.recipe_id, "enhanced": self.enhanced,
                "warnings": list(self.warnings), "measured_gain": self.measured_gain}


# -- names ---------------------------------------------------------------------------------------

def normalise_format(fmt: str) -> str:
    f = FORMAT_ALIASES.get(fmt.lower().lstrip("."))
    if f is None:
        raise ValueError(f"unknown export format {fmt!r}; use jpeg, png or tiff")
    return f


def check_template(template: str) -> None:
    """``ValueError`` for a template with unknown fields or no field at all."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"bad name template {template!r}: {e}") from e
    bad = sorted({n for n in names if n not in TEMPLATE_FIELDS})
    if bad:
        raise ValueError(f"unknown field(s) in the name template: {', '.join(bad)} "
                         f"(known: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})")
    if not names:
        raise ValueError(f"the name template {template!r} has no field; every export would get the same name")


_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


def render_name(template: str, fields: dict[str, Any]) -> str:
    """File name (no extension) from ``template``; path separators and control characters are
    replaced, so a template can never write outside the target folder."""
    check_template(template)
    name = template.format(**{k: fields.get(k, "") for k in TEMPLATE_FIELDS})
    name = _UNSAFE.sub("_", name).strip().lstrip(".")
    while len(name.encode("utf-8", "surrogateescape")) > 200:
        name = name[:-1]
    if not name:
        raise ExportError(f"the name template {template!r} gives an empty file name")
    return name


def candidate_names(stem: str, ext: str) -> Iterator[str]:
    yield f"{stem}{ext}"
    n = 2
    while True:
        yield f"{stem} ({n}){ext}"
        n += 1


# -- folders -------------------------------------------------------------------------------------

def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def check_out_dir(out_dir: Path, library_roots: Iterable[Path] = ()) -> Path:
    """Create ``out_dir`` if needed and prove it writable; refuse one inside a library root.

    Returns the resolved folder. Raises :class:`OutputDirError` with the reason.
    """
    out = Path(out_dir).expanduser().absolute()
    resolved = out.resolve()
    for root in library_roots:
        r = Path(root).resolve()
        if _is_within(resolved, r):
            raise OutputDirError(
                f"the output folder {out} is inside the library folder {r}; exports there would be indexed "
                f"as new photos. Choose a folder outside the library")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"cannot create the output folder {out}: {e.strerror or e}") from e
    if not out.is_dir():
        raise OutputDirError(f"the output path {out} exists and is not a folder")
    try:
        fd, probe = _mkstemp(out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputDirError(f"the output folder {out} is not writable: {e.strerror or e}") from e
    return resolved


def _mkstemp(folder: Path) -> tuple[int, str]:
    name = f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}{TMP_SUFFIX}"
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    return fd, path


_TMP_RE = re.compile(re.escape(TMP_PREFIX) + r"(\d+)-[0-9a-f]+" + re.escape(TMP_SUFFIX) + "$")
_JOURNAL_RE = re.compile(re.escape(TMP_PREFIX) + r"(\d+)-[0-9a-f]+\.journal$")


def clean_stale_temps(folder: Path) -> int:
    """Remove ``.part`` files left in ``folder`` by exports whose process is gone."""
    n = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        m = _TMP_RE.match(e.name)
        if m and not pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(e.path)
                n += 1
    return n


# -- encoding and writing ------------------------------------------------------------------------

def encode(rgb: np.ndarray, fmt: str, quality: int, bits: int, ex: exifout.ExifOut, icc: bytes | None) -> bytes:
    """Encode float32 RGB 0..1 to the file bytes of ``fmt`` with EXIF and ICC."""
    from PIL import Image

    fmt = normalise_format(fmt)
    if bits not in (8, 16):
        raise ValueError("bits must be 8 or 16")
    if fmt == "jpeg":
        if bits != 8:
            raise ValueError("JPEG is 8 bit only; use --format png or tiff for 16 bit")
        if not 1 <= quality <= 100:
            raise ValueError("JPEG quality must be 1..100")
        buf = io.BytesIO()
        kwargs: dict[str, Any] = {"quality": int(quality), "exif": exifout.dump_for_jpeg(ex),
                                  # 4:4:4 at high quality (no chroma blur where it would show)
                                  "subsampling": 0 if quality >= 90 else 2}
        if icc:
            kwargs["icc_profile"] = icc
        Image.fromarray(to_uint8(rgb)).save(buf, "JPEG", **kwargs)
        return buf.getvalue()
    pix = to_uint8(rgb) if bits == 8 else to_uint16(rgb)
    if fmt == "png":
        return exifout.encode_png(pix, exifout.dump(ex), icc)
    return exifout.encode_tiff(pix, ex, icc)


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data`` (a separate function so tests can simulate a full disk)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def verify_file(path: str, fmt: str, size: tuple[int, int], bits: int) -> None:
    """Decode the written file completely; ``ExportError`` if it is not what was meant."""
    from PIL import Image

    try:
        if bits == 16:
            import cv2

            arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
            if arr is None or arr.dtype != np.uint16:
                raise ExportError("the written 16-bit file does not decode as 16-bit")
            got = (arr.shape[1], arr.shape[0])
        else:
            with Image.open(path) as im:
                im.load()
                got = im.size
                if fmt == "jpeg":
                    im.getexif()
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"verification of the written file failed: {e}") from e
    if got != size:
        raise ExportError(f"verification failed: wrote {size[0]}x{size[1]} but read back {got[0]}x{got[1]}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _env_error(e: OSError, what: str) -> ExportError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return EnvironmentFailure(f"the disk is full while writing {what}; nothing was written under a final "
                                  f"name. Free some space and export again")
    if e.errno in _ENV_ERRNOS:
        return EnvironmentFailure(f"cannot write {what}: {e.strerror or e}")
    return ExportError(f"cannot write {what}: {e.strerror or e}")


@dataclass(frozen=True)
class Written:
    """Where :func:`write_new_file` put the bytes."""

    path: Path
    reused: bool = False  # a file with exactly these bytes was already there: nothing new written
    journal: Path | None = None  # remove with :func:`finish_journal` once the catalog records it


def _sha256_file(path: Path, limit: int) -> str | None:
    """sha256 of a file of exactly ``limit`` bytes, else None (cheap size check first)."""
    import hashlib

    try:
        if os.stat(path).st_size != limit:
            return None
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def find_identical(folder: Path, stem: str, ext: str, data: bytes, digest: str | None = None) -> Path | None:
    """An existing ``stem<ext>`` / ``stem (n)<ext>`` in ``folder`` holding exactly ``data``."""
    import hashlib

    digest = digest or hashlib.sha256(data).hexdigest()
    for name in candidate_names(stem, ext):
        p = folder / name
        if not os.path.lexists(p):
            return None  # names are taken in order: no later one can exist from us
        if _sha256_file(p, len(data)) == digest:
            return p
    return None


def write_new_file(folder: Path, stem: str, ext: str, data: bytes, fmt: str, size: tuple[int, int],
                   bits: int, journal: dict[str, Any] | None = None) -> Written:
    """Atomically create a new file ``folder/stem<ext>`` (or ``stem (n)<ext>``) holding ``data``.

    Never replaces an existing file. When a file of that name series already holds exactly
    these bytes (a rerun), nothing is written and that file is returned (``reused``). With
    ``journal`` (what the catalog will record), a journal naming the final file and its sha256 is
    written and synced *before* the file appears under its final name, so a run killed between the
    rename and the catalog's record is adopted by the next run (:func:`recover_folder`) instead
    of exported again.
    """
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    same = find_identical(folder, stem, ext, data, digest)
    if same is not None:
        return Written(same, reused=True)
    try:
        fd, tmp = _mkstemp(folder)
    except OSError as e:
        raise _env_error(e, f"a temporary file in {folder}") from e
    jpath: Path | None = None
    try:
        try:
            _write_fd(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        verify_file(tmp, fmt, size, bits)
        for name in candidate_names(stem, ext):
            final = folder / name
            if os.path.lexists(final):
                continue
            if journal is not None:
                jpath = _write_journal(tmp, final, digest, len(data), journal)
            try:
                os.link(tmp, final)
            except FileExistsError:
                continue
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                if os.path.lexists(final):  # no hard links here: rename after a check
                    continue
                os.rename(tmp, final)
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _fsync_dir(folder)
        return Written(final, journal=jpath)
    except OSError as e:
        _abandon(tmp, jpath)
        raise _env_error(e, f"{stem}{ext} in {folder}") from e
    except BaseException:
        _abandon(tmp, jpath)
        raise


def _abandon(tmp: str, jpath: Path | None) -> None:
    """A write failed: remove the temporary file, and the journal unless its file made it."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    name = json_final_name(jpath) if jpath is not None else ""
    if jpath is not None and not (name and os.path.lexists(jpath.parent / name)):
        with contextlib.suppress(OSError):
            jpath.unlink()


# -- the journal: a written file is adopted, never duplicated ---------------------------------------

JOURNAL_SUFFIX = ".journal"


def _write_journal(tmp: str, final: Path, digest: str, size: int, key: dict[str, Any]) -> Path:
    import json

    jpath = Path(tmp[: -len(TMP_SUFFIX)] + JOURNAL_SUFFIX)
    body = json.dumps({"final": os.fsencode(final.name).hex(), "sha256": digest, "size": size, "key": key})
    fd = os.open(jpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(body.encode())
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return jpath


def json_final_name(jpath: Path) -> str:
    """The final file name a journal names ('' when unreadable)."""
    import json

    try:
        return os.fsdecode(bytes.fromhex(json.loads(jpath.read_text())["final"]))
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def finish_journal(written: Written) -> None:
    """The catalog recorded the file: the journal is done."""
    if written.journal is not None:
        with contextlib.suppress(OSError):
            written.journal.unlink()


@dataclass(frozen=True)
class Adoptable:
    """A file a killed run wrote under its final name but never recorded."""

    path: Path
    key: dict[str, Any]
    journal: Path


def recover_folder(folder: Path) -> list[Adoptable]:
    """Tidy ``folder`` after runs that were killed: remove their temporary files, and return the
    complete files their journals name (checked by sha256), for the caller to record; journals
    of files that never appeared, or do not match, are removed. Only runs whose process is gone."""
    import json

    out: list[Adoptable] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return out
    for e in entries:
        m = _JOURNAL_RE.match(e.name)
        if not m or pid_alive(int(m.group(1))):
            continue
        jpath = Path(e.path)
        try:
            j = json.loads(jpath.read_text())
            final = folder / os.fsdecode(bytes.fromhex(j["final"]))
            ok = _sha256_file(final, int(j["size"])) == j["sha256"]
            key = dict(j["key"])
        except (OSError, ValueError, KeyError, TypeError):
            ok, key, final = False, {}, folder
        if ok:
            out.append(Adoptable(final, key, jpath))
        else:
            with contextlib.suppress(OSError):
                jpath.unlink()
    clean_stale_temps(folder)
    return out


def write_export(rendered: Rendered, folder: Path, stem: str, fmt: str, quality: int, bits: int,
                 recipe: Recipe | None, journal: dict[str, Any] | None = None) -> tuple[Written, list[str]]:
    """Encode ``rendered`` with its metadata and write it as a new file (:func:`write_new_file`);
    ``(written, warnings)``."""
    fmt = normalise_format(fmt)
    rgb = rendered.rgb
    h, w = rgb.shape[:2]
    thumb = to_uint8(_small(rgb)) if fmt != "tiff" else None
    ex = exifout.build_exif(rendered.exif, (w, h), recipe.to_json() if recipe is not None else None, thumb)
    data = encode(rgb, fmt, quality, bits, ex, rendered.icc)
    written = write_new_file(folder, stem, FORMATS[fmt], data, fmt, (w, h), bits, journal)
    return written, list(ex.warnings)


def _small(rgb: np.ndarray, side: int = 320) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def library_roots(catalog: Any) -> list[Path]:
    """The library folders of a catalog (exports must not go inside them)."""
    from sqlalchemy import select

    from db.schema import Folder

    with catalog.session() as s:
        return [Path(os.fsdecode(b)) for b in s.scalars(select(Folder.path_bytes)).all()]


@dataclass(frozen=True)
class ExportTask:
    """One photo to render and write: plain data, so it can travel to a cluster worker."""

    photo_id: int
    path: str  # for display
    fs_path: str  # the original, opened by its exact name
    fingerprint: str  # the original's content when the task was made
    recipe_json: str | None  # None: the original pixels
    folder: Path
    name: str  # file name without extension
    fmt: str
    quality: int
    bits: int
    kind: str  # exports.format
    journal: dict[str, Any]
    recipe_id: int | None
    measured_gain: float | None
    done_before: tuple[tuple[str, int | None, str], ...] = ()


def render_and_write(renderer: Renderer, task: ExportTask, cancel: CancelToken | None = None,
                     check_source: bool = False) -> tuple[Written, list[str]]:
    """Render ``task`` at full resolution from the original and write it atomically
    (:func:`write_export`, with the journal). ``check_source``: first check that the original
    still has the fingerprint the task was made with (a worker far from the driver does)."""
    from engine.enhance.pipeline import StageUnavailable
    from engine.enhance.recipes import ModelGone
    from engine.ingest.imageio import ImageError

    if check_source:
        try:
            fp = fingerprint(task.fs_path)
        except OSError as e:
            raise ExportError(f"cannot read the original {task.path}: {e.strerror or e}") from e
        if fp != task.fingerprint:
            raise ExportError(f"the original changed since the export was queued ({task.path}); "
                              f"index the folder again, then enhance and export")
    recipe = from_json(task.recipe_json) if task.recipe_json is not None else None
    try:
        rendered = renderer.full(Path(task.fs_path), task.fingerprint, recipe, cancel=cancel)
    except ImageError as e:
        raise ExportError(f"cannot read the original: {e.reason}") from e
    except (ModelGone, StageUnavailable) as e:
        raise ExportError(str(e)) from e
    return write_export(rendered, task.folder, task.name, task.fmt, task.quality, task.bits, recipe,
                        journal=task.journal)


# -- the service ----------------------------------------------------------------------------------

@dataclass
class _PhotoRow:
    id: int
    path: str
    fs_path: str
    folder_root: str | None
    fingerprint: str | None
    status: str
    captured_at: datetime | None
    camera: str | None
    recipe_id: int | None
    recipe_json: str | None
    measured_gain: float | None
    done_before: list[tuple[str, int | None, str]] = field(default_factory=list)


class Exporter:
    """Exports photos of a catalog (see the module doc). Thread-safe for one export at a time."""

    def __init__(self, catalog: Any, renderer: Renderer | None = None) -> None:
        self.catalog = catalog
        if renderer is None:
            from engine.core.diskcache import limits
            from engine.core.paths import cache_dir_for
            from engine.enhance.render import RenderCache

            renderer = Renderer(cache=RenderCache(cache_dir_for(catalog.url), limits(catalog).render_bytes))
        self.renderer = renderer
        self._adopted: dict[int, list[tuple[str, int | None, str]]] = {}

    def library_roots(self) -> list[Path]:
        return library_roots(self.catalog)

    def _rows(self, photo_ids: Sequence[int]) -> dict[int, _PhotoRow]:
        from sqlalchemy import select

        from db.schema import Export, Folder, Photo
        from db.schema import Recipe as RecipeRow

        out: dict[int, _PhotoRow] = {}
        with self.catalog.session() as s:
            for i in range(0, len(photo_ids), 500):
                chunk = list(photo_ids[i:i + 500])
                q = (select(Photo, Folder.path_bytes, RecipeRow.recipe_json, RecipeRow.measured_gain)
                     .outerjoin(Folder, Folder.id == Photo.folder_id)
                     .outerjoin(RecipeRow, RecipeRow.id == Photo.current_recipe_id)
                     .where(Photo.id.in_(chunk)))
                for p, root, rj, gain in s.execute(q).all():
                    out[p.id] = _PhotoRow(p.id, p.path, os.fsdecode(p.path_bytes),
                                          os.fsdecode(root) if root is not None else None, p.fingerprint,
                                          p.status, p.captured_at, p.camera_model, p.current_recipe_id, rj, gain)
                for e in s.scalars(select(Export).where(Export.photo_id.in_(chunk))).all():
                    if e.photo_id in out:
                        where = os.fsdecode(e.out_path_bytes) if e.out_path_bytes is not None else e.out_path
                        out[e.photo_id].done_before.append((where, e.recipe_id, e.format))
        return out

    def export(self, photo_ids: Sequence[int], out_dir: Path | str, fmt: str = "jpeg", quality: int = 92,
               template: str = DEFAULT_TEMPLATE, progress: ProgressFn | None = None,
               cancel: CancelToken | None = None, bits: int = 8, mirror: bool = True,
               only_enhanced: bool = False, skip_done: bool = True, cluster: Any = None) -> Iterator[ExportResult]:
        """Export each photo's current state; yields one :class:`ExportResult` per photo.

        Raises :class:`OutputDirError` before the first photo when the folder cannot be used,
        ``ValueError`` for bad options. Cancellation stops between photos (``JobCancelled``).
        ``cluster`` (:class:`engine.cluster.Cluster`): render and write on its workers, one photo
        per task; this process prepares, records and reports as it does alone.
        """
        fmt = normalise_format(fmt)
        check_template(template)
        if bits not in (8, 16) or (fmt == "jpeg" and bits != 8):
            raise ValueError("bits must be 8 (jpeg, png, tiff) or 16 (png, tiff)")
        if fmt == "jpeg" and not 1 <= int(quality) <= 100:
            raise ValueError("JPEG quality must be 1..100")
        root_out = check_out_dir(Path(out_dir), self.library_roots())
        ids = list(dict.fromkeys(int(i) for i in photo_ids))  # a photo listed twice is exported once
        if cluster is not None:
            return cluster.export_photos(self, ids, root_out, fmt, int(quality), template, progress, cancel, bits,
                                         mirror, only_enhanced, skip_done)
        return self._run(ids, root_out, fmt, int(quality), template, progress, cancel, bits, mirror,
                         only_enhanced, skip_done)

    def _run(self, ids: list[int], root_out: Path, fmt: str, quality: int, template: str,
             progress: ProgressFn | None, cancel: CancelToken | None, bits: int, mirror: bool,
             only_enhanced: bool, skip_done: bool) -> Iterator[ExportResult]:
        rows = self._rows(ids)
        eta = Eta(len(ids), progress, "exporting")
        eta.report(0)
        cleaned: set[Path] = set()
        stopped: str | None = None
        for n, pid in enumerate(ids):
            if cancel is not None and cancel.cancelled:
                raise JobCancelled()
            row = rows.get(pid)
            if stopped is not None:
                yield ExportResult(pid, row.path if row else "", "error",
                                   error=f"not exported: the export stopped ({stopped})", fatal=True)
                continue
            if row is None:
                yield ExportResult(pid, "", "error", error=f"photo {pid} is not in the catalog")
                eta.report(n + 1)
                continue
            try:
                res = self._one(row, root_out, fmt, quality, template, bits, mirror, only_enhanced, skip_done,
                                cleaned, cancel)
            except EnvironmentFailure as e:
                stopped = str(e)
                res = ExportResult(pid, row.path, "error", error=str(e), recipe_id=row.recipe_id, fatal=True)
            except JobCancelled:
                raise
            except ExportError as e:
                res = ExportResult(pid, row.path, "error", error=str(e), recipe_id=row.recipe_id)
            except MemoryError:
                res = ExportResult(pid, row.path, "error", error="not enough memory to render this photo")
            yield res
            eta.report(n + 1, res.status)

    def _one(self, row: _PhotoRow, root_out: Path, fmt: str, quality: int, template: str, bits: int,
             mirror: bool, only_enhanced: bool, skip_done: bool, cleaned: set[Path],
             cancel: CancelToken | None) -> ExportResult:
        task = self.prepare(row, root_out, fmt, quality, template, bits, mirror, only_enhanced, skip_done, cleaned)
        if isinstance(task, ExportResult):
            return task
        written, warnings = render_and_write(self.renderer, task, cancel)
        return self.finish(task, written, warnings)

    def prepare(self, row: _PhotoRow, root_out: Path, fmt: str, quality: int, template: str, bits: int,
                mirror: bool, only_enhanced: bool, skip_done: bool, cleaned: set[Path]) -> ExportResult | ExportTask:
        """Everything before the pixels: the photo's result when there is nothing to render
        (skipped, already exported), else the :class:`ExportTask` to render and write (here, or on
        a cluster worker: :mod:`engine.cluster`). Raises :class:`ExportError` for this photo."""
        recipe: Recipe | None = None
        if row.recipe_json is not None:
            try:
                recipe = from_json(row.recipe_json)
            except RecipeError as e:
                raise ExportError(f"the photo's edit cannot be read: {e}") from e
            if recipe.is_identity:
                recipe = None
        if recipe is None and only_enhanced:
            return ExportResult(row.id, row.path, "skipped", error="not enhanced", recipe_id=None)
        folder = root_out
        if mirror and row.folder_root is not None:
            rel = Path(os.path.relpath(os.path.dirname(row.fs_path), row.folder_root))
            if not rel.is_absolute() and ".." not in rel.parts and str(rel) != ".":
                folder = root_out / rel
        kind = fmt if bits == 8 else f"{fmt}{bits}"  # 'jpeg', 'png', 'png16', 'tiff', 'tiff16'
        if folder not in cleaned:  # a killed run's leftovers: temporary files removed, written files adopted
            cleaned.add(folder)
            if folder.is_dir():
                for a in recover_folder(folder):
                    self._adopt(a)
        if skip_done:
            for out_path, rid, f in row.done_before + self._adopted.get(row.id, []):
                if rid == row.recipe_id and f == kind and Path(out_path).parent == folder and Path(out_path).is_file():
                    return ExportResult(row.id, row.path, "skipped", out_path=out_path,
                                        error="already exported with this edit", recipe_id=row.recipe_id,
                                        enhanced=recipe is not None, measured_gain=row.measured_gain)
        # the source must be the one that was indexed, scored and enhanced
        if row.status == "missing" or not os.path.exists(row.fs_path):
            raise ExportError(f"the original is gone: {row.path}")
        try:
            fp = fingerprint(row.fs_path)
        except OSError as e:
            raise ExportError(f"cannot read the original {row.path}: {e.strerror or e}") from e
        if row.fingerprint is None or fp != row.fingerprint:
            raise ExportError(f"the original changed since it was indexed and scored ({row.path}); "
                              f"index the folder again, then enhance and export")
        if recipe is not None and recipe.source and recipe.source != fp:
            raise ExportError(f"the original changed since it was enhanced ({row.path}); enhance it again "
                              f"before exporting")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _env_error(e, f"the folder {folder}") from e
        stem = Path(row.fs_path).stem
        fields = {"name": stem, "stem": stem, "id": row.id,
                  "gain": f"{row.measured_gain:+.2f}" if row.measured_gain is not None else "na",
                  "ext": Path(row.fs_path).suffix.lstrip(".").lower(),
                  "date": row.captured_at.strftime("%Y%m%d") if row.captured_at else "",
                  "camera": row.camera or ""}
        name = render_name(template, fields)
        key = {"catalog": self.catalog.url, "photo_id": row.id, "recipe_id": row.recipe_id, "format": kind}
        return ExportTask(row.id, row.path, row.fs_path, fp, recipe.to_json() if recipe is not None else None,
                          folder, name, fmt, quality, bits, kind, key, row.recipe_id, row.measured_gain,
                          tuple(row.done_before))

    def finish(self, task: ExportTask, written: Written, warnings: list[str]) -> ExportResult:
        """Record a file written for ``task`` (by this process or a worker) and close its journal."""
        path = written.path
        warnings = list(warnings)
        if written.reused:
            warnings.append(f"an identical file was already there ({display_path(path)}); it was kept, not written again")
        if not (written.reused and (str(path), task.recipe_id, task.kind) in task.done_before):
            self._record(task.photo_id, task.recipe_id, path, task.kind)
        finish_journal(written)
        return ExportResult(task.photo_id, task.path, "ok", out_path=display_path(path), recipe_id=task.recipe_id,
                            enhanced=task.recipe_json is not None, warnings=tuple(warnings),
                            measured_gain=task.measured_gain)

    def _record(self, photo_id: int, recipe_id: int | None, path: Path, fmt: str) -> None:
        from db.schema import Export

        def fn(s: Any) -> None:
            s.add(Export(photo_id=photo_id, recipe_id=recipe_id, out_path=display_path(path),
                         out_path_bytes=os.fsencode(path), format=fmt, created_at=datetime.now()))

        self.catalog.write(fn)

    def _adopt(self, a: Adoptable) -> None:
        """Record a file a killed run of this catalog wrote but did not record (once)."""
        from sqlalchemy import select

        from db.schema import Export, Photo

        k = a.key
        if k.get("catalog") != self.catalog.url:
            return  # another catalog's export: its own next run adopts it
        pid, rid, kind = int(k.get("photo_id") or 0), k.get("recipe_id"), str(k.get("format"))
        raw = os.fsencode(a.path)

        def fn(s: Any) -> None:
            if s.get(Photo, pid) is None:
                return
            if s.scalars(select(Export.id).where(Export.out_path_bytes == raw)).first() is None:
                s.add(Export(photo_id=pid, recipe_id=rid, out_path=display_path(a.path), out_path_bytes=raw,
                             format=kind, created_at=datetime.now()))

        self.catalog.write(fn)
        self._adopted.setdefault(pid, []).append((str(a.path), rid, kind))
        with contextlib.suppress(OSError):
            a.journal.unlink()
