"""Properties of the tone operators and the tone stage (engine/enhance/tone.py); no torch needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.assess import degrade as dg
from engine.assess.metrics import psnr
from engine.enhance import tone as T


def _photo(h: int = 72, w: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth scene with edges and texture, mid-tones dominant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([0.45 + 0.3 * np.sin(xx / 9 + c) * np.cos(yy / 13 - c) for c in (0.0, 0.8, 1.9)], axis=2)
    img[h // 3 : 2 * h // 3, w // 4 : w // 2] *= 0.5  # a darker object with hard edges
    img += rng.normal(0, 0.03, img.shape)
    return np.clip(img, 0.02, 0.98).astype(np.float32)


def test_neutral_params_are_identity() -> None:
    img = _photo()
    out = T.apply_params(img, dict(T.NEUTRAL))
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.abs(out - img).max() < 1e-6
    assert np.abs(T.apply_params(img, {}) - img).max() < 1e-6


def test_strength_zero_is_identity_and_strength_interpolates() -> None:
    img = _photo()
    p = {"exposure": 1.0, "contrast": 0.5, "saturation": 0.4, "dehaze": 0.5, "shadows": 0.6,
         "temperature": 0.2, "airlight": [0.9, 0.9, 0.9]}
    assert np.abs(T.apply_params(img, p, strength=0.0) - img).max() == 0.0
    d_half = np.abs(T.apply_params(img, p, strength=0.5) - img).mean()
    d_full = np.abs(T.apply_params(img, p, strength=1.0) - img).mean()
    assert 0.0 < d_half < d_full
    assert T.scale_params(p, 0.5)["exposure"] == pytest.approx(0.5)


def test_exposure_is_monotonic() -> None:
    img = _photo()
    means = [float(T.apply_params(img, {"exposure": ev}).mean()) for ev in (-2, -1, -0.3, 0, 0.3, 1, 2)]
    assert all(a < b for a, b in zip(means, means[1:], strict=False))
    # pixelwise too: brighter never makes a pixel darker
    lo, hi = T.apply_params(img, {"exposure": 0.2}), T.apply_params(img, {"exposure": 0.6})
    assert np.all(hi >= lo - 1e-6)


def test_exposure_undoes_underexposure() -> None:
    img = _photo()
    dark, a = dg.apply_tone(img, np.random.default_rng(0), "underexposure", 0.5)
    fixed = T.apply_params(dark, {"exposure": -a.params["stops"]})
    assert psnr(fixed, img) > 40.0
    assert psnr(dark, img) < 20.0


def test_levels_undo_low_contrast() -> None:
    img = _photo()
    flat, a = dg.apply_tone(img, np.random.default_rng(0), "low_contrast", 0.6)
    m = float(dg.luminance(img).mean())
    k = a.params["amount"]
    # x' = (1-k) x + k m  =>  x = (x' - k m) / (1-k): black = k m, white = k m + 1 - k
    fixed = T.apply_params(flat, {"black": k * m, "white": k * m + 1 - k})
    assert psnr(fixed, img) > 40.0


def test_white_balance_undoes_cast() -> None:
    img = _photo()
    cast, a = dg.apply_tone(img, np.random.default_rng(3), "color_cast", 0.7)
    g = np.log(np.array(a.params["gains"]))
    # our gains are exp([t - g/3, 2g/3, -t - g/3]) (zero-mean logs); fit t, g to invert theirs
    inv = -(g - g.mean())
    t = (inv[0] - inv[2]) / 2
    tint = inv[1] * 1.5
    fixed = T.apply_params(cast, {"temperature": t, "tint": tint})
    assert psnr(fixed, img) > psnr(cast, img) + 10


def test_dehaze_removes_haze_and_airlight_estimate() -> None:
    img = _photo(96, 128)
    hazy = (img * 0.5 + 0.5 * np.array([0.85, 0.87, 0.9], np.float32)).astype(np.float32)
    air = T.estimate_airlight(hazy)
    assert all(0.5 <= v <= 1.0 for v in air)
    out = T.apply_params(hazy, {"dehaze": 0.6, "airlight": air})
    assert dg.luminance(out).std() > 1.3 * dg.luminance(hazy).std()  # contrast back
    assert psnr(out, img) > psnr(hazy, img)
    # without a stored airlight it is estimated from the image, the same way
    out2 = T.apply_params(hazy, {"dehaze": 0.6})
    assert np.abs(out - out2).max() < 1e-6


def test_local_tone_lifts_shadows_and_keeps_detail() -> None:
    img = _photo() * 0.35  # a dark photo
    out = T.apply_params(img, {"shadows": 1.0})
    assert out.mean() > img.mean() * 1.3
    # detail: the high-pass energy grows with the gain (no flattening of texture)
    hp_in = img - np.asarray(__import__("cv2").GaussianBlur(img, (0, 0), 2))
    hp_out = out - np.asarray(__import__("cv2").GaussianBlur(out, (0, 0), 2))
    assert hp_out.std() > hp_in.std()
    bright = np.clip(_photo() * 1.6, 0, 1)
    comp = T.apply_params(bright, {"highlights": 1.0})
    assert comp.mean() < bright.mean()


def test_contrast_and_saturation_direction() -> None:
    img = _photo()
    more = T.apply_params(img, {"contrast": 0.6})
    assert dg.luminance(more).std() > dg.luminance(img).std()
    sat = T.apply_params(img, {"saturation": 0.5})
    chroma = lambda x: float((x.max(axis=2) - x.min(axis=2)).mean())  # noqa: E731
    assert chroma(sat) > chroma(img)
    grey = T.apply_params(img, {"saturation": -0.8})
    assert chroma(grey) < chroma(img)
    vib = T.apply_params(img, {"vibrance": 0.8})
    assert chroma(vib) > chroma(img)


def test_full_resolution_matches_small_render() -> None:
    """Spatial operators work on a capped copy: a big render, downscaled, matches a small one."""
    import cv2

    big = cv2.resize(_photo(90, 120), (1200, 900), interpolation=cv2.INTER_CUBIC)
    big = np.clip(big, 0, 1).astype(np.float32)
    small = cv2.resize(big, (T.WORK_SIDE, T.WORK_SIDE * 3 // 4), interpolation=cv2.INTER_AREA)
    p = {"dehaze": 0.5, "shadows": 0.8, "highlights": 0.4, "exposure": 0.3, "airlight": T.estimate_airlight(big)}
    out_big = T.apply_params(big, p)
    out_small = T.apply_params(small, p)
    down = cv2.resize(out_big, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    assert psnr(down, out_small) > 35.0


def test_params_clamped_and_bad_values_neutral() -> None:
    img = _photo()
    p = T.clean_params({"exposure": 99.0, "contrast": float("nan"), "bogus": 1.0})
    assert p["exposure"] == T.BOUNDS["exposure"][1]
    assert p["contrast"] == 0.0
    out = T.apply_params(img, {"exposure": 99.0, "contrast": float("nan")})
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError):
        T.apply_params(img[:, :, 0], {})


def _const_model(path: Path, values: list[float]) -> None:
    """A tiny real ONNX graph with the tone contract: view [N,3,128,128] -> params [N,P]."""
    import onnx
    from onnx import TensorProto, helper

    n = len(values)
    view = helper.make_tensor_value_info("view", TensorProto.FLOAT, ["n", 3, T.NET_SIDE, T.NET_SIDE])
    out = helper.make_tensor_value_info("params", TensorProto.FLOAT, ["n", n])
    const = helper.make_tensor("c", TensorProto.FLOAT, [1, n], values)
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    nodes = [
        helper.make_node("ReduceMean", ["view", "axes"], ["m"], keepdims=1),  # [n,1,1,1]
        helper.make_node("Flatten", ["m"], ["mf"], axis=1),  # [n,1]
        helper.make_node("Mul", ["mf", "zero"], ["z"]),
        helper.make_node("Add", ["z", "c"], ["params"]),
    ]
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    g = helper.make_graph(nodes, "tone_const", [view], [out], initializer=[const, axes, zero])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.save(m, str(path))


def test_predict_params_contract(tmp_path: Path) -> None:
    vals = [0.2, 0.1, 0.0, 0.5, 0.05, 0.95, 0.3, 0.1, 0.2, 0.1, 0.1]
    assert len(vals) == len(T.PARAM_NAMES)
    path = tmp_path / "tone.onnx"
    _const_model(path, vals)
    img = _photo(150, 200)
    p = T.predict_params(img, model_path=path)
    assert json.loads(json.dumps(p)) == p  # JSON round trip is exact
    for k, v in zip(T.PARAM_NAMES, vals, strict=True):
        assert p[k] == pytest.approx(v, abs=1e-6)
    assert len(p["airlight"]) == 3
    out = T.apply_params(img, json.loads(json.dumps(p)))
    assert out.shape == img.shape and np.isfinite(out).all()


def test_gate_drops_small_changes_keeps_large_and_is_continuous() -> None:
    dz = {"exposure": 0.2, "contrast": 0.1}
    p = T.gate_params({"exposure": 0.15, "contrast": -0.05, "saturation": 0.04}, dz)
    assert p["exposure"] == 0.0 and p["contrast"] == 0.0  # inside the dead zone: no change
    assert p["saturation"] == pytest.approx(0.04)  # no dead zone for it: kept
    assert T.gate_params({"exposure": 0.5}, dz)["exposure"] == pytest.approx(0.5)  # beyond 2t: whole
    assert T.gate_params({"exposure": -0.3}, dz)["exposure"] == pytest.approx(-0.15)  # on the ramp, sign kept
    # continuous across both ends of the ramp; "white" is measured from its neutral value 1.0
    for t in (0.2, 0.4):
        lo, hi = (T.gate_params({"exposure": t + e}, dz)["exposure"] for e in (-1e-6, 1e-6))
        assert abs(hi - lo) < 1e-4
    assert T.gate_params({"white": 0.95}, {"white": 0.1})["white"] == 1.0


def test_predict_params_applies_the_calibration_made_for_that_model_only(tmp_path: Path) -> None:
    import hashlib

    vals = [0.0, 0.0, 0.0, 0.1, 0.0, 1.0, 0.0, 0.0, 0.3, 0.0, 0.0]
    path = tmp_path / "tone.onnx"
    _const_model(path, vals)
    img = _photo(120, 160)
    side = path.with_suffix(".json")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    side.write_text(json.dumps({"model_sha256": sha, "deadzone": {"exposure": 0.2, "contrast": 0.1}}))
    T._calibrations.clear()
    p = T.predict_params(img, model_path=path)
    assert p["exposure"] == 0.0  # 0.1 is inside its dead zone
    assert p["contrast"] == pytest.approx(0.3, abs=1e-6)  # 0.3 is beyond 2 x 0.1
    assert T.predict_params(img, model_path=path, gate=False)["exposure"] == pytest.approx(0.1, abs=1e-6)
    # a calibration made for another model file is not applied
    side.write_text(json.dumps({"model_sha256": "0" * 64, "deadzone": {"exposure": 0.2}}))
    T._calibrations.clear()
    assert T.predict_params(img, model_path=path)["exposure"] == pytest.approx(0.1, abs=1e-6)
    side.write_text("{not json")
    T._calibrations.clear()
    assert T.predict_params(img, model_path=path)["exposure"] == pytest.approx(0.1, abs=1e-6)
    T._calibrations.clear()


def test_committed_model_runs_and_leaves_clean_photo_nearly_alone() -> None:
    path = T.default_model_path()
    if not path.exists():
        pytest.skip("models/tone.onnx not built")
    img = _photo(200, 300)
    p = T.predict_params(img)
    assert set(T.PARAM_NAMES) <= set(p)
    for k in T.PARAM_NAMES:
        lo, hi = T.BOUNDS[k]
        assert lo <= p[k] <= hi
    out = T.apply_params(img, p)
    assert np.isfinite(out).all()
    dark = dg.apply_tone(img, np.random.default_rng(0), "underexposure", 0.8)[0]
    pd = T.predict_params(dark)
    assert pd["exposure"] + pd["shadows"] > p["exposure"] + p["shadows"]  # a dark photo is brightened
    assert T.apply_params(dark, pd).mean() > dark.mean() + 0.05


def test_fast_path_matches_reference_chain() -> None:
    rng = np.random.default_rng(11)
    for i in range(8):
        img = _photo(60 + 7 * i, 90, seed=i)
        p = {k: float(rng.uniform(*T.BOUNDS[k])) for k in T.PARAM_NAMES}
        if p["white"] < p["black"] + 0.2:
            p["white"] = p["black"] + 0.2
        p["airlight"] = T.estimate_airlight(img)
        a = T.apply_params(img, p)
        b = T.apply_reference(img, p)
        assert np.abs(a - b).max() < 5e-3, p
        assert np.abs(a - b).mean() < 2e-4, p


def test_fast_path_large_image_close_to_reference() -> None:
    """Above WORK_SIDE the maps are planned on the working copy: close, not identical."""
    import cv2

    big = np.clip(cv2.resize(_photo(90, 120), (900, 680), interpolation=cv2.INTER_CUBIC), 0, 1).astype(np.float32)
    p = {"dehaze": 0.5, "shadows": 0.8, "highlights": 0.4, "exposure": 0.4, "black": 0.05, "contrast": 0.3,
         "saturation": 0.2, "airlight": T.estimate_airlight(big)}
    assert psnr(T.apply_params(big, p), T.apply_reference(big, p)) > 38.0


def test_darkening_keeps_white_white_and_old_recipes_replay_unchanged() -> None:
    """A high-key photo (subject on a white background) told to darken: with parameter
    version 2 the background stays white while the subject gets the correction; a version-1
    recipe renders exactly as before (no shoulder)."""
    img = np.ones((64, 96, 3), np.float32)
    img[16:48, 24:72] = np.float32(0.5)  # the subject, mid grey
    params = {"exposure": -1.0, "white": 1.15, "version": 2}
    out = T.apply_params(img, params)
    assert out[0, 0].min() > 0.999  # the white background stays white
    assert out[32, 48].max() < 0.40  # the subject is darkened (about 1 stop and a white point)
    old = T.apply_params(img, {**params, "version": 1})
    assert old[0, 0].max() < 0.80  # version 1: white turns grey, as recipes made then did
    ref = T.apply_reference(img, params)
    assert np.abs(out - ref).max() < 2e-3
    # the shoulder keeps the map monotonic
    ramp = np.repeat(np.linspace(0, 1, 512, dtype=np.float32)[None, :, None], 3, axis=2)
    r = T.apply_params(ramp, {"exposure": -2.5, "white": 1.3, "version": 2})[0, :, 0]
    assert np.all(np.diff(r) >= -1e-6) and r[-1] > 0.999
