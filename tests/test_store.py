"""The SQLite results store: one row per cell, single writer, done rows never replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from noisegrid import Cell, ExperimentSpec, ResultStore, StoreError
from noisegrid.runner import CellResult


def result(cell: Cell, status: str = "done", acc: float = 0.8) -> CellResult:
    return CellResult(
        cell=cell,
        status=status,
        noise_model="uniform",
        metrics={"accuracy": acc, "macro_f1": acc, "log_loss": 0.5} if status == "done" else {},
        error="" if status == "done" else "ValueError: boom",
        traceback="" if status == "done" else "Traceback ...",
    )


def test_write_read_and_unique_key(tmp_path: Path) -> None:
    cell = Cell(seed=0, train_size=100, noise_rate=0.1)
    with ResultStore(tmp_path / "s.sqlite") as store, store.writer():
        store.write("fp", result(cell, "failed"))
        assert store.statuses("fp") == {(100, 0.1, 0): "failed"}
        store.write("fp", result(cell, "done", 0.8))
        store.write("fp", result(cell, "done", 0.1))  # a done row is never replaced
        frame = store.frame("fp")
        assert len(frame) == 1
        assert frame.loc[0, "accuracy"] == 0.8
        assert frame.loc[0, "error"] == ""
        assert store.integrity_ok()


def test_failed_row_keeps_error_and_traceback(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store, store.writer():
        store.write("fp", result(Cell(0, 10, 0.0), "failed"))
        row = store.frame("fp").iloc[0]
        assert row["status"] == "failed"
        assert row["error"] == "ValueError: boom"
        assert row["traceback"].startswith("Traceback")


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    pattern = r"another noisegrid run \(pid \d+ .*\) is writing to"
    with ResultStore(path) as first, first.writer(), pytest.raises(StoreError, match=pattern):
        ResultStore(path).acquire_writer()
    with ResultStore(path) as again, again.writer():  # released on exit
        pass


def test_only_the_writer_may_write(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s.sqlite")
    with pytest.raises(RuntimeError, match="writer lock"):
        store.write("fp", result(Cell(0, 10, 0.0)))
    store.close()


def test_reads_never_create_a_store(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "none.sqlite")
    assert store.statuses("fp") == {}
    assert store.frame("fp").empty
    assert not (tmp_path / "none.sqlite").exists()


def test_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="is not a noisegrid results store"):
        _ = ResultStore(path).conn


def test_experiment_spec_is_recorded(tmp_path: Path) -> None:
    spec = ExperimentSpec.from_dict(
        {"grid": {"sizes": [10], "noise_rates": [0.0]}, "backend": {"name": "tfidf"}}
    )
    with ResultStore(tmp_path / "s.sqlite") as store, store.writer():
        store.register_experiment(spec)
        store.register_experiment(spec)
        assert store.spec_json(spec.fingerprint()) == spec.to_dict()
