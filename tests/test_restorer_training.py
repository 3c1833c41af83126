"""The level-aware restorer's training pieces: warm start, export contract, batches, resumption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.enhance.restore import Restorer  # noqa: E402
from models.training import train_restorer as tr  # noqa: E402
from models.training.nets import LevelRestorerUNet, RestorerUNet  # noqa: E402


class _Sampler:
    """CropSampler's interface over one synthetic image."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        small = rng.integers(20, 235, (24, 24, 3)).astype(np.uint8)
        import cv2

        self.img = cv2.resize(small, (384, 384), interpolation=cv2.INTER_CUBIC)
        self.rng = rng

    def crop(self, size: int) -> np.ndarray:
        y, x = self.rng.integers(0, 384 - size, 2)
        return np.ascontiguousarray(self.img[y : y + size, x : x + size])


def test_level_net_starts_as_the_blind_net(tmp_path: Path) -> None:
    torch.manual_seed(0)
    blind = RestorerUNet()
    for p in blind.parameters():  # a non-trivial blind model
        p.data.normal_(0, 0.05)
    path = tmp_path / "blind.onnx"
    tr.export_onnx(blind, path)
    level = LevelRestorerUNet()
    tr.load_init(level, path)
    x = torch.rand(2, 3, 32, 40)
    lv = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    with torch.no_grad():
        assert torch.allclose(level(x, lv), blind(x), atol=1e-5)


def test_exported_level_model_runs_in_the_engine(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = LevelRestorerUNet()
    for p in net.parameters():
        p.data.normal_(0, 0.02)
    path = tmp_path / "lv.onnx"
    tr.export_onnx(net, path)
    img = np.random.default_rng(0).random((70, 90, 3)).astype(np.float32)
    r = Restorer(path, tile=64, overlap=16, workers=1)
    a = r.run(img, noise=0.0, jpeg_quality=100)
    b = r.run(img, noise=0.2, jpeg_quality=10)
    assert a.shape == img.shape
    assert not np.allclose(a, b)  # the levels reach the network
    assert np.array_equal(b, r.run(img, noise=0.2, jpeg_quality=10))  # deterministic


def test_realistic_batch_shapes_levels_and_grid() -> None:
    rng = np.random.default_rng(3)
    x, y, levels, clean = tr.realistic_batch(_Sampler(), rng, 12, 48)  # type: ignore[arg-type]
    assert x.shape == y.shape == (12, 3, 48, 48)
    assert levels.shape == (12, 2) and bool((levels >= 0).all()) and bool((levels[:, 1] <= 1).all())
    assert set(clean.tolist()) <= {0.0, 1.0}
    # clean crops are their own targets and are told "no JPEG"
    for i in np.flatnonzero(clean.numpy()):
        assert torch.equal(x[i], y[i]) and float(levels[i, 1]) == 0.0


def test_small_checkpoint_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "discover", lambda split: [])
    monkeypatch.setattr(tr, "CropSampler", lambda photos, rng: _Sampler())
    small = {"mixed": (torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), torch.zeros(2, 2))}
    monkeypatch.setattr(tr, "val_set", lambda: small)
    ck = tmp_path / "small.pt"
    args = ["--arch", "level", "--data", "realistic", "--run-dir", str(tmp_path / "run"), "--minutes", "5",
            "--sitting-minutes", "0.02", "--batch", "2", "--crop", "32", "--commit-ckpt", str(ck),
            "--out", str(tmp_path / "out.onnx")]
    tr.main(args)
    state = torch.load(ck, weights_only=False)
    assert state["arch"] == "level" and state["state"]["step"] > 0
    assert next(iter(state["model"].values())).dtype == torch.float16
    assert not (tmp_path / "out.onnx").exists()  # the budget is not spent: nothing shipped
    # a new machine: no run folder, resume from the committed file
    args2 = [a if a != str(tmp_path / "run") else str(tmp_path / "run2") for a in args]
    tr.main([*args2, "--resume-from", str(ck)])
    state2 = torch.load(ck, weights_only=False)
    assert state2["state"]["step"] > state["state"]["step"]
