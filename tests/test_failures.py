"""Every failure a user can cause, as one line: bad data, bad stores, full and read-only disks.

Each case below is one fault or bad input, run through the CLI in-process. A case that must fail
asserts its exit code, exactly one line on stderr that starts with ``error:`` and names the cause,
no traceback anywhere, and, where a store existed, that its bytes are unchanged. The cases that
must succeed (a valid store on a read-only disk, the same data under another path spelling) assert
what the user sees instead.

The sections follow the fault campaign: raw tracebacks that became one line, misleading messages
that were corrected, silent mix-ups that are now caught, and cases that were already clear and must
stay so. Full and read-only disks are small tmpfs mounts (skipped, with the reason, where this
process may not mount); a folder without write permission is entered as an unprivileged effective
user when the tests run as root (root ignores write bits).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import noisegrid.results
from noisegrid.cli import app
from noisegrid.store import ResultStore

SLEEP = 'name = "sleep"'
runner = CliRunner()


def invoke(*args: object, cwd: Path | None = None) -> tuple[int, str, str]:
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"the CLI raised {result.exception!r}"
    )
    return result.exit_code, result.stdout, result.stderr


# -- the test environment ---------------------------------------------------------------------


@dataclass
class Env:
    """A scratch folder with helpers to build data, configs, stores and small disks."""

    tmp: Path
    make_dataset: Callable[..., Path]
    write_config: Callable[..., Path]
    mounts: list[Path] = field(default_factory=list)

    @property
    def store(self) -> Path:
        return self.tmp / "results.sqlite"

    def data(self, fmt: str = "parquet", name: str = "data") -> Path:
        return self.make_dataset(fmt=fmt, name=name)

    def config(self, source: Path | str | None = None, **kwargs: Any) -> Path:
        kwargs.setdefault("backend", SLEEP)
        return self.write_config(source if source is not None else self.data(), **kwargs)

    def stored(self, *, source: Path | str | None = None, **kwargs: Any) -> Path:
        """A config whose grid is fully stored (a valid store with 4 done cells)."""
        cfg = self.config(source, **kwargs)
        code, out, err = invoke("run", cfg)
        assert code == 0, out + err
        return cfg

    def disk(self, size: str = "256k") -> Path:
        """A fresh tmpfs of ``size``; the test is skipped where mounting is not allowed."""
        mount = self.tmp / f"disk{len(self.mounts)}"
        mount.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip() or 'not root'}")
        self.mounts.append(mount)
        return mount

    def read_only(self, mount: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)

    def fill(self, mount: Path, *, leave: int = 0) -> None:
        """Fill the disk, then free ``leave`` bytes (rounded to pages by tmpfs)."""
        filler = mount / "filler"
        with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
        if leave:
            size = filler.stat().st_size
            os.truncate(filler, max(0, size - leave))

    def unmount_all(self) -> None:
        for mount in reversed(self.mounts):
            proc = subprocess.run(["umount", str(mount)], capture_output=True, check=False)
            if proc.returncode != 0:
                subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


@pytest.fixture
def env(
    tmp_path: Path, make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> Iterator[Env]:
    e = Env(tmp_path, make_dataset, write_config)
    try:
        yield e
    finally:
        e.unmount_all()


@contextlib.contextmanager
def without_write_permission(folder: Path) -> Iterator[None]:
    """``folder`` loses its write bits; as root, also run as an unprivileged effective user."""
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    root = os.geteuid() == 0
    try:
        if root:
            os.setegid(65534)
            os.seteuid(65534)
        elif os.access(folder, os.W_OK):
            pytest.skip("this user can write a folder without write bits")
        yield
    finally:
        if root:
            os.seteuid(0)
            os.setegid(0)
        folder.chmod(mode)


@pytest.fixture
def shared_tmp(make_dataset: Callable[..., Path]) -> Iterator[Path]:
    """A scratch folder an unprivileged user may read (pytest's own is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="noisegrid-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- one case ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """The command line a case runs, the store it may not change, and checks to run after."""

    args: list[object]
    store: Path | None = None
    cwd: Path | None = None
    after: Callable[[], None] | None = None


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Env], Prepared]
    code: int
    match: str
    """A regex the ``error:`` line (or stdout, for a case that succeeds) must match."""
    store_unchanged: bool = True


