"""GUI responsiveness on a large catalog: the grid model and view over N photos (default 100,000).

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui.py [--photos 100000] [--runs 3]

The catalog is written straight through the db layer (photos + scores, no image files), then:

* ``open``: reload the model sorted by improvability (count + first page, on the GUI thread);
* ``resort``: sort by name with the recommended filter;
* ``page@50%``: one page of rows fetched at half depth (runs on the worker in the app);
* ``refresh``: re-reading 2,000 loaded rows (what the window does every few seconds while scoring);
* ``paint``: one full repaint of a 1200x800 grid of cells by the delegate;
* ``stall``: the longest the GUI event loop went without running while, for 8 s, a writer thread
  stored 500 new scores every 0.25 s (as scoring does) and the model refreshed in the background
  every 1.5 s and paged in rows as the view scrolled.

Prints one line per measure: the median of ``--runs`` runs (stall: max over the run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = "/photos/bench"


def fill(cat, n: int) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import insert

    from db.queries import refresh_current_scores
    from db.schema import Folder, Photo, Score
    from engine.assess.degrade import SEVERITY_NAMES

    now = datetime(2024, 1, 1)
    rng = np.random.default_rng(0)
    imp, qual = rng.normal(0.3, 0.6, n), rng.uniform(2, 9, n)
    sev = rng.uniform(0, 1, (n, len(SEVERITY_NAMES)))

    def write(s) -> None:  # type: ignore[no-untyped-def]
        fid = s.execute(insert(Folder).values(path=ROOT, path_bytes=ROOT.encode(), added_at=now)
                        .returning(Folder.id)).scalar_one()
        for a in range(0, n, 20000):
            b = min(n, a + 20000)
            s.execute(insert(Photo), [dict(
                id=i + 1, folder_id=fid, path=f"{ROOT}/d{i // 1000:03d}/IMG_{i:06d}.jpg",
                path_bytes=f"{ROOT}/d{i // 1000:03d}/IMG_{i:06d}.jpg".encode(), size=1000, mtime_ns=i,
                fingerprint=f"fp{i:08d}", width=4000, height=3000, orientation=1, format="JPEG",
                captured_at=now + timedelta(minutes=i), has_gps=False, status="ok", indexed_at=now)
                for i in range(a, b)])
            s.execute(insert(Score), [dict(
                photo_id=i + 1, model="assessor", model_version="v1", fingerprint=f"fp{i:08d}",
                improvability=float(imp[i]), quality=float(qual[i]),
                severity_json=json.dumps(dict(zip(SEVERITY_NAMES, map(float, sev[i]), strict=True))),
                recommended=bool(imp[i] > 1.0), head="", scored_at=now) for i in range(a, b) if i % 2 == 0])
        refresh_current_scores(s)

    cat.write(write)


def stall_under_scoring(app, lib, cat, n: int) -> int:  # type: ignore[no-untyped-def]
    """Worst GUI event-loop gap (ms) over 8 s of scoring-like writes with background refreshes."""
    from PySide6.QtCore import QElapsedTimer, QModelIndex, QSize, QTimer
    from PySide6.QtWidgets import QListView

    from app.delegate import PhotoDelegate
    from app.library_model import PhotoListModel

    # Responsiveness while "scoring" writes and the window refreshes in the background.
    bg = PhotoListModel(lib, background=True)
    bg.set_query(folder=ROOT, sort="improvability")
    v2 = QListView()
    v2.setViewMode(QListView.ViewMode.IconMode)
    v2.setUniformItemSizes(True)
    v2.setItemDelegate(PhotoDelegate(160, v2))
    v2.setModel(bg)
    v2.resize(QSize(1200, 800))
    v2.show()
    stop = threading.Event()
    rng = np.random.default_rng(1)

    def scorer_like() -> None:
        from sqlalchemy import update

        from db.schema import Score

        while not stop.is_set():
            ids = [int(x) for x in rng.integers(1, n, 500)]
            vals = rng.normal(0.3, 0.6, 500)

            def w(s, ids=ids, vals=vals) -> None:  # type: ignore[no-untyped-def]
                for pid, v in zip(ids, vals, strict=True):
                    s.execute(update(Score).where(Score.photo_id == pid).values(improvability=float(v)))

            cat.write(w)
            time.sleep(0.25)

    th = threading.Thread(target=scorer_like)
    th.start()
    refresh = QTimer()
    refresh.timeout.connect(bg.refresh)
    refresh.start(1500)
    scroll = QTimer()
    scroll.timeout.connect(lambda: (v2.verticalScrollBar().setValue(v2.verticalScrollBar().maximum()),
                                    bg.fetchMore(QModelIndex()) if bg.canFetchMore(QModelIndex()) else None))
    scroll.start(300)
    clock = QElapsedTimer()
    clock.start()
    worst = 0
    last = clock.elapsed()
    end = time.monotonic() + 8
    while time.monotonic() < end:
        app.processEvents()
        now = clock.elapsed()
        worst = max(worst, now - last)
        last = now
        time.sleep(0.002)
    stop.set()
    th.join()
    refresh.stop()
    scroll.stop()
    bg.shutdown()
    v2.close()
    print(f"  run: rows loaded while scrolling {bg.rowCount()}, worst stall {worst} ms")
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from PySide6.QtCore import QSize
    from PySide6.QtWidgets import QApplication, QListView

    from app.delegate import PhotoDelegate
    from app.library_model import PhotoListModel
    from app.qtfix import guard_none_refcount
    from db.catalog import Catalog
    from engine.library import Library

    app = QApplication(sys.argv[:1])
    guard_none_refcount()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    cat = Catalog.open(str(tmp / "c.sqlite"))
    t0 = time.perf_counter()
    fill(cat, args.photos)
    print(f"catalog of {args.photos} photos written in {time.perf_counter() - t0:.1f} s")
    lib = Library(cat)
    res: dict[str, list[float]] = {k: [] for k in ("open", "resort", "page@50%", "refresh", "paint", "stall")}
    for _ in range(args.runs):
        model = PhotoListModel(lib)
        t = time.perf_counter()
        model.set_query(folder=ROOT, sort="improvability", filters={})
        res["open"].append(time.perf_counter() - t)
        t = time.perf_counter()
        model.set_query(sort="name", filters={"recommended": True})
        res["resort"].append(time.perf_counter() - t)
        model.set_query(sort="improvability", filters={})
        t = time.perf_counter()
        lib.query(ROOT, "improvability", {}, args.photos // 2, PhotoListModel.PAGE)
        res["page@50%"].append(time.perf_counter() - t)
        model.load_rows(2000)
        t = time.perf_counter()
        model.refresh(sync=True)
        res["refresh"].append(time.perf_counter() - t)
        view = QListView()
        view.setViewMode(QListView.ViewMode.IconMode)
        view.setUniformItemSizes(True)
        view.setItemDelegate(PhotoDelegate(160, view))
        view.setModel(model)
        view.resize(QSize(1200, 800))
        view.show()
        app.processEvents()
        t = time.perf_counter()
        view.viewport().repaint()
        res["paint"].append(time.perf_counter() - t)
        view.close()

        worst = stall_under_scoring(app, lib, cat, args.photos)
        res["stall"].append(worst / 1000)
    for k, v in res.items():
        agg = max(v) if k == "stall" else statistics.median(v)
        print(f"{k:>10}: {agg * 1000:8.1f} ms  ({'max' if k == 'stall' else 'median'} of {len(v)})")
    cat.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
