"""models.training.eval_restorer on a tiny synthetic 'validation split' with a fixture model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.training import eval_restorer as ev
from models.training.data import Photo
from tests.onnx_fixtures import write_restorer


def test_evaluate_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    photos = []
    for i in range(2):
        yy, xx = np.mgrid[0:40, 0:56]
        img = np.stack([xx * 4, yy * 5, 128 + 60 * np.sin(xx / 3.0)], axis=2) + rng.normal(0, 3, (40, 56, 3))
        p = tmp_path / f"p{i}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
        photos.append(Photo(p, "synthetic", False))
    monkeypatch.setattr(ev, "discover", lambda split: photos if split == "val" else [])
    model = write_restorer(tmp_path / "identity.onnx", "identity")
    prev = write_restorer(tmp_path / "blur.onnx", "blur")
    rep = ev.evaluate(model, limit=0, crop=32, log=lambda s: None, baseline_model=prev, bm3d_limit=1)
    res = rep["results"]
    assert rep["photos"] == 2 and rep["crop"] == 32
    assert set(res) == {c.key for c in ev.CASES}
    # an identity "restorer" is exactly "do nothing" in every case, and perfect on clean input
    for case in ev.CASES:
        assert res[case.key]["model"]["psnr"] == pytest.approx(res[case.key]["none"]["psnr"], abs=1e-6)
        assert ("nlm" in res[case.key]) == case.nlm
        assert ("bm3d" in res[case.key]) == (case.bm3d_sigma is not None)
        assert res[case.key]["prev"]["n"] == 2
    assert res["noise25"]["bm3d"]["n"] == 1  # only on the first --bm3d-limit photos
    assert res["noise25"]["bm3d"]["psnr"] > res["noise25"]["none"]["psnr"] + 2
    # the level estimates are recorded (32-px crops hold too few blocks to read a JPEG quality)
    assert rep["level_estimates"]["noise50:noise255"]["mean"] > rep["level_estimates"]["noise15:noise255"]["mean"]
    assert res["clean"]["model"]["psnr"] == 100.0  # capped infinity
    assert rep["clean_model_share_ge_38db"] == 1.0
    # degradations really degrade, and harder settings degrade more
    assert res["noise50"]["none"]["psnr"] < res["noise25"]["none"]["psnr"] < res["noise15"]["none"]["psnr"] < 40
    assert res["jpeg10"]["none"]["psnr"] < res["jpeg40"]["none"]["psnr"]
    # NL-means removes much of the sigma-25 noise
    assert res["noise25"]["nlm"]["psnr"] > res["noise25"]["none"]["psnr"] + 2
    md = ev.markdown(rep)
    assert "| Gaussian noise σ=25 |" in md and "Restorer" in md


def test_degradations_are_reproducible() -> None:
    u = np.random.default_rng(1).random((24, 24, 3)).astype(np.float32)
    for ci in range(len(ev.CASES)):
        a, ra = ev.degraded(u, ci, 3)
        b, rb = ev.degraded(u, ci, 3)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ra, rb)
        assert a.shape == ra.shape
    assert not np.array_equal(ev.degraded(u, 1, 3)[0], ev.degraded(u, 1, 4)[0])