def check(case: Case, env: Env) -> None:
    prepared = case.make(env)
    store = prepared.store
    before = store.read_bytes() if store is not None and store.is_file() else None
    code, out, err = invoke(*prepared.args, cwd=prepared.cwd)
    assert "Traceback" not in out + err
    assert code == case.code, out + err
    if case.code == 0:
        assert re.search(case.match, out), out
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("error: "), err
        assert re.search(case.match, lines[0]), lines[0]
    if before is not None and case.store_unchanged:
        assert store is not None and store.read_bytes() == before, "the store was modified"
    if before is None and store is not None and case.code != 0:
        assert not store.exists(), "a failed command created the store"
    if prepared.after is not None:
        prepared.after()


# -- data files that cannot be read ----------------------------------------------------------------


def _broken_file(fmt: str, name: str, content: bytes) -> Callable[[Env, str], Prepared]:
    def make(env: Env, command: str) -> Prepared:
        folder = env.data(fmt=fmt)
        (folder / name).write_bytes(content)
        return Prepared([command, env.config(folder)], store=env.store)

    return make


_CSV_LINES = b"text,label\ngood movie,1\nbad movie,0\n"
UNREADABLE = {
    "zero-byte-parquet": (
        _broken_file("parquet", "train.parquet", b""),
        r"cannot read \S+train\.parquet: the file is empty \(0 bytes\)",
    ),
    "zero-byte-csv": (
        _broken_file("csv", "train.csv", b""),
        r"cannot read \S+train\.csv: the file is empty \(0 bytes\)",
    ),
    "csv-ends-inside-a-quote": (
        _broken_file("csv", "train.csv", _CSV_LINES + b'"fine movie,1\nnice one,1\n'),
        r"train\.csv: the quote \(\"\) opened on line 4 is never closed",
    ),
    "random-bytes-as-parquet": (
        _broken_file("parquet", "train.parquet", bytes(range(256)) * 20),
        r"cannot read \S+train\.parquet: it is not a readable parquet file .*magic bytes",
    ),
    "non-utf8-csv": (
        _broken_file("csv", "train.csv", _CSV_LINES + "caf\xe9 movie,1\n".encode("latin-1")),
        r"train\.csv: it is not UTF-8 text \(byte 0xe9 on line 4\); save it as UTF-8",
    ),
    "malformed-jsonl-line": (
        _broken_file(
            "jsonl",
            "train.jsonl",
            b'{"text": "good", "label": 1}\n{"text": "bad", "label": 0\n'
            b'{"text": "x", "label": 1}\n',
        ),
        r"train\.jsonl: line 2 is not valid JSON \(.* at column \d+\); fix or remove that line",
    ),
}


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("name", list(UNREADABLE))
def test_unreadable_data_file(env: Env, name: str, command: str) -> None:
    make, match = UNREADABLE[name]
    check(Case(name, lambda e: make(e, command), 2, match), env)
    assert not env.store.exists() and not env.store.with_name("results.sqlite.lock").exists()


# -- stores and disks: raw tracebacks that became one line -----------------------------------------


def _store_on_read_only_disk(env: Env, *, existing: bool) -> Prepared:
    disk = env.disk()
    store = disk / "results.sqlite"
    cfg = env.stored(store=store) if existing else env.config(store=store)
    env.read_only(disk)
    return Prepared(["run", cfg], store=store)


def _store_on_full_disk(env: Env) -> Prepared:
    disk = env.disk()
    store = disk / "results.sqlite"
    cfg = env.config(store=store)
    env.fill(disk)
    return Prepared(["run", cfg], store=store)


def _store_path_through_a_file(env: Env) -> Prepared:
    folder = env.data()
    cfg = env.config(folder, store=folder / "train.parquet" / "results.sqlite")
    return Prepared(["run", cfg])


def _corrupt_cells_table(store: Path) -> None:
    """Overwrite the cells table's first page with garbage (the meta table stays readable)."""
    conn = sqlite3.connect(store)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'cells'").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with store.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xff" * page_size)


def _corrupted_store(command: str) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        cfg = env.stored()
        _corrupt_cells_table(env.store)
        return Prepared([command, cfg], store=env.store)

    return make


