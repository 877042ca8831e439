"""How the analysis writes numbers, noise rates and lists of runs in text.

Shared by the result types' ``str()``, the skip reasons and notes, and the summary prose, so that
every sentence of the report writes a number the same way.
"""

from __future__ import annotations

import math
from typing import cast

import pandas as pd

__all__ = ["format_number"]


def format_number(x: float) -> str:
    """Format a count-like number for text: ``1,234``, ``45``, ``3.2``, ``n/a``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if abs(x) >= 9.95:
        return f"{x:,.0f}"
    return f"{x:.1f}"


def pct_text(eta: float) -> str:
    return f"{eta * 100:g}%"


def size_text(n: float) -> str:
    return f"{int(n):,}"


def list_cells(
    cells: pd.DataFrame,
    max_items: int,
    grid: tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]] | None = None,
) -> str:
    """Name runs compactly: whole sizes or noise levels first, then cells with their seeds."""
    items = []
    rest = cells
    if grid is not None:
        sizes, noise, seeds = grid
        per_size = cells.groupby("train_size").size()
        full = len(noise) * len(seeds)
        full_sizes = [int(n) for n, k in zip(per_size.index, per_size, strict=True) if k == full]
        items += [f"size {n:,} at every noise level" for n in full_sizes]
        rest = rest[~rest["train_size"].isin(full_sizes)]
        per_noise = rest.groupby("noise_level").size()
        remaining_sizes = len(sizes) - len(full_sizes)
        full = remaining_sizes * len(seeds)
        full_noise = [
            float(e) for e, k in zip(per_noise.index, per_noise, strict=True) if k == full
        ]
        if remaining_sizes > 1:
            items += [f"noise {pct_text(e)} at every size" for e in full_noise]
            rest = rest[~rest["noise_level"].isin(full_noise)]
    all_seeds = set(grid[2]) if grid is not None else None
    groups = rest.groupby(["train_size", "noise_level"], sort=True)["seed"].apply(list)
    for key, seeds_here in groups.items():
        n, eta = cast(tuple[int, float], key)
        text = f"{int(n):,} @ {pct_text(float(eta))}"
        if len(seeds_here) > 1 and all_seeds is not None and set(seeds_here) == all_seeds:
            text += " (every seed)"
        else:
            plural = "s" if len(seeds_here) > 1 else ""
            text += f" seed{plural} {', '.join(str(x) for x in seeds_here)}"
        items.append(text)
    text = "; ".join(items[:max_items])
    if len(items) > max_items:
        text += f"; and {len(items) - max_items} more"
    return text
