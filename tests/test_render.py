"""Rendering: previews at screen size, full renders, the disk cache, orientation, old models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.core.runtime import model_version
from engine.enhance.pipeline import Pipeline
from engine.enhance.recipes import ModelGone, Recipe, StageSpec
from engine.enhance.render import RenderCache, Renderer, atomic_write_bytes, fit_side, to_uint8
from tests.conftest import ImageFactory, exif_bytes
from tests.onnx_fixtures import write_restorer
from tests.pipeline_fixtures import setup_models


class CountingPipeline(Pipeline):
    def __init__(self, d: Path) -> None:
        super().__init__(d)
        self.calls = 0

    def apply(self, recipe: Recipe, rgb: np.ndarray, progress: Any = None, cancel: Any = None) -> np.ndarray:
        self.calls += 1
        return super().apply(recipe, rgb, progress, cancel)


def _gain_recipe(d: Path) -> Recipe:
    return Recipe(stages=(StageSpec("restore", 1.0, "restorer", model_version(d / "restorer.onnx"), {}),))


@pytest.fixture
def renderer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Renderer, CountingPipeline, Path]:
    d = setup_models(tmp_path, monkeypatch, "gain", gain=0.5)
    pipe = CountingPipeline(d)
    return Renderer(pipe, RenderCache(tmp_path / "cache")), pipe, d


def test_preview_is_screen_size_upright_and_cached(renderer: Any, make_image: ImageFactory) -> None:
    r, pipe, d = renderer
    # stored landscape 200x120 with orientation 6 (rotate 90): shown portrait 120x200
    src = make_image("p.jpg", 200, 120, exif=exif_bytes(orientation=6))
    rec = _gain_recipe(d)
    before, after = r.preview(src, "fp1", rec, max_side=100)
    assert before.shape == (100, 60, 3) and after.shape == before.shape
    assert before.dtype == np.uint8 and after.dtype == np.uint8
    np.testing.assert_allclose(after.astype(float), before * 0.5, atol=1.0)
    assert pipe.calls == 1
    b2, a2 = r.preview(src, "fp1", rec, max_side=100)
    assert pipe.calls == 1 and np.array_equal(a2, after)  # served from the cache
    r.preview(src, "fp2", rec, max_side=100)  # new content fingerprint: new entry
    r.preview(src, "fp1", rec, max_side=80)  # new size: new entry
    assert pipe.calls == 3
    b0, a0 = r.preview(src, "fp1", None, max_side=100)
    assert np.array_equal(a0, b0)


def test_full_render_keeps_icc_and_exif_and_is_cached_16_bit(renderer: Any, make_image: ImageFactory,
                                                             tmp_path: Path) -> None:
    from PIL import Image

    r, pipe, d = renderer
    src = make_image("q.jpg", 90, 60, exif=exif_bytes(orientation=8, gps=True))
    icc = b"\x00" * 128  # any bytes: we only check they are carried
    with Image.open(src) as im:
        im.load()
        im.save(src, "JPEG", quality=95, exif=exif_bytes(orientation=8, gps=True), icc_profile=icc)
    rec = _gain_recipe(d)
    out = r.full(src, "fpq", rec)
    assert out.rgb.shape == (90, 60, 3) and out.rgb.dtype == np.float32
    assert out.orientation == 8 and out.icc == icc and out.exif and not out.from_cache
    again = r.full(src, "fpq", rec)
    assert again.from_cache and pipe.calls == 1
    assert np.abs(again.rgb - out.rgb).max() <= 1 / 65535 + 1e-7  # 16-bit cache: no 8-bit rounding
    plain = r.full(src, "fpq", None)
    np.testing.assert_allclose(out.rgb, plain.rgb * 0.5, atol=1e-5)


def test_preview_after_a_full_render_reuses_it(renderer: Any, make_image: ImageFactory) -> None:
    r, pipe, d = renderer
    src = make_image("f.jpg", 120, 90)
    rec = _gain_recipe(d)
    full = r.full(src, "fpf", rec)
    assert pipe.calls == 1
    before, after = r.preview(src, "fpf", rec, max_side=60)
    assert pipe.calls == 1 and after.shape == before.shape == (45, 60, 3)
    np.testing.assert_allclose(after.astype(float), before * 0.5, atol=4.0)  # JPEG DCT-scaled vs area resize
    r.store_preview(src, "fpf", rec, full.rgb, max_side=50)
    b2, a2 = r.preview(src, "fpf", rec, max_side=50)
    assert pipe.calls == 1 and a2.shape == b2.shape


def test_a_torn_cache_entry_is_recomputed(renderer: Any, make_image: ImageFactory, tmp_path: Path) -> None:
    r, pipe, d = renderer
    src = make_image("t.jpg", 40, 30)
    rec = _gain_recipe(d)
    _, first = r.preview(src, "fpt", rec, max_side=64)
    entries = list((tmp_path / "cache" / "renders").rglob("*.npy"))
    assert len(entries) == 2  # the decoded original and the rendered preview
    for e in entries:
        e.write_bytes(e.read_bytes()[:40])  # as if cut short
    _, second = r.preview(src, "fpt", rec, max_side=64)
    assert pipe.calls == 2 and np.array_equal(first, second)
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_cache_is_bounded(tmp_path: Path) -> None:
    c = RenderCache(tmp_path, max_bytes=3 * 10_000)
    for i in range(6):
        c.put(c.key(str(i), "h", "s"), np.zeros(10_000, np.uint8))
    files = list((tmp_path / "renders").rglob("*.npy"))
    assert 1 <= len(files) <= 3
    assert c.get(c.key("5", "h", "s")) is not None  # the newest stays


def test_recipe_of_an_older_model_renders_while_its_file_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               make_image: ImageFactory) -> None:
    d = setup_models(tmp_path, monkeypatch, "gain", gain=0.5)
    old = _gain_recipe(d)
    # a new restorer ships; the old one is kept as restorer_2026-01.onnx
    os.rename(d / "restorer.onnx", d / "restorer_2026-01.onnx")
    write_restorer(d / "restorer.onnx", "identity")
    r = Renderer(Pipeline(d), RenderCache(tmp_path / "c"))
    src = make_image("o.jpg", 32, 24)
    before, after = r.preview(src, "fpo", old, max_side=64)
    np.testing.assert_allclose(after.astype(float), before * 0.5, atol=1.0)  # the OLD model ran
    (d / "restorer_2026-01.onnx").unlink()
    r2 = Renderer(Pipeline(d), RenderCache(tmp_path / "c2"))
    with pytest.raises(ModelGone, match="no longer installed"):
        r2.preview(src, "fpo", old, max_side=64)
    with pytest.raises(ModelGone):
        r2.full(src, "fpo", old)


def test_atomic_write_bytes_replaces_whole_files(tmp_path: Path) -> None:
    p = tmp_path / "a" / "b.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert [x.name for x in p.parent.iterdir()] == ["b.bin"]


def test_fit_side_and_to_uint8() -> None:
    a = np.zeros((300, 200, 3), np.uint8)
    assert fit_side(a, 150).shape == (150, 100, 3)
    assert fit_side(a, 400) is a
    assert to_uint8(np.array([[-1.0, 0.5, 2.0]], np.float32)).tolist() == [[0, 128, 255]]
