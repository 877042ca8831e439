"""Executor benchmark: local workers 1 vs 2 on the laptop grid, and executor overhead per cell.

1. The laptop-tfidf grid (``examples/laptop-tfidf.toml``, 50 TF-IDF cells on IMDB) with
   ``[run] workers = 1`` (in-process) and ``workers = 2`` (two worker processes): wall time and
   speed-up, start-up included.
2. Overhead per cell with the ``sleep`` backend at ``seconds = 0`` on a small synthetic corpus: the
   steady-state time between results (first to last result) for the in-process executor, two
   local worker processes and a local Ray instance with one actor. Overhead = that time minus the
   in-process time, i.e. what the executor adds to every cell (the target for Ray is < 50 ms).

Usage (from the repository root)::

    python benchmarks/executors.py                      # full: ~5 minutes on 2 cores
    python benchmarks/executors.py --quick              # small validation run, ~1-2 minutes
    python benchmarks/executors.py --data ../shared/data/imdb --skip-ray
    python benchmarks/executors.py --skip-overhead --set 'grid.noise_rates=[0.0, 0.1]'  # 10 cells
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from noisegrid import ExperimentSpec, load_spec, run_experiment
from noisegrid.executors._pool import n_cores

ROOT = Path(__file__).resolve().parents[1]
LAPTOP = ROOT / "examples" / "laptop-tfidf.toml"


def timed_run(spec: ExperimentSpec) -> dict[str, float]:
    """Run ``spec``; wall time, cells-phase time and steady-state seconds per cell."""
    stamps: list[float] = []
    start: list[float] = []
    t0 = time.perf_counter()
    summary = run_experiment(
        spec,
        on_start=lambda n, skipped: start.append(time.perf_counter()),
        on_result=lambda r: stamps.append(time.perf_counter()),
    )
    wall = time.perf_counter() - t0
    if summary.n_failed:
        raise SystemExit(f"{summary.n_failed} cells failed: {summary.failures[0].error}")
    steady = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
    return {
        "wall_s": wall,
        "cells_s": stamps[-1] - start[0],
        "to_first_result_s": stamps[0] - start[0],
        "per_cell_s": steady,
        "n": len(stamps),
    }


def laptop_grid(
    data: str, workdir: Path, *, quick: bool, workers: list[int], extra: list[str]
) -> None:
    # One seed: the 50-cell grid these numbers are stated for (the example runs 3 seeds).
    overrides = [f"dataset.source={data}", "grid.seeds=[0]"]
    if quick:
        overrides += [
            "grid.sizes=[1000, 2000]",
            "grid.noise_rates=[0.0, 0.1]",
            "eval.test_size=1000",
        ]
    overrides += extra
    shown = f"; --set {' '.join(extra)}" if extra else ""
    print(f"== laptop-tfidf grid{' (quick)' if quick else ''}, {data}{shown}")
    results = {}
    for n in workers:
        spec = load_spec(
            LAPTOP,
            overrides=[*overrides, f"run.workers={n}"],
            store=workdir / f"laptop-w{n}.sqlite",
        )
        r = timed_run(spec)
        results[n] = r
        print(
            f"workers={n}: {r['wall_s']:7.1f} s wall, {r['cells_s']:7.1f} s for "
            f"{r['n']} cells ({r['n'] / r['cells_s']:.2f} cells/s, first result after "
            f"{r['to_first_result_s']:.1f} s)"
        )
    if 1 not in results or 2 not in results:
        return
    print(
        f"speed-up workers=2 vs 1: {results[1]['wall_s'] / results[2]['wall_s']:.2f}x wall, "
        f"{results[1]['cells_s'] / results[2]['cells_s']:.2f}x cells phase"
    )


def synthetic_corpus(folder: Path, n_per_class: int = 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_per_class), ("test", n_per_class // 2)):
        rows = [
            {"text": f"{split} text {i} of class {label}", "label": label}
            for i in range(n)
            for label in (0, 1)
        ]
        pd.DataFrame(rows).to_csv(folder / f"{split}.csv", index=False)
    return folder


def overhead(workdir: Path, *, quick: bool, skip_ray: bool) -> None:
    data = synthetic_corpus(workdir / "synthetic")
    n_sizes, n_rates, n_seeds = (4, 5, 2) if quick else (10, 10, 2)
    base = {
        "dataset": {"source": str(data)},
        "grid": {
            "sizes": [10 * (i + 1) for i in range(n_sizes)],
            "noise_rates": [round(0.04 * i, 2) for i in range(n_rates)],
            "seeds": list(range(n_seeds)),
        },
        "backend": {"name": "sleep", "seconds": 0.0},
        "eval": {"test_size": 50},
    }
    n_cells = n_sizes * n_rates * n_seeds
    print(f"== executor overhead per cell: sleep backend (seconds = 0), {n_cells} cells")
    runs: list[tuple[str, dict[str, object]]] = [
        ("local, in-process", {"executor": "local", "workers": 1}),
        ("local, 2 worker processes", {"executor": "local", "workers": 2}),
    ]
    if not skip_ray:
        # One actor holding all CPUs: cells run one after another, as in-process.
        runs.append(
            ("ray, local instance, 1 actor", {"executor": "ray", "resources": {"cpu": n_cores()}})
        )
    baseline = None
    for i, (label, run) in enumerate(runs):
        spec = ExperimentSpec.from_dict(
            {**base, "run": {**run, "store": str(workdir / f"o{i}.sqlite")}}
        )
        r = timed_run(spec)
        per_cell_ms = 1000 * r["per_cell_s"]
        if baseline is None:
            baseline = per_cell_ms
            extra = "(baseline: the cell's own work plus storing it)"
        else:
            extra = f"overhead {per_cell_ms - baseline:+.1f} ms/cell vs in-process"
        print(
            f"{label:32s} {per_cell_ms:7.1f} ms/cell steady, start-up to first result "
            f"{r['to_first_result_s']:5.1f} s, wall {r['wall_s']:5.1f} s; {extra}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small validation run")
    parser.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data" / "imdb"),
        help="IMDB folder with train/test parquet (default: ../shared/data/imdb)",
    )  # fmt: skip
    parser.add_argument("--skip-ray", action="store_true", help="leave out the Ray measurement")
    parser.add_argument("--skip-laptop", action="store_true", help="leave out the laptop grid")
    parser.add_argument(
        "--skip-overhead", action="store_true", help="leave out the per-cell overhead runs"
    )
    parser.add_argument(
        "--workers", default="1,2", help="laptop grid worker counts to time (default: 1,2)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        help="extra section.key=value override for the laptop grid, e.g. grid.noise_rates=[0,0.1]",
    )
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"machine: {n_cores()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with tempfile.TemporaryDirectory(prefix="noisegrid-bench-") as tmp:
        workdir = Path(tmp)
        if not args.skip_laptop:
            workers = [int(w) for w in args.workers.split(",")]
            laptop_grid(args.data, workdir, quick=args.quick, workers=workers, extra=args.overrides)
        if not args.skip_overhead:
            overhead(workdir, quick=args.quick, skip_ray=args.skip_ray)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
