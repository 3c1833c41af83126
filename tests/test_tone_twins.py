"""The numpy operators of engine/enhance/tone.py and their torch twins compute the same function."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.enhance import tone as T  # noqa: E402
from models.training import tone_torch as TT  # noqa: E402


def _img(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth structure plus texture, so the guided filter and dark channel have work to do
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.4 * np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in (0.0, 1.0, 2.0)], axis=2)
    img = base + rng.normal(0, 0.08, (h, w, 3))
    return np.clip(img, 0, 1).astype(np.float32)


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.transpose(2, 0, 1)[None].copy())


def _np(x: torch.Tensor) -> np.ndarray:
    return x[0].detach().numpy().transpose(1, 2, 0)


def _s(v: float) -> torch.Tensor:
    return torch.tensor([v], dtype=torch.float32)


TOL = 2e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_box_guided_min_filter(seed: int) -> None:
    img = _img(seed)
    y = T.luminance(img)
    yt = TT.luminance(_t(img))
    assert np.abs(_np(yt)[..., 0] - y).max() < 1e-5
    for r in (1, 3):
        assert np.abs(_np(TT.box(yt, r))[..., 0] - T.box(y, r)).max() < 1e-5
        assert np.abs(_np(TT.min_filter(yt, r))[..., 0] - T.min_filter(y, r)).max() < 1e-6
    a, b = T.guided_coeffs(y, y, 2, T.GF_EPS)
    at, bt = TT.guided_coeffs(yt, yt, 2, T.GF_EPS)
    assert np.abs(_np(at)[..., 0] - a).max() < TOL
    assert np.abs(_np(bt)[..., 0] - b).max() < TOL


def test_airlight_twin() -> None:
    img = _img(3, 64, 64)
    a = T.estimate_airlight(img)
    at = TT.estimate_airlight(_t(img))[0].numpy()
    assert np.abs(at - np.array(a)).max() < 1e-4


@pytest.mark.parametrize(
    "name,np_fn,t_fn,args",
    [
        ("dehaze", lambda x: T.dehaze(x, 0.7, [0.9, 0.85, 0.8]),
         lambda x: TT.dehaze(x, _s(0.7), torch.tensor([[0.9, 0.85, 0.8]])), None),
        ("wb_exposure", lambda x: T.white_balance_exposure(x, 0.3, -0.1, 0.8),
         lambda x: TT.white_balance_exposure(x, _s(0.3), _s(-0.1), _s(0.8)), None),
        ("wb_exposure_dark", lambda x: T.white_balance_exposure(x, -0.4, 0.2, -1.5),
         lambda x: TT.white_balance_exposure(x, _s(-0.4), _s(0.2), _s(-1.5)), None),
        ("levels", lambda x: T.levels(x, 0.2, 0.8), lambda x: TT.levels(x, _s(0.2), _s(0.8)), None),
        ("local_tone", lambda x: T.local_tone(x, 0.9, 0.6), lambda x: TT.local_tone(x, _s(0.9), _s(0.6)), None),
        ("protect_white", lambda x: T.protect_white(x, T.levels(x, 0.0, 1.25)),
         lambda x: TT.protect_white(x, TT.levels(x, _s(0.0), _s(1.25))), None),
        ("contrast", lambda x: T.contrast_curve(x, 0.6), lambda x: TT.contrast_curve(x, _s(0.6)), None),
        ("sat_vib", lambda x: T.saturation_vibrance(x, 0.5, -0.3),
         lambda x: TT.saturation_vibrance(x, _s(0.5), _s(-0.3)), None),
    ],
)
def test_operator_twins_agree(name: str, np_fn, t_fn, args) -> None:  # type: ignore[no-untyped-def]
    for seed in (0, 1):
        img = _img(seed)
        a = np_fn(img)
        b = _np(t_fn(_t(img)))
        assert a.shape == b.shape
        assert np.abs(a - b).max() < 1e-3, name
        assert np.abs(a - b).mean() < TOL, name


@pytest.mark.parametrize("version", [1, 2])
def test_full_chain_twin_random_params(version: int) -> None:
    rng = np.random.default_rng(7)
    for i in range(6):
        img = _img(10 + i, 48, 48)
        params: dict = {k: float(rng.uniform(*T.BOUNDS[k])) for k in T.PARAM_NAMES}
        if params["white"] < params["black"] + 0.2:
            params["white"] = params["black"] + 0.2
        params["airlight"] = T.estimate_airlight(img)
        params["version"] = version
        a = T.apply_params(img, params)
        p = {k: _s(v) for k, v in params.items() if k not in ("airlight", "version")}
        p["airlight"] = torch.tensor([params["airlight"]], dtype=torch.float32)
        b = _np(TT.apply_params(_t(img), p, version=version))
        assert np.abs(a - b).mean() < 5e-4, params
        assert np.abs(a - b).max() < 2e-2, params


def test_twin_gradients_flow() -> None:
    img = _t(_img(5))
    p = {k: _s(v).requires_grad_(True) for k, v in
         {"dehaze": 0.3, "temperature": 0.1, "tint": 0.05, "exposure": 0.3, "black": 0.05, "white": 0.9,
          "shadows": 0.3, "highlights": 0.3, "contrast": 0.2, "saturation": 0.2, "vibrance": 0.1}.items()}
    out = TT.apply_params(img, p)
    out.mean().backward()
    for k, v in p.items():
        assert v.grad is not None and torch.isfinite(v.grad).all(), k
        assert float(v.grad.abs()) > 0, k


def test_tonenet_starts_neutral_and_is_bounded() -> None:
    net = TT.ToneNet()
    x = torch.rand(2, 3, T.NET_SIDE, T.NET_SIDE)
    v = net(x)
    assert v.shape == (2, len(T.PARAM_NAMES))
    for i, k in enumerate(T.PARAM_NAMES):
        lo, hi = T.BOUNDS[k]
        assert torch.all(v[:, i] >= lo - 1e-5) and torch.all(v[:, i] <= hi + 1e-5)
        assert torch.allclose(v[:, i], torch.full((2,), T.NEUTRAL[k]), atol=2e-3), k