def _foreign_sqlite(tables: str, command: str = "run") -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        conn = sqlite3.connect(env.store)
        for table in tables.split(","):
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, what TEXT)")
            conn.execute(f"INSERT INTO {table} (what) VALUES ('not noisegrid')")
        conn.commit()
        conn.close()
        args: list[object] = [command, env.config()]
        if command == "export":
            args += ["--out", env.tmp / "out.csv"]
        return Prepared(args, store=env.store)

    return make


def _disk_full_mid_run(env: Env) -> Prepared:
    disk = env.disk("1m")
    store = disk / "results.sqlite"
    env.stored(store=store)
    before = _rows(store)
    env.fill(disk, leave=80 * 1024)
    grown = env.config(store=store, sizes="[20, 40, 60, 80, 100, 120]", seeds="[0, 1, 2]")

    def after() -> None:
        (disk / "filler").unlink()
        rows = _rows(store)
        # Cells were stored until the disk filled up, in the middle of the run.
        assert len(before) < len(rows) < 36, len(rows)
        assert {k: v for k, v in rows.items() if k in before} == before  # old cells intact
        with ResultStore(store) as s:
            assert s.integrity_ok()

    return Prepared(["run", grown], store=store, after=after)


def _rows(store: Path) -> dict[tuple[Any, ...], str]:
    conn = sqlite3.connect(store)
    try:
        return {
            (f, n, r, s): t
            for f, n, r, s, t in conn.execute(
                "SELECT fingerprint, train_size, noise_rate, seed, finished_at FROM cells"
            )
        }
    finally:
        conn.close()


def _empty_store_option(env: Env) -> Prepared:
    return Prepared(["run", env.config(), "--store", ""])


def _empty_store_key(env: Env) -> Prepared:
    return Prepared(["run", env.config(store="")])


def _output_on(kind: str, command: str) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        cfg = env.stored()
        disk = env.disk()
        (disk / "out").mkdir()
        if kind == "full":
            env.fill(disk)
        else:
            env.read_only(disk)
        out = disk / "out" / ("results.csv" if command == "export" else "report")
        return Prepared([command, cfg, "--out", out], store=env.store)

    return make


def _config_not_utf8(env: Env) -> Prepared:
    cfg = env.config()
    cfg.write_bytes(
        cfg.read_bytes().replace(b"[dataset]", "# caf\xe9\n[dataset]".encode("latin-1"))
    )
    return Prepared(["run", cfg], store=env.store)


TRACEBACKS = [
    Case(
        "lock-on-read-only-disk-new-store",
        lambda e: _store_on_read_only_disk(e, existing=False),
        2,
        r"cannot open the lock file \S+results\.sqlite\.lock .*Read-only file system; that disk "
        r"is read-only; choose a --store on a writable disk",
    ),
    Case(
        "lock-on-read-only-disk-existing-store",
        lambda e: _store_on_read_only_disk(e, existing=True),
        2,
        r"cannot open the lock file .*Read-only file system; that disk is read-only",
    ),
    Case(
        "lock-on-full-disk",
        _store_on_full_disk,
        2,
        r"cannot write the lock file \S+ .*No space left on device; free some space",
    ),
    Case(
        "store-path-through-a-file",
        _store_path_through_a_file,
        2,
        r"results store '\S+' cannot be created: \S+train\.parquet is a file, not a folder",
    ),
    Case(
        "corrupted-cells-table-run",
        _corrupted_store("run"),
        2,
        r"cannot read the results store \S+ \(database disk image is malformed\): the file is "
        r"damaged; recover what SQLite can read with `sqlite3 \S+ \.recover",
    ),
    Case(
        "corrupted-cells-table-status",
        _corrupted_store("status"),
        2,
        r"cannot read the results store \S+ \(database disk image is malformed\): the file is "
        "damaged",
    ),
    Case(
        "foreign-sqlite-with-a-cells-table",
        _foreign_sqlite("cells"),
        2,
        r"is not a noisegrid results store: it is another SQLite database \(tables: cells\); "
        "noisegrid leaves it unchanged",
    ),
    Case(
        "disk-full-in-the-middle-of-a-run",
        _disk_full_mid_run,
        2,
        r"cannot store a cell in the results store \S+ \(database or disk is full\): the disk is "
        r"full; free some space there and run the same command again",
        store_unchanged=False,
    ),
    Case(
        "store-option-empty",
        _empty_store_option,
        2,
        r"results store '\.' is a folder, not a file \(an empty --store names the current "
        r"folder\); give a file path such as noisegrid\.sqlite",
    ),
    Case(
        "store-key-empty",
        _empty_store_key,
        2,
        r"the results store path is empty; give a file such as runs/noisegrid\.sqlite",
    ),
    Case(
        "export-to-full-disk",
        _output_on("full", "export"),
        2,
        r"cannot write \S+results\.csv: No space left on device; free some space on that disk, "
        "or choose another --out",
    ),
    Case(
        "export-to-read-only-disk",
        _output_on("read-only", "export"),
        2,
        r"cannot write \S+: Read-only file system; that disk is read-only; choose an --out",
    ),
    Case(
        "report-to-full-disk",
        _output_on("full", "report"),
        2,
        r"cannot write \S+report: No space left on device; free some space",
    ),
    Case(
        "report-to-read-only-disk",
        _output_on("read-only", "report"),
        2,
        r"cannot write \S+: Read-only file system; that disk is read-only",
    ),
    Case(
        "config-not-utf8",
        _config_not_utf8,
        2,
        r"exp\.toml is not UTF-8 text \(byte 0xe9 at offset \d+\); save it as UTF-8",
    ),
]


