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
from noisegrid.analysis.advise import AdviceResult, advise
from noisegrid.analysis.audit import AuditResult
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


def test_review_precision_from_an_audit_limits_what_reviews_fix() -> None:
    """An audit whose list holds wrong labels only in its top 5%: deeper reviews fix nothing."""
    depth = np.arange(1, 1001)
    precision = np.minimum(1.0, 50 / depth)  # 50 hits in the top 50 of 1,000, none after
    curves = pd.DataFrame(
        {
            "injected": 0.1,
            "depth": depth,
            "depth_fraction": depth / 1000,
            "precision": precision,
            "recall": np.minimum(depth, 50) / 100,
        }
    )
    fake = AuditResult(
        noise_rate=noisegrid.analysis.Interval(0.1, 0.09, 0.11),
        per_class=pd.DataFrame(),
        noise_matrix=np.eye(2),
        suspects=pd.DataFrame(),
        calibration=pd.DataFrame(),
        precision_curves=curves,
        label_names=("a", "b"),
        n_audited=1000,
        n_total=2000,
        backend="tfidf",
        n_folds=5,
        n_bootstrap=0,
        seed=0,
    )
    result = advise(
        known_table(), audit=fake, label_cost=0.10, review_cost=0.01, budget=100, n_bootstrap=0
    )
    assert result.size == 2000 and result.noise == pytest.approx(0.1)  # from the audit
    mix = result.at_budget().loc["mix"]
    assert mix["n_fixed"] == pytest.approx(100, abs=2)  # 5% of 2,000 labels, all it can find
    assert int(mix["n_reviews"]) <= 200
    clean = result.at_budget().loc["clean"]
    assert clean["n_fixed"] == pytest.approx(100, abs=2)
    assert "audit's calibration" in result.review_source
    assert math.isnan(result.p_best) or 0 <= result.p_best <= 1


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
    assert result.stdout.startswith("Spend the $4.00 on ")
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
    assert "Spend the $5.00 on" in page
    assert page.count('id="advice"') == 1 and 'id="advice-budget"' in page  # the figure
    assert (tmp_path / "report" / "figures" / "advice.png").is_file()
    md = (tmp_path / "report" / "summary.md").read_text()
    advice_md = md.split("## Advice\n", 1)[1].split("\n## ", 1)[0]
    assert "**Spend the $5.00 on" in advice_md and "| budget | strategy |" in advice_md
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
