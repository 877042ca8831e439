"""Interactive plotly figures of an analysis (the HTML report's figures).

Each builder takes one :class:`~noisegrid.analysis.NoiseModelAnalysis` (or the whole
:class:`~noisegrid.analysis.Analysis` for the noise-model comparison) and returns a
``plotly.graph_objects.Figure``, or ``None`` with nothing to draw. :func:`make_figures` collects
them under stable names, which are also the HTML element ids and the PNG file names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale, unlabel_rgb

from ..analysis import Analysis, NoiseModelAnalysis, format_number
from ..analysis._types import differs
from ._colors import label_color
from ._tables import pct

FIGURE_TITLES = {
    "heatmap": "Accuracy by training size and noise",
    "learning-curves": "Learning curves, one line per noise rate",
    "contours": "Iso-accuracy contours",
    "exchange-rate": "Local (marginal) exchange rate: examples one point of noise is worth",
    "noise-models": "Exchange rates across noise models",
}

_LAYOUT = {"template": "plotly_white", "margin": {"l": 70, "r": 30, "t": 60, "b": 60}}


def make_figures(analysis: Analysis) -> dict[str, go.Figure]:
    """Build every figure of the report; see :func:`noisegrid.report.make_figures`."""
    builders: dict[str, Callable[[NoiseModelAnalysis], go.Figure | None]] = {
        "heatmap": heatmap,
        "learning-curves": learning_curves,
        "contours": contours,
        "exchange-rate": exchange_rate_map,
    }
    out: dict[str, go.Figure] = {}
    for nm, nma in analysis.by_noise_model.items():
        for kind, build in builders.items():
            fig = build(nma)
            if fig is not None:
                out[figure_id(kind, nm)] = fig
    if analysis.noise_model_comparison is not None:
        fig = noise_model_comparison(analysis)
        if fig is not None:
            out["noise-models"] = fig
    return out


def figure_id(kind: str, noise_model: str) -> str:
    """The name of a figure: HTML id and PNG file stem, e.g. ``heatmap-uniform``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in noise_model)
    return f"{kind}-{safe}"


def _grid_matrix(
    nma: NoiseModelAnalysis, values: dict[tuple[int, float], float]
) -> tuple[list[int], list[float], np.ndarray]:
    sizes = list(nma.coverage.sizes)
    noise = list(nma.coverage.noise_levels)
    z = np.full((len(noise), len(sizes)), np.nan)
    for (n, eta), v in values.items():
        if n in sizes and eta in noise:
            z[noise.index(eta), sizes.index(n)] = v
    return sizes, noise, z


def _cell_values(frame: pd.DataFrame, column: str) -> dict[tuple[int, float], float]:
    keys = zip(frame["train_size"], frame["noise_level"], frame[column], strict=True)
    return {(int(n), float(e)): float(v) for n, e, v in keys}


def heatmap(nma: NoiseModelAnalysis) -> go.Figure | None:
    """Mean accuracy per (size, noise) cell; hover shows the interval and seeds done."""
    cells = nma.cells[nma.cells["n_done"] > 0]
    if cells.empty:
        return None
    by_cell = {
        (int(r["train_size"]), float(r["noise_level"])): r for r in nma.cells.to_dict("records")
    }

    def hover(n: int, eta: float) -> str:
        r = by_cell.get((n, eta))
        head = f"size {n:,}<br>noise {pct(eta)}"
        if r is None or r["n_done"] == 0:
            failed = int(r["n_failed"]) if r is not None else 0
            return head + (f"<br>{failed} run(s) failed" if failed else "<br>not run")
        ci = ""
        if math.isfinite(r["ci_low_pct"]):
            ci = f"<br>95% interval {r['ci_low_pct']:.2f}–{r['ci_high_pct']:.2f} ({r['ci_method']})"
        return (
            f"{head}<br>accuracy {r['accuracy_pct']:.2f}%{ci}"
            f"<br>seeds done {int(r['n_done'])}, failed {int(r['n_failed'])}"
        )

    return _grid_heatmap(
        nma,
        _cell_values(cells, "accuracy_pct"),
        hover,
        title=f"{FIGURE_TITLES['heatmap']} ({nma.noise_model} noise)",
        texttemplate="%{z:.1f}",
        colorscale="Viridis",
        colorbar_title="accuracy %",
        hoverongaps=True,
    )


