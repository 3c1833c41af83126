"""Camera defects (engine.enhance.defects): series, detection on synthetic series made here, the catalog
tables, the ``defects`` recipe stage and the CLI.

The photos are made by the test: smooth random scenes (gradients, soft shapes, some texture)
with the same dust spots at the same sensor positions in every photo of a "camera".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import piexif
import pytest
from PIL import Image

from engine.enhance import defects as D
from engine.enhance.defect_synth import CameraDefects, Spot


def scene(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A photo-like scene: a sky-like gradient, soft shapes, fine texture in part of the frame."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0.35, 0.7) + 0.25 * (yy / h - 0.5) * rng.uniform(-1, 1)
    img = np.repeat(base[..., None], 3, axis=2) * rng.uniform(0.85, 1.15, 3)
    for _ in range(int(rng.integers(2, 6))):  # soft shapes anywhere (the scene, not the camera)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, w / 4)
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        img += (np.clip((r - d) / 4, 0, 1) * rng.uniform(-0.25, 0.25))[..., None]
    y0 = int(rng.integers(0, h // 2))  # a textured band (grass, foliage)
    img[y0:y0 + h // 4] += rng.normal(0, 0.06, (min(h, y0 + h // 4) - y0, w, 3))
    img += rng.normal(0, 0.008, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def exif(model: str, orientation: int = 1, serial: str | None = None) -> bytes:
    ex: dict[int, object] = {}
    if serial:
        ex[piexif.ExifIFD.BodySerialNumber] = serial.encode()
    return piexif.dump({"0th": {piexif.ImageIFD.Make: b"TestMaker", piexif.ImageIFD.Model: model.encode(),
                                piexif.ImageIFD.Orientation: orientation}, "Exif": ex, "GPS": {}})


def write_series(folder: Path, model: str, cd: CameraDefects, n: int, seed: int, w: int = 240, h: int = 160,
                 orientations: tuple[int, ...] = (1,)) -> list[np.ndarray]:
    """n photos of one camera; returns the clean scenes (sensor frame)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    clean = []
    for i in range(n):
        s = scene(rng, w, h)
        clean.append(s)
        o = orientations[i % len(orientations)]
        shot = D.to_display(cd.apply(s), o)  # the camera writes sensor pixels; a rotated shot is tagged
        # the file holds the sensor frame plus the orientation tag: undo what a viewer would do
        stored = np.ascontiguousarray(D.to_sensor(shot, o))
        Image.fromarray(stored).save(folder / f"{model.replace(' ', '_')}_{i:03d}.jpg", quality=95,
                                     exif=exif(model, o))
    return clean


DUST = CameraDefects([Spot("dust", 0.3, 0.4, 12.0, 0.25), Spot("dust", 0.72, 0.65, 16.0, 0.2)])


