"""The driver: validation before work, per-cell sequence, resume, failures, fail-fast."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from noisegrid import DataError, ResultStore, Worker, load_results, load_spec, run_experiment
from noisegrid.backends import BACKENDS, FitOutput, Predictor
from noisegrid.backends.base import Backend, BackendOptions
from noisegrid.grid import Cell, expand_grid
from noisegrid.results import resolve_spec


class _Options(BackendOptions):
    fail_size: int = -1


class _Majority(Predictor):
    def __init__(self, label: int, k: int) -> None:
        self.label, self.k = label, k

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), self.k), 0.1 / max(self.k - 1, 1))
        out[:, self.label] = 0.9
        return out / out.sum(axis=1, keepdims=True)


@BACKENDS.register("majority_test", hidden=True)
class _MajorityBackend(Backend):
    """Predicts the majority training label; raises for cells of size ``fail_size``."""

    Options = _Options
    calls: ClassVar[list[int]] = []

    def fit(self, texts: Sequence[str], labels: np.ndarray, *, seed: int) -> FitOutput:
        type(self).calls.append(len(texts))
        if len(texts) == self.options.fail_size:  # type: ignore[attr-defined]
            raise ValueError(f"cannot fit {len(texts)} examples")
        label = int(np.bincount(labels).argmax())
        return FitOutput(_Majority(label, self.context.n_classes), info={"seed": seed})


def test_runs_the_grid_and_stores_every_cell(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(make_dataset(), seeds="[0, 1]")
    spec = load_spec(cfg)
    summary = run_experiment(spec)
    assert (summary.n_done, summary.n_failed, summary.n_skipped) == (8, 0, 0)
    table = load_results(cfg)
    assert len(table) == 8
    assert set(table["status"]) == {"done"}
    assert (table["realized_noise"] == table["noise_level"]).all()
    assert table["eval_accuracy"].between(0, 1).all()
    # The synthetic classes are learnable: clean cells beat chance clearly.
    assert table.loc[table["noise_level"] == 0, "eval_accuracy"].min() > 0.7
    with ResultStore(spec.run.store) as store:
        assert store.integrity_ok()


def test_rerun_skips_done_cells(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(make_dataset(), backend='name = "majority_test"')
    run_experiment(load_spec(cfg))
    _MajorityBackend.calls.clear()
    summary = run_experiment(load_spec(cfg))
    assert summary.n_skipped == 4 and summary.n_done == 0
    assert _MajorityBackend.calls == []
    # Growing the grid runs only the new cells.
    summary = run_experiment(load_spec(cfg, overrides=["grid.sizes=[20, 40, 60]"]))
    assert (summary.n_done, summary.n_skipped) == (2, 4)
    assert _MajorityBackend.calls == [60, 60]


def test_failed_cell_is_stored_and_the_grid_goes_on(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(make_dataset(), backend='name = "majority_test"\nfail_size = 20')
    summary = run_experiment(load_spec(cfg))
    assert (summary.n_done, summary.n_failed) == (2, 2)
    table = load_results(cfg)
    failed = table[table["status"] == "failed"]
    assert set(failed["train_size"]) == {20}
    assert failed["error"].str.contains("ValueError: cannot fit 20 examples").all()
    assert failed["eval_accuracy"].isna().all()
    with ResultStore(load_spec(cfg).run.store) as store:
        # The fingerprint the run stored under: the spec with its data identity resolved.
        tracebacks = store.frame(resolve_spec(cfg).fingerprint())["traceback"]
    assert tracebacks.str.contains("Traceback").sum() == 2

    # Failed cells are skipped on a plain re-run and re-run with retry_failed.
    _MajorityBackend.calls.clear()
    assert run_experiment(load_spec(cfg)).n_skipped == 4
    fixed = load_spec(cfg, overrides=["backend.fail_size=-1"])
    assert fixed.fingerprint() != load_spec(cfg).fingerprint()  # options are part of results
    retried = run_experiment(load_spec(cfg), retry_failed=True)
    assert retried.n_failed == 2 and _MajorityBackend.calls == [20, 20]


def test_fail_fast_stops_at_the_first_failure(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(make_dataset(), backend='name = "majority_test"\nfail_size = 20')
    summary = run_experiment(load_spec(cfg), fail_fast=True)
    assert summary.stopped_early
    assert (summary.n_done, summary.n_failed, summary.n_pending) == (0, 1, 3)


def test_bad_grid_never_creates_the_store(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(make_dataset(), sizes="[2000]")
    with pytest.raises(DataError, match="larger than class-balanced sampling"):
        run_experiment(load_spec(cfg))
    assert not (tmp_path / "results.sqlite").exists()
    assert not (tmp_path / "results.sqlite.lock").exists()


def test_cell_is_reproducible_on_its_own(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    spec = load_spec(write_config(make_dataset(), seeds="[0, 1]"))
    cell = Cell(seed=1, train_size=40, noise_rate=0.1)
    a = Worker(spec).run_cell(cell)
    b = Worker(spec).run_cell(cell)
    assert a.ok and a.metrics == b.metrics and a.n_flipped == 4
    other = Worker(spec).run_cell(Cell(seed=0, train_size=40, noise_rate=0.1))
    assert other.info["flipped_per_class"] == [2, 2]


def test_test_sample_is_balanced_and_per_seed(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    spec = load_spec(write_config(make_dataset(), seeds="[0, 1]"))
    worker = Worker(spec)
    rows0, rows1 = worker.test_indices[0], worker.test_indices[1]
    assert np.bincount(worker.corpus.test.labels[rows0]).tolist() == [10, 10]
    assert not np.array_equal(rows0, rows1)


def test_expand_grid_order_and_count(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    spec = load_spec(write_config(make_dataset(), seeds="[0, 1]"))
    cells = expand_grid(spec)
    assert len(cells) == spec.grid.n_cells == 8
    assert cells == sorted(cells)
    # Common random numbers: the training seed depends on (seed, size) only, not the noise rate.
    assert len({c.train_seed() for c in cells}) == 4
    assert len({(c.group_key, c.train_seed()) for c in cells}) == 4


@pytest.mark.slow
def test_real_small_grid_on_imdb(imdb_dir: Path, write_config: Callable[..., Path]) -> None:
    cfg = write_config(
        imdb_dir,
        sizes="[200, 1000]",
        rates="[0.0, 0.2]",
        test_size=1000,
        backend='name = "tfidf"',
    )
    summary = run_experiment(load_spec(cfg))
    assert summary.n_done == 4
    table = load_results(cfg).set_index(["train_size", "noise_level"])["eval_accuracy"]
    # Real signal: a TF-IDF model on 1,000 clean reviews is far above chance, and more data
    # or cleaner labels help.
    assert table[(1000, 0.0)] > 0.75
    assert table[(1000, 0.0)] > table[(200, 0.0)]
    assert table[(1000, 0.0)] > table[(1000, 0.2)]
