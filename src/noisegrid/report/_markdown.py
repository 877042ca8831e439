"""``summary.md``: the report's findings as plain Markdown (for notes, issues and papers)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..analysis import Analysis
from ._tables import (
    Table,
    comparison_table,
    key_values,
    noise_model_table,
    rate_grid_table,
    regression_facts,
    regression_table,
)

if TYPE_CHECKING:
    from ..analysis.advise import AdviceResult


def render_markdown(
    analysis: Analysis,
    *,
    title: str,
    provenance: Mapping[str, Any],
    figures: list[str],
    advice: AdviceResult | None = None,
) -> str:
    """The summary, regression, surface comparison and local rates of every noise model, and
    the Advice section when there is advice (as in the HTML report)."""
    out = [f"# {title}", "", "## Summary", ""]
    for paragraph in analysis.summary().split("\n\n"):
        out += [*paragraph.splitlines(), ""]
    notes = analysis.notes()
    if notes:
        out += ["Notes:", "", *[f"- {n}" for n in notes], ""]

    for nm, nma in analysis.by_noise_model.items():
        out += [f"## {nm} noise", "", nma.coverage.describe(), ""]
        out += ["### Reference regression (as published)", ""]
        if nma.reference.skipped:
            out += [f"Skipped: {nma.reference.skipped}.", ""]
        else:
            out += [*(f"- {k}: {v}" for k, v in regression_facts(nma.reference)), ""]
            out += [*_md_table(regression_table(nma.reference)), ""]
        out += ["### Candidate surfaces (leave-one-cell-out cross-validation)", ""]
        if nma.surfaces.empty:
            out += [f"Skipped: {nma.surface_skipped}.", ""]
        else:
            out += [*_md_table(comparison_table(nma, analysis.focus)), ""]
        if not nma.local_rates.empty and nma.best is not None:
            out += [
                f"### Local exchange rate (marginal; surface: {nma.best.label or nma.best.name}; "
                "examples per noise point, 95% interval)",
                "",
                *_md_table(rate_grid_table(nma)),
                "",
            ]
    if analysis.noise_model_comparison is not None:
        out += ["## Comparison across noise models", "", *_md_table(noise_model_table(analysis))]
        out += [""]
    if advice is not None:
        out += _advice_lines(advice)
    if figures:
        out += ["## Figures", "", *[f"![{f}](figures/{f})" for f in figures], ""]
    out += ["## Provenance", "", *(f"- {k}: {v}" for k, v in key_values(provenance)), ""]
    return "\n".join(out)


def _advice_lines(result: AdviceResult) -> list[str]:
    """The "Advice" section: the recommendation, why, where it starts, the table, the notes."""
    from ._advice import advice_table

    est, lo, hi = result.baseline
    ci = "" if math.isnan(lo) else f" (95% CI {lo:.1f}–{hi:.1f}%)"
    out = ["## Advice", "", f"**{result.recommendation}**", "", result.reason, ""]
    out += [
        f"Now: {result.size:,} labels at {100 * result.noise:.1f}% noise, predicted accuracy "
        f"{est:.1f}%{ci}. A new label costs {result.money(result.label_cost)} (arriving at "
        f"{100 * result.new_label_noise:.1f}% noise), a review "
        f"{result.money(result.review_cost)}; review precision from {result.review_source}.",
        "",
        *_md_table(advice_table(result)),
        "",
    ]
    if result.notes:
        out += [*[f"- {n}" for n in result.notes], ""]
    return out


def _md_table(table: Table) -> list[str]:
    header, rows = table

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in rows)]
