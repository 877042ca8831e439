"""Benchmark: how often the nominal 95% intervals cover the truth, one seed against several.

Simulates laptop-sized grids (5 sizes × 10 noise rates) from a known accuracy surface
(``log_size_interaction`` with coefficients near the TF-IDF laptop grid's) plus seed-level errors
like the real ones: a shift shared by a seed's cells, a seed-level tilt, and an independent part
(cells of one seed correlate about 0.7, as on a real 10-seed TF-IDF grid; see
``tests/synthetic.py``). For each number of seeds it analyses ``--grids`` grids with the analysis's
own fit and bootstrap code and counts how often each interval holds the true value:

- **local rate, as reported**: the marginal exchange rate at the summary cell, Fieller's interval
  from the bootstrap of whole seeds (of cells with one seed), t with units − 1 degrees of freedom;
- **percentile, same replicates**: the 2.5-97.5% percentiles of the same replicates' rates;
- **cell bootstrap**: percentiles over resamples of whole cells, the method used before seeds
  became the resampling unit;
- **reference rate, Fieller / delta**: the reference regression's 1000·(−β_noise/β_size) with
  seed-clustered standard errors (conventional ones with one seed), against the rate of the
  plane that best fits the true surface on the grid.

Also prints the median interval widths and, over every cell of the grid, the mean coverage of
the reported local-rate intervals.

Usage::

    .venv/bin/python benchmarks/coverage.py                 # 300 grids per row (a few minutes)
    .venv/bin/python benchmarks/coverage.py --grids 100 --seeds 1 3
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from _machine import load

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import synthetic as syn  # noqa: E402  (the simulator the coverage test uses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=300, help="simulated grids per row")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    parser.add_argument("--bootstrap", type=int, default=200, help="replicates per grid")
    parser.add_argument("--sd", type=float, default=syn.SD, help="cell error SD (points)")
    parser.add_argument("--shared", type=float, default=syn.SHARED)
    parser.add_argument("--tilt", type=float, default=syn.TILT)
    parser.add_argument("--rng", type=int, default=0)
    args = parser.parse_args()

    from noisegrid.analysis import focus_cell
    from noisegrid.analysis._types import local_rate
    from noisegrid.analysis.rates import bootstrap_fits, rate_interval
    from noisegrid.analysis.regression import fit_reference

    sizes, noise = syn.LAPTOP_SIZES, syn.LAPTOP_NOISE
    focus = focus_cell(sizes, noise)
    assert focus is not None
    fn, fe = np.array([float(focus[0])]), np.array([focus[1]])
    n_all, e_all = (a.ravel().astype(float) for a in np.meshgrid(sizes, noise, indexing="ij"))
    truth_all = np.array([syn.laptop_rate(a, b) for a, b in zip(n_all, e_all, strict=True)])
    truth = syn.laptop_rate(*focus)
    plane = np.column_stack([np.ones_like(n_all), n_all / 1000, 100 * e_all])
    coef = np.linalg.lstsq(plane, syn.laptop_surface(n_all, e_all), rcond=None)[0]
    truth_ref = 1000 * -coef[2] / coef[1]
    rng = np.random.default_rng(args.rng)
    print(
        f"coverage of nominal 95% intervals: {args.grids} grids per row, {len(sizes)} sizes × "
        f"{len(noise)} noise rates, B={args.bootstrap}; cell error SD {args.sd:g} points, "
        f"mean within-seed correlation {syn.mean_correlation(args.shared, args.tilt):.2f}; "
        f"true marginal rate at {focus[0]:,} / {focus[1] * 100:g}% = {truth:.1f}, true plane "
        f"rate {truth_ref:.1f}; cpus {os.cpu_count()}, load {load()}"
    )
    header = (
        f"{'seeds':>5} | {'reported':>8} {'width':>6} {'unbnd':>5} | {'pctile':>6} | "
        f"{'cell bs':>7} {'width':>6} | {'all cells':>9} | {'ref Fieller':>11} "
        f"{'ref delta':>9} | {'s':>5}"
    )
    print(header)
    print("-" * len(header))
    for g in args.seeds:
        t0 = time.perf_counter()
        hit = {"fieller": 0, "pct": 0, "cell": 0, "ref_f": 0, "ref_d": 0}
        width: dict[str, list[float]] = {"fieller": [], "cell": []}
        unbounded = 0
        all_cells = []
        for _ in range(args.grids):
            errors = syn.seed_errors(
                sizes, noise, g, rng, sd=args.sd, shared=args.shared, tilt=args.tilt
            )
            table = syn.synthetic_table(syn.laptop_surface, errors)
            fit = syn.fit_surface(
                table, "log_size_interaction", n_bootstrap=args.bootstrap, rng=rng
            )
            _, low, high = rate_interval(fit, fn, fe, 0.95)
            hit["fieller"] += bool(low[0] <= truth <= high[0])
            unbounded += not math.isfinite(high[0])
            width["fieller"].append(float(high[0] - low[0]))
            _, low_all, high_all = rate_interval(fit, n_all, e_all, 0.95)
            all_cells.append(float(np.mean((low_all <= truth_all) & (truth_all <= high_all))))
            rates = np.array([local_rate(fit.candidate, p, fn, fe)[0] for p in fit.boot_params])
            lo, hi = np.quantile(rates, [0.025, 0.975])
            hit["pct"] += bool(lo <= truth <= hi)
            # The earlier method: resample whole cells (every seed of a cell with it).
            n = table["train_size"].to_numpy(dtype=float)
            eta = table["noise_level"].to_numpy(dtype=float)
            y = table["eval_accuracy"].to_numpy(dtype=float) * 100
            cell = table.groupby(["train_size", "noise_level"]).ngroup().to_numpy()
            boot, _ = bootstrap_fits(
                fit.candidate,
                n,
                eta,
                y,
                cell,
                np.zeros_like(cell),
                n_bootstrap=args.bootstrap,
                rng=rng,
            )
            rates = np.array([local_rate(fit.candidate, p, fn, fe)[0] for p in boot])
            lo, hi = np.quantile(rates, [0.025, 0.975])
            hit["cell"] += bool(lo <= truth <= hi)
            width["cell"].append(float(hi - lo))
            ref = fit_reference(table, 0.95, "auto")
            f, d = ref.exchange_rate, ref.exchange_rate_delta
            assert f is not None and d is not None
            hit["ref_f"] += bool(f.low <= truth_ref <= f.high)
            hit["ref_d"] += bool(d.low <= truth_ref <= d.high)
        k = args.grids
        print(
            f"{g:5d} | {hit['fieller'] / k:8.1%} {np.median(width['fieller']):6.0f} "
            f"{unbounded:5d} | {hit['pct'] / k:6.1%} | {hit['cell'] / k:7.1%} "
            f"{np.median(width['cell']):6.0f} | {np.mean(all_cells):9.1%} | "
            f"{hit['ref_f'] / k:11.1%} {hit['ref_d'] / k:9.1%} | {time.perf_counter() - t0:5.0f}"
        )
    print(
        "\nreported: the analysis's local-rate interval at the summary cell (Fieller on the seed "
        "bootstrap; cell bootstrap with one seed), its median width (examples) and how many were "
        "unbounded; pctile: percentile interval of the same replicates; cell bs: the earlier "
        "cell bootstrap; all cells: mean coverage of the reported intervals over the 50 cells; "
        "ref: the reference regression's rate. The coverage of a 95% interval estimated from "
        f"{args.grids} grids has a standard error of about "
        f"{math.sqrt(0.95 * 0.05 / args.grids):.1%}. load after: {load()}"
    )


if __name__ == "__main__":
    main()
