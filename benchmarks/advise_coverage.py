"""Benchmark: how often advise's intervals and the audit's calibrated estimate hold the truth.

**Advice** (simulated grids). Laptop-sized grids (5 sizes × 10 noise rates) from a known accuracy
surface plus seed-level errors like the real ones (the simulator of ``tests/synthetic.py``, as in
``benchmarks/coverage.py``). Each grid is analysed and ``advise`` asked one question (3,000
labels at 10% noise, a fixed review precision); the truth of each printed number is the known
surface at the same point:

- **baseline**: the accuracy now;
- **outcomes**: the accuracy after spending, for each strategy (collect, clean, mix) at every
  budget of the table;
- **gains**: outcome minus baseline, for the same rows.

**Audit** (simulated labels). Learnable synthetic texts (three unequal classes, the texts of
``tests/test_audit.py``) with a known share of labels flipped by an independent generator; the
truth is that share. Counts how often the calibrated estimate's interval holds it, and the raw
count's, at several noise rates and seeds.

Usage::

    .venv/bin/python benchmarks/advise_coverage.py                    # 200 grids, 40 audits
    .venv/bin/python benchmarks/advise_coverage.py --grids 50 --audits 0 --seeds 3
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

QUESTION = {
    "size": 3000,
    "noise": 0.1,
    "label_cost": 0.10,
    "review_cost": 0.05,
    "budget": 50.0,
    "review_precision": 0.7,
}


def advise_coverage(n_grids: int, n_seeds: int, n_bootstrap: int, rng_seed: int) -> None:
    import noisegrid

    rng = np.random.default_rng(rng_seed)
    hits: dict[str, list[bool]] = {"baseline": [], "outcomes": [], "gains": []}
    widths: dict[str, list[float]] = {k: [] for k in hits}
    size, noise = float(QUESTION["size"]), float(QUESTION["noise"])
    truth_base = float(syn.laptop_surface(np.array([size]), np.array([noise]))[0])
    t0 = time.perf_counter()
    for g in range(n_grids):
        errors = syn.seed_errors(syn.LAPTOP_SIZES, syn.LAPTOP_NOISE, n_seeds, rng)
        table = syn.synthetic_table(syn.laptop_surface, errors)
        analysis = noisegrid.analyze(table, n_bootstrap=n_bootstrap, seed=g)
        result = noisegrid.advise(analysis, allow_extrapolation=True, **QUESTION)
        _, low, high = result.baseline
        hits["baseline"].append(low <= truth_base <= high)
        widths["baseline"].append(high - low)
        for row in result.table.itertuples():
            truth = float(syn.laptop_surface(np.array([row.size]), np.array([row.noise]))[0])
            hits["outcomes"].append(row.low <= truth <= row.high)
            widths["outcomes"].append(row.high - row.low)
            gain = truth - truth_base
            hits["gains"].append(row.gain_low <= gain <= row.gain_high)
            widths["gains"].append(row.gain_high - row.gain_low)
    seconds = time.perf_counter() - t0
    print(
        f"advise: {n_grids} simulated grids, {n_seeds} seeds, B={n_bootstrap}, nominal 95%; "
        f"question {QUESTION}; {seconds:.0f}s"
    )
    header = f"{'quantity':<10} {'intervals':>9} {'coverage':>9} {'median width':>13}"
    print(header)
    print("-" * len(header))
    for name, h in hits.items():
        print(f"{name:<10} {len(h):>9} {np.mean(h):>9.1%} {np.median(widths[name]):>10.2f} pts")
    print(f"Monte Carlo SE of a 95% coverage over {n_grids} grids: {_se(n_grids):.1%}")


def audit_coverage(n_audits: int, rates: list[float]) -> None:
    import noisegrid
    from test_audit import imbalanced_texts

    rows = []
    t0 = time.perf_counter()
    per_rate = max(1, n_audits // len(rates))
    for rate in rates:
        for seed in range(per_rate):
            texts, labels, _, flipped = imbalanced_texts(rate=rate, seed=seed)
            result = noisegrid.audit(texts, labels, n_bootstrap=100, seed=seed)
            truth = float(flipped.mean())
            cal, raw = result.calibrated_noise_rate, result.noise_rate
            rows.append(
                (
                    rate,
                    cal.low <= truth <= cal.high,
                    raw.low <= truth <= raw.high,
                    cal.estimate - truth,
                    raw.estimate - truth,
                    cal.high - cal.low,
                )
            )
    seconds = time.perf_counter() - t0
    print(
        f"audit: {len(rows)} simulated label sets (650 synthetic texts, 3 classes, independent "
        f"flips), nominal 95%; {seconds:.0f}s"
    )
    header = (
        f"{'true noise':>10} {'n':>3} {'calibrated covers':>18} {'raw covers':>11} "
        f"{'calibrated bias':>16} {'raw bias':>9} {'cal. width':>11}"
    )
    print(header)
    print("-" * len(header))
    data = np.array(rows, dtype=float)
    for rate in rates:
        d = data[data[:, 0] == rate]
        print(
            f"{rate:>10.0%} {len(d):>3} {d[:, 1].mean():>18.0%} {d[:, 2].mean():>11.0%} "
            f"{100 * d[:, 3].mean():>+13.1f} pt {100 * d[:, 4].mean():>+6.1f} pt "
            f"{100 * np.median(d[:, 5]):>8.1f} pt"
        )
    print(
        f"{'all':>10} {len(data):>3} {data[:, 1].mean():>18.0%} {data[:, 2].mean():>11.0%} "
        f"{100 * data[:, 3].mean():>+13.1f} pt {100 * data[:, 4].mean():>+6.1f} pt "
        f"{100 * np.median(data[:, 5]):>8.1f} pt"
    )


def _se(n: int) -> float:
    return math.sqrt(0.95 * 0.05 / n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=200, help="simulated grids for advise")
    parser.add_argument("--seeds", type=int, default=3, help="repeat seeds per grid")
    parser.add_argument("--bootstrap", type=int, default=200, help="replicates per grid")
    parser.add_argument("--audits", type=int, default=40, help="simulated audits (0: none)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    parser.add_argument("--rng", type=int, default=0)
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load {load()}")
    if args.grids:
        advise_coverage(args.grids, args.seeds, args.bootstrap, args.rng)
    if args.audits:
        print()
        audit_coverage(args.audits, args.rates)
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
