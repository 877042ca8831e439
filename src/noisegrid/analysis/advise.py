"""Advice: spend a budget on new labels, on reviewing suspected wrong labels, or on a mix?

:func:`price_budget` prices three ways of spending a budget ``X`` on a dataset of ``N`` labels with
noise rate ``P``, using the grid's fitted accuracy surface (with its bootstrap uncertainty):

- **collect**: ``X / A`` new labels at ``A`` each, arriving at the current noise rate (or
  ``new_label_noise``);
- **clean**: ``X / B`` reviews at ``B`` each of the audit's top suspects; a review fixes a label
  when the label was wrong, which happens at the precision the audit's calibration measured at
  that depth of the suspect list (:meth:`~noisegrid.auditing.AuditResult.review_precision`);
- **mix**: the share of the budget spent on reviews (the rest on new labels) that maximises the
  predicted accuracy.

The start point must lie inside the measured grid unless extrapolation is allowed, and every
outcome beyond the grid is flagged. Accuracy is in percent, noise a fraction, costs in the
user's currency.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AnalysisError, ConfigError
from ._types import NoiseModelAnalysis, Resampling, SurfaceFit
from .cells import done_rows, pick_noise_model_from
from .rates import ONE_SEED_NOTE, bootstrap_fits, t_interval
from .summary import Analysis

__all__ = [
    "STRATEGIES",
    "AdviceResult",
    "check_in_grid",
    "check_money",
    "check_noise_bound",
    "check_point",
    "noise_model_analysis",
    "price_budget",
]

STRATEGIES = ("collect", "clean", "mix")
"""``collect``: new labels only; ``clean``: reviews only; ``mix``: the best split of the two."""

STRATEGY_TEXT = {"collect": "new labels only", "clean": "reviews only", "mix": "the best mix"}
N_SHARES = 101
"""Shares of the budget on reviews tried for the mix: 0%, 1%, ..., 100%."""
BUDGET_MULTIPLES = (0.25, 0.5, 1.0, 2.0)
"""Budgets of the table, as multiples of the budget asked about."""
CURVE_POINTS = 41


@dataclass(frozen=True, eq=False)
class AdviceResult:
    """What :func:`advise` recommends, and the numbers behind it.

    Attributes
    ----------
    recommendation : str
        One sentence: what to buy with the budget.
    reason : str
        Why, in one or two sentences (exchange rate against the price of a fixed label).
    best : str
        ``"collect"``, ``"clean"`` or ``"mix"``.
    table : pandas.DataFrame
        One row per (budget, strategy) at a few budgets: ``budget``, ``strategy``, ``share``
        (of the budget on reviews), ``n_reviews``, ``n_new``, ``n_fixed``, ``size``, ``noise``
        (after spending), ``accuracy_pct`` with ``low``/``high``, ``gain_pct`` (over now) with
        ``gain_low``/``gain_high``, ``extrapolated``.
    curve : pandas.DataFrame
        The same columns over a fine range of budgets (0 to twice the budget), for the figure.
    baseline : tuple of float
        Accuracy now (estimate, low, high), percent.
    size, noise, new_label_noise, label_cost, review_cost, budget : number
        The question asked.
    p_best : float
        Share of the surface's bootstrap draws (with the review precision's own, when its error
        is known) in which the recommended strategy beats the
        runner-up at the budget (NaN without draws).
    noise_model, surface : str
    review_source : str
        Where the review precision came from.
    currency : str
    notes : tuple of str
    """

    recommendation: str
    reason: str
    best: str
    table: pd.DataFrame
    curve: pd.DataFrame
    baseline: tuple[float, float, float]
    size: int
    noise: float
    new_label_noise: float
    label_cost: float
    review_cost: float
    budget: float
    p_best: float
    noise_model: str
    surface: str
    review_source: str
    currency: str = "$"
    confidence: float = 0.95
    notes: tuple[str, ...] = field(default=())

    def at_budget(self, budget: float | None = None) -> pd.DataFrame:
        """The table's rows at one budget (default: the budget asked about), by strategy."""
        b = self.budget if budget is None else budget
        rows = self.table[np.isclose(self.table["budget"], b)]
        return rows.set_index("strategy")

    def describe(self) -> str:
        """The text the CLI prints: the recommendation first, then the table."""
        lines = [self.recommendation, self.reason, ""]
        est, lo, hi = self.baseline
        lines.append(
            f"now: {self.size:,} labels at {pct(self.noise)} noise, predicted accuracy "
            f"{est:.1f}%{_ci(lo, hi, self.confidence)} (surface {self.surface}, "
            f"{self.noise_model} noise); review precision from {self.review_source}"
        )
        lines.append("")
        lines.append(_format_table(self))
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def money(self, x: float) -> str:
        return _money(x, self.currency)

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``advice.csv`` (the table), ``advice_curve.csv`` and ``advice.txt``.

        The figure is drawn by :func:`noisegrid.report.save_advice`, which calls this.
        """
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise AnalysisError(f"--out must be a folder; '{out}' is a file — pass a folder path")
        out.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(out / "advice.csv", index=False)
        self.curve.to_csv(out / "advice_curve.csv", index=False)
        (out / "advice.txt").write_text(self.describe() + "\n", encoding="utf-8")
        written = [out / "advice.csv", out / "advice_curve.csv", out / "advice.txt"]
        return written


def price_budget(
    analysis: Analysis,
    nma: NoiseModelAnalysis,
    *,
    size: int,
    noise: float,
    new_label_noise: float,
    label_cost: float,
    review_cost: float,
    budget: float,
    precision: Callable[[np.ndarray], np.ndarray],
    review_source: str,
    currency: str = "$",
    notes: Sequence[str] = (),
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
    precision_se: Callable[[np.ndarray], np.ndarray] | None = None,
) -> AdviceResult:
    """Price the three ways of spending ``budget`` on the surface of one noise model.

    The statistics of :func:`noisegrid.advise`, on numbers already resolved and checked.

    Parameters
    ----------
    analysis : Analysis
        The grid's analysis (its results table gives fresh draws when the surface kept none).
    nma : NoiseModelAnalysis
        The noise model's analysis, with a fitted surface (:func:`noise_model_analysis`).
    size, noise, new_label_noise
        Labels now, their noise rate and the noise rate of new labels (fractions).
    label_cost, review_cost, budget : float
        Prices and the money to spend.
    precision : callable
        Share of reviewed suspects that are wrong, as a function of the depth reviewed (a fraction
        of ``size``; cumulative, 0 at depth 0).
    review_source : str
        Where ``precision`` came from, for the text.
    currency : str, default "$"
    notes : sequence of str
        Notes to print before the method's own.
    n_bootstrap, confidence, seed
        As in :func:`~noisegrid.analyze`; the draws give the accuracy intervals.
    precision_se : callable, optional
        The standard error of ``precision`` at each depth (the calibration's own sampling
        error). ``p_best`` then draws the review precision with the surface: each draw moves
        the precision curve by one normal deviate of it (every depth together). None: the
        precision is taken as exact.

    Returns
    -------
    AdviceResult
    """
    if nma.best is None:
        raise AnalysisError(
            f"the grid ({nma.noise_model} noise) has no fitted surface to advise on"
        )
    surface = nma.best
    check_noise_bound(noise, new_label_noise, analysis.n_classes)
    cov = nma.coverage
    notes = list(notes)
    new_noise = new_label_noise
    source = review_source
    draws, resampling = _surface_draws(analysis, nma, n_bootstrap, seed)
    model = _Model(surface, draws, resampling, confidence)
    base, base_low, base_high = model.accuracy(np.array([float(size)]), np.array([noise]))
    baseline = (float(base[0]), float(base_low[0]), float(base_high[0]))
    world = _World(
        size=int(size),
        noise=noise,
        new_noise=new_noise,
        label_cost=float(label_cost),
        review_cost=float(review_cost),
        precision=_capped(precision, noise),
        max_size=max(cov.measured_sizes),
        min_size=min(cov.measured_sizes),
        noise_range=(min(cov.measured_noise_levels), max(cov.measured_noise_levels)),
    )
    budgets = [m * float(budget) for m in BUDGET_MULTIPLES]
    table = [o for b in budgets for o in _outcomes(b, world, model).values()]
    curve = [
        o
        for b in np.linspace(0, 2 * float(budget), CURVE_POINTS)
        for o in _outcomes(float(b), world, model).values()
    ]
    at = _outcomes(float(budget), world, model)
    best = _best(at)
    verdict = _versus(at, best, model)
    p_best = verdict.p_better
    if precision_se is not None and verdict.runner is not None:
        p_best = _p_better_with_precision(
            at, best, verdict.runner, world, model, precision_se, seed
        )
        verdict = replace(
            verdict,
            p_better=p_best,
            draws_of="the draws of the surface and of the review precision",
        )
    recommendation, reason = _explain(
        at, best, verdict, model, world, budget=float(budget), currency=currency
    )
    if any(o.extrapolated for o in table):
        notes.append(
            f"Rows marked * lie outside the measured grid ({cov.measured_text()}, done runs of "
            f"{nma.noise_model} noise): the surface is extrapolated there."
        )
    notes.append(_interval_note(model))
    if resampling is not None and resampling.unit == "cell":
        notes.append(ONE_SEED_NOTE)
    return AdviceResult(
        recommendation=recommendation,
        reason=reason,
        best=best,
        table=pd.DataFrame([o.row() for o in table]),
        curve=pd.DataFrame([o.row() for o in curve]),
        baseline=baseline,
        size=int(size),
        noise=noise,
        new_label_noise=new_noise,
        label_cost=float(label_cost),
        review_cost=float(review_cost),
        budget=float(budget),
        p_best=p_best,
        noise_model=nma.noise_model,
        surface=surface.name,
        review_source=source,
        currency=currency,
        confidence=confidence,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def check_money(label_cost: Any, review_cost: Any, budget: Any, currency: str) -> None:
    for name, flag, v in (
        ("label_cost", "--label-cost", label_cost),
        ("review_cost", "--review-cost", review_cost),
        ("budget", "--budget", budget),
    ):
        if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not v > 0:
            raise ConfigError(
                f"{name} ({flag}) must be a positive amount such as 0.10; got {v!r}"
                + (" — a budget of 0 buys nothing" if name == "budget" and v == 0 else "")
            )
        if not math.isfinite(float(v)):
            raise ConfigError(f"{name} ({flag}) must be a finite amount; got {v!r}")
    if budget < min(label_cost, review_cost):
        raise ConfigError(
            f"a budget of {_money(budget, currency)} buys neither one new label "
            f"({_money(label_cost, currency)}) nor one review ({_money(review_cost, currency)}); "
            "raise --budget"
        )


def check_point(size: Any, noise: Any, new_label_noise: Any, review_precision: Any) -> None:
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1
    ):
        raise ConfigError(f"size (--size) must be a positive number of labels; got {size!r}")
    for name, flag, v in (
        ("noise", "--noise", noise),
        ("new_label_noise", "--new-label-noise", new_label_noise),
    ):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not 0 <= v < 1:
            hint = (
                f"; did you mean {v / 100:g}?"
                if isinstance(v, int | float) and 1 <= v < 100
                else ""
            )
            raise ConfigError(
                f"{name} ({flag}) must be a fraction in [0, 1) such as 0.1; got {v!r}{hint}"
            )
    if review_precision is not None and not (
        isinstance(review_precision, int | float | np.number) and 0 <= review_precision <= 1
    ):
        raise ConfigError(
            f"review_precision must be a share in [0, 1] such as 0.8; got {review_precision!r}"
        )


def check_noise_bound(noise: float | None, new_label_noise: float | None, n_classes: int) -> None:
    """Noise rates must stay below ``1 − 1/K``, where labels stop carrying any signal.

    Raises
    ------
    ConfigError
        ``noise`` or ``new_label_noise`` is at or above the bound for ``n_classes`` classes.
    """
    bound = 1 - 1 / n_classes
    for name, flag, v in (
        ("noise", "--noise", noise),
        ("new_label_noise", "--new-label-noise", new_label_noise),
    ):
        if v is not None and not v < bound:
            raise ConfigError(
                f"{name} ({flag}) must be below 1 − 1/K = {pct(bound)} for K = {n_classes} "
                f"classes (at {pct(bound)} a label is as likely wrong as right, past it the "
                f"labels point away from the truth); got {v:g}"
            )


def noise_model_analysis(analysis: Analysis, noise_model: str | None) -> NoiseModelAnalysis:
    """The analysis of ``noise_model`` (the only one when None), which must have a surface.

    Raises
    ------
    AnalysisError
        No such noise model, or its grid has no fitted surface (e.g. a single size).
    """
    nm = pick_noise_model_from(analysis.noise_models, noise_model)
    nma = analysis.by_noise_model[nm]
    if nma.best is None:
        raise AnalysisError(
            f"advise needs a fitted accuracy surface, and the grid ({nma.noise_model} noise) has "
            f"none: {nma.surface_skipped}; add sizes or noise rates to the grid and run them"
        )
    return nma


def check_in_grid(size: int, noise: float, cov: Any, allow: bool) -> None:
    if cov.measured(size, noise) or allow:
        return
    raise AnalysisError(
        f"({size:,} labels, {pct(noise)} noise) lies outside the measured grid "
        f"({cov.measured_text()}, the done runs); ask about a point inside it (--size/--noise), "
        "add sizes or noise rates to the grid, or accept extrapolation with --allow-extrapolation"
    )


# --------------------------------------------------------------------------------------------
# The surface and its draws
# --------------------------------------------------------------------------------------------


def _surface_draws(
    analysis: Analysis, nma: NoiseModelAnalysis, n_bootstrap: int, seed: int
) -> tuple[np.ndarray, Resampling | None]:
    """Parameter draws of the chosen surface and how they were made: its bootstrap, or a fresh
    one when it has none.

    A surface whose exchange rate is fixed by its form keeps no draws (its rate would not
    vary), but its accuracy level does vary, and the advice needs that.
    """
    best = nma.best
    assert best is not None
    if best.boot_params.shape[0] >= 2 or n_bootstrap < 2:
        return np.asarray(best.boot_params, dtype=float), best.resampling
    done = done_rows(analysis.results[analysis.results["noise_model"] == nma.noise_model])
    n = done["train_size"].to_numpy(dtype=float)
    eta = done["noise_level"].to_numpy(dtype=float)
    y = done["eval_accuracy"].to_numpy(dtype=float) * 100
    cell = done.groupby(["train_size", "noise_level"], sort=True).ngroup().to_numpy()
    seeds = done["seed"].to_numpy(dtype=int)
    rng = np.random.default_rng([seed, 7])
    return bootstrap_fits(best.candidate, n, eta, y, cell, seeds, n_bootstrap=n_bootstrap, rng=rng)


class _Model:
    """Accuracy (percent, within 0–100) from the chosen surface, with its draws for intervals.

    Every interval is :func:`~noisegrid.analysis.rates.t_interval` of the draws (seed-level
    bootstrap, t with U − 1 degrees of freedom, U/(U − 1) inflation), as in ``analyze``.
    """

    def __init__(
        self,
        best: SurfaceFit,
        draws: np.ndarray,
        resampling: Resampling | None,
        confidence: float,
    ) -> None:
        self.best = best
        self.draws = draws if resampling is not None else np.empty((0, draws.shape[-1]))
        self.resampling = resampling
        self.confidence = confidence

    def predict(self, n: np.ndarray, eta: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.best.predict(n, eta), dtype=float), 0.0, 100.0)

    def predict_draws(self, n: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Shape (n_draws, len(n)); no rows without draws."""
        if self.draws.shape[0] < 2:
            return np.empty((0, len(n)))
        rows = [self.best.candidate.predict(p, n, eta) for p in self.draws]
        return np.clip(np.vstack(rows), 0.0, 100.0)

    def interval(
        self, estimate: float, draws: np.ndarray, *, bounded: bool = True
    ) -> tuple[float, float]:
        """The t interval of ``estimate`` from ``draws`` (clipped to 0–100 for an accuracy)."""
        if draws.size < 2 or self.resampling is None:
            return math.nan, math.nan
        low, high = t_interval(estimate, draws[:, None], self.resampling, self.confidence)
        lo, hi = float(low[0]), float(high[0])
        if bounded:
            lo, hi = max(lo, 0.0), min(hi, 100.0)
        return lo, hi

    def accuracy(self, n: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        est = self.predict(n, eta)
        d = self.predict_draws(n, eta)
        if d.shape[0] < 2 or self.resampling is None:
            nan = np.full_like(est, np.nan)
            return est, nan, nan
        low, high = t_interval(est, d, self.resampling, self.confidence)
        return est, np.clip(low, 0.0, 100.0), np.clip(high, 0.0, 100.0)


# --------------------------------------------------------------------------------------------
# Spending
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _World:
    """The question: the labels now, the prices, and what a review finds at each depth."""

    size: int
    noise: float
    new_noise: float
    label_cost: float
    review_cost: float
    precision: Callable[[np.ndarray], np.ndarray]
    max_size: int
    min_size: int
    noise_range: tuple[float, float]


@dataclass(frozen=True)
class _Outcome:
    """What one strategy buys with one budget, and the accuracy it predicts."""

    budget: float
    strategy: str
    share: float
    n_reviews: int
    n_new: int
    n_fixed: float
    size: int
    noise: float
    accuracy: float
    low: float
    high: float
    gain: float
    gain_low: float
    gain_high: float
    extrapolated: bool
    draws: np.ndarray = field(repr=False, compare=False)

    def row(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "strategy": self.strategy,
            "share": self.share,
            "n_reviews": self.n_reviews,
            "n_new": self.n_new,
            "n_fixed": self.n_fixed,
            "size": self.size,
            "noise": self.noise,
            "accuracy_pct": self.accuracy,
            "low": self.low,
            "high": self.high,
            "gain_pct": self.gain,
            "gain_low": self.gain_low,
            "gain_high": self.gain_high,
            "extrapolated": self.extrapolated,
        }


def _spend(budget: float, share: np.ndarray, w: _World) -> dict[str, np.ndarray]:
    """What ``budget`` buys with each ``share`` of it on reviews and the rest on new labels."""
    eps = 1e-9
    # Money left when every label has been reviewed stays unspent: moving it to new labels is
    # another share, which the mix search tries anyway.
    reviews = np.minimum(np.floor(share * budget / w.review_cost + eps), w.size)
    new = np.floor((1 - share) * budget / w.label_cost + eps)
    wrong_now = w.size * w.noise
    fixed = np.minimum(reviews * w.precision(reviews / w.size), wrong_now)
    n_after = w.size + new
    return {
        "n_reviews": reviews,
        "n_new": new,
        "n_fixed": fixed,
        "size": n_after,
        "noise": (wrong_now - fixed + new * w.new_noise) / n_after,
    }


def _outcomes(budget: float, w: _World, model: _Model) -> dict[str, _Outcome]:
    """The three strategies at one budget: all on labels, all on reviews, the best share."""
    shares = np.linspace(0, 1, N_SHARES)
    grid = _spend(budget, shares, w)
    acc = model.predict(grid["size"], grid["noise"])
    finite = np.isfinite(acc)
    if not finite.any():
        raise AnalysisError(
            f"the surface predicts no accuracy for any way of spending {budget:,.2f} here (the "
            "noise after spending lies where it has no signal); ask about a lower noise rate"
        )
    picks = {
        "collect": 0,
        "clean": N_SHARES - 1,
        "mix": int(np.argmax(np.where(finite, acc, -np.inf))),
    }
    start_n, start_eta = np.array([float(w.size)]), np.array([w.noise])
    base = float(model.predict(start_n, start_eta)[0])
    base_draws = model.predict_draws(start_n, start_eta)[:, 0]
    lo_noise, hi_noise = w.noise_range
    out = {}
    for strategy, i in picks.items():
        n_after, eta = np.array([grid["size"][i]]), np.array([grid["noise"][i]])
        est = float(model.predict(n_after, eta)[0])
        draws = model.predict_draws(n_after, eta)[:, 0]
        low, high = model.interval(est, draws)
        gain_low, gain_high = model.interval(est - base, draws - base_draws, bounded=False)
        out[strategy] = _Outcome(
            budget=budget,
            strategy=strategy,
            share=float(shares[i]),
            n_reviews=int(grid["n_reviews"][i]),
            n_new=int(grid["n_new"][i]),
            n_fixed=float(grid["n_fixed"][i]),
            size=int(n_after[0]),
            noise=float(eta[0]),
            accuracy=est,
            low=low,
            high=high,
            gain=est - base,
            gain_low=gain_low,
            gain_high=gain_high,
            extrapolated=bool(
                not w.min_size <= n_after[0] <= w.max_size
                or not lo_noise - 1e-12 <= eta[0] <= hi_noise + 1e-12
            ),
            draws=draws,
        )
    return out


def _interval_note(model: _Model) -> str:
    """What the intervals resampled and what they leave out."""
    rs = model.resampling
    if rs is None or model.draws.shape[0] < 2:
        return "No intervals: the surface has no bootstrap draws (n_bootstrap=0)."
    what = (
        f"whole seeds resampled ({rs.describe()}; t with {rs.df} degrees of freedom, variance "
        f"inflated by {rs.n_units}/{rs.df})"
        if rs.unit == "seed"
        else f"cells resampled, one seed ({rs.describe()})"
    )
    return (
        f"Intervals cover the surface's fit: {what}; not the choice of surface or the review "
        "precision's own error; new labels are not reviewed."
    )


def _best(at: dict[str, _Outcome]) -> str:
    top = max(o.accuracy for o in at.values())
    # A mix that spends everything on one side is that pure strategy: prefer the simpler name.
    return next(s for s in STRATEGIES if at[s].accuracy >= top - 1e-9)


@dataclass(frozen=True)
class _Verdict:
    """The recommended strategy against the runner-up, over the surface's draws."""

    runner: str | None
    p_better: float
    diff_low: float
    diff_high: float
    tie: bool
    draws_of: str = "the surface's bootstrap draws"
    """What ``p_better`` counts over, for the text."""


def _versus(at: dict[str, _Outcome], best: str, model: _Model) -> _Verdict:
    """How sure the surface is that ``best`` beats the best other strategy.

    ``p_better`` is the share of draws in which it does (equal draws count half); the two are a
    tie when the t interval of their difference (the same construction as every other interval)
    holds zero, or when they predict the same accuracy.
    """
    b = at[best]
    others = [
        o for s, o in at.items() if s != best and (o.n_reviews, o.n_new) != (b.n_reviews, b.n_new)
    ]
    if not others:
        return _Verdict(None, math.nan, math.nan, math.nan, False)
    runner = max(others, key=lambda o: o.accuracy)
    same = abs(b.accuracy - runner.accuracy) < 1e-9
    if b.draws.size < 2 or runner.draws.size < 2:
        return _Verdict(runner.strategy, math.nan, math.nan, math.nan, same)
    diff = b.draws - runner.draws
    p = float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))
    low, high = model.interval(b.accuracy - runner.accuracy, diff, bounded=False)
    tie = same or not low > 0
    return _Verdict(runner.strategy, p, low, high, tie)


