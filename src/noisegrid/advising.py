"""Advice: the workflow behind :func:`advise` — load the grid, audit the data, price a budget.

It resolves the question (arguments first, then the experiment's ``[advice]`` section), loads and
analyses the grid's results, reads or runs the audit whose calibration prices a review, and hands
the numbers to :func:`noisegrid.analysis.advise.price_budget`, which does the statistics. The
figure is drawn by :mod:`noisegrid.report` (:func:`noisegrid.report.save_advice`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .analysis import Analysis, analyze
from .analysis.advise import (
    AdviceResult,
    check_in_grid,
    check_money,
    check_noise_bound,
    check_point,
    noise_model_analysis,
    pct,
    price_budget,
)
from .auditing import AuditResult, load_audit
from .auditing import audit as run_audit
from .config import ExperimentSpec
from .errors import AnalysisError, ConfigError
from .results import load_results, require_results, resolve_spec

__all__ = ["AdviceResult", "advise"]


def advise(
    results: pd.DataFrame | Any,
    *,
    label_cost: float | None = None,
    review_cost: float | None = None,
    budget: float | None = None,
    size: int | None = None,
    noise: float | None = None,
    new_label_noise: float | None = None,
    audit: AuditResult | str | Path | None = None,
    review_precision: float | None = None,
    noise_model: str | None = None,
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
    analysis: Any = None,
    allow_extrapolation: bool = False,
    audit_sample: int | None = None,
    currency: str | None = None,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> AdviceResult:
    """Collect new labels, review suspected wrong ones, or mix: what a budget buys.

    Parameters
    ----------
    results : DataFrame, Analysis, ExperimentSpec or path of an experiment TOML
        The grid: its tidy results table, its :func:`~noisegrid.analyze` result, or the
        experiment (whose ``[advice]`` section supplies every option not given here, and whose
        data the audit reads when one is needed).
    label_cost : float
        Cost of one new label (> 0).
    review_cost : float
        Cost of reviewing one label (> 0).
    budget : float
        Money to spend (> 0).
    size : int, optional
        Labels you have now. Default: the audited training split's size.
    noise : float, optional
        Their noise rate (fraction). Default: the audit's estimate.
    new_label_noise : float, optional
        Noise rate of new labels. Default: ``noise``.
    audit : AuditResult or folder, optional
        An audit (:func:`~noisegrid.audit`, or the folder ``noisegrid audit --out`` wrote) whose
        calibration prices reviews. With an experiment and neither ``audit`` nor
        ``review_precision``, the experiment's data are audited.
    review_precision : float, optional
        Instead of an audit: the share of reviewed labels that turn out wrong, the same at every
        depth (capped by the wrong labels left).
    noise_model : str, optional
        Which noise model's surface, when the grid has several.
    overrides, store
        For an experiment TOML, as for ``noisegrid run``.
    analysis : Analysis, optional
        With an experiment: its analysis already computed (skips recomputing it).
    allow_extrapolation : bool, default False
        Accept a start point outside the measured grid (the outcomes are flagged).
    audit_sample : int, optional
        Examples the audit samples when this function runs one (default: the audit's default).
    currency : str, optional
        Shown before amounts (default ``[advice] currency`` or ``$``).
    n_bootstrap, confidence, seed
        As in :func:`~noisegrid.analyze`; the draws give the accuracy intervals.

    Returns
    -------
    AdviceResult

    Raises
    ------
    AnalysisError, ConfigError
        A cost or the budget is not positive, the grid has no surface (e.g. a single size), the
        start point lies outside the grid, or the review precision has no source.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rows = [{"train_size": n, "noise_level": e, "seed": 0, "status": "done",
    ...          "eval_accuracy": 0.6 + 0.03 * np.log(n / 1000) - 0.4 * e}
    ...         for n in [1000, 2000, 4000, 8000] for e in [0.0, 0.1, 0.2]]
    >>> a = advise(pd.DataFrame(rows), label_cost=0.1, review_cost=0.05, budget=100,
    ...            size=2000, noise=0.1, review_precision=0.8, n_bootstrap=50)
    >>> a.best
    'clean'
    """
    spec = _as_spec(results, overrides, store)
    adv = spec.advice if spec is not None else None
    label_cost = _pick(label_cost, adv, "label_cost", "--label-cost")
    review_cost = _pick(review_cost, adv, "review_cost", "--review-cost")
    budget = _pick(budget, adv, "budget", "--budget")
    size = size if size is not None else (adv.size if adv else None)
    noise = noise if noise is not None else (adv.noise if adv else None)
    if new_label_noise is None and adv is not None:
        new_label_noise = adv.new_label_noise
    if review_precision is None and adv is not None:
        review_precision = adv.review_precision
    if audit_sample is None and adv is not None:
        audit_sample = adv.audit_sample
    if currency is None:
        currency = adv.currency if adv is not None else "$"
    if audit is None and adv is not None and adv.audit:
        audit = adv.audit
    check_money(label_cost, review_cost, budget, currency)
    check_point(size, noise, new_label_noise, review_precision)

    # The surface first: a grid that cannot answer fails before any audit runs.
    if analysis is None:
        analysis = _analysis(results, spec, n_bootstrap, confidence, seed)
    nma = noise_model_analysis(analysis, noise_model)
    check_noise_bound(noise, new_label_noise, analysis.n_classes)
    cov = nma.coverage
    if size is not None and noise is not None:
        check_in_grid(size, noise, cov, allow_extrapolation)

    audit_result: AuditResult | None = None
    if isinstance(audit, AuditResult):
        audit_result = audit
    elif audit is not None:
        audit_result = load_audit(audit)
    needs_audit = review_precision is None or size is None or noise is None
    if audit_result is None and needs_audit:
        if spec is None:
            raise AnalysisError(
                "advise needs to know how many reviewed labels are wrong: pass audit= (an "
                "AuditResult or an audit folder) or review_precision=, or pass the experiment "
                "instead of its table"
                + ("" if size is not None and noise is not None else ", and size= and noise=")
            )
        # The advice uses the audit's estimate and precision curves, not its intervals.
        kwargs: dict[str, Any] = {"seed": seed, "n_bootstrap": 0}
        if audit_sample is not None:
            kwargs["sample"] = audit_sample
        audit_result = run_audit(spec, **kwargs)
    if size is None:
        size = audit_result.n_total if audit_result is not None else None
    if noise is None:
        noise = audit_result.noise_estimate if audit_result is not None else None
    if size is None or noise is None:  # pragma: no cover - guarded above
        raise AnalysisError("give size and noise")
    noise = float(noise)
    check_in_grid(size, noise, cov, allow_extrapolation)
    new_noise = float(noise if new_label_noise is None else new_label_noise)

    notes: list[str] = []
    precision_se = None
    if review_precision is not None:
        rp = float(review_precision)

        def precision(depth: np.ndarray) -> np.ndarray:
            return np.full_like(depth, rp, dtype=float)

        source = f"a fixed review precision of {rp:.0%}"
        notes.append(
            "The fixed review precision is taken as exact in the comparison of strategies."
        )
    else:
        assert audit_result is not None
        ar = audit_result

        def precision(depth: np.ndarray) -> np.ndarray:
            return ar.review_precision(noise, depth)

        def precision_se(depth: np.ndarray) -> np.ndarray:
            # Binomial error of a share measured on the n_audited · depth suspects reviewed in
            # the calibration.
            p = np.clip(precision(depth), 0.0, 1.0)
            n = np.maximum(ar.n_audited * np.asarray(depth, dtype=float), 1.0)
            return np.sqrt(p * (1 - p) / n)

        rates = ar.precision_curves["injected"].unique()
        totals = ar.curve_totals(np.sort(rates))
        source = (
            f"the audit's calibration ({ar.backend}, {ar.n_audited:,} examples, uniform noise "
            f"injected at {pct(float(rates.min()))}–{pct(float(rates.max()))}: "
            f"{pct(float(totals[0]))}–{pct(float(totals[-1]))} noise in all)"
        )
        if noise < totals[0]:
            notes.append(
                f"The review precision at {pct(noise)} noise is the least noisy calibrated "
                f"curve's ({pct(float(totals[0]))} noise in all) scaled by "
                f"{noise / totals[0]:.2f}: fewer wrong labels, fewer found at every depth."
            )
        elif noise > totals[-1]:
            notes.append(
                f"The review precision at {pct(noise)} noise uses the noisiest calibrated curve "
                f"({pct(float(totals[-1]))} noise in all)."
            )

    return price_budget(
        analysis,
        nma,
        size=int(size),
        noise=noise,
        new_label_noise=new_noise,
        label_cost=float(label_cost),
        review_cost=float(review_cost),
        budget=float(budget),
        precision=precision,
        review_source=source,
        currency=currency,
        notes=notes,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        precision_se=precision_se,
    )


def _as_spec(results: Any, overrides: Sequence[str], store: Any) -> ExperimentSpec | None:
    if isinstance(results, str | Path | ExperimentSpec):
        return resolve_spec(results, overrides=overrides, store=store)
    if overrides or store is not None:
        raise ConfigError("overrides and store apply to an experiment, not to a results table")
    return None


def _pick(value: float | None, adv: Any, key: str, flag: str) -> float:
    if value is None and adv is not None:
        value = getattr(adv, key)
    if value is None:
        raise ConfigError(f"{key} is not given: pass {flag} or set [advice] {key} in the config")
    return value


def _analysis(
    results: Any, spec: ExperimentSpec | None, n_bootstrap: int, confidence: float, seed: int
) -> Any:
    if isinstance(results, Analysis):
        return results
    if spec is not None:
        table = load_results(spec)
        require_results(spec, table)  # a missing store or another fingerprint, said in one line
        return analyze(
            table,
            grid=spec.to_dict()["grid"],
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            seed=seed,
        )
    return analyze(results, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
