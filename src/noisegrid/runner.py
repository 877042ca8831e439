"""Running an experiment: the driver loop.

The driver (:func:`run_experiment`) validates everything before any work, hands pending cells to an
executor (which runs them with :class:`~noisegrid.worker.Worker`, the fixed per-cell sequence),
and is the only writer of the store: it stores each result the moment it arrives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .backends import get_backend_class
from .config import ExperimentSpec
from .data import Corpus, check_corpus, describe_corpus, load_corpus, resolve_data_identity
from .executors.base import Executor
from .grid import Cell, expand_grid
from .noise import make_noise_model
from .records import CellResult
from .store import ResultStore
from .worker import default_cache_dir

log = logging.getLogger("noisegrid")


@dataclass
class RunSummary:
    """What :func:`run_experiment` did."""

    fingerprint: str
    store: Path
    n_cells: int
    n_skipped: int
    n_done: int = 0
    n_failed: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    failures: list[CellResult] = field(default_factory=list)

    @property
    def n_pending(self) -> int:
        return self.n_cells - self.n_skipped - self.n_done - self.n_failed

    def describe(self) -> str:
        parts = [
            f"{self.n_done} cells done",
            f"{self.n_failed} failed",
            f"{self.n_skipped} already stored",
        ]
        if self.n_pending:
            parts.append(f"{self.n_pending} not run")
        return f"{', '.join(parts)} in {self.seconds:.1f}s; results in {self.store}"


ProgressCallback = Callable[[CellResult], None]


def prepare_run(spec: ExperimentSpec) -> Corpus:
    """Every check that can fail before expensive work: data, grid, noise models, backend.

    Returns the loaded corpus. Never touches the store.
    """
    get_backend_class(spec.backend.name).check(spec)
    corpus = load_corpus(spec.dataset)
    check_corpus(corpus, spec)
    for variant in spec.variants():
        make_noise_model(variant, n_classes=corpus.n_classes).check(corpus, variant)
    log.info("%s", describe_corpus(corpus))
    return corpus


def pending_cells(
    spec: ExperimentSpec, store: ResultStore, *, retry_failed: bool = False
) -> tuple[list[Cell], int]:
    """Cells of a one-noise-model spec still to run, and how many are skipped.

    Done cells are always skipped; failed cells too, unless ``retry_failed``.
    """
    statuses = store.statuses(spec.fingerprint())
    todo, skipped = [], 0
    for cell in expand_grid(spec):
        status = statuses.get(cell.key)
        if status == "done" or (status == "failed" and not retry_failed):
            skipped += 1
        else:
            todo.append(cell)
    return todo, skipped


def run_experiment(
    spec: ExperimentSpec,
    *,
    retry_failed: bool = False,
    fail_fast: bool = False,
    on_result: ProgressCallback | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Run every pending cell of ``spec`` and store each result as it arrives.

    A spec with several noise models runs the grid once per model (its variants).

    Parameters
    ----------
    spec : ExperimentSpec
    retry_failed : bool, default False
        Re-run cells stored as failed (done cells are never re-run).
    fail_fast : bool, default False
        Stop at the first failed cell (it is stored first).
    on_result : callable, optional
        Called with each :class:`CellResult` after it is stored (progress display).
    on_start : callable, optional
        Called with (n_pending, n_skipped) once the pending cells are known.

    Returns
    -------
    RunSummary

    Raises
    ------
    noisegrid.errors.NoisegridError
        The store is locked by another run (checked first), or invalid data or grid (before the
        store is created or touched), or the store cannot be written.
    """
    from .executors import make_executor

    t_start = time.perf_counter()
    # The lock first: a second run on the same store refuses at once, before loading any data.
    with ResultStore(spec.run.store) as store, store.writer():
        corpus = prepare_run(spec)
        spec = resolve_data_identity(spec, cache_dir=default_cache_dir(spec))
        executor = make_executor(spec)
        variants = spec.variants()
        work = []
        skipped = 0
        for variant in variants:
            store.register_experiment(variant)
            todo, n_skip = pending_cells(variant, store, retry_failed=retry_failed)
            work.append((variant, todo))
            skipped += n_skip
        summary = RunSummary(
            fingerprint=spec.fingerprint(),
            store=Path(spec.run.store),
            n_cells=spec.grid.n_cells_total,
            n_skipped=skipped,
        )
        if on_start is not None:
            on_start(sum(len(todo) for _, todo in work), skipped)
        for variant, todo in work:
            if not todo:
                continue
            if _run_variant(
                variant,
                todo,
                corpus,
                executor,
                store,
                summary,
                fail_fast=fail_fast,
                on_result=on_result,
            ):
                break
    summary.seconds = time.perf_counter() - t_start
    return summary


def _run_variant(
    spec: ExperimentSpec,
    todo: list[Cell],
    corpus: Corpus,
    executor: Executor,
    store: ResultStore,
    summary: RunSummary,
    *,
    fail_fast: bool,
    on_result: ProgressCallback | None,
) -> bool:
    """Run one variant's pending cells, storing each; return True if stopped early."""
    fingerprint = spec.fingerprint()
    results = executor.run(spec, todo, corpus=corpus)
    try:
        for result in results:
            store.write(fingerprint, result)
            if result.ok:
                summary.n_done += 1
            else:
                summary.n_failed += 1
                summary.failures.append(result)
                log.warning("cell %s failed: %s", result.cell.label(), result.error)
            if on_result is not None:
                on_result(result)
            if fail_fast and not result.ok:
                summary.stopped_early = True
                return True
    finally:
        _close(results)
    return False


def _close(results: Iterable[CellResult]) -> None:
    close = getattr(results, "close", None)
    if close is not None:
        close()


__all__ = [
    "RunSummary",
    "pending_cells",
    "prepare_run",
    "run_experiment",
]
