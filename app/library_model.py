"""The grid's item model: photo rows paged in from SQL, thumbnails loaded lazily.

A ``QAbstractListModel`` over the rows of ``Library.query`` (sorting and filtering happen in SQL,
the model never sorts a Python list). Rows arrive a page at a time through ``canFetchMore`` /
``fetchMore``, so a 100,000-photo library costs one page of rows until the user scrolls.

``data(ThumbRole)`` returns a cached ``QPixmap`` or None and asks the ``ThumbnailLoader`` for the
real one once; when it arrives the pixmap is made here, on the GUI thread, and ``dataChanged``
is emitted for that row only. The pixmap cache is bounded (least recently used out).

While indexing and scoring run, ``refresh()`` re-reads the rows already loaded and moves them to
their new places with ``layoutChanged`` (persistent indexes, hence the selection, follow the
photos), and picks up the new total.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QImage, QPixmap

from app.workers import LatestTask, ThumbnailLoader

log = logging.getLogger(__name__)

Index = QModelIndex | QPersistentModelIndex


class Roles(IntEnum):
    PhotoId = Qt.ItemDataRole.UserRole + 1
    Row = Qt.ItemDataRole.UserRole + 2        # the engine's PhotoRow (frozen dataclass)
    Thumb = Qt.ItemDataRole.UserRole + 3      # QPixmap | None
    ThumbFailed = Qt.ItemDataRole.UserRole + 4


SORTS = ("improvability", "quality", "date", "name")


@dataclass
class Query:
    folder: str | None = None
    sort: str = "improvability"
    filters: dict[str, Any] = field(default_factory=dict)


class PhotoListModel(QAbstractListModel):
    """Rows of ``library.query(folder, sort, filters, offset, limit)``; see the module docstring."""

    totalChanged = Signal(int)

    PAGE = 400
    PIXMAP_CACHE = 3000

    def __init__(self, library: Any, thumbs: ThumbnailLoader | None = None, thumb_size: int = 256,
                 parent: QObject | None = None, background: bool = False) -> None:
        """``background``: run the paging and refresh queries on a worker thread (the window
        does; on a 100k catalog one sorted page costs ~0.3 s of SQL, too long for the GUI
        thread). Without it every query is synchronous (tests, scripts)."""
        super().__init__(parent)
        self._gen = 0  # bumped when the query changes: late results of the old one are dropped
        self._fetch_pending = False
        self._task: LatestTask | None = None
        if background:
            self._task = LatestTask(self)
            self._task.done.connect(self._on_task)
            self._task.failed.connect(self._on_task_failed)
        self._library = library
        self._thumbs = thumbs
        self._thumb_size = thumb_size
        self._query = Query()
        self._rows: list[Any] = []
        self._row_of: dict[int, int] = {}
        self._total = 0
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._failed: set[int] = set()
        self._requested: set[int] = set()
        self.last_refresh_s = 0.0
        if thumbs is not None:
            thumbs.loaded.connect(self._on_thumb)
            thumbs.forgotten.connect(self._on_forgotten)

    # -- query ---------------------------------------------------------------------------
    @property
    def query(self) -> Query:
        return self._query

    def set_query(self, folder: str | None = None, sort: str | None = None,
                  filters: dict[str, Any] | None = None) -> None:
        q = Query(folder if folder is not None else self._query.folder,
                  sort or self._query.sort,
                  dict(filters) if filters is not None else dict(self._query.filters))
        if q.sort not in SORTS:
            raise ValueError(f"unknown sort {q.sort!r}")
        self._query = q
        self.reload()

    def set_folder(self, folder: str | None) -> None:
        self._query = Query(folder, self._query.sort, dict(self._query.filters))
        self.reload()

    def reload(self) -> None:
        """Start over from the first page (sort, filter or folder changed)."""
        self._gen += 1
        self._fetch_pending = False
        self.beginResetModel()
        # The first page is read inside the reset, so views see one consistent change.
        self._total = self._count()
        self._rows = self._fetch(0, min(self.PAGE, self._total))
        self._row_of = {int(r.id): i for i, r in enumerate(self._rows)}
        self.endResetModel()
        self.totalChanged.emit(self._total)

    def _count(self, q: Query | None = None) -> int:
        q = q or self._query
        if self._library is None or q.folder is None:
            return 0
        return int(self._library.count(q.folder, q.filters))

    def _fetch(self, offset: int, limit: int, q: Query | None = None) -> list[Any]:
        q = q or self._query
        if self._library is None or q.folder is None or limit <= 0:
            return []
        return list(self._library.query(q.folder, q.sort, q.filters, offset, limit))

    # Background queries: the worker only reads the library; rows are applied here, on the GUI thread.
    def _on_task(self, result: tuple[Any, ...]) -> None:
        kind, gen = result[0], result[1]
        self._fetch_pending = False
        if gen != self._gen:
            return
        if kind == "page":
            _, _, start, rows = result
            if start == len(self._rows):
                self._insert_page(start, rows)
        else:
            _, _, total, rows, cost = result
            self._apply_refresh(rows, total)
            self.last_refresh_s = cost

    def _on_task_failed(self, message: str) -> None:
        self._fetch_pending = False
        log.warning("library query failed: %s", message)

    def _insert_page(self, start: int, new: list[Any]) -> None:
        if not new:
            self._total = start  # the catalog shrank under us; the next refresh recounts
            return
        self.beginInsertRows(QModelIndex(), start, start + len(new) - 1)
        for i, r in enumerate(new):
            self._row_of[int(r.id)] = start + i
        self._rows.extend(new)
        self.endInsertRows()

    def busy(self) -> bool:
        return self._fetch_pending

    def shutdown(self) -> None:
        if self._task is not None:
            self._task.shutdown()

    # -- Qt model API --------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def canFetchMore(self, parent: Index) -> bool:
        return not parent.isValid() and len(self._rows) < self._total

    def fetchMore(self, parent: Index) -> None:
        if parent.isValid():
            return
        start = len(self._rows)
        limit = min(self.PAGE, self._total - start)
        if self._task is not None:
            if self._fetch_pending:
                return
            self._fetch_pending = True
            q, gen = self._query, self._gen
            self._task.submit(lambda: ("page", gen, start, self._fetch(start, limit, q)))
            return
        self._insert_page(start, self._fetch(start, limit))

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        return self._data(index, role)

    def _data(self, index: Index, role: int) -> Any:
        if not index.isValid() or index.parent().isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return display_name(row)
        if role == Roles.PhotoId:
            return int(row.id)
        if role == Roles.Row:
            return row
        if role == Roles.Thumb:
            return self._thumbnail(int(row.id))
        if role == Roles.ThumbFailed:
            return int(row.id) in self._failed
        if role == Qt.ItemDataRole.ToolTipRole:
            return tooltip(row)
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        names = dict(super().roleNames())
        names.update({int(Roles.PhotoId): QByteArray(b"photoId"), int(Roles.Row): QByteArray(b"row"),
                      int(Roles.Thumb): QByteArray(b"thumb")})
        return names

    # -- rows ----------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return self._total

    def row_for_id(self, photo_id: int) -> int | None:
        return self._row_of.get(photo_id)

    def photo_at(self, row: int) -> Any:
        return self._rows[row]

    def ids(self) -> list[int]:
        return [int(r.id) for r in self._rows]

    def refresh(self, sync: bool = False) -> None:
        """Re-read the loaded rows (scores arrived, photos were indexed) keeping the selection.
        In the background unless ``sync`` (or the model has no worker)."""
        want = max(len(self._rows), self.PAGE)
        if self._task is not None and not sync:
            if self._task.busy():
                return  # the previous refresh is still running; the next tick will ask again
            self._fetch_pending = True
            q, gen = self._query, self._gen

            def run() -> tuple[Any, ...]:
                t0 = time.perf_counter()
                total = self._count(q)
                rows = self._fetch(0, min(want, total), q)
                return "refresh", gen, total, rows, time.perf_counter() - t0

            self._task.submit(run)
            return
        t0 = time.perf_counter()
        self._gen += 1  # a background result still on its way is older than this
        self._fetch_pending = False
        total = self._count()
        self._apply_refresh(self._fetch(0, min(want, total)), total)
        self.last_refresh_s = time.perf_counter() - t0

    def load_rows(self, n: int | None = None) -> None:
        """Synchronously page in rows until ``n`` are loaded (None: all), e.g. for "go to last"."""
        while self.canFetchMore(QModelIndex()) and (n is None or len(self._rows) < n):
            start = len(self._rows)
            before = start
            self._insert_page(start, self._fetch(start, min(self.PAGE, self._total - start)))
            if len(self._rows) == before:
                break

    def _apply_refresh(self, new: list[Any], total: int) -> None:
        old_ids = [int(r.id) for r in self._rows]
        old_n = len(old_ids)
        if len(new) < old_n:
            self.reload()
            return
        head, tail = new[:old_n], new[old_n:]
        if old_n:
            if [int(r.id) for r in head] == old_ids:
                self._rows[:] = head
                self.dataChanged.emit(self.index(0), self.index(old_n - 1))
            else:
                self.layoutAboutToBeChanged.emit()
                self._rows[:] = head
                self._row_of = {int(r.id): i for i, r in enumerate(self._rows)}
                persistent = self.persistentIndexList()
                moved = []
                for pi in persistent:
                    # Persistent indexes still hold the old row numbers: follow their photo by id.
                    pid = old_ids[pi.row()] if 0 <= pi.row() < old_n else None
                    r = self._row_of.get(pid) if pid is not None else None
                    moved.append(self.index(r) if r is not None else QModelIndex())
                self.changePersistentIndexList(persistent, moved)
                self.layoutChanged.emit()
        self._total = total
        if tail:
            self._insert_page(old_n, tail)
        self.totalChanged.emit(self._total)

    def update_photo(self, photo_id: int, row_obj: Any) -> None:
        """Replace one row's data in place (e.g. after an enhancement) without moving it."""
        r = self._row_of.get(photo_id)
        if r is None:
            return
        self._rows[r] = row_obj
        idx = self.index(r)
        self.dataChanged.emit(idx, idx)

    # -- thumbnails ----------------------------------------------------------------------
    def _thumbnail(self, photo_id: int) -> QPixmap | None:
        pm = self._pixmaps.get(photo_id)
        if pm is not None:
            self._pixmaps.move_to_end(photo_id)
            return pm
        if photo_id in self._failed or photo_id in self._requested or self._thumbs is None:
            return None
        self._requested.add(photo_id)
        self._thumbs.request(photo_id)
        return None

    def _on_thumb(self, photo_id: int, image: QImage | None) -> None:
        self._requested.discard(photo_id)
        if image is None or image.isNull():
            self._failed.add(photo_id)
        else:
            self._pixmaps[photo_id] = QPixmap.fromImage(image)  # GUI thread: safe
            self._pixmaps.move_to_end(photo_id)
            while len(self._pixmaps) > self.PIXMAP_CACHE:
                self._pixmaps.popitem(last=False)
        r = self._row_of.get(photo_id)
        if r is not None and r < len(self._rows):
            idx = self.index(r)
            self.dataChanged.emit(idx, idx, [Roles.Thumb])

    def _on_forgotten(self, ids: list[int]) -> None:
        for pid in ids:
            self._requested.discard(pid)

    def forget_thumbnail(self, photo_id: int) -> None:
        """Drop a cached thumbnail so it is asked for again (the photo changed)."""
        self._pixmaps.pop(photo_id, None)
        self._failed.discard(photo_id)
        self._requested.discard(photo_id)
        r = self._row_of.get(photo_id)
        if r is not None:
            idx = self.index(r)
            self.dataChanged.emit(idx, idx, [Roles.Thumb])

    def cached_thumbnails(self) -> int:
        return len(self._pixmaps)


def display_name(row: Any) -> str:
    name = getattr(row, "name", None)
    if name:
        return str(name)
    path = str(getattr(row, "path", ""))
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def tooltip(row: Any) -> str:
    lines = [str(getattr(row, "path", ""))]
    if getattr(row, "status", "ok") == "error":
        lines.append(f"Error: {getattr(row, 'error', None) or 'unknown'}")
    imp = getattr(row, "improvability", None)
    if imp is not None:
        lines.append(f"Improvability {imp:+.2f}")
    return "\n".join(lines)
