"""Worker processes for the ``local`` executor, and the thread limits every worker applies.

Each worker process builds one :class:`~noisegrid.worker.Worker` (corpus, noise model, backend and
its caches) when it starts and then runs one sibling group at a time (the noise rates of one size
and seed, :class:`~noisegrid.grid.SiblingGroup`), so heavy assets load once per process, never once
per cell. The driver keeps one connection per worker and sends a worker its next group the moment it
returns the group's results, so results stream back in completion order. Groups are handed out
largest training size first (:func:`largest_first`), so the grid does not end with its most
expensive groups running alone, and groups are split when there are fewer than workers
(:func:`~noisegrid.grid.split_groups`).

Faults:

- A worker process that dies in the middle of a group (SIGKILL, the OOM killer, a segfault in native
  code) is replaced and its group is retried, up to ``[run] max_retries`` times; each cell's result
  records how many attempts it took. After the last attempt the group's cells are returned as
  ``failed``.
- A cell that raises is a ``failed`` result (:meth:`~noisegrid.worker.Worker.run_cell` catches
  it); it is not retried.
- Worker processes are fresh interpreters, not forks: they inherit none of the driver's open files,
  so the store's single-writer lock dies with the driver even if a worker outlives it for a moment,
  and each worker exits on its own within a second of the driver's death.
- Closing the iterator (``--fail-fast``, Ctrl-C) stops the workers; they ignore SIGINT themselves,
  so a Ctrl-C in the terminal reaches the driver alone and is handled there.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus
    from ..grid import Cell, SiblingGroup
    from ..records import CellResult


class _HasTrainSize(Protocol):
    @property
    def train_size(self) -> int: ...


_Sized = TypeVar("_Sized", bound=_HasTrainSize)

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "RAYON_NUM_THREADS",
)
"""Environment variables that cap the thread pools of numerical libraries loaded later."""

PARENT_POLL_S = 0.5
"""How often a worker checks that the driver is still alive."""

STOP_GRACE_S = 5.0
"""How long a stopping worker gets before it is killed."""


def n_cores() -> int:
    """CPU cores this process may use (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_worker(n_workers: int, *, cores: int | None = None) -> int:
    """Threads each of ``n_workers`` processes may use so that together they fit the cores.

    Examples
    --------
    >>> threads_per_worker(2, cores=8), threads_per_worker(3, cores=8)
    (4, 2)
    >>> threads_per_worker(4, cores=2)
    1
    """
    cores = n_cores() if cores is None else cores
    return max(1, cores // max(1, n_workers))


def limit_threads(n_threads: int) -> Any:
    """Cap this process's numerical thread pools (BLAS, OpenMP, torch, tokenizers) at ``n_threads``.

    Libraries already loaded are capped through threadpoolctl (and torch's own setting); libraries
    loaded later read the environment variables set here. Returns threadpoolctl's limiter, whose
    ``restore_original_limits()`` undoes the cap for the libraries already loaded.
    """
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n_threads)
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=n_threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n_threads)
    return limiter


def largest_first(cells: Sequence[_Sized]) -> list[_Sized]:
    """Cells or sibling groups ordered by training size, largest first (otherwise as given).

    Cost grows with the training size, so parallel executors start the expensive work first and
    the cheap work fills the gaps at the end: the grid finishes sooner than in grid order, where
    the largest cells would start last and run alone.

    Examples
    --------
    >>> from noisegrid.grid import Cell
    >>> cells = [Cell(0, 10, 0.0), Cell(0, 30, 0.0), Cell(0, 20, 0.1)]
    >>> [c.train_size for c in largest_first(cells)]
    [30, 20, 10]
    """
    return sorted(cells, key=lambda cell: -cell.train_size)


def describe_exit(exitcode: int | None) -> str:
    """A process exit code in words: ``killed by SIGKILL``, ``exit code 1``."""
    if exitcode is None:
        return "unknown exit status"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass
class Attempt:
    """A sibling group and the attempt (1-based) it is on."""

    group: SiblingGroup
    number: int = 1
    deaths: list[str] = field(default_factory=list)

    @property
    def train_size(self) -> int:
        return self.group.train_size


def worker_died_results(spec: ExperimentSpec, attempt: Attempt) -> list[CellResult]:
    """The ``failed`` results of a group whose worker died on every allowed attempt."""
    from ..records import CellResult, now

    how = "; ".join(attempt.deaths)
    error = (
        f"the worker running this cell died on all {len(attempt.deaths)} attempt(s) ({how}); "
        "raise [run] max_retries if workers can die for reasons unrelated to the cell, or "
        "check memory use (a worker killed by SIGKILL is often the out-of-memory killer)"
    )[:500]
    return [
        CellResult(
            cell=cell,
            status="failed",
            noise_model=spec.grid.noise_models[0],
            error=error,
            attempts=len(attempt.deaths),
            finished_at=now(),
        )
        for cell in attempt.group.cells
    ]


