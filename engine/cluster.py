"""The Ray backend: the heavy jobs (scoring, batch enhance, export) on a Ray cluster.

The local thread pool stays the default; this module is used only when a cluster address is
given (``--cluster ADDRESS`` in the CLI, *Preferences > Jobs* in the GUI). Ray is an optional
dependency (``pip install 'photolift[ray]'``) and is imported only here, lazily: without it
:class:`ClusterUnavailable` says how to get it.

What runs where:

* **Workers** run the engine's own code, never a copy of the algorithm: scoring workers are
  actors holding ONE onnxruntime session each (:class:`engine.scoring.Scorer` with one intra-op
  thread) and get batches of ``(photo id, path, fingerprint, width, height)``; each photo is read,
  checked against its fingerprint, decoded and turned into views exactly as the thread pool does
  (``Scorer.load_views``) and the batch goes through the session (``Scorer.run_views``). Only the
  raw outputs travel back. Enhance and export run one photo per Ray task.
* **The driver** (the process that runs the command or the GUI) is the ONE catalog writer:
  it turns the raw outputs into assessments with its own thresholds and head
  (``Scorer.assessments``, ``Scorer.write_results``) and writes one transaction per batch, as the
  local job does. Workers never open the catalog.
* **Code and models travel with the job**: the driver's ``engine`` and ``db`` packages are sent as
  Ray ``py_modules`` and the model files as one object in the object store, written by each
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

Cancel (a :class:`engine.jobs.CancelToken`, or Ctrl-C in the CLI) stops between results: what
came back is stored, what is in flight is dropped and the workers are killed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.jobs import CancelToken, JobCancelled, Progress, ProgressFn

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


def _code_roots() -> list[str]:
    """The packages the workers need, as folders (shipped as Ray ``py_modules``)."""
    import db
    import engine

    return [str(Path(engine.__file__).parent), str(Path(db.__file__).parent)]


class Cluster:
    """A connection to a Ray cluster for the length of a job (a context manager).

    ``address``: ``auto`` (join this machine's cluster or start a local one), ``local`` (always
    start a new one here, for this job only), ``ray://HOST:PORT``
    (Ray client) or ``HOST:PORT`` of a head node. When Ray is already initialised in this process
    (an embedding program), that connection is used and left open, and the engine must then be
    importable on the workers (installed there, or passed as ``runtime_env``: see ``runtime_env``). ``num_cpus`` limits a
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
        if ray.is_initialized():
            return
        # the driver's code travels with the job (Ray takes local folders only at this level)
        opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                "logging_level": logging.WARNING, "runtime_env": self.runtime_env()}
        try:
            if self.address in (AUTO, LOCAL):
                from engine.runtime import cpu_count

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
        return {"py_modules": _code_roots(), "excludes": ["__pycache__", "*.pyc"]}

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
    from engine.runtime import models_dir

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
        if not self.actors:
            self.start()
        while todo or inflight:
            if cancel is not None and cancel.cancelled:
                raise JobCancelled()
            for slot in range(self.n):
                while todo and load[slot] < self.depth:
                    ch = todo.popleft()
                    ref = self.call(self.actors[slot], ch.items)
                    inflight[ref] = (slot, self.gen[slot], ch)
                    load[slot] += 1
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.25)
            for ref in ready:
                slot, gen, ch = inflight.pop(ref)
                if gen == self.gen[slot]:
                    load[slot] -= 1
                try:
                    res = ray.get(ref)
                except died as e:
                    if gen == self.gen[slot]:
                        # the calls still queued on the dead actor fail too; they are requeued
                        # as they come back, and the new actor starts with an empty queue
                        load[slot] = 0
                    self._replace(slot, gen, e)
                    if ch.attempt == 0 and len(ch.items) > 1:
                        todo.extend(_Chunk([it], 1) for it in ch.items)
                    elif ch.attempt == 0:
                        todo.append(_Chunk(ch.items, 1))
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
        from engine.scoring import Scorer

        folder = materialise(files)
        self.scorer = Scorer(folder / model_name, workers=1)
        self.scorer.intra_op_threads = max(1, int(threads))

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "model_version": self.scorer.model_version}

    def score(self, items: list[tuple[int, str, str, int | None, int | None]]) -> dict[str, Any]:
        """``items``: (photo id, path to open, fingerprint, width, height). Returns the raw model
        outputs for the photos decoded, and the photos that could not be (reason, code) or changed."""
        from engine.scoring import FileChanged, decode_failure

        ids: list[int] = []
        crops: list[np.ndarray] = []
        globs: list[np.ndarray] = []
        errors: list[tuple[int, str, str]] = []
        changed: list[tuple[int, str]] = []
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
                "model_version": self.scorer.model_version}


def score_photos(cluster: Cluster, scorer: Any, catalog: Any, photo_ids: Iterable[int],
                 progress: ProgressFn | None = None, cancel: CancelToken | None = None, force: bool = False,
                 workers: int | None = None, batch_size: int | None = None,
                 on_pool: Callable[[ActorPool], None] | None = None) -> Iterator[Any]:
    """:meth:`engine.scoring.Scorer.score_photos` on the cluster: same plan, same events, same
    rows (see the module doc). ``workers``: scoring actors (default: one per cluster CPU);
    ``on_pool`` sees the actor pool once it is started (tests, benchmarks)."""
    from engine.scoring import ScoreEvent

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
    bs = max(1, int(batch_size or scorer.batch_size))
    n = max(1, int(workers or round(cluster.cpus())))
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

    pool = ActorPool(cluster, make, lambda a, items: a.score.remote(items), n)
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
