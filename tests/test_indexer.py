"""The incremental indexer: bad files as state, unusual images, moves, missing files, loops, cancel."""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from db.catalog import Catalog
from db.queries import refresh_current_scores
from db.schema import Photo, Recipe, Score
from engine.core.jobs import CancelToken, JobCancelled, Progress
from engine.ingest import indexer as indexer_mod
from engine.ingest import scan as scan_mod
from engine.ingest.indexer import IndexEvent, fingerprint
from engine.library import Library
from tests.conftest import ImageFactory, exif_bytes, make_rgb
from tests.test_imageio import _fake_raw, _jpeg_bytes, _png_header_only


@pytest.fixture
def lib(tmp_catalog: Catalog, tmp_path: Path) -> Library:
    return Library(tmp_catalog, thumb_dir=tmp_path / "thumbs")


def run(lib: Library, root: Path, **kw: object) -> list[IndexEvent]:
    return list(lib.index(root, **kw))  # type: ignore[arg-type]


def rows(cat: Catalog) -> dict[str, Photo]:
    with cat.session() as s:
        return {Path(p.fs_path).name: p for p in s.scalars(select(Photo))}


def kinds(events: list[IndexEvent]) -> dict[str, int]:
    done = events[-1]
    assert done.kind == "done" and done.counts is not None
    return done.counts