def _p_better_with_precision(
    at: dict[str, _Outcome],
    best: str,
    runner: str,
    w: _World,
    model: _Model,
    precision_se: Callable[[np.ndarray], np.ndarray],
    seed: int,
) -> float:
    """Share of draws in which ``best`` beats ``runner`` when each surface draw comes with its own
    draw of the review precision (one normal deviate of its standard error, all depths at once;
    equal draws count half). NaN without surface draws."""
    b, r = at[best], at[runner]
    n_draws = model.draws.shape[0]
    if n_draws < 2:
        return math.nan
    z = np.random.default_rng([seed, 7]).standard_normal(n_draws)
    accs = []
    for o in (b, r):
        if o.n_reviews == 0:
            accs.append(o.draws)
            continue
        depth = np.array([o.n_reviews / w.size])
        p = np.clip(w.precision(depth)[0] + z * precision_se(depth)[0], 0.0, 1.0)
        wrong_now = w.size * w.noise
        fixed = np.minimum(o.n_reviews * p, wrong_now)
        eta = (wrong_now - fixed + o.n_new * w.new_noise) / o.size
        n = np.full(n_draws, float(o.size))
        # Draw i of the surface at draw i's point.
        rows = [
            model.best.candidate.predict(params, n[i : i + 1], eta[i : i + 1])
            for i, params in enumerate(model.draws)
        ]
        accs.append(np.clip(np.concatenate(rows).astype(float), 0.0, 100.0))
    diff = accs[0] - accs[1]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