def queue_groups(spec: ExperimentSpec, cells: Sequence[Cell], *, n_workers: int) -> deque[Attempt]:
    """The work queue of a parallel executor: sibling groups, largest first, one attempt each.

    Groups (:func:`~noisegrid.worker.plan_groups`) are split, never merged, until every one of
    ``n_workers`` workers has one, so a grid of few large groups still uses every worker.
    """
    from ..grid import split_groups
    from ..worker import plan_groups

    groups = split_groups(plan_groups(spec, cells), at_least=n_workers)
    return deque(Attempt(group) for group in largest_first(groups))


# -- the worker process ------------------------------------------------------------------------


def worker_main(fd: int, payload_fd: int, n_threads: int, parent_pid: int) -> None:
    """Entry point of a worker process: build the Worker once, then run cells until told to stop.

    The driver starts it as ``python -c "...; worker_main(...)"``: ``fd`` is its end of a socket
    pair to the driver, ``payload_fd`` an unlinked file holding the pickled (spec, corpus).
    """
    # Ctrl-C in a terminal signals the whole process group; the driver decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent_pid)
    limit_threads(n_threads)
    from ..worker import Worker

    conn = Connection(fd)
    try:
        spec, corpus = pickle.loads(_read_all(payload_fd))
        worker = Worker(spec, corpus=corpus)
    except Exception as exc:
        conn.send(("setup_failed", _portable(exc), traceback.format_exc()))
        return
    while True:
        try:
            group = conn.recv()
        except (EOFError, OSError):
            return
        if group is None:
            return
        results = worker.run_group(group)
        try:
            conn.send(("results", results))
        except OSError:
            return


def _read_all(fd: int) -> bytes:
    """The whole content of a file shared with other workers (positional reads, then closed)."""
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 26), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    os.close(fd)
    return b"".join(chunks)


def _exit_with_parent(parent_pid: int) -> None:
    """Exit this process soon after the driver dies, even in the middle of a cell."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="noisegrid-parent-watch", daemon=True).start()


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


# -- the driver side ---------------------------------------------------------------------------


@dataclass
class _Slot:
    process: subprocess.Popen[bytes]
    conn: Connection
    attempt: Attempt | None = None
    gpu: str | None = None
    """The GPU this worker sees alone (``CUDA_VISIBLE_DEVICES``), or None: the driver's view."""


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (their
    indices when it is unset); empty without torch or a GPU. Counting does not create a CUDA
    context in the driver."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is an optional dependency
        return []
    if not torch.cuda.is_available():
        return []
    n = torch.cuda.device_count()
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named:
        return [d.strip() for d in named.split(",") if d.strip()][:n]
    return [str(i) for i in range(n)]


def start_worker(payload_fd: int, *, n_threads: int, gpu: str | None = None) -> _Slot:
    """Start one worker process; it reads the pickled (spec, corpus) from ``payload_fd``.

    Workers are fresh interpreters (not forks, and not ``multiprocessing`` children): they inherit
    none of the driver's open files (the store and its lock) and never re-run the driver's
    ``__main__`` module, so scripts need no ``if __name__ == "__main__"`` guard. The payload is
    read from an unlinked temporary file, so starting a worker never blocks the driver and nothing
    is left on disk if the driver is killed.
    """
    ours, theirs = socket.socketpair()
    env = dict(os.environ)
    env.update({var: str(n_threads) for var in THREAD_ENV_VARS})
    if gpu is not None:  # this worker's own GPU: it sees it as cuda:0
        env["CUDA_VISIBLE_DEVICES"] = gpu
    # The worker imports noisegrid from wherever the driver did.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    code = (
        "from noisegrid.executors._pool import worker_main; "
        f"worker_main({theirs.fileno()}, {payload_fd}, {n_threads}, {os.getpid()})"
    )
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=(theirs.fileno(), payload_fd),
            env=env,
            close_fds=True,
        )
    finally:
        theirs.close()
    return _Slot(process=process, conn=Connection(ours.detach()), gpu=gpu)