def test_first_run_then_unchanged_rerun_reads_nothing(lib: Library, make_image: ImageFactory, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "photos"
    make_image("a.jpg", 80, 60, exif=exif_bytes(make="Canon", model="EOS R5", iso=400, gps=True))
    make_image("sub/b.png", 30, 20)
    make_image("sub/deeper/c.webp", 16, 16)
    (root / "notes.txt").write_text("not a photo, wrong extension: ignored")
    ev = run(lib, root)
    c = kinds(ev)
    assert c["files"] == 3 and c["added"] == 3 and c["error"] == 0
    r = rows(lib.catalog)
    a = r["a.jpg"]
    assert (a.width, a.height, a.status, a.format) == (80, 60, "ok", "JPEG")
    assert a.camera_make == "Canon" and a.camera_model == "EOS R5" and a.iso == 400 and a.has_gps
    assert a.captured_at == datetime(2024, 5, 17, 10, 30) and a.f_number == pytest.approx(2.8)
    assert a.fingerprint == fingerprint(root / "a.jpg")
    for p in r.values():
        assert p.fingerprint and lib.thumbs.has(p.fingerprint)

    # unchanged re-run: must not open, hash or decode anything
    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("unchanged re-run touched file content")

    monkeypatch.setattr(scan_mod, "decode", boom)
    monkeypatch.setattr(scan_mod, "fingerprint", boom)
    monkeypatch.setattr(scan_mod, "fingerprint_bytes", boom)
    ev2 = run(lib, root)
    assert [e.kind for e in ev2] == ["done"]
    assert kinds(ev2)["unchanged"] == 3


def test_bad_files_are_recorded_and_the_scan_goes_on(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_image("good1.jpg")
    make_image("good2.png")
    (root / "zero.jpg").write_bytes(b"")
    full = _jpeg_bytes(300, 200)
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "page.jpg").write_text("<html><body>Not found</body></html>")
    (root / "bomb.png").write_bytes(_png_header_only(50000, 50000))
    good = _jpeg_bytes(40, 30, exif=exif_bytes(orientation=6))
    i = good.find(b"Exif\x00\x00")
    broken = bytearray(good)
    broken[i + 6:i + 40] = b"\xde\xad" * 17
    (root / "broken_exif.jpg").write_bytes(bytes(broken))
    if sys.platform.startswith("linux"):
        odd = os.fsencode(str(root)) + b"/caf\xe9-latin1.jpg"  # not valid UTF-8
        with open(odd, "wb") as f:
            f.write(_jpeg_bytes(20, 10))
    ev = run(lib, root)
    by = {Path(e.path).name: e for e in ev if e.kind in ("added", "error")}
    r = rows(lib.catalog)
    expect = {"zero.jpg": "empty", "truncated.jpg": "truncated", "page.jpg": "not_image", "bomb.png": "bomb"}
    for name, code in expect.items():
        assert r[name].status == "error" and r[name].error_code == code, (name, r[name].error)
        assert r[name].error and by[name].error == r[name].error
    assert "HTML" in (r["page.jpg"].error or "")
    assert r["good1.jpg"].status == r["good2.png"].status == "ok"
    be = r["broken_exif.jpg"]
    assert be.status == "ok" and be.warning and "EXIF" in be.warning
    if sys.platform.startswith("linux"):
        odd_row = r[os.fsdecode(b"caf\xe9-latin1.jpg")]
        assert odd_row.status == "ok" and odd_row.path.endswith("caf\\xe9-latin1.jpg")
        assert odd_row.path_bytes.endswith(b"caf\xe9-latin1.jpg")
        assert lib.thumbnail(odd_row.id) is not None
    # bad files are not re-examined when unchanged; they stay recorded
    assert kinds(run(lib, root))["unchanged"] == len(r)


def test_unreadable_file(lib: Library, make_image: ImageFactory, tmp_path: Path, lock_file) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "photos"
    p = make_image("locked.jpg")
    make_image("fine.jpg")
    lock_file(p)
    run(lib, root)
    r = rows(lib.catalog)
    assert r["locked.jpg"].status == "error" and r["locked.jpg"].error_code == "permission"
    assert "permission" in (r["locked.jpg"].error or "").lower()
    assert r["fine.jpg"].status == "ok"
    lock_file.unlock(p)  # fixed permissions are picked up although size and mtime did not change
    run(lib, root)
    assert rows(lib.catalog)["locked.jpg"].status == "ok"


def test_unusual_valid_images(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    import cv2

    root = tmp_path / "photos"
    root.mkdir(parents=True)
    Image.new("CMYK", (40, 30), (10, 200, 30, 0)).save(root / "cmyk.jpg")
    g16 = (np.tile(np.linspace(0, 65535, 40), (30, 1))).astype(np.uint16)
    Image.fromarray(g16).save(root / "gray16.png")
    cv2.imwrite(str(root / "rgb16.tif"), np.full((30, 40, 3), 40000, np.uint16))
    Image.fromarray(make_rgb(40, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.png")
    Image.fromarray(np.dstack([make_rgb(40, 30), np.full((30, 40), 128, np.uint8)]), "RGBA").save(root / "alpha.png")
    Image.fromarray(make_rgb(40, 30)).convert("L").save(root / "gray.jpg")
    make_image("rotated.jpg", 40, 30, exif=exif_bytes(orientation=6))
    Image.new("RGB", (1, 1), (1, 2, 3)).save(root / "tiny.png")
    Image.new("RGB", (6000, 4000), (100, 110, 120)).save(root / "large.jpg", quality=60)
    _fake_raw(root, "raw.nef")
    try:
        Image.fromarray(make_rgb(40, 30)).save(root / "phone.heic", format="HEIF")
    except Exception:
        pass
    run(lib, root)
    r = rows(lib.catalog)
    for name, p in r.items():
        assert p.status == "ok", (name, p.error)
    size = {n: (p.width, p.height) for n, p in r.items()}
    assert size["rotated.jpg"] == (30, 40) and r["rotated.jpg"].orientation == 6
    assert size["tiny.png"] == (1, 1) and size["large.jpg"] == (6000, 4000)
    assert size["raw.nef"] == (80, 120) and r["raw.nef"].format == "RAW/NEF" and r["raw.nef"].camera_model == "R1"
    for n in ("cmyk.jpg", "gray16.png", "rgb16.tif", "palette.png", "alpha.png", "gray.jpg"):
        assert size[n] == (40, 30), n
    t = lib.thumbnail(r["rotated.jpg"].id)
    assert t is not None and t.shape == (40, 30, 3)  # portrait after orientation
    tl = lib.thumbnail(r["large.jpg"].id, size=128)
    assert tl is not None and tl.shape[1:] == (128, 3) and 84 <= tl.shape[0] <= 86


def _add_score_and_recipe(cat: Catalog, photo_id: int, fp: str) -> None:
    def fn(s):  # type: ignore[no-untyped-def]
        s.add(Score(photo_id=photo_id, model="assessor", model_version="v1", fingerprint=fp, improvability=1.5,
                    quality=4.0, severity_json=json.dumps({"noise": 0.8, "defocus_blur": 0.1}),
                    recommended=True, scored_at=datetime.now()))
        refresh_current_scores(s)
        rec = Recipe(photo_id=photo_id, version=1, created_at=datetime.now(), recipe_json='{"ops": ["restore"]}')
        s.add(rec)
        s.flush()
        s.get(Photo, photo_id).current_recipe_id = rec.id
    cat.write(fn)


def test_move_and_rename_keep_scores_and_edits(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    a = make_image("a.jpg", seed=1)
    make_image("b.jpg", seed=2)
    run(lib, root)
    r = rows(lib.catalog)
    pid, fp = r["a.jpg"].id, r["a.jpg"].fingerprint
    assert fp
    _add_score_and_recipe(lib.catalog, pid, fp)
    (root / "2024" / "trip").mkdir(parents=True)
    a.rename(root / "2024" / "trip" / "renamed.jpg")
    ev = run(lib, root)
    moved = [e for e in ev if e.kind == "moved"]
    assert len(moved) == 1 and moved[0].photo_id == pid and moved[0].old_path and moved[0].old_path.endswith("a.jpg")
    c = kinds(ev)
    assert c["moved"] == 1 and c["missing"] == 0 and c["added"] == 0
    info = lib.photo(pid)
    assert info.path.endswith("2024/trip/renamed.jpg") and info.status == "ok"
    assert info.score is not None and info.score.improvability == 1.5
    assert info.recipe is not None and info.recipe.ops == ("restore",)
    # a copy of a photo that still exists is a new photo, not a move
    shutil.copy2(root / "b.jpg", root / "b_copy.jpg")
    c2 = kinds(run(lib, root))
    assert c2["added"] == 1 and c2["moved"] == 0
    assert rows(lib.catalog)["b_copy.jpg"].id != rows(lib.catalog)["b.jpg"].id


def test_missing_keeps_edits_and_comes_back(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    a = make_image("a.jpg")
    make_image("b.jpg", seed=3)
    run(lib, root)
    pid = rows(lib.catalog)["a.jpg"].id
    _add_score_and_recipe(lib.catalog, pid, rows(lib.catalog)["a.jpg"].fingerprint or "")
    saved = a.read_bytes()
    a.unlink()
    ev = run(lib, root)
    assert [e.photo_id for e in ev if e.kind == "missing"] == [pid]
    assert lib.photo(pid).status == "missing" and lib.photo(pid).recipe is not None
    assert lib.count(str(root)) == 1  # missing photos are hidden by default
    assert lib.count(str(root), {"include_missing": True}) == 2
    assert lib.photo_record(pid)["status"] == "error" and "missing" in lib.photo_record(pid)["error"]
    a.write_bytes(saved)
    run(lib, root)
    info = lib.photo(pid)
    assert info.status == "ok" and info.recipe is not None and info.score is not None


def test_missing_then_moved_elsewhere_is_found(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    a = make_image("a.jpg")
    run(lib, root)
    pid = rows(lib.catalog)["a.jpg"].id
    other = tmp_path / "other"
    other.mkdir()
    a.rename(other / "a_moved.jpg")
    run(lib, root)
    assert lib.photo(pid).status == "missing"
    ev = run(lib, other)
    assert [e.photo_id for e in ev if e.kind == "moved"] == [pid]
    assert lib.photo(pid).status == "ok" and lib.photo(pid).path.endswith("other/a_moved.jpg")


def test_edit_and_touch(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    a = make_image("a.jpg", 64, 48, seed=1)
    run(lib, root)
    before = rows(lib.catalog)["a.jpg"]
    _add_score_and_recipe(lib.catalog, before.id, before.fingerprint or "")
    assert lib.query(str(root))[0].improvability == 1.5
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched: same bytes
    ev = run(lib, root)
    assert kinds(ev)["touched"] == 1
    assert rows(lib.catalog)["a.jpg"].fingerprint == before.fingerprint
    make_image("a.jpg", 100, 50, seed=9)  # rewritten with other content
    ev2 = run(lib, root)
    assert kinds(ev2)["updated"] == 1
    after = rows(lib.catalog)["a.jpg"]
    assert after.id == before.id and after.fingerprint != before.fingerprint and after.width == 100
    assert lib.query(str(root))[0].improvability is None  # the old score was for other content
    assert lib.photo(after.id).recipe is not None


def test_symlink_loops_and_hidden_folders(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_image("a.jpg")
    make_image("sub/b.jpg", seed=2)
    make_image(".hidden/h.jpg", seed=3)
    make_image("@eaDir/nas_thumb.jpg", seed=4)
    make_image("$RECYCLE.BIN/trash.jpg", seed=5)
    make_image("._a.jpg", seed=6)
    os.symlink(root, root / "sub" / "loop")  # a loop back to the root
    os.symlink(root / "sub", root / "sub" / "deeper_loop")
    os.symlink(root / "nothing.jpg", root / "dangling.jpg")
    c = kinds(run(lib, root))
    assert c["files"] == 2 and c["added"] == 2
    assert sorted(rows(lib.catalog)) == ["a.jpg", "b.jpg"]


def test_cancel_then_resume(lib: Library, make_image: ImageFactory, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "photos"
    for i in range(40):
        make_image(f"p{i:02d}.jpg", 24, 16, seed=i)
    monkeypatch.setattr(indexer_mod, "BATCH_FILES", 5)
    token = CancelToken()
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        if p.total and p.done >= 12:
            token.cancel()

    with pytest.raises(JobCancelled):
        run(lib, root, progress=progress, cancel=token)
    n_done = len(rows(lib.catalog))
    assert 12 <= n_done < 40
    assert all(p.status == "ok" for p in rows(lib.catalog).values())
    ev = run(lib, root)
    c = kinds(ev)
    assert c["unchanged"] == n_done and c["added"] == 40 - n_done and c["missing"] == 0
    assert len(rows(lib.catalog)) == 40


def test_progress_is_monotonic_and_complete(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(7):
        make_image(f"p{i}.jpg", seed=i)
    seen: list[Progress] = []
    run(lib, root, progress=seen.append)
    counted = [p for p in seen if p.total is not None]
    assert counted[-1].done == counted[-1].total == 7
    assert all(a.done <= b.done for a, b in zip(counted, counted[1:], strict=False))


def test_files_deleted_or_rewritten_during_scan(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_image("keep.jpg")
    gone = make_image("gone.jpg", seed=2)
    growing = make_image("growing.jpg", seed=3)
    fired = []

    def progress(p: Progress) -> None:  # runs after the walk, before files are read
        if p.total is not None and not fired:
            fired.append(1)
            gone.unlink()
            with open(growing, "ab") as f:
                f.write(b"\x00" * 5000)  # still being copied

    ev = run(lib, root, progress=progress)
    assert [Path(e.path).name for e in ev if e.kind == "vanished"] == ["gone.jpg"]
    r = rows(lib.catalog)
    assert "gone.jpg" not in r and r["keep.jpg"].status == "ok"
    assert r["growing.jpg"].status == "error" and r["growing.jpg"].error_code == "changing"
    run(lib, root)  # the copy has finished: indexed properly next time
    assert rows(lib.catalog)["growing.jpg"].status == "ok"


def test_index_bad_root(lib: Library, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run(lib, tmp_path / "nope")
    (tmp_path / "f.jpg").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        run(lib, tmp_path / "f.jpg")


def test_query_sort_filter_page(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i, when in enumerate(["2021:01:01 00:00:00", "2023:01:01 00:00:00", "2022:01:01 00:00:00", None]):
        make_image(f"p{i}.jpg", seed=i, exif=exif_bytes(when=when) if when else None)
    (root / "bad.jpg").write_bytes(b"")
    run(lib, root)
    r = rows(lib.catalog)

    def score(name: str, imp: float, q: float, rec: bool) -> None:
        p = r[name]

        def fn(s):  # type: ignore[no-untyped-def]
            s.add(Score(photo_id=p.id, model="assessor", model_version="v1", fingerprint=p.fingerprint,
                        improvability=imp, quality=q, severity_json=json.dumps({"noise": imp / 3, "clipping": 0.2}),
                        recommended=rec, scored_at=datetime.now()))
            refresh_current_scores(s)
        lib.catalog.write(fn)

    score("p0.jpg", 0.5, 7.0, False)
    score("p1.jpg", 2.0, 3.0, True)
    score("p2.jpg", 1.0, 5.0, True)
    names = lambda rs: [x.name for x in rs]  # noqa: E731
    assert names(lib.query(str(root), "improvability")) == ["p1.jpg", "p2.jpg", "p0.jpg", "p3.jpg", "bad.jpg"]
    assert names(lib.query(str(root), "-improvability"))[:3] == ["p0.jpg", "p2.jpg", "p1.jpg"]
    assert names(lib.query(str(root), "quality"))[:3] == ["p1.jpg", "p2.jpg", "p0.jpg"]
    assert names(lib.query(str(root), "date"))[:3] == ["p1.jpg", "p2.jpg", "p0.jpg"]
    assert names(lib.query(str(root), "name")) == ["bad.jpg", "p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert names(lib.query(str(root), "improvability", offset=1, limit=2)) == ["p2.jpg", "p0.jpg"]
    assert names(lib.query(str(root), "improvability", {"recommended": True})) == ["p1.jpg", "p2.jpg"]
    assert names(lib.query(str(root), "improvability", {"status": "error"})) == ["bad.jpg"]
    assert lib.count(str(root), {"scored": False}) == 2
    assert lib.count(str(root), {"min_improvability": 1.0}) == 2
    assert lib.count(str(tmp_path / "elsewhere")) == 0
    top = lib.query(str(root))[0]
    assert top.top_degradation == "noise" and top.recommended is True and top.quality == 3.0
    rec = lib.photo_record(top.id)
    assert rec["improvability"] == 2.0 and rec["model"] == {"name": "assessor", "version": "v1"}
    assert rec["severity"]["noise"] == pytest.approx(0.6667, abs=1e-3)
    unscored = lib.photo_record(r["p3.jpg"].id)
    for k in ("improvability", "quality", "recommended", "severity", "model"):
        assert unscored[k] is None
    assert lib.ids_for_paths([root / "p1.jpg", root / "nope.jpg"]) == {str(root / "p1.jpg"): r["p1.jpg"].id}
    with pytest.raises(ValueError):
        lib.query(str(root), "bogus")
    with pytest.raises(KeyError):
        lib.photo(999)


def test_renamed_folder_and_parent_root(lib: Library, make_image: ImageFactory, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(5):
        make_image(f"2023 trip/p{i}.jpg", seed=i)
    run(lib, root / "2023 trip")
    ids = {n: p.id for n, p in rows(lib.catalog).items()}
    (root / "2023 trip").rename(root / "2023 Iceland")
    ev = run(lib, root)  # the parent is indexed now: the renamed folder's photos are moves
    c = kinds(ev)
    assert c["moved"] == 5 and c["added"] == 0
    assert {n: p.id for n, p in rows(lib.catalog).items()} == ids
    assert all("2023 Iceland" in p.path for p in rows(lib.catalog).values())
    assert str(root) in lib.folders()
    info = lib.photo(ids["p0.jpg"])
    assert info.folder == str(root)


def test_two_catalog_users_index_the_same_folder(tmp_path: Path, make_image: ImageFactory) -> None:
    """Two processes (say the GUI and the CLI) indexing one folder into one catalog at once."""
    root = tmp_path / "photos"
    for i in range(30):
        make_image(f"p{i:02d}.jpg", 24, 16, seed=i)
    cat_file = str(tmp_path / "shared.sqlite")
    a, b = Catalog.open(cat_file), Catalog.open(cat_file)
    try:
        la, lb = Library(a, thumb_dir=tmp_path / "t"), Library(b, thumb_dir=tmp_path / "t")
        ev_b: list[IndexEvent] = []

        def progress(p: Progress) -> None:
            # A has walked and found 30 new files; B now indexes them all before A records any
            if p.total is not None and not ev_b:
                ev_b.extend(lb.index(root))

        ev_a = list(la.index(root, progress=progress))
        assert kinds(ev_b)["added"] == 30
        assert kinds(ev_a)["updated"] == 30 and kinds(ev_a)["added"] == 0
        assert la.count(str(root)) == 30 == len(rows(a))
    finally:
        a.close()
        b.close()
