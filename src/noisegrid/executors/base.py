"""The executor interface: run cells somewhere, yield their results back to the driver."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus
    from ..grid import Cell
    from ..records import CellResult


class Executor(ABC):
    """Runs cells and yields each :class:`~noisegrid.records.CellResult` as soon as it is ready.

    Executors never write the store; the driver does. A cell that raises comes back as a
    ``failed`` result, not as an exception. Closing the returned iterator (the driver does so on
    ``--fail-fast`` or Ctrl-C) must stop outstanding work.
    """

    name: ClassVar[str]
    extra: ClassVar[str | None] = None

    @classmethod
    def check(cls, spec: ExperimentSpec) -> None:
        """Cheap checks before any work (dependencies installed, options consistent)."""

    @abstractmethod
    def run(
        self, spec: ExperimentSpec, cells: Sequence[Cell], *, corpus: Corpus
    ) -> Iterator[CellResult]:
        """Run ``cells``; yield results in completion order."""