def run_in_processes(
    spec: ExperimentSpec,
    cells: Sequence[Cell],
    *,
    corpus: Corpus,
    n_workers: int,
    max_retries: int,
    n_threads: int | None = None,
    gpus: Sequence[str] | None = None,
) -> Iterator[CellResult]:
    """Run ``cells`` in ``n_workers`` worker processes; yield results in completion order.

    Parameters
    ----------
    spec : ExperimentSpec
        A one-noise-model spec (a variant).
    cells : sequence of Cell
    corpus : Corpus
        Sent to each worker once, when it starts.
    n_workers : int
        Worker processes (no more are started than there are cells).
    max_retries : int
        How many times a cell is retried after its worker died while running it.
    n_threads : int, optional
        Threads per worker; default: the cores divided among the workers.
    gpus : sequence of str, optional
        One GPU per worker (``CUDA_VISIBLE_DEVICES`` names): worker i sees ``gpus[i]`` alone,
        and a worker that replaces a dead one gets its GPU.

    Yields
    ------
    CellResult
        ``attempts`` says on which attempt the cell finished.

    Raises
    ------
    Exception
        Whatever building the :class:`~noisegrid.worker.Worker` raised in a worker process (the
        same error the in-process executor raises), with the worker's traceback as a note.
    """
    if not cells:
        return
    queue = queue_groups(spec, cells, n_workers=n_workers)
    n_workers = max(1, min(n_workers, len(queue)))
    n_threads = threads_per_worker(n_workers) if n_threads is None else n_threads
    slots: list[_Slot] = []
    with tempfile.TemporaryFile(prefix="noisegrid-worker-") as shared:
        pickle.dump((spec, corpus), shared, protocol=pickle.HIGHEST_PROTOCOL)
        shared.flush()
        try:
            yield from _drive(
                spec, queue, slots, shared.fileno(), n_workers, n_threads, max_retries, gpus
            )
        finally:
            for slot in slots:
                _stop(slot)


def _drive(
    spec: ExperimentSpec,
    queue: deque[Attempt],
    slots: list[_Slot],
    payload_fd: int,
    n_workers: int,
    n_threads: int,
    max_retries: int,
    gpus: Sequence[str] | None = None,
) -> Iterator[CellResult]:
    """The driver loop: keep every worker busy, yield each result, replace dead workers."""
    slots.extend(
        start_worker(payload_fd, n_threads=n_threads, gpu=gpus[i] if gpus else None)
        for i in range(n_workers)
    )
    _dispatch(slots, queue)
    while any(s.attempt is not None for s in slots):
        busy = [s for s in slots if s.attempt is not None]
        ready = wait([s.conn for s in busy], timeout=PARENT_POLL_S * 2)
        finished: list[CellResult] = []
        for slot in busy:
            attempt = slot.attempt
            if attempt is None:
                continue
            if slot.conn in ready:
                message = _receive(slot)
            elif slot.process.poll() is not None:
                message = None
            else:
                continue
            if message is not None and message[0] == "results":
                results: list[CellResult] = message[1]
                for result in results:
                    result.attempts = attempt.number
                finished.extend(results)
                slot.attempt = None
                continue
            if message is not None and message[0] == "setup_failed":
                error: BaseException = message[1]
                error.add_note(f"raised while a worker process set up:\n{message[2]}")
                raise error
            # The worker died with the group in flight: retry the group on a fresh worker.
            attempt.deaths.append(describe_exit(_wait_exit(slot.process)))
            slot.attempt = None
            _stop(slot)
            slots.remove(slot)
            if len(attempt.deaths) > max_retries:
                finished.extend(worker_died_results(spec, attempt))
            else:
                attempt.number += 1
                queue.appendleft(attempt)
            if queue:
                slots.append(start_worker(payload_fd, n_threads=n_threads, gpu=slot.gpu))
        # Idle workers get their next cell before the driver stores these results.
        _dispatch(slots, queue)
        yield from finished


def _dispatch(slots: list[_Slot], queue: deque[Attempt]) -> None:
    """Send the next queued group to every idle worker."""
    for slot in slots:
        if slot.attempt is None and queue:
            slot.attempt = queue.popleft()
            # A worker that died while idle fails this send; the loop then sees it gone and the
            # group is retried like any group whose worker died.
            with contextlib.suppress(OSError):
                slot.conn.send(slot.attempt.group)


def _receive(slot: _Slot) -> tuple[Any, ...] | None:
    """The worker's message, or None when the worker is gone."""
    try:
        message: tuple[Any, ...] = slot.conn.recv()
    except (EOFError, OSError):
        return None
    return message


def _wait_exit(process: subprocess.Popen[bytes]) -> int | None:
    try:
        return process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        return None


def _stop(slot: _Slot) -> None:
    """Stop one worker: ask an idle one to exit, terminate a busy one, kill it if it lingers."""
    process = slot.process
    if process.poll() is None:
        if slot.attempt is None:
            with contextlib.suppress(OSError):
                slot.conn.send(None)
        else:
            process.terminate()
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_GRACE_S)
    slot.conn.close()


__all__ = [
    "Attempt",
    "describe_exit",
    "largest_first",
    "limit_threads",
    "n_cores",
    "queue_groups",
    "run_in_processes",
    "start_worker",
    "threads_per_worker",
    "worker_died_results",
    "worker_main",
]
