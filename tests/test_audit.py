"""The audit: confident learning on out-of-fold probabilities, calibrated with injected noise."""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import noisegrid
from conftest import synthetic_frame
from noisegrid.auditing import AuditResult, audit, load_audit
from noisegrid.cli import app
from noisegrid.errors import ConfigError, DataError, MissingDependencyError
from noisegrid.report import save_audit

pytest.importorskip("cleanlab")

HEADLINE = re.compile(r"^estimated label noise: \d+\.\d% \(95% CI \d+\.\d–\d+\.\d%\)$")
"""The headline without a calibration: the raw count."""
CALIBRATED = re.compile(
    r"^label noise: \d+\.\d% calibrated( \(95% CI \d+\.\d–\d+\.\d%\))?, an upper bound; raw "
    r"count \d+\.\d% \(95% CI \d+\.\d–\d+\.\d%\); cross-validated accuracy \d+\.\d%$"
)
"""The headline with one: the calibrated estimate, the raw count and the model's accuracy."""


def imbalanced_texts(
    counts: tuple[int, ...] = (300, 200, 150), *, rate: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Learnable texts with string labels and unequal classes; exactly ``rate`` of them flipped.

    The flips come from their own generator (not the project's noise code), so the audit is
    checked against an independent truth. Returns texts, observed labels, true labels, flipped.
    """
    frame = synthetic_frame(max(counts), len(counts), seed=seed, string_labels=True)
    frame = pd.concat(
        [frame[frame["label"] == f"class_{c}"].head(n) for c, n in enumerate(counts)],
        ignore_index=True,
    )
    rng = np.random.default_rng([seed, 99])
    true = frame["label"].to_numpy(dtype=object)
    observed = true.copy()
    flipped = np.zeros(len(true), dtype=bool)
    names = sorted(set(true))
    for i in rng.choice(len(true), size=round(rate * len(true)), replace=False):
        observed[i] = rng.choice([n for n in names if n != true[i]])
        flipped[i] = True
    return list(frame["text"]), list(observed), true, flipped


def test_estimates_a_known_noise_rate_with_string_labels_and_imbalance() -> None:
    texts, labels, true, flipped = imbalanced_texts(rate=0.1)
    result = audit(texts, labels, calibration_rates=(), n_bootstrap=100)

    r = result.noise_rate
    assert abs(r.estimate - 0.10) < 0.03
    assert r.low <= r.estimate <= r.high
    assert result.label_names == ("class_0", "class_1", "class_2")
    pc = result.per_class.set_index("label")
    assert pc["n_labelled"].sum() == len(texts)
    assert pc.loc["class_0", "n_labelled"] == sum(lab == "class_0" for lab in labels)
    np.testing.assert_allclose(result.noise_matrix.sum(axis=1), 1.0)
    assert (np.diag(result.noise_matrix) > 0.8).all()

    # The suspect list finds the flips, and suggests their true class.
    top = result.suspects.head(50)
    assert flipped[top["row"].to_numpy()].mean() >= 0.9
    hits = top[flipped[top["row"].to_numpy()]]
    assert (hits["suggested_label"].to_numpy() == true[hits["row"].to_numpy()]).mean() >= 0.9
    assert (top["given_label"] != top["suggested_label"]).all()
    assert top["label_quality"].is_monotonic_increasing or len(top) < 2
    assert list(result.suspects.columns[:5]) == [
        "rank",
        "row",
        "id",
        "given_label",
        "suggested_label",
    ]
    assert HEADLINE.match(result.headline())
    assert result.describe().splitlines()[0] == result.headline()


def test_clean_labels_read_as_almost_noise_free() -> None:
    texts, labels, _, _ = imbalanced_texts(rate=0.0)
    result = audit(texts, labels, calibration_rates=(), n_bootstrap=0)
    assert result.noise_rate.estimate < 0.02
    assert math.isnan(result.noise_rate.low)
    assert result.headline() == f"estimated label noise: {100 * result.noise_rate.estimate:.1f}%"


def test_calibration_recovers_injected_noise_and_measures_precision() -> None:
    texts, labels, _, _ = imbalanced_texts((300, 300), rate=0.0)
    result = audit(texts, labels, calibration_rates=(0.1, 0.2), n_bootstrap=20)
    cal = result.calibration
    assert cal["injected"].tolist() == [0.0, 0.1, 0.2]  # the labels as given come first
    for row in cal[cal["injected"] > 0].itertuples():
        assert abs(row.estimated - row.injected) < 0.03
        assert abs(row.added - row.injected) < 0.03
    # 10% of 600 is 60 flips: the top 100 can hold at most 60; 20% is 120 flips.
    assert cal.loc[1, "precision_at_100"] == pytest.approx(0.6, abs=0.05)
    assert cal.loc[2, "precision_at_100"] >= 0.9
    assert math.isnan(cal.loc[0, "precision_at_100"])
    assert cal["precision_at_500"].isna().all() or cal.loc[2, "precision_at_500"] <= 1
    curves = result.precision_curves
    assert set(curves["injected"]) == {0.1, 0.2}
    for rate, c in curves.groupby("injected"):
        assert c["recall"].is_monotonic_increasing
        assert c["recall"].iloc[-1] == pytest.approx(1.0)
        at_truth = c[c["depth"] <= round(float(rate) * 600)].iloc[-1]
        assert at_truth["precision"] >= 0.9  # the top n_flipped suspects are nearly all flips
    # Between two calibrated rates the review precision is interpolated.
    d = np.array([0.05, 0.2, 0.5])
    low, high = result.review_precision(0.1, d), result.review_precision(0.2, d)
    mid = result.review_precision(0.15, d)
    assert np.all(mid >= np.minimum(low, high) - 1e-12)
    assert np.all(mid <= np.maximum(low, high) + 1e-12)
    assert result.review_precision(0.1, 0.0)[0] == 0.0
    assert "points per injected point" in result.calibration_summary()


def test_reproducible_and_save_load_round_trip(tmp_path: Path) -> None:
    texts, labels, _, _ = imbalanced_texts((150, 150), rate=0.1)
    first = audit(texts, labels, calibration_rates=(0.1,), n_bootstrap=20, seed=3)
    again = audit(texts, labels, calibration_rates=(0.1,), n_bootstrap=20, seed=3)
    assert first.noise_rate == again.noise_rate
    pd.testing.assert_frame_equal(first.suspects, again.suspects)

    written = save_audit(first, tmp_path / "audit")
    names = {p.name for p in written}
    assert {
        "suspects.csv",
        "per_class.csv",
        "noise_matrix.csv",
        "calibration.csv",
        "precision_curves.csv",
        "audit.json",
        "calibration.png",
    } <= names
    loaded = load_audit(tmp_path / "audit")
    assert loaded.noise_rate == first.noise_rate
    assert loaded.label_names == first.label_names
    np.testing.assert_allclose(loaded.noise_matrix, first.noise_matrix)
    d = np.linspace(0, 1, 11)
    np.testing.assert_allclose(loaded.review_precision(0.1, d), first.review_precision(0.1, d))
    assert loaded.headline() == first.headline()


def test_sample_is_class_proportional() -> None:
    texts, labels, _, _ = imbalanced_texts((300, 100), rate=0.0)
    result = audit(texts, labels, sample=200, calibration_rates=(), n_bootstrap=0)
    assert result.n_audited == 200 and result.n_total == 400
    assert result.per_class["n_labelled"].tolist() == [150, 50]
    assert "class-proportional random sample" in result.describe()


def test_public_api() -> None:
    assert noisegrid.audit is audit
    assert noisegrid.AuditResult is AuditResult
    assert noisegrid.load_audit is load_audit


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": ["a"] * 40}, DataError, r"single class \('a'\)"),
        (
            {"labels": ["a"] * 37 + ["b"] * 3},
            DataError,
            r"class 'b' has 3 example.*needs at least 5",
        ),
        ({"backend": "finetune"}, ConfigError, r"tfidf, embed.*got 'finetune'"),
        ({"labels": ["a", "b"] * 10}, DataError, r"40 texts but 20 labels"),
        ({"calibration_rates": (0.6,)}, ConfigError, r"\[0, 0\.5\) for 2 classes; got 0\.6"),
        ({"n_folds": 1}, ConfigError, r"n_folds must be an integer >= 2"),
        ({"sample": 1}, ConfigError, r"sample must be a number of examples >= 2"),
        ({"labels": ["a", None] * 20}, DataError, r"labels are missing"),
    ],
)
def test_bad_input_is_refused(kwargs: dict, error: type[Exception], match: str) -> None:
    texts = [f"word{i % 7} other{i % 3} text" for i in range(40)]
    kwargs.setdefault("labels", ["a", "b"] * 20)
    with pytest.raises(error, match=match):
        audit(texts, **kwargs)


def test_empty_text_and_wrong_data_type_are_refused() -> None:
    with pytest.raises(DataError, match=r"1 texts are empty \(rows 1\)"):
        audit(["good text", "  ", "more text"], ["a", "b", "a"])
    with pytest.raises(ConfigError, match="list of texts with labels; got int"):
        audit(42, [1])  # type: ignore[arg-type]


def test_missing_cleanlab_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cleanlab" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'noisegrid\[audit\]'"):
        audit(["a text", "b text"] * 10, [0, 1] * 10)


def test_load_audit_needs_an_audit_folder(tmp_path: Path) -> None:
    from noisegrid.errors import AnalysisError

    with pytest.raises(AnalysisError, match="holds no audit"):
        load_audit(tmp_path)


# --------------------------------------------------------------------------------------------
# From an experiment, and the CLI
# --------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_audit_prints_the_estimate_first_and_writes_files(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(make_dataset(n_train=60, string_labels=True))
    out = tmp_path / "audit"
    result = runner.invoke(app, ["audit", str(cfg), "--out", str(out), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert CALIBRATED.match(lines[0]), lines[0]
    assert "calibration (uniform noise injected" in result.stdout
    assert (out / "suspects.csv").is_file() and (out / "calibration.png").is_file()
    per_class = pd.read_csv(out / "per_class.csv")
    assert per_class["label"].tolist() == ["class_0", "class_1"]
    assert not (tmp_path / "results.sqlite").exists()  # the audit never touches the store


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--folds", "1"], "n_folds must be an integer >= 2"),
        (["--backend", "finetune"], "audit's backend must be one of tfidf, embed"),
        (["--set", "dataset.label_column=nope"], r"has no column 'nope'; its columns are"),
        (["--sample", "10", "--full"], "give --sample N or --full, not both"),
        (["--folds", "100"], r"needs at least 100 per class; lower --folds"),
    ],
)
def test_cli_audit_errors_are_one_line(
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    args: list[str],
    match: str,
) -> None:
    cfg = write_config(make_dataset())
    result = runner.invoke(app, ["audit", str(cfg), *args])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert re.search(match, result.stderr), result.stderr


@pytest.mark.slow
def test_imdb_audit_and_calibration(imdb_dir: Path, tmp_path: Path) -> None:
    """Real IMDB: a small sample of the training split, with 10% uniform noise injected."""
    cfg = tmp_path / "imdb.toml"
    cfg.write_text(
        f'[dataset]\nsource = "{imdb_dir}"\n[grid]\nsizes = [1000]\nnoise_rates = [0.0]\n'
        '[backend]\nname = "tfidf"\n'
    )
    result = audit(cfg, sample=1000, calibration_rates=(0.1,), n_bootstrap=50)
    assert result.n_audited == 1000 and result.n_total == 25000
    # IMDB's labels come from star ratings; a few percent read as wrong to a TF-IDF model.
    assert 0.0 < result.noise_rate.estimate < 0.08
    cal = result.calibration.set_index("injected")
    assert 0.08 <= cal.loc[0.1, "estimated"] <= 0.22
    assert cal.loc[0.1, "added"] == pytest.approx(0.1, abs=0.05)
    assert cal.loc[0.1, "precision_at_100"] >= 0.6
    assert result.suspects["id"].astype(str).str.startswith("train/").all()


@pytest.mark.model
def test_embed_backend_audit(
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    tiny_model: Path,
    one_torch_thread: None,
    tmp_path: Path,
) -> None:
    backend = f'name = "embed"\nmodel = "{tiny_model}"'
    cfg = write_config(
        make_dataset(n_train=40), backend=backend, extra=f'cache_dir = "{tmp_path / "cache"}"'
    )
    result = audit(cfg, backend="embed", calibration_rates=(0.1,), n_bootstrap=10)
    assert result.backend == "embed"
    assert 0.0 <= result.noise_rate.estimate <= 1.0
    assert set(result.calibration["injected"]) == {0.0, 0.1}
    assert (tmp_path / "cache" / "embeddings").is_dir()  # embeddings are cached for reuse


# -- the calibrated headline ------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2])
def test_the_calibrated_interval_holds_the_known_noise_and_the_raw_count_sits_beside_it(
    rate: float,
) -> None:
    texts, labels, _, flipped = imbalanced_texts(rate=rate)
    result = audit(texts, labels, n_bootstrap=100)
    cal = result.calibrated_noise_rate
    truth = float(flipped.mean())
    assert cal.low <= truth <= cal.high
    assert 0 <= cal.estimate < 1 - 1 / 3
    assert result.noise_estimate == cal.estimate
    head = result.headline()
    assert CALIBRATED.match(head), head
    assert f"raw count {100 * result.noise_rate.estimate:.1f}%" in head
    assert f"cross-validated accuracy {100 * result.cv_accuracy:.1f}%" in head
    assert "mixes label errors with hard examples" in result.describe().splitlines()[1]
    assert len(result.reference_curve) == len(result.calibration)


def test_the_calibrated_estimate_survives_save_and_load(tmp_path: Path) -> None:
    texts, labels, _, _ = imbalanced_texts(rate=0.1)
    result = audit(texts, labels, calibration_rates=(0.1, 0.2), n_bootstrap=20)
    loaded = load_audit(result.save(tmp_path)[0].parent)
    assert loaded.calibrated_noise_rate == result.calibrated_noise_rate
    assert loaded.reference_curve == result.reference_curve
    assert loaded.cv_accuracy == result.cv_accuracy
    assert loaded.headline() == result.headline()
