"""The restorer's conditioning: noise and JPEG levels measured from pixels, passed per tile."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.assess import degrade as dg
from engine.enhance import levels
from engine.enhance.restore import Restorer
from tests.onnx_fixtures import write_restorer


def _scene(h: int = 256, w: int = 256, seed: int = 0) -> np.ndarray:
    """Smooth shapes plus some texture, like a photo (no noise of its own)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0.1, 0.9, (h // 16, w // 16, 3)).astype(np.float32)
    base = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    tex = cv2.GaussianBlur(rng.normal(0, 0.05, (h, w, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(base + tex, 0, 1).astype(np.float32)


@pytest.mark.parametrize("q", [10, 30, 50, 75, 90])
def test_jpeg_quality_is_read_from_the_pixels(q: int) -> None:
    u = _scene()
    est = levels.jpeg_quality(dg.jpeg(u, q))
    assert abs(est - q) <= 3, (q, est)


def test_uncompressed_and_shifted_grid_read_as_no_jpeg() -> None:
    u = _scene()
    assert levels.jpeg_quality(dg.to_uint8(u).astype(np.float32) / 255) == 100
    # a crop off the 8x8 grid hides the quantisation: no false "compressed"
    assert levels.jpeg_quality(dg.jpeg(u, 40)[3:, 5:]) == 100
    assert levels.jpeg_level(100) == 0.0 and levels.jpeg_level(10) == 1.0


def test_noise_level_follows_sigma() -> None:
    u = _scene(seed=1)
    rng = np.random.default_rng(0)
    est = [levels.noise_level(np.clip(u + rng.normal(0, s / 255, u.shape), 0, 1).astype(np.float32)) * 255
           for s in (0, 5, 15, 25, 50)]
    assert est == sorted(est)
    assert est[0] < 3.0
    for s, e in zip((15, 25, 50), est[2:], strict=True):
        assert 0.7 * s < e < 1.2 * s, (s, e)


def test_restorer_tells_a_level_aware_model_the_levels(tmp_path: Path) -> None:
    model = write_restorer(tmp_path / "lv.onnx", "levels", gain=0.1)
    u = np.full((200, 300, 3), 0.3, np.float32)
    rng = np.random.default_rng(2)
    noisy = np.clip(u + rng.normal(0, 20 / 255, u.shape), 0, 1).astype(np.float32)
    r = Restorer(model, tile=128, overlap=32, workers=1)
    out = r.run(noisy)
    told_noise = float((out - noisy)[..., 0].mean()) / 0.1 / levels.NOISE_SCALE
    assert abs(told_noise - levels.noise_level(noisy)) < 0.15 * levels.noise_level(noisy)
    assert abs(told_noise * 255 - 20) < 5
    assert abs(float((out - noisy)[..., 1].mean())) < 1e-4  # no JPEG found
    assert np.allclose(out[..., 2], noisy[..., 2], atol=1e-6)

    comp = dg.jpeg(_scene(200, 304), 20)
    out = r.run(comp)
    assert float(np.median((out - comp)[..., 1])) == pytest.approx(0.1 * levels.jpeg_level(20), abs=0.02)
    # the caller can say it instead (a user's setting, an evaluation's known level)
    out = r.run(comp, noise=0.0, jpeg_quality=95)
    assert np.allclose(out, comp, atol=1e-6)


def test_good_jpegs_are_not_deblocked(tmp_path: Path) -> None:
    """Inside the dead zone the restorer is told JPEG level 0; below it, the measured level."""
    assert levels.restore_jpeg_level(90) == 0.0 and levels.restore_jpeg_level(levels.JPEG_ZONE) == 0.0
    assert levels.restore_jpeg_level(50) == levels.jpeg_level(50) > 0
    assert levels.restore_jpeg_level(90, zone=None) == levels.jpeg_level(90) > 0
    model = write_restorer(tmp_path / "lv.onnx", "levels", gain=0.1)
    r = Restorer(model, tile=128, overlap=32, workers=1)
    good = dg.jpeg(_scene(200, 304), 90)
    assert levels.jpeg_quality(good) >= levels.JPEG_ZONE
    told = r.run(good, noise=0.0) - good
    assert abs(float(np.median(told[..., 1]))) < 1e-4  # level 0 in the zone
    told = r.run(good, noise=0.0, jpeg_zone=None) - good  # an evaluation can switch it off
    assert float(np.median(told[..., 1])) == pytest.approx(0.1 * levels.jpeg_level(levels.jpeg_quality(good)),
                                                           abs=0.01)
    bad = dg.jpeg(_scene(200, 304), 40)
    told = r.run(bad, noise=0.0) - bad
    assert float(np.median(told[..., 1])) == pytest.approx(0.1 * levels.jpeg_level(40), abs=0.02)


def test_camera_pipeline_pairs() -> None:
    u = _scene(128, 130, seed=3)
    lo = dg.camera_pipeline(u, np.random.default_rng(0), strength=0.0, blur=False, quality=95)
    hi = dg.camera_pipeline(u, np.random.default_rng(0), strength=1.0, blur=False, quality=95)
    assert lo.target is not None and hi.target is not None
    assert lo.image.shape == lo.target.shape == (128, 130, 3)
    assert np.array_equal(lo.target, hi.target)  # same camera, same scene: same noiseless rendering
    assert np.std(hi.image - hi.target) > 2 * np.std(lo.image - lo.target)
    assert {a.kind for a in hi.applied} == {"camera_noise", "jpeg"}
    assert hi.severity["noise"] > lo.severity["noise"]


@pytest.mark.parametrize("branch", dg.REALISTIC_BRANCHES)
def test_realistic_pairs_are_aligned_and_reproducible(branch: str) -> None:
    u = _scene(192, 192, seed=4)
    a = dg.degrade_realistic(u, np.random.default_rng(7), branch=branch)
    b = dg.degrade_realistic(u, np.random.default_rng(7), branch=branch)
    assert np.array_equal(a.image, b.image)
    t = a.target if a.target is not None else u
    assert a.image.shape == t.shape and a.image.dtype == np.float32
    assert float(a.image.min()) >= 0.0 and float(a.image.max()) <= 1.0
    if branch == "clean":
        assert not a.applied and np.array_equal(a.image, u)
    else:
        assert a.applied


def test_recipes_record_the_dead_zone_and_old_ones_replay_as_made(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.enhance.pipeline import Pipeline
    from engine.enhance.recipes import Recipe, StageSpec
    from tests.pipeline_fixtures import setup_models

    d = setup_models(tmp_path, monkeypatch, "levels", gain=0.1)
    pipe = Pipeline(d)
    good = dg.jpeg(_scene(200, 304), 90)
    rec = pipe.plan(good, ops="restore")
    st = rec.stages[0]
    assert st.params == {"jpeg_zone": levels.JPEG_ZONE}
    now = pipe.apply(rec, good)
    old = pipe.apply(Recipe(stages=(StageSpec("restore", 1.0, st.model, st.model_version, {}),)), good)
    lv = levels.jpeg_level(levels.jpeg_quality(good))
    assert lv > 0
    assert abs(float(np.median((now - good)[..., 1]))) < 1e-3  # not told about the JPEG
    assert float(np.median((old - good)[..., 1])) == pytest.approx(0.1 * lv, abs=0.01)  # as it was made
