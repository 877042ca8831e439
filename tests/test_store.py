"""The SQLite results store: one row per cell, single writer, done rows never replaced."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from noisegrid import Cell, ExperimentSpec, ResultStore, StoreError
from noisegrid.records import CellResult


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


def test_the_lock_follows_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real.sqlite"
    link = tmp_path / "link.sqlite"
    link.symlink_to(real)
    with ResultStore(real) as first, first.writer():
        first.write("fp", result(Cell(0, 10, 0.0)))
        with pytest.raises(StoreError, match=r"another noisegrid run .* is writing to .*link"):
            ResultStore(link).acquire_writer()
    assert ResultStore(link).statuses("fp") == {(10, 0.0, 0): "done"}


def test_a_writer_leaves_no_lock_file_and_no_empty_folder_behind(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "new" / "deeper" / "s.sqlite")
    with store.writer():
        assert store.lock_path.is_file()
    assert not (tmp_path / "new").exists()
    with ResultStore(tmp_path / "kept.sqlite") as kept, kept.writer():
        kept.write("fp", result(Cell(0, 10, 0.0)))
        assert kept.lock_path.is_file()
    assert sorted(os.listdir(tmp_path)) == ["kept.sqlite"]


def test_a_foreign_sqlite_file_is_refused_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "theirs.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE cells (id INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    pattern = r"is not a noisegrid results store: it is another SQLite database \(tables: cells\)"
    with ResultStore(path) as store, store.writer(), pytest.raises(StoreError, match=pattern):
        store.register_experiment(
            ExperimentSpec.from_dict(
                {"grid": {"sizes": [10], "noise_rates": [0.0]}, "backend": {"name": "tfidf"}}
            )
        )
    with pytest.raises(StoreError, match=pattern):
        ResultStore(path).statuses("fp")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["theirs.sqlite"]


def test_reading_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store, store.writer():
        store.write("fp", result(Cell(0, 10, 0.0)))
    before = path.read_bytes()
    with ResultStore(path) as reader:
        assert reader.statuses("fp") == {(10, 0.0, 0): "done"}
        assert len(reader.frame("fp")) == 1
        assert reader.integrity_ok()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["s.sqlite"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", r"the results store path is empty"),
        (".", r"'\.' is a folder, not a file \(an empty --store names the current folder\)"),
    ],
)
def test_store_path_must_name_a_file(path: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        ResultStore(path)


def test_store_path_through_a_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(StoreError, match=r"data.csv is a file, not a folder"):
        ResultStore(tmp_path / "data.csv" / "s.sqlite")


def test_experiments_lists_every_fingerprint_with_its_spec_and_cells(tmp_path: Path) -> None:
    spec = ExperimentSpec.from_dict(
        {"grid": {"sizes": [10], "noise_rates": [0.0]}, "backend": {"name": "tfidf"}}
    ).with_data_identity("sha256:0123456789abcdef")
    with ResultStore(tmp_path / "s.sqlite") as store, store.writer():
        store.register_experiment(spec)
        store.write(spec.fingerprint(), result(Cell(0, 10, 0.0)))
        store.write(spec.fingerprint(), result(Cell(1, 10, 0.0)))
        store.write("unregistered", result(Cell(0, 10, 0.0)))
        listed = store.experiments()
    recorded, n_cells = listed[spec.fingerprint()]
    assert n_cells == 2 and recorded is not None
    assert recorded["data_identity"] == "sha256:0123456789abcdef"
    assert listed["unregistered"] == (None, 1)


def test_experiment_spec_is_recorded(tmp_path: Path) -> None:
    spec = ExperimentSpec.from_dict(
        {"grid": {"sizes": [10], "noise_rates": [0.0]}, "backend": {"name": "tfidf"}}
    )
    with ResultStore(tmp_path / "s.sqlite") as store, store.writer():
        store.register_experiment(spec)
        store.register_experiment(spec)
        assert store.spec_json(spec.fingerprint()) == spec.to_dict()
