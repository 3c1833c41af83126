"""onnxruntime plumbing shared by every model: one lazy session per model file, a thread budget.

* ``get_session(path, intra_op_threads)`` returns THE session for that file and thread count,
  created on first use under a lock and shared by every caller afterwards (``InferenceSession.run``
  is thread-safe). A file that changes on disk (new size or mtime) gets a new session.
* ``thread_budget(workers)`` splits the machine's cores between concurrent workers so that
  intra-op threads x workers <= cores (oversubscription makes onnxruntime slower, not faster).
* Providers: only the installed accelerators that work without extra set-up (CUDA, DirectML,
  CoreML), always followed by the CPU provider. ``PHOTOLIFT_ORT_PROVIDERS`` (comma separated)
  overrides, e.g. ``CPUExecutionProvider`` to force the CPU.
* ``model_version(path)``: the first 12 hex digits of the file's sha256 (cached per size/mtime).
* ``models_dir()``: the repository's ``models/`` folder; ``PHOTOLIFT_MODELS`` overrides it.
* ``cpu_count()``: the cores this process may use; ``PHOTOLIFT_CPUS`` overrides it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import onnxruntime as ort

_PREFERRED = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider")

_lock = threading.Lock()
_sessions: dict[tuple[str, int, int, int, bool], ort.InferenceSession] = {}
_versions: dict[tuple[str, int, int], str] = {}


class ModelMissing(FileNotFoundError):
    """A model file the engine needs is not there (reason in the message)."""


def models_dir() -> Path:
    """Folder of the shipped ONNX models (``PHOTOLIFT_MODELS`` overrides)."""
    env = os.environ.get("PHOTOLIFT_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "models"


def cpu_count() -> int:
    """Cores this process may use (affinity-aware). ``PHOTOLIFT_CPUS`` overrides: a cluster
    worker sets it to its share of the node (``engine.cluster``), so that its sessions and tile
    pools do not each assume the whole machine."""
    env = os.environ.get("PHOTOLIFT_CPUS", "")
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_budget(workers: int) -> int:
    """Intra-op threads per worker so that threads x workers <= cores (at least 1)."""
    return max(1, cpu_count() // max(1, int(workers)))


def providers() -> list[str]:
    env = os.environ.get("PHOTOLIFT_ORT_PROVIDERS")
    available = ort.get_available_providers()
    if env:
        wanted = [p.strip() for p in env.split(",") if p.strip()]
        chosen = [p for p in wanted if p in available]
    else:
        chosen = [p for p in _PREFERRED if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _stat_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelMissing(f"model file not found: {path}") from None
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def get_session(model_path: Path, intra_op_threads: int | None = None, mem_arena: bool = True
                ) -> ort.InferenceSession:
    """The shared session for ``model_path`` (created lazily, under a lock).

    ``intra_op_threads`` defaults to ``thread_budget(1)`` (all cores for one caller).
    ``mem_arena=False`` for a model run rarely on large inputs: onnxruntime's CPU arena keeps
    its peak allocation for the life of the process, which would stay resident in the app.
    """
    path = Path(model_path)
    threads = int(intra_op_threads) if intra_op_threads else thread_budget(1)
    name, size, mtime = _stat_key(path)
    key = (name, size, mtime, threads, bool(mem_arena))
    with _lock:
        sess = _sessions.get(key)
        if sess is None:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.log_severity_level = 3
            if not mem_arena:
                so.enable_cpu_mem_arena = False
            sess = ort.InferenceSession(name, sess_options=so, providers=providers())
            # drop sessions of an older version of the same file
            for k in [k for k in _sessions if k[0] == name and k[1:3] != (size, mtime)]:
                del _sessions[k]
            _sessions[key] = sess
        return sess


def model_version(path: Path) -> str:
    """First 12 hex digits of the sha256 of the model file."""
    p = Path(path)
    key = _stat_key(p)
    with _lock:
        v = _versions.get(key)
    if v is not None:
        return v
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    v = h.hexdigest()[:12]
    with _lock:
        _versions[key] = v
    return v


def clear_sessions() -> None:
    """Forget every cached session (tests; or to free memory)."""
    with _lock:
        _sessions.clear()
