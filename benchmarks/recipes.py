"""Benchmark: the exact reference recipe against the fast one, in accuracy, over repeat seeds.

The ``finetune`` backend offers two recipes that differ in two options:

- **exact** (the reference's ``Trainer``): ``[train] precision = "fp32"``,
  ``[backend] group_by_length = false`` (plain random batches);
- **fast**: ``precision = "bf16"`` (bf16 autocast; weights and optimiser state stay fp32) and
  ``group_by_length = true`` (batches of similar lengths, less padding);

and, to tell the two options apart, **grouped**: fp32 with length-grouped batches.

All recipes train the same cells (same subsamples, same test sample per seed, same seeds), so
the differences of their accuracies are paired: per (size, noise rate, seed) they remove the
test-sample and subsample noise the recipes share. Each (size, seed) trains several noise rates
(``--noise``, by default the reference grid's 11), which the backend trains *stacked* on a GPU:
one stacked run gives 11 paired cells at about the cost of one. For each pair of recipes and
each size the script prints the mean accuracy of each, the mean paired difference with its 95%
Student-t interval, and the seed-to-seed standard deviation of the exact recipe's accuracy, the
yardstick a recipe difference has to be judged against. The sibling cells of one (size, seed)
share their subsample and training seed, so they are not independent replicates: the interval
averages each seed's differences over the noise rates and takes the t interval over seeds
(``--by-noise`` adds the mean difference per noise rate).

It drives the backend through the public API (``ExperimentSpec.from_dict`` + ``run_experiment``)
and keeps one SQLite store per recipe under ``--out``, so an interrupted run resumes and recipes
can be run at different times (``--recipes``, ``--bf16-sizes``). On a GPU the defaults take
minutes. On a CPU without native bf16 (AVX512-BF16 / AMX) bf16 autocast is emulated: correct,
but on a 2-core AVX2 machine a bf16 training step of MiniLM took 12× the fp32 one (17 s against
1.4 s of CPU at 64 tokens, batch 16), so there run the bf16 recipe on fewer sizes.

Usage::

    .venv/bin/python benchmarks/recipes.py                                   # GPU: minutes
    nice -n 10 .venv/bin/python benchmarks/recipes.py --sizes 200 500 --bf16-sizes 200 \\
        --max-length 32 --test-size 500 --threads 1 --noise 0 --recipes exact fast grouped
                                   # a 2-core CPU: the table in docs/backends.md (hours there)
    .venv/bin/python benchmarks/recipes.py --no-run                          # the table only
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _machine import load
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RECIPES: dict[str, dict[str, Any]] = {
    "exact": {"precision": "fp32", "group_by_length": False},
    "grouped": {"precision": "fp32", "group_by_length": True},
    "fast": {"precision": "bf16", "group_by_length": True},
}
PAIRS = (("fast", "exact"), ("grouped", "exact"), ("fast", "grouped"))
"""Comparisons printed: the two recipes, then length grouping alone, then bf16 alone."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--bf16-sizes", type=int, nargs="+", default=None, help="default: sizes")
    parser.add_argument("--seeds", type=int, default=5, help="repeat seeds 0..N-1")
    parser.add_argument(
        "--noise",
        type=float,
        nargs="+",
        default=[round(0.025 * i, 3) for i in range(11)],
        help="noise rates, trained stacked per (size, seed) (default: the reference's 0..0.25)",
    )
    parser.add_argument("--stack", default="auto", help='[run] stack ("auto" or members)')
    parser.add_argument(
        "--compile",
        choices=["auto", "true", "false"],
        default="auto",
        help="[backend] compile (auto: the fast recipe compiles on a GPU)",
    )
    parser.add_argument("--by-noise", action="store_true", help="the difference per noise rate")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "recipes"), help="store folder")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--no-run", action="store_true", help="print the table of stored cells")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

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
        f"{args.sizes} (bf16: {args.bf16_sizes or args.sizes}), seeds 0..{args.seeds - 1}, "
        f"noise {args.noise}, stack {args.stack}, test {args.test_size}; device {device}, "
        f"bf16 {bf16}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"load {load()}",
        flush=True,
    )
    accuracy = {}
    order = [*args.recipes, *(r for r in RECIPES if r not in args.recipes)]
    for name in order:  # the recipes to run, in the order given, then the others' stores
        recipe = RECIPES[name]
        sizes = args.sizes
        if recipe["precision"] == "bf16" and args.bf16_sizes:
            sizes = args.bf16_sizes
        spec = ExperimentSpec.from_dict(
            {
                "name": f"recipe-{name}",
                "dataset": {"source": args.data},
                "grid": {
                    "sizes": sizes,
                    "noise_rates": args.noise,
                    "seeds": list(range(args.seeds)),
                },
                "backend": {
                    "name": "finetune",
                    "model": args.model,
                    "group_by_length": recipe["group_by_length"],
                    "compile": {"true": True, "false": False}.get(args.compile, "auto"),
                },
                "train": {
                    "epochs": args.epochs,
                    "max_length": args.max_length,
                    "precision": recipe["precision"],
                },
                "eval": {"test_size": args.test_size},
                "run": {
                    "store": str(out / f"{name}.sqlite"),
                    "stack": args.stack if args.stack == "auto" else int(args.stack),
                },
            }
        )
        if name in args.recipes and not args.no_run:
            t0 = time.perf_counter()
            summary = run_experiment(spec)
            print(
                f"{name:7}: {summary.n_done} cells run now in {time.perf_counter() - t0:.0f} s, "
                f"load {load()}",
                flush=True,
            )
            if summary.n_failed:
                raise SystemExit(f"{summary.n_failed} cell(s) failed; see `noisegrid status`")
        if not Path(spec.run.store).exists():
            continue
        done = load_results(spec, include_failed=False)
        if done.empty:
            continue
        keys = ["train_size", "noise_level", "seed"]
        accuracy[name] = done.set_index(keys)["eval_accuracy"] * 100
        fit_s = done["fit_seconds"].sum()
        stacked = done["info"].astype(str).str.contains('"stack_size"').mean()
        print(
            f"{name:7}: {recipe}, {len(done)} cells stored (fit {fit_s:.0f} s in all, "
            f"{stacked:.0%} trained stacked)"
        )
    table = _table(accuracy)
    if table.empty:
        print("no recipe pair has cells at the same (size, seed) yet")
        return
    print()
    print(table.to_string(index=False))
    print(
        "\nA − B: paired by (size, noise rate, seed); acc: mean accuracy (%) over cells; diff: "
        "mean of A − B with its 95% t interval over seeds (each seed's differences averaged over "
        "the noise rates); sd diff: SD over seeds of those averages; seed sd: SD over seeds of "
        "B's accuracy (accuracy points, averaged over the noise rates); |diff|/sd: the mean "
        f"difference in units of that seed SD. load after: {load()}"
    )
    if args.by_noise:
        print()
        print(_by_noise(accuracy).to_string())