def _grid_heatmap(
    nma: NoiseModelAnalysis,
    values: dict[tuple[int, float], float],
    hover: Callable[[int, float], str],
    *,
    title: str,
    texttemplate: str,
    colorscale: str,
    colorbar_title: str,
    **trace: Any,
) -> go.Figure:
    """A heatmap with one labelled tile per (size, noise) cell of the grid.

    Parameters
    ----------
    nma : NoiseModelAnalysis
        Gives the grid (its coverage's sizes and noise levels).
    values : dict of (int, float) to float
        The value of each cell; cells without one are gaps.
    hover : callable
        ``hover(size, noise)`` returns the hover text of that cell.
    title, texttemplate, colorscale, colorbar_title : str
        The figure title, the tile label format (drawn by :func:`cell_label_traces`), and the
        colour scale with its title.
    **trace
        Further ``plotly.graph_objects.Heatmap`` options.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    sizes, noise, z = _grid_matrix(nma, values)
    # An infinite value (a surface that gains nothing from size there) is drawn as a gap.
    z = np.where(np.isfinite(z), z, np.nan)
    text = np.full(z.shape, "", dtype=object)
    for i, eta in enumerate(noise):
        for j, n in enumerate(sizes):
            text[i, j] = hover(n, eta)
    x, y = [f"{n:,}" for n in sizes], [pct(e) for e in noise]
    finite = z[np.isfinite(z)]
    if finite.size:
        # Fixed ends, shared with the label layers so that they paint the same colours.
        trace = {"zmin": float(finite.min()), "zmax": float(finite.max()), **trace}
    fig = go.Figure(
        go.Heatmap(
            x=x,
            y=y,
            z=z,
            text=text,
            hovertemplate="%{text}<extra></extra>",
            colorscale=colorscale,
            colorbar={"title": {"text": colorbar_title}},
            xgap=1,
            ygap=1,
            **trace,
        )
    )
    fig.add_traces(cell_label_traces(x, y, z, colorscale=colorscale, texttemplate=texttemplate))
    fig.update_layout(
        title=title,
        xaxis={"title": "training examples", "type": "category"},
        yaxis={"title": "label noise", "type": "category"},
        **_LAYOUT,
    )
    return fig


def cell_label_traces(
    x: list[str], y: list[str], z: np.ndarray, *, colorscale: str, texttemplate: str
) -> list[go.Heatmap]:
    """Each cell's value printed on it, in black or white, whichever contrasts more.

    plotly colours heatmap text either with one colour for every cell or by a brightness rule
    that puts white on viridis' mid-range teal (contrast below 4:1). So the labels are drawn by
    two more heatmaps over the first, one holding the cells that take black text and one those
    that take white, with the same colours (the same scale and range), no hover and no colour bar.
    """
    finite = np.isfinite(z)
    if not finite.any():
        return []
    zmin, zmax = float(z[finite].min()), float(z[finite].max())
    span = zmax - zmin
    colors = np.full(z.shape, "", dtype=object)
    where = np.argwhere(finite)
    values = z[finite]
    ts = np.full(values.shape, 0.5) if span == 0 else (values - zmin) / span
    # One call for every cell: sampling the scale cell by cell takes minutes on a large grid.
    for (i, j), sampled in zip(where, sample_colorscale(colorscale, list(ts)), strict=True):
        colors[i, j] = label_color([c / 255 for c in unlabel_rgb(sampled)])
    traces = []
    for color in ("black", "white"):
        mask = colors == color
        if mask.any():
            traces.append(
                go.Heatmap(
                    x=x,
                    y=y,
                    z=np.where(mask, z, np.nan),
                    colorscale=colorscale,
                    zmin=zmin,
                    zmax=zmax,
                    showscale=False,
                    hoverinfo="skip",
                    texttemplate=texttemplate,
                    textfont={"color": color},
                    name=f"labels ({color})",
                    xgap=1,
                    ygap=1,
                )
            )
    return traces


def learning_curves(nma: NoiseModelAnalysis) -> go.Figure | None:
    """Accuracy against size, one line per noise rate, with 95% error bars."""
    cells = nma.cells[nma.cells["n_done"] > 0]
    if cells.empty:
        return None
    levels = sorted(set(cells["noise_level"]))
    colors = _colors(len(levels))
    fig = go.Figure()
    for color, eta in zip(colors, levels, strict=True):
        g = cells[cells["noise_level"] == eta].sort_values("train_size")
        mean = g["accuracy_pct"].to_numpy(dtype=float)
        fig.add_trace(
            go.Scatter(
                x=g["train_size"],
                y=mean,
                mode="lines+markers",
                name=pct(float(eta)),
                line={"color": color},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": accuracy_bound(g["ci_high_pct"]) - mean,
                    "arrayminus": mean - accuracy_bound(g["ci_low_pct"]),
                    "thickness": 1,
                },
                customdata=g["n_done"],
                hovertemplate=(
                    f"noise {pct(float(eta))}<br>size %{{x:,}}<br>accuracy %{{y:.2f}}%"
                    "<br>seeds %{customdata}<extra></extra>"
                ),
                cliponaxis=False,
            )
        )
    fig.update_layout(
        title=f"{FIGURE_TITLES['learning-curves']} ({nma.noise_model} noise)",
        xaxis={"title": "training examples", **grid_range(cells["train_size"])},
        yaxis={"title": "accuracy %"},
        legend={"title": {"text": "noise"}},
        **_LAYOUT,
    )
    return fig


def contours(nma: NoiseModelAnalysis, *, resolution: int = 60) -> go.Figure | None:
    """Lines of equal fitted accuracy over (size, noise), with the measured cells marked."""
    best = nma.best
    if best is None:
        return None
    size_grid, noise_grid, z = contour_grid(nma, resolution=resolution)
    fig = go.Figure(
        go.Contour(
            x=size_grid,
            y=noise_grid * 100,
            z=z,
            colorscale="Viridis",
            contours={"showlabels": True, "labelfont": {"color": "white"}},
            colorbar={"title": {"text": "fitted accuracy %"}},
            hovertemplate=(
                "size %{x:,.0f}<br>noise %{y:.1f}%<br>fitted accuracy %{z:.2f}%<extra></extra>"
            ),
        )
    )
    cells = nma.cells[nma.cells["n_done"] > 0]
    fig.add_trace(
        go.Scatter(
            x=cells["train_size"],
            y=cells["noise_level"] * 100,
            mode="markers",
            marker={"color": "white", "size": 6, "line": {"color": "black", "width": 1}},
            customdata=cells["accuracy_pct"],
            name="measured cells",
            hovertemplate=(
                "size %{x:,}<br>noise %{y:g}%<br>measured %{customdata:.2f}%<extra></extra>"
            ),
            cliponaxis=False,
        )
    )
    fig.update_layout(
        title=(
            f"{FIGURE_TITLES['contours']} ({nma.noise_model} noise; "
            f"surface: {best.label or best.name})"
        ),
        xaxis={"title": "training examples", **grid_range(cells["train_size"])},
        yaxis={"title": "label noise %", **grid_range(cells["noise_level"] * 100)},
        showlegend=False,
        **_LAYOUT,
    )
    return fig


def accuracy_bound(values: pd.Series) -> np.ndarray:
    """Interval ends cut to [0, 100]: with few seeds a t interval reaches past what accuracy
    can be, and the bars would stretch the accuracy axis with it."""
    return np.clip(values.to_numpy(dtype=float), 0.0, 100.0)


def grid_range(values: pd.Series) -> dict[str, list[float]]:
    """An axis range from the smallest to the largest measured value, ``{}`` for a single one.

    Axes stop where the grid stops: autorange pads for the markers and can end on a tick beyond
    the grid (80% on a grid that stops at 75%). Markers at the edges are drawn unclipped instead.
    """
    lo, hi = float(values.min()), float(values.max())
    return {"range": [lo, hi]} if hi > lo else {}


def contour_grid(
    nma: NoiseModelAnalysis, *, resolution: int = 60
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense sizes, noise levels (fractions) and fitted accuracy for the contour plots."""
    if nma.best is None:
        raise ValueError("no fitted surface")
    # Only the measured range: the surface is not drawn where nothing was run.
    measured = nma.cells[nma.cells["n_done"] > 0]
    sizes, noise = measured["train_size"], measured["noise_level"]
    size_grid = np.linspace(float(sizes.min()), float(sizes.max()), resolution)
    noise_grid = np.linspace(float(noise.min()), float(noise.max()), resolution)
    n, eta = np.meshgrid(size_grid, noise_grid)
    z = np.clip(nma.best.predict(n.ravel(), eta.ravel()), 0.0, 100.0).reshape(n.shape)
    return size_grid, noise_grid, z


