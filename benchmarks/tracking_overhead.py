"""Benchmark: the time MLflow tracking adds to each cell of a run, in the driver.

Runs one small TF-IDF grid (synthetic texts, ``--cells`` cells) three ways and prints the
per-cell time of the logging call the driver makes after storing each cell
(:class:`noisegrid.tracking.LiveTracking`): untracked (the baseline run), to a local
``sqlite:///`` database, and to an ``mlflow server`` started on 127.0.0.1 (REST, as a team runs
it). The first cell of a tracked run also finds or creates the experiment's parent run; it is
shown apart. Also prints a second export of the same store (nothing new: the cost of checking).

Usage::

    .venv/bin/python benchmarks/tracking_overhead.py               # 40 cells
    .venv/bin/python benchmarks/tracking_overhead.py --cells 100 --no-server
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from noisegrid import export_to_tracker, load_spec, run_experiment  # noqa: E402
from noisegrid.results import resolve_spec  # noqa: E402
from noisegrid.tracking import LiveTracking  # noqa: E402

WORDS = [["good", "great", "fine", "love"], ["bad", "awful", "poor", "hate"]]
FILLER = ["the", "a", "film", "movie", "plot", "actor", "scene", "story", "very", "some"]


def write_data(folder: Path) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 400), ("test", 100)):
        rows = []
        for label in (0, 1):
            for _ in range(n):
                words = list(rng.choice(FILLER, 8)) + list(rng.choice(WORDS[label], 2))
                rows.append({"text": " ".join(words), "label": label})
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")


def write_config(folder: Path, cells: int, *, store: str, uri: str | None) -> Path:
    n_rates = 10
    sizes = [40 * (i + 1) for i in range(max(cells // n_rates, 1))]
    rates = [round(0.02 * i, 2) for i in range(n_rates)]
    track = f'[track]\nto = "mlflow"\nuri = "{uri}"\nexperiment = "bench"\n' if uri else ""
    path = folder / f"{store}.toml"
    path.write_text(
        f'[dataset]\nsource = "{folder / "data"}"\n'
        f"[grid]\nsizes = {sizes}\nnoise_rates = {rates}\nseeds = [0]\n"
        '[backend]\nname = "tfidf"\nmin_df = 1\n'
        "[eval]\ntest_size = 100\n"
        f'[run]\nstore = "{folder / store}.sqlite"\nworkers = 1\n{track}'
    )
    return path


def timed_run(config: Path) -> tuple[float, list[float]]:
    """The run's wall time and, when tracked, the seconds of each cell's logging call."""
    spec = load_spec(config)
    per_cell: list[float] = []
    callback: Any = None
    if spec.track is not None:
        live = LiveTracking(spec)

        def callback(result: Any) -> None:
            t0 = time.perf_counter()
            live(result)
            per_cell.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    summary = run_experiment(spec, on_result=callback)
    wall = time.perf_counter() - t0
    if spec.track is not None and live.error:
        raise SystemExit(f"tracking failed: {live.error}")
    assert summary.n_failed == 0
    return wall, per_cell


def start_server(folder: Path) -> tuple[str, subprocess.Popen[bytes]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [
            *(str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}"),
            *("--artifacts-destination", str(folder / "artifacts")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return url, proc
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("mlflow server did not start")


def report(label: str, wall: float, per_cell: list[float], n_cells: int) -> None:
    if not per_cell:
        print(f"{label:<22} run {wall:6.2f}s  ({1000 * wall / n_cells:6.1f} ms per cell)")
        return
    rest = per_cell[1:] or per_cell
    print(
        f"{label:<22} run {wall:6.2f}s  logging: first cell {1000 * per_cell[0]:7.1f} ms "
        f"(parent run), then median {1000 * statistics.median(rest):6.1f} ms, "
        f"mean {1000 * statistics.fmean(rest):6.1f} ms, max {1000 * max(rest):6.1f} ms per cell"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=40, help="cells per run (multiple of 10)")
    parser.add_argument("--no-server", action="store_true", help="skip the mlflow server run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_data(folder / "data")
        n = max(args.cells // 10, 1) * 10
        print(f"{n} tfidf cells per run; logging time measured around the driver's call")
        wall, _ = timed_run(write_config(folder, n, store="plain", uri=None))
        report("untracked", wall, [], n)
        sqlite = f"sqlite:///{folder / 'mlflow.db'}"
        config = write_config(folder, n, store="sqlite", uri=sqlite)
        report("sqlite:/// database", *timed_run(config), n)
        t0 = time.perf_counter()
        export_to_tracker(resolve_spec(config))
        print(f"{'':<22} second export (all {n} there): {time.perf_counter() - t0:.2f}s")
        if args.no_server:
            return
        url, proc = start_server(folder)
        try:
            config = write_config(folder, n, store="server", uri=url)
            report("mlflow server (REST)", *timed_run(config), n)
            t0 = time.perf_counter()
            export_to_tracker(resolve_spec(config))
            print(f"{'':<22} second export (all {n} there): {time.perf_counter() - t0:.2f}s")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


if __name__ == "__main__":
    main()
