"""Running an experiment: the fixed per-cell sequence and the driver loop.

Per sibling group (the noise rates of one size and seed), always in this order
(:meth:`Worker.run_group`):

1. subsample the training split once (class-balanced, nested across sizes);
2. inject noise: one flip plan, one labeling per noise rate (exact counts, nested across rates;
   clean labels kept);
3. ``backend.fit_group`` on the shared texts and every labeling (``backend.fit`` per cell with
   ``[run] stack = 1``);
4. evaluate every member on the seed's test sample → one :class:`CellResult` per cell.

The driver (:func:`run_experiment`) validates everything before any work, hands pending cells to an
executor, and is the only writer of the store: it stores each result the moment it arrives.
"""

from __future__ import annotations

import logging
import socket
import time
import traceback as tb
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, FitOutput, get_backend_class, make_backend
from .config import ExperimentSpec
from .data import (
    Corpus,
    check_corpus,
    describe_corpus,
    load_corpus,
    resolve_data_identity,
    resolve_test_size,
    texts_at,
)
from .errors import BackendError
from .evaluation import draw_test_sample, score
from .executors.base import Executor
from .grid import Cell, SiblingGroup, expand_grid, group_cells
from .noise import NoiseModel, NoisyLabels, apply_plan, make_noise_model
from .sampling import subsample_per_class
from .store import ResultStore

log = logging.getLogger("noisegrid")


@dataclass
class CellResult:
    """The outcome of one cell, as a worker returns it to the driver."""

    cell: Cell
    status: str
    noise_model: str
    metrics: dict[str, float] = field(default_factory=dict)
    realized_noise: float | None = None
    n_flipped: int | None = None
    test_size: int | None = None
    fit_seconds: float | None = None
    predict_seconds: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    traceback: str = ""
    host: str = ""
    attempts: int = 1
    finished_at: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "done"


def default_cache_dir(spec: ExperimentSpec) -> Path:
    """``[run] cache_dir``, else ``$NOISEGRID_CACHE``, else ``~/.cache/noisegrid``."""
    return spec.run.cache_path()


