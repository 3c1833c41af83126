"""Fixtures shared by the enhancement/export tests: a models folder of tiny real ONNX graphs, a
catalog indexed over small generated photos, and a fake assessor whose quality is a known
function of the pixels (so the regression guard can be driven both ways).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_fixtures import write_model, write_restorer


def tone_model(exposure: float = 0.3, contrast: float = 0.1) -> onnx.ModelProto:
    """A tone-contract graph: [1,3,S,S] -> [1,11] parameters (constant plus a little of the
    mean colour, so the prediction depends on the photo)."""
    from engine.enhance.tone import PARAM_NAMES

    n = len(PARAM_NAMES)
    bias = np.zeros(n, np.float32)
    idx = {k: i for i, k in enumerate(PARAM_NAMES)}
    bias[idx["exposure"]] = exposure
    bias[idx["contrast"]] = contrast
    bias[idx["white"]] = 1.0
    w = np.zeros((3, n), np.float32)
    w[:, idx["saturation"]] = 0.05
    x = helper.make_tensor_value_info("view", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("params", TensorProto.FLOAT, [1, n])
    nodes = [
        helper.make_node("ReduceMean", ["view"], ["m4"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m4", "w"], ["mw"]),
        helper.make_node("Add", ["mw", "b"], ["params"]),
    ]
    g = helper.make_graph(nodes, "tone_fixture", [x], [y],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias[None], "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="photolift-tests")
    m.ir_version = 8  # what the installed onnxruntime reads
    return m


def setup_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restorer: str = "blur", **kw: float) -> Path:
    """``PHOTOLIFT_MODELS`` -> a folder with a restorer fixture and a tone model (no assessor);
    ``PHOTOLIFT_CACHE`` -> a fresh cache folder."""
    d = tmp_path / "models"
    write_restorer(d / "restorer.onnx", restorer, **kw)
    write_model(tone_model(), d / "tone.onnx")
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(d))
    monkeypatch.setenv("PHOTOLIFT_CACHE", str(tmp_path / "cache"))
    return d


@dataclass
class FakeScorer:
    """quality = 10 x mean brightness: a brighter result 'helps', a darker one does not."""

    calls: list[tuple[int, ...]]

    @staticmethod
    def reduce_for(w: int | None, h: int | None) -> int:
        return 1

    def assess(self, rgb: np.ndarray) -> Any:
        self.calls.append(tuple(rgb.shape))

        class A:
            quality = float(rgb.astype(np.float64).mean() / 25.5)

        return A()


def install_fake_scorer(monkeypatch: pytest.MonkeyPatch) -> FakeScorer:
    import engine.enhance.guard

    fs = FakeScorer([])
    monkeypatch.setattr(engine.enhance.guard, "_scorer_or_reason", lambda: (fs, ""))
    return fs


def install_no_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.enhance.guard

    monkeypatch.setattr(engine.enhance.guard, "_scorer_or_reason",
                        lambda: (None, "quality not measured: no assessor model (test)"))


def index(catalog: Any, root: Path) -> list[int]:
    """Index ``root`` and return the photo ids, sorted by path."""
    from sqlalchemy import select

    from db.schema import Photo
    from engine.ingest.indexer import Indexer

    for _ in Indexer(catalog, workers=1).index(root):
        pass
    with catalog.session() as s:
        return [int(i) for i in s.scalars(select(Photo.id).order_by(Photo.path)).all()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


def scored_library(tmp_path: Path, make_image: Any, monkeypatch: pytest.MonkeyPatch, n: int, seed: int) -> Path:
    """``n`` small photos under ``tmp_path/photos`` (every second one in ``sub/``), with the
    fixture models of :func:`setup_models` plus an assessor installed and no cached sessions."""
    import engine.assess.scoring
    from engine.core.runtime import clear_sessions
    from tests.onnx_fixtures import write_assessor

    clear_sessions()
    monkeypatch.setattr(engine.assess.scoring, "_shared", None)
    models = setup_models(tmp_path, monkeypatch, "gain", gain=0.3)
    write_assessor(models / "assessor.onnx")
    for i in range(n):
        make_image(f"{'sub/' if i % 2 else ''}p{i}.jpg", 96 + 8 * i, 72, seed=seed + i)
    return tmp_path / "photos"