@pytest.mark.parametrize("case", TRACEBACKS, ids=lambda c: c.id)
def test_fault_is_one_line(env: Env, case: Case) -> None:
    check(case, env)


@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "existing-store"])
def test_store_in_a_folder_without_write_permission(
    env: Env, shared_tmp: Path, existing: bool
) -> None:
    data = env.make_dataset(name="perm-data")
    shutil.copytree(data, shared_tmp / "data")
    folder = shared_tmp / "runs"
    folder.mkdir()
    store = folder / "results.sqlite"
    cfg = env.write_config(shared_tmp / "data", name="perm.toml", store=store, backend=SLEEP)
    shutil.copy(cfg, shared_tmp / "exp.toml")
    if existing:
        assert invoke("run", shared_tmp / "exp.toml")[0] == 0
    before = store.read_bytes() if existing else None
    with without_write_permission(folder):
        code, out, err = invoke("run", shared_tmp / "exp.toml")
    assert code == 2 and "Traceback" not in out + err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(
        r"cannot open the lock file \S+ .*Permission denied; you may not write there", err
    ), err
    if existing:
        assert store.read_bytes() == before


# -- misleading messages, corrected ---------------------------------------------------------------


def _csv_case(content: str) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        folder = env.data(fmt="csv")
        (folder / "train.csv").write_text(content, encoding="utf-8")
        return Prepared(["run", env.config(folder)], store=env.store)

    return make


def _frame_case(train: pd.DataFrame, test: pd.DataFrame | None = None) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        folder = env.data()
        train.to_parquet(folder / "train.parquet")
        (test if test is not None else train).to_parquet(folder / "test.parquet")
        return Prepared(["run", env.config(folder)], store=env.store)

    return make


