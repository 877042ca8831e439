"""``local``: cells run on this machine, in this process or in ``[run] workers`` processes.

Cells run in sibling groups (the noise rates of one size and seed, see
:class:`~noisegrid.grid.SiblingGroup`). With ``workers = 1`` groups run one after another in the
driver's own process. With ``workers = N > 1`` they run in N worker processes (see
:mod:`noisegrid.executors._pool`): each builds its :class:`~noisegrid.worker.Worker` once, gets
``cores // N`` threads for its numerical libraries so the workers together do not oversubscribe
the cores, and a worker killed in the middle of a group is replaced and the group retried
(``[run] max_retries``). The driver stays the only writer of the store.

``workers = "auto"`` (the default, :func:`n_local_workers`) runs ``cores // threads_per_worker``
workers for a backend that declares how many threads it keeps busy (tfidf: one, so one worker per
core), one worker per visible GPU for a backend that trains on a GPU (finetune, embed) on a machine
with several (each worker pinned to its own GPU: it sees that one alone), and one in-process
worker for the others and for grids too small to pay for starting worker processes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from . import EXECUTORS
from ._pool import n_cores, run_in_processes, visible_gpus
from .base import Executor

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus
    from ..grid import Cell
    from ..records import CellResult

log = logging.getLogger("noisegrid")

AUTO_MIN_TRAIN_EXAMPLES = 20_000
"""``workers = "auto"`` starts worker processes only for grids whose pending cells train on at
least this many examples in all: starting a worker (a fresh interpreter that imports the
libraries and receives the corpus) takes a few seconds, which a tfidf grid of that size repays."""


def n_local_workers(
    spec: ExperimentSpec, cells: Sequence[Cell], *, gpus: Sequence[str] | None = None
) -> int:
    """How many local workers run ``cells``: ``[run] workers``, or what ``"auto"`` resolves to.

    ``gpus`` are the worker GPUs (:func:`worker_gpus`), when the caller has them already.

    Examples
    --------
    >>> from noisegrid.config import ExperimentSpec
    >>> from noisegrid.grid import expand_grid
    >>> spec = ExperimentSpec.from_dict({"grid": {"sizes": [100], "noise_rates": [0.0, 0.1]},
    ...     "backend": {"name": "tfidf"}})
    >>> n_local_workers(spec, expand_grid(spec))  # too little work for worker processes
    1
    """
    workers = spec.run.workers
    if isinstance(workers, int):
        return workers
    from ..backends import get_backend_class

    gpus = worker_gpus(spec) if gpus is None else gpus
    if gpus:
        return len(gpus)
    threads = get_backend_class(spec.backend.name).threads_per_worker
    if threads is None or sum(cell.train_size for cell in cells) < AUTO_MIN_TRAIN_EXAMPLES:
        return 1
    return max(1, n_cores() // threads)


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """This machine: in-process and sequential, or ``[run] workers`` parallel processes."""

    @classmethod
    def check(cls, spec: ExperimentSpec) -> None:
        workers, cores = spec.run.workers, n_cores()
        if isinstance(workers, int) and workers > cores:
            log.warning(
                "[run] workers = %d is more than the %d CPU cores available; the workers will "
                "compete for them (each gets one thread)",
                workers,
                cores,
            )

    def run(
        self, spec: ExperimentSpec, cells: Sequence[Cell], *, corpus: Corpus
    ) -> Iterator[CellResult]:
        """Run ``cells``; yield results in completion order."""
        gpus = worker_gpus(spec)
        n_workers = n_local_workers(spec, cells, gpus=gpus)
        if n_workers > 1:
            yield from run_in_processes(
                spec,
                cells,
                corpus=corpus,
                n_workers=n_workers,
                max_retries=spec.run.max_retries,
                # One GPU per worker, round robin.
                gpus=[gpus[i % len(gpus)] for i in range(n_workers)] if gpus else None,
            )
            return
        from ..worker import Worker, plan_groups

        worker = Worker(spec, corpus=corpus)
        for group in plan_groups(spec, cells):
            yield from worker.run_group(group)


def worker_gpus(spec: ExperimentSpec) -> list[str]:
    """The GPUs local workers pin themselves to, one each: the visible ones, for a backend that
    trains on a GPU on a machine with several; empty otherwise (every worker sees what the
    driver sees)."""
    from ..backends import get_backend_class

    if not get_backend_class(spec.backend.name).uses_gpu:
        return []
    gpus = visible_gpus()
    return gpus if len(gpus) > 1 else []