@pytest.fixture
def library(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    write_series(lib / "a", "Dusty 1", DUST, 30, seed=1)
    write_series(lib / "b", "Clean 2", CameraDefects(), 30, seed=2)
    return lib


def _index(cat: object, folder: Path) -> None:
    from engine.library import Library

    for _ in Library(cat).index(str(folder)):  # type: ignore[arg-type]
        pass


# -- orientation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("o", range(1, 9))
def test_orientation_mapping_matches_the_decoder(o: int) -> None:
    from engine.ingest.imageio import _TRANSPOSE

    a = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    im = Image.fromarray(a)
    want = np.asarray(im.transpose(_TRANSPOSE[o])) if o != 1 else a
    assert np.array_equal(D.to_display(a, o), want)
    assert np.array_equal(D.to_sensor(want, o), a)
    # a point follows the pixels
    y, x = 1, 5
    u, v = D.point_to_display((x + 0.5) / 7, (y + 0.5) / 5, o)
    dh, dw = want.shape[:2]
    assert np.array_equal(want[int(v * dh), int(u * dw)], a[y, x])


# -- series -----------------------------------------------------------------------------------------
def test_series_by_body_lens_size_and_sensor_frame() -> None:
    P = D.PhotoRef
    photos = [
        P(1, "/x/1.jpg", "f1", 600, 400, 1, "Canon", "Canon EOS 5D", "111", "24mm"),
        P(2, "/x/2.jpg", "f2", 400, 600, 6, "Canon", "Canon EOS 5D", "111", "24mm"),  # portrait: same sensor
        P(3, "/x/3.jpg", "f3", 600, 400, 1, "Canon", "Canon EOS 5D", "222", "24mm"),  # another body
        P(4, "/x/4.jpg", "f4", 600, 400, 1, "Canon", "Canon EOS 5D", "111", "50mm"),  # another lens
        P(5, "/y/5.jpg", "f5", 600, 400, 1, None, None, None, None),
        P(6, "/z/6.jpg", "f6", 600, 400, 1, None, None, None, None),  # no EXIF: by folder
    ]
    ss = D.group_series(photos)
    groups = sorted(sorted(p.id for p in s.photos) for s in ss)
    assert groups == [[1, 2], [3], [4], [5], [6]]
    names = {s.camera for s in ss}
    assert "Canon EOS 5D #111, 24mm (600x400)" in names
    assert any(n.startswith("unknown camera in /y") for n in names)
    assert all(s.width == 600 and s.height == 400 for s in ss)


# -- detection ------------------------------------------------------------------------------------
def test_dust_found_where_it_is_and_clean_camera_gives_nothing(tmp_catalog: object, library: Path) -> None:
    _index(tmp_catalog, library)
    reps = {r.camera.split(" (")[0]: r for r in D.detect(tmp_catalog, str(library))}
    assert set(reps) == {"TestMaker Dusty 1", "TestMaker Clean 2"}
    assert reps["TestMaker Clean 2"].defects == ()
    dust = [d for d in reps["TestMaker Dusty 1"].defects if d.kind == "dust"]
    assert len(reps["TestMaker Dusty 1"].defects) == 2 and len(dust) == 2
    for s in DUST.spots:
        hit = [d for d in dust if d.bbox[0] <= s.cx <= d.bbox[2] and d.bbox[1] <= s.cy <= d.bbox[3]]
        assert len(hit) == 1
        d = hit[0]
        assert d.series == 30 and 15 <= d.photos <= 30 and 0.5 <= d.confidence <= 1.0
        # the box is about the spot's size (radius 12-16 px of 240)
        assert 0.03 < d.bbox[2] - d.bbox[0] < 0.25
    # a second call reads the stored result (same ids), a forced one examines again
    again = {r.camera: r for r in D.detect(tmp_catalog, str(library))}
    assert [d.id for r in again.values() for d in r.defects] == [d.id for r in reps.values() for d in r.defects]
    # a symlinked or relative spelling of the folder means the same photos (it used to match none)
    link = library.parent / "link_to_lib"
    link.symlink_to(library, target_is_directory=True)
    via_link = D.detect(tmp_catalog, str(link))
    assert [d.id for r in via_link for d in r.defects] == [d.id for r in reps.values() for d in r.defects]
    rel = os.path.relpath(library)
    assert [r.camera for r in D.detect(tmp_catalog, rel)] == [r.camera for r in via_link]


def test_rotated_shots_pool_in_the_sensor_frame(tmp_catalog: object, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    write_series(lib, "Turner", DUST, 30, seed=3, orientations=(1, 6, 1, 8))
    _index(tmp_catalog, lib)
    (rep,) = D.detect(tmp_catalog, str(lib))
    assert rep.width == 240 and rep.height == 160
    assert len([d for d in rep.defects if d.kind == "dust"]) == 2
    # the stage parameters of a portrait photo put the spot where it is in that photo
    from sqlalchemy import select

    from db.schema import Photo

    with tmp_catalog.session() as s:  # type: ignore[attr-defined]
        pid, w, h = s.execute(select(Photo.id, Photo.width, Photo.height).where(Photo.orientation == 6)).first()
    assert (w, h) == (160, 240)
    params = D.stage_params(tmp_catalog, pid)
    assert params is not None
    u, v = D.point_to_display(0.3, 0.4, 6)
    assert any(it["bbox"][0] <= u <= it["bbox"][2] and it["bbox"][1] <= v <= it["bbox"][3] for it in params["items"])


def test_too_few_photos_is_no_detection(tmp_catalog: object, tmp_path: Path) -> None:
    write_series(tmp_path / "lib", "Few", DUST, D.MIN_SERIES - 1, seed=4)
    _index(tmp_catalog, tmp_path / "lib")
    (rep,) = D.detect(tmp_catalog, str(tmp_path / "lib"))
    assert rep.defects == ()


def test_hot_pixels_found_and_repaired() -> None:
    rng = np.random.default_rng(5)
    cd = CameraDefects(hot=[(50, 40), (200, 120)])
    clean = [scene(rng, 240, 160) for _ in range(24)]
    shots = [cd.apply(c) for c in clean]
    series = D.Series("k", "cam", 240, 160, tuple(D.PhotoRef(i, f"/p/{i}.png", "", 240, 160, 1)
                                                  for i in range(len(shots))))

    def loader(p: D.PhotoRef, work: tuple[int, int], hot: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        return shots[p.id], (shots[p.id] if hot else None)

    res = D.detect_series(series, loader=loader, workers=1)
    hot = [d for d in res.detections if d.kind == "hot_pixel"]
    assert len(hot) == 1
    pts = {(round(u * 240 - 0.5), round(v * 160 - 0.5)) for u, v in hot[0].params["points"]}
    assert pts == {(50, 40), (200, 120)}
    fixed = D.apply_correction(shots[0].astype(np.float32) / 255, {"items": [D.display_params(hot[0], 1)]})
    assert abs(float(fixed[40, 50].max()) * 255 - float(clean[0][40, 50].max())) < 25
    assert float(shots[0][40, 50].max()) >= 235


# -- correction -------------------------------------------------------------------------------------
def test_correction_gains_psnr_inside_the_spots(tmp_catalog: object, library: Path) -> None:
    from engine.enhance.pipeline import Pipeline
    from engine.enhance.recipes import Recipe, StageSpec

    _index(tmp_catalog, library)
    (rep,) = [r for r in D.detect(tmp_catalog, str(library)) if "Dusty" in r.camera]
    params = {"items": [D.display_params(d, 1) for d in rep.defects]}
    rng = np.random.default_rng(99)
    clean = scene(rng, 240, 160)  # a photo the detection never saw
    bad = DUST.apply(clean)
    out = Pipeline().apply(Recipe(stages=(StageSpec("defects", 1.0, None, None, params),)),
                           bad.astype(np.float32) / 255)
    region = DUST.transmission(240, 160) < 0.99

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))

    fixed = (out * 255 + 0.5).astype(np.uint8)
    assert psnr(fixed[region], clean[region]) > psnr(bad[region], clean[region]) + 6
    # away from the spots nothing changes (the estimated maps fade out near the spots' edges)
    import cv2

    near = cv2.dilate((DUST.transmission(240, 160) < 0.999).astype(np.uint8), np.ones((9, 9), np.uint8))
    far = near == 0
    assert np.abs(fixed[far].astype(int) - bad[far].astype(int)).max() <= 1
    assert np.abs(fixed[~far].astype(int) - bad[~far].astype(int)).max() >= 10
    # replayable at another resolution: the half-size photo is corrected the same way
    half = np.asarray(Image.fromarray(bad).resize((120, 80), Image.Resampling.BOX))
    out2 = D.apply_correction(half.astype(np.float32) / 255, params)
    clean2 = np.asarray(Image.fromarray(clean).resize((120, 80), Image.Resampling.BOX))
    r2 = np.asarray(Image.fromarray(region.astype(np.uint8) * 255).resize((120, 80))) > 128
    f2 = (out2 * 255 + 0.5).astype(np.uint8)
    assert psnr(f2[r2], clean2[r2]) > psnr(half[r2], clean2[r2]) + 3


def opaque_line() -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """(clean scene, the scene with an opaque 1-px line, the ``inpaint`` item that covers it)."""
    clean = scene(np.random.default_rng(7), 200, 120)
    mask = np.zeros((120, 200), np.uint8)
    mask[60, 40:160] = 1
    bad = clean.copy()
    bad[mask > 0] = 5
    region = [0.2, 0.45, 0.8, 0.55]
    sub = mask[54:66, 40:160]
    item: dict[str, object] = {"kind": "line", "method": "inpaint", "region": region, "shape": list(sub.shape),
            "patch": D._encode(np.zeros(sub.shape), np.float16),
            "mask": D._encode(np.packbits(sub), np.uint8), "bbox": region}
    return clean, bad, item


def test_inpaint_method_fills_an_opaque_line() -> None:
    clean, bad, item = opaque_line()
    out = D.apply_correction(bad.astype(np.float32) / 255, {"items": [item]})
    err_before = np.abs(bad[60, 40:160].astype(float) - clean[60, 40:160]).mean()
    err_after = np.abs(out[60, 40:160] * 255 - clean[60, 40:160]).mean()
    assert err_after < err_before / 4


def test_bias_against_the_other_cameras() -> None:
    def res(name: str, cr: float) -> D.SeriesResult:
        st = {"n": 40, "lum": [-1.0, 0.3], "cr": [cr, 0.05], "cb": [0.0, 0.05], "contrast": [0.5, 0.1],
              "c_tl": [0.0, 0.2], "c_tr": [0.0, 0.2], "c_bl": [-0.9, 0.2], "c_br": [0.3, 0.2]}
        return D.SeriesResult(D.Series(name, name, 100, 100, ()), [], st, 40, 0)

    rs = [res("a", 0.2), res("b", 0.0), res("c", 0.01), res("d", -0.01)]
    D.find_biases(rs)
    bias_a = [d for d in rs[0].detections if d.kind == "bias"]
    assert len(bias_a) == 1 and bias_a[0].params["correct"]["cr"] == pytest.approx(-0.19, abs=0.02)
    assert bias_a[0].bbox == [0.0, 0.0, 1.0, 1.0]
    # every camera here has a soft bottom-left corner: reported for each, colour only for a
    assert all("bl" in r.detections[0].params["correct"]["soft_corners"] for r in rs)
    assert "cr" not in rs[1].detections[0].params["correct"]
    img = np.full((50, 50, 3), 0.5, np.float32)
    out = D.apply_correction(img, {"items": [D.display_params(bias_a[0], 1)]})
    assert out[..., 0].mean() < 0.5 * 0.85


def test_pipeline_stage_order_and_plan() -> None:
    from engine.enhance.pipeline import STAGE_ORDER, Pipeline, parse_ops

    assert STAGE_ORDER[0] == "defects"
    assert parse_ops("tone,defects") == ["defects", "tone"]
    view = np.full((32, 32, 3), 0.5, np.float32)
    assert Pipeline().plan(view, "defects").stages == ()  # nothing known: no stage
    r = Pipeline().plan(view, "defects", defects={"items": [{"kind": "hot_pixel", "points": [[0.5, 0.5]],
                                                             "frame": [32, 32], "bbox": [0, 0, 1, 1]}]})
    assert [s.name for s in r.stages] == ["defects"]
    from engine.enhance.recipes import from_json

    assert from_json(r.to_json()) == r


# -- catalog, dismissal, CLI ---------------------------------------------------------------------------
def test_dismiss_survives_a_new_detection_and_is_not_corrected(tmp_catalog: object, library: Path) -> None:
    from sqlalchemy import select

    from db.schema import Photo

    _index(tmp_catalog, library)
    (rep,) = [r for r in D.detect(tmp_catalog, str(library)) if "Dusty" in r.camera]
    first = rep.defects[0]
    D.set_dismissed(tmp_catalog, first.id)  # type: ignore[arg-type]
    with tmp_catalog.session() as s:  # type: ignore[attr-defined]
        pid = s.scalar(select(Photo.id).where(Photo.series_id == rep.id).limit(1))
    params = D.stage_params(tmp_catalog, pid)
    assert params is not None and first.id not in params["defect_ids"] and len(params["items"]) == 1
    assert D.reasons_for_photo(tmp_catalog, [pid]) == {pid: ["dust"]}
    from engine.library import Library

    rec = Library(tmp_catalog).photo_record(pid)  # type: ignore[arg-type]
    assert rec["defects"] == ["dust"]  # what score/rank print
    rows = Library(tmp_catalog).query(str(library), sort="name")  # type: ignore[arg-type]
    assert {r.camera_defect for r in rows if "Dusty" in r.name} == {"dust"}  # the grid's badge
    assert {r.camera_defect for r in rows if "Clean" in r.name} == {None}
    D.set_dismissed(tmp_catalog, rep.defects[1].id)  # type: ignore[arg-type]
    assert Library(tmp_catalog).photo_record(pid)["defects"] == []  # type: ignore[arg-type]
    assert D.stage_params(tmp_catalog, pid) is None
    D.set_dismissed(tmp_catalog, rep.defects[1].id, False)  # type: ignore[arg-type]
    (rep2,) = [r for r in D.detect(tmp_catalog, str(library), force=True) if "Dusty" in r.camera]
    assert sorted(d.dismissed for d in rep2.defects) == [False, True]
    with pytest.raises(KeyError):
        D.set_dismissed(tmp_catalog, 10**6)


def test_cli_defects_json(tmp_path: Path, library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    cat = str(tmp_path / "cli.sqlite")
    assert main(["--catalog", cat, "defects", str(library), "--json", "-q"]) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(recs) == 2
    for r in recs:
        assert set(r) >= {"camera", "kind", "bbox", "photos", "series", "confidence"}
        assert r["camera"].startswith("TestMaker Dusty 1") and r["kind"] == "dust" and r["series"] == 30
        assert all(0 <= x <= 1 for x in r["bbox"]) and r["bbox"][0] < r["bbox"][2]
    assert main(["--catalog", cat, "defects", str(library)]) == 0
    out = capsys.readouterr().out
    assert "TestMaker Dusty 1 (240x160): 2 dust spots" in out and "Clean 2 (240x160): no defect found" in out
    assert main(["--catalog", cat, "defects", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


# -- GUI ---------------------------------------------------------------------------------------------
def test_defects_dialog_shows_cameras_and_dismisses(qtbot: object, tmp_path: Path, library: Path) -> None:
    from app.defects_dialog import DefectsDialog
    from app.services import Services

    svc = Services.open(str(tmp_path / "gui.sqlite"))
    try:
        for _ in svc.library.index(str(library)):
            pass
        dlg = DefectsDialog(svc)
        qtbot.addWidget(dlg)  # type: ignore[attr-defined]
        assert dlg.cameras.count() == 0 and "No camera examined" in dlg.title.text()
        for _ in svc.defects_job(str(library))(lambda p: None, None):  # type: ignore[arg-type]
            pass
        dlg.reload()
        texts = [dlg.cameras.item(i).text() for i in range(dlg.cameras.count())]
        assert any("Dusty 1" in t and "2 dust spots, in " in t and " of 30 photos" in t for t in texts)
        assert any("Clean 2" in t and "no defect found in 30 photos" in t for t in texts)
        dlg.cameras.setCurrentRow(next(i for i, t in enumerate(texts) if "Dusty" in t))
        assert dlg.map.pixmap() is not None and not dlg.map.pixmap().isNull()
        # example crops arrive from the worker
        qtbot.waitUntil(lambda: all(lab.pixmap() is not None and not lab.pixmap().isNull()  # type: ignore[attr-defined]
                                    for labs in dlg._crop_labels.values() for lab in labs), timeout=20000)
        rep = next(r for r in dlg.reports if "Dusty" in r.camera)
        dlg._dismiss(rep.defects[0].id, True)
        rep = next(r for r in dlg.reports if "Dusty" in r.camera)
        assert [d.dismissed for d in rep.defects] == [True, False]
        assert "1 dust spot," in dlg.title.text()
        assert svc.count(str(library), {"camera_defects": True}) == 30
        assert svc.count(str(library), {"camera_defects": False}) == 30
        dlg.done(0)
    finally:
        svc.close()


def test_a_burst_of_one_scene_is_not_a_defect(tmp_path: Path) -> None:
    """Twelve frames of one scene in a row (a burst, a tripod session) inside a clean series: its
    dark shapes stay put in those frames, and must not be taken for the camera's."""
    rng = np.random.default_rng(11)
    burst = scene(rng, 240, 160)
    shots = [np.clip(burst.astype(int) + rng.integers(-2, 3, burst.shape), 0, 255).astype(np.uint8)
             for _ in range(12)] + [scene(rng, 240, 160) for _ in range(18)]
    series = D.Series("k", "cam", 240, 160, tuple(D.PhotoRef(i, f"/p/{i}.png", "", 240, 160, 1)
                                                  for i in range(len(shots))))

    def loader(p: D.PhotoRef, work: tuple[int, int], hot: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        return shots[p.id], (shots[p.id] if hot else None)

    res = D.detect_series(series, loader=loader, workers=1)
    assert [d.kind for d in res.detections] == []


def test_learned_inpainter_is_used_when_the_recipe_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """With models/inpaint.onnx installed, a recipe records its version and fills holes with it;
    a recipe without it (made before) or naming another version replays with OpenCV's
    Navier-Stokes, as it was made, with a warning for the missing version."""
    from engine.core.runtime import clear_sessions
    from tests.onnx_fixtures import inpaint_model, write_model

    clear_sessions()
    models = tmp_path / "models"
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(models))
    assert D.inpainter_version() is None
    write_model(inpaint_model(fill=0.5), models / "inpaint.onnx")
    ver = D.inpainter_version()
    assert ver is not None
    _clean, bad, item = opaque_line()
    x = bad.astype(np.float32) / 255
    learned = D.apply_correction(x, {"items": [item], "inpainter": {"model": "inpaint", "version": ver}})
    ns = D.apply_correction(x, {"items": [item]})
    assert np.allclose(learned[60, 40:160], 0.5, atol=1e-6)  # the fixture's fill: the model ran
    changed = np.abs(learned - x).max(axis=2) > 1e-6
    assert changed[60, 40:160].all() and changed.sum() <= 3 * 3 * 120 + 200  # the dilated hole only
    assert not np.allclose(ns[60, 40:160], 0.5, atol=0.02)
    with caplog.at_level("WARNING"):
        other = D.apply_correction(x, {"items": [item], "inpainter": {"model": "inpaint", "version": "0000"}})
    assert np.array_equal(other, ns) and "not installed" in caplog.text
    clear_sessions()


def test_learned_inpainter_runs_tile_by_tile_on_a_long_scratch(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A scratch across a large frame is filled everywhere, the known pixels stay as they were,
    and the network never sees more than one tile with its context (bounded memory)."""
    from engine.core import runtime
    from engine.core.runtime import clear_sessions
    from tests.onnx_fixtures import inpaint_model, write_model

    clear_sessions()
    models = tmp_path / "models"
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(models))
    write_model(inpaint_model(fill=0.5), models / "inpaint.onnx")
    shapes: list[tuple[int, ...]] = []
    real = runtime.get_session

    class Spy:
        def __init__(self, sess: object) -> None:
            self.sess = sess

        def run(self, names: object, feeds: dict[str, np.ndarray]) -> object:
            shapes.append(feeds["image"].shape)
            return self.sess.run(names, feeds)  # type: ignore[attr-defined]

    monkeypatch.setattr(runtime, "get_session", lambda *a, **k: Spy(real(*a, **k)))
    rng = np.random.default_rng(3)
    h, w = 1100, 1500
    img = rng.random((h, w, 3)).astype(np.float32)
    hole = np.zeros((h, w), np.uint8)
    cv2.line(hole, (10, 20), (1490, 1080), 1, 3)
    hole = hole.astype(bool)
    out = D.learned_inpaint(img, hole)
    assert np.allclose(out[hole], 0.5, atol=1e-6)  # filled by the model everywhere along it
    assert np.array_equal(out[~hole], img[~hole])
    side = D.INPAINT_TILE + 2 * D.INPAINT_MARGIN
    assert shapes and all(s[2] <= side + 7 and s[3] <= side + 7 for s in shapes)
    assert len(shapes) < (h // D.INPAINT_TILE + 1) * (w // D.INPAINT_TILE + 1)  # only tiles with hole pixels
    clear_sessions()


def test_a_semi_opaque_line_is_divided_out_not_inpainted(tmp_catalog: object, tmp_path: Path) -> None:
    """A scratch that takes 75 % of the light, 2 px wide, in 30 photos: found as a line, corrected by
    dividing by its measured map (inpainting the band around a thin line loses the texture under
    it), and on a photo the detection never saw the pixels of the line come >= 6 dB closer to the
    clean photo."""
    from engine.enhance.pipeline import Pipeline
    from engine.enhance.recipes import Recipe, StageSpec

    cd = CameraDefects([Spot("line", 0.5, 0.45, 70.0, 0.75, angle=0.4, width=2.0)])
    lib = tmp_path / "lib"
    write_series(lib, "Scratched 3", cd, 30, seed=5)
    _index(tmp_catalog, lib)
    (rep,) = D.detect(tmp_catalog, str(lib))
    lines = [d for d in rep.defects if d.kind == "line"]
    assert len(lines) == 1 and lines[0].params["method"] == "divide"
    clean = scene(np.random.default_rng(98), 240, 160)
    bad = cd.apply(clean)
    params = {"items": [D.display_params(d, 1) for d in rep.defects]}
    out = Pipeline().apply(Recipe(stages=(StageSpec("defects", 1.0, None, None, params),)),
                           bad.astype(np.float32) / 255)
    fixed = (out * 255 + 0.5).astype(np.uint8)
    region = cd.transmission(240, 160) < 0.99

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))

    assert psnr(fixed[region], clean[region]) > psnr(bad[region], clean[region]) + 6


def test_a_nearly_opaque_line_is_measured_and_filled_in(tmp_catalog: object, tmp_path: Path) -> None:
    """A scratch that takes 99 % of the light is black in every photo. It must still be measured
    (those black pixels are the line's own doing, not the scene's), so it is filled in from around
    it instead of being divided by the shallow band-pass estimate, which left it visible; on a photo
    the detection never saw, the line's pixels come >= 6 dB closer to the clean photo."""
    from engine.enhance.pipeline import Pipeline
    from engine.enhance.recipes import Recipe, StageSpec

    cd = CameraDefects([Spot("line", 0.5, 0.45, 70.0, 0.99, angle=0.4, width=1.0)])
    lib = tmp_path / "lib"
    write_series(lib, "Scratched 4", cd, 30, seed=6)
    _index(tmp_catalog, lib)
    (rep,) = D.detect(tmp_catalog, str(lib))
    lines = [d for d in rep.defects if d.kind in ("line", "obstruction")]
    assert len(lines) == 1 and lines[0].params["method"] == "inpaint"
    assert float(lines[0].params["depth"]) > D.LINE_DIVIDE_MAX
    clean = scene(np.random.default_rng(97), 240, 160)
    bad = cd.apply(clean)
    params = {"items": [D.display_params(d, 1) for d in rep.defects]}
    out = Pipeline().apply(Recipe(stages=(StageSpec("defects", 1.0, None, None, params),)),
                           bad.astype(np.float32) / 255)
    fixed = (out * 255 + 0.5).astype(np.uint8)
    region = cd.transmission(240, 160) < 0.99

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))

    assert psnr(fixed[region], clean[region]) > psnr(bad[region], clean[region]) + 6
