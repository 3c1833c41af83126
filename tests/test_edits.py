"""The editor: enhance with the regression guard, history (undo/redo/revert), previews,
the batch queue that is resumed after a restart (and a kill -9), cancellation and progress."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from db.catalog import Catalog
from db.schema import Job, Photo, Recipe
from engine.core import processes
from engine.core.batch import BatchQueue
from engine.core.jobs import CancelToken, JobCancelled, Progress
from engine.enhance.edits import EditError, Editor
from tests.conftest import ImageFactory
from tests.pipeline_fixtures import index, install_fake_scorer, install_no_scorer, setup_models

ROOT = Path(__file__).resolve().parents[1]


def _lib(make_image: ImageFactory, tmp_path: Path, n: int = 3) -> Path:
    for i in range(n):
        make_image(f"img{i}.jpg", 48, 32, seed=i)
    return tmp_path / "photos"


def _rows(cat: Catalog, pid: int) -> list[tuple[int, str]]:
    with cat.session() as s:
        return [(r.version, r.status) for r in
                s.scalars(select(Recipe).where(Recipe.photo_id == pid).order_by(Recipe.version)).all()]


def _current(cat: Catalog, pid: int) -> int | None:
    with cat.session() as s:
        p = s.get(Photo, pid)
        assert p is not None
        return p.current_recipe_id


def test_enhance_measures_gain_and_records_it(tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch, "gain", gain=1.0, offset=0.1)  # brighter: the fake assessor likes it
    fs = install_fake_scorer(monkeypatch)
    ids = index(tmp_catalog, _lib(make_image, tmp_path, 1))
    res = Editor(tmp_catalog).enhance(ids[0], ops="restore")
    assert res.applied and res.measured_gain is not None and res.measured_gain > 0
    assert res.quality_after == pytest.approx(res.quality_before + res.measured_gain)
    assert "enhanced" in res.message
    assert len(fs.calls) == 2 and fs.calls[0] == fs.calls[1]  # before and after at the same size
    with tmp_catalog.session() as s:
        r = s.get(Recipe, res.recipe_id)
        assert r is not None and r.status == "applied" and r.measured_gain == pytest.approx(res.measured_gain)
        assert r.quality_before == pytest.approx(res.quality_before)
    assert _current(tmp_catalog, ids[0]) == res.recipe_id


def test_no_gain_is_reported_kept_when_single_and_not_applied_in_batches(
        tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch, "gain", gain=0.6)  # darker: "did not help"
    install_fake_scorer(monkeypatch)
    ids = index(tmp_catalog, _lib(make_image, tmp_path, 3))
    ed = Editor(tmp_catalog)
    single = ed.enhance(ids[0], ops="restore")
    assert single.applied and single.measured_gain is not None and single.measured_gain < 0
    assert "did not help" in single.message and "undo" in single.message
    assert _current(tmp_catalog, ids[0]) == single.recipe_id
    results = list(ed.enhance_batch(ids[1:], ops="restore"))
    assert [r.applied for r in results] == [False, False]
    assert all("did not help" in r.message and "not applied" in r.message for r in results)
    for pid in ids[1:]:
        assert _current(tmp_catalog, pid) is None  # the photo stays as it was
        assert _rows(tmp_catalog, pid) == [(1, "rejected")]  # but the attempt is on record


def test_without_an_assessor_the_gain_is_none_and_said_so(
        tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    ids = index(tmp_catalog, _lib(make_image, tmp_path, 2))
    results = list(Editor(tmp_catalog).enhance_batch(ids))
    for r in results:
        assert r.applied and r.measured_gain is None and r.quality_before is None
        assert "not measured" in r.message


def test_real_assessor_fixture_gives_a_measured_gain(
        tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.assess.scoring import get_scorer
    from tests.onnx_fixtures import write_assessor

    d = setup_models(tmp_path, monkeypatch, "gain", gain=0.8)
    write_assessor(d / "assessor.onnx")
    ids = index(tmp_catalog, _lib(make_image, tmp_path, 1))
    res = Editor(tmp_catalog).enhance(ids[0], ops="restore")
    assert res.measured_gain is not None
    b, a = Editor(tmp_catalog).preview(ids[0], max_side=None)
    assert a is not None
    sc = get_scorer()
    assert res.quality_before == pytest.approx(sc.assess(b).quality, abs=1e-4)
    assert res.measured_gain == pytest.approx(sc.assess(a).quality - sc.assess(b).quality, abs=0.02)


def test_undo_redo_revert_history(tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    pid = index(tmp_catalog, _lib(make_image, tmp_path, 1))[0]
    ed = Editor(tmp_catalog)
    assert ed.undo(pid).message == "nothing to undo"
    r1 = ed.enhance(pid, ops="restore")
    r2 = ed.enhance(pid, strength=0.5)
    assert _current(tmp_catalog, pid) == r2.recipe_id
    st = ed.undo(pid)
    assert st.current_recipe_id == r1.recipe_id and st.can_undo and st.can_redo
    st = ed.undo(pid)
    assert st.current_recipe_id is None and not st.can_undo and st.can_redo
    assert ed.undo(pid).message == "nothing to undo"
    assert ed.redo(pid).current_recipe_id == r1.recipe_id
    assert ed.redo(pid).current_recipe_id == r2.recipe_id
    assert ed.redo(pid).message == "nothing to redo"
    # revert is undoable
    st = ed.revert(pid)
    assert st.current_recipe_id is None and st.summary == "original" and st.can_undo
    assert ed.revert(pid).message == "already the original"
    assert ed.undo(pid).current_recipe_id == r2.recipe_id
    assert ed.redo(pid).current_recipe_id is None
    # a new edit after an undo drops the redo branch
    ed.undo(pid)
    ed.undo(pid)  # at r1
    r3 = ed.enhance(pid, ops="tone")
    assert _current(tmp_catalog, pid) == r3.recipe_id
    assert not ed.state(pid).can_redo
    statuses = dict(_rows(tmp_catalog, pid))
    assert statuses[1] == "applied" and statuses[2] == "discarded" and statuses[3] == "discarded"
    assert statuses[4] == "applied"
    assert [h.version for h in ed.history(pid)] == [1, 2, 3, 4]


def test_preview_pairs_and_none_when_unedited(tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch, "gain", gain=0.5)
    install_no_scorer(monkeypatch)
    pid = index(tmp_catalog, _lib(make_image, tmp_path, 1))[0]
    ed = Editor(tmp_catalog)
    b, a = ed.preview(pid, 32)
    assert a is None and max(b.shape[:2]) == 32
    ed.enhance(pid, ops="restore")
    b, a = ed.preview(pid, 32)
    assert a is not None and a.shape == b.shape
    # derived from the full render: JPEG DCT-scaled decode vs area resize differ by a few levels
    np.testing.assert_allclose(a.astype(float), b * 0.5, atol=4.0)
    assert abs(a.mean() - b.mean() * 0.5) < 0.5


def test_grid_thumbnail_shows_the_current_edit(tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    setup_models(tmp_path, monkeypatch, "gain", gain=0.5)
    install_no_scorer(monkeypatch)
    lib = _lib(make_image, tmp_path, 1)
    pid = index(tmp_catalog, lib)[0]
    ed = Editor(tmp_catalog)
    thumb = ed.renderer.load_view(lib / "img0.jpg", 32)
    assert ed.edited_thumbnail(pid, thumb) is thumb  # no edit: the original's thumbnail
    ed.enhance(pid, ops="restore")
    # from the preview made at enhance time, scaled to the thumbnail: half as bright
    out = ed.edited_thumbnail(pid, thumb)
    assert out.shape == thumb.shape and out.dtype == np.uint8
    np.testing.assert_allclose(out.astype(float), thumb * 0.5, atol=4.0)
    # with the render cache gone, the recipe is rendered on the thumbnail itself, then cached
    shutil.rmtree(ed.renderer.cache.root)
    again = ed.edited_thumbnail(pid, thumb)
    np.testing.assert_allclose(again.astype(float), thumb * 0.5, atol=1.0)
    assert any(ed.renderer.cache.root.rglob("*.npy"))
    ed.revert(pid)
    assert ed.edited_thumbnail(pid, thumb) is thumb


def test_changed_or_missing_source_is_refused(tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    root = _lib(make_image, tmp_path, 2)
    ids = index(tmp_catalog, root)
    make_image("img0.jpg", 48, 32, seed=99)  # same name, new content
    (root / "img1.jpg").unlink()
    ed = Editor(tmp_catalog)
    with pytest.raises(EditError, match="changed since it was indexed"):
        ed.enhance(ids[0])
    with pytest.raises(EditError, match="gone"):
        ed.enhance(ids[1])
    results = list(ed.enhance_batch(ids))  # a batch reports them and goes on
    assert all(r.error for r in results) and len(results) == 2


def _dead_owner() -> str:
    """The owner id of a process that has ended (this machine)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return f"{socket.gethostname()}|{p.pid}|"


