"""Tests for noisegrid.analysis: synthetic tables drawn from known accuracy surfaces."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from noisegrid.analysis import (
    Analysis,
    analyze,
    cell_summary,
    reference_regression,
    tradeoff,
)
from noisegrid.errors import AnalysisError, NoisegridError

SIZES = tuple(range(1000, 16000, 1000))
NOISE = tuple(round(0.025 * i, 4) for i in range(11))

Surface = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Accuracy in percent from sizes (examples) and noise (fractions)."""


def published(n: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """The reference article's fitted plane: 89.68 + 0.226 per 1k − 0.103 per noise point."""
    return 89.68 + 0.226 * n / 1000 - 0.103 * eta * 100


def effective_size(n: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """A power-law learning curve in n·(1 − 2η)²; its exchange rate is 0.04·n/(1 − 2η)."""
    return 93.0 - 8.0 * (n * (1 - 2 * eta) ** 2 / 1000) ** -0.5


def log_interaction(n: np.ndarray, eta: np.ndarray) -> np.ndarray:
    p = eta * 100
    return 70 + 3.0 * np.log(n) - 0.9 * p + 0.06 * p * np.log(n)


def log_interaction_rate(n: np.ndarray, eta: np.ndarray) -> np.ndarray:
    p = eta * 100
    return -(-0.9 + 0.06 * np.log(n)) * n / (3.0 + 0.06 * p)


def make_table(
    surface: Surface = published,
    *,
    sizes: Sequence[int] = SIZES,
    noise: Sequence[float] = NOISE,
    seeds: Sequence[int] = (0,),
    sd: float = 0.2,
    noise_model: str = "uniform",
    failed: Sequence[tuple[int, float, int]] = (),
    rng_seed: int = 0,
) -> pd.DataFrame:
    """A tidy results table (all schema columns) drawn from ``surface`` plus Gaussian noise."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in seeds:
        for n in sizes:
            for eta in noise:
                ok = (n, eta, seed) not in set(failed)
                acc = float(surface(np.array([n]), np.array([eta]))[0]) + rng.normal(0, sd)
                rows.append(
                    {
                        "fingerprint": "f00d",
                        "train_size": n,
                        "noise_level": eta,
                        "seed": seed,
                        "noise_model": noise_model,
                        "status": "done" if ok else "failed",
                        "realized_noise": eta,
                        "n_flipped": round(eta * n),
                        "eval_accuracy": acc / 100 if ok else math.nan,
                        "eval_macro_f1": acc / 100 if ok else math.nan,
                        "eval_log_loss": 0.3 if ok else math.nan,
                        "test_size": 10000,
                        "fit_seconds": 0.1,
                        "predict_seconds": 0.01,
                        "backend": "tfidf",
                        "model": "",
                        "dataset": "imdb",
                        "info": "{}",
                        "error": "" if ok else "RuntimeError: out of memory",
                        "finished_at": "2024-05-01T12:00:00+00:00",
                    }
                )
    return pd.DataFrame(rows)


def reference_data(table: pd.DataFrame) -> pd.DataFrame:
    done = table[table["status"] == "done"]
    return pd.DataFrame(
        {
            "eval_accuracy_pct": done["eval_accuracy"] * 100,
            "train_size_1k": done["train_size"] / 1000,
            "noise_level_pct": done["noise_level"] * 100,
            "seed": done["seed"],
        }
    )


@pytest.fixture(scope="module")
def published_table() -> pd.DataFrame:
    return make_table(published, sd=0.3)


@pytest.fixture(scope="module")
def effective_analysis() -> Analysis:
    return analyze(make_table(effective_size, seeds=(0, 1), sd=0.15), n_bootstrap=100)


# --- the reference regression ---------------------------------------------------------------


def test_reference_regression_equals_statsmodels_run_directly(published_table):
    ref = reference_regression(published_table)
    direct = smf.ols(
        "eval_accuracy_pct ~ train_size_1k + noise_level_pct", data=reference_data(published_table)
    ).fit()
    np.testing.assert_allclose(ref.table["coef"], direct.params, rtol=1e-12)
    np.testing.assert_allclose(ref.table["std_err"], direct.bse, rtol=1e-10)
    np.testing.assert_allclose(ref.table["p_value"], direct.pvalues, rtol=1e-8, atol=1e-300)
    np.testing.assert_allclose(ref.table[["ci_low", "ci_high"]], direct.conf_int(), rtol=1e-10)
    assert ref.r_squared == pytest.approx(direct.rsquared, rel=1e-12)
    assert ref.n_obs == len(published_table)
    assert ref.cov_type == "nonrobust"


def test_reference_regression_recovers_published_coefficients(published_table):
    ref = reference_regression(published_table)
    assert ref.coef("Intercept") == pytest.approx(89.68, abs=0.15)
    assert ref.coef("train_size_1k") == pytest.approx(0.226, abs=0.01)
    assert ref.coef("noise_level_pct") == pytest.approx(-0.103, abs=0.005)
    rate = ref.exchange_rate
    assert rate is not None
    assert rate.estimate == pytest.approx(1000 * 0.103 / 0.226, rel=0.06)  # ≈ 456
    assert rate.low < 1000 * 0.103 / 0.226 < rate.high


def test_delta_method_interval_is_kept_beside_fieller(published_table):
    ref = reference_regression(published_table)
    fit = smf.ols(
        "eval_accuracy_pct ~ train_size_1k + noise_level_pct", data=reference_data(published_table)
    ).fit()
    bs, bn = fit.params["train_size_1k"], fit.params["noise_level_pct"]
    cov = fit.cov_params().loc[["train_size_1k", "noise_level_pct"]].values[:, 1:]
    grad = np.array([1000 * bn / bs**2, -1000 / bs])
    se = math.sqrt(grad @ cov @ grad)
    from scipy import stats

    q = stats.t.ppf(0.975, fit.df_resid)
    rate = ref.exchange_rate_delta
    assert rate is not None and rate.method == "delta method"
    assert rate.estimate == pytest.approx(-1000 * bn / bs)
    assert rate.low == pytest.approx(rate.estimate - q * se)
    assert rate.high == pytest.approx(rate.estimate + q * se)


def test_several_seeds_cluster_standard_errors_by_seed():
    table = make_table(published, seeds=(0, 1, 2), sizes=SIZES[::2], sd=0.3)
    ref = reference_regression(table)
    data = reference_data(table)
    direct = smf.ols("eval_accuracy_pct ~ train_size_1k + noise_level_pct", data=data).fit(
        cov_type="cluster", cov_kwds={"groups": data["seed"]}, use_t=True
    )
    assert ref.cov_type == "cluster(seed)" and ref.n_clusters == 3
    np.testing.assert_allclose(ref.table["std_err"], direct.bse, rtol=1e-10)
    np.testing.assert_allclose(ref.table[["ci_low", "ci_high"]], direct.conf_int(), rtol=1e-10)
    assert ref.exchange_rate_iid is not None  # the published (non-clustered) version too
    iid = reference_regression(table, cov_type="nonrobust")
    assert iid.cov_type == "nonrobust"
    assert iid.exchange_rate is not None
    assert iid.exchange_rate.low == pytest.approx(ref.exchange_rate_iid.low)


def test_cluster_needs_several_seeds(published_table):
    with pytest.raises(AnalysisError, match="cov_type='cluster' needs at least two repeat seeds"):
        reference_regression(published_table, cov_type="cluster")
    with pytest.raises(AnalysisError, match="cov_type must be"):
        reference_regression(published_table, cov_type="robust")  # type: ignore[arg-type]


# --- candidate surfaces and local exchange rates ------------------------------------------


def test_effective_size_surface_is_chosen_and_rates_recovered(effective_analysis):
    nma = effective_analysis.by_noise_model["uniform"]
    assert nma.best is not None
    assert nma.best.name in {"effective_size_power", "power_size_signal"}
    table = nma.surfaces.set_index("name")
    # The reference plane is clearly worse than the true form, by cross-validated error.
    assert table.loc["linear", "cv_rmse"] > 2 * table.loc[nma.best.name, "cv_rmse"]
    lr = nma.local_rates
    truth = 0.04 * lr["train_size"] / (1 - 2 * lr["noise_level"])
    np.testing.assert_allclose(lr["rate"], truth, rtol=0.1)
    # Correcting one label is worth rate·100/n new labels.
    np.testing.assert_allclose(lr["labels_per_correction"], lr["rate"] * 100 / lr["train_size"])


def test_local_rates_recovered_with_intervals_for_a_log_interaction_surface():
    table = make_table(log_interaction, sizes=SIZES[::2], seeds=(0, 1), sd=0.1)
    nma = analyze(table, n_bootstrap=200, seed=3).by_noise_model["uniform"]
    assert nma.best is not None
    lr = nma.local_rates
    truth = log_interaction_rate(
        lr["train_size"].to_numpy(float), lr["noise_level"].to_numpy(float)
    )
    np.testing.assert_allclose(lr["rate"], truth, rtol=0.15)
    covered = (lr["rate_low"] <= truth) & (truth <= lr["rate_high"])
    assert covered.mean() >= 0.8
    assert (lr["rate_low"] <= lr["rate"]).all() and (lr["rate"] <= lr["rate_high"]).all()
    # One constant rate is wrong at the edges: the local rate varies a lot across the grid.
    assert lr["rate"].max() > 3 * lr["rate"].min()


def test_surface_comparison_reports_every_candidate(effective_analysis):
    surfaces = effective_analysis.by_noise_model["uniform"].surfaces
    assert {"linear", "log_size", "log_size_interaction", "effective_size_log"} <= set(
        surfaces["name"]
    )
    assert surfaces["selected"].sum() == 1
    fitted = surfaces[surfaces["skipped"].isna()]
    assert fitted["cv_rmse"].notna().all()
    assert (fitted["cv_rmse"] >= fitted["rmse"] - 1e-9).all()  # held-out error ≥ in-sample


def test_effective_size_candidates_skip_when_noise_reaches_chance():
    table = make_table(published, sizes=(1000, 2000, 4000), noise=(0.0, 0.25, 0.5))
    surfaces = analyze(table, n_bootstrap=0).by_noise_model["uniform"].surfaces
    skipped = surfaces.set_index("name")["skipped"]
    assert "needs noise below 50%" in skipped["effective_size_log"]
    assert pd.isna(skipped["linear"])


# --- cells, seeds, partial grids, failures -------------------------------------------------


def test_cell_summary_over_seeds_and_with_one_seed():
    table = make_table(published, sizes=(1000, 2000), noise=(0.0, 0.1), seeds=(0, 1, 2))
    cells = cell_summary(table)
    one = cells[(cells["train_size"] == 1000) & (cells["noise_level"] == 0.1)].iloc[0]
    acc = table[(table["train_size"] == 1000) & (table["noise_level"] == 0.1)]["eval_accuracy"]
    acc = acc.to_numpy() * 100
    assert one["n_done"] == 3
    assert one["accuracy_pct"] == pytest.approx(acc.mean())
    assert one["sd_pct"] == pytest.approx(acc.std(ddof=1))
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * acc.std(ddof=1) / math.sqrt(3)
    assert one["ci_low_pct"] == pytest.approx(acc.mean() - half)
    assert one["ci_method"] == "t over seeds"

    single = cell_summary(make_table(published, sizes=(1000,), noise=(0.1,))).iloc[0]
    assert math.isnan(single["sd_pct"])
    assert single["ci_method"] == "Wilson (test sample)"
    assert single["ci_low_pct"] < single["accuracy_pct"] < single["ci_high_pct"]


def test_failed_cells_are_excluded_and_counted():
    failed = [(2000, 0.1, 0), (3000, 0.2, 1)]
    table = make_table(
        published, sizes=(1000, 2000, 3000, 4000), noise=(0.0, 0.1, 0.2), seeds=(0, 1),
        failed=failed,
    )  # fmt: skip
    result = analyze(table, n_bootstrap=20)
    nma = result.by_noise_model["uniform"]
    assert nma.coverage.n_failed == 2 and nma.coverage.n_done == 22
    assert nma.reference.n_obs == 22
    assert set(map(tuple, nma.coverage.failed[["train_size", "noise_level", "seed"]].values)) == {
        (2000, 0.1, 0),
        (3000, 0.2, 1),
    }
    assert any("2 failed run(s) are excluded" in n for n in nma.notes)
    assert "2 failed" in nma.coverage.describe()
    cell = nma.cells[(nma.cells["train_size"] == 2000) & (nma.cells["noise_level"] == 0.1)]
    assert int(cell["n_done"].iloc[0]) == 1 and int(cell["n_failed"].iloc[0]) == 1


def test_partial_grid_says_what_is_missing():
    table = make_table(published, sizes=(1000, 2000, 3000), noise=(0.0, 0.1, 0.2))
    table = table[~((table["train_size"] == 3000) & (table["noise_level"] == 0.2))]
    grid = {"sizes": [1000, 2000, 3000, 4000], "noise_rates": [0.0, 0.1, 0.2], "seeds": [0]}
    nma = analyze(table, grid=grid, n_bootstrap=20).by_noise_model["uniform"]
    cov = nma.coverage
    assert cov.n_expected == 12 and cov.n_done == 8 and cov.n_missing == 4
    text = cov.describe()
    assert "size 4,000 at every noise level" in text
    assert "3,000 @ 20%" in text
    assert nma.best is not None  # the analysis still uses what is there
    assert not nma.local_rates.loc[nma.local_rates["train_size"] == 4000, "observed"].any()


def test_single_size_skips_what_needs_two_sizes():
    table = make_table(published, sizes=(5000,), noise=(0.0, 0.1, 0.2), seeds=(0, 1))
    result = analyze(table, n_bootstrap=20)
    nma = result.by_noise_model["uniform"]
    assert nma.reference.skipped is not None
    assert "at least two training sizes" in nma.reference.skipped
    assert nma.best is None and "single training size" in (nma.surface_skipped or "")
    assert nma.local_rates.empty
    assert "Reference regression skipped" in result.summary()
    with pytest.raises(AnalysisError, match="single training size"):
        tradeoff(result, size=5000, noise=0.1)


def test_single_noise_level_skips_what_needs_two_noise_levels():
    table = make_table(published, sizes=(1000, 2000, 4000), noise=(0.1,))
    nma = analyze(table, n_bootstrap=20).by_noise_model["uniform"]
    assert nma.reference.skipped is not None
    assert "at least two noise levels" in nma.reference.skipped
    assert "single noise level" in (nma.surface_skipped or "")


def test_one_seed_and_several_seeds_give_the_right_notes():
    one = analyze(make_table(published, sizes=SIZES[::3], noise=NOISE[::2]), n_bootstrap=10)
    assert any("One repeat seed" in n for n in one.by_noise_model["uniform"].notes)
    several = analyze(
        make_table(published, sizes=SIZES[::3], noise=NOISE[::2], seeds=(0, 1, 2)), n_bootstrap=10
    )
    assert any("clustered by seed" in n for n in several.by_noise_model["uniform"].notes)


def test_several_seeds_resample_whole_seeds():
    table = make_table(log_interaction, sizes=SIZES[::3], noise=NOISE[::2], seeds=(0, 1, 2))
    nma = analyze(table, n_bootstrap=40, seed=1).by_noise_model["uniform"]
    assert nma.best is not None and nma.best.resampling is not None
    rs = nma.best.resampling
    assert (rs.unit, rs.n_units, rs.n_requested) == ("seed", 3, 40)
    assert rs.n_fitted == nma.best.boot_params.shape[0] == 40 and rs.failures == ()
    t = tradeoff(analyze(table, n_bootstrap=40, seed=1), size=7000, noise=0.1)
    assert "seed bootstrap (3 seeds, B=40)" in t.examples_per_noise_point.method
    assert "Fieller" in t.examples_per_noise_point.method


def test_bootstrap_failures_are_counted_with_their_reason():
    # A 2 × 2 grid with one seed: a cell resample may hold a single noise level or size, or
    # only cells on a diagonal (the plane's terms are not separated); such replicates cannot be
    # refitted, and the analysis says how many, and why (a "B=496" is explained, not silent).
    table = make_table(published, sizes=(1000, 4000), noise=(0.0, 0.2))
    nma = analyze(table, n_bootstrap=200, seed=2).by_noise_model["uniform"]
    assert nma.best is not None and nma.best.resampling is not None
    rs = nma.best.resampling
    assert rs.unit == "cell" and rs.n_units == 4
    assert 0 < rs.n_failed < 150 and rs.n_fitted + rs.n_failed == 200
    assert rs.n_fitted == nma.best.boot_params.shape[0]
    reasons = dict(rs.failures)
    assert set(reasons) == {
        "drew a single training size or noise level",
        "did not separate the surface's terms",
    }
    assert sum(reasons.values()) == rs.n_failed
    assert f"B={rs.n_fitted} of 200" in rs.describe()
    note = next(n for n in nma.notes if "bootstrap replicates failed" in n)
    k = reasons["drew a single training size or noise level"]
    assert f"{rs.n_failed} of 200 bootstrap replicates failed: " in note
    assert f"{k} drew a single training size or noise level" in note


def test_power_law_refits_are_fresh_and_checked(monkeypatch):
    from noisegrid.analysis import surfaces

    cand = next(c for c in surfaces._candidates(2) if c.name == "power_size_signal")
    table = make_table(effective_size, sizes=SIZES[::2], sd=0.15)
    n = table["train_size"].to_numpy(float)
    eta = table["noise_level"].to_numpy(float)
    y = table["eval_accuracy"].to_numpy(float) * 100
    fresh, why = cand.fit_checked(n, eta, y)
    assert fresh is not None and why is None

    def sse(p: np.ndarray) -> float:
        return float(np.sum((cand.predict(p, n, eta) - y) ** 2))

    # A start far from the optimum never makes a fit worse than the fresh one.
    warm = cand.fit(n, eta, y, start=np.array([50.0, 1.0, 0.05, 9.0]))
    assert warm is not None and sse(warm) <= sse(fresh) * (1 + 1e-9)
    monkeypatch.setattr(surfaces, "MAX_EVALUATIONS", 2)
    params, why = cand.fit_checked(n, eta, y)
    assert params is None and why == "did not converge within 4 evaluations"


def test_exact_compensation_is_shown_beside_the_marginal_rate_where_they_differ():
    # acc = b0 + 3 ln n − 0.3 p: the marginal rate is 0.1·n, the exact compensation for one
    # whole point n·(e^0.1 − 1) ≈ 0.105·n, 5% more.
    table = make_table(lambda n, e: 60 + 3.0 * np.log(n) - 30 * e, sizes=SIZES[::2], sd=0.01)
    result = analyze(table, n_bootstrap=20)
    lr = result.by_noise_model["uniform"].local_rates
    np.testing.assert_allclose(lr["rate"], 0.1 * lr["train_size"], rtol=0.02)
    np.testing.assert_allclose(
        lr["exact_compensation"], lr["train_size"] * (math.exp(0.1) - 1), rtol=0.02
    )
    t = tradeoff(result, size=5000, noise=0.1)
    assert t.exact_compensation == pytest.approx(5000 * (math.exp(0.1) - 1), rel=0.02)
    text = str(t)
    assert "the marginal exchange rate" in text
    assert "Making up for one whole point exactly takes 526 examples" in text
    assert "5% more than the marginal rate" in text
    assert "Making up for the whole point exactly takes" in result.summary()
    # On a plane (the reference form) the two are the same, and only the marginal rate is shown.
    plane = tradeoff(make_table(published, sizes=SIZES[::3]), size=7000, noise=0.1, n_bootstrap=0)
    assert plane.exact_compensation == pytest.approx(plane.examples_per_noise_point.estimate)
    assert "exactly" not in str(plane)


# --- several noise models ------------------------------------------------------------------


def test_several_noise_models_are_analysed_separately_and_compared():
    uniform = make_table(published, sizes=SIZES[::3], noise=NOISE[::2])
    steeper = make_table(
        lambda n, e: 89.68 + 0.226 * n / 1000 - 0.2 * e * 100,
        sizes=SIZES[::3],
        noise=NOISE[::2],
        noise_model="class_conditional",
        rng_seed=1,
    )
    result = analyze(pd.concat([steeper, uniform]), n_bootstrap=20)
    assert result.noise_models == ["uniform", "class_conditional"]
    comp = result.noise_model_comparison
    assert comp is not None
    rates = comp.set_index("noise_model")["reference_rate"]
    assert rates["uniform"] == pytest.approx(456, rel=0.1)
    assert rates["class_conditional"] == pytest.approx(1000 * 0.2 / 0.226, rel=0.1)
    with pytest.raises(AnalysisError, match="several noise models"):
        reference_regression(pd.concat([steeper, uniform]))
    with pytest.raises(AnalysisError, match="several noise models"):
        tradeoff(result, size=5000, noise=0.1)
    t = tradeoff(result, size=5000, noise=0.1, noise_model="class_conditional")
    assert t.noise_model == "class_conditional"
    with pytest.raises(AnalysisError, match="'instance' is not in the table"):
        tradeoff(result, size=5000, noise=0.1, noise_model="instance")


# --- tradeoff ------------------------------------------------------------------------------


def test_tradeoff_in_labels_to_correct_and_to_collect(effective_analysis):
    t = tradeoff(effective_analysis, size=10000, noise=0.1)
    truth = 0.04 * 10000 / 0.8  # 500 examples per noise point
    assert t.examples_per_noise_point.estimate == pytest.approx(truth, rel=0.1)
    assert t.labels_per_noise_point == 100
    assert t.labels_per_correction.estimate == pytest.approx(
        t.examples_per_noise_point.estimate / 100
    )
    assert t.in_grid
    text = str(t)
    assert "At 10,000 examples and 10% noise" in text
    assert "Correcting 100 labels is worth about" in text
    far = tradeoff(effective_analysis, size=100000, noise=0.1)
    assert not far.in_grid and "extrapolated" in far.notes[0]


def test_tradeoff_from_a_table_matches_tradeoff_from_its_analysis():
    table = make_table(published, sizes=SIZES[::3], noise=NOISE[::2])
    direct = tradeoff(table, size=8000, noise=0.1, n_bootstrap=30, seed=5)
    via = tradeoff(analyze(table, n_bootstrap=30, seed=5), size=8000, noise=0.1)
    assert direct == via


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0, "noise": 0.1}, "size must be a positive number of examples; got 0"),
        ({"size": 1000, "noise": 10}, r"did you mean 0\.1 \(10%\)"),
        (
            {"size": 1000, "noise": -0.1},
            r"noise must be a fraction in \[0, 1 − 1/K\) = \[0, 0\.5\) for K = 2 classes",
        ),
        ({"size": 1000, "noise": "0.1"}, "noise must be a fraction"),
    ],
)
def test_tradeoff_rejects_bad_arguments(effective_analysis, kwargs, match):
    with pytest.raises(AnalysisError, match=match):
        tradeoff(effective_analysis, **kwargs)


def test_tradeoff_rejects_noise_where_the_surface_has_no_signal(effective_analysis):
    with pytest.raises(AnalysisError, match="ask about a lower noise rate"):
        tradeoff(effective_analysis, size=1000, noise=0.6)


# --- input validation, determinism ---------------------------------------------------------


def test_bad_tables_get_actionable_errors():
    with pytest.raises(AnalysisError, match=r"lacks column.*eval_accuracy.*it has train_size"):
        analyze(
            pd.DataFrame({"train_size": [1], "noise_level": [0.0], "seed": [0], "status": ["done"]})
        )
    with pytest.raises(AnalysisError, match="must be a pandas DataFrame"):
        analyze([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="has no rows"):
        analyze(make_table(published).iloc[:0])
    percent = make_table(published, sizes=(1000, 2000)).assign(
        eval_accuracy=lambda d: d["eval_accuracy"] * 100
    )
    with pytest.raises(AnalysisError, match="divide by 100"):
        analyze(percent)
    with pytest.raises(AnalysisError, match="n_classes must be an integer >= 2"):
        analyze(make_table(published), n_classes=1)
    with pytest.raises(AnalysisError, match="confidence must be in"):
        analyze(make_table(published), confidence=95)
    with pytest.raises(AnalysisError, match="n_bootstrap must be an integer >= 0"):
        analyze(make_table(published), n_bootstrap=-1)
    with pytest.raises(AnalysisError, match="grid must be a mapping like the spec's"):
        analyze(make_table(published), grid=[1000, 2000])  # type: ignore[arg-type]
    gaps = make_table(published, sizes=(1000, 2000)).astype({"seed": object})
    gaps.loc[0, "seed"] = None
    with pytest.raises(AnalysisError, match=r"column 'seed' .* must be numeric with no gaps"):
        analyze(gaps)
    assert issubclass(AnalysisError, NoisegridError)


def test_analysis_is_deterministic_and_leaves_global_rng_alone():
    table = make_table(log_interaction, sizes=SIZES[::3], noise=NOISE[::2])
    state = np.random.get_state()[1].copy()
    a = analyze(table, n_bootstrap=40, seed=7).by_noise_model["uniform"].local_rates
    b = analyze(table, n_bootstrap=40, seed=7).by_noise_model["uniform"].local_rates
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_missing_noise_model_column_means_uniform():
    table = make_table(published, sizes=SIZES[::4], noise=NOISE[::3]).drop(columns="noise_model")
    assert analyze(table, n_bootstrap=0).noise_models == ["uniform"]


def test_summary_names_a_cell_inside_the_grid(effective_analysis):
    size, noise = effective_analysis.focus  # type: ignore[misc]
    assert size in SIZES and noise in NOISE and noise > 0
    text = effective_analysis.summary()
    assert f"At {size:,} examples and {noise * 100:g}% noise, correcting 100 labels" in text
    assert "reference regression" in text


def test_number_of_classes_comes_from_the_info_column():
    table = make_table(published, sizes=SIZES[::4], noise=NOISE[::3])
    assert analyze(table, n_bootstrap=0).n_classes == 2
    assert any(
        "number of classes is not recorded" in n for n in analyze(table, n_bootstrap=0).notes()
    )
    three = table.assign(info='{"flipped_per_class": [3, 3, 4], "epochs": 2}')
    result = analyze(three, n_bootstrap=0)
    assert result.n_classes == 3 and result.notes() == [
        n for n in result.notes() if "number of classes" not in n
    ]
    expressions = result.by_noise_model["uniform"].surfaces.set_index("name")["expression"]
    assert "1 − η·3/2" in expressions["effective_size_log"]
    assert analyze(three, n_classes=2, n_bootstrap=0).n_classes == 2


def test_constant_accuracy_and_no_done_runs_are_explained_not_crashes():
    flat = make_table(
        lambda n, e: np.full_like(n, 100.0, dtype=float), sizes=(20, 40), noise=(0, 0.1), sd=0
    )
    nma = analyze(flat, n_bootstrap=10).by_noise_model["uniform"]
    assert "accuracy is 100% in every done run" in (nma.reference.skipped or "")
    assert "same in every done run" in (nma.surface_skipped or "")
    cells = [(n, e, 0) for n in (20, 40) for e in (0, 0.1)]
    none_done = make_table(published, sizes=(20, 40), noise=(0, 0.1), failed=cells)
    result = analyze(none_done, n_bootstrap=10)
    nma = result.by_noise_model["uniform"]
    assert nma.reference.skipped == "no runs are done yet"
    assert nma.surface_skipped == "no runs are done yet"
    assert nma.coverage.n_failed == 4 and nma.coverage.n_done == 0
    assert "0 of 4 runs done; 4 failed" in result.summary()


# --- what the summary may claim --------------------------------------------------------------


def test_a_surface_whose_form_fixes_the_rate_is_named_not_used(effective_analysis):
    nma = effective_analysis.by_noise_model["uniform"]
    # On effective-size data the effective-size power law fits best, but its rate is a formula.
    assert nma.form_fixed is not None and nma.form_fixed.name == "effective_size_power"
    assert nma.best is not None and not nma.best.rate_from_form
    used = nma.surfaces[nma.surfaces["selected"]].iloc[0]
    assert used["name"] == nma.best.name and not used["rate_from_form"]
    headline = effective_analysis.summary().splitlines()[1]
    assert headline.startswith(
        "The surface that fits best, power law in the effective size (a − b·(n·s²/1000)^(−g)), "
        "fixes the exchange rate by its form whatever was measured, so the rate here comes from "
        "the best surface whose rate the data determine. At 8,000 examples and 12.5% noise,"
    )
    assert "by the surface power law in size and label signal (a − b·" in headline


def test_when_only_a_fixed_form_fits_the_headline_says_the_rate_is_not_measured(
    monkeypatch: pytest.MonkeyPatch,
):
    from noisegrid.analysis import surfaces as surfaces_mod

    # Only the candidates whose form fixes the rate: as when the grid supports no other.
    fixed = [c for c in surfaces_mod._candidates(2) if c.rate_from_form]
    monkeypatch.setattr(surfaces_mod, "_candidates", lambda k: fixed)
    table = make_table(effective_size, sizes=(1000, 2000, 4000), noise=(0.0, 0.1, 0.2))
    analysis = analyze(table, n_bootstrap=0)
    assert analysis.by_noise_model["uniform"].best.rate_from_form
    headline = analysis.summary().splitlines()[1]
    assert (
        "the exchange rate is fixed by the form of the only surface that could be fitted"
        in headline
    )
    assert "not measured from the data" in headline


@pytest.mark.parametrize(
    ("dataset", "mentioned"),
    [("imdb", True), ("/data/copies/aclImdb", True), ("stanfordnlp/imdb", True),
     ("/home/me/reviews", False), ("ag_news", False)],
)  # fmt: skip
def test_the_published_imdb_value_is_quoted_only_for_imdb(dataset: str, mentioned: bool):
    table = make_table(published, sizes=SIZES[::4], noise=NOISE[::3]).assign(dataset=dataset)
    text = analyze(table, n_bootstrap=0).summary()
    assert ("the published IMDB/DistilBERT value is 456" in text) is mentioned
    assert "The reference regression (one constant rate, as published) gives" in text


def test_summary_names_surfaces_in_plain_words_with_the_formula():
    table = make_table(log_interaction, sizes=SIZES[::2], seeds=(0, 1), sd=0.1)
    analysis = analyze(table, n_bootstrap=20)
    best = analysis.by_noise_model["uniform"].best
    assert best is not None
    text = analysis.summary()
    assert f"by the surface {best.label} ({best.expression})" in text
    for name in analysis.by_noise_model["uniform"].surfaces["name"]:
        assert f" {name}" not in text and f"{name}," not in text  # no identifiers in prose


def test_tradeoff_refusal_names_the_grid_and_the_class_bound():
    table = make_table(published, sizes=(1000, 2000, 4000), noise=(0.0, 0.2, 0.4))
    analysis = analyze(table, n_bootstrap=0)
    with pytest.raises(
        AnalysisError,
        match=r"noise must be a fraction in \[0, 1 − 1/K\) = \[0, 0\.5\) for K = 2 classes, "
        r"such as 0\.1; got 0\.6 \(from 1 − 1/K on, the labels carry no signal\); the measured "
        r"grid stops at 40%; ask about a lower noise rate",
    ):
        tradeoff(analysis, size=2000, noise=0.6)
    three = analyze(table, n_classes=3, n_bootstrap=0)
    assert not tradeoff(three, size=2000, noise=0.45).in_grid  # allowed for 3 classes
    with pytest.raises(AnalysisError, match=r"\[0, 0\.6667\) for K = 3 classes"):
        tradeoff(three, size=2000, noise=0.7)


def test_tradeoff_words_extrapolation_and_impossible_corrections_in_the_sentence(
    effective_analysis,
):
    far = str(tradeoff(effective_analysis, size=100000, noise=0.1))
    assert far.startswith("Extrapolating beyond the measured grid to 100,000 examples and 10%")
    # 1,000 examples at 2.5% noise: 25 wrong labels, so "correcting 100" cannot happen.
    few = tradeoff(effective_analysis, size=1000, noise=0.025)
    assert few.n_wrong_labels == 25
    assert "Correcting 100 labels" not in str(few)
    assert "Correcting one of the 25 wrong labels is worth about" in str(few)
    none = str(tradeoff(effective_analysis, size=1000, noise=0.0))
    assert "No label is wrong at 0% noise; once labels are wrong, correcting one" in none


def test_a_perfect_cell_lies_inside_its_own_interval():
    # One seed, 100% accuracy: the Wilson interval's upper end is exactly 100, never a hair below
    # (which made the report's error bars negative and the PNG export fail).
    table = make_table(published, sizes=(1000, 2000), noise=(0.0, 0.1)).assign(
        eval_accuracy=[1.0, 0.9, 1.0, 0.95], test_size=60
    )
    cells = cell_summary(table)
    assert (cells["ci_low_pct"] <= cells["accuracy_pct"]).all()
    assert (cells["accuracy_pct"] <= cells["ci_high_pct"]).all()


def test_cross_validation_folds_never_start_from_the_full_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seeding a fold's fit with the full-data fit hands it the held-out cell (a leak that
    # favours the nonlinear surfaces): every fit of the comparison starts from its own data.
    from noisegrid.analysis import analyze, surfaces

    starts: list[object] = []
    for cls in (
        surfaces._LinearCandidate,
        surfaces._PowerCandidate,
        surfaces._PowerSignalCandidate,
    ):
        original = cls.fit

        def fit(self, n, eta, y, start=None, _original=original):  # type: ignore[no-untyped-def]
            starts.append(start)
            return _original(self, n, eta, y, start=start)

        monkeypatch.setattr(cls, "fit", fit)
    rows = [
        {"train_size": n, "noise_level": e, "seed": s, "status": "done",
         "eval_accuracy": 0.6 + 0.03 * np.log(n / 1000) - 0.4 * e + 0.002 * s}
        for n in (1000, 2000, 4000, 8000) for e in (0.0, 0.1, 0.2) for s in (0, 1)
    ]  # fmt: skip
    analyze(pd.DataFrame(rows), n_bootstrap=0)
    assert starts and all(s is None for s in starts)


def test_no_fitted_accuracy_inside_the_grid_passes_100_percent() -> None:
    from noisegrid.analysis import analyze, tradeoff

    rows = [
        {"train_size": n, "noise_level": e, "seed": s, "status": "done",
         "eval_accuracy": min(1.0, 0.96 + 0.05 * np.log(n / 1000) - 0.4 * e + 0.003 * s)}
        for n in (1000, 2000, 4000, 8000) for e in (0.0, 0.1, 0.2) for s in (0, 1, 2)
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    analysis = analyze(table, n_bootstrap=50)
    nma = analysis.by_noise_model[analysis.noise_models[0]]
    raw = nma.best.predict(8000.0, 0.0)[0]
    assert raw > 100  # the surface overshoots at the grid's edge ...
    lr = nma.local_rates
    assert lr["accuracy_pct"].max() <= 100 and lr["accuracy_high_pct"].max() <= 100
    assert tradeoff(table, size=8000, noise=0.0).accuracy_pct <= 100  # ... what is shown does not
