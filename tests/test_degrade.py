"""The degradation model v = C(S(u*k)+n): reproducible, reports what it did, and does it."""

from __future__ import annotations

import numpy as np
import pytest

from engine.assess import degrade as dg


def _photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth synthetic scene with edges and texture (not flat, so blur is measurable)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5) * np.cos(yy / 7)], axis=2)
    img[h // 3 : 2 * h // 3, w // 4 : w // 2] = [0.9, 0.2, 0.1]
    img += rng.normal(0, 0.01, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def _sharpness(img: np.ndarray) -> float:
    g = img.mean(axis=2)
    return float(np.abs(np.diff(g, axis=1)).mean() + np.abs(np.diff(g, axis=0)).mean())


def test_same_seed_same_result_and_report() -> None:
    u = _photo()
    a = dg.degrade(u, np.random.default_rng(7))
    b = dg.degrade(u, np.random.default_rng(7))
    np.testing.assert_array_equal(a.image, b.image)
    assert [x.kind for x in a.applied] == [x.kind for x in b.applied]
    c = dg.degrade(u, np.random.default_rng(8))
    assert not np.array_equal(a.image, c.image) or a.applied != c.applied


def test_reports_cover_every_severity_and_stay_in_range() -> None:
    u = _photo()
    seen: set[str] = set()
    rng = np.random.default_rng(0)
    for _ in range(300):
        r = dg.degrade(u, rng)
        v = r.severity_vector()
        assert v.shape == (len(dg.SEVERITY_NAMES),)
        assert np.all((v >= 0) & (v <= 1))
        assert r.image.dtype == np.float32 and r.image.min() >= 0 and r.image.max() <= 1
        seen |= {k for k, s in r.severity.items() if s > 0}
    assert {"motion_blur", "defocus_blur", "noise", "compression", "clipped_highlights"} <= seen


@pytest.mark.parametrize("kind", ["gaussian_blur", "aniso_blur", "defocus_blur", "motion_blur"])
def test_blur_removes_detail_and_kernels_sum_to_one(kind: str) -> None:
    u = _photo()
    out, a = dg.apply_blur(u, np.random.default_rng(1), kind=kind, strength=0.8)
    assert a.kind == kind
    assert _sharpness(out) < 0.8 * _sharpness(u)
    for k in (dg.gaussian_kernel(2.0, 1.0, 0.3), dg.disk_kernel(3.5),
              dg.motion_kernel(np.random.default_rng(2), 9.0)):
        assert abs(float(k.sum()) - 1.0) < 1e-5


@pytest.mark.parametrize("kind", ["gaussian_noise", "poisson_gaussian_noise", "chroma_noise", "correlated_noise"])
def test_noise_strength_is_monotonic(kind: str) -> None:
    u = _photo()
    errs = []
    for s in (0.2, 0.6, 1.0):
        out, _ = dg.apply_noise(u, np.random.default_rng(3), kind=kind, strength=s)
        errs.append(float(np.abs(out - u).mean()))
    assert errs[0] < errs[1] < errs[2]


def test_jpeg_quality_orders_error_and_saturation_clips() -> None:
    u = _photo()
    e10 = float(np.abs(dg.jpeg(u, 10) - u).mean())
    e90 = float(np.abs(dg.jpeg(u, 90) - u).mean())
    assert e10 > 2 * e90
    out, a = dg.apply_saturation(u, np.random.default_rng(0), strength=1.0)
    assert out.max() <= 1.0 and a.params["clipped_fraction"] > 0


def test_shallow_depth_of_field_is_not_a_defect() -> None:
    r = dg.shallow_dof(_photo(), np.random.default_rng(0))
    assert all(v == 0 for v in r.severity.values())
