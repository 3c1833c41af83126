"""Q version 5: tone and colour-cast statistics, graded margins, tone corrections as evidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.training import quality_pairs as qp  # noqa: E402
from models.training.nets_quality5 import (  # noqa: E402
    N_FEATURES_V5,
    N_TONE,
    QualityNetV5,
    quality_features_v5,
    tone_features,
)
from tests.test_quality_v2 import _texture  # noqa: E402
from tests.test_quality_v3 import _t  # noqa: E402


@pytest.mark.parametrize("shape", [(64, 64), (65, 97), (200, 301), (97, 64)])
def test_tone_features_are_finite_at_any_size(shape: tuple[int, int]) -> None:
    for img in (np.random.default_rng(1).random((*shape, 3)), np.zeros((*shape, 3)), np.ones((*shape, 3)),
                np.full((*shape, 3), 0.5)):
        f = tone_features(_t(img))
        assert f.shape == (1, N_TONE) and torch.isfinite(f).all()
    assert quality_features_v5(_t(np.random.default_rng(2).random((*shape, 3)))).shape == (1, N_FEATURES_V5)


def test_colour_cast_statistics_follow_a_white_balance_error() -> None:
    # a neutral texture, then warmer (more red, less blue): every illuminant estimate's R/G ratio
    # rises and its B/G ratio falls, and the gray-edge angle from neutral grows
    u = np.repeat(_texture(160, 160, seed=4).mean(axis=2, keepdims=True), 3, axis=2)
    warm = np.clip(u * np.array([1.15, 1.0, 0.8]), 0, 1)
    f0, f1 = tone_features(_t(u))[0], tone_features(_t(warm))[0]
    for rg, bg in ((0, 1), (2, 3), (5, 6)):  # gray-world, gray-edge, white-patch
        assert f1[rg] > f0[rg] + 0.05 and f1[bg] < f0[bg] - 0.05
    assert f1[4] > f0[4] + 0.02


def test_v5_onnx_export_matches_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from models.training.train_quality2 import export

    net = QualityNetV5(hidden=8, members=2).eval()
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


def test_checkpoint_loads_as_version_5(tmp_path: Path) -> None:
    from models.training.nets_assess import load_quality
    from models.training.nets_quality5 import from_v3

    net = QualityNetV5(hidden=8, members=2).eval()
    ck = tmp_path / "q5.pth"
    torch.save({"model": net.state_dict(), "config": {"hidden": 8, "members": 2, "n_features": N_FEATURES_V5,
                                                      "features": "v5"}}, ck)
    back = load_quality(ck)
    assert isinstance(back, QualityNetV5)
    x = _t(_texture(96, 80))
    with torch.no_grad():
        np.testing.assert_allclose(back(x).numpy(), net(x).numpy(), rtol=1e-5)
        np.testing.assert_allclose(from_v3(net)(x).numpy(), net(x).numpy(), rtol=1e-5)


def test_graded_margin_asks_more_of_a_larger_gain() -> None:
    """fit_head with margin_slope: the pair whose gain is 10 dB must end further apart than the
    pair whose gain is 0 dB (otherwise the same evidence)."""
    from models.training import train_quality2 as t2

    rng = np.random.default_rng(0)
    nf = 6
    clive = {"feats": rng.normal(size=(40, nf)).astype(np.float32), "mos": rng.uniform(20, 80, 40)}
    # two groups of pairs on different features: group A (feature 0) graded 10 dB, group B (feature 1) 0 dB
    feats, pairs, gain = [], [], []
    for i in range(60):
        a, b = np.zeros(nf, np.float32), np.zeros(nf, np.float32)
        col = 0 if i % 2 == 0 else 1
        a[col], b[col] = 1.0, -1.0
        a[2:] = b[2:] = rng.normal(size=nf - 2)
        feats += [a, b]
        pairs.append((2 * i, 2 * i + 1))
        gain.append(10.0 if col == 0 else 0.0)
    syn = {"feats": np.stack(feats), "pairs": np.array(pairs), "pair_kind": np.array(["x"] * 60),
           "role": np.array(["clean", "version"] * 60), "pair_gain": np.array(gain, np.float32)}
    cfg = {**t2.DEFAULTS, "steps": 300, "w_pair": 3.0, "margin_slope": 0.15, "gain_cap": 12.0, "w_anchor": 0.0}
    net = t2.fit_head(clive, syn, np.arange(40), cfg, seed=0)
    q = t2.predict(net, syn["feats"])
    d = q[syn["pairs"][:, 0]] - q[syn["pairs"][:, 1]]
    assert d[0::2].mean() > d[1::2].mean() + 0.5
    assert d[0::2].mean() > 0.3 + 0.15 * 10 * 0.7  # close to its graded margin


def test_tone_correction_pair_grades_by_the_fidelity_gain() -> None:
    u = _texture(96, 128, seed=7).astype(np.float32)
    kind, r, v, gain = qp.tone_correction_pair(u, np.random.default_rng(3), lambda x: u)  # an oracle
    assert kind.startswith("tone_fix_") and qp.FAMILY[kind] == "tone_fix" and gain > qp.MIN_TONE_GAIN_DB
    kind, r, v, gain = qp.tone_correction_pair(u, np.random.default_rng(3), lambda x: x)  # does nothing
    assert abs(gain) < 1e-6
    edited, p = qp.tone_on_clean(u, lambda x: x)
    assert p >= qp.TONE_ON_CLEAN_MAX_DB
    edited, p = qp.tone_on_clean(u, lambda x: np.clip(x * 1.4, 0, 1))
    assert p < qp.TONE_ON_CLEAN_MAX_DB


def test_overdone_edits_are_graded_like_the_degradations(tmp_path: Path) -> None:
    """Version 5b: a cache without PSNR for overdone edits takes it from the table, by kind and
    strength; tone_on_clean gets its 38 dB bound; other pairs keep theirs; 'off' clears them."""
    import json

    from models.training.train_quality5 import grade_overdone

    table = tmp_path / "t.json"
    table.write_text(json.dumps({"oversaturate|0": 20.0, "oversaturate|1": 30.0}))
    syn = {"pair_kind": np.array(["oversaturate", "oversaturate", "tone_on_clean", "noise", "smooth_median"]),
           "pair_mild": np.array([0, 1, 1, 0, 1]),
           "pair_gain": np.array([np.nan, np.nan, np.nan, 12.0, np.nan], np.float32)}
    grade_overdone(syn, table)
    np.testing.assert_allclose(syn["pair_gain"][:4], [20.0, 10.0, 2.0, 12.0])
    assert np.isnan(syn["pair_gain"][4])
    grade_overdone(syn, None, off=True)
    assert np.isnan(syn["pair_gain"][:3]).all() and syn["pair_gain"][3] == 12.0
    with pytest.raises(SystemExit):
        grade_overdone({**syn, "pair_gain": np.full(5, np.nan, np.float32)}, None)


def test_intent_pairs_are_graded_unless_off() -> None:
    """Since 2026-12-08 the clean bright/dark/foggy photo against its naive correction is graded by
    the correction's size (the build stores 40 - PSNR); ``--no-intent-grading`` restores v5b's flat
    margin for those pairs and only those."""
    from models.training import quality_pairs as qp
    from models.training.train_quality3 import GRADE_REF_DB
    from models.training.train_quality5 import grade_intent

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    u = np.clip(0.86 + 0.05 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 5.0)[..., None]
                + np.zeros((96, 128, 3), np.float32), 0, 1).astype(np.float32)
    gain = max(0.0, GRADE_REF_DB - qp._psnr(qp.correct_intent(u, rng, "bright"), u))
    assert gain > 10.0  # a darkening "correction" of a bright photo is a large error: a large margin
    syn = {"pair_kind": np.array(["intent_bright", "intent_dark", "tone_fix", "noise"]),
           "pair_gain": np.array([gain, 15.0, 6.0, 12.0], np.float32)}
    grade_intent(syn)  # on: the stored gains stay
    np.testing.assert_allclose(syn["pair_gain"], [gain, 15.0, 6.0, 12.0], rtol=1e-6)
    grade_intent(syn, off=True)
    assert np.isnan(syn["pair_gain"][:2]).all()
    np.testing.assert_allclose(syn["pair_gain"][2:], [6.0, 12.0])
