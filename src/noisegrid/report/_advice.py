"""Figures and the report section of the audit and the advice.

- the audit's calibration: estimated against injected noise, with the precision of the suspect
  list (matplotlib PNG, written by ``noisegrid audit --out``);
- the advice: predicted accuracy against budget for each strategy, with intervals (a matplotlib
  PNG for ``noisegrid advise --out`` and the report's ``figures/``, a plotly figure and an HTML
  section for the report).

The numbers come from the result objects (:class:`noisegrid.AuditResult`,
:class:`noisegrid.AdviceResult`); this module only draws them.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..analysis.advise import AdviceResult
    from ..auditing import AuditResult

_DPI = 150
STRATEGY_COLORS = {"collect": "#3a6ea5", "clean": "#c8553d", "mix": "#2a9d5c"}
STRATEGY_NAMES = {"collect": "new labels only", "clean": "reviews only", "mix": "best mix"}


def write_calibration_png(result: AuditResult, path: Path) -> Path:
    """Estimated vs injected noise (left) and the suspect list's precision by depth (right)."""
    cal = result.calibration
    fig = Figure(figsize=(10, 4.2))
    ax, ax2 = fig.subplots(1, 2)
    x = 100 * cal["injected"].to_numpy(dtype=float)
    est = 100 * cal["estimated"].to_numpy(dtype=float)
    # Without a bootstrap the bounds are NaN: draw no error bar.
    lo = np.where(cal["ci_low"].isna(), est, 100 * cal["ci_low"].to_numpy(dtype=float))
    hi = np.where(cal["ci_high"].isna(), est, 100 * cal["ci_high"].to_numpy(dtype=float))
    ax.plot(
        x,
        100 * cal["expected"].to_numpy(dtype=float),
        "--",
        color="#888",
        label="expected (injected + the labels' own noise)",
    )
    ax.plot(x, x, ":", color="#bbb", label="injected")
    ax.errorbar(
        x,
        est,
        yerr=[est - lo, hi - est],
        fmt="o-",
        color="#3a6ea5",
        capsize=3,
        label="audit estimate (95% CI)",
    )
    ax.set_xlabel("uniform noise injected (%)")
    ax.set_ylabel("label noise (%)")
    ax.set_title("Audit estimate against injected noise")
    ax.legend(fontsize=8)
    curves = result.precision_curves
    for rate in sorted(curves["injected"].unique()):
        c = curves[curves["injected"] == rate]
        ax2.plot(c["depth"], c["precision"], label=f"{100 * rate:g}% injected")
    ax2.set_xscale("log")
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("suspects reviewed (top k)")
    ax2.set_ylabel("precision (share truly flipped)")
    ax2.set_title("Precision of the suspect list")
    ax2.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def write_advice_png(result: AdviceResult, path: Path) -> Path:
    """Predicted accuracy against budget, one line (and 95% band) per strategy."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for strategy, c in result.curve.groupby("strategy", sort=False):
        color = STRATEGY_COLORS[str(strategy)]
        ax.plot(c["budget"], c["accuracy_pct"], color=color, label=STRATEGY_NAMES[str(strategy)])
        if c["low"].notna().any():
            ax.fill_between(c["budget"], c["low"], c["high"], color=color, alpha=0.15, lw=0)
    ax.axvline(result.budget, color="#888", ls=":", lw=1)
    ax.set_xlabel(f"budget ({result.currency})")
    ax.set_ylabel("predicted accuracy (%)")
    ax.set_title(f"What the budget buys: {result.size:,} labels at {100 * result.noise:.1f}% noise")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def advice_figure(result: AdviceResult) -> go.Figure:
    """The advice figure for the HTML report (plotly)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for strategy, c in result.curve.groupby("strategy", sort=False):
        color = STRATEGY_COLORS[str(strategy)]
        name = STRATEGY_NAMES[str(strategy)]
        if c["low"].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=np.concatenate([c["budget"], c["budget"][::-1]]),
                    y=np.concatenate([c["high"], c["low"][::-1]]),
                    fill="toself",
                    fillcolor=_rgba(color, 0.15),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=name,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=c["budget"],
                y=c["accuracy_pct"],
                mode="lines",
                name=name,
                legendgroup=name,
                line={"color": color},
                customdata=np.column_stack([c["n_reviews"], c["n_new"], 100 * c["noise"]]),
                hovertemplate=(
                    "budget %{x:.2f}<br>accuracy %{y:.2f}%<br>reviews %{customdata[0]:,}"
                    "<br>new labels %{customdata[1]:,}<br>noise after %{customdata[2]:.1f}%"
                    "<extra></extra>"
                ),
            )
        )
    fig.add_vline(x=result.budget, line={"dash": "dot", "color": "#888"})
    fig.update_layout(
        template="plotly_white",
        title="What the budget buys (95% bands: the surface's bootstrap)",
        xaxis_title=f"budget ({result.currency})",
        yaxis_title="predicted accuracy (%)",
        margin={"l": 70, "r": 30, "t": 60, "b": 60},
    )
    return fig


def advice_table(result: AdviceResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the advice table (strategy outcomes at a few budgets)."""
    header = [
        "budget",
        "strategy",
        "reviews",
        "new labels",
        "labels fixed",
        "labels after",
        "noise after",
        "accuracy",
        "95% CI",
        "gain (points)",
    ]
    rows = []
    for r in result.table.to_dict("records"):
        ci = "" if math.isnan(r["low"]) else f"{r['low']:.1f}–{r['high']:.1f}%"
        rows.append(
            [
                result.money(r["budget"]),
                STRATEGY_NAMES[r["strategy"]],
                f"{r['n_reviews']:,}",
                f"{r['n_new']:,}",
                f"{r['n_fixed']:,.0f}",
                f"{r['size']:,}" + (" (extrapolated)" if r["extrapolated"] else ""),
                f"{100 * r['noise']:.1f}%",
                f"{r['accuracy_pct']:.1f}%",
                ci,
                f"{r['gain_pct']:+.2f}",
            ]
        )
    return header, rows


def advice_section(result: AdviceResult, figure_html: str, table_html: str) -> str:
    """The report's "Advice" section."""
    e = html.escape
    parts = ['<section id="advice"><h2>Advice</h2>', '<div class="summary">']
    parts.append(f"<p><b>{e(result.recommendation)}</b></p><p>{e(result.reason)}</p></div>")
    est, lo, hi = result.baseline
    ci = "" if math.isnan(lo) else f" (95% CI {lo:.1f}–{hi:.1f}%)"
    parts.append(
        f"<p>Now: {result.size:,} labels at {100 * result.noise:.1f}% noise, predicted accuracy "
        f"{est:.1f}%{e(ci)}. A new label costs {e(result.money(result.label_cost))} (arriving at "
        f"{100 * result.new_label_noise:.1f}% noise), a review "
        f"{e(result.money(result.review_cost))}; review precision from "
        f"{e(result.review_source)}.</p>"
    )
    parts.append(figure_html)
    parts.append(table_html)
    if result.notes:
        parts.append(
            '<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in result.notes) + "</ul>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


__all__ = [
    "advice_figure",
    "advice_section",
    "advice_table",
    "write_advice_png",
    "write_calibration_png",
]
