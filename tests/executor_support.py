"""Helpers shared by the executor and fault tests: tiny data, specs, CLI runs, store snapshots."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from noisegrid import ExperimentSpec

POSITIVE = ("good", "great", "fine", "lovely", "superb", "nice")
NEGATIVE = ("bad", "awful", "poor", "dull", "boring", "weak")
SIZES = (4, 8, 12)
NOISE_RATES = (0.0, 0.25)
SEEDS = (0, 1)
N_CELLS = len(SIZES) * len(NOISE_RATES) * len(SEEDS)
CLI = [sys.executable, "-c", "from noisegrid.cli import app; app()"]


def write_tiny_dataset(folder: Path) -> Path:
    """train.csv (20 per class) and test.csv (10 per class) with distinct, learnable texts."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 20), ("test", 10)):
        lines = ["text,label"]
        for i in range(n):
            for label, words in ((1, POSITIVE), (0, NEGATIVE)):
                lines.append(
                    f"{split} review {i} was {words[i % 6]} and {words[(i + 1) % 6]},{label}"
                )
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def spec_dict(
    data: Path,
    store: Path,
    *,
    backend: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
    sizes: tuple[int, ...] = SIZES,
) -> dict[str, Any]:
    return {
        "dataset": {"source": str(data)},
        "grid": {"sizes": list(sizes), "noise_rates": list(NOISE_RATES), "seeds": list(SEEDS)},
        "backend": dict(backend or {"name": "sleep"}),
        "eval": {"test_size": 10},
        "run": {"store": str(store), **(run or {})},
    }


def make_spec(data: Path, store: Path, **kwargs: Any) -> ExperimentSpec:
    return ExperimentSpec.from_dict(spec_dict(data, store, **kwargs))


def write_config(path: Path, data: Path, store: Path, **kwargs: Any) -> Path:
    """The same experiment as a TOML file for ``noisegrid run``."""
    spec = spec_dict(data, store, **kwargs)
    lines = []
    for section, values in spec.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _default_sigint() -> None:
    # A suite started in the background (``make test &``, nohup) inherits an ignored SIGINT, and
    # so would the run under test: give it the default disposition a terminal's run has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli_run(config: Path, *, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """``noisegrid run CONFIG --quiet`` as a subprocess (stdout and stderr captured)."""
    return subprocess.Popen(
        [*CLI, "run", str(config), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        preexec_fn=_default_sigint,
    )


def run_cli(
    config: Path, *, env: Mapping[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "run", str(config), "--quiet"],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
    )


def rows(store: Path) -> list[dict[str, Any]]:
    """Every stored cell (read-only connection, safe while a driver writes)."""
    if not store.exists():
        return []
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM cells ORDER BY rowid")]
    except sqlite3.OperationalError:  # the driver has not created the table yet
        return []
    finally:
        conn.close()


def keys(stored: list[dict[str, Any]]) -> list[tuple[int, float, int]]:
    return [(r["train_size"], r["noise_rate"], r["seed"]) for r in stored]


def wait_for_rows(
    store: Path, n: int, *, process: subprocess.Popen[str] | None = None, timeout: float = 180
) -> list[dict[str, Any]]:
    """Poll the store until it holds at least ``n`` done cells."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = [r for r in rows(store) if r["status"] == "done"]
        if len(stored) >= n:
            return stored
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"run ended before {n} cells were stored:\n{out}\n{err}")
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} cells stored after {timeout:.0f}s")


def wait_gone(pids: set[int], *, timeout: float = 15) -> set[int]:
    """Wait until none of ``pids`` runs (zombies count as gone); return those still running."""
    import psutil

    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    alive.discard(pid)
            except psutil.NoSuchProcess:
                alive.discard(pid)
        time.sleep(0.1)
    return alive


def worker_pids(stored: list[dict[str, Any]]) -> set[int]:
    """Processes that ran the stored cells (the ``sleep`` backend records its pid)."""
    import json

    return {json.loads(r["info"])["pid"] for r in stored if r["status"] == "done"}
