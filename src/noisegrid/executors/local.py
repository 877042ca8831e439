"""``local``: cells run on this machine, in this process or in ``[run] workers`` processes.

Cells run in sibling groups (the noise rates of one size and seed, see
:class:`~noisegrid.grid.SiblingGroup`). With ``workers = 1`` (the default) groups run one after
another in the driver's own process. With ``workers = N > 1`` they run in N worker processes
(see :mod:`noisegrid.executors._pool`): each builds its :class:`~noisegrid.runner.Worker` once,
gets ``cores // N`` threads for its numerical libraries so the workers together do not
oversubscribe the cores, and a worker killed in the middle of a group is replaced and the group
retried (``[run] max_retries``). The driver stays the only writer of the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from . import EXECUTORS
from ._pool import n_cores, run_in_processes
from .base import Executor

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus
    from ..grid import Cell
    from ..runner import CellResult

log = logging.getLogger("noisegrid")


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """This machine: in-process and sequential, or ``[run] workers`` parallel processes."""

    @classmethod
    def check(cls, spec: ExperimentSpec) -> None:
        workers, cores = spec.run.workers, n_cores()
        if workers > cores:
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
        if spec.run.workers > 1:
            yield from run_in_processes(
                spec,
                cells,
                corpus=corpus,
                n_workers=spec.run.workers,
                max_retries=spec.run.max_retries,
            )
            return
        from ..runner import Worker, plan_groups

        worker = Worker(spec, corpus=corpus)
        for group in plan_groups(spec, cells):
            yield from worker.run_group(group)
