"""Quality model Q version 3: its extra statistics, the ensemble head and its packing, the export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.training.nets_quality3 import (  # noqa: E402
    N_EXTRA,
    N_FEATURES_V3,
    QualityNetV3,
    extra_features,
    quality_features_v3,
)
from tests.test_quality_v2 import _texture  # noqa: E402


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.astype(np.float32).transpose(2, 0, 1)[None]))


@pytest.mark.parametrize("shape", [(64, 64), (65, 97), (200, 301), (97, 64)])
def test_extra_features_are_finite_at_any_size(shape: tuple[int, int]) -> None:
    for img in (np.random.default_rng(1).random((*shape, 3)), np.zeros((*shape, 3)), np.ones((*shape, 3)),
                np.full((*shape, 3), 0.5)):
        f = extra_features(_t(img))
        assert f.shape == (1, N_EXTRA)
        assert torch.isfinite(f).all()
    assert quality_features_v3(_t(np.random.default_rng(2).random((*shape, 3)))).shape == (1, N_FEATURES_V3)


def test_chroma_noise_statistic_sees_chroma_noise_on_a_texture() -> None:
    # the texture-weighted log ratio of chroma to luminance detail (first of the chroma-texture
    # block at level 0): chroma noise on a busy texture must raise it, luminance noise much less
    u = _texture(256, 256, seed=5)
    rng = np.random.default_rng(0)
    y_noise = np.clip(u + rng.normal(0, 6 / 255, (256, 256, 1)), 0, 1)
    c_noise = np.clip(u + rng.normal(0, 6 / 255, u.shape), 0, 1)
    idx = 9 + 9  # after the colour (9) and log-derivative (9) statistics of level 0
    f = [float(extra_features(_t(x))[0, idx]) for x in (u, y_noise, c_noise)]
    assert f[2] > f[0] + 0.3
    assert f[2] > f[1] + 0.3


def test_extra_features_are_differentiable() -> None:
    x = _t(_texture(96, 96)).requires_grad_(True)
    QualityNetV3(hidden=8, members=2)(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_ensemble_packing_keeps_each_members_prediction() -> None:
    """fit_ensemble folds each member's own standardisation into its first layers: the packed
    network's logit must equal the mean of the members' logits."""
    from models.training import train_quality3 as t3
    from models.training.nets_quality import QualityNetV2

    rng = np.random.default_rng(0)
    n, nf = 40, 12
    feats = rng.normal(size=(n, nf)).astype(np.float32)
    members = []
    for _m in range(3):
        h = QualityNetV2(hidden=4, n_features=nf).eval()
        with torch.no_grad():
            h.feat_mean.copy_(torch.from_numpy(rng.normal(size=nf).astype(np.float32)))
            h.feat_std.copy_(torch.from_numpy(rng.uniform(0.5, 2, nf).astype(np.float32)))
        members.append(h)
    packed = t3.pack_members(members, hidden=4)
    x = torch.from_numpy(feats * 0.5)  # inside the +-8 clamp for every member
    with torch.no_grad():
        want = torch.stack([h.head(x) for h in members]).mean(0)
        got = packed.head(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_v3_onnx_export_matches_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from models.training.train_quality2 import export

    net = QualityNetV3(hidden=8, members=2).eval()
    with torch.no_grad():
        net.feat_std.fill_(3.0)
    p = tmp_path / "q.onnx"
    export(net, p, {"version": "test"})
    s = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    for shape in [(64, 64), (131, 77), (257, 390)]:
        t = _t(_texture(*shape, seed=shape[0])).numpy()
        o = s.run(None, {"image": t})[0]
        with torch.no_grad():
            r = net(torch.from_numpy(t)).numpy()
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)