class Worker:
    """Everything needed to run cells of one experiment, built once per worker process.

    Parameters
    ----------
    spec : ExperimentSpec
    corpus : Corpus, optional
        Already loaded corpus (the driver passes its own); loaded from the spec otherwise.
    """

    def __init__(self, spec: ExperimentSpec, *, corpus: Corpus | None = None) -> None:
        self.spec = spec
        self.corpus = corpus if corpus is not None else load_corpus(spec.dataset)
        k = self.corpus.n_classes
        self.noise_model: NoiseModel = make_noise_model(spec, n_classes=k)
        self.backend: Backend = make_backend(spec, n_classes=k, cache_dir=default_cache_dir(spec))
        seeds = spec.grid.seeds
        test_size = resolve_test_size(self.corpus, spec)
        self.test_indices = {s: draw_test_sample(self.corpus, test_size, seed=s) for s in seeds}
        self._prepared = False

    def prepare(self) -> None:
        """Heavy one-time work (noise-model reference models, backend caches)."""
        if self._prepared:
            return
        k, seeds = self.corpus.n_classes, self.spec.grid.seeds
        largest = max(self.spec.grid.sizes)
        train_rows = np.unique(
            np.concatenate(
                [
                    subsample_per_class(self.corpus.train.labels, largest, seed=s, n_classes=k)
                    for s in seeds
                ]
            )
        )
        test_rows = np.unique(np.concatenate(list(self.test_indices.values())))
        self.noise_model.prepare(
            self.corpus, seeds=seeds, train_size=largest, cache_dir=default_cache_dir(self.spec)
        )
        self.backend.prepare(self.corpus, train_indices=train_rows, test_indices=test_rows)
        self._prepared = True

    def run_cell(self, cell: Cell) -> CellResult:
        """Run one cell; an exception inside it becomes a ``failed`` result with its traceback."""
        return self.run_group(SiblingGroup(cell.seed, cell.train_size, (cell,)))[0]

    def run_group(self, group: SiblingGroup) -> list[CellResult]:
        """Run a sibling group; one result per cell, in the group's order.

        The subsample and the flip plan are drawn once for the group, and the backend fits every
        member's labeling together (:meth:`~noisegrid.backends.Backend.fit_group`) when it fits
        groups; otherwise, and with ``[run] stack = 1``, one cell at a time. An exception in a
        group fit fails every cell of the group with its traceback; on the per-cell path only the
        cell that raised fails.
        """
        try:
            self.prepare()
            return self._run_group(group)
        except Exception as exc:
            return [self._failed(cell, exc) for cell in group.cells]

    def _failed(self, cell: Cell, exc: Exception) -> CellResult:
        return CellResult(
            cell=cell,
            status="failed",
            noise_model=self.spec.grid.noise_model_name,
            error=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
            traceback=tb.format_exc(),
            host=socket.gethostname(),
            finished_at=_now(),
        )

    def _run_group(self, group: SiblingGroup) -> list[CellResult]:
        corpus, k = self.corpus, self.corpus.n_classes
        rows = subsample_per_class(
            corpus.train.labels, group.train_size, seed=group.seed, n_classes=k
        )
        clean = corpus.train.labels[rows]
        plan = self.noise_model.plan(clean, indices=rows, seed=group.seed)
        noisy = [apply_plan(clean, cell.noise_rate, plan) for cell in group.cells]
        texts = texts_at(corpus.train, rows)
        test_rows = self.test_indices[group.seed]
        test_texts = texts_at(corpus.test, test_rows)
        seed = group.train_seed()
        if self.spec.run.stack == 1 or len(group) == 1 or not self.backend.fits_groups:
            return [
                self._run_alone(cell, y, texts, test_texts, test_rows, clean, seed)
                for cell, y in zip(group.cells, noisy, strict=True)
            ]

        t0 = time.perf_counter()
        outputs = self.backend.fit_group(texts, [y.labels for y in noisy], seed=seed)
        group_fit = time.perf_counter() - t0
        if len(outputs) != len(group):
            raise BackendError(
                f"backend '{self.spec.backend.name}' returned {len(outputs)} fitted models for a "
                f"group of {len(group)} cells"
            )
        t0 = time.perf_counter()
        probas = self.backend.predict_group(outputs, test_texts)
        group_predict = time.perf_counter() - t0
        n = len(group)
        return [
            self._result(
                cell,
                y,
                output,
                proba,
                test_rows,
                clean,
                fit_seconds=group_fit / n,
                predict_seconds=group_predict / n,
                group_size=n,
                group_fit_seconds=group_fit,
            )
            for cell, y, output, proba in zip(group.cells, noisy, outputs, probas, strict=True)
        ]

    def _run_alone(
        self,
        cell: Cell,
        noisy: NoisyLabels,
        texts: list[str],
        test_texts: list[str],
        test_rows: np.ndarray,
        clean: np.ndarray,
        seed: int,
    ) -> CellResult:
        """The per-cell path: fit and predict this cell on its own."""
        try:
            t0 = time.perf_counter()
            output = self.backend.fit(texts, noisy.labels, seed=seed)
            fit_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            proba = output.predictor.predict_proba(test_texts)
            predict_seconds = time.perf_counter() - t0
        except Exception as exc:
            return self._failed(cell, exc)
        return self._result(
            cell,
            noisy,
            output,
            proba,
            test_rows,
            clean,
            fit_seconds=fit_seconds,
            predict_seconds=predict_seconds,
            group_size=1,
            group_fit_seconds=fit_seconds,
        )

    def _result(
        self,
        cell: Cell,
        noisy: NoisyLabels,
        output: FitOutput,
        proba: np.ndarray,
        test_rows: np.ndarray,
        clean: np.ndarray,
        *,
        fit_seconds: float,
        predict_seconds: float,
        group_size: int,
        group_fit_seconds: float,
    ) -> CellResult:
        k = self.corpus.n_classes
        metrics = score(self.corpus.test.labels[test_rows], proba, n_classes=k)
        info = dict(output.info)
        info["flipped_per_class"] = np.bincount(clean[noisy.flipped], minlength=k).tolist()
        info["group_size"] = group_size
        info["group_fit_seconds"] = round(group_fit_seconds, 4)
        return CellResult(
            cell=cell,
            status="done",
            noise_model=self.spec.grid.noise_model_name,
            metrics=metrics,
            realized_noise=noisy.realized_rate,
            n_flipped=noisy.n_flipped,
            test_size=len(test_rows),
            fit_seconds=fit_seconds,
            predict_seconds=predict_seconds,
            info=info,
            host=socket.gethostname(),
            finished_at=_now(),
        )


def plan_groups(spec: ExperimentSpec, cells: Iterable[Cell]) -> list[SiblingGroup]:
    """The units of work for ``cells``: sibling groups, or single cells where groups do not pay.

    Cells sharing a (seed, train_size) form one group when the spec's backend fits groups
    together (:attr:`~noisegrid.backends.Backend.fits_groups`); an integer ``[run] stack`` caps
    a group's size (a larger group is cut into consecutive chunks), and ``stack = 1`` or a backend
    that fits one cell at a time gives one group per cell, so a worker that dies costs one cell.
    """
    backend = get_backend_class(spec.backend.name)
    stack = spec.run.stack
    if stack == 1 or backend.fit_group is Backend.fit_group:
        return [SiblingGroup(c.seed, c.train_size, (c,)) for c in cells]
    groups = group_cells(cells)
    if not isinstance(stack, int):
        return groups
    return [
        SiblingGroup(g.seed, g.train_size, g.cells[i : i + stack])
        for g in groups
        for i in range(0, len(g), stack)
    ]


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = [
    "CellResult",
    "RunSummary",
    "Worker",
    "pending_cells",
    "plan_groups",
    "prepare_run",
    "run_experiment",
]