def _pairs(accuracy: dict[str, pd.Series]) -> Any:
    """(A, B, their accuracies side by side on the cells both have) for each printed pair."""
    for a, b in PAIRS:
        if a in accuracy and b in accuracy:
            yield a, b, pd.concat({"a": accuracy[a], "b": accuracy[b]}, axis=1).dropna()


def _table(accuracy: dict[str, pd.Series]) -> pd.DataFrame:
    rows = []
    for a, b, both in _pairs(accuracy):
        for size, cells in both.groupby(level="train_size"):
            # One value per seed: the sibling cells of a seed are not independent replicates.
            group = cells.groupby(level="seed").mean()
            k = len(group)
            diff = group["a"] - group["b"]
            mean = float(diff.mean())
            sd_diff = float(diff.std(ddof=1)) if k > 1 else math.nan
            half = float(stats.t.ppf(0.975, k - 1) * sd_diff / math.sqrt(k)) if k > 1 else math.nan
            seed_sd = float(group["b"].std(ddof=1)) if k > 1 else math.nan
            rows.append(
                {
                    "A − B": f"{a} − {b}",
                    "size": int(size),  # type: ignore[call-overload]
                    "seeds": k,
                    "cells": len(cells),
                    "acc A": round(float(group["a"].mean()), 2),
                    "acc B": round(float(group["b"].mean()), 2),
                    "diff": round(mean, 2),
                    "diff 95% CI": f"{mean - half:+.2f} to {mean + half:+.2f}",
                    "sd diff": round(sd_diff, 2),
                    "seed sd": round(seed_sd, 2),
                    "|diff|/sd": round(abs(mean) / seed_sd, 2) if seed_sd > 0 else math.nan,
                }
            )
    return pd.DataFrame(rows)


def _by_noise(accuracy: dict[str, pd.Series]) -> pd.DataFrame:
    """Mean A − B per (pair, size) and noise rate (columns), over seeds."""
    parts = {}
    for a, b, both in _pairs(accuracy):
        diff = (both["a"] - both["b"]).groupby(level=["train_size", "noise_level"]).mean()
        parts[f"{a} − {b}"] = diff.unstack("noise_level").round(2)
    return pd.concat(parts, names=["A − B", "size"]) if parts else pd.DataFrame()


if __name__ == "__main__":
    main()
