"""The whole-table result, :class:`Analysis`, and the plain-language summary it writes.

:class:`Analysis` lives here rather than with the other result types (``_types.py``) because
:meth:`Analysis.summary` states the trade-off at the summary cell (``tradeoff.py``), which is
computed from those types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ._format import format_number, pct_text
from ._types import NoiseModelAnalysis, SurfaceFit, TradeoffResult, differs
from .rates import ONE_SEED_SUMMARY
from .tradeoff import tradeoff_at

__all__ = ["Analysis"]


@dataclass(frozen=True, eq=False)
class Analysis:
    """The result of :func:`analyze`: one :class:`NoiseModelAnalysis` per noise model.

    Attributes
    ----------
    results : pandas.DataFrame
        The table as analysed (every row, done and failed).
    by_noise_model : dict of str to NoiseModelAnalysis
    focus : tuple of (int, float) or None
        The (size, noise level) cell inside the grid that the plain-language summary talks about.
    noise_model_comparison : pandas.DataFrame or None
        Exchange rates side by side when the table holds more than one noise model.
    """

    results: pd.DataFrame = field(repr=False)
    by_noise_model: dict[str, NoiseModelAnalysis]
    focus: tuple[int, float] | None
    noise_model_comparison: pd.DataFrame | None
    general_notes: tuple[str, ...] = ()
    n_classes: int = 2
    confidence: float = 0.95
    n_bootstrap: int = 500
    seed: int = 0

    @property
    def noise_models(self) -> list[str]:
        """The noise models in the table, ``uniform`` first."""
        return list(self.by_noise_model)

    def notes(self) -> list[str]:
        """Every noise model's caveats, prefixed by the noise model when there are several."""
        many = len(self.by_noise_model) > 1
        return [*self.general_notes] + [
            f"{nm} noise: {note}" if many else note
            for nm, a in self.by_noise_model.items()
            for note in a.notes
        ]

    def summary(self) -> str:
        """A few plain-language sentences per noise model (the top of the report)."""
        return "\n\n".join(_summary_lines(self, nm) for nm in self.by_noise_model)


def _summary_lines(analysis: Analysis, nm: str) -> str:
    a = analysis.by_noise_model[nm]
    head = f"{nm} noise: {a.coverage.describe(max_items=3)}"
    lines = [head]
    if analysis.focus is not None and a.best is not None:
        size, noise = analysis.focus
        try:
            t = tradeoff_at(a, size, noise)
        except AnalysisError:
            t = None
        if t is not None:
            lines.append(_headline(a, a.best, t))
        lr = a.local_rates[a.local_rates["observed"]]
        finite = lr[np.isfinite(lr["rate"].to_numpy(dtype=float))]
        if len(finite):
            lo = finite.loc[finite["rate"].idxmin()]
            hi = finite.loc[finite["rate"].idxmax()]
        by_form = " (set by the surface's form)" if a.best.rate_from_form else ""
        if len(finite) and hi["rate"] <= 1.01 * lo["rate"]:
            lines.append(
                f"This surface gives the same rate in every measured cell, "
                f"{format_number(lo['rate'])} examples per point of noise{by_form}."
            )
        elif len(finite):
            lines.append(
                f"Across the measured cells one point of noise is worth{by_form} from "
                f"{format_number(lo['rate'])} examples (at {int(lo['train_size']):,} examples, "
                f"{pct_text(lo['noise_level'])} noise) to {format_number(hi['rate'])} "
                f"(at {int(hi['train_size']):,}, {pct_text(hi['noise_level'])})."
            )
    elif a.surface_skipped:
        lines.append(f"No local exchange rate: {a.surface_skipped}.")
    ref = a.reference
    if ref.skipped is None and ref.exchange_rate is not None:
        rate = ref.exchange_rate
        ci = rate.ci_text() + (": the size slope is not significant" if rate.unbounded else "")
        published = "; the published IMDB/DistilBERT value is 456" if _is_imdb(analysis) else ""
        lines.append(
            f"The reference regression (one constant rate, as published) gives "
            f"{ref.coef('train_size_1k'):+.3f} accuracy points per 1,000 examples and "
            f"{ref.coef('noise_level_pct'):+.3f} per noise point, so one point of noise is worth "
            f"{format_number(rate.estimate)} examples ({ci}, Fieller; "
            f"R² {ref.r_squared:.2f}{published})."
        )
    else:
        lines.append(f"Reference regression skipped: {ref.skipped}.")
    if a.coverage.n_done and _n_seeds(a) == 1:
        lines.append(ONE_SEED_SUMMARY)
    return "\n".join(lines)


def _n_seeds(a: NoiseModelAnalysis) -> int:
    done = a.cells["n_done"].to_numpy(dtype=int)
    return int(done.max()) if done.size else 0


def _exact_sentence(exact: float, marginal: float) -> str:
    if not differs(exact, marginal):
        return ""
    if math.isinf(exact):
        return (
            " No number of examples makes up for a whole point exactly: the surface levels off "
            "below the accuracy it costs."
        )
    return f" Making up for the whole point exactly takes {format_number(exact)} examples."


def _headline(a: NoiseModelAnalysis, best: SurfaceFit, t: TradeoffResult) -> str:
    """The trade-off at the summary cell, saying where the number comes from."""
    r = t.examples_per_noise_point
    correction = t.correction_sentence()
    cost = (
        f"one point of noise ({format_number(t.labels_per_noise_point)} wrong labels) costs as "
        f"much accuracy as {format_number(r.estimate)} examples at the margin (the marginal "
        "exchange rate)"
    )
    fit = f"cross-validated error is {best.cv_rmse:.2f} accuracy points"
    if best.rate_from_form:
        # Nothing measured enters this number: say so before giving it.
        return (
            f"{t.where()}, the exchange rate is fixed by the form of the only surface that could "
            f"be fitted, {best.describe()}, not measured from the data: by that form "
            f"{correction}, and {cost}; the surface's {fit}."
        )
    text = f"{t.where()}, {correction}: {cost}, by the surface {best.describe()}, whose {fit}."
    text += _exact_sentence(t.exact_compensation, r.estimate)
    if a.form_fixed is not None:
        text = (
            f"The surface that fits best, {a.form_fixed.describe()}, fixes the exchange rate by "
            "its form whatever was measured, so the rate here comes from the best surface whose "
            f"rate the data determine. {text}"
        )
    return text


def _is_imdb(analysis: Analysis) -> bool:
    """Whether every analysed run is on IMDB (a hub name or a local copy named imdb/aclImdb),
    the dataset of the published reference value."""
    if "dataset" not in analysis.results.columns:
        return False
    names = {
        str(v).rstrip("/").rsplit("/", 1)[-1].lower() for v in analysis.results["dataset"].dropna()
    }
    return bool(names) and names <= {"imdb", "aclimdb"}
