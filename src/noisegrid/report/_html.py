"""The self-contained HTML report: one file, plotly's JavaScript inlined, no network needed."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from ..analysis import Analysis, NoiseModelAnalysis
from ._figures import figure_id
from ._tables import (
    Table,
    cells_table,
    comparison_table,
    key_values,
    noise_model_table,
    rate_grid_table,
    regression_facts,
    regression_table,
)

if TYPE_CHECKING:
    from ..analysis.advise import AdviceResult

METHODS = (
    "<p><b>Reference regression.</b> Ordinary least squares of accuracy (percent) on training "
    "size (thousands) and noise (percent) over every done run, as published; the exchange rate "
    "1000·(−β<sub>noise</sub>/β<sub>size</sub>) is the number of examples one point of noise is "
    "worth, with Fieller's interval for a ratio (skewed where the size slope is imprecise, "
    "unbounded where it is not significant; the symmetric delta-method interval is shown "
    "beside it). With several repeat seeds the standard errors are clustered by seed (runs of "
    "one seed share nested training sets, flipped labels and the test sample), using Student-t "
    "with seeds − 1 degrees of freedom.</p>"
    "<p><b>Candidate surfaces.</b> Each candidate is fitted to every done run and scored by "
    "leave-one-cell-out cross-validation (all seeds of a (size, noise) cell are held out "
    "together); the one with the lowest cross-validated RMSE among those whose exchange rate the "
    "data determine is used. The effective-sample-size candidates model accuracy as a function "
    "of n·s² with label signal s = 1 − η·K/(K−1) (1 − 2η for two classes); their form alone "
    "fixes the exchange rate, so when one of them fits best the report says so and takes the "
    "rates from the best of the others.</p>"
    "<p><b>Local exchange rate.</b> The marginal rate at a cell, "
    "−(∂acc/∂noise point)/(∂acc/∂example): the extra examples that compensate one more point "
    "of noise there, at the margin. Where the surface curves, making up for one whole point "
    "exactly (Δn with acc(n + Δn, p + 1) = acc(n, p)) takes a different number, shown beside it "
    "when the two differ by more than 3%. One point of noise at n examples is n/100 wrong "
    "labels, so correcting one label is worth rate·100/n new labels. Intervals: the chosen "
    "surface is refitted on bootstrap resamples of whole seeds (a seed's cells share nested "
    "subsamples, flips and the test sample, so the seed is the independent unit), and the rate, "
    "a ratio of two slopes, gets Fieller's interval from the slopes' bootstrap covariance with "
    "Student-t on seeds − 1 degrees of freedom. With one seed the resamples are cells, and the "
    "intervals cover test-sample and fitting noise only, not replication. Intervals do not "
    "include the uncertainty of choosing the surface.</p>"
    "<p><b>Cells.</b> With several seeds a cell's interval is a Student-t interval over seeds; "
    "with one seed it is a Wilson interval for the test-sample accuracy, which covers test "
    "sampling only.</p>"
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 1.5rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem;
     margin-top: 2.2rem; }
.meta { color: #666; margin-top: 0; }
.summary { background: #f4f7fb; border-left: 4px solid #3a6ea5; padding: 0.6rem 1rem; }
.summary p { margin: 0.4rem 0; }
.notes li { color: #7a4b00; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.86rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right;
         vertical-align: top; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
table.kv td { text-align: left; }
.figure { margin: 1rem 0 1.5rem 0; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
nav a { margin-right: 1rem; }
details { margin: 0.5rem 0; }
"""


