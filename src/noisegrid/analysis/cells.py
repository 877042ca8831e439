"""Preparing the results table, and per-cell statistics over repeat seeds.

Owns the checks every analysis function runs on its input (required columns, numeric types,
noise rates rounded onto one cell, the noise model to analyse, the confidence level), the per-cell
summary with its Student-t or Wilson intervals (:func:`cell_summary`), the expected grid and its
coverage (which runs are done, failed or missing), and the cell that the summary talks about.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import AnalysisError
from ._types import Coverage, FloatArray

__all__ = ["cell_summary"]


REQUIRED_COLUMNS = ("train_size", "noise_level", "seed", "status", "eval_accuracy")
"""Columns of the tidy table that the analysis cannot do without."""


NOISE_DECIMALS = 6
"""Noise rates are rounded to this many decimals so that 0.025 * 3 and 0.075 are one cell."""


def cell_summary(results: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Per-cell accuracy statistics over repeat seeds.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results table.
    confidence : float, default 0.95
        Level of the intervals.

    Returns
    -------
    pandas.DataFrame
        One row per (``noise_model``, ``train_size``, ``noise_level``) with ``n_done``,
        ``n_failed``, ``accuracy_pct`` (mean over seeds), ``sd_pct`` (standard deviation over
        seeds, NaN with one seed), ``ci_low_pct``, ``ci_high_pct`` and ``ci_method``: a Student-t
        interval over seeds when there are several, else a Wilson interval for the test-sample
        accuracy (from ``test_size``; the interval then covers test sampling only).

    Raises
    ------
    AnalysisError
        If the table lacks a required column or ``confidence`` is not in (0, 1).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"train_size": [1000, 1000], "noise_level": [0.1, 0.1],
    ...     "seed": [0, 1], "status": ["done", "done"], "eval_accuracy": [0.80, 0.82]})
    >>> row = cell_summary(table).iloc[0]
    >>> int(row["n_done"]), round(float(row["accuracy_pct"]), 1), row["ci_method"]
    (2, 81.0, 't over seeds')
    """
    check_confidence(confidence)
    return cell_stats(prepare_table(results), confidence)


def prepare_table(results: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(results, pd.DataFrame):
        raise AnalysisError(
            "results must be a pandas DataFrame (the tidy table from noisegrid.load_results or "
            f"`noisegrid export`); got {type(results).__name__}"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise AnalysisError(
            f"the results table lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, results.columns)) or 'no columns'}; pass the tidy table from "
            "noisegrid.load_results or `noisegrid export`"
        )
    df = results.copy()
    if "noise_model" not in df.columns:
        df["noise_model"] = "uniform"
    df["noise_model"] = df["noise_model"].fillna("uniform").astype(str)
    df["status"] = df["status"].astype(str).str.lower()
    for col in ("train_size", "noise_level", "seed"):
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any():
            raise AnalysisError(
                f"column '{col}' of the results table must be numeric with no gaps; "
                f"{int(values.isna().sum())} row(s) are empty or not numbers"
            )
        df[col] = values
    df["train_size"] = df["train_size"].astype(int)
    df["seed"] = df["seed"].astype(int)
    df["noise_level"] = df["noise_level"].astype(float).round(NOISE_DECIMALS)
    df["eval_accuracy"] = pd.to_numeric(df["eval_accuracy"], errors="coerce").astype(float)
    done_acc = df.loc[df["status"] == "done", "eval_accuracy"]
    if (done_acc > 1).any():
        raise AnalysisError(
            "eval_accuracy must be a fraction in [0, 1]; the table has values up to "
            f"{done_acc.max():g} — divide by 100 if they are percentages"
        )
    return df.reset_index(drop=True)


def done_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "done") & df["eval_accuracy"].notna()]


