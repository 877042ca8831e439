"""Advice: new labels, reviews or a mix, priced on the grid's fitted surface."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import noisegrid
from noisegrid.advising import AdviceResult, advise
from noisegrid.auditing import AuditResult
from noisegrid.cli import app
from noisegrid.errors import AnalysisError, ConfigError

SIZES = [1000, 2000, 4000, 8000]
NOISE = [0.0, 0.1, 0.2]


def accuracy_pct(n: np.ndarray | float, eta: np.ndarray | float) -> np.ndarray:
    """The known surface: 60% at 1,000 clean labels, +3 points per e-fold, −0.4 per noise point."""
    return np.asarray(60 + 3 * np.log(np.asarray(n) / 1000) - 40 * np.asarray(eta), dtype=float)


def known_table(sizes: list[int] = SIZES, noise: list[float] = NOISE) -> pd.DataFrame:
    rows = [
        {
            "train_size": n,
            "noise_level": e,
            "seed": 0,
            "status": "done",
            "eval_accuracy": float(accuracy_pct(n, e)) / 100,
        }
        for n in sizes
        for e in noise
    ]
    return pd.DataFrame(rows)


def brute_force_best(
    *,
    size: int,
    noise: float,
    label_cost: float,
    review_cost: float,
    budget: float,
    new_label_noise: float,
) -> tuple[int, float]:
    """Every whole number of perfect reviews, the rest of the budget on new labels."""
    best = (0, -math.inf)
    for reviews in range(min(int(budget / review_cost), size) + 1):
        new = int((budget - reviews * review_cost) / label_cost + 1e-9)
        fixed = min(reviews, size * noise)
        eta = (size * noise - fixed + new * new_label_noise) / (size + new)
        acc = float(accuracy_pct(size + new, eta))
        if acc > best[1]:
            best = (reviews, acc)
    return best


def test_the_mix_finds_the_known_optimum() -> None:
    # On this surface a fixed label is worth 40/n points and a clean new label (3 + 40η)/n, so
    # at these prices reviews win while wrong labels remain: fix all 200, then buy new labels.
    question = {
        "size": 2000,
        "noise": 0.1,
        "label_cost": 0.10,
        "review_cost": 0.40,
        "budget": 100,
        "new_label_noise": 0.0,
    }
    result = advise(known_table(), review_precision=1.0, n_bootstrap=20, **question)
    reviews, acc = brute_force_best(**question)
    assert reviews == 200
    mix = result.at_budget().loc["mix"]
    assert mix["accuracy_pct"] == pytest.approx(acc, abs=1e-6)
    assert int(mix["n_reviews"]) == 200 and int(mix["n_new"]) == 200
    assert mix["n_fixed"] == pytest.approx(200)
    assert result.best == "mix"
    assert mix["accuracy_pct"] > result.at_budget().loc["collect", "accuracy_pct"]
    assert mix["accuracy_pct"] > result.at_budget().loc["clean", "accuracy_pct"]
    assert result.recommendation.startswith(
        "Spend the $100.00 on reviewing the top 200 suspects ($80.00) and 200 new labels ($20.00)"
    )
    assert result.describe().splitlines()[0] == result.recommendation


@pytest.mark.parametrize(
    ("review_cost", "label_cost", "best"),
    [(0.01, 1.00, "clean"), (50.0, 0.01, "collect")],
)
def test_prices_decide_between_collecting_and_cleaning(
    review_cost: float, label_cost: float, best: str
) -> None:
    result = advise(
        known_table(),
        size=2000,
        noise=0.1,
        label_cost=label_cost,
        review_cost=review_cost,
        budget=100,
        review_precision=1.0,
        n_bootstrap=20,
    )
    assert result.best == best
    at = result.at_budget()
    if best == "clean":
        assert at.loc["clean", "n_fixed"] == pytest.approx(200)  # every wrong label is fixed
        assert at.loc["clean", "noise"] == pytest.approx(0.0)
    else:
        assert at.loc["collect", "n_new"] == 10_000
        assert at.loc["collect", "extrapolated"]  # 12,000 labels is beyond the grid
        assert any("outside the measured grid" in n for n in result.notes)


def test_table_curve_and_intervals() -> None:
    table = known_table()
    rng = np.random.default_rng(0)
    table["eval_accuracy"] += rng.normal(0, 0.003, len(table))  # the surface now has an error
    result = advise(
        table,
        size=2000,
        noise=0.1,
        label_cost=0.1,
        review_cost=0.2,
        budget=100,
        review_precision=0.9,
        n_bootstrap=100,
    )
    assert set(result.table["budget"]) == {25.0, 50.0, 100.0, 200.0}
    assert len(result.table) == 4 * 3 and len(result.curve) == 41 * 3
    assert (result.table["low"] <= result.table["accuracy_pct"]).all()
    assert (result.table["accuracy_pct"] <= result.table["high"]).all()
    assert result.baseline[1] <= result.baseline[0] <= result.baseline[2]
    assert 0.0 <= result.p_best <= 1.0
    collect = result.curve[result.curve["strategy"] == "collect"]
    assert collect["size"].is_monotonic_increasing
    zero = result.curve[result.curve["budget"] == 0]
    assert (zero["gain_pct"] == 0).all()  # spending nothing changes nothing
    assert (result.table["n_fixed"] <= 0.9 * result.table["n_reviews"] + 1e-9).all()


def fake_audit(
    precision: np.ndarray | float, *, recall: np.ndarray, noise: float = 0.1, n_audited: int = 1000
) -> AuditResult:
    """An audit of 2,000 labels whose calibration (10% injected) found ``precision`` at each of
    1,000 depths, and whose estimate is ``noise`` ± 0.01."""
    depth = np.arange(1, 1001)
    curves = pd.DataFrame(
        {
            "injected": 0.1,
            "depth": depth,
            "depth_fraction": depth / 1000,
            "precision": precision,
            "recall": recall,
        }
    )
    return AuditResult(
        noise_rate=noisegrid.analysis.Interval(noise, noise - 0.01, noise + 0.01),
        per_class=pd.DataFrame(),
        noise_matrix=np.eye(2),
        suspects=pd.DataFrame(),
        calibration=pd.DataFrame(),
        precision_curves=curves,
        label_names=("a", "b"),
        n_audited=n_audited,
        n_total=2000,
        backend="tfidf",
        n_folds=5,
        n_bootstrap=0,
        seed=0,
    )


def test_review_precision_from_an_audit_limits_what_reviews_fix() -> None:
    """An audit whose list holds wrong labels only in its top 5%: deeper reviews fix nothing."""
    depth = np.arange(1, 1001)
    precision = np.minimum(1.0, 50 / depth)  # 50 hits in the top 50 of 1,000, none after
    fake = fake_audit(precision, recall=np.minimum(depth, 50) / 100)
    result = advise(
        known_table(), audit=fake, label_cost=0.10, review_cost=0.01, budget=100, n_bootstrap=0
    )
    assert result.size == 2000 and result.noise == pytest.approx(0.1)  # from the audit
    # The curve was measured with 10% injected on top of the audit's own 10%: 18% in all. At
    # 10% noise it is scaled by 10/18: the list finds 5% × 10/18 of the labels, all it can.
    mix = result.at_budget().loc["mix"]
    assert mix["n_fixed"] == pytest.approx(100 * 10 / 18, abs=2)
    assert int(mix["n_reviews"]) <= 200
    clean = result.at_budget().loc["clean"]
    assert clean["n_fixed"] == pytest.approx(100 * 10 / 18, abs=2)
    assert "audit's calibration" in result.review_source
    assert "10.0% noise in all" not in result.review_source
    assert "18.0%–18.0% noise in all" in result.review_source
    assert any("scaled by 0.56" in n for n in result.notes)
    assert math.isnan(result.p_best) or 0 <= result.p_best <= 1


def test_advise_acts_on_the_audits_calibrated_estimate() -> None:
    from dataclasses import replace

    raw_only = fake_audit(0.5, recall=np.arange(1, 1001) / 2000, noise=0.15)
    calibrated = replace(
        raw_only, calibrated_noise_rate=noisegrid.analysis.Interval(0.1, 0.07, 0.13)
    )
    kwargs = {"label_cost": 0.10, "review_cost": 0.01, "budget": 100, "n_bootstrap": 0}
    assert advise(known_table(), audit=raw_only, **kwargs).noise == pytest.approx(0.15)
    result = advise(known_table(), audit=calibrated, **kwargs)
    assert result.noise == pytest.approx(0.1)
    # The cap on fixable labels is the calibrated count: 10% of 2,000.
    assert result.at_budget().loc["clean"]["n_fixed"] <= 200 + 1e-9


def test_start_outside_the_grid_is_refused_unless_allowed() -> None:
    kwargs = {"label_cost": 0.1, "review_cost": 0.05, "budget": 100, "review_precision": 0.8}
    with pytest.raises(AnalysisError, match=r"\(20,000 labels, 10\.0% noise\) lies outside"):
        advise(known_table(), size=20_000, noise=0.1, n_bootstrap=0, **kwargs)
    result = advise(
        known_table(), size=20_000, noise=0.1, allow_extrapolation=True, n_bootstrap=0, **kwargs
    )
    assert result.table["extrapolated"].all()
    assert "extrapolated beyond the grid" in result.recommendation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"label_cost": -0.1}, ConfigError, r"label_cost \(--label-cost\) must be a positive"),
        ({"review_cost": 0}, ConfigError, r"review_cost \(--review-cost\) must be a positive"),
        ({"budget": 0}, ConfigError, r"budget \(--budget\) .* a budget of 0 buys nothing"),
        ({"budget": 0.01}, ConfigError, r"buys neither one new label"),
        ({"noise": 10}, ConfigError, r"noise \(--noise\) must be a fraction.*did you mean 0\.1"),
        ({"size": 0}, ConfigError, r"size \(--size\) must be a positive number"),
        ({"review_precision": 1.5}, ConfigError, r"review_precision must be a share in \[0, 1\]"),
        ({"review_precision": None}, AnalysisError, r"pass audit= .* or review_precision="),
        ({"noise_model": "instance"}, AnalysisError, r"noise model 'instance' is not in the table"),
        ({"label_cost": None}, ConfigError, r"label_cost is not given: pass --label-cost"),
    ],
)
def test_bad_input_is_refused(kwargs: dict, error: type[Exception], match: str) -> None:
    question = {
        "size": 2000,
        "noise": 0.1,
        "label_cost": 0.1,
        "review_cost": 0.05,
        "budget": 100.0,
        "review_precision": 0.8,
        "n_bootstrap": 0,
    }
    question.update(kwargs)
    with pytest.raises(error, match=match):
        advise(known_table(), **question)  # type: ignore[arg-type]


def test_a_grid_with_one_size_cannot_advise() -> None:
    with pytest.raises(AnalysisError, match=r"needs a fitted accuracy surface.*single training"):
        advise(
            known_table(sizes=[2000]),
            size=2000,
            noise=0.1,
            label_cost=0.1,
            review_cost=0.05,
            budget=100,
            review_precision=0.8,
        )


def test_public_api() -> None:
    assert noisegrid.advise is advise
    assert noisegrid.AdviceResult is AdviceResult


# --------------------------------------------------------------------------------------------
# From an experiment: [advice], the audit it runs, the CLI and the report
# --------------------------------------------------------------------------------------------

runner = CliRunner()
ADVICE = """
[advice]
label_cost = 0.10
review_cost = 0.05
budget = 5
"""


@pytest.fixture
def grid(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> Callable[[str], Path]:
    """A small tfidf grid on synthetic data, run; returns its config with ``extra`` appended."""
    data = make_dataset(n_train=60)

    def make(extra: str = ADVICE) -> Path:
        cfg = write_config(data, sizes="[40, 80, 120]", rates="[0.0, 0.1, 0.2]")
        cfg.write_text(cfg.read_text() + extra)
        noisegrid.run_experiment(noisegrid.load_spec(cfg))
        return cfg

    return make


def test_advice_from_the_spec_audits_its_data(grid: Callable[[str], Path]) -> None:
    cfg = grid(ADVICE + "audit_sample = 120\n")
    result = advise(cfg, n_bootstrap=50)
    assert result.size == 120  # the audited training split
    assert 0 <= result.noise < 0.1  # the synthetic labels are clean
    assert result.label_cost == 0.10 and result.budget == 5
    assert "audit's calibration" in result.review_source


def test_cli_advise_prints_the_recommendation_and_writes_the_figure(
    grid: Callable[[str], Path], tmp_path: Path
) -> None:
    cfg = grid()
    out = tmp_path / "advice"
    args = ["advise", str(cfg), "--size", "80", "--noise", "0.1", "--review-precision", "0.7"]
    result = runner.invoke(app, [*args, "--budget", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # Every clean cell of this tiny grid is at 100%: the strategies tie, and the advice says so.
    assert re.match(r"(Spend the|A tie for the) \$4\.00", result.stdout), result.stdout
    assert (out / "advice.png").is_file() and (out / "advice.csv").is_file()
    table = pd.read_csv(out / "advice.csv")
    assert set(table["strategy"]) == {"collect", "clean", "mix"}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--budget", "0"], r"budget \(--budget\) must be a positive amount"),
        (["--label-cost", "-1"], r"label_cost \(--label-cost\) must be a positive amount"),
        (["--size", "100000"], r"lies outside the measured grid"),
        (["--noise-model", "real"], r"noise model 'real' is not in the table"),
    ],
)
def test_cli_advise_errors_are_one_line(
    grid: Callable[[str], Path], args: list[str], match: str
) -> None:
    cfg = grid()
    base = ["advise", str(cfg), "--size", "80", "--noise", "0.1", "--review-precision", "0.7"]
    result = runner.invoke(app, [*base, *args])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert re.search(match, result.stderr), result.stderr


def test_cli_advise_without_results_says_so(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(make_dataset())
    cfg.write_text(cfg.read_text() + ADVICE)
    result = runner.invoke(app, ["advise", str(cfg), "--size", "20", "--noise", "0.1"])
    assert result.exit_code == 2
    assert "does not exist; run the grid first" in result.stderr
    assert not (tmp_path / "results.sqlite").exists()


def test_report_gains_an_advice_section(grid: Callable[[str], Path], tmp_path: Path) -> None:
    cfg = grid(ADVICE + "size = 80\nnoise = 0.1\nreview_precision = 0.7\n")
    spec = noisegrid.load_spec(cfg)
    path = noisegrid.build_report(
        noisegrid.load_results(spec), out_dir=tmp_path / "report", spec=spec, n_bootstrap=20
    )
    page = path.read_text()
    assert '<section id="advice"><h2>Advice</h2>' in page
    assert '<a href="#advice">Advice</a>' in page
    assert "Spend the $5.00 on" in page or "A tie for the $5.00" in page  # 100% clean cells
    assert page.count('id="advice"') == 1 and 'id="advice-budget"' in page  # the figure
    assert (tmp_path / "report" / "figures" / "advice.png").is_file()
    md = (tmp_path / "report" / "summary.md").read_text()
    advice_md = md.split("## Advice\n", 1)[1].split("\n## ", 1)[0]
    assert "**Spend the $5.00 on" in advice_md or "**A tie for the $5.00" in advice_md
    assert "| budget | strategy |" in advice_md
    assert "Now: 80 labels at 10.0% noise" in advice_md

    # Without [advice] there is no such section.
    plain = noisegrid.load_spec(cfg, overrides=[])
    plain = plain.model_copy(update={"advice": None})
    page = noisegrid.build_report(
        noisegrid.load_results(plain), out_dir=tmp_path / "plain", spec=plain, n_bootstrap=0
    ).read_text()
    assert 'id="advice"' not in page
    assert "## Advice" not in (tmp_path / "plain" / "summary.md").read_text()


def test_advice_section_in_the_spec_is_validated(write_config: Callable[..., Path]) -> None:
    cfg = write_config("data", extra="")
    cfg.write_text(cfg.read_text() + "[advice]\nlabel_cost = 0.1\nreview_cost = -1\n")
    with pytest.raises(ConfigError, match=r"'review_cost' in \[advice\].*greater than 0"):
        noisegrid.load_spec(cfg)
    cfg.write_text(cfg.read_text().replace("review_cost = -1", "review_cost = 1\nbudgt = 3"))
    with pytest.raises(ConfigError, match=r"unknown key 'budgt' in \[advice\]; valid keys here"):
        noisegrid.load_spec(cfg)


def test_fingerprint_ignores_advice(write_config: Callable[..., Path]) -> None:
    cfg = write_config("data")
    before = noisegrid.load_spec(cfg).fingerprint()
    cfg.write_text(cfg.read_text() + ADVICE)
    assert noisegrid.load_spec(cfg).fingerprint() == before


# -- intervals: the same construction as analyze ---------------------------------------------


def _three_seed_table(rng_seed: int = 5) -> pd.DataFrame:
    import synthetic as syn

    rng = np.random.default_rng(rng_seed)
    errors = syn.seed_errors(syn.LAPTOP_SIZES, syn.LAPTOP_NOISE, 3, rng)
    return syn.synthetic_table(syn.laptop_surface, errors)


def test_advise_intervals_are_analyzes_t_intervals_at_the_same_point() -> None:
    table = _three_seed_table()
    analysis = noisegrid.analyze(table, n_bootstrap=200, seed=1)
    question = {"label_cost": 0.1, "review_cost": 0.05, "budget": 20, "review_precision": 0.8}
    result = advise(analysis, size=2000, noise=0.1, **question)
    rates = analysis.by_noise_model["uniform"].local_rates
    row = rates[(rates["train_size"] == 2000) & np.isclose(rates["noise_level"], 0.1)].iloc[0]
    est, low, high = result.baseline
    assert est == pytest.approx(row["accuracy_pct"])
    assert (low, high) == pytest.approx((row["accuracy_low_pct"], row["accuracy_high_pct"]))
    # Far wider than the plain percentiles of the same draws (t(2) and the 3/2 inflation).
    best = analysis.by_noise_model["uniform"].best
    draws = [
        best.candidate.predict(p, np.array([2000.0]), np.array([0.1]))[0] for p in best.boot_params
    ]
    p_low, p_high = np.quantile(draws, [0.025, 0.975])
    assert high - low > 2 * (p_high - p_low)
    text = result.describe()
    assert "whole seeds resampled (seed bootstrap (3 seeds" in text
    assert "bootstrap over cells" not in text
    assert "One repeat seed" not in text


def test_one_seed_advice_says_its_intervals_leave_out_replication() -> None:
    result = advise(
        known_table(),
        label_cost=0.1,
        review_cost=0.05,
        budget=20,
        size=2000,
        noise=0.1,
        review_precision=0.8,
        n_bootstrap=50,
    )
    text = result.describe()
    assert "cells resampled, one seed" in text
    assert "One repeat seed: every interval here covers test-sample and fitting noise" in text


# -- impossible questions and ties ------------------------------------------------------------

QUESTION = {"label_cost": 0.1, "review_cost": 0.05, "budget": 20, "review_precision": 0.8}


def test_noise_at_or_past_the_k_class_bound_is_refused_in_one_line() -> None:
    with pytest.raises(
        ConfigError, match=r"noise \(--noise\) must be below 1 − 1/K = 50.0% for K = 2"
    ):
        advise(known_table(), size=2000, noise=0.55, allow_extrapolation=True, **QUESTION)


def test_new_labels_noisier_than_the_bound_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"new_label_noise \(--new-label-noise\) must be below 1 − 1/K = 50.0%"
    ):
        advise(
            known_table(),
            size=2000,
            noise=0.4,
            new_label_noise=0.7,
            allow_extrapolation=True,
            **QUESTION,
        )


def test_no_predicted_accuracy_leaves_0_to_100() -> None:
    # 99.9% at 4,000 clean labels and rising: the surface passes 100% beyond the grid.
    near_top = known_table([1000, 2000, 4000]).assign(
        eval_accuracy=lambda t: (
            0.93 + 0.05 * np.log(t["train_size"] / 1000) - 0.4 * t["noise_level"]
        )
    )
    question = {**QUESTION, "budget": 400}
    result = advise(near_top, size=4000, noise=0.0, n_bootstrap=50, **question)
    assert result.table["extrapolated"].any()
    for frame in (result.table, result.curve):
        assert frame["accuracy_pct"].between(0, 100).all()
        assert (frame["high"].dropna() <= 100).all() and (frame["low"].dropna() >= 0).all()
    assert "100.3%" not in result.describe()


def test_strategies_the_grid_cannot_tell_apart_are_called_a_tie() -> None:
    # 100% in every clean cell (a small, easy dataset): fixing every wrong label, or fixing them
    # and buying clean new labels too, both predict 100%.
    perfect = known_table().assign(eval_accuracy=lambda t: 1 - 0.2 * t["noise_level"])
    result = advise(perfect, size=2000, noise=0.1, new_label_noise=0.0, n_bootstrap=50, **QUESTION)
    assert result.recommendation.startswith("A tie for the $20.00: ")
    assert "cannot tell apart" in result.recommendation
    assert "beats the runner-up" not in result.recommendation


def test_a_rate_interval_through_zero_is_not_printed_as_a_range_of_labels() -> None:
    from noisegrid.analysis import Interval, TradeoffResult

    through_zero = Interval(5.81, -1.12, 631.32, 0.95, "Fieller")
    assert not through_zero.determined
    assert not Interval(1.0, -math.inf, math.inf).determined
    assert Interval(5.8, 4.1, 7.9).determined
    t = TradeoffResult(
        size=4000,
        noise=0.1,
        noise_model="uniform",
        surface="log_size",
        examples_per_noise_point=Interval(232.4, -44.8, 25252.8, 0.95, "Fieller"),
        labels_per_noise_point=40.0,
        labels_per_correction=through_zero,
        accuracy_pct=80.0,
        in_grid=True,
    )
    sentence = t.correction_sentence()
    assert sentence == (
        "correcting 100 labels is worth about 581 new labels (the grid does not determine the rate)"
    )
    assert "−112" not in str(t) and "the grid does not determine the rate" in str(t)


def test_the_reason_prices_new_labels_at_their_own_noise() -> None:
    # acc = 60 + 3·ln(n/1000) − 40·η: a fix at 2,000 labels is worth 0.02 points, a new label
    # 3/2000 at the same noise, 3/2000 + 40·0.1/2000 when it arrives clean.
    kwargs = {**QUESTION, "size": 2000, "noise": 0.1, "n_bootstrap": 0}
    same = advise(known_table(), **kwargs)
    assert "worth about 13.3 new labels" in same.reason
    assert "arriving at" not in same.reason
    clean_new = advise(known_table(), new_label_noise=0.0, **kwargs)
    assert "worth about 5.7 new labels" in clean_new.reason
    assert "new labels arriving at 0.0% noise" in clean_new.reason
    noisy_new = advise(known_table(), new_label_noise=0.3, **kwargs)
    assert "new labels do not raise the predicted accuracy" in noisy_new.reason


# -- measured means done runs of the noise model asked about ---------------------------------


def test_failed_cells_and_other_noise_models_are_not_measured() -> None:
    table = known_table().assign(noise_model="uniform")
    failed = table["train_size"] == 8000
    table.loc[failed, "status"] = "failed"
    table.loc[failed, "eval_accuracy"] = np.nan
    t = noisegrid.tradeoff(table, size=8000, noise=0.1)
    assert not t.in_grid and t.where().startswith("Extrapolating beyond the measured grid")
    with pytest.raises(AnalysisError, match=r"sizes 1,000–4,000, noise 0%–20%, the done runs"):
        advise(table, size=8000, noise=0.1, n_bootstrap=0, **QUESTION)

    # A second noise model measured only up to 2,000 examples: 4,000 is extrapolated for it.
    pair = known_table([1000, 2000]).assign(noise_model="pair")
    both = pd.concat([known_table().assign(noise_model="uniform"), pair], ignore_index=True)
    assert noisegrid.tradeoff(both, size=4000, noise=0.1, noise_model="uniform").in_grid
    assert not noisegrid.tradeoff(both, size=4000, noise=0.1, noise_model="pair").in_grid
    with pytest.raises(AnalysisError, match="lies outside the measured grid"):
        advise(both, size=4000, noise=0.1, noise_model="pair", n_bootstrap=0, **QUESTION)


def test_reviews_find_no_wrong_label_where_there_is_none() -> None:
    result = advise(known_table(), size=2000, noise=0.0, n_bootstrap=0, **QUESTION)
    assert "no label is wrong, so a review fixes nothing" in result.reason
    assert "95% wrong" not in result.reason and "80% wrong" not in result.reason
    assert (result.table["n_fixed"] == 0).all()
    assert result.best == "collect"


def test_p_best_carries_the_review_precisions_own_error() -> None:
    """Reviews win on the surface alone; an audit of a handful of examples cannot say how many
    reviewed suspects are wrong, so in some draws reviewing fixes little and collecting wins."""
    from dataclasses import replace

    rng = np.random.default_rng(0)
    table = pd.concat([known_table().assign(seed=s) for s in range(3)], ignore_index=True).assign(
        eval_accuracy=lambda t: t["eval_accuracy"] + rng.normal(0, 0.002, len(t))
    )
    audit = fake_audit(0.3, recall=0.3 * np.arange(1, 1001) / 200, n_audited=10**7)
    kwargs = dict(
        size=2000, noise=0.1, label_cost=0.10, review_cost=0.02, budget=20, n_bootstrap=200
    )
    sure = advise(table, audit=audit, **kwargs)
    unsure = advise(table, audit=replace(audit, n_audited=4), **kwargs)
    assert sure.best == unsure.best  # the same point estimate ...
    assert sure.p_best > unsure.p_best  # ... held with less confidence
    assert 0 < unsure.p_best < 1
    assert "of the draws of the surface and of the review precision" in unsure.recommendation
    fixed = advise(table, review_precision=0.3, **kwargs)
    assert fixed.p_best == pytest.approx(sure.p_best, abs=0.02)  # an exact precision: no change
    assert any("taken as exact" in n for n in fixed.notes)
