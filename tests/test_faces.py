"""The ``faces`` stage: detection decoding, crop geometry, paste-back, recipes and the CLI.

Uses the committed ``models/face_detector.onnx`` and ``models/face_restorer.onnx`` on small images
made here (no face photos in the repository).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.enhance import faces as F
from engine.enhance.pipeline import Pipeline, StageUnavailable
from engine.enhance.recipes import ModelGone, Recipe, StageSpec, from_json
from tests.conftest import ImageFactory, make_rgb

ROOT = Path(__file__).resolve().parents[1]
DET = ROOT / "models" / "face_detector.onnx"
RES = ROOT / "models" / "face_restorer.onnx"


@pytest.fixture
def models(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(DET, d / DET.name)
    shutil.copy(RES, d / RES.name)
    return d


def _noisy(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A soft gradient with strong noise: something a face restorer will change."""
    rng = np.random.default_rng(seed)
    base = make_rgb(w, h, seed).astype(np.float32) / 255.0
    return np.clip(base * 0.6 + 0.2 + rng.normal(0, 0.08, base.shape), 0, 1).astype(np.float32)


def test_decode_maps_finds_a_peak_and_its_size() -> None:
    gh, gw = 24, 32
    maps = np.full((3, gh, gw), 0.0, np.float32)
    maps[0] = -8.0
    maps[0, 10, 20] = 4.0  # one confident centre at cell (20, 10)
    maps[1, 10, 20] = np.log(40 / F.STRIDE)  # 40 px wide
    maps[2, 10, 20] = np.log(48 / F.STRIDE)  # 48 px high
    faces = F.decode_maps(maps, scale=0.5, width=256, height=192, threshold=0.4)
    assert len(faces) == 1
    f = faces[0]
    # in photo pixels: centre (20.5*4, 10.5*4) / 0.5 = (164, 84); size 80 x 96
    assert (f.x1 - f.x0) * 256 == pytest.approx(80, rel=1e-3)
    assert (f.y1 - f.y0) * 192 == pytest.approx(96, rel=1e-3)
    assert (f.x0 + f.x1) / 2 * 256 == pytest.approx(164, rel=1e-3)
    assert F.decode_maps(maps, 0.5, 256, 192, threshold=0.99) == []


def test_decode_maps_suppresses_overlapping_peaks() -> None:
    maps = np.zeros((3, 20, 20), np.float32)
    maps[0] = -8.0
    maps[0, 5, 5], maps[0, 5, 7] = 3.0, 2.0  # two peaks of one big face
    maps[1:, 5, 5] = maps[1:, 5, 7] = np.log(40 / F.STRIDE)
    maps[0, 15, 15] = 2.5  # and a second face elsewhere
    maps[1:, 15, 15] = np.log(28 / F.STRIDE)
    faces = F.decode_maps(maps, 1.0, 80, 80, threshold=0.4)
    assert len(faces) == 2 and faces[0].score > faces[1].score


def test_decode_maps_leaves_out_boxes_below_the_minimum_face_size() -> None:
    """Small boxes are mostly not faces on real photos (models/face_detector.md): a 16 px box in
    the detector's image is dropped, however confident."""
    maps = np.zeros((3, 20, 20), np.float32)
    maps[0] = -8.0
    maps[0, 10, 10] = 4.0
    maps[1:, 10, 10] = np.log(16 / F.STRIDE)
    assert F.MIN_FACE_PX > 16
    assert F.decode_maps(maps, 1.0, 80, 80, threshold=0.4) == []
    assert len(F.decode_maps(maps, 1.0, 80, 80, threshold=0.4, min_px=0)) == 1


def test_crop_geometry_frames_the_box_like_the_training_faces() -> None:
    face = F.Face(0.4, 0.3, 0.6, 0.6, 1.0)  # 200 x 300 px in a 1000 x 1000 photo
    cx, cy, side = F.crop_geometry(face, 1000, 1000)
    # the box is 0.70 of the crop wide and 0.80 high: the height decides here
    assert side == pytest.approx(300 / 0.8, abs=1)
    assert cx == pytest.approx(500, abs=1) and cy < 450  # the crop sits a little above the box centre


def test_apply_without_faces_changes_nothing(models: Path) -> None:
    img = _noisy(60, 80)
    out = F.apply_faces(img, {"faces": []}, 0.0, models / RES.name)
    assert np.array_equal(out, img)