def cell_stats(df: pd.DataFrame, confidence: float) -> pd.DataFrame:
    keys = ["noise_model", "train_size", "noise_level"]
    columns = [*keys, "n_done", "n_failed", "accuracy_pct", "sd_pct", "ci_low_pct"]
    columns += ["ci_high_pct", "ci_method"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    cells = df[keys].drop_duplicates().sort_values(keys).reset_index(drop=True)
    done = done_rows(df).assign(acc_pct=lambda d: d["eval_accuracy"] * 100)
    agg = done.groupby(keys)["acc_pct"].agg(["count", "mean", "std"]).reset_index()
    failed = df[df["status"] == "failed"].groupby(keys).size().rename("n_failed").reset_index()
    out = cells.merge(agg, on=keys, how="left").merge(failed, on=keys, how="left")
    if "test_size" in done.columns:
        tests = done.assign(m=pd.to_numeric(done["test_size"], errors="coerce"))
        out = out.merge(tests.groupby(keys)["m"].first().reset_index(), on=keys, how="left")
    else:
        out["m"] = np.nan
    k = out["count"].fillna(0).to_numpy(dtype=float)
    mean = out["mean"].to_numpy(dtype=float)
    sd = np.where(k > 1, out["std"].to_numpy(dtype=float), np.nan)
    low = np.full(len(out), np.nan)
    high = np.full(len(out), np.nan)
    method = np.full(len(out), "", dtype=object)
    several = k > 1
    if several.any():
        q = stats.t.ppf(0.5 + confidence / 2, k[several] - 1)
        half = q * sd[several] / np.sqrt(k[several])
        low[several], high[several] = mean[several] - half, mean[several] + half
        method[several] = "t over seeds"
    m = out["m"].to_numpy(dtype=float)
    one = (k == 1) & np.isfinite(m) & (m > 0)
    if one.any():
        w_low, w_high = _wilson(mean[one] / 100, m[one], confidence)
        low[one], high[one] = w_low * 100, w_high * 100
        method[one] = "Wilson (test sample)"
    return pd.DataFrame(
        {
            "noise_model": out["noise_model"],
            "train_size": out["train_size"].astype(int),
            "noise_level": out["noise_level"].astype(float),
            "n_done": k.astype(int),
            "n_failed": out["n_failed"].fillna(0).astype(int),
            "accuracy_pct": mean,
            "sd_pct": sd,
            "ci_low_pct": low,
            "ci_high_pct": high,
            "ci_method": method.astype(str),
        },
        columns=columns,
    )


def _wilson(p: FloatArray, n: FloatArray, confidence: float) -> tuple[FloatArray, FloatArray]:
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At p = 0 or 1 one end equals p exactly; rounding can put it a hair on the wrong side
    # (99.99999999999997 for 100% accuracy), which plotting libraries refuse as an error bar.
    return np.minimum(centre - half, p), np.maximum(centre + half, p)


def expected_grid(
    df: pd.DataFrame, grid: Mapping[str, Any] | None
) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    sizes = set(df["train_size"].astype(int))
    noise = set(df["noise_level"].astype(float))
    seeds = set(df["seed"].astype(int))
    if grid is not None:
        if not isinstance(grid, Mapping):
            raise AnalysisError(
                "grid must be a mapping like the spec's [grid] section (sizes, noise_rates, "
                f"seeds); got {type(grid).__name__}"
            )
        sizes |= {int(s) for s in grid.get("sizes", ())}
        noise |= {round(float(e), NOISE_DECIMALS) for e in grid.get("noise_rates", ())}
        if grid.get("seeds"):
            seeds |= {int(s) for s in grid["seeds"]}
        elif grid.get("repeats"):
            seeds |= set(range(int(grid["repeats"])))
    return tuple(sorted(sizes)), tuple(sorted(noise)), tuple(sorted(seeds))


def measure_coverage(
    df: pd.DataFrame, expected: tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]
) -> Coverage:
    sizes, noise, seeds = expected
    key = ["train_size", "noise_level", "seed"]
    full = pd.MultiIndex.from_product([sizes, noise, seeds], names=key).to_frame(index=False)
    present = df[key].drop_duplicates()
    merged = full.merge(present, on=key, how="left", indicator=True)
    missing = merged.loc[merged["_merge"] == "left_only", key].reset_index(drop=True)
    failed_rows = df[df["status"] != "done"]
    errors = failed_rows["error"] if "error" in failed_rows.columns else ""
    failed = failed_rows[key].assign(error=errors).reset_index(drop=True)
    done = done_rows(df)
    n_done = len(done)
    return Coverage(
        sizes=sizes,
        noise_levels=noise,
        seeds=seeds,
        n_expected=len(full),
        n_done=n_done,
        n_failed=len(failed),
        n_missing=len(missing),
        missing=missing,
        failed=failed,
        measured_sizes=tuple(sorted({int(v) for v in done["train_size"]})),
        measured_noise_levels=tuple(sorted({float(v) for v in done["noise_level"]})),
    )


def infer_n_classes(df: pd.DataFrame) -> int | None:
    """K from the runner's ``info`` JSON (``flipped_per_class`` has one entry per class)."""
    if "info" not in df.columns:
        return None
    found = 0
    for text in df["info"].dropna().astype(str).head(50):
        try:
            info = json.loads(text)
        except ValueError:
            continue
        per_class = info.get("flipped_per_class") if isinstance(info, dict) else None
        if isinstance(per_class, list):
            found = max(found, len(per_class))
    return found if found >= 2 else None


def ordered_noise_models(df: pd.DataFrame) -> list[str]:
    names = sorted(set(df["noise_model"]))
    return sorted(names, key=lambda s: (s != "uniform", s))


def pick_noise_model(df: pd.DataFrame, noise_model: str | None) -> str:
    return pick_noise_model_from(ordered_noise_models(df), noise_model)


def pick_noise_model_from(available: list[str], noise_model: str | None) -> str:
    if not available:
        raise AnalysisError(
            "the results table has no rows; run the grid first (noisegrid run CONFIG)"
        )
    if noise_model is None:
        if len(available) == 1:
            return available[0]
        raise AnalysisError(
            f"the table holds several noise models ({', '.join(available)}); choose one with "
            "noise_model=... (CLI: --noise-model NAME)"
        )
    if noise_model not in available:
        raise AnalysisError(
            f"noise model '{noise_model}' is not in the table; it has: {', '.join(available)}"
        )
    return noise_model


def check_confidence(confidence: float) -> None:
    if not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise AnalysisError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")


def focus_cell(sizes: Sequence[int], noise: Sequence[float]) -> tuple[int, float] | None:
    if not sizes or not noise:
        return None
    positive = [e for e in noise if e > 0] or list(noise)
    return int(sizes[(len(sizes) - 1) // 2]), float(positive[(len(positive) - 1) // 2])
