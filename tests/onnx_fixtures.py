"""Tiny, real ONNX graphs with the model contracts of docs/ARCHITECTURE.md, for tests.

They are built with ``onnx.helper`` (no torch, no training) and run in onnxruntime like the
shipped models, so engine code is tested against the real runtime with known, checkable outputs.

* ``restorer_model(kind, ...)``: input ``image`` float32 ``[1,3,H,W]``, output ``restored``
  of the same shape (any H, W; the engine gives multiples of 8).

  - ``"blur"``: a 3x3 depthwise convolution (``kernel``, default a normalised binomial blur)
    plus ``offset``. Receptive field radius 1 pixel, so tiled inference with any overlap of a
    few pixels must equal a single pass. With zero padding inside the graph, like a real net.
  - ``"identity"``: ``image + offset``.
  - ``"gain"``: ``image * gain + offset`` (pixel-wise, for blend/strength checks).
  - ``"levels"``: the level-aware contract (a second input ``levels`` float32 ``[1, 2]``):
    ``image + gain * [levels[0], levels[1], 0]`` per channel, so a test reads back from the red
    and green channels what the engine told the model.

* ``assessor_model(...)``: inputs ``crops`` float32 ``[N,K,3,S,S]`` and ``global`` float32
  ``[N,3,G,G]``; outputs ``improvability`` ``[N]``, ``quality`` ``[N]``, ``severity`` ``[N,D]``
  (D = ``len(engine.assess.degrade.SEVERITY_NAMES)`` by default) and ``embedding`` ``[N,E]``. The
  embedding is a fixed linear map of per-channel means and standard deviations of the crops
  and the global view; the heads are fixed linear maps of the embedding (severity through a
  sigmoid, quality mapped into 1..10 through a sigmoid). Outputs depend on the pixels, so tests
  can tell images apart. ``assessor_reference(...)`` computes the same outputs in numpy.

``write_model(model, path)`` saves a model and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
BINOMIAL_3x3 = (np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0).astype(np.float32)


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="photolift-tests")
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    onnx.checker.check_model(model)
    return model


def restorer_model(kind: str = "blur", kernel: np.ndarray | None = None, offset: float = 0.0,
                   gain: float = 1.0) -> onnx.ModelProto:
    """A restorer-contract graph (see module doc)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "height", "width"])
    y = helper.make_tensor_value_info("restored", TensorProto.FLOAT, [1, 3, "height", "width"])
    inits = [numpy_helper.from_array(np.array([offset], np.float32), "offset")]
    nodes = []
    if kind == "blur":
        k = BINOMIAL_3x3 if kernel is None else np.asarray(kernel, np.float32)
        if k.shape != (3, 3):
            raise ValueError("kernel must be 3x3")
        w = np.repeat(k[None, None], 3, axis=0)  # [3,1,3,3] depthwise
        inits.append(numpy_helper.from_array(w, "w"))
        nodes.append(helper.make_node("Conv", ["image", "w"], ["conv"], group=3, pads=[1, 1, 1, 1],
                                      kernel_shape=[3, 3]))
        nodes.append(helper.make_node("Add", ["conv", "offset"], ["restored"]))
    elif kind == "identity":
        nodes.append(helper.make_node("Add", ["image", "offset"], ["restored"]))
    elif kind == "gain":
        inits.append(numpy_helper.from_array(np.array([gain], np.float32), "gain"))
        nodes.append(helper.make_node("Mul", ["image", "gain"], ["scaled"]))
        nodes.append(helper.make_node("Add", ["scaled", "offset"], ["restored"]))
    elif kind == "levels":
        lv = helper.make_tensor_value_info("levels", TensorProto.FLOAT, [1, 2])
        m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32) * gain
        inits.append(numpy_helper.from_array(m, "m"))
        inits.append(numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "shape"))
        nodes.append(helper.make_node("MatMul", ["levels", "m"], ["per_channel"]))
        nodes.append(helper.make_node("Reshape", ["per_channel", "shape"], ["bias"]))
        nodes.append(helper.make_node("Add", ["image", "bias"], ["restored"]))
        return _finish(helper.make_graph(nodes, "restorer_levels", [x, lv], [y], inits))
    else:
        raise ValueError(f"unknown fixture kind {kind!r}")
    return _finish(helper.make_graph(nodes, f"restorer_{kind}", [x], [y], inits))


def _assessor_weights(e: int, d: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w_emb": rng.normal(0, 1.0, (12, e)).astype(np.float32),
        "b_emb": rng.normal(0, 0.1, (e,)).astype(np.float32),
        "w_imp": rng.normal(0, 1.0 / np.sqrt(e), (e, 1)).astype(np.float32),
        "w_q": rng.normal(0, 1.0 / np.sqrt(e), (e, 1)).astype(np.float32),
        "w_sev": rng.normal(0, 1.0 / np.sqrt(e), (e, d)).astype(np.float32),
    }