# --------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------


def _what(o: _Outcome, w: _World, money: Callable[[float], str]) -> str:
    """What a strategy buys, in words."""
    if o.strategy == "collect" or o.n_reviews == 0:
        return f"{o.n_new:,} new labels"
    if o.strategy == "clean" or o.n_new == 0:
        return f"reviewing the top {o.n_reviews:,} suspected wrong labels"
    return (
        f"reviewing the top {o.n_reviews:,} suspects ({money(o.n_reviews * w.review_cost)}) "
        f"and {o.n_new:,} new labels ({money(o.n_new * w.label_cost)})"
    )


def _explain(
    at: dict[str, _Outcome],
    best: str,
    verdict: _Verdict,
    model: _Model,
    w: _World,
    *,
    budget: float,
    currency: str,
) -> tuple[str, str]:
    r = at[best]

    def money(x: float) -> str:
        return _money(x, currency)

    what = _what(r, w, money)
    star = " (extrapolated beyond the grid)" if r.extrapolated else ""
    level = model.confidence
    if verdict.tie and verdict.runner is not None:
        other = at[verdict.runner]
        diff = (
            f" ({level:.0%} CI of the difference {verdict.diff_low:+.1f} to "
            f"{verdict.diff_high:+.1f} points)"
            if not math.isnan(verdict.diff_low)
            else ""
        )
        recommendation = (
            f"A tie for the {money(budget)}: {what} predicts {r.accuracy:.1f}%"
            f"{_ci(r.low, r.high, level)}{star} and {_what(other, w, money)} "
            f"{other.accuracy:.1f}%{_ci(other.low, other.high, level)}, which the grid cannot "
            f"tell apart{diff}; either gains about {r.gain:+.1f} points over now, so choose on "
            "what the table does not price (speed, effort, risk)."
        )
    else:
        others = [
            f"{at[s].accuracy:.1f}% with {STRATEGY_TEXT[s]}"
            for s in ("collect", "clean")
            if s != best
        ]
        sure = (
            f"; it beats the runner-up in {verdict.p_better:.0%} of {verdict.draws_of}"
            if not math.isnan(verdict.p_better)
            else ""
        )
        recommendation = (
            f"Spend the {money(budget)} on {what}: predicted accuracy {r.accuracy:.1f}%"
            f"{_ci(r.low, r.high, level)}{star}, {r.gain:+.1f} points over now, against "
            f"{' and '.join(others)}{sure}."
        )
    worth = _labels_per_fix(model, w)
    # The head of the list: its first 1% (at least one review).
    head_depth = max(1, round(0.01 * w.size))
    top = float(w.precision(np.array([head_depth / w.size]))[0])
    per_fix = w.review_cost / top if top > 0 else math.inf
    arriving = (
        f", new labels arriving at {pct(w.new_noise)} noise"
        if abs(w.new_noise - w.noise) > 1e-12
        else ""
    )
    if math.isfinite(worth):
        value = (
            f"Here one corrected label is worth about {worth:.1f} new labels (the surface's slopes "
            f"at {w.size:,} labels and {pct(w.noise)} noise{arriving}), i.e. "
            f"{money(worth * w.label_cost)} of new labels"
        )
    else:
        value = (
            f"Here new labels do not raise the predicted accuracy (the surface's slopes at "
            f"{w.size:,} labels and {pct(w.noise)} noise{arriving}), so only fixes do"
        )
    if top > 0:
        head = (
            f"{value}; a review costs {money(w.review_cost)} and the top {head_depth:,} "
            f"suspects are {top:.0%} wrong, so a fix costs {money(per_fix)} at the head of the "
            "list"
        )
    else:
        head = f"{value}; at {pct(w.noise)} noise no label is wrong, so a review fixes nothing"
    wrong = w.size * w.noise
    fixed = f"{r.n_fixed:,.0f} of the {wrong:,.0f} wrong labels are fixed"
    if best == "collect":
        tail = "; new labels buy more accuracy for the money."
    elif best == "clean":
        tail = (
            f", and reviews stay the better buy down to {r.n_reviews:,} suspects ({fixed} there)."
        )
    else:
        tail = (
            f"; reviews pay first: {fixed} within the top {r.n_reviews:,} suspects, where only "
            f"{_marginal_precision(w, r.n_reviews):.0%} of the next ones are wrong, so the rest "
            "of the budget goes to new labels."
        )
    return recommendation, head + tail