def exchange_rate_map(nma: NoiseModelAnalysis) -> go.Figure | None:
    """The best surface's local exchange rate at every grid cell, with its interval on hover."""
    lr = nma.local_rates
    if nma.best is None or lr.empty:
        return None
    by_cell = {(int(r["train_size"]), float(r["noise_level"])): r for r in lr.to_dict("records")}

    def hover(n: int, eta: float) -> str:
        r = by_cell.get((n, eta))
        if r is None:
            return ""
        ci = ""
        if r["rate_low"] == -math.inf and r["rate_high"] == math.inf:
            ci = " (95% CI unbounded: size's effect is not significant here)"
        elif math.isfinite(r["rate_low"]):
            ci = f" (95% CI {format_number(r['rate_low'])} to {format_number(r['rate_high'])})"
        exact = r["exact_compensation"]
        if differs(float(exact), float(r["rate"])):
            ci += f"<br>exactly one whole point: {format_number(exact)} examples"
        return (
            f"size {int(r['train_size']):,}<br>noise {pct(float(r['noise_level']))}"
            f"<br>one noise point = {format_number(r['train_size'] / 100)} labels"
            f"<br>worth {format_number(r['rate'])} examples at the margin{ci}"
            f"<br>{format_number(r['labels_per_correction'])} new labels per corrected label"
            f"<br>{'measured' if r['observed'] else 'not measured (interpolated)'}"
        )

    return _grid_heatmap(
        nma,
        _cell_values(lr, "rate"),
        hover,
        title=(
            f"{FIGURE_TITLES['exchange-rate']} ({nma.noise_model} noise; "
            f"surface: {nma.best.label or nma.best.name})"
        ),
        texttemplate="%{z:,.0f}",
        colorscale="Cividis",
        colorbar_title="examples per<br>noise point",
    )