def _jobs(cat: Catalog) -> list[tuple[int | None, str]]:
    with cat.session() as s:
        return [(j.photo_id, j.state) for j in s.scalars(select(Job).order_by(Job.id)).all()]


def test_batch_queue_survives_a_restart_and_cancel(tmp_path: Path, make_image: ImageFactory,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    url = str(tmp_path / "cat.sqlite")
    cat = Catalog.open(url)
    ids = index(cat, _lib(make_image, tmp_path, 4))
    ed = Editor(cat)
    ed.queue = BatchQueue(cat, owner=_dead_owner())  # the last session, whose process is gone at the restart
    batch = ed.queue_enhance(ids, ops="restore")
    it = ed.run_queue(batch, progress=[].append, cancel=CancelToken())
    first = next(it)
    assert first.applied
    cat.close()  # "the app quits" with three jobs still queued

    cat = Catalog.open(url)
    ed = Editor(cat)
    assert ed.interrupted() == 3
    progress: list[Progress] = []
    rest = list(ed.resume_interrupted(progress=progress.append))
    assert [r.photo_id for r in rest] == ids[1:] and all(r.applied for r in rest)
    assert progress[-1].done == progress[-1].total == 3
    assert any("left" in p.message for p in progress[1:-1])  # a time estimate while running
    assert ed.interrupted() == 0 and list(ed.resume_interrupted()) == []  # nothing twice
    assert all(_rows(cat, pid) == [(1, "applied")] for pid in ids)
    # cancel: remaining items are marked cancelled, nothing half-applied
    batch = ed.queue_enhance(ids[:2], ops="restore")
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(JobCancelled):
        list(ed.run_queue(batch, cancel=tok))
    assert ed.queue.counts("enhance", batch) == {"cancelled": 2}
    assert ed.interrupted() == 0  # a user's cancel is not resumed
    # queueing photos again supersedes their queued jobs: nothing is done twice
    b1 = ed.queue_enhance(ids[:3], ops="restore")
    b2 = ed.queue_enhance(ids[1:], ops="restore")
    assert ed.queue.counts("enhance", b2) == {"queued": 3}
    assert ed.queue.counts("enhance", b1) == {"queued": 1, "cancelled": 2}
    assert [r.photo_id for r in ed.run_queue(b1)] == [ids[0]]
    # ... also while the older batch is already running: its superseded job is skipped, not run
    it = ed.run_queue(b2)
    assert next(it).photo_id == ids[1]
    b3 = ed.queue_enhance(ids[2:3], ops="restore")
    assert [r.photo_id for r in it] == [ids[3]]
    assert [r.photo_id for r in ed.run_queue(b3)] == [ids[2]]
    assert [len(_rows(cat, pid)) for pid in ids] == [2, 2, 2, 2]  # the restart's, then one each
    cat.close()


def test_one_photo_is_enhanced_without_queue_rows(tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    root = _lib(make_image, tmp_path, 3)
    ids = index(tmp_catalog, root)
    ed = Editor(tmp_catalog)
    progress: list[Progress] = []
    [res] = list(ed.enhance_batch([ids[0]], ops="restore", progress=progress.append))  # the one-click button
    assert res.applied and _rows(tmp_catalog, ids[0]) == [(1, "applied")]
    assert progress[-1].done == progress[-1].total == 1
    with pytest.raises(ValueError):  # bad options fail at the call, as for a batch
        ed.enhance_batch([ids[0]], ops="nonsense")
    (root / "img1.jpg").unlink()
    [bad] = list(ed.enhance_batch([ids[1]]))  # a photo that fails is its result, as in a batch
    assert bad.error and "gone" in bad.error and not bad.applied
    assert _jobs(tmp_catalog) == []  # nothing queued, nothing left to resume
    results = list(ed.enhance_batch([ids[0], ids[2]], ops="restore"))  # a batch is queued
    assert [r.photo_id for r in results] == [ids[0], ids[2]]
    assert _jobs(tmp_catalog) == [(ids[0], "done"), (ids[2], "done")]


def test_a_batch_of_a_running_process_or_of_another_machine_is_not_resumed(
        tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    ids = index(tmp_catalog, _lib(make_image, tmp_path, 3))
    here = socket.gethostname()
    assert processes.owner_gone(None) and processes.owner_gone(_dead_owner())
    assert not processes.owner_gone(processes.this_process())
    assert not processes.owner_gone("elsewhere.invalid|1|")  # cannot be checked from here: running
    other = Editor(tmp_catalog)
    other.queue = BatchQueue(tmp_catalog, owner="elsewhere.invalid|1|")
    other.queue_enhance(ids[2:], ops="restore")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = f"{here}|{sleeper.pid}|{processes._start_of(sleeper.pid)}"
        assert not processes.owner_gone(live)
        if processes._start_of(sleeper.pid):  # where the system tells start times: a reused pid is not the owner
            assert processes.owner_gone(f"{here}|{sleeper.pid}|another-boot:1")
        busy = Editor(tmp_catalog)
        busy.queue = BatchQueue(tmp_catalog, owner=live)
        busy.queue_enhance(ids[:2], ops="restore")
        ed = Editor(tmp_catalog)
        assert ed.interrupted() == 0 and list(ed.resume_interrupted()) == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert ed.interrupted() == 2  # its process is gone now
    assert [r.photo_id for r in ed.resume_interrupted()] == ids[:2]
    assert _jobs(tmp_catalog) == [(ids[2], "queued"), (ids[0], "done"), (ids[1], "done")]


def test_kill_9_during_a_batch_leaves_a_consistent_catalog_and_the_rerun_completes(
        tmp_path: Path, make_image: ImageFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    models = setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    url = str(tmp_path / "cat.sqlite")
    cat = Catalog.open(url)
    ids = index(cat, _lib(make_image, tmp_path, 5))
    cat.close()
    marker = tmp_path / "started"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import engine.enhance.edits as E
        import engine.enhance.guard as G
        G._scorer_or_reason = lambda: (None, "no assessor in this test")
        from db.catalog import Catalog
        cat = Catalog.open({url!r})
        ed = E.Editor(cat)
        batch = ed.queue_enhance({ids!r}, ops="restore")
        orig = ed.renderer.full
        n = [0]
        def slow(*a, **k):
            n[0] += 1
            if n[0] == 3:
                open({str(marker)!r}, "w").close()
                time.sleep(60)  # killed here, mid-batch
            return orig(*a, **k)
        ed.renderer.full = slow
        for r in ed.run_queue(batch):
            print(r.photo_id, flush=True)
    """)
    env = dict(os.environ, PHOTOLIFT_MODELS=str(models), PHOTOLIFT_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cat = Catalog.open(url)
    try:
        with cat.session() as s:
            states = sorted(j.state for j in s.scalars(select(Job)).all())
        assert states == ["done", "done", "queued", "queued", "running"]
        for pid in ids:  # every photo either untouched or fully edited
            cur = _current(cat, pid)
            assert cur is None or _rows(cat, pid) == [(1, "applied")]
        assert Editor(cat).interrupted() == 3
        rest = list(Editor(cat).resume_interrupted())  # what the next start does
        assert len(rest) == 3 and all(r.applied for r in rest)
        for pid in ids:
            assert _rows(cat, pid) == [(1, "applied")]  # no photo enhanced twice
        with cat.session() as s:
            assert {j.state for j in s.scalars(select(Job)).all()} == {"done"}
    finally:
        cat.close()


def test_one_enhance_decodes_the_full_resolution_original_once(
        tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.ingest.imageio as imageio
    from engine.enhance.render import RenderCache, Renderer
    from engine.export.files import enhance_file

    setup_models(tmp_path, monkeypatch, "gain", gain=1.0, offset=0.1)
    fs = install_fake_scorer(monkeypatch)
    root = _lib(make_image, tmp_path, 2)
    ids = index(tmp_catalog, root)
    full: list[int] = []
    real = imageio.decode

    def counting(data: bytes, ext: str = "", max_side: int | None = None, reduce: int = 1,
                 **kw: object) -> object:
        if max_side is None and reduce == 1:
            full.append(len(data))
        return real(data, ext, max_side=max_side, reduce=reduce, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(imageio, "decode", counting)
    res = Editor(tmp_catalog).enhance(ids[0], ops="restore")
    assert res.measured_gain is not None and len(fs.calls) == 2  # measured against that decode
    assert len(full) == 1
    full.clear()
    out = tmp_path / "out"
    out.mkdir()
    r = enhance_file(root / "img1.jpg", out, Renderer(cache=RenderCache(tmp_path / "c2")), ["restore"], force=True)
    assert r.status == "ok" and r.measured_gain is not None
    assert len(full) == 1  # a file outside the catalog too


def test_rate_and_bad_rating(tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    setup_models(tmp_path, monkeypatch)
    install_no_scorer(monkeypatch)
    pid = index(tmp_catalog, _lib(make_image, tmp_path, 1))[0]
    ed = Editor(tmp_catalog)
    r = ed.enhance(pid, ops="restore")
    from db.schema import Rating

    rid = ed.rate(pid, 2)
    with tmp_catalog.session() as s:
        row = s.get(Rating, rid)
        assert row is not None and row.recipe_id == r.recipe_id and row.rating == 2
    with pytest.raises(ValueError):
        ed.rate(pid, 3)
