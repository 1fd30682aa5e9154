"""Where the points of a sweep run: ``local`` (a pool of worker processes) or ``ray``.

Both expose the same small interface the grid and optimize drivers use::

    ex.submit(job)            # job: a plain dict (see groklab.sweep.point)
    job, results = ex.next_done()   # blocks until one job finishes; results: list of result dicts
    ex.capacity, ex.pending, ex.close()

``run_jobs`` is the one loop that keeps them busy, for grids and for Optuna studies alike.
A job is either one point (``run_point``) or an ensemble of points trained together
(``{"kind": "ensemble", "jobs": [...]}``, see groklab.sweep.ensemble). The drivers keep at most
``capacity`` jobs in flight, so asking Optuna for a trial happens only when a worker is free.

Ray is imported only by ``RayExecutor``. Its tasks write straight into the sweep directory when
a worker sees it (same machine or a shared file system: a token file proves it); otherwise the
point runs in a temporary directory and its files travel back with the result. Before
``ray.init`` the address gets a plain TCP connection with a timeout (``RAY_CONNECT_TIMEOUT``),
so an address where nothing listens is one line at once; ``ray.init`` itself tries the cluster
``RAY_GCS_TRIES`` times (Ray's default is 20, each up to about 40 s where no GCS answers).
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from groklab.config import ConfigError
from groklab.runs.rundir import atomic_write_bytes, atomic_write_text


def run_job(job: dict[str, Any], threads: int | None = 1) -> list[dict[str, Any]]:
    """Run one job (a point or an ensemble of points) and return its results, each with the
    ``pid`` of the process that ran it."""
    if job.get("kind") == "ensemble":
        from groklab.sweep.ensemble import run_ensemble_job
        results = run_ensemble_job(job, threads=threads)
    else:
        from groklab.sweep.point import run_point
        results = [run_point(job, threads=threads)]
    return [{**r, "pid": os.getpid()} for r in results]


def run_jobs(executor, jobs: list[dict], on_result: Callable[[dict], None],
             more: Callable[[], list[dict]] = lambda: []) -> None:
    """Keep ``executor.capacity`` jobs in flight until none is left; ``on_result`` per point.

    ``more()`` is asked for new jobs whenever the queue is empty and a worker is free (an
    Optuna trial is asked for only then); an empty list means it has none now. The caller
    owns the executor and closes it."""
    queue = list(jobs)
    while True:
        while executor.pending < executor.capacity:
            if not queue:
                queue.extend(more())
                if not queue:
                    break
            executor.submit(queue.pop(0))
        if not executor.pending:
            return
        _, results = executor.next_done()
        for r in results:
            on_result(r)


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)
    _die_with_parent()


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the driver dies, so a killed sweep leaves no orphan
    still writing into a point that the next invocation resumes."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LocalExecutor:
    """A pool of ``workers`` processes (default: one per core); 1 worker runs jobs inline."""

    def __init__(self, workers: int | None = None):
        check_workers(workers)
        self.capacity = workers or os.cpu_count() or 1
        self._pool = None
        self._futures: dict[Future, dict] = {}
        self._inline: list[dict] = []
        if self.capacity > 1:
            import multiprocessing as mp
            # spawn: a fresh interpreter per worker, no forked torch thread pools or locks
            self._pool = ProcessPoolExecutor(self.capacity, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker)

    @property
    def pending(self) -> int:
        return len(self._futures) + len(self._inline)

    def submit(self, job: dict[str, Any]) -> None:
        if self._pool is None:
            self._inline.append(job)
        else:
            self._futures[self._pool.submit(run_job, job)] = job

    def next_done(self) -> tuple[dict, list[dict]]:
        if self._inline:
            job = self._inline.pop(0)
            return job, run_job(job, threads=None)
        done, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
        fut = next(iter(done))
        job = self._futures.pop(fut)
        try:
            return job, fut.result()
        except ConfigError:  # a file of the sweep directory that cannot be read back: stop
            raise
        except Exception as e:  # the worker process itself died (out of memory, a signal)
            return job, _failed_results(job, f"worker died: {type(e).__name__}: {e}")

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None


def _failed_results(job: dict, error: str) -> list[dict]:
    jobs = job["jobs"] if job.get("kind") == "ensemble" else [job]
    from groklab.runs.rundir import write_json
    out = []
    for j in jobs:
        d = Path(j["dir"])
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "failed.json", {"error": error})
        out.append({"id": j["id"], "status": "failed", "summary": None, "error": error})
    return out


# --- Ray -----------------------------------------------------------------------------------

TOKEN = ".sweep_token"


def _ray_task(job: dict[str, Any], root: str, token: str) -> dict[str, Any]:
    """Runs on a Ray worker: in place when it sees the sweep directory, else in a temp dir."""
    import tempfile
    shared = (Path(root) / TOKEN).is_file() and (Path(root) / TOKEN).read_text() == token
    if shared:
        return {"results": run_job(job), "files": None}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = job["jobs"] if job.get("kind") == "ensemble" else [job]
        remap = {j["dir"]: str(Path(tmp) / Path(j["dir"]).name) for j in jobs}
        local = _rebase(job, remap)
        results = run_job(local)
        files = {}
        for orig, d in remap.items():
            for p in Path(d).rglob("*"):
                if p.is_file():
                    files[str(Path(orig) / p.relative_to(d))] = p.read_bytes()
        return {"results": results, "files": files}


def _rebase(job: dict, remap: dict[str, str]) -> dict:
    if job.get("kind") == "ensemble":
        return {**job, "jobs": [{**j, "dir": remap[j["dir"]]} for j in job["jobs"]]}
    return {**job, "dir": remap[job["dir"]]}


class RayExecutor:
    """Submits jobs as Ray tasks (one CPU each) to the cluster at ``address``.

    Connecting writes nothing: the token file goes into ``root`` with the first job, once the
    sweep directory exists. ``files_received`` counts the files that workers which could not
    see ``root`` sent back."""

    def __init__(self, address: str | None, root: Path, workers: int | None = None):
        check_workers(workers)
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'groklab[ray]'") from None
        self.ray = ray
        self.root = Path(root).resolve()
        self.token = uuid.uuid4().hex
        self.files_received = 0
        self._token_written = False
        if not ray.is_initialized():
            check_reachable(address)
            with _env_default("RAY_gcs_server_port_wait_time_s", str(RAY_GCS_TRIES)), \
                    _fd2_held() as held:
                try:
                    ray.init(address=address or "auto", log_to_driver=False,
                             include_dashboard=False, configure_logging=False)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    held.drop()  # Ray's C++ retry warnings: the one line below says it
                    raise ConfigError(f"--address {address or 'auto'!r}: cannot reach a Ray cluster "
                                      f"({_first_line(e)})") from None
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = workers or max(1, cpus)
        self._refs: dict[Any, dict] = {}

    @property
    def pending(self) -> int:
        return len(self._refs)

    def submit(self, job: dict[str, Any]) -> None:
        if not self._token_written:
            atomic_write_text(self.root / TOKEN, self.token)
            self._token_written = True
        self._refs[self._remote.remote(job, str(self.root), self.token)] = job

    def next_done(self) -> tuple[dict, list[dict]]:
        ready, _ = self.ray.wait(list(self._refs), num_returns=1)
        ref = ready[0]
        job = self._refs.pop(ref)
        try:
            out = self.ray.get(ref)
        except ConfigError:  # a file of the sweep directory that cannot be read back: stop
            raise
        except Exception as e:  # a task that died with its worker
            return job, _failed_results(job, f"ray task failed: {type(e).__name__}: {e}")
        files = out["files"] or {}
        dirs = [Path(j["dir"]).resolve() for j in (job["jobs"] if job.get("kind") == "ensemble" else [job])]
        for path in files:
            p = Path(path).resolve()
            if not any(p.is_relative_to(d) for d in dirs):  # a worker writes only its own points
                return job, _failed_results(job, f"ray task sent a file outside its point: {path}")
        for path, data in files.items():
            atomic_write_bytes(path, data)
        self.files_received += len(files)
        return job, out["results"]

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                self.ray.cancel(ref)
        self._refs.clear()
        if self._token_written:
            (self.root / TOKEN).unlink(missing_ok=True)
            self._token_written = False
        if self.ray.is_initialized():
            self.ray.shutdown()


MAX_WORKERS = 1024


def check_workers(workers: Any) -> None:
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool)
                                or not 1 <= workers <= MAX_WORKERS):
        raise ConfigError(f"--workers {workers!r}: an integer from 1 to {MAX_WORKERS}")


RAY_CONNECT_TIMEOUT = 10.0  # seconds for the TCP check of --address
RAY_GCS_TRIES = 1           # ray.init's attempts at the cluster's GCS (the address answered TCP)
ADDRESS = re.compile(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):([0-9]{1,5})")
ADDRESS_HELP = "expected HOST:PORT (e.g. 127.0.0.1:6379), ray://HOST:PORT or auto"


def check_executor(name: Any, workers: Any = None, address: Any = None) -> None:
    """Every executor option, checked before anything is created or connected."""
    if name not in ("local", "ray"):
        raise ConfigError(f"--executor {name!r} is not one of: local, ray")
    check_workers(workers)
    if address is not None and (name != "ray" or not isinstance(address, str) or not address):
        raise ConfigError(f"--address {address!r} is only used with --executor ray, as HOST:PORT or auto")
    if address is not None and address != "auto":
        m = ADDRESS.fullmatch(address)
        if m is None or not 1 <= int(m.group(2)) <= 65535:
            raise ConfigError(f"--address {address[:200]!r}: {ADDRESS_HELP}")


def check_reachable(address: str | None, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """A TCP connection to the cluster's address (``auto``: the one Ray finds on this machine)
    within ``timeout`` seconds; else a one-line ConfigError."""
    shown = address or "auto"
    if shown == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
            found = canonicalize_bootstrap_address("auto")
        except Exception:  # Ray's own lookup failed: ray.init says why, in one line
            return
        if found is None:
            raise ConfigError("--address auto: no running Ray cluster found on this machine; start one "
                              "(ray start --head) or give --address HOST:PORT")
        address = found
    m = ADDRESS.fullmatch(address)
    if m is None:
        return
    host, port = m.group(1).strip("[]"), int(m.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        why = e.strerror or (f"no answer within {timeout:g} s" if isinstance(e, TimeoutError) else str(e))
        raise ConfigError(f"--address {shown[:200]!r}: no Ray cluster answers at {host}:{port} ({why})") from None


@contextlib.contextmanager
def _env_default(name: str, value: str):
    """``name=value`` in the environment while the block runs, unless the user has set it."""
    added = name not in os.environ
    if added:
        os.environ[name] = value
    try:
        yield
    finally:
        if added:
            os.environ.pop(name, None)


class _Held:
    def __init__(self, file):
        self.file, self.dropped = file, False

    def drop(self) -> None:
        self.dropped = True


@contextlib.contextmanager
def _fd2_held():
    """File descriptor 2 (where Ray's C++ core writes) goes to a temporary file while the block
    runs, and is written out after it unless ``drop()`` was called."""
    import sys
    import tempfile
    with tempfile.TemporaryFile() as f:
        held = _Held(f)
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not held.dropped:
                f.seek(0)
                text = f.read().decode("utf-8", "replace")
                if text:
                    sys.stderr.write(text)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line if len(line) <= 200 else line[:199] + "…"


def make_executor(name: str, root: Path, workers: int | None = None, address: str | None = None):
    """A started executor (a Ray cluster is connected to here); it writes nothing yet."""
    check_executor(name, workers, address)
    if name == "local":
        return LocalExecutor(workers)
    return RayExecutor(address, root, workers)
