"""The SQLite results store: one row per cell, written only by the driver.

- Unique on (fingerprint, train_size, noise_rate, seed); a ``done`` row is never overwritten.
- Each cell is written in its own transaction (WAL journal), so killing the driver at any moment
  loses at most the cells in flight, and a re-run resumes with what is missing.
- One writer at a time: :meth:`ResultStore.acquire_writer` takes an exclusive ``flock`` on
  ``<store>.lock`` beside the store's real file (symlinks resolved, so two spellings of one store
  share one lock). A second ``noisegrid run`` on the same store refuses with a message naming the
  process that holds it. The kernel releases the lock when the holder dies, even by SIGKILL; a
  writer that ends normally also removes the lock file.
- One name per store: a store file with several hard links (``ln``, ``cp -al``) is refused by every
  command, the writer included once it holds the lock. SQLite keeps a journal per *name*, so two
  names of one file lose cells; and with a single name, symlinks resolved, the lock beside that
  name stands for the file's identity (device, inode), which is what it must protect.
- Only noisegrid stores are opened: a file that is not empty and not a noisegrid store (another
  program's SQLite database, any other file) is refused and never modified. Readers never write:
  a store on a read-only disk can still be read.
- Every SQLite or file-system failure (disk full, read-only disk, a damaged file) becomes a
  :class:`~noisegrid.errors.StoreError` naming the store, the cause and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import StoreError

if TYPE_CHECKING:
    from .config import ExperimentSpec
    from .records import CellResult

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

_NEARLY_FULL = 64 * 1024
"""Free bytes below which an SQLite I/O error is taken for a full disk."""


class ResultStore:
    """Results of any number of experiments in one SQLite file.

    Parameters
    ----------
    path : str or Path
        Database file; created (with its folder) on first write. A symlink is followed: the lock
        and the database are those of the file it points to.

    Raises
    ------
    StoreError
        The path is empty, a folder, or goes through a file.
    """

    def __init__(self, path: str | Path) -> None:
        if not str(path).strip():
            raise StoreError(
                "the results store path is empty; give a file such as runs/noisegrid.sqlite "
                "(--store or [run] store)"
            )
        self.path = Path(path)
        self.file = Path(os.path.realpath(self.path))
        """The store's real file (symlinks resolved): what is locked and opened."""
        _check_store_path(self.path, self.file)
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._made_dirs: list[Path] = []

    # -- connection ---------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.file.is_file()

    @property
    def conn(self) -> sqlite3.Connection:
        """The read-write connection; creates the store on first use."""
        if self._conn is None:
            self._conn = self._open_for_writing()
        return self._conn

    def _open_for_writing(self) -> sqlite3.Connection:
        self._make_parent()
        self._check_single_name()
        has_tables = False
        if self.exists() and self.file.stat().st_size > 0:
            # Inspect read-only first: a file that is not a noisegrid store is never modified.
            probe = self._connect_readonly()
            try:
                has_tables = self._inspect(probe)
            finally:
                probe.close()
        doing = "open" if has_tables else "create"
        conn = None
        try:
            conn = sqlite3.connect(self.file, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if not has_tables:
                # One transaction: a store is created whole or not at all.
                conn.executescript(
                    f"BEGIN IMMEDIATE; {_SCHEMA} "
                    "INSERT OR IGNORE INTO meta (key, value) "
                    f"VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
                )
        except sqlite3.Error as exc:
            if conn is not None:
                _close_quietly(conn)
            raise self._error(exc, doing) from None
        return conn

    def _read_conn(self) -> sqlite3.Connection | None:
        """A connection for reading, or None when nothing is stored (no file, an empty one)."""
        if self._conn is not None:
            return self._conn
        if self._reader is None:
            if not self.exists() or self.file.stat().st_size == 0:
                return None
            self._check_single_name()
            probe = self._connect_readonly()
            try:
                has_tables = self._inspect(probe)
            except BaseException:
                probe.close()
                raise
            if not has_tables:
                probe.close()
                return None
            if os.access(self.file.parent, os.W_OK):
                # A read-only connection leaves the WAL's side files behind; a plain one that
                # only reads removes them when it closes, leaving the folder as it found it.
                probe.close()
                try:
                    self._reader = sqlite3.connect(self.file, timeout=30.0, isolation_level=None)
                except sqlite3.Error as exc:
                    raise self._error(exc, "open") from None
            else:
                self._reader = probe
        return self._reader

    def _connect_readonly(self) -> sqlite3.Connection:
        """Open without write access; on a read-only disk, as an immutable file."""
        target = urllib.parse.quote(str(self.file))
        conn = None
        try:
            conn = sqlite3.connect(
                f"file:{target}?mode=ro", uri=True, timeout=30.0, isolation_level=None
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                _close_quietly(conn)
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_CANTOPEN" or os.access(
                self.file.parent, os.W_OK
            ):
                raise self._not_a_store(exc) from None
        # A WAL database on a read-only disk cannot get its shared-memory file; nobody can be
        # writing it there, so it is safe to read as immutable.
        try:
            conn = sqlite3.connect(
                f"file:{target}?immutable=1", uri=True, timeout=30.0, isolation_level=None
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise self._not_a_store(exc) from None
        return conn

    def _check_single_name(self) -> None:
        """Refuse a store file with several hard links: SQLite keeps one journal per name."""
        try:
            st = self.file.stat()
        except OSError:
            return
        if st.st_nlink > 1:
            raise StoreError(
                f"results store {self.path} has {st.st_nlink} hard links (other names for the "
                "same file, made by `ln` or `cp -al`); SQLite keeps one journal per name, so "
                "using two names loses cells — give it a name of its own: remove the other "
                f"links, or copy it (cp {self.path} {self.path}.copy && mv {self.path}.copy "
                f"{self.path})"
            )

    def _inspect(self, conn: sqlite3.Connection) -> bool:
        """True for a noisegrid store, False for an SQLite file without tables; else raise."""
        try:
            tables = {
                name
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if not tables:
                return False
            row = None
            if {"meta", "experiments", "cells"} <= tables:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as exc:
            raise self._not_a_store(exc) from None
        ours = {"meta", "experiments", "cells"}
        if row is None and (len(tables & ours) >= 2 or self._has_our_cells(conn, tables)):
            missing = [f"table {t}" for t in sorted(ours - tables)] or ["its schema version"]
            raise StoreError(
                f"{self.path} is a damaged noisegrid results store: it lacks "
                f"{', '.join(missing)}; noisegrid leaves it unchanged — recover what SQLite can "
                f"read with `sqlite3 {self.path} .recover | sqlite3 recovered.sqlite`, restore a "
                "backup, or use a new --store"
            )
        if row is None:
            raise StoreError(
                f"{self.path} is not a noisegrid results store: it is another SQLite database "
                f"(tables: {', '.join(sorted(tables))}); noisegrid leaves it unchanged — choose "
                "another --store"
            )
        if str(row[0]) != str(SCHEMA_VERSION):
            raise StoreError(
                f"{self.path} has store schema {row[0]}, this noisegrid reads {SCHEMA_VERSION}; "
                "use a new --store path"
            )
        return True

    @staticmethod
    def _has_our_cells(conn: sqlite3.Connection, tables: set[str]) -> bool:
        if "cells" not in tables:
            return False
        try:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
        except sqlite3.Error:
            return False
        return columns >= _KEY_COLUMNS

    def close(self) -> None:
        for conn in (self._conn, self._reader):
            if conn is not None:
                _close_quietly(conn)
        self._conn = self._reader = None
        self.release_writer()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the single-writer lock -------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        """``<store>.lock`` beside the store's real file."""
        return self.file.with_name(self.file.name + ".lock")

    def acquire_writer(self) -> None:
        """Become the store's only writer, or raise :class:`StoreError` naming the holder."""
        if self._lock_fd is not None:
            return
        self._make_parent()
        lock = self.lock_path
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                self._remove_made_dirs()
                raise self._os_error(exc, f"open the lock file {lock}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                os.close(fd)
                raise StoreError(
                    f"another noisegrid run ({holder or 'another process'}) is writing to "
                    f"{self.path}; wait for it to finish, or use a different --store"
                ) from None
            # A writer removes its lock file on release; if that happened between our open and
            # flock, we hold a lock on a removed file: take the new one.
            if _same_file(fd, lock):
                break
            os.close(fd)
        self._lock_fd = fd
        try:
            self._check_single_name()
        except StoreError:
            self.release_writer()
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        except OSError as exc:
            self.release_writer()
            raise self._os_error(exc, f"write the lock file {lock}") from None

    def release_writer(self) -> None:
        if self._lock_fd is None:
            return
        # The lock file lives only while a writer holds it (acquire_writer copes with a removal
        # racing its open); a store that was never created leaves no new folder behind either.
        with contextlib.suppress(OSError):
            os.unlink(self.lock_path)
        if not self.exists():
            self._remove_made_dirs()
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

    def _make_parent(self) -> None:
        parent = self.file.parent
        missing = []
        probe = parent
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._os_error(exc, f"create the folder {parent}") from None
        self._made_dirs = self._made_dirs or missing

    def _remove_made_dirs(self) -> None:
        for folder in self._made_dirs:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        self._made_dirs = []

    # -- writes (driver only) ---------------------------------------------------------------------
    def register_experiment(self, spec: ExperimentSpec) -> None:
        """Record the spec of a fingerprint (with its data identity) the first time it is seen."""
        from ._version import __version__

        self._require_writer()
        data = spec.to_dict()
        if spec.data_identity is not None:
            data["data_identity"] = spec.data_identity
        with self._translate("write"):
            self.conn.execute(
                "INSERT OR IGNORE INTO experiments VALUES (?, ?, ?, ?)",
                (spec.fingerprint(), json.dumps(data), _now(), __version__),
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
        with self._translate("store a cell in"), self._transaction() as conn:
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
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (a full disk); never mask the cause.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _require_writer(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError("only the driver holding the writer lock may write the store")

    # -- reads ----------------------------------------------------------------------------------
    def statuses(self, fingerprint: str) -> dict[CellKey, str]:
        """Stored status of every cell of one experiment, keyed by (size, noise_rate, seed)."""
        conn = self._read_conn()
        if conn is None:
            return {}
        with self._translate("read"):
            rows = conn.execute(
                "SELECT train_size, noise_rate, seed, status FROM cells WHERE fingerprint = ?",
                (fingerprint,),
            ).fetchall()
        return {(int(s), float(r), int(d)): st for s, r, d, st in rows}

    def frame(self, fingerprint: str) -> pd.DataFrame:
        """All stored rows of one experiment (raw store columns)."""
        conn = self._read_conn()
        if conn is None:
            return pd.DataFrame(columns=_ROW_COLUMNS)
        with self._translate("read"):
            cursor = conn.execute(
                "SELECT * FROM cells WHERE fingerprint = ? ORDER BY seed, train_size, noise_rate",
                (fingerprint,),
            )
            rows = cursor.fetchall()
            columns = [d[0] for d in cursor.description]
        return pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)

    def spec_json(self, fingerprint: str) -> dict[str, Any] | None:
        conn = self._read_conn()
        if conn is None:
            return None
        with self._translate("read"):
            row = conn.execute(
                "SELECT spec_json FROM experiments WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def experiments(self) -> dict[str, tuple[dict[str, Any] | None, int]]:
        """Every fingerprint with stored cells: its recorded spec (if any) and its cell count."""
        conn = self._read_conn()
        if conn is None:
            return {}
        with self._translate("read"):
            counts = conn.execute(
                "SELECT fingerprint, count(*) FROM cells GROUP BY fingerprint"
            ).fetchall()
            specs = dict(conn.execute("SELECT fingerprint, spec_json FROM experiments").fetchall())
        return {fp: (json.loads(specs[fp]) if fp in specs else None, n) for fp, n in counts}

    def integrity_ok(self) -> bool:
        """SQLite's own ``PRAGMA integrity_check`` (True for a store not created yet)."""
        conn = self._read_conn()
        if conn is None:
            return True
        with self._translate("check"):
            (answer,) = conn.execute("PRAGMA integrity_check").fetchone()
        return bool(answer == "ok")

    # -- errors ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc, doing) from None

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """One line for an SQLite failure: what failed on which store, and the fix."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        what = f"cannot {doing} the results store {self.path}"
        if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and self._disk_full()):
            fix = (
                "the disk is full; free some space there and run the same command again "
                "(every cell stored so far is kept)"
            )
        elif name.startswith("SQLITE_READONLY"):
            fix = "it is read-only here; choose a --store on a writable disk"
        elif name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
            fix = (
                f"the file is damaged; recover what SQLite can read with `sqlite3 {self.path} "
                ".recover | sqlite3 recovered.sqlite`, restore a backup, or use a new --store"
            )
        elif name.startswith("SQLITE_CANTOPEN"):
            fix = "check that its folder exists and that you may read and write there"
        elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            fix = "another process holds an SQLite lock on it; wait for it and try again"
        elif name.startswith("SQLITE_IOERR"):
            fix = "the disk reported an input/output error; check the disk or use another --store"
        else:
            fix = "use another --store"
        return StoreError(f"{what} ({exc}): {fix}")

    def _disk_full(self) -> bool:
        # SQLite reports a full disk while it maps its shared-memory file as an I/O error.
        try:
            return shutil.disk_usage(self.file.parent).free < _NEARLY_FULL
        except OSError:
            return False

    def _not_a_store(self, exc: sqlite3.Error) -> StoreError:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name == "SQLITE_NOTADB":
            return StoreError(
                f"{self.path} is not a noisegrid results store: it is not an SQLite database "
                f"({exc}); noisegrid leaves it unchanged — choose another --store"
            )
        return self._error(exc, "open")

    def _os_error(self, exc: OSError, doing: str) -> StoreError:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            fix = "free some space on that disk, or choose another --store"
        elif exc.errno == errno.EROFS:
            fix = "that disk is read-only; choose a --store on a writable disk"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            fix = "you may not write there; fix the permissions or choose another --store"
        elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
            fix = "a part of the path is a file, not a folder; choose another --store"
        else:
            fix = "choose another --store"
        return StoreError(f"cannot {doing} (results store {self.path}): {reason}; {fix}")


def _check_store_path(path: Path, file: Path) -> None:
    if file.is_dir():
        empty = " (an empty --store names the current folder)" if str(path) == "." else ""
        raise StoreError(
            f"results store '{path}' is a folder, not a file{empty}; give a file path such as "
            f"{path / 'noisegrid.sqlite'} (--store or [run] store)"
        )
    with contextlib.suppress(OSError):
        mode = file.stat().st_mode
        if not stat.S_ISREG(mode):
            raise StoreError(
                f"results store '{path}' is {_file_kind(mode)}, not a file a store can live in; "
                "give a file path such as runs/noisegrid.sqlite (--store or [run] store)"
            )
    for parent in file.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(
                    f"results store '{path}' cannot be created: {parent} is a file, not a "
                    "folder; choose another --store"
                )
            return


def _file_kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (st.st_dev, st.st_ino)


def _close_quietly(conn: sqlite3.Connection) -> None:
    # Closing checkpoints the WAL; on a full or read-only disk that may fail, harmlessly.
    with contextlib.suppress(sqlite3.Error):
        conn.close()


_KEY_COLUMNS = {"fingerprint", "train_size", "noise_rate", "seed"}
_ROW_COLUMNS = [
    "fingerprint", "train_size", "noise_rate", "seed", "status", "noise_model", "realized_noise",
    "n_flipped", "accuracy", "macro_f1", "log_loss", "test_size", "fit_seconds", "predict_seconds",
    "info", "error", "traceback", "host", "attempts", "finished_at",
]  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
