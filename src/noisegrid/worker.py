"""Running one cell or one sibling group: the fixed per-cell sequence.

Per sibling group (the noise rates of one size and seed), always in this order
(:meth:`Worker.run_group`):

1. subsample the training split once (class-balanced, nested across sizes);
2. inject noise: one flip plan, one labeling per noise rate (exact counts, nested across rates;
   clean labels kept);
3. ``backend.fit_group`` on the shared texts and every labeling (``backend.fit`` per cell with
   ``[run] stack = 1``);
4. evaluate every member on the seed's test sample → one :class:`~noisegrid.records.CellResult`
   per cell.

A worker lives in whichever process an executor chooses; the driver (:mod:`noisegrid.runner`)
only receives its results.
"""

from __future__ import annotations

import socket
import time
import traceback as tb
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .backends import Backend, FitOutput, get_backend_class, make_backend
from .config import ExperimentSpec
from .data import Corpus, load_corpus, resolve_test_size, texts_at
from .errors import BackendError
from .evaluation import draw_test_sample, score
from .grid import Cell, SiblingGroup, group_cells
from .noise import NoiseModel, NoisyLabels, apply_plan, make_noise_model
from .records import CellResult, now
from .sampling import subsample_per_class

__all__ = ["Worker", "default_cache_dir", "plan_groups"]


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
            finished_at=now(),
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
            finished_at=now(),
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
