"""Coverage of the analysis's nominal 95% intervals, tested on synthetic grids.

The grids come from a known surface plus seed-level errors like the real ones (cells of one seed
correlate about 0.7; ``synthetic.py``). The fits are the cheapest candidate whose rate varies
over the grid (``log_size_interaction``, linear in its parameters), refitted by the analysis's own
bootstrap and turned into intervals by its own code, so what is tested is the interval method,
not a copy of it. ``benchmarks/coverage.py`` prints the full table (one seed against several).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

import synthetic as syn
from noisegrid.analysis import analyze, focus_cell
from noisegrid.analysis.rates import ONE_SEED_NOTE, rate_interval
from noisegrid.analysis.regression import fieller_interval, fit_reference

N_GRIDS = 200
N_BOOTSTRAP = 100


def _truths() -> tuple[tuple[int, float], float, float]:
    focus = focus_cell(syn.LAPTOP_SIZES, syn.LAPTOP_NOISE)
    assert focus is not None
    n, eta = (a.ravel().astype(float) for a in np.meshgrid(*_grid(), indexing="ij"))
    plane = np.column_stack([np.ones_like(n), n / 1000, 100 * eta])
    coef = np.linalg.lstsq(plane, syn.laptop_surface(n, eta), rcond=None)[0]
    return focus, syn.laptop_rate(*focus), 1000 * -coef[2] / coef[1]


def _grid() -> tuple[tuple[int, ...], tuple[float, ...]]:
    return syn.LAPTOP_SIZES, syn.LAPTOP_NOISE


def test_simulated_seeds_correlate_like_real_ones():
    rng = np.random.default_rng(1)
    errors = syn.seed_errors(*_grid(), 4000, rng)
    corr = np.corrcoef(errors, rowvar=False)
    off = corr[~np.eye(corr.shape[0], dtype=bool)]
    assert 0.65 <= off.mean() <= 0.75
    assert off.mean() == pytest.approx(syn.mean_correlation(), abs=0.02)
    assert errors.std() == pytest.approx(syn.SD, rel=0.05)


def test_three_seed_intervals_cover_the_truth_at_least_90_percent_of_the_time():
    rng = np.random.default_rng(2024)
    (size, noise), truth, truth_plane = _truths()
    n, eta = np.array([float(size)]), np.array([noise])
    local = reference = 0
    for _ in range(N_GRIDS):
        table = syn.synthetic_table(syn.laptop_surface, syn.seed_errors(*_grid(), 3, rng))
        fit = syn.fit_surface(table, "log_size_interaction", n_bootstrap=N_BOOTSTRAP, rng=rng)
        assert fit.resampling is not None and fit.resampling.unit == "seed"
        _, low, high = rate_interval(fit, n, eta, 0.95)
        local += bool(low[0] <= truth <= high[0])
        rate = fit_reference(table, 0.95, "auto").exchange_rate
        assert rate is not None and rate.method.startswith("Fieller, clustered by seed")
        reference += bool(rate.low <= truth_plane <= rate.high)
    assert local / N_GRIDS >= 0.90
    assert reference / N_GRIDS >= 0.90


def test_one_seed_cell_bootstrap_misses_replication_and_says_so():
    # The reason seeds are the resampling unit: with one seed the cell bootstrap sees only
    # the independent part of the errors, and its 95% intervals cover the truth far less often.
    rng = np.random.default_rng(7)
    (size, noise), truth, _ = _truths()
    n, eta = np.array([float(size)]), np.array([noise])
    hits = 0
    for _ in range(N_GRIDS // 2):
        table = syn.synthetic_table(syn.laptop_surface, syn.seed_errors(*_grid(), 1, rng))
        fit = syn.fit_surface(table, "log_size_interaction", n_bootstrap=N_BOOTSTRAP, rng=rng)
        assert fit.resampling is not None and fit.resampling.unit == "cell"
        _, low, high = rate_interval(fit, n, eta, 0.95)
        hits += bool(low[0] <= truth <= high[0])
    assert hits / (N_GRIDS // 2) < 0.90
    table = syn.synthetic_table(syn.laptop_surface, syn.seed_errors(*_grid(), 1, rng))
    result = analyze(table, n_bootstrap=20)
    assert ONE_SEED_NOTE in result.by_noise_model["uniform"].notes
    assert "Run at least 3 seeds" in ONE_SEED_NOTE
    assert "cover test-sample and fitting noise only, not replication" in result.summary()
    assert "run at least 3 seeds" in result.summary()


# --- Fieller's interval ----------------------------------------------------------------------


def test_fieller_interval_solves_its_quadratic():
    a, b, v_aa, v_ab, v_bb, q = 3.0, 1.5, 0.4, -0.05, 0.09, 2.0
    low, high = fieller_interval(np.array([a]), np.array([b]), v_aa, v_ab, v_bb, q)
    for r in (low[0], high[0]):
        # On the bounds the pivot (a − r·b)/se(a − r·b) equals the quantile.
        assert (a - r * b) ** 2 == pytest.approx(q * q * (v_aa - 2 * r * v_ab + r * r * v_bb))
    assert low[0] < a / b < high[0]
    # Skewed away from zero where the denominator is imprecise.
    assert high[0] - a / b > a / b - low[0]


def test_fieller_interval_is_unbounded_when_the_denominator_is_not_significant():
    low, high = fieller_interval(np.array([3.0]), np.array([0.2]), 0.4, 0.0, 0.04, 1.96)
    assert low[0] == -math.inf and high[0] == math.inf


def test_reference_rate_uses_fieller_with_seed_clustered_covariance():
    rng = np.random.default_rng(3)
    table = syn.synthetic_table(syn.laptop_surface, syn.seed_errors(*_grid(), 3, rng))
    ref = fit_reference(table, 0.95, "auto")
    data = pd.DataFrame(
        {
            "eval_accuracy_pct": table["eval_accuracy"] * 100,
            "train_size_1k": table["train_size"] / 1000,
            "noise_level_pct": table["noise_level"] * 100,
            "seed": table["seed"],
        }
    )
    fit = smf.ols("eval_accuracy_pct ~ train_size_1k + noise_level_pct", data=data).fit(
        cov_type="cluster", cov_kwds={"groups": data["seed"]}, use_t=True
    )
    bs, bn = fit.params["train_size_1k"], fit.params["noise_level_pct"]
    v = fit.cov_params()
    q = stats.t.ppf(0.975, 2)  # three seeds: t with 2 degrees of freedom
    rate = ref.exchange_rate
    assert rate is not None
    assert rate.estimate == pytest.approx(-1000 * bn / bs)
    for r in (rate.low, rate.high):
        # (1000·b_noise + r·b_size)² = q²·Var(1000·b_noise + r·b_size) on the bounds.
        var = (
            1e6 * v.loc["noise_level_pct", "noise_level_pct"]
            + 2000 * r * v.loc["noise_level_pct", "train_size_1k"]
            + r * r * v.loc["train_size_1k", "train_size_1k"]
        )
        assert (1000 * bn + r * bs) ** 2 == pytest.approx(q * q * var, rel=1e-8)
    delta = ref.exchange_rate_delta
    assert delta is not None and delta.method == "delta method"
    assert delta.estimate == pytest.approx(rate.estimate)


def test_unbounded_reference_rate_is_said_not_printed_as_a_number():
    # Accuracy that barely moves with size: the size slope is not significant.
    rng = np.random.default_rng(4)
    sizes, noise = (1000, 2000, 3000), (0.0, 0.1, 0.2)
    table = syn.synthetic_table(
        lambda n, eta: 80 + 0.00001 * n - 10 * eta,
        syn.seed_errors(sizes, noise, 1, rng, sd=1.0),
        sizes=sizes,
        noise=noise,
    )
    ref = fit_reference(table, 0.95, "auto")
    rate = ref.exchange_rate
    assert rate is not None and rate.unbounded
    assert rate.ci_text() == "95% CI unbounded"
    assert "not significant" in rate.method
    summary = analyze(table, n_bootstrap=0).summary()
    assert "95% CI unbounded: the size slope is not significant" in summary