def test_apply_restores_inside_the_crop_only_and_keeps_colour(models: Path) -> None:
    img = _noisy(200, 300, seed=3)
    keep = img.copy()
    face = F.Face(0.4, 0.3, 0.6, 0.7, 0.9)
    out = F.apply_faces(img, {"faces": [face.to_dict()]}, 0.0, models / RES.name)
    assert np.array_equal(img, keep)  # the input is never written
    diff = np.abs(out - img).max(axis=2)
    assert diff.max() > 0.02  # the face changed
    cx, cy, side = F.crop_geometry(face, 300, 200)
    ys, xs = np.nonzero(diff > 1e-6)
    assert xs.min() >= cx - side / 2 - 1 and xs.max() <= cx + side / 2 + 1
    assert ys.min() >= cy - side / 2 - 1 and ys.max() <= cy + side / 2 + 1
    assert diff[0:5].max() == 0.0 and diff[:, 0:5].max() == 0.0  # far corners untouched
    # colour matching: the mean colour of the face region barely moves
    y0, y1, x0, x1 = int(0.3 * 200), int(0.7 * 200), int(0.4 * 300), int(0.6 * 300)
    shift = np.abs(out[y0:y1, x0:x1].mean(axis=(0, 1)) - img[y0:y1, x0:x1].mean(axis=(0, 1)))
    assert shift.max() < 0.02


def test_apply_is_reproducible_and_w_matters(models: Path) -> None:
    img = _noisy(120, 120, seed=5)
    p = {"faces": [{"box": [0.2, 0.2, 0.8, 0.85], "score": 1.0}]}
    a = F.apply_faces(img, p, 1.0, models / RES.name)
    b = F.apply_faces(img, p, 1.0, models / RES.name)
    c = F.apply_faces(img, p, 0.0, models / RES.name)
    assert np.array_equal(a, b)  # the injected noise is seeded by the box
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.parametrize("shape,box", [((24, 18), [0.1, 0.1, 0.9, 0.9]),  # tiny photo, face fills it
                                       ((300, 500), [0.9, -0.0, 1.0, 0.3]),  # face cut by the frame
                                       ((900, 1400), [0.3, 0.2, 0.7, 0.9])])  # face larger than 128 px
def test_apply_at_any_size(models: Path, shape: tuple[int, int], box: list[float]) -> None:
    img = _noisy(*shape, seed=7)
    out = F.apply_faces(img, {"faces": [{"box": box, "score": 1.0}]}, 0.0, models / RES.name)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert np.abs(out - img).max() > 0  # something was restored


def test_pipeline_on_a_face_free_photo_changes_nothing(models: Path) -> None:
    img = make_rgb(320, 240, seed=11).astype(np.float32) / 255.0
    p = Pipeline(models)
    r = p.plan(img, "faces")
    assert [s.name for s in r.stages] == ["faces"]
    st = r.stages[0]
    assert st.params["faces"] == [] and st.params["detector"] and st.model_version
    assert np.array_equal(p.apply(r, img), np.clip(img, 0, 1))


def test_recipe_round_trip_replays_the_same_pixels_and_w0_is_not_off(models: Path) -> None:
    from engine.core.runtime import model_version

    img = _noisy(160, 200, seed=2)
    ver = model_version(models / RES.name)
    st = StageSpec("faces", 0.0, "face_restorer", ver, {"faces": [{"box": [0.3, 0.2, 0.7, 0.8], "score": 0.9}]})
    r = Recipe(stages=(st,))
    again = from_json(r.to_json())
    p = Pipeline(models)
    a, b = p.apply(r, img), p.apply(again, img)
    assert np.array_equal(a, b)
    assert np.abs(a - img).max() > 0.01  # strength 0 = faithful restoration, not "skip"


def test_a_missing_face_model_is_named(models: Path, tmp_path: Path) -> None:
    st = StageSpec("faces", 0.0, "face_restorer", "0123456789ab", {"faces": []})
    with pytest.raises(ModelGone, match="face_restorer"):
        Pipeline(models).apply(Recipe(stages=(st,)), _noisy(32, 32))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StageUnavailable, match="face_detector"):
        Pipeline(empty).plan(_noisy(32, 32), "faces")