def noise_model_comparison(analysis: Analysis) -> go.Figure | None:
    """Reference and local exchange rates per noise model, with 95% intervals."""
    comp = analysis.noise_model_comparison
    if comp is None or comp.empty:
        return None
    fig = go.Figure()
    series = [
        ("reference regression (constant)", "reference_rate", "reference_low", "reference_high"),
        ("best surface at the summary cell", "focus_rate", "focus_low", "focus_high"),
    ]
    if analysis.focus is not None:
        n, eta = analysis.focus
        series[1] = (f"best surface at {n:,} / {pct(eta)}", *series[1][1:])
    for name, est, low, high in series:
        y = comp[est].to_numpy(dtype=float)
        fig.add_trace(
            go.Bar(
                x=comp["noise_model"],
                y=y,
                name=name,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": comp[high].to_numpy(dtype=float) - y,
                    "arrayminus": y - comp[low].to_numpy(dtype=float),
                },
                hovertemplate="%{x}<br>%{y:,.0f} examples per noise point<extra></extra>",
            )
        )
    fig.update_layout(
        title=FIGURE_TITLES["noise-models"],
        barmode="group",
        xaxis={"title": "noise model"},
        yaxis={"title": "examples per noise point"},
        **_LAYOUT,
    )
    return fig


def _colors(k: int) -> list[str]:
    if k == 1:
        return ["#1f77b4"]
    return list(sample_colorscale("Viridis", [i / (k - 1) * 0.9 for i in range(k)]))