def _capped(
    precision: Callable[[np.ndarray], np.ndarray], noise: float
) -> Callable[[np.ndarray], np.ndarray]:
    """``precision`` capped by the wrong labels there are: the first ``d`` reviews (a share of
    the labels) cannot find more than ``N·P`` wrong ones, a precision of at most ``P/d``."""

    def capped(depth: np.ndarray) -> np.ndarray:
        d = np.asarray(depth, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            cap = np.where(d > 0, noise / d, np.inf)
        return np.minimum(precision(d), cap)

    return capped


def _labels_per_fix(model: _Model, w: _World) -> float:
    """New labels (arriving at ``w.new_noise``) worth one corrected label, at the margin.

    Fixing one of ``N`` labels lowers the noise by ``1/N``; one new label adds to the size and
    moves the noise by ``(P_new − P)/N``. With ``P_new = P`` this is the exchange rate
    ``× 100 / N``; otherwise noisier new labels are worth less.
    """
    n, eta = np.array([float(w.size)]), np.array([w.noise])
    d_size, d_noise = (float(x[0]) for x in model.best.candidate.slopes(model.best.params, n, eta))
    per_fix = -100 * d_noise / w.size  # d_noise is per point of noise
    per_new = d_size + 100 * d_noise * (w.new_noise - w.noise) / w.size
    if not per_new > 0:
        return math.inf
    return per_fix / per_new


def _marginal_precision(w: _World, depth: int) -> float:
    """Share of wrong labels among the next 1% of the list after ``depth`` reviews."""
    step = max(1, round(0.01 * w.size))
    d = np.array([depth, min(depth + step, w.size)], dtype=float)
    if d[1] <= d[0]:
        return 0.0
    hits = np.minimum(d * w.precision(d / w.size), w.size * w.noise)
    return float((hits[1] - hits[0]) / (d[1] - d[0]))


def _format_table(result: AdviceResult) -> str:
    rows = []
    for r in result.table.to_dict("records"):
        star = "*" if r["extrapolated"] else ""
        rows.append(
            {
                "budget": result.money(r["budget"]),
                "strategy": r["strategy"],
                "reviews": f"{r['n_reviews']:,}",
                "new labels": f"{r['n_new']:,}",
                "fixed": f"{r['n_fixed']:,.0f}",
                "labels after": f"{r['size']:,}{star}",
                "noise after": pct(r["noise"]),
                "accuracy": f"{r['accuracy_pct']:.1f}%",
                f"{result.confidence:.0%} CI": _ci_bare(r["low"], r["high"]),
                "gain": f"{r['gain_pct']:+.2f}",
            }
        )
    text = pd.DataFrame(rows).to_string(index=False)
    return "\n".join("  " + line for line in text.splitlines())


def _money(x: float, currency: str) -> str:
    return f"{currency}{x:,.2f}"


def pct(x: float) -> str:
    """A fraction as a percentage with one decimal, e.g. ``10.0%``."""
    return f"{100 * x:.1f}%"


def _ci(lo: float, hi: float, level: float) -> str:
    if math.isnan(lo):
        return ""
    return f" ({level:.0%} CI {lo:.1f}–{hi:.1f}%)"


def _ci_bare(lo: float, hi: float) -> str:
    return "" if math.isnan(lo) else f"{lo:.1f}–{hi:.1f}%"