def test_cli_enhance_with_faces_leaves_a_face_free_photo_as_restore_alone(
        tmp_path: Path, make_image: ImageFactory, models: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main
    from tests.pipeline_fixtures import install_no_scorer

    shutil.copy(ROOT / "models" / "restorer.onnx", models / "restorer.onnx")
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(models))
    monkeypatch.setenv("PHOTOLIFT_CACHE", str(tmp_path / "cache"))
    install_no_scorer(monkeypatch)
    src = make_image("scene.png", 96, 64, seed=4)
    outs = {}
    for ops in ("restore", "restore,faces"):
        rc = main(["enhance", str(src), "--out", str(tmp_path / ops.replace(",", "_")), "--ops", ops,
                   "--format", "png"])
        assert rc == 0
        d = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()][0]
        assert d["status"] == "ok", d
        with Image.open(d["out_path"]) as im:
            outs[ops] = np.asarray(im.convert("RGB"))
    assert np.array_equal(outs["restore"], outs["restore,faces"])


def test_cli_face_w_out_of_range_is_a_usage_error(tmp_path: Path, make_image: ImageFactory,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    src = make_image("a.png", 32, 32)
    assert main(["enhance", str(src), "--out", str(tmp_path / "o"), "--ops", "faces", "--face-w", "1.5"]) == 2
    assert "--face-w" in capsys.readouterr().err


def _two_indexed(catalog: object, make_image: ImageFactory, tmp_path: Path, models: Path,
                 monkeypatch: pytest.MonkeyPatch, sizes: tuple[tuple[int, int], ...] = ((64, 48), (64, 48))
                 ) -> list[int]:
    """Face-free photos a.jpg, b.jpg, ... of ``sizes``, indexed without a scorer, with the face models."""
    from db.catalog import Catalog
    from tests.pipeline_fixtures import index, install_no_scorer

    assert isinstance(catalog, Catalog)
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(models))
    monkeypatch.setenv("PHOTOLIFT_CACHE", str(tmp_path / "cache"))
    install_no_scorer(monkeypatch)
    for i, (w, h) in enumerate(sizes):
        make_image(f"{'abcdefgh'[i]}.jpg", w, h, seed=i + 1)
    return index(catalog, tmp_path / "photos")


