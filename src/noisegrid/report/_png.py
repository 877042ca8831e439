"""Static PNG versions of the report's figures, redrawn with matplotlib (for slides and papers).

plotly's own static export needs kaleido and a browser download; a matplotlib redraw works
offline. The object-oriented API (``matplotlib.figure.Figure``) is used so that no global pyplot
state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..analysis import Analysis, NoiseModelAnalysis
from ._colors import label_color
from ._figures import FIGURE_TITLES, accuracy_bound, contour_grid, figure_id
from ._tables import pct

_DPI = 150


def write_pngs(analysis: Analysis, out_dir: Path) -> list[Path]:
    """Write one PNG per figure into ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for nm, nma in analysis.by_noise_model.items():
        for kind, draw in (
            ("heatmap", _heatmap),
            ("learning-curves", _learning_curves),
            ("contours", _contours),
            ("exchange-rate", _exchange_rate),
        ):
            fig = draw(nma)
            if fig is not None:
                path = out_dir / f"{figure_id(kind, nm)}.png"
                fig.savefig(path, dpi=_DPI, bbox_inches="tight")
                written.append(path)
    if analysis.noise_model_comparison is not None:
        fig = _noise_models(analysis)
        if fig is not None:
            path = out_dir / "noise-models.png"
            fig.savefig(path, dpi=_DPI, bbox_inches="tight")
            written.append(path)
    return written


def _grid(nma: NoiseModelAnalysis, column: str, frame_name: str) -> np.ndarray:
    frame = nma.cells if frame_name == "cells" else nma.local_rates
    cols = {int(n): j for j, n in enumerate(nma.coverage.sizes)}
    rows = {float(e): i for i, e in enumerate(nma.coverage.noise_levels)}
    z = np.full((len(rows), len(cols)), np.nan)
    for n, eta, value in zip(frame["train_size"], frame["noise_level"], frame[column], strict=True):
        i, j = rows.get(float(eta)), cols.get(int(n))
        if i is not None and j is not None:
            z[i, j] = float(value)
    return np.where(np.isfinite(z), z, np.nan)


_MAX_INCHES = (24.0, 16.0)
"""Largest PNG figure (width, height): a grid of 1,000 sizes draws its tiles narrower, not a
picture 80,000 pixels wide."""
_MAX_TICKS = 40


def _ticks(labels: list[str]) -> tuple[list[int], list[str]]:
    """At most ``_MAX_TICKS`` evenly spaced tick positions and their labels."""
    step = max(1, math.ceil(len(labels) / _MAX_TICKS))
    positions = list(range(0, len(labels), step))
    return positions, [labels[k] for k in positions]


def _matrix_figure(
    nma: NoiseModelAnalysis, z: np.ndarray, *, title: str, cmap: str, label: str, fmt: str
) -> Figure | None:
    if np.all(np.isnan(z)):
        return None
    sizes, noise = nma.coverage.sizes, nma.coverage.noise_levels
    width = min(max(6.0, 0.55 * len(sizes) + 2), _MAX_INCHES[0])
    height = min(max(4.0, 0.4 * len(noise) + 1.5), _MAX_INCHES[1])
    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(z), origin="lower", aspect="auto", cmap=cmap, interpolation="nearest"
    )
    fig.colorbar(image, ax=ax, label=label)
    ax.set_xticks(*_ticks([f"{n:,}" for n in sizes]), rotation=45, ha="right")
    ax.set_yticks(*_ticks([pct(e) for e in noise]))
    ax.set_xlabel("training examples")
    ax.set_ylabel("label noise")
    ax.set_title(title, fontsize=10)
    if z.size <= 400:
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                if math.isfinite(z[i, j]):
                    # The text colour follows the cell's colour as drawn, not its position on
                    # the scale: mid-range viridis is light enough to need black text.
                    r, g, b, _ = image.cmap(image.norm(z[i, j]))
                    ax.text(
                        j,
                        i,
                        format(z[i, j], fmt),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color=label_color((r, g, b)),
                    )
    return fig


def _heatmap(nma: NoiseModelAnalysis) -> Figure | None:
    z = _grid(nma, "accuracy_pct", "cells")
    title = f"{FIGURE_TITLES['heatmap']} ({nma.noise_model} noise), accuracy %"
    return _matrix_figure(nma, z, title=title, cmap="viridis", label="accuracy %", fmt=".1f")


def _exchange_rate(nma: NoiseModelAnalysis) -> Figure | None:
    if nma.best is None or nma.local_rates.empty:
        return None
    z = _grid(nma, "rate", "rates")
    surface = nma.best.label or nma.best.name
    title = f"{FIGURE_TITLES['exchange-rate']}\n({nma.noise_model} noise; surface: {surface})"
    return _matrix_figure(
        nma, z, title=title, cmap="cividis", label="examples per noise point", fmt=",.0f"
    )


