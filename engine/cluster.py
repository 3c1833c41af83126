"""The Ray backend: the heavy jobs (scoring, batch enhance, export) on a Ray cluster.

The local thread pool stays the default; this module is used only when a cluster address is
given (``--cluster ADDRESS`` in the CLI, *Preferences > Jobs* in the GUI). Ray is an optional
dependency (``pip install 'photolift[ray]'``) and is imported only here, lazily: without it
:class:`ClusterUnavailable` says how to get it.

What runs where:

* **Workers** run the engine's own code, never a copy of the algorithm: scoring workers are
  actors holding ONE onnxruntime session each (:class:`engine.assess.scoring.Scorer` with one intra-op
  thread) and get batches of ``(photo id, path, fingerprint, width, height)``; each photo is read,
  checked against its fingerprint, decoded and turned into views exactly as the thread pool does
  (``Scorer.load_views``) and the batch goes through the session (``Scorer.run_views``). Only the
  raw outputs travel back. Enhance and export run one photo per Ray task.
* **The driver** (the process that runs the command or the GUI) is the ONE catalog writer:
  it turns the raw outputs into assessments with its own thresholds and head
  (``Scorer.assessments``, ``Scorer.write_results``) and writes one transaction per batch, as the
  local job does. Workers never open the catalog.
* **Code and models travel with the job**: the driver's ``engine`` and ``db`` packages are sent as
  the job's Ray ``working_dir`` (:func:`code_dir`) and the model files as one object in the object store, written by each
  worker to a folder named by their hash. So every node runs the driver's code on the driver's
  models (the same model version, hence the same rows), whatever is installed there. Workers
  read photos by path: the paths must name the same files on every node (shared storage).

Failures: a worker that dies (killed, out of memory, node lost) loses only the batches it held;
they are queued again, split into single photos so one photo that kills its worker cannot take
others with it, and a photo lost twice is reported as an error (and not marked bad in the
catalog: a lost node is not the photo's fault). Dead actors are replaced. A result that comes
back for a photo already stored is ignored, and every write replaces the photo's row for this
model version, so a rerun completes a job without duplicates. A photo whose bytes no longer
match the fingerprint it was queued with is skipped and reported.

Cancel (a :class:`engine.core.jobs.CancelToken`, or Ctrl-C in the CLI) stops between results: what
came back is stored, what is in flight is dropped and the workers are killed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.jobs import CancelToken, Eta, JobCancelled, Progress, ProgressFn

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'photolift[ray]'"
# ``auto``: join the cluster this machine belongs to (``ray start`` was run), else start one here.
AUTO = "auto"
# ``local``: always start a new cluster in this process, stopped at the end of the job.
LOCAL = "local"
LOST_TWICE = "a cluster worker died twice while working on this photo (the photo may crash the decoder)"


class ClusterUnavailable(Exception):
    """Ray is not installed (the message says how to install it)."""


class ClusterError(Exception):
    """The cluster cannot be reached or cannot run the job (reason in the message)."""


class BadAddress(ClusterError):
    """The address is not one of the forms accepted (a usage error)."""


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable("running jobs on a cluster needs Ray, which is not installed; install it with: "
                                 f"{INSTALL_HINT}") from None
    return ray


def _code_roots() -> list[Path]:
    """The packages the workers need, as folders."""
    import db
    import engine

    return [Path(engine.__file__).parent, Path(db.__file__).parent]


def code_dir() -> Path:
    """A folder holding a copy of this process's ``engine`` and ``db`` packages (their ``.py``
    files), named by a hash of their content: the job's Ray ``working_dir``.

    Not Ray's ``py_modules``: a worker started on the driver's machine puts the driver's current
    folder on its import path BEFORE ``py_modules``, so a command run from another checkout's
    root would import that checkout's engine. A ``working_dir`` replaces the driver's folder."""
    import shutil

    files: list[tuple[str, Path]] = []
    for root in _code_roots():
        files += [(f"{root.name}/{p.relative_to(root).as_posix()}", p) for p in sorted(root.rglob("*.py"))
                  if "__pycache__" not in p.parts]
    h = hashlib.sha256()
    for rel, p in files:
        h.update(rel.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    d = Path(tempfile.gettempdir()) / f"photolift-code-{h.hexdigest()[:16]}"
    if not d.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=".photolift-code-", dir=d.parent))
        for rel, p in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, tmp / rel)
        try:
            os.rename(tmp, d)
        except OSError:  # another process made it meanwhile: same content
            shutil.rmtree(tmp, ignore_errors=True)
    return d


class Cluster:
    """A connection to a Ray cluster for the length of a job (a context manager).

    ``address``: ``auto`` (join this machine's cluster or start a local one), ``local`` (always
    start a new one here, for this job only), ``ray://HOST:PORT`` (Ray client) or ``HOST:PORT``
    of a head node. When Ray is already initialised in this process (a test, an embedding
    program), that connection is used and left open; it must have been made with
    :meth:`runtime_env` (or have the engine installed on the workers). ``num_cpus`` limits a
    local cluster started here (default: all cores).
    """

    def __init__(self, address: str = AUTO, num_cpus: int | None = None) -> None:
        self.address = (address or AUTO).strip()
        self.num_cpus = num_cpus
        self.ray = import_ray()
        self._owns = False
        self._files: dict[tuple[str, ...], Any] = {}

    # -- connection -------------------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        ray = self.ray
        if self.address not in (AUTO, LOCAL):
            _check_reachable(self.address)
        _quiet_stdout(ray)
        if ray.is_initialized():
            return
        # the driver's code travels with the job (Ray takes local folders only at this level)
        opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                "logging_level": logging.WARNING, "runtime_env": self.runtime_env()}
        try:
            if self.address in (AUTO, LOCAL):
                from engine.core.runtime import cpu_count

                try:
                    if self.address == LOCAL:
                        raise ConnectionError("a new local cluster was asked for")
                    ray.init(address="auto", **opts)
                except (ConnectionError, RuntimeError):
                    ray.init(address="local", num_cpus=self.num_cpus or cpu_count(), **opts)
            else:
                if self.address.startswith("ray://"):
                    # a client connection takes fewer options
                    opts = {"logging_level": logging.WARNING, "runtime_env": self.runtime_env()}
                ray.init(address=self.address, **opts)
        except (ClusterUnavailable, ClusterError):
            raise
        except Exception as e:  # noqa: BLE001 - every failure to connect is a message for the user
            raise ClusterError(f"cannot connect to the Ray cluster at {self.address!r}: "
                               f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
        self._owns = True

    def close(self) -> None:
        self._files.clear()
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns = False

    def cpus(self) -> float:
        return float(self.ray.cluster_resources().get("CPU", 1.0))

    def describe(self) -> str:
        res = self.ray.cluster_resources()
        return f"{len(self.ray.nodes())} node(s), {res.get('CPU', 0):g} CPU"

    # -- what travels with a job --------------------------------------------------------------------
    def runtime_env(self) -> dict[str, Any]:
        # every worker process holds one CPU of its node (actors at most one, tasks one): its
        # onnxruntime sessions and tile pools are sized for one core (engine.core.runtime.cpu_count)
        return {"working_dir": str(code_dir()), "env_vars": {"PHOTOLIFT_CPUS": "1"}}

    def ship(self, paths: Sequence[Path]) -> Any:
        """The files ``paths`` (models and their sidecars) as one object-store reference;
        a worker gets a local folder holding them from :func:`materialise`."""
        key = tuple(str(p) for p in paths)
        ref = self._files.get(key)
        if ref is None:
            blob = {p.name: p.read_bytes() for p in paths if p.is_file()}
            ref = self.ray.put(blob)
            self._files[key] = ref
        return ref

    # -- the engine's jobs here (the stages call these and never import this module) ----------------
    def enhance_queued(self, editor: Any, batch: str, progress: ProgressFn | None,
                       cancel: CancelToken | None) -> Iterator[Any]:
        """An enhance batch queued by ``editor``, run here: see :func:`enhance_queued`."""
        return enhance_queued(self, editor, batch, progress, cancel)

    def export_photos(self, exporter: Any, ids: list[int], root_out: Path, fmt: str, quality: int, template: str,
                      progress: ProgressFn | None, cancel: CancelToken | None, bits: int, mirror: bool,
                      only_enhanced: bool, skip_done: bool) -> Iterator[Any]:
        """``Exporter.export(..., cluster=self)``: see :func:`export_photos`."""
        return export_photos(self, exporter, ids, root_out, fmt, quality, template, progress, cancel, bits, mirror,
                             only_enhanced, skip_done)


def _quiet_stdout(ray: Any) -> None:
    """Keep Ray's messages off stdout: its driver prints the cluster's error messages ("(raylet) A
    worker died...") to ``sys.stdout`` even with ``log_to_driver=False``, which would break the
    JSON lines scripts read there. A lost worker is logged by this module (stderr) instead.
    (Ray has no public switch for it; without the private flag this does nothing.)"""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    if worker is not None and hasattr(worker, "_worker_logs_enabled"):
        worker._worker_logs_enabled = False


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast with a reason when ``[ray://]HOST:PORT`` does not answer (Ray itself would retry
    for minutes, printing a warning every few seconds)."""
    import socket

    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise BadAddress(f"not a cluster address: {address!r}; use 'auto', ray://HOST:PORT or HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from e


def model_files(folder: Path | None = None) -> list[Path]:
    """The model files (ONNX graphs and their JSON sidecars) of the models folder."""
    from engine.core.runtime import models_dir

    d = Path(folder) if folder is not None else models_dir()
    return sorted([*d.glob("*.onnx"), *d.glob("*.json")])


def materialise(files: dict[str, bytes]) -> Path:
    """Write shipped files to a folder named by their hash (once per node) and return it."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode())
        h.update(hashlib.sha256(files[name]).digest())
    d = Path(tempfile.gettempdir()) / f"photolift-models-{h.hexdigest()[:16]}"
    d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        p = d / name
        if p.is_file() and p.stat().st_size == len(data):
            continue
        tmp = d / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, p)  # atomic: a worker on the same node never sees half a model
    return d


# -- the dispatcher ----------------------------------------------------------------------------------

@dataclass
class _Chunk:
    items: list[Any]
    attempt: int = 0


@dataclass(frozen=True)
class Lost:
    """The items of a chunk that could not be done because workers died (reason in ``error``)."""

    error: str


def _actor_died_errors(ray: Any) -> tuple[type[BaseException], ...]:
    ex = ray.exceptions
    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError",
             "NodeDiedError", "OwnerDiedError", "ObjectLostError")
    return tuple(getattr(ex, n) for n in names if hasattr(ex, n))


class ActorPool:
    """Chunks of work over ``n`` actors, ``depth`` calls queued per actor (so a worker never waits
    for the driver), with the failure handling of the module doc. ``make(slot)`` creates an actor;
    ``call(actor, items)`` returns an ``ObjectRef``."""

    def __init__(self, cluster: Cluster, make: Callable[[int], Any], call: Callable[[Any, list[Any]], Any],
                 n: int, depth: int = 2, max_replacements: int | None = None) -> None:
        self.ray = cluster.ray
        self.make = make
        self.call = call
        self.n = max(1, int(n))
        self.depth = max(1, int(depth))
        self.max_replacements = max_replacements if max_replacements is not None else 3 * self.n + 3
        self.actors: list[Any] = []
        self.gen: list[int] = []
        self.replaced = 0
        self.worker_pids: dict[int, int] = {}

    def start(self) -> None:
        self.actors = [self.make(i) for i in range(self.n)]
        self.gen = [0] * self.n

    def shutdown(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone is what we want
                pass
        self.actors = []

    def _replace(self, slot: int, gen: int, why: BaseException) -> None:
        if self.gen[slot] != gen:
            return  # already replaced after another of its lost calls
        self.replaced += 1
        if self.replaced > self.max_replacements:
            raise ClusterError(f"cluster workers keep dying ({self.replaced} lost); last error: "
                               f"{_first_line(why)}")
        log.warning("cluster worker %d lost (%s); starting a new one", slot, _first_line(why))
        try:
            self.ray.kill(self.actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001
            pass
        self.actors[slot] = self.make(slot)
        self.gen[slot] += 1

    def run(self, chunks: Iterable[list[Any]], cancel: CancelToken | None = None
            ) -> Iterator[tuple[list[Any], Any]]:
        """Yield ``(items, result)`` per chunk as results arrive; ``result`` is a :class:`Lost`
        for items given up on. Raises ``JobCancelled`` when ``cancel`` fires."""
        ray = self.ray
        died = _actor_died_errors(ray)
        todo: deque[_Chunk] = deque(_Chunk(list(c)) for c in chunks if c)
        inflight: dict[Any, tuple[int, int, _Chunk]] = {}
        load = [0] * self.n
        # a retried photo (a suspect: its worker died) runs alone on an idle worker, so that if it
        # kills that worker too, no other photo is lost with it
        alone = [False] * self.n
        if not self.actors:
            self.start()
        while todo or inflight:
            if cancel is not None and cancel.cancelled:
                raise JobCancelled()
            for slot in range(self.n):
                while todo and load[slot] < self.depth and not alone[slot]:
                    if todo[0].attempt > 0 and load[slot] > 0:
                        break
                    ch = todo.popleft()
                    ref = self.call(self.actors[slot], ch.items)
                    inflight[ref] = (slot, self.gen[slot], ch)
                    load[slot] += 1
                    alone[slot] = ch.attempt > 0
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.25)
            for ref in ready:
                slot, gen, ch = inflight.pop(ref)
                if gen == self.gen[slot]:
                    load[slot] -= 1
                    if ch.attempt > 0:
                        alone[slot] = False
                try:
                    res = ray.get(ref)
                except died as e:
                    if gen == self.gen[slot]:
                        # the calls still queued on the dead actor fail too; they are requeued
                        # as they come back, and the new actor starts with an empty queue
                        load[slot] = 0
                        alone[slot] = False
                    self._replace(slot, gen, e)
                    if ch.attempt == 0:  # retried first, one photo at a time
                        todo.extendleft(_Chunk([it], 1) for it in reversed(ch.items))
                    else:
                        yield ch.items, Lost(LOST_TWICE)
                    continue
                yield ch.items, res


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


# -- scoring -----------------------------------------------------------------------------------------

class ScoreWorker:
    """The scoring actor: one Scorer (one onnxruntime session, ``threads`` intra-op threads)."""

    def __init__(self, files: dict[str, bytes], model_name: str, threads: int = 1) -> None:
        from engine.assess.scoring import Scorer

        folder = materialise(files)
        self.scorer = Scorer(folder / model_name, workers=1)
        if self.scorer.intra_op_threads != max(1, int(threads)):  # not with PHOTOLIFT_CPUS=1 (runtime_env)
            self.scorer.intra_op_threads = max(1, int(threads))

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "model_version": self.scorer.model_version}

    def score(self, items: list[tuple[int, str, str, int | None, int | None]]) -> dict[str, Any]:
        """``items``: (photo id, path to open, fingerprint, width, height). Returns the raw model
        outputs for the photos decoded, and the photos that could not be (reason, code) or changed."""
        from engine.assess.scoring import FileChanged, decode_failure

        t0 = time.perf_counter()
        ids: list[int] = []
        crops: list[np.ndarray] = []
        globs: list[np.ndarray] = []
        errors: list[tuple[int, str, str]] = []
        changed: list[tuple[int, str]] = []
        # one photo after another: a worker holds one CPU (two decoding threads per worker measured
        # slower on 2 cores: 19.9 against 23.2 photos/s for 2 workers)
        for pid, path, fp, w, h in items:
            try:
                c, g = self.scorer.load_views(path, w, h, fp)
            except FileChanged as e:
                changed.append((pid, str(e)))
                continue
            except Exception as e:  # noqa: BLE001 - bad input is state, the batch goes on
                errors.append((pid, *decode_failure(e)))
                continue
            ids.append(pid)
            crops.append(c)
            globs.append(g)
        out = self.scorer.run_views(np.stack(crops), np.stack(globs)) if ids else {}
        return {"ids": ids, "out": out, "errors": errors, "changed": changed, "pid": os.getpid(),
                "model_version": self.scorer.model_version, "busy_s": time.perf_counter() - t0}


def score_photos(cluster: Cluster, scorer: Any, catalog: Any, photo_ids: Iterable[int],
                 progress: ProgressFn | None = None, cancel: CancelToken | None = None, force: bool = False,
                 workers: int | None = None, batch_size: int | None = None,
                 on_pool: Callable[[ActorPool], None] | None = None, depth: int = 2) -> Iterator[Any]:
    """:meth:`engine.assess.scoring.Scorer.score_photos` on the cluster: same plan, same events, same
    rows (see the module doc). ``workers``: scoring actors (default: one per cluster CPU);
    ``on_pool`` sees the actor pool once it is started (tests, benchmarks)."""
    from engine.assess.scoring import ScoreEvent

    ray = cluster.ray
    plan = scorer.plan(catalog, photo_ids, force)
    total = len(plan.ids)
    n_done = 0
    head = scorer.active_head(catalog)

    def report(msg: str) -> None:
        if progress is not None:
            progress(Progress(n_done, total, msg))

    for ev in plan.done:
        n_done += 1
        report(ev.path)
        yield ev
    if not plan.todo:
        return
    n = max(1, int(workers or round(cluster.cpus())))
    # batches of up to the scorer's size, smaller for a short job so that every worker gets
    # several (the last batch of a job otherwise runs alone while the other workers idle)
    bs = max(1, min(int(batch_size or scorer.batch_size), -(-len(plan.todo) // (4 * n))))
    n = min(n, max(1, -(-len(plan.todo) // bs)))
    by_id = {it[0]: it for it in plan.todo}
    work = [(it[0], plan.fs_paths[it[0]], it[2], it[3], it[4]) for it in plan.todo]
    chunks = [work[i:i + bs] for i in range(0, len(work), bs)]
    files = [scorer.model_path, scorer.model_path.with_suffix(".json")]
    blob = cluster.ship(files)
    per_cpu = min(1.0, cluster.cpus() / n)
    actor_cls = ray.remote(ScoreWorker)

    def make(_slot: int) -> Any:
        return actor_cls.options(num_cpus=per_cpu, max_concurrency=1).remote(blob, scorer.model_path.name, 1)

    pool = ActorPool(cluster, make, lambda a, items: a.score.remote(items), n, depth=depth)
    stored: set[int] = set()
    try:
        pool.start()
        if on_pool is not None:
            on_pool(pool)
        for items, res in pool.run(chunks, cancel):
            if isinstance(res, Lost):
                events = [ScoreEvent(it[0], by_id[it[0]][1], "error", error=res.error)
                          for it in items if it[0] not in stored]
            else:
                if res["model_version"] != scorer.model_version:
                    raise ClusterError(f"a worker loaded model version {res['model_version']}, "
                                       f"not {scorer.model_version}")
                keep = [i for i, pid in enumerate(res["ids"]) if pid not in stored]
                base = scorer.assessments(res["out"]) if res["ids"] else []
                ok_items = [by_id[res["ids"][i]] for i in keep]
                errors = [(by_id[pid], reason, code) for pid, reason, code in res["errors"] if pid not in stored]
                events = scorer.write_results(catalog, ok_items, [base[i] for i in keep], errors, head)
                events += [ScoreEvent(pid, by_id[pid][1], "skipped", error=why)
                           for pid, why in res["changed"] if pid not in stored]
            for ev in events:
                stored.add(ev.photo_id)
                n_done += 1
                report(ev.path)
                yield ev
    finally:
        pool.shutdown()


# -- one photo per task: batch enhance and export ----------------------------------------------------

_worker_renderers: dict[tuple[str, str | None, int], Any] = {}


def _worker_renderer(files: dict[str, bytes], cache_dir: str | None, cache_bytes: int) -> Any:
    """The renderer of this worker process for these models (created once, then reused).

    ``cache_dir``: the driver's render cache folder. On the driver's own machine the workers share
    it (an export then reuses the render its enhance made, and the GUI sees the previews); on
    other nodes the folder is created locally and serves that node only."""
    from engine.enhance.render import RenderCache, Renderer

    folder = materialise(files)
    os.environ["PHOTOLIFT_MODELS"] = str(folder)  # the pipeline finds its models by this folder
    key = (str(folder), cache_dir, int(cache_bytes))
    r = _worker_renderers.get(key)
    if r is None:
        cache = RenderCache(Path(cache_dir), cache_bytes) if cache_dir else RenderCache()
        r = Renderer(cache=cache)
        _worker_renderers.clear()  # one job's models at a time per worker process
        _worker_renderers[key] = r
    return r


@dataclass(frozen=True)
class Failed:
    """A task's known failure, as plain data (Ray's own error would carry the remote traceback
    into the user's message). ``kind``: ``photo`` (this photo only: the batch goes on),
    ``environment`` (disk full, permission: the batch stops), ``unavailable`` (a model is missing)."""

    kind: str
    message: str


def _guarded(fn: Callable[[], Any]) -> Any:
    from engine.enhance.edits import EditError
    from engine.enhance.pipeline import StageUnavailable
    from engine.enhance.recipes import ModelGone
    from engine.export.exporter import EnvironmentFailure, ExportError

    try:
        return fn()
    except EnvironmentFailure as e:
        return Failed("environment", str(e))
    except (StageUnavailable, ModelGone) as e:
        return Failed("unavailable", str(e))
    except (EditError, ExportError) as e:
        return Failed("photo", str(e))
    except MemoryError:
        return Failed("photo", "not enough memory on the cluster worker to render this photo")


def raise_failure(f: Failed) -> None:
    """Re-raise a batch-stopping :class:`Failed` in the driver as the engine's own exception."""
    from engine.enhance.pipeline import StageUnavailable
    from engine.export.exporter import EnvironmentFailure

    if f.kind == "environment":
        raise EnvironmentFailure(f.message)
    if f.kind == "unavailable":
        raise StageUnavailable(f.message)


def _enhance_file_task(files: dict[str, bytes], path: str, out_dir: str, ops: list[str] | None, strength: float,
                       fmt: str, quality: int, bits: int, template: str, force: bool,
                       defects: dict[str, Any] | None = None) -> Any:
    from engine.export.files import enhance_file

    return _guarded(lambda: enhance_file(Path(path), Path(out_dir), _worker_renderer(files, None, 0), ops, strength,
                                         fmt, quality, bits, template, force, defects=defects))


def _enhance_photo_task(files: dict[str, bytes], cache_dir: str | None, cache_bytes: int, path: str, fp: str,
                        names: list[str], strength: float, defects: dict[str, Any] | None = None,
                        face_w: float | None = None) -> Any:
    from engine.enhance.edits import render_and_measure

    def work() -> tuple[str, Any]:
        recipe, guard = render_and_measure(_worker_renderer(files, cache_dir, cache_bytes), Path(path), fp, names,
                                           strength, check_source=True, defects=defects, face_w=face_w)
        return recipe.to_json(), guard

    return _guarded(work)


def _export_task(files: dict[str, bytes], cache_dir: str | None, cache_bytes: int, task: Any) -> Any:
    from engine.export.exporter import render_and_write

    return _guarded(lambda: render_and_write(_worker_renderer(files, cache_dir, cache_bytes), task, check_source=True))


def run_tasks(cluster: Cluster, fn: Callable[..., Any], calls: Iterable[tuple[Any, ...]],
              cancel: CancelToken | None = None, window: int | None = None, retries: int = 1
              ) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*args)`` as one Ray task per entry of ``calls`` (at most ``window`` at once) and
    yield ``(index, result)`` in the order of ``calls``. A task whose worker died is retried
    ``retries`` times by Ray, then its result is a :class:`Lost`. An exception raised by ``fn``
    is re-raised here, as its own type (Ray's error is an instance of the original class)."""
    ray = cluster.ray
    died = _actor_died_errors(ray)
    remote = ray.remote(fn).options(num_cpus=1, max_retries=retries, retry_exceptions=False)
    window = max(1, int(window or 2 * max(1, round(cluster.cpus()))))
    it = iter(enumerate(calls))
    inflight: dict[Any, int] = {}
    done: dict[int, Any] = {}
    nxt = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(inflight) < window:
                item = next(it, None)
                if item is None:
                    exhausted = True
                    break
                inflight[remote.remote(*item[1])] = item[0]
            while nxt in done:
                yield nxt, done.pop(nxt)
                nxt += 1
            if not inflight:
                if exhausted:
                    return
                continue
            if cancel is not None and cancel.cancelled:
                raise JobCancelled()
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.25)
            for ref in ready:
                i = inflight.pop(ref)
                try:
                    done[i] = ray.get(ref)
                except died:
                    done[i] = Lost(LOST_TWICE)
    finally:
        for ref in inflight:  # cancelled, interrupted or failed: drop the work in flight
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        if inflight:
            # a forced cancel only asks for the worker to be killed: wait (briefly) until it is, so
            # that a task cannot still write a file or journal after this command has exited and a
            # rerun has already recovered the journals it found
            try:
                ray.wait(list(inflight), num_returns=len(inflight), timeout=10.0)
            except BaseException:  # noqa: BLE001 - a second Ctrl-C, or Ray already gone
                pass


def enhance_files(cluster: Cluster, paths: Sequence[Path], out_dir: Path, ops: Sequence[str] | None,
                  strength: float, fmt: str, quality: int, bits: int, template: str, force: bool,
                  cancel: CancelToken | None = None, defects: Sequence[dict[str, Any] | None] | None = None
                  ) -> Iterator[Any]:
    """``engine.export.files.enhance_file`` for each path, one Ray task per file; yields the
    ``FileResult`` of each file in order (a file whose workers died twice is an error result).
    ``defects``: per path, its ``defects`` stage parameters (read from the catalog by the driver)."""
    import dataclasses

    from engine.core.paths import display_path
    from engine.export.files import FileResult

    blob = cluster.ship(model_files())
    # absolute paths: a worker's current folder is not the driver's (and on another node, not even
    # its machine); each result then shows the path as it was given
    calls = [(blob, os.path.abspath(p), os.path.abspath(out_dir), list(ops) if ops is not None else None,
              float(strength), fmt, int(quality), int(bits), template, bool(force),
              defects[i] if defects is not None else None) for i, p in enumerate(paths)]
    for i, res in run_tasks(cluster, _enhance_file_task, calls, cancel):
        if isinstance(res, Failed):
            raise_failure(res)
            res = Lost(res.message)
        if isinstance(res, Lost):
            yield FileResult(display_path(paths[i]), "error", error=res.error)
        else:
            yield dataclasses.replace(res, path=display_path(paths[i]))


def enhance_queued(cluster: Cluster, editor: Any, batch: str, progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None) -> Iterator[Any]:
    """An enhance batch queued in the catalog (``Editor.enhance_batch(..., cluster=)``, or one
    resumed by ``Editor.resume_interrupted``) run on the cluster: each photo is planned, rendered
    and measured by a task; the driver records each result (and marks its job done in the same
    transaction). Yields ``EnhanceResult`` per photo."""
    from db.schema import JOB_CANCELLED, JOB_ERROR, JOB_QUEUED
    from engine.enhance.edits import ENHANCE_JOB, EditError, failed_result
    from engine.enhance.recipes import from_json

    jobs = editor.queue.pending(ENHANCE_JOB, batch)
    eta = Eta(len(jobs), progress, "enhancing")
    eta.report(0)
    blob = cluster.ship(model_files())
    cache = editor.renderer.cache
    cache_dir, cache_bytes = str(cache.root.parent), int(cache.max_bytes)
    ready: list[tuple[Any, tuple[Any, ...]]] = []
    n = 0

    def failed(job: Any, why: str) -> Any:
        editor.queue.set_state(job.id, JOB_ERROR, why)
        return failed_result(job.photo_id or -1, why)

    for job in jobs:
        try:
            p = editor._photo(job.photo_id)
            fp = editor._checked_source(p)
        except EditError as e:
            n += 1
            yield failed(job, str(e))
            eta.report(n)
            continue
        if not editor.queue.claim(job.id):  # superseded by a newer batch meanwhile
            n += 1
            continue
        names = list(job.params.get("ops") or [])
        defects = None
        if "defects" in names:  # the series' corrections come from the catalog, which only the driver reads
            from engine.enhance.defects import stage_params

            defects = stage_params(editor.catalog, p.id)
        face_w = job.params.get("face_w")
        ready.append((job, (blob, cache_dir, cache_bytes, p.fs_path, fp, names,
                            float(job.params.get("strength", 1.0)), defects,
                            None if face_w is None else float(face_w))))
    finished: set[int] = set()
    try:
        for i, res in run_tasks(cluster, _enhance_photo_task, [c for _, c in ready], cancel):
            job = ready[i][0]
            finished.add(job.id)
            n += 1
            if isinstance(res, Failed):
                raise_failure(res)
                yield failed(job, res.message)
            elif isinstance(res, Lost):
                yield failed(job, res.error)
            else:
                recipe_json, guard = res
                yield editor.record_enhanced(job.photo_id, from_json(recipe_json), guard,
                                             bool(job.params.get("apply_if_no_gain", False)), job.id)
            eta.report(n)
    except JobCancelled:  # as the local queue does: a user's cancel is a decision, not an interruption
        for job, _ in ready:
            if job.id not in finished:
                editor.queue.set_state(job.id, JOB_CANCELLED)
        raise
    except BaseException:  # Ctrl-C, a failure: the unfinished jobs are queued again, resumed at the next start
        for job, _ in ready:
            if job.id not in finished:
                editor.queue.set_state(job.id, JOB_QUEUED)
        raise


def export_photos(cluster: Cluster, exporter: Any, ids: list[int], root_out: Path, fmt: str, quality: int,
                  template: str, progress: ProgressFn | None, cancel: CancelToken | None, bits: int, mirror: bool,
                  only_enhanced: bool, skip_done: bool) -> Iterator[Any]:
    """``Exporter.export(..., cluster=...)``: the driver prepares each photo (skips, checks, names,
    folders; ``Exporter.prepare``), a task renders and writes it with the journal
    (``engine.export.exporter.render_and_write``: temp file, verify, link into place, never overwriting),
    and the driver records the file and closes its journal (``Exporter.finish``). Results come
    in the order of ``ids``; an environment failure stops the batch as it does locally."""
    from engine.export.exporter import EnvironmentFailure, ExportError, ExportResult, ExportTask

    rows = exporter._rows(ids)
    eta = Eta(len(ids), progress, "exporting")
    eta.report(0)
    cleaned: set[Path] = set()
    slots: list[Any] = []  # an ExportResult, or the index of a task
    tasks: list[ExportTask] = []
    stopped: str | None = None

    def stop_all(pid: int, why: str) -> Any:
        row = rows.get(pid)
        return ExportResult(pid, row.path if row else "", "error", error=f"not exported: the export stopped ({why})",
                            fatal=True)

    for pid in ids:
        row = rows.get(pid)
        if row is None:
            slots.append(ExportResult(pid, "", "error", error=f"photo {pid} is not in the catalog"))
            continue
        try:
            t = exporter.prepare(row, root_out, fmt, quality, template, bits, mirror, only_enhanced, skip_done,
                                 cleaned)
        except EnvironmentFailure as e:
            slots.append(ExportResult(pid, row.path, "error", error=str(e), recipe_id=row.recipe_id, fatal=True))
            stopped = str(e)
            break
        except ExportError as e:
            t = ExportResult(pid, row.path, "error", error=str(e), recipe_id=row.recipe_id)
        if isinstance(t, ExportTask):
            slots.append(len(tasks))
            tasks.append(t)
        else:
            slots.append(t)
    if stopped is not None:
        slots += [stop_all(pid, stopped) for pid in ids[len(slots):]]
    blob = cluster.ship(model_files())
    cache = exporter.renderer.cache
    calls = [(blob, str(cache.root.parent), int(cache.max_bytes), t) for t in tasks]
    results = run_tasks(cluster, _export_task, calls, cancel) if stopped is None else iter(())
    n = 0
    try:
        for slot in slots:
            if stopped is not None and isinstance(slot, int):
                res = stop_all(tasks[slot].photo_id, stopped)
            elif isinstance(slot, int):
                _, out = next(results)
                t = tasks[slot]
                if isinstance(out, Failed) and out.kind == "environment":
                    stopped = out.message
                    res = ExportResult(t.photo_id, t.path, "error", error=out.message, recipe_id=t.recipe_id,
                                       fatal=True)
                elif isinstance(out, Failed | Lost):  # this photo only (a missing model is too, as locally)
                    why = out.message if isinstance(out, Failed) else out.error
                    res = ExportResult(t.photo_id, t.path, "error", error=why, recipe_id=t.recipe_id)
                else:
                    written, warnings = out
                    res = exporter.finish(t, written, warnings)
            else:
                res = slot
            n += 1
            yield res
            eta.report(n, res.status)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # drop the tasks still in flight
