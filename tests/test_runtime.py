"""engine.core.runtime: shared sessions, thread budget, model versions; and the ONNX test fixtures."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from engine.core import runtime
from tests.onnx_fixtures import assessor_model, assessor_reference, restorer_model, write_model


def test_thread_budget_never_oversubscribes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cpu_count", lambda: 8)
    assert runtime.thread_budget(1) == 8
    assert runtime.thread_budget(2) == 4
    assert runtime.thread_budget(3) == 2
    assert runtime.thread_budget(16) == 1
    assert runtime.thread_budget(0) == 8
    for w in range(1, 10):
        assert runtime.thread_budget(w) * w <= 8 or runtime.thread_budget(w) == 1


def test_models_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PHOTOLIFT_MODELS", raising=False)
    assert runtime.models_dir().name == "models"
    assert (runtime.models_dir().parent / "engine" / "core" / "runtime.py").is_file()
    monkeypatch.setenv("PHOTOLIFT_MODELS", str(tmp_path))
    assert runtime.models_dir() == tmp_path


def test_session_is_shared_and_lazy(tmp_path: Path) -> None:
    p = write_model(restorer_model("identity", offset=0.25), tmp_path / "r.onnx")
    results: list[ort.InferenceSession] = []

    def get() -> None:
        results.append(runtime.get_session(p, 1))

    threads = [threading.Thread(target=get) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in results}) == 1
    assert runtime.get_session(p, 1) is results[0]
    assert results[0].get_session_options().intra_op_num_threads == 1
    x = np.zeros((1, 3, 8, 8), np.float32)
    np.testing.assert_allclose(results[0].run(None, {"image": x})[0], 0.25)
    assert "AzureExecutionProvider" not in results[0].get_providers()


def test_changed_file_gets_new_session_and_version(tmp_path: Path) -> None:
    p = write_model(restorer_model("identity", offset=0.1), tmp_path / "r.onnx")
    s1 = runtime.get_session(p, 1)
    v1 = runtime.model_version(p)
    assert len(v1) == 12 and all(c in "0123456789abcdef" for c in v1)
    assert runtime.model_version(p) == v1
    write_model(restorer_model("identity", offset=0.3), p)
    import os

    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # coarse mtime filesystems
    s2 = runtime.get_session(p, 1)
    assert s2 is not s1
    assert runtime.model_version(p) != v1
    np.testing.assert_allclose(s2.run(None, {"image": np.zeros((1, 3, 8, 8), np.float32)})[0], 0.3,
                               rtol=1e-6)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(runtime.ModelMissing, match="not found"):
        runtime.get_session(tmp_path / "nope.onnx")
    with pytest.raises(FileNotFoundError):
        runtime.model_version(tmp_path / "nope.onnx")


def test_provider_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOLIFT_ORT_PROVIDERS", "CPUExecutionProvider")
    assert runtime.providers() == ["CPUExecutionProvider"]
    monkeypatch.delenv("PHOTOLIFT_ORT_PROVIDERS")
    assert runtime.providers()[-1] == "CPUExecutionProvider"


def test_assessor_fixture_has_the_contract_and_matches_reference(tmp_path: Path) -> None:
    from engine.assess.degrade import SEVERITY_NAMES

    p = write_model(assessor_model(k=3, e=8), tmp_path / "a.onnx")
    s = runtime.get_session(p, 1)
    assert [i.name for i in s.get_inputs()] == ["crops", "global"]
    assert [o.name for o in s.get_outputs()] == ["improvability", "quality", "severity", "embedding"]
    rng = np.random.default_rng(0)
    crops = rng.random((2, 3, 3, 24, 24), dtype=np.float32)
    glob = rng.random((2, 3, 40, 40), dtype=np.float32)
    out = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"crops": crops, "global": glob}),
                   strict=True))
    ref = assessor_reference(crops, glob, e=8)
    assert out["severity"].shape == (2, len(SEVERITY_NAMES))
    assert out["embedding"].shape == (2, 8)
    assert out["improvability"].shape == (2,) and out["quality"].shape == (2,)
    for k, v in ref.items():
        np.testing.assert_allclose(out[k], v, atol=1e-4)
    assert np.all((out["quality"] >= 1) & (out["quality"] <= 10))
    # different pixels, different answers
    assert abs(out["quality"][0] - out["quality"][1]) > 1e-6