def _learning_curves(nma: NoiseModelAnalysis) -> Figure | None:
    cells = nma.cells[nma.cells["n_done"] > 0]
    if cells.empty:
        return None
    levels = sorted(set(cells["noise_level"]))
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(7.0, 4.5))
    ax: Axes = fig.add_subplot()
    for k, eta in enumerate(levels):
        g = cells[cells["noise_level"] == eta].sort_values("train_size")
        mean = g["accuracy_pct"].to_numpy(dtype=float)
        low = _finite(mean - accuracy_bound(g["ci_low_pct"]))
        high = _finite(accuracy_bound(g["ci_high_pct"]) - mean)
        color = cmap(0.9 * k / max(len(levels) - 1, 1))
        bars = ax.errorbar(
            g["train_size"].to_numpy(dtype=float),
            mean,
            yerr=np.vstack([low, high]),
            color=color,
            marker="o",
            markersize=3,
            capsize=2,
            linewidth=1,
            label=pct(float(eta)),
        )
        for artist in bars.get_children():
            artist.set_clip_on(False)  # the end points sit on the axis limits
    _grid_limits(ax.set_xlim, cells["train_size"])
    ax.set_xlabel("training examples")
    ax.set_ylabel("accuracy %")
    ax.set_title(f"{FIGURE_TITLES['learning-curves']} ({nma.noise_model} noise)", fontsize=10)
    ax.legend(title="noise", fontsize=7, ncols=2 if len(levels) > 6 else 1)
    ax.grid(alpha=0.3)
    return fig


def _contours(nma: NoiseModelAnalysis) -> Figure | None:
    if nma.best is None:
        return None
    size_grid, noise_grid, z = contour_grid(nma)
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot()
    if np.nanmax(z) - np.nanmin(z) > 1e-9:
        filled = ax.contourf(size_grid, noise_grid * 100, z, levels=12, cmap="viridis")
        lines = ax.contour(size_grid, noise_grid * 100, z, levels=12, colors="white")
        ax.clabel(lines, fontsize=7, fmt="%.1f")
        fig.colorbar(filled, ax=ax, label="fitted accuracy %")
    cells = nma.cells[nma.cells["n_done"] > 0]
    ax.scatter(
        cells["train_size"],
        cells["noise_level"] * 100,
        s=8,
        c="white",
        edgecolors="black",
        clip_on=False,
    )
    _grid_limits(ax.set_xlim, cells["train_size"])
    _grid_limits(ax.set_ylim, cells["noise_level"] * 100)
    ax.set_xlabel("training examples")
    ax.set_ylabel("label noise %")
    ax.set_title(
        f"{FIGURE_TITLES['contours']} ({nma.noise_model} noise; "
        f"surface: {nma.best.label or nma.best.name})",
        fontsize=10,
    )
    return fig


def _grid_limits(set_limits: Callable[[float, float], object], values: pd.Series) -> None:
    """Axis limits at the grid's smallest and largest value (no margin past the grid)."""
    lo, hi = float(values.min()), float(values.max())
    if hi > lo:
        set_limits(lo, hi)


def _noise_models(analysis: Analysis) -> Figure | None:
    comp = analysis.noise_model_comparison
    if comp is None or comp.empty:
        return None
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot()
    x = np.arange(len(comp))
    width = 0.38
    at = "the summary cell"
    if analysis.focus is not None:
        at = f"{analysis.focus[0]:,} / {pct(analysis.focus[1])}"
    for k, (label, est, low, high) in enumerate(
        [
            ("reference regression", "reference_rate", "reference_low", "reference_high"),
            (f"best surface at {at}", "focus_rate", "focus_low", "focus_high"),
        ]
    ):
        y = comp[est].to_numpy(dtype=float)
        err = np.vstack(
            [
                _finite(y - comp[low].to_numpy(dtype=float)),
                _finite(comp[high].to_numpy(dtype=float) - y),
            ]
        )
        ax.bar(x + (k - 0.5) * width, _finite(y), width, yerr=err, capsize=3, label=label)
    ax.set_xticks(x, list(comp["noise_model"]))
    ax.set_ylabel("examples per noise point")
    ax.set_title(FIGURE_TITLES["noise-models"], fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _finite(a: np.ndarray) -> np.ndarray:
    """Missing or infinite values drawn as 0 (no bar, no error bar)."""
    return np.where(np.isfinite(a), a, 0.0)
