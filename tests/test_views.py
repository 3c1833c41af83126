"""engine.assess.views: the assessor's crops and global view, shared by training and inference."""

from __future__ import annotations

import numpy as np
import pytest

from engine.assess.views import CROP, GLOBAL, K_CROPS, crop_positions, make_views


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0.3 * np.sin(x / 6) * np.cos(y / 9)], axis=2) * 255
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("h,w", [(7, 10), (1, 1), (64, 64), (96, 96), (333, 517), (700, 1000), (2000, 90)])
def test_shapes_range_and_dtype(h: int, w: int) -> None:
    crops, glob = make_views(_scene(h, w))
    assert crops.shape == (K_CROPS, 3, CROP, CROP) and crops.dtype == np.float32
    assert glob.shape == (3, GLOBAL, GLOBAL) and glob.dtype == np.float32
    for a in (crops, glob):
        assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0


def test_deterministic_and_other_input_types() -> None:
    img = _scene(300, 400)
    a = make_views(img)
    b = make_views(img.copy())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    f = make_views(img.astype(np.float32) / 255.0)  # float input gives the same pixels
    np.testing.assert_allclose(f[0], a[0], atol=1 / 255 + 1e-6)
    g = make_views(img[:, :, 0])  # grey
    assert g[0].shape == a[0].shape
    with pytest.raises(ValueError):
        make_views(np.zeros((0, 5, 3), np.uint8))


def test_crops_are_native_pixels_from_detailed_to_flat() -> None:
    """Crops are unresampled pixels; the first is in the textured half, the last in the flat half."""
    h, w = 256, 512
    rng = np.random.default_rng(1)
    img = np.full((h, w, 3), 120, np.uint8)
    img[:, : w // 2] = rng.integers(0, 256, (h, w // 2, 3), dtype=np.uint8)  # busy left half
    crops, _ = make_views(img)
    pos = crop_positions(img)
    for (y, x), c in zip(pos, crops, strict=True):
        np.testing.assert_array_equal((c.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8),
                                      img[y : y + CROP, x : x + CROP])
    assert pos[0][1] + CROP <= w // 2  # most detailed: entirely in the busy half
    assert pos[-1][1] >= w // 2  # flattest: entirely in the flat half
    assert crops[-1].std() < 1e-6


def test_training_jitter_moves_crops_within_bounds() -> None:
    img = _scene(400, 600)
    base = crop_positions(img)
    jit = crop_positions(img, rng=np.random.default_rng(3))
    assert base != jit
    for y, x in jit:
        assert 0 <= y <= 400 - CROP and 0 <= x <= 600 - CROP


def test_shared_pre_reduction_matches_direct_area_views() -> None:
    """The global view made from the integer pre-reduction is the direct area reduction up to
    the few dropped edge pixels, and crops still come from the full-resolution pixels."""
    import cv2

    from engine.assess.views import pre_reduce

    img = _scene(1503, 2011)  # odd sizes: the exact factor drops a few edge pixels
    small = pre_reduce(img)
    r = img.shape[1] // small.shape[1]
    assert r >= 2 and small.shape[0] == img.shape[0] // r
    crops, glob = make_views(img)
    direct = cv2.resize(img, (GLOBAL, GLOBAL), interpolation=cv2.INTER_AREA).transpose(2, 0, 1) / 255.0
    assert np.abs(glob - direct).mean() < 0.01
    (y, x) = crop_positions(img, small=small)[0]
    np.testing.assert_allclose(crops[0], img[y:y + CROP, x:x + CROP].transpose(2, 0, 1) / 255.0, atol=1e-6)
    # photos too small to pre-reduce are used as they are
    tiny = _scene(200, 300)
    assert pre_reduce(tiny) is tiny