def render_html(
    analysis: Analysis,
    figures: Mapping[str, go.Figure],
    *,
    title: str,
    provenance: Mapping[str, Any],
    spec: Mapping[str, Any] | None,
    advice: AdviceResult | None = None,
) -> str:
    """Assemble the report page; every string from the data is escaped."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        # plotly.js inlined once, so the page works offline and every figure shares it.
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{_e(_meta_line(provenance))}</p>',
        _nav(analysis, advice=advice is not None),
        '<section id="summary"><h2>Summary</h2><div class="summary">',
    ]
    for paragraph in analysis.summary().split("\n\n"):
        first, *rest = paragraph.splitlines()
        parts.append(f"<p><b>{_e(first)}</b></p>" + "".join(f"<p>{_e(x)}</p>" for x in rest))
    parts.append("</div>")
    notes = analysis.notes()
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</section>")

    for nm, nma in analysis.by_noise_model.items():
        parts.append(_noise_model_section(analysis, nm, nma, figures))

    if analysis.noise_model_comparison is not None:
        parts.append('<section id="noise-models"><h2>Comparison across noise models</h2>')
        parts.append(
            "<p>The same grid under each noise model. A larger rate means a point of that kind "
            "of noise costs more examples to make up for.</p>"
        )
        parts.append(_figure(figures, "noise-models"))
        parts.append(_table(noise_model_table(analysis)))
        parts.append("</section>")

    if advice is not None:
        parts.append(_advice_section(advice))

    parts.append(f'<section id="methods"><h2>Methods</h2>{METHODS}</section>')
    parts.append('<section id="provenance"><h2>Spec and provenance</h2>')
    parts.append(_kv_table(key_values(provenance)))
    if spec is not None:
        text = json.dumps(spec, indent=2, sort_keys=False, default=str)
        parts.append(
            f"<details open><summary>Experiment spec</summary><pre>{_e(text)}</pre></details>"
        )
    parts.append("</section></body></html>")
    return "\n".join(parts)


def _noise_model_section(
    analysis: Analysis, nm: str, nma: NoiseModelAnalysis, figures: Mapping[str, go.Figure]
) -> str:
    parts = [f'<section id="{_e(figure_id("nm", nm))}"><h2>{_e(nm)} noise</h2>']
    parts.append(f"<p>{_e(nma.coverage.describe())}</p>")
    for kind in ("heatmap", "learning-curves", "contours", "exchange-rate"):
        parts.append(_figure(figures, figure_id(kind, nm)))
    if nma.best is None:
        parts.append(f"<p>No accuracy surface: {_e(nma.surface_skipped or '')}.</p>")

    parts.append("<h3>Reference regression (as published)</h3>")
    if nma.reference.skipped:
        parts.append(f"<p>Skipped: {_e(nma.reference.skipped)}.</p>")
    else:
        parts.append(_kv_table(regression_facts(nma.reference)))
        parts.append(_table(regression_table(nma.reference)))

    parts.append("<h3>Candidate surfaces (leave-one-cell-out cross-validation)</h3>")
    if nma.surfaces.empty:
        parts.append(f"<p>Skipped: {_e(nma.surface_skipped or '')}.</p>")
    else:
        parts.append(_table(comparison_table(nma, analysis.focus)))

    if not nma.local_rates.empty:
        parts.append(
            "<details><summary>Local (marginal) exchange rates (examples per noise point, 95% "
            "interval)"
            "</summary>"
        )
        parts.append(_table(rate_grid_table(nma)))
        parts.append("</details>")
    parts.append("<details><summary>Cell statistics</summary>")
    parts.append(_table(cells_table(nma)))
    parts.append("</details></section>")
    return "\n".join(parts)


def _figure(figures: Mapping[str, go.Figure], fid: str) -> str:
    fig = figures.get(fid)
    if fig is None:
        return ""
    div = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=fid,
        default_height="520px",
        default_width="100%",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="figure">{div}</div>'


def _table(table: Table) -> str:
    header, rows = table
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv_table(items: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _advice_section(advice: AdviceResult) -> str:
    from ._advice import advice_figure, advice_section, advice_table

    # The section is "advice"; the figure's element needs an id of its own.
    figure = _figure({"advice-budget": advice_figure(advice)}, "advice-budget")
    return advice_section(advice, figure, _table(advice_table(advice)))


def _nav(analysis: Analysis, *, advice: bool = False) -> str:
    links = ['<a href="#summary">Summary</a>']
    links += [
        f'<a href="#{_e(figure_id("nm", nm))}">{_e(nm)} noise</a>' for nm in analysis.noise_models
    ]
    if analysis.noise_model_comparison is not None:
        links.append('<a href="#noise-models">Noise models</a>')
    if advice:
        links.append('<a href="#advice">Advice</a>')
    links += ['<a href="#methods">Methods</a>', '<a href="#provenance">Provenance</a>']
    return "<nav>" + "".join(links) + "</nav>"


def _meta_line(provenance: Mapping[str, Any]) -> str:
    keys = ("dataset", "backend", "model", "report generated")
    shown = [k for k in keys if provenance.get(k) and not str(provenance[k]).startswith("none")]
    return " · ".join(f"{k}: {provenance[k]}" for k in shown)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