def assessor_model(k: int = 4, s: int | str = "S", g: int | str = "G", e: int = 16, d: int | None = None,
                   seed: int = 0) -> onnx.ModelProto:
    """An assessor-contract graph (see module doc). ``s``/``g`` may be symbolic (any size)."""
    if d is None:
        from engine.assess.degrade import SEVERITY_NAMES

        d = len(SEVERITY_NAMES)
    w = _assessor_weights(e, d, seed)
    inputs = [
        helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["N", k, 3, s, s]),
        helper.make_tensor_value_info("global", TensorProto.FLOAT, ["N", 3, g, g]),
    ]
    outputs = [
        helper.make_tensor_value_info("improvability", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("quality", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("severity", TensorProto.FLOAT, ["N", d]),
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", e]),
    ]
    inits = [numpy_helper.from_array(v, n) for n, v in w.items()]
    inits += [
        numpy_helper.from_array(np.array([-1], np.int64), "flat1"),
        numpy_helper.from_array(np.array([9.0], np.float32), "nine"),
        numpy_helper.from_array(np.array([1.0], np.float32), "one"),
    ]
    mk = helper.make_node
    nodes = [
        # per-channel mean / std over crops (axes K, S, S) and over the global view
        mk("ReduceMean", ["crops"], ["c_mean5"], axes=[1, 3, 4], keepdims=1),
        mk("Sub", ["crops", "c_mean5"], ["c_dev"]),
        mk("Mul", ["c_dev", "c_dev"], ["c_dev2"]),
        mk("ReduceMean", ["c_dev2"], ["c_var"], axes=[1, 3, 4], keepdims=0),
        mk("Sqrt", ["c_var"], ["c_std"]),
        mk("ReduceMean", ["crops"], ["c_mean"], axes=[1, 3, 4], keepdims=0),
        mk("ReduceMean", ["global"], ["g_mean4"], axes=[2, 3], keepdims=1),
        mk("Sub", ["global", "g_mean4"], ["g_dev"]),
        mk("Mul", ["g_dev", "g_dev"], ["g_dev2"]),
        mk("ReduceMean", ["g_dev2"], ["g_var"], axes=[2, 3], keepdims=0),
        mk("Sqrt", ["g_var"], ["g_std"]),
        mk("ReduceMean", ["global"], ["g_mean"], axes=[2, 3], keepdims=0),
        mk("Concat", ["c_mean", "c_std", "g_mean", "g_std"], ["feat"], axis=1),  # [N,12]
        mk("MatMul", ["feat", "w_emb"], ["emb_lin"]),
        mk("Add", ["emb_lin", "b_emb"], ["emb_pre"]),
        mk("Tanh", ["emb_pre"], ["embedding"]),
        mk("MatMul", ["embedding", "w_imp"], ["imp2"]),
        mk("Reshape", ["imp2", "flat1"], ["improvability"]),
        mk("MatMul", ["embedding", "w_q"], ["q2"]),
        mk("Sigmoid", ["q2"], ["q_sig"]),
        mk("Mul", ["q_sig", "nine"], ["q9"]),
        mk("Add", ["q9", "one"], ["q10"]),
        mk("Reshape", ["q10", "flat1"], ["quality"]),
        mk("MatMul", ["embedding", "w_sev"], ["sev_lin"]),
        mk("Sigmoid", ["sev_lin"], ["severity"]),
    ]
    return _finish(helper.make_graph(nodes, "assessor_fixture", inputs, outputs, inits))


def assessor_reference(crops: np.ndarray, global_view: np.ndarray, e: int = 16, d: int | None = None,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """The outputs of ``assessor_model(e=e, d=d, seed=seed)`` computed in numpy."""
    if d is None:
        from engine.assess.degrade import SEVERITY_NAMES

        d = len(SEVERITY_NAMES)
    w = _assessor_weights(e, d, seed)
    c = crops.astype(np.float64)
    gv = global_view.astype(np.float64)
    feat = np.concatenate([c.mean(axis=(1, 3, 4)), c.std(axis=(1, 3, 4)),
                           gv.mean(axis=(2, 3)), gv.std(axis=(2, 3))], axis=1)
    emb = np.tanh(feat @ w["w_emb"] + w["b_emb"])
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    return {
        "improvability": (emb @ w["w_imp"])[:, 0],
        "quality": 1.0 + 9.0 * sig(emb @ w["w_q"])[:, 0],
        "severity": sig(emb @ w["w_sev"]),
        "embedding": emb,
    }


def write_model(model: onnx.ModelProto, path: Path | str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(p))
    return p


def write_restorer(path: Path | str, kind: str = "blur", **kw: float) -> Path:
    """Shortcut: ``write_model(restorer_model(kind, **kw), path)``."""
    return write_model(restorer_model(kind, **kw), path)  # type: ignore[arg-type]


def write_assessor(path: Path | str, **kw: int) -> Path:
    """Shortcut: ``write_model(assessor_model(**kw), path)``."""
    return write_model(assessor_model(**kw), path)


def inpaint_model(fill: float = 0.5) -> onnx.ModelProto:
    """The learned inpainter's contract (``models/inpaint.onnx``): inputs ``image`` float32
    ``[1,3,H,W]`` (hidden pixels 0) and ``mask`` ``[1,1,H,W]`` (1 = fill), output ``inpainted``:
    here ``image * (1 - mask) + fill * mask``, so a test can see which pixels it filled."""
    inits = [numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(fill, np.float32), "fill")]
    nodes = [helper.make_node("Sub", ["one", "mask"], ["keep"]),
             helper.make_node("Mul", ["image", "keep"], ["known"]),
             helper.make_node("Mul", ["mask", "fill"], ["filled"]),
             helper.make_node("Add", ["known", "filled"], ["inpainted"])]
    graph = helper.make_graph(
        nodes, "inpaint",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "H", "W"]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, "H", "W"])],
        [helper.make_tensor_value_info("inpainted", TensorProto.FLOAT, [1, 3, "H", "W"])], inits)
    return _finish(graph)