def _rows_csv(n: int) -> str:
    return "".join(f"movie number {i} was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(n))


def _read_only_store(command: str) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        disk = env.disk()
        store = disk / "results.sqlite"
        cfg = env.stored(store=store)
        env.read_only(disk)
        out = env.tmp / ("out.csv" if command == "export" else "report")
        args: list[object] = [command, cfg]
        if command != "status":
            args += ["--out", out]

        def after() -> None:
            if command == "export":
                assert len(pd.read_csv(out)) == 4
            if command == "report":
                assert len(pd.read_csv(out / "results.csv")) == 4

        return Prepared(args, store=store, after=after)

    return make


def _source_is_a_file(env: Env) -> Prepared:
    # A split file (train.parquet) names its folder; a file named after no split does not.
    folder = env.data()
    other = folder / "reviews.parquet"
    other.write_bytes((folder / "train.parquet").read_bytes())
    return Prepared(["run", env.config(other)], store=env.store)


def _config_is_a_folder(env: Env) -> Prepared:
    env.config()
    return Prepared(["run", env.tmp])


def _malformed_set(env: Env) -> Prepared:
    return Prepared(["run", env.config(), "--set", "grid.sizes=[200,"], store=env.store)


def _tradeoff_far_outside(env: Env) -> Prepared:
    cfg = env.stored(
        backend='name = "tfidf"\nmin_df = 1', sizes="[20, 40, 60]", rates="[0.0, 0.1, 0.2]"
    )
    return Prepared(["tradeoff", cfg, "--size", "5000", "--noise", "0.1"], store=env.store)


MISLEADING = [
    Case("read-only-store-status", _read_only_store("status"), 0, r"4 done, 0 failed, 0 pending"),
    Case("read-only-store-export", _read_only_store("export"), 0, r"wrote \S+out\.csv"),
    Case("read-only-store-report", _read_only_store("report"), 0, r"wrote \S+report\.html"),
    Case(
        "csv-stray-quote",
        _csv_case('text,label\ngood movie,1\n"awful movie,0\nnice movie,1\nugly" one,0\n'),
        2,
        r"train\.csv: a quote \(\"\) on line 3 opens a field that runs to line 5 and swallows "
        r"what look like 2 row\(s\) \('awful movie,0'\): a stray quote",
    ),
    Case(
        "csv-row-with-extra-fields",
        _csv_case("text,label\n" + _rows_csv(4) + "good, really good,1\n" + _rows_csv(3)),
        2,
        r"train\.csv: line 6 has 3 fields where the header has 2 \(text, label\): a text with a "
        "comma must be quoted",
    ),
    Case(
        "csv-first-row-with-extra-fields",
        _csv_case("text,label\ngood, really good,1\n" + _rows_csv(6)),
        2,
        r"train\.csv: line 2 has 3 fields where the header has 2",
    ),
    Case(
        "all-integer-text-column",
        _frame_case(pd.DataFrame({"text": list(range(40)), "label": [0, 1] * 20})),
        2,
        r"column 'text' of split 'train' holds numbers, not texts \(e\.g\. 0, 1, 2\); set "
        "dataset.text_column to the column holding the texts; the columns are: text, label",
    ),
    Case(
        "zero-row-train-file",
        _csv_case("text,label\n"),
        2,
        r"split 'train' has no rows \(\S+train\.csv holds only its column names\)",
    ),
    Case(
        "every-test-row-repeats-a-train-row",
        _frame_case(pd.DataFrame({"text": [f"text {i}" for i in range(40)], "label": [0, 1] * 20})),
        2,
        r"every row of split 'test' \(40\) repeats a text of split 'train', so no test data is "
        "left",
    ),
    Case(
        "source-is-a-file",
        _source_is_a_file,
        2,
        r"dataset\.source '\S+reviews\.parquet' is a file, not a folder; point it at the folder "
        r"that holds the split files \(e\.g\. --set dataset\.source=\S+data\)",
    ),
    Case(
        "config-is-a-folder",
        _config_is_a_folder,
        2,
        r"config '\S+' is a folder, not a file; pass the path of an experiment TOML \(the folder "
        r"has: exp\.toml\)",
    ),
    Case(
        "malformed-set-literal",
        _malformed_set,
        2,
        r"--set grid\.sizes: \[200, is not a valid TOML value \(.*\); write it as a TOML literal",
    ),
    Case(
        "tradeoff-far-outside-the-grid",
        _tradeoff_far_outside,
        2,
        r"at \(5,000, 10%\) the fitted \S+ surface predicts [\d.]+% accuracy, which is "
        r"impossible: the point lies too far outside the measured grid \(sizes 20-60",
    ),
]


@pytest.mark.parametrize("case", MISLEADING, ids=lambda c: c.id)
def test_message_names_the_real_cause(env: Env, case: Case) -> None:
    check(case, env)


# -- silent mix-ups, now caught --------------------------------------------------------------


def _data_replaced(command: str) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        cfg = env.stored()
        # New data in the same place: the same files, rows and columns, other texts.
        for name in ("train.parquet", "test.parquet"):
            path = env.tmp / "data" / name
            frame = pd.read_parquet(path)
            frame.assign(text=frame["text"] + " again").to_parquet(path)
        args: list[object] = [command, cfg]
        if command == "export":
            args += ["--out", env.tmp / "out.csv"]
        return Prepared(
            args, store=None if command == "run" else env.store, after=_gone(env, command)
        )

    return make


def _gone(env: Env, command: str) -> Callable[[], None] | None:
    return (lambda: _absent(env.tmp / "out.csv")) if command == "export" else None


def _spelled(how: str, command: str = "status") -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        folder = env.data()
        env.stored(source=folder)
        cwd = None
        if how == "trailing-slash":
            source: str = f"{folder}/"
        elif how == "relative":
            source, cwd = "./data", env.tmp
        elif how == "dot-dot":
            source = f"{folder}/../data"
        else:
            (env.tmp / "link").symlink_to(folder)
            source = str(env.tmp / "link")
        cfg = env.config(source, name="again.toml")
        args: list[object] = [command, cfg]
        if command == "export":
            args += ["--out", env.tmp / "out.csv"]

        def after() -> None:
            if command == "export":
                assert len(pd.read_csv(env.tmp / "out.csv")) == 4

        return Prepared(args, store=env.store, cwd=cwd, after=after)

    return make


def _symlinked_store_second_writer(broken_data: bool) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        env.stored()
        link = env.tmp / "link.sqlite"
        link.symlink_to(env.store)
        folder = env.data(name="broken") if broken_data else env.data()
        if broken_data:
            (folder / "train.parquet").write_bytes(b"")
        cfg = env.config(folder, store=link, name="second.toml")
        holder = ResultStore(env.store)
        holder.acquire_writer()
        return Prepared(["run", cfg], store=env.store, after=holder.close)

    return make


def _export_missing_store(env: Env) -> Prepared:
    return Prepared(["export", env.config(), "--out", env.tmp / "out.csv"])


def _fingerprint_not_in_store(command: str) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        env.stored()
        other = env.config(name="other.toml", test_size=10)
        args: list[object] = [command, other]
        if command in ("export", "report"):
            args += ["--out", env.tmp / "out"]
        if command == "tradeoff":
            args += ["--size", "20", "--noise", "0.1"]
        return Prepared(args, store=env.store, after=lambda: _absent(env.tmp / "out"))

    return make


def _absent(path: Path) -> None:
    assert not path.exists()


DATA_CHANGED = (
    r"the store holds 4 cell\(s\) of this experiment under another fingerprint \([0-9a-f]{16}\), "
    r"which differs in: the dataset's content \(stored sha256:[0-9a-f]{16}, now "
    r"sha256:[0-9a-f]{16}: the data files changed since those cells ran\)"
)
MIXUPS = [
    Case(
        "data-replaced-in-place-status",
        _data_replaced("status"),
        0,
        r"0 done, 0 failed, 4 pending of 4 cells .*\nnote: " + DATA_CHANGED,
    ),
    Case(
        "data-replaced-in-place-run-recomputes",
        _data_replaced("run"),
        0,
        r"4 cells done, 0 failed, 0 already stored",
    ),
    Case(
        "data-replaced-in-place-export",
        _data_replaced("export"),
        2,
        r"holds no cells of this experiment's grid \(fingerprint [0-9a-f]{16}\); " + DATA_CHANGED,
    ),
    Case("data-path-with-trailing-slash", _spelled("trailing-slash"), 0, r"^4 done, 0 failed"),
    Case("data-path-relative", _spelled("relative"), 0, r"^4 done, 0 failed"),
    Case("data-path-with-dot-dot", _spelled("dot-dot"), 0, r"^4 done, 0 failed"),
    Case("data-path-through-a-symlink", _spelled("symlink"), 0, r"^4 done, 0 failed"),
    Case("data-path-spelled-otherwise-export", _spelled("relative", "export"), 0, r"wrote "),
    Case(
        "symlinked-store-second-writer",
        _symlinked_store_second_writer(broken_data=False),
        2,
        r"another noisegrid run \(pid \d+ on \S+\) is writing to \S+link\.sqlite; wait for it",
    ),
    Case(
        "second-writer-refused-before-loading-data",
        _symlinked_store_second_writer(broken_data=True),
        2,
        r"another noisegrid run \(pid \d+ on \S+\) is writing to",
    ),
    Case(
        "foreign-sqlite-run",
        _foreign_sqlite("users,orders"),
        2,
        r"\S+results\.sqlite is not a noisegrid results store: it is another SQLite database "
        r"\(tables: orders, users\); noisegrid leaves it unchanged — choose another --store",
    ),
    Case(
        "foreign-sqlite-status",
        _foreign_sqlite("users", "status"),
        2,
        r"is not a noisegrid results store: it is another SQLite database",
    ),
    Case(
        "foreign-sqlite-export",
        _foreign_sqlite("users", "export"),
        2,
        r"is not a noisegrid results store: it is another SQLite database",
    ),
    Case(
        "export-of-a-missing-store",
        _export_missing_store,
        2,
        r"results store \S+results\.sqlite does not exist; run the grid first \(noisegrid run "
        r"CONFIG\), or point --store",
    ),
    Case(
        "export-of-a-fingerprint-not-in-the-store",
        _fingerprint_not_in_store("export"),
        2,
        r"holds no cells of this experiment's grid \(fingerprint [0-9a-f]{16}\); the store holds "
        r"4 cell\(s\) of this experiment under another fingerprint \([0-9a-f]{16}\), which "
        r"differs in: eval\.test_size \(stored 20, now 10\)",
    ),
    Case(
        "report-of-a-fingerprint-not-in-the-store",
        _fingerprint_not_in_store("report"),
        2,
        r"holds no cells of this experiment's grid .*differs in: eval\.test_size",
    ),
    Case(
        "tradeoff-of-a-fingerprint-not-in-the-store",
        _fingerprint_not_in_store("tradeoff"),
        2,
        r"holds no cells of this experiment's grid .*differs in: eval\.test_size",
    ),
    Case(
        "status-of-a-fingerprint-not-in-the-store",
        _fingerprint_not_in_store("status"),
        0,
        r"0 done, 0 failed, 4 pending .*\nnote: the store holds 4 cell\(s\) of this experiment "
        r"under another fingerprint \([0-9a-f]{16}\), which differs in: eval\.test_size",
    ),
]


@pytest.mark.parametrize("case", MIXUPS, ids=lambda c: c.id)
def test_mix_up_is_caught(env: Env, case: Case) -> None:
    check(case, env)


def test_same_content_rewritten_keeps_its_cells(env: Env) -> None:
    cfg = env.stored()
    train = env.tmp / "data" / "train.parquet"
    data = train.read_bytes()
    train.unlink()
    train.write_bytes(data)  # a new file (new mtime), the same bytes
    os.utime(train, ns=(train.stat().st_atime_ns, train.stat().st_mtime_ns + 10**9))
    code, out, _ = invoke("status", cfg)
    assert code == 0 and out.startswith("4 done, 0 failed, 0 pending")


# -- already clear, and staying so -----------------------------------------------------------------


def _config_with(**kwargs: Any) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        overrides = kwargs.pop("overrides", [])
        args: list[object] = ["run", env.config(**kwargs)]
        for item in overrides:
            args += ["--set", item]
        return Prepared(args, store=env.store)

    return make


def _store_file(content: bytes) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        env.store.write_bytes(content)
        return Prepared(["run", env.config()], store=env.store)

    return make


def _other_schema(env: Env) -> Prepared:
    cfg = env.stored()
    conn = sqlite3.connect(env.store)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    return Prepared(["status", cfg], store=env.store)


def _missing_split(env: Env) -> Prepared:
    folder = env.data()
    (folder / "test.parquet").unlink()
    return Prepared(["run", env.config(folder)], store=env.store)


def _not_toml(env: Env) -> Prepared:
    cfg = env.config()
    cfg.write_text(cfg.read_text() + "\nthis is = = not toml\n")
    return Prepared(["run", cfg])


CLEAR = [
    Case(
        "config-does-not-exist",
        lambda e: Prepared(["run", e.tmp / "missing.toml"]),
        2,
        r"config file '\S+missing\.toml' does not exist",
    ),
    Case("config-not-toml", _not_toml, 2, r"exp\.toml is not valid TOML"),
    Case(
        "unknown-key",
        _config_with(overrides=["grid.sise=[1]"]),
        2,
        r"unknown key 'sise' in \[grid\]",
    ),
    Case(
        "set-without-equals",
        _config_with(overrides=["oops"]),
        2,
        r"--set expects section\.key=value, got 'oops'",
    ),
    Case(
        "set-bare-word-is-a-string",
        _config_with(overrides=["dataset.text_column=review"]),
        2,
        r"has no column 'review'; its columns are: text, label",
    ),
    Case("size-not-a-multiple", _config_with(sizes="[21]"), 2, r"cannot be split evenly over 2"),
    Case("size-too-large", _config_with(sizes="[2000]"), 2, r"the maximum is 120"),
    Case("noise-out-of-range", _config_with(rates="[0.6]"), 2, r"noise rate 0\.6 is out of range"),
    Case("test-size-too-large", _config_with(test_size=500), 2, r"eval\.test_size 500 is larger"),
    Case(
        "unknown-backend",
        _config_with(overrides=["backend.name=bert"]),
        2,
        r"unknown backend 'bert'",
    ),
    Case(
        "data-folder-missing",
        lambda e: Prepared(["run", e.config(e.tmp / "nope")], store=e.store),
        2,
        r"dataset\.source '\S+nope' does not exist",
    ),
    Case("missing-split-file", _missing_split, 2, r"no 'test' file in \S+ .*the folder has:"),
    Case(
        "fewer-than-two-classes",
        _frame_case(pd.DataFrame({"text": [f"t {i}" for i in range(40)], "label": [1] * 40})),
        2,
        r"fewer than two classes",
    ),
    Case(
        "empty-texts",
        _frame_case(pd.DataFrame({"text": ["a", "", None, " "] * 10, "label": [0, 1] * 20})),
        2,
        r"split 'train' has 30 empty or missing texts in column 'text'",
    ),
    Case(
        "junk-file-as-store",
        _store_file(b"this is not sqlite" * 100),
        2,
        r"is not a noisegrid results store: it is not an SQLite database",
    ),
    Case("store-of-another-schema", _other_schema, 2, r"has store schema 99, this noisegrid reads"),
    Case(
        "empty-file-as-store-is-a-new-store",
        _store_file(b""),
        0,
        r"4 cells done, 0 failed, 0 already stored",
        store_unchanged=False,
    ),
]


@pytest.mark.parametrize("case", CLEAR, ids=lambda c: c.id)
def test_clear_case_stays_clear(env: Env, case: Case) -> None:
    check(case, env)


# -- the last resort ------------------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_with_a_pointer_to_debug(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    cfg = env.config()
    monkeypatch.setattr(noisegrid.results, "experiment_status", broken)
    code, out, err = invoke("status", cfg)
    assert code == 3
    assert err.splitlines() == [
        "error: unexpected KeyError: 'a bug'; run `noisegrid --debug status ...` for the "
        "traceback, and please report it"
    ]
    assert "Traceback" not in out + err
    result = runner.invoke(app, ["--debug", "status", str(cfg)])
    assert isinstance(result.exception, KeyError)  # --debug lets the traceback through


def test_an_os_error_names_the_file_and_the_fix(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", "/somewhere/file")

    monkeypatch.setattr(noisegrid.results, "experiment_status", full)
    code, _, err = invoke("status", env.config())
    assert code == 2
    assert err.splitlines() == [
        "error: No space left on device (/somewhere/file): the disk is full; free some space "
        "there or write elsewhere (run `noisegrid --debug status ...` for the traceback)"
    ]


def test_cells_stored_before_data_identities_are_named(env: Env) -> None:
    cfg = env.stored()
    conn = sqlite3.connect(env.store)
    (spec_json,) = conn.execute("SELECT spec_json FROM experiments").fetchone()
    # A store written before data identities were recorded: the same spec without one.
    old = json.loads(spec_json)
    del old["data_identity"]
    conn.execute("UPDATE experiments SET spec_json = ?", (json.dumps(old),))
    conn.execute("UPDATE experiments SET fingerprint = 'oldfingerprint00'")
    conn.execute("UPDATE cells SET fingerprint = 'oldfingerprint00'")
    conn.commit()
    conn.close()
    code, out, _ = invoke("status", cfg)
    assert code == 0
    assert out.splitlines()[1] == (
        "note: the store holds 4 cell(s) of this experiment under another fingerprint "
        "(oldfingerprint00), which differs in: the dataset's identity (not recorded by the "
        f"noisegrid that stored those cells; now {_identity(env)})"
    )


def _identity(env: Env) -> str:
    from noisegrid.config import DatasetSpec
    from noisegrid.data import dataset_identity

    return dataset_identity(DatasetSpec(source=str(env.tmp / "data")))
