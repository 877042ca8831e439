"""Benchmark: the exact reference recipe against the fast one, in accuracy, over repeat seeds.

The ``finetune`` backend offers two recipes that differ in two options:

- **exact** (the reference's ``Trainer``): ``[train] precision = "fp32"``,
  ``[backend] group_by_length = false`` (plain random batches);
- **fast**: ``precision = "bf16"`` (bf16 autocast, fp32 weights and optimiser state) and
  ``group_by_length = true`` (batches of similar lengths, less padding).

Both train the same cells (same subsamples, same test sample per seed, same seeds), so the
difference of their accuracies is paired: per (size, seed) it removes the test-sample and
subsample noise the two recipes share. The script prints, per size, the mean accuracy of each
recipe, the mean paired difference (fast − exact) with its 95% Student-t interval over seeds, and
the seed-to-seed standard deviation of each recipe's accuracy, the yardstick a recipe difference
has to be judged against.

It drives the backend through the public API (``ExperimentSpec.from_dict`` + ``run_experiment``)
and stores the cells in one SQLite store per recipe, so an interrupted run resumes. On a CPU
without native bf16 (most), bf16 autocast is emulated: correct, but several times slower than
fp32. Defaults (MiniLM at 64 tokens, sizes 400 and 1,000, 5 seeds, noise 0, 1,000 test reviews)
take about 10-15 minutes on 2 CPU cores.

Usage::

    nice -n 10 .venv/bin/python benchmarks/recipes.py                 # the default measurement
    .venv/bin/python benchmarks/recipes.py --quick                    # a small check
    .venv/bin/python benchmarks/recipes.py --sizes 1000 4000 --seeds 10 --max-length 256
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RECIPES: dict[str, dict[str, Any]] = {
    "exact": {"precision": "fp32", "group_by_length": False},
    "fast": {"precision": "bf16", "group_by_length": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 1000])
    parser.add_argument("--seeds", type=int, default=5, help="repeat seeds 0..N-1")
    parser.add_argument("--noise", type=float, default=0.0, help="noise rate of every cell")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "recipes"), help="store folder")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--only",
        choices=sorted(RECIPES),
        default=None,
        help="run one recipe (the table needs both)",
    )
    parser.add_argument("--quick", action="store_true", help="sizes 64/128, 2 seeds, 200 tests")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.quick:
        args.sizes, args.seeds, args.test_size = [64, 128], 2, 200
        args.out = str(Path(args.out) / "quick")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from noisegrid import ExperimentSpec, load_results, run_experiment
    from noisegrid.backends.hf.device import cpu_has_native_bf16

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = "native" if device == "cuda" or cpu_has_native_bf16() else "emulated (slow)"
    print(
        f"recipes: {args.model} at max_length {args.max_length}, {args.epochs:g} epochs, sizes "
        f"{args.sizes}, seeds 0..{args.seeds - 1}, noise {args.noise:g}, test {args.test_size}; "
        f"device {device}, bf16 {bf16}, torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, load {_load()}"
    )
    tables = {}
    for name, recipe in RECIPES.items():
        if args.only and name != args.only:
            continue
        spec = ExperimentSpec.from_dict(
            {
                "name": f"recipe-{name}",
                "dataset": {"source": args.data},
                "grid": {
                    "sizes": args.sizes,
                    "noise_rates": [args.noise],
                    "seeds": list(range(args.seeds)),
                },
                "backend": {
                    "name": "finetune",
                    "model": args.model,
                    "group_by_length": recipe["group_by_length"],
                },
                "train": {
                    "epochs": args.epochs,
                    "max_length": args.max_length,
                    "precision": recipe["precision"],
                },
                "eval": {"test_size": args.test_size},
                "run": {"store": str(out / f"{name}.sqlite")},
            }
        )
        t0 = time.perf_counter()
        summary = run_experiment(spec)
        seconds = time.perf_counter() - t0
        table = load_results(spec)
        done = table[table["status"] == "done"]
        print(
            f"{name:5}: {recipe}  {summary.n_done} cells run now, {len(done)} stored, "
            f"{seconds:.0f} s this run (fit {done['fit_seconds'].sum():.0f} s over stored cells)"
        )
        if summary.n_failed:
            raise SystemExit(f"{summary.n_failed} cell(s) failed; see `noisegrid status`")
        tables[name] = done.set_index(["train_size", "seed"])["eval_accuracy"] * 100
    if len(tables) < 2:
        return
    print()
    print(_table(tables["exact"], tables["fast"]).to_string(index=False))
    print(
        "\nacc: mean accuracy (%) over seeds; diff: fast − exact, paired by (size, seed), with "
        "its 95% t interval; sd: standard deviation over seeds (accuracy points); "
        "|diff|/sd: the mean difference in units of the exact recipe's seed SD."
    )
    print(f"load after: {_load()}")


def _table(exact: pd.Series, fast: pd.Series) -> pd.DataFrame:
    both = pd.concat({"exact": exact, "fast": fast}, axis=1).dropna()
    rows = []
    for size, group in both.groupby(level="train_size"):
        k = len(group)
        diff = group["fast"] - group["exact"]
        mean = float(diff.mean())
        half = math.nan
        if k > 1:
            half = float(stats.t.ppf(0.975, k - 1) * diff.std(ddof=1) / math.sqrt(k))
        sd_exact = float(group["exact"].std(ddof=1)) if k > 1 else math.nan
        rows.append(
            {
                "size": int(size),  # type: ignore[call-overload]
                "seeds": k,
                "acc exact": round(float(group["exact"].mean()), 2),
                "acc fast": round(float(group["fast"].mean()), 2),
                "diff": round(mean, 2),
                "diff 95% CI": f"{mean - half:+.2f} to {mean + half:+.2f}",
                "sd diff": round(float(diff.std(ddof=1)), 2) if k > 1 else np.nan,
                "sd exact": round(sd_exact, 2),
                "sd fast": round(float(group["fast"].std(ddof=1)), 2) if k > 1 else np.nan,
                "|diff|/sd": round(abs(mean) / sd_exact, 2) if sd_exact > 0 else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - platforms without getloadavg
        return "n/a"


if __name__ == "__main__":
    main()
