"""``local``: cells run in this process, one after another."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from . import EXECUTORS
from .base import Executor

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus
    from ..grid import Cell
    from ..runner import CellResult


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """In-process, sequential. The worker (corpus, backend, caches) is built once."""

    def run(
        self, spec: ExperimentSpec, cells: Sequence[Cell], *, corpus: Corpus
    ) -> Iterator[CellResult]:
        from ..runner import Worker

        worker = Worker(spec, corpus=corpus)
        for cell in cells:
            yield worker.run_cell(cell)
