"""Tables of an analysis as rows of strings, shared by the HTML report and ``summary.md``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import Analysis, NoiseModelAnalysis, RegressionResult, format_number

Table = tuple[list[str], list[list[str]]]
"""A header and rows, every cell already formatted."""


def pct(eta: float) -> str:
    """A noise fraction as percent text: ``0.125`` → ``"12.5%"``."""
    return f"{eta * 100:g}%"


def num(x: Any, digits: int = 3) -> str:
    """A float with ``digits`` decimals, or ``"–"`` when missing."""
    if x is None or (isinstance(x, float | np.floating) and not math.isfinite(float(x))):
        return "–"
    return f"{float(x):.{digits}f}"


def pvalue(p: Any) -> str:
    """A p-value: ``<0.001`` below one in a thousand."""
    if p is None or not math.isfinite(float(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def interval(low: Any, high: Any, fmt: Any = format_number) -> str:
    """``"low to high"``, ``"unbounded"`` (a ratio's Fieller interval), or ``"–"`` if missing."""
    if low is None or high is None or math.isnan(float(low)) or math.isnan(float(high)):
        return "–"
    if float(low) == -math.inf and float(high) == math.inf:
        return "unbounded"
    return f"{fmt(float(low))} to {fmt(float(high))}"


def regression_table(ref: RegressionResult) -> Table:
    """The reference regression's coefficients."""
    level = "95%"
    header = ["term", "coefficient", "std. error", "t", "p-value", f"{level} CI"]
    rows = []
    for term, r in ref.table.iterrows():
        rows.append(
            [
                str(term),
                num(r["coef"], 4),
                num(r["std_err"], 4),
                num(r["t"], 2),
                pvalue(r["p_value"]),
                interval(r["ci_low"], r["ci_high"], lambda v: f"{v:.4f}"),
            ]
        )
    return header, rows


def regression_facts(ref: RegressionResult) -> list[tuple[str, str]]:
    """R², observations, covariance and exchange rate of the reference regression."""
    if ref.skipped:
        return [("skipped", ref.skipped)]
    facts = [
        ("formula", ref.formula),
        ("runs", str(ref.n_obs)),
        ("R² (adjusted)", f"{ref.r_squared:.3f} ({ref.adj_r_squared:.3f})"),
        (
            "standard errors",
            f"clustered by seed ({ref.n_clusters} seeds)"
            if ref.cov_type.startswith("cluster")
            else "conventional OLS (one seed)",
        ),
    ]
    if ref.exchange_rate is not None:
        r = ref.exchange_rate
        facts.append(
            (
                "examples per noise point, 1000·(−β_noise/β_size)",
                f"{format_number(r.estimate)} ({r.ci_text()}, {r.method})",
            )
        )
    if ref.exchange_rate_delta is not None:
        r = ref.exchange_rate_delta
        facts.append(("same, symmetric delta-method interval", r.ci_text() or "–"))
    if ref.cov_type.startswith("cluster") and ref.exchange_rate_iid is not None:
        r = ref.exchange_rate_iid
        facts.append(("same, conventional OLS errors (as published)", r.ci_text()))
    return facts


def comparison_table(nma: NoiseModelAnalysis, focus: tuple[int, float] | None) -> Table:
    """The candidate surfaces, best first among the fitted ones, and why each is used or not."""
    at = f" at {focus[0]:,} / {pct(focus[1])}" if focus else ""
    header = [
        "surface",
        "form (accuracy %; n examples, p noise points)",
        "params",
        "CV RMSE",
        "CV MAE",
        "RMSE",
        "R²",
        f"examples per noise point{at}",
        "used for the rates?",
    ]
    rows = []
    table = nma.surfaces.sort_values("cv_rmse", na_position="last")
    for _, r in table.iterrows():
        rows.append(
            [
                _surface_name(r),
                str(r["expression"]),
                str(r["n_params"]),
                num(r["cv_rmse"], 3),
                num(r["cv_mae"], 3),
                num(r["rmse"], 3),
                num(r["r_squared"], 3),
                format_number(float(r["rate_at_focus"])) if pd.notna(r["rate_at_focus"]) else "–",
                _use_note(r, nma),
            ]
        )
    return header, rows


def _surface_name(row: pd.Series) -> str:
    return f"{row['label']} ({row['name']})" if row.get("label") else str(row["name"])


def _use_note(row: pd.Series, nma: NoiseModelAnalysis) -> str:
    """Why a candidate surface gives the rates, or why not."""
    if row["selected"]:
        if bool(row.get("rate_from_form")):
            return "yes, though its form fixes the rate: no other surface could be fitted"
        return "yes: the lowest CV RMSE among the surfaces whose rate the data determine"
    skipped = row["skipped"]
    if isinstance(skipped, str) and skipped:
        return f"no: not fitted, {skipped}"
    if nma.form_fixed is not None and row["name"] == nma.form_fixed.name:
        return "no: it fits best, but its form fixes the rate, so the data do not measure it"
    chosen = nma.surfaces[nma.surfaces["selected"].astype(bool)]
    if chosen.empty:
        return "no"
    best = chosen.iloc[0]
    if bool(row.get("rate_from_form")):
        return "no: its form fixes the rate, and another surface fits better"
    return (
        f"no: CV RMSE {num(row['cv_rmse'], 3)} against {num(best['cv_rmse'], 3)} for {best['name']}"
    )


def rate_grid_table(nma: NoiseModelAnalysis) -> Table:
    """Local exchange rates, one row per noise level and one column per size."""
    lr = nma.local_rates
    sizes = sorted(set(lr["train_size"].astype(int)))
    header = ["noise \\ size", *[f"{n:,}" for n in sizes]]
    rows = []
    for eta, g in lr.groupby("noise_level", sort=True):
        by_size = {int(r["train_size"]): r for r in g.to_dict("records")}
        row = [pct(float(eta))]  # type: ignore[arg-type]
        for n in sizes:
            r = by_size.get(n)
            if r is None:
                row.append("–")
                continue
            ci = interval(r["rate_low"], r["rate_high"])
            text = format_number(float(r["rate"]))
            row.append(text if ci == "–" else f"{text} [{ci}]")
        rows.append(row)
    return header, rows


def cells_table(nma: NoiseModelAnalysis) -> Table:
    """Per-cell accuracy statistics."""
    header = ["size", "noise", "seeds done", "failed", "accuracy %", "sd", "95% interval", "method"]
    rows = []
    for r in nma.cells.to_dict("records"):
        rows.append(
            [
                f"{int(r['train_size']):,}",
                pct(float(r["noise_level"])),
                str(int(r["n_done"])),
                str(int(r["n_failed"])),
                num(r["accuracy_pct"], 2),
                num(r["sd_pct"], 2),
                interval(r["ci_low_pct"], r["ci_high_pct"], lambda v: f"{v:.2f}"),
                str(r["ci_method"]),
            ]
        )
    return header, rows


def noise_model_table(analysis: Analysis) -> Table:
    """Exchange rates of each noise model side by side."""
    focus = analysis.focus
    at = f" at {focus[0]:,} / {pct(focus[1])}" if focus else ""
    header = [
        "noise model",
        "runs done",
        "failed",
        "β_noise (points per noise point)",
        "reference rate",
        "best surface",
        f"local rate{at}",
        "local rate range (measured cells)",
    ]
    rows: list[list[str]] = []
    comp = analysis.noise_model_comparison
    if comp is None:
        return header, rows
    for _, r in comp.iterrows():
        ref = format_number(float(r["reference_rate"]))
        ref_ci = interval(r["reference_low"], r["reference_high"])
        loc = format_number(float(r["focus_rate"]))
        loc_ci = interval(r["focus_low"], r["focus_high"])
        rows.append(
            [
                str(r["noise_model"]),
                str(int(r["n_done"])),
                str(int(r["n_failed"])),
                num(r["noise_coef"], 3),
                ref if ref_ci == "–" else f"{ref} [{ref_ci}]",
                str(r["best_surface"] or "–"),
                loc if loc_ci == "–" else f"{loc} [{loc_ci}]",
                interval(r["min_local_rate"], r["max_local_rate"]),
            ]
        )
    return header, rows


def key_values(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A flat mapping as (key, text) pairs; nested mappings are shown as ``k=v`` lists."""
    out = []
    for k, v in data.items():
        if isinstance(v, Mapping):
            text = ", ".join(f"{kk}={vv}" for kk, vv in v.items())
        elif isinstance(v, list | tuple):
            text = ", ".join(str(x) for x in v)
        else:
            text = str(v)
        out.append((str(k), text))
    return out
