"""The SQLite results store: one row per cell, written only by the driver.

- Unique on (fingerprint, train_size, noise_rate, seed); a ``done`` row is never overwritten.
- Each cell is written in its own transaction (WAL journal), so killing the driver at any moment
  loses at most the cells in flight, and a re-run resumes with what is missing.
- One writer at a time: :meth:`ResultStore.acquire_writer` takes an exclusive ``flock`` on
  ``<store>.lock``. A second ``noisegrid run`` on the same store refuses with a message naming the
  process that holds it. The kernel releases the lock when the holder dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import StoreError

if TYPE_CHECKING:
    from .config import ExperimentSpec
    from .runner import CellResult

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    fingerprint TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    noisegrid_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    fingerprint TEXT NOT NULL,
    train_size INTEGER NOT NULL,
    noise_rate REAL NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    noise_model TEXT NOT NULL,
    realized_noise REAL,
    n_flipped INTEGER,
    accuracy REAL,
    macro_f1 REAL,
    log_loss REAL,
    test_size INTEGER,
    fit_seconds REAL,
    predict_seconds REAL,
    info TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '',
    traceback TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 1,
    finished_at TEXT NOT NULL,
    UNIQUE (fingerprint, train_size, noise_rate, seed)
);
"""

CellKey = tuple[int, float, int]


class ResultStore:
    """Results of any number of experiments in one SQLite file.

    Parameters
    ----------
    path : str or Path
        Database file; created (with its folder) on first write.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # -- connection ---------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"{self.path} is not a noisegrid results store ({exc}); choose another --store"
                ) from None
            (version,) = conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            if int(version) != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has store schema {version}, this noisegrid reads "
                    f"{SCHEMA_VERSION}; "
                    "use a new --store path"
                )
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.release_writer()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the single-writer lock -------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def acquire_writer(self) -> None:
        """Become the store's only writer, or raise :class:`StoreError` naming the holder."""
        if self._lock_fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(
                f"another noisegrid run ({holder}) is writing to {self.path}; wait for it to "
                "finish, or use a different --store"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._lock_fd = fd

    def release_writer(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    @contextlib.contextmanager
    def writer(self) -> Iterator[ResultStore]:
        """Context manager holding the writer lock."""
        self.acquire_writer()
        try:
            yield self
        finally:
            self.release_writer()

    # -- writes (driver only) ---------------------------------------------------------------------
    def register_experiment(self, spec: ExperimentSpec) -> None:
        from ._version import __version__

        self._require_writer()
        self.conn.execute(
            "INSERT OR IGNORE INTO experiments VALUES (?, ?, ?, ?)",
            (spec.fingerprint(), json.dumps(spec.to_dict()), _now(), __version__),
        )

    def write(self, fingerprint: str, result: CellResult) -> None:
        """Store one cell in its own transaction. A ``done`` row is never replaced."""
        self._require_writer()
        size, rate, seed = result.cell.key
        row: dict[str, Any] = {
            "fingerprint": fingerprint,
            "train_size": size,
            "noise_rate": rate,
            "seed": seed,
            "status": result.status,
            "noise_model": result.noise_model,
            "realized_noise": result.realized_noise,
            "n_flipped": result.n_flipped,
            "accuracy": result.metrics.get("accuracy"),
            "macro_f1": result.metrics.get("macro_f1"),
            "log_loss": result.metrics.get("log_loss"),
            "test_size": result.test_size,
            "fit_seconds": result.fit_seconds,
            "predict_seconds": result.predict_seconds,
            "info": json.dumps(result.info, default=str, sort_keys=True),
            "error": result.error,
            "traceback": result.traceback,
            "host": result.host,
            "attempts": result.attempts,
            "finished_at": result.finished_at or _now(),
        }
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in row if c not in _KEY_COLUMNS)
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO cells ({cols}) VALUES ({marks}) "
                f"ON CONFLICT (fingerprint, train_size, noise_rate, seed) DO UPDATE SET {updates} "
                "WHERE cells.status != 'done'",
                tuple(row.values()),
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _require_writer(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError("only the driver holding the writer lock may write the store")

    # -- reads ----------------------------------------------------------------------------------
    def statuses(self, fingerprint: str) -> dict[CellKey, str]:
        """Stored status of every cell of one experiment, keyed by (size, noise_rate, seed)."""
        if not self.exists():
            return {}
        rows = self.conn.execute(
            "SELECT train_size, noise_rate, seed, status FROM cells WHERE fingerprint = ?",
            (fingerprint,),
        )
        return {(int(s), float(r), int(d)): st for s, r, d, st in rows}

    def frame(self, fingerprint: str) -> pd.DataFrame:
        """All stored rows of one experiment (raw store columns)."""
        if not self.exists():
            return pd.DataFrame(columns=_ROW_COLUMNS)
        return pd.read_sql_query(
            "SELECT * FROM cells WHERE fingerprint = ? ORDER BY seed, train_size, noise_rate",
            self.conn,
            params=(fingerprint,),
        )

    def spec_json(self, fingerprint: str) -> dict[str, Any] | None:
        if not self.exists():
            return None
        row = self.conn.execute(
            "SELECT spec_json FROM experiments WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def integrity_ok(self) -> bool:
        """SQLite's own ``PRAGMA integrity_check``."""
        (answer,) = self.conn.execute("PRAGMA integrity_check").fetchone()
        return bool(answer == "ok")


_KEY_COLUMNS = {"fingerprint", "train_size", "noise_rate", "seed"}
_ROW_COLUMNS = [
    "fingerprint", "train_size", "noise_rate", "seed", "status", "noise_model", "realized_noise",
    "n_flipped", "accuracy", "macro_f1", "log_loss", "test_size", "fit_seconds", "predict_seconds",
    "info", "error", "traceback", "host", "attempts", "finished_at",
]  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
