"""engine.assess.quality: the shipped quality model Q, and the regression guard measuring with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from db.catalog import Catalog
from db.schema import Recipe
from engine.assess.quality import QualityModel, get_quality_model, measure_reduce
from engine.enhance.edits import Editor
from engine.enhance.guard import measure, same_size_views
from tests.conftest import ImageFactory
from tests.pipeline_fixtures import index, install_fake_scorer, setup_models

SHIPPED_Q = Path(__file__).resolve().parents[1] / "models" / "quality.onnx"


def _noisy(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rgb.astype(np.float32) + rng.normal(0, sigma, rgb.shape), 0, 255).astype(np.uint8)


def _scene(w: int = 256, h: int = 192) -> np.ndarray:
    """Smooth shading with a few sharp-edged shapes: clean, with edges to lose."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([60 + 120 * x / w, 80 + 100 * y / h, 140 - 60 * x / w], axis=2)
    for i, (x0, y0, s, c) in enumerate([(30, 20, 60, (230, 60, 40)), (140, 90, 70, (30, 40, 200)),
                                        (90, 130, 40, (250, 230, 60))]):
        img[y0 : y0 + s, x0 : x0 + s] = c
        img[y0 + s // 3 : y0 + s // 3 + 4, x0 : x0 + s] = 20 * i
    return np.clip(img, 0, 255).astype(np.uint8)


def test_shipped_q_scores_noise_and_blur_below_the_clean_image() -> None:
    q = QualityModel(SHIPPED_Q)
    clean = _scene()
    qc = q(clean)
    assert 1.0 <= qc <= 10.0
    assert q(_noisy(clean, 25)) < qc - 0.5
    blurred = np.asarray(__import__("cv2").GaussianBlur(clean, (0, 0), 3.0))
    assert q(blurred) < qc
    # any size: tiny images are padded to the network's minimum
    assert 1.0 <= q(clean[:10, :7]) <= 10.0
    assert 1.0 <= q(clean[:1, :1]) <= 10.0 and 1.0 <= q(clean[:1, :200]) <= 10.0
    with pytest.raises(ValueError):
        q(clean.astype(np.float32))


def test_missing_model_gives_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(tmp_path))
    assert get_quality_model() is None
    with pytest.raises(FileNotFoundError):
        QualityModel(tmp_path / "quality.onnx")


def test_measure_reduce_bounds_the_long_side() -> None:
    assert measure_reduce(1600, 1200) == 1
    assert measure_reduce(4000, 3000) == 2
    assert measure_reduce(6000, 4000) == 3


def test_guard_measures_with_q_when_installed(tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    d = setup_models(tmp_path, monkeypatch, "gain", gain=0.6)  # a darker result
    shutil.copy(SHIPPED_Q, d / "quality.onnx")
    fs = install_fake_scorer(monkeypatch)  # would say "brighter is better": must not be asked
    make_image("a.jpg", 160, 120, seed=1)
    pid = index(tmp_catalog, tmp_path / "photos")[0]
    res = Editor(tmp_catalog).enhance(pid, ops="restore")
    assert fs.calls == []
    q = get_quality_model()
    assert q is not None
    from engine.ingest.imageio import load_image

    orig = load_image(tmp_path / "photos" / "a.jpg").rgb
    assert res.quality_before == pytest.approx(q(orig), abs=1e-4)
    assert res.measured_gain == pytest.approx(res.quality_after - res.quality_before)
    with tmp_catalog.session() as s:
        r = s.get(Recipe, res.recipe_id)
        assert r is not None and r.quality_before == pytest.approx(res.quality_before)
    # the same measure on a clearly worse result reports a loss
    b, a = same_size_views(orig, _noisy(orig, 30), 1)
    g = measure(b, a)
    assert g.gain is not None and g.gain < 0


def test_a_broken_quality_model_falls_back_to_the_assessor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = setup_models(tmp_path, monkeypatch)
    (d / "quality.onnx").write_bytes(b"not an onnx file")
    fs = install_fake_scorer(monkeypatch)
    img = np.full((40, 50, 3), 100, np.uint8)
    g = measure(img, img + 20)
    assert len(fs.calls) == 2 and g.gain is not None and g.gain > 0  # the fake head: brighter is better


def test_guard_margin_is_read_for_its_own_model_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``quality.json`` names the Q file it was calibrated for: its margin applies to that file only;
    no file, another model's file or a damaged one: any gain counts (margin 0)."""
    import hashlib
    import json

    from engine.assess.quality import guard_margin

    d = tmp_path / "m"
    d.mkdir()
    qf = d / "quality.onnx"
    shutil.copy(SHIPPED_Q, qf)
    assert guard_margin(qf) == 0.0
    sha = hashlib.sha256(qf.read_bytes()).hexdigest()
    (d / "quality.json").write_text(json.dumps({"model_sha256": sha, "guard_margin": 0.3}))
    assert guard_margin(qf) == pytest.approx(0.3)
    qf.write_bytes(qf.read_bytes() + b"\0")  # the model replaced, its calibration not: no margin
    assert guard_margin(qf) == 0.0
    shutil.copy(SHIPPED_Q, qf)
    assert guard_margin(qf) == pytest.approx(0.3)
    (d / "quality.json").write_text(json.dumps({"model_sha256": "0" * 64, "guard_margin": 0.5}))
    assert guard_margin(qf) == 0.0
    (d / "quality.json").write_text("{not json")
    assert guard_margin(qf) == 0.0


def test_a_gain_within_the_judges_noise_is_no_gain(tmp_catalog: Catalog, make_image: ImageFactory, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With a calibrated margin, a gain at or under it does not count: a batch leaves the photo as
    it was (the recipe is stored as rejected), a single enhance keeps it and says so; the message
    names the margin. A clear gain above it is an improvement as before."""
    import hashlib
    import json

    from engine.enhance.guard import Guard, guard_message

    g = Guard(5.0, 5.1, "", margin=0.2)
    assert g.helped is False and "no measurable gain" in guard_message(g, False) and "0.20" in guard_message(g, False)
    assert Guard(5.0, 5.3, "", margin=0.2).helped is True
    assert Guard(5.0, 4.9, "", margin=0.2).helped is False and "did not help" in guard_message(Guard(5.0, 4.9), True)
    assert Guard(None, None, "x", margin=0.2).helped is None

    d = setup_models(tmp_path, monkeypatch, "gain", gain=1.0)  # the restorer changes nothing
    shutil.copy(SHIPPED_Q, d / "quality.onnx")
    sha = hashlib.sha256((d / "quality.onnx").read_bytes()).hexdigest()
    (d / "quality.json").write_text(json.dumps({"model_sha256": sha, "guard_margin": 0.25}))
    make_image("a.jpg", 160, 120, seed=1)
    make_image("b.jpg", 160, 120, seed=2)
    ids = index(tmp_catalog, tmp_path / "photos")
    results = list(Editor(tmp_catalog).enhance_batch(ids, ops="restore"))
    assert len(results) == 2
    for r in results:
        assert r.measured_gain is not None and abs(r.measured_gain) <= 0.25 and r.margin == pytest.approx(0.25)
        assert r.helped is False and r.applied is False
    single = Editor(tmp_catalog).enhance(ids[0], ops="restore")
    assert single.applied is True and single.helped is False