def test_enhance_with_faces_stores_the_face_count(tmp_catalog: object, make_image: ImageFactory, tmp_path: Path,
                                                  models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An enhance whose recipe has a faces stage records what the detector found: a face-free
    photo gets face_count 0 (examined), a photo never enhanced with faces keeps NULL."""
    from db.schema import Photo
    from engine.enhance.edits import Editor
    ids = _two_indexed(tmp_catalog, make_image, tmp_path, models, monkeypatch)
    res = Editor(tmp_catalog).enhance(ids[0], ops="faces")
    assert res.applied
    with tmp_catalog.session() as s:
        counts = {pid: s.get(Photo, pid).face_count for pid in ids}  # type: ignore[union-attr]
    assert counts == {ids[0]: 0, ids[1]: None}


def test_batch_enhance_carries_the_face_weight(tmp_catalog: object, make_image: ImageFactory, tmp_path: Path,
                                               models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The faces stage's weight chosen for a batch (the GUI's slider) is queued with it, so a
    batch resumed after a crash plans with the same weight; a bad weight fails before anything runs."""
    import json

    from db.schema import Recipe as RecipeRow
    from engine.enhance.edits import Editor
    ids = _two_indexed(tmp_catalog, make_image, tmp_path, models, monkeypatch)
    ed = Editor(tmp_catalog)
    with pytest.raises(ValueError, match="between 0 and 1"):
        list(ed.enhance_batch(ids, ops="faces", face_w=1.2))
    out = list(ed.enhance_batch(ids, ops="faces", face_w=0.6, apply_if_no_gain=True))
    assert [r.error for r in out] == [None, None]
    with tmp_catalog.session() as s:
        recipes = [json.loads(r.recipe_json) for r in s.query(RecipeRow).order_by(RecipeRow.photo_id)]
    assert len(recipes) == 2
    for r in recipes:
        (st,) = [st for st in r["stages"] if st["name"] == "faces"]
        assert st["strength"] == pytest.approx(0.6)


def test_face_scan_finds_counts_and_rescans_changed_photos(tmp_catalog: object, make_image: ImageFactory,
                                                           tmp_path: Path, models: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The background face scan runs the stage's detector on the planner's view of each photo not
    examined yet; the counts feed the library's has_faces filter; a changed file is examined again."""
    from db.catalog import Catalog
    from engine.enhance import face_scan
    from engine.enhance import faces as F
    from engine.library import Library
    from tests.pipeline_fixtures import index

    assert isinstance(tmp_catalog, Catalog)
    # a.jpg is the one the stand-in detector below sees a face in (by its width)
    ids = _two_indexed(tmp_catalog, make_image, tmp_path, models, monkeypatch, ((96, 48), (64, 48), (64, 48)))
    root = tmp_path / "photos"
    b = root / "b.jpg"
    real = F.detect
    seen: list[tuple[int, int]] = []

    def detect(view: np.ndarray, path: Path | None = None, threshold: float = F.DEFAULT_THRESHOLD) -> list[F.Face]:
        seen.append(view.shape[:2])
        got = real(view, path, threshold)  # the real detector runs (and finds nothing in these)
        assert got == []
        return [F.Face(0.2, 0.2, 0.5, 0.6, 0.9)] if view.shape[1] == 96 else []

    monkeypatch.setattr(F, "detect", detect)
    events = list(face_scan.scan(tmp_catalog, str(root)))
    assert len(events) == 3 and all(e.error is None for e in events)
    counts = {Path(e.path).name: e.count for e in events}
    assert counts == {"a.jpg": 1, "b.jpg": 0, "c.jpg": 0} and sorted(seen) == [(48, 64), (48, 64), (48, 96)]
    lib = Library(tmp_catalog)
    with_faces = lib.photo_ids(str(root), {"has_faces": True})
    assert [lib.photo(i).face_count for i in with_faces] == [1]
    assert len(lib.photo_ids(str(root), {"has_faces": False})) == 2
    assert face_scan.pending(tmp_catalog, str(root)) == [] and list(face_scan.scan(tmp_catalog, str(root))) == []
    make_image("b.jpg", 80, 60, seed=9)  # b changes: examined again once it is indexed again
    index(tmp_catalog, root)
    again = list(face_scan.scan(tmp_catalog, str(root)))
    assert [Path(e.path).name for e in again] == [b.name]
    assert {lib.photo(i).face_count for i in ids} <= {0, 1}
    # a new detector means "detect again": faces found by another version are forgotten and every
    # photo is examined again
    from db.schema import CatalogInfo
    from engine.enhance.recipes import file_version

    assert face_scan.scanned_with(tmp_catalog) == file_version(face_scan.detector_path())
    tmp_catalog.write(lambda s: s.merge(CatalogInfo(key=face_scan.DETECTOR_KEY, value="an-older-detector")))
    assert len(face_scan.pending(tmp_catalog, str(root))) == 3
    seen.clear()
    redone = list(face_scan.scan(tmp_catalog, str(root)))
    assert sorted(Path(e.path).name for e in redone) == ["a.jpg", "b.jpg", "c.jpg"] and len(seen) == 3
    assert face_scan.scanned_with(tmp_catalog) == file_version(face_scan.detector_path())
    assert [lib.photo(i).face_count for i in lib.photo_ids(str(root), {"has_faces": True})] == [1]
    assert face_scan.pending(tmp_catalog, str(root)) == []


def test_cli_faces_lists_examined_photos(tmp_path: Path, make_image: ImageFactory, models: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from app.cli import main

    monkeypatch.setenv("PHOTOLIFT_MODELS", str(models))
    monkeypatch.setenv("PHOTOLIFT_CACHE", str(tmp_path / "cache"))
    make_image("a.jpg", 80, 60, seed=1)
    make_image("b.png", 64, 48, seed=2)
    (tmp_path / "photos" / "bad.jpg").write_bytes(b"not a photo")
    url = str(tmp_path / "f.sqlite")
    root = tmp_path / "photos"
    assert main(["--catalog", url, "faces", str(root), "--json", "-q"]) == 0
    assert capsys.readouterr().out == ""  # no faces in these: nothing listed
    assert main(["--catalog", url, "faces", str(root), "--json", "--all", "-q"]) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(Path(r["path"]).name, r["faces"], r["boxes"]) for r in recs] == [("a.jpg", 0, []), ("b.png", 0, [])]
    assert main(["--catalog", url, "faces", str(tmp_path / "nowhere")]) == 2
    (models / "face_detector.onnx").unlink()
    assert main(["--catalog", url, "faces", str(root)]) == 1
    assert "face_detector.onnx" in capsys.readouterr().err
