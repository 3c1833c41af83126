"""engine.enhance.restore: tiled full-resolution inference with fixture graphs of the restorer contract."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.core import runtime
from engine.core.jobs import CancelToken, JobCancelled, Progress
from engine.enhance.restore import Restorer, get_restorer, plan_axis, reflect_indices
from tests.onnx_fixtures import BINOMIAL_3x3, write_restorer


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / max(w, 1), yy / max(h, 1), 0.5 + 0.3 * np.sin(xx / 3) * np.cos(yy / 4)], axis=2)
    return np.clip(img + rng.normal(0, 0.1, img.shape), 0, 1).astype(np.float32)


@pytest.fixture
def blur_model(tmp_path: Path) -> Path:
    return write_restorer(tmp_path / "blur.onnx", "blur", offset=0.02)


def _blur_reference(img: np.ndarray, offset: float = 0.02) -> np.ndarray:
    """The fixture's operation on the whole image with reflected borders, independent of tiling."""
    return np.clip(cv2.filter2D(img, -1, BINOMIAL_3x3, borderType=cv2.BORDER_REFLECT_101) + offset, 0, 1)


def test_tiled_equals_single_pass(blur_model: Path) -> None:
    img = _photo(203, 150)
    tiled = Restorer(blur_model, tile=64, overlap=16)
    single = Restorer(blur_model, tile=1024, overlap=16)
    assert tiled.tile_count(203, 150) > 9  # really tiled
    assert single.tile_count(203, 150) == 1
    a = tiled.run(img)
    b = single.run(img)
    assert a.shape == img.shape and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=2e-6)
    np.testing.assert_allclose(a, _blur_reference(img), atol=2e-6)
    assert np.abs(a - img).max() > 0.05  # the model did something


def test_parallel_workers_give_the_same_result(blur_model: Path) -> None:
    img = _photo(120, 170, 3)
    a = Restorer(blur_model, tile=64, overlap=16, workers=1).run(img)
    b = Restorer(blur_model, tile=64, overlap=16, workers=2).run(img)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (7, 1), (2, 3), (5, 3), (9, 17), (31, 8), (65, 129)])
def test_any_size(blur_model: Path, h: int, w: int) -> None:
    img = _photo(h, w, h * 100 + w)
    out = Restorer(blur_model, tile=64, overlap=16).run(img)
    assert out.shape == (h, w, 3) and out.dtype == np.float32
    if h >= 2 and w >= 2:
        np.testing.assert_allclose(out, _blur_reference(img), atol=2e-6)
    else:
        # reflection of a single row/column: the blur acts along the other axis only
        ry = reflect_indices(np.arange(-1, h + 1), h)
        rx = reflect_indices(np.arange(-1, w + 1), w)
        pad = img[ry[:, None], rx[None, :]]
        ref = cv2.filter2D(pad, -1, BINOMIAL_3x3, borderType=cv2.BORDER_CONSTANT)[1:-1, 1:-1]
        np.testing.assert_allclose(out, np.clip(ref + 0.02, 0, 1), atol=2e-6)


def test_strength_blends(tmp_path: Path) -> None:
    model = write_restorer(tmp_path / "gain.onnx", "gain", gain=0.5, offset=0.1)
    img = _photo(40, 30)
    r = Restorer(model, tile=64, overlap=16)
    zero = r.run(img, strength=0.0)
    np.testing.assert_array_equal(zero, img)
    full = r.run(img, strength=1.0)
    np.testing.assert_allclose(full, img * 0.5 + 0.1, atol=1e-6)
    half = r.run(img, strength=0.5)
    np.testing.assert_allclose(half, img + 0.5 * (full - img), atol=1e-6)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            r.run(img, strength=bad)


def test_uint8_input_and_bad_shapes(blur_model: Path) -> None:
    r = Restorer(blur_model, tile=64, overlap=16)
    img8 = (_photo(20, 20) * 255).astype(np.uint8)
    out = r.run(img8)
    np.testing.assert_allclose(out, _blur_reference(img8.astype(np.float32) / 255), atol=2e-6)
    for shape in [(10, 10), (10, 10, 4), (0, 5, 3)]:
        with pytest.raises(ValueError):
            r.run(np.zeros(shape, np.float32))


def test_progress_reaches_total(blur_model: Path) -> None:
    r = Restorer(blur_model, tile=64, overlap=16)
    seen: list[Progress] = []
    r.run(_photo(130, 170), progress=seen.append)
    total = r.tile_count(130, 170)
    assert total > 4
    assert seen[0].done == 0 and seen[-1].done == total
    assert all(p.total == total for p in seen)
    assert [p.done for p in seen] == list(range(total + 1))


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_raises_job_cancelled(blur_model: Path, workers: int) -> None:
    r = Restorer(blur_model, tile=64, overlap=16, workers=workers)
    token = CancelToken()
    seen: list[int] = []

    def on_progress(p: Progress) -> None:
        seen.append(p.done)
        if p.done == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        r.run(_photo(200, 200), progress=on_progress, cancel=token)
    assert max(seen) < r.tile_count(200, 200)
    # a token cancelled before the start stops at once, even at strength 0
    with pytest.raises(JobCancelled):
        r.run(_photo(20, 20), cancel=token)
    with pytest.raises(JobCancelled):
        r.run(_photo(20, 20), strength=0.0, cancel=token)


def test_feather_weights_partition_unity() -> None:
    for length in (1, 7, 100, 513, 1000, 4001):
        p = plan_axis(length, 256, 64, 16)
        total = np.zeros(p.canvas)
        for s, w in zip(p.starts, p.weights, strict=True):
            total[s : s + p.size] += w
            assert p.size % 8 == 0 and s % 8 == 0
        np.testing.assert_allclose(total[p.pad_before : p.pad_before + length], 1.0, atol=1e-6)
        assert p.canvas % 8 == 0 and p.pad_before >= 16


def test_model_version_missing_model_and_shared(blur_model: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    r = Restorer(blur_model)
    assert r.model_version == runtime.model_version(blur_model)
    with pytest.raises(runtime.ModelMissing):
        Restorer(tmp_path / "missing.onnx")
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(blur_model.parent))
    (blur_model.parent / "restorer.onnx").write_bytes(blur_model.read_bytes())
    assert get_restorer() is get_restorer(blur_model.parent / "restorer.onnx")
    with pytest.raises(ValueError):
        Restorer(blur_model, tile=60)
    with pytest.raises(ValueError):
        Restorer(blur_model, tile=64, overlap=48)
