"""Noise models beyond uniform: class_conditional, instance, real; and repeat seeds."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invariants import check_nested_sets
from noisegrid import (
    ConfigError,
    Corpus,
    DataError,
    ExperimentSpec,
    Split,
    Worker,
    load_corpus,
    load_results,
    run_experiment,
)
from noisegrid.config import DatasetSpec
from noisegrid.noise import NoiseModel, NoisyLabels, apply_plan, make_noise_model, n_flips
from noisegrid.noise import instance as instance_module
from noisegrid.noise.class_conditional import (
    ClassConditionalNoise,
    as_fraction,
    flip_schedule,
    matrix_noise_rate,
    pair_flip_matrix,
)
from noisegrid.noise.instance import (
    InstanceNoise,
    cached_reference_margins,
    column_difficulty,
    mixed_order,
    reference_margins,
)
from noisegrid.noise.real import noisy_label_ids
from noisegrid.sampling import subsample_per_class

IMDB_LIKE = [[0.9, 0.1], [0.3, 0.7]]
"""Entry [i, j] = P(observed j | true i): positives (1) flip to negative three times as often."""

THREE_CLASS = [[0.8, 0.2, 0.0], [0.0, 0.8, 0.2], [0.1, 0.1, 0.8]]

_CUES = [
    ["great", "superb", "loved", "wonderful"],
    ["awful", "boring", "hated", "terrible"],
    ["odd", "strange", "puzzling", "confusing"],
    ["funny", "hilarious", "witty", "laughed"],
]
_FILLER = ["the", "a", "movie", "film", "plot", "actor", "scene", "story", "watch", "time"]


def frame(n_per_class: int, k: int = 2, *, seed: int = 0, noisy_share: float = 0.3) -> pd.DataFrame:
    """Texts of varying difficulty: 1–3 cue words of the own class, 0–2 of one other class.

    ``noisy`` is a second label column: the other class for about ``noisy_share`` of the rows.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(k):
        for _ in range(n_per_class):
            other = int(rng.choice([d for d in range(k) if d != c]))
            words = list(rng.choice(_FILLER, size=6))
            words += list(rng.choice(_CUES[c], size=int(rng.integers(1, 4))))
            words += list(rng.choice(_CUES[other], size=int(rng.integers(0, 3))))
            rng.shuffle(words)
            noisy = other if rng.random() < noisy_share else c
            rating = int(rng.integers(1, 11))
            rows.append({"text": " ".join(words), "label": c, "noisy": noisy, "rating": rating})
    return pd.DataFrame(rows)


def corpus_of(train: pd.DataFrame, test: pd.DataFrame | None = None) -> Corpus:
    """An in-memory corpus with integer labels 0..K-1 (class names "0", "1", ...)."""
    test = train if test is None else test
    k = int(train["label"].max()) + 1

    def split(df: pd.DataFrame) -> Split:
        extra = df.drop(columns=["text", "label"]).reset_index(drop=True)
        return Split(texts=list(df["text"]), labels=df["label"].to_numpy(np.int64), extra=extra)

    return Corpus(
        train=split(train),
        test=split(test),
        label_names=tuple(str(c) for c in range(k)),
        source="memory",
    )


def spec_for(
    noise_model: str,
    noise: dict[str, Any] | None = None,
    *,
    sizes: Sequence[int] = (60,),
    rates: Sequence[float] = (0.0, 0.1, 0.2),
    seeds: Sequence[int] = (0,),
) -> ExperimentSpec:
    return ExperimentSpec.from_dict(
        {
            "grid": {
                "sizes": list(sizes),
                "noise_rates": list(rates),
                "seeds": list(seeds),
                "noise_model": noise_model,
            },
            "noise": noise or {},
            "backend": {"name": "tfidf"},
        }
    )


def model_for(spec: ExperimentSpec, corpus: Corpus) -> NoiseModel:
    model = make_noise_model(spec, n_classes=corpus.n_classes)
    model.check(corpus, spec)
    model.prepare(corpus, seeds=spec.grid.seeds, train_size=max(spec.grid.sizes))
    return model


def inject(
    model: NoiseModel, corpus: Corpus, size: int, rate: float, *, seed: int = 0
) -> tuple[np.ndarray, NoisyLabels]:
    """The subsample rows of (size, seed) and the noisy labels at ``rate``, as a cell gets them."""
    labels = corpus.train.labels
    rows = subsample_per_class(labels, size, seed=seed, n_classes=corpus.n_classes)
    plan = model.plan(labels[rows], indices=rows, seed=seed)
    return rows, apply_plan(labels[rows], rate, plan)


def check_nested_noise(outs: Sequence[NoisyLabels], rates: Sequence[float]) -> None:
    """Exact counts at each rate; flipped sets (and their targets) grow with the rate."""
    for rate, out in zip(rates, outs, strict=True):
        assert out.n_flipped == n_flips(rate, len(out.clean))
        assert np.array_equal(out.flipped, out.labels != out.clean)
    for low, high in itertools.pairwise(outs):
        check_nested_sets(np.flatnonzero(low.flipped), np.flatnonzero(high.flipped))
        both = low.flipped & high.flipped
        assert np.array_equal(low.labels[both], high.labels[both])


def pair_counts(out: NoisyLabels, k: int) -> np.ndarray:
    """counts[i, j]: flipped labels with true class i now observed as j."""
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (out.clean[out.flipped], out.labels[out.flipped]), 1)
    return counts


def check_pair_quota(counts: np.ndarray, matrix: np.ndarray, m: int) -> None:
    """Every pair got m · q_ij rounded down or up, and exactly m · q_ij when it is an integer."""
    off = np.array(matrix, dtype=np.float64)
    np.fill_diagonal(off, 0.0)
    shares = [[as_fraction(x) for x in row] for row in off]
    total = sum(itertools.chain.from_iterable(shares), Fraction(0))
    exact_fr = [[m * x / total for x in row] for row in shares]
    exact = np.array([[float(x) for x in row] for row in exact_fr])
    assert counts.sum() == m
    assert (counts >= np.floor(exact - 1e-9)).all() and (counts <= np.ceil(exact + 1e-9)).all()
    integral = np.array([[x.denominator == 1 for x in row] for row in exact_fr])
    assert np.array_equal(counts[integral], exact[integral])


# -- class_conditional --------------------------------------------------------------------------


@st.composite
def noise_matrices(draw: st.DrawFn) -> np.ndarray:
    k = draw(st.integers(2, 4))
    weights = np.array(draw(st.lists(st.integers(0, 5), min_size=k * k, max_size=k * k)), float)
    weights = weights.reshape(k, k)
    np.fill_diagonal(weights, 0.0)
    if not weights.any():
        weights[0, 1] = 1.0
    off = np.round(weights / weights.sum(axis=1, keepdims=True).clip(min=1.0) * 0.4, 3)
    return off + np.diag(1.0 - off.sum(axis=1))


@settings(max_examples=60, deadline=None)
@given(matrix=noise_matrices(), n=st.integers(1, 200))
def test_schedule_keeps_every_prefix_within_quota(matrix: np.ndarray, n: int) -> None:
    steps = flip_schedule(matrix, n)
    k = len(matrix)
    assert (steps[:, 0] != steps[:, 1]).all()
    counts = np.zeros((k, k), dtype=np.int64)
    for m, (i, j) in enumerate(steps, start=1):
        counts[i, j] += 1
        check_pair_quota(counts, matrix, m)


@settings(max_examples=30, deadline=None)
@given(
    matrix=noise_matrices(),
    per_class=st.integers(5, 40),
    seed=st.integers(0, 2**31),
    rates=st.lists(st.floats(0, 0.3), min_size=1, max_size=4),
)
def test_class_conditional_exact_pair_counts_and_nesting(
    matrix: np.ndarray, per_class: int, seed: int, rates: list[float]
) -> None:
    k = len(matrix)
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(k), per_class))
    model = ClassConditionalNoise(
        ClassConditionalNoise.Options(matrix=matrix.tolist()), n_classes=k
    )
    plan = model.plan(y, indices=np.arange(len(y)), seed=seed)
    rates = sorted(rates)
    reachable = [r for r in rates if n_flips(r, len(y)) <= plan.max_flips]
    outs = [apply_plan(y, r, plan) for r in reachable]
    check_nested_noise(outs, reachable)
    for rate, out in zip(reachable, outs, strict=True):
        check_pair_quota(pair_counts(out, k), matrix, n_flips(rate, len(y)))
    for rate in rates[len(reachable) :]:
        with pytest.raises(DataError, match="can flip at most"):
            apply_plan(y, rate, plan)


def test_imdb_like_matrix_is_reproduced_exactly_at_its_own_rate() -> None:
    y = np.repeat([0, 1], 2500)
    assert matrix_noise_rate(IMDB_LIKE) == pytest.approx(0.2)
    model = ClassConditionalNoise(ClassConditionalNoise.Options(matrix=IMDB_LIKE), n_classes=2)
    plan = model.plan(y, indices=np.arange(len(y)), seed=0)
    out = apply_plan(y, 0.2, plan)
    # 1,000 flips: a quarter negative → positive, three quarters positive → negative; the
    # realised noise matrix is the given one.
    assert pair_counts(out, 2).tolist() == [[0, 250], [750, 0]]
    realised = pair_counts(out, 2) / 2500 + np.diag(1 - pair_counts(out, 2).sum(axis=1) / 2500)
    assert np.allclose(realised, IMDB_LIKE)
    # At 10% the same shape, scaled: half the flips.
    assert pair_counts(apply_plan(y, 0.1, plan), 2).tolist() == [[0, 125], [375, 0]]


def test_pair_flip_sends_each_class_to_the_next() -> None:
    y = np.repeat(np.arange(3), 100)
    model = ClassConditionalNoise(ClassConditionalNoise.Options(pair_flip=True), n_classes=3)
    assert np.array_equal(model.noise_matrix, pair_flip_matrix(3))
    out = apply_plan(y, 0.3, model.plan(y, indices=np.arange(300), seed=1))
    assert pair_counts(out, 3).tolist() == [[0, 30, 0], [0, 0, 30], [30, 0, 0]]


def test_class_conditional_flipped_members_differ_by_seed() -> None:
    y = np.repeat([0, 1], 200)
    model = ClassConditionalNoise(ClassConditionalNoise.Options(matrix=IMDB_LIKE), n_classes=2)
    a = apply_plan(y, 0.2, model.plan(y, indices=np.arange(400), seed=0))
    b = apply_plan(y, 0.2, model.plan(y, indices=np.arange(400), seed=1))
    assert np.array_equal(pair_counts(a, 2), pair_counts(b, 2))  # the schedule is the matrix's
    assert not np.array_equal(a.flipped, b.flipped)  # the members are the seed's


@pytest.mark.parametrize(
    ("noise", "message"),
    [
        ({}, r"'pair_flip' in \[noise\] of noise model 'class_conditional': class_conditional "
             r"needs a noise matrix: set \[noise\] matrix"),
        ({"matrix": IMDB_LIKE, "pair_flip": True}, "give either matrix or pair_flip = true"),
        ({"matrix": [[0.9, 0.1, 0.0], [0.3, 0.7]]},
         "must be square: it has 2 rows but row 0 has 3 entries"),
        ({"matrix": [[1.0]]}, r"must be K × K with K ≥ 2 classes; got 1 row"),
        ({"matrix": [[0.9, 0.2], [0.3, 0.7]]},
         r"row 0 of the noise matrix sums to 1.1, but each row i holds P\(observed j \| true i\)"),
        ({"matrix": [[1.1, -0.1], [0.3, 0.7]]}, r"negative entry -0.1 at \[0, 1\]"),
        ({"matrix": [[1, 0], [0, 1]]}, "no off-diagonal mass, so it never flips a label"),
        ({"matrix": [[0.5, "x"], [0.3, 0.7]]}, r"'matrix\.0\.1' in \[noise\]"),
    ],
)  # fmt: skip
def test_invalid_matrices_are_refused_at_load(noise: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec_for("class_conditional", noise)


def test_matrix_of_the_wrong_size_for_the_data() -> None:
    corpus = corpus_of(frame(20, 3))
    spec = spec_for("class_conditional", {"matrix": IMDB_LIKE})
    with pytest.raises(DataError, match=r"noise matrix is 2 × 2 but the dataset has 3 classes"):
        make_noise_model(spec, n_classes=3).check(corpus, spec)


def test_unreachable_rate_is_refused_with_the_maximum() -> None:
    corpus = corpus_of(frame(100, 3))
    # Only class 0 flips: at most its third of the subsample. (With two balanced classes every
    # rate below 0.5 is reachable, and 0.5 is refused for every noise model.)
    only_row_0 = [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    ok = spec_for("class_conditional", {"matrix": only_row_0}, sizes=(60, 90), rates=(0.1, 0.3))
    make_noise_model(ok, n_classes=3).check(corpus, ok)
    spec = spec_for("class_conditional", {"matrix": only_row_0}, sizes=(60, 90), rates=(0.1, 0.4))
    with pytest.raises(
        DataError,
        match=r"noise rate 0.4 is out of reach .* at size 60 it needs 24 flips, 24 of them from "
        r"class '0' \(row 0\), which has only 20 examples .* reaches at most rate 0.3333",
    ):
        make_noise_model(spec, n_classes=3).check(corpus, spec)


# -- instance -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binary_corpus() -> Corpus:
    return corpus_of(frame(150, 2, seed=3))


@pytest.fixture(scope="module")
def instance_model(binary_corpus: Corpus) -> NoiseModel:
    return model_for(spec_for("instance", sizes=(100, 300)), binary_corpus)


def test_instance_flips_the_lowest_margins_first(
    binary_corpus: Corpus, instance_model: NoiseModel
) -> None:
    labels = binary_corpus.train.labels
    rows, out = inject(instance_model, binary_corpus, 300, 0.2)
    # Measure the reference model's margin independently: out-of-fold, on clean labels.
    margin, _ = reference_margins(
        [binary_corpus.train.texts[i] for i in rows], labels[rows], n_classes=2, seed=0
    )
    assert margin[out.flipped].mean() < margin[~out.flipped].mean() - 0.3
    # mix = 1: within each class every flipped example is at most as sure as every kept one.
    for c in (0, 1):
        cls = out.clean == c
        assert margin[cls & out.flipped].max() <= margin[cls & ~out.flipped].min()
    assert np.bincount(out.clean[out.flipped]).tolist() == [30, 30]  # balanced like uniform


def test_instance_is_nested_across_rates_and_sizes(
    binary_corpus: Corpus, instance_model: NoiseModel
) -> None:
    rates = [0.0, 0.05, 0.1, 0.2, 0.3]
    outs = [inject(instance_model, binary_corpus, 300, r)[1] for r in rates]
    check_nested_noise(outs, rates)
    # The difficulty of a row does not depend on the cell's size (one reference per seed).
    small_rows, _ = inject(instance_model, binary_corpus, 100, 0.1)
    assert isinstance(instance_model, InstanceNoise)
    rows, _, _ = instance_model.reference(0)
    assert set(small_rows) <= set(rows)


def test_instance_mix_moves_towards_uniform(binary_corpus: Corpus) -> None:
    margins = {}
    for mix in (0.0, 0.5, 1.0):
        model = model_for(spec_for("instance", {"mix": mix}, sizes=(300,)), binary_corpus)
        assert isinstance(model, InstanceNoise)
        rows, out = inject(model, binary_corpus, 300, 0.2)
        ref_rows, margin, _ = model.reference(0)
        margins[mix] = margin[np.searchsorted(ref_rows, rows)][out.flipped].mean()
    assert margins[1.0] < margins[0.5] < margins[0.0]


def test_mixed_order_takes_exactly_the_documented_share_hardest_first() -> None:
    hard = np.arange(10)
    rand = np.random.default_rng(0).permutation(10)
    assert mixed_order(hard, rand, 1.0).tolist() == hard.tolist()
    assert mixed_order(hard, rand, 0.0).tolist() == rand.tolist()
    out = mixed_order(hard, rand, 0.3)
    assert sorted(out.tolist()) == list(range(10))
    # The 4th, 7th and 10th picks (⌊k · 0.3⌋ steps up) are the hardest items still free.
    for k in (4, 7):
        assert out[k - 1] == min(set(range(10)) - set(out[: k - 1].tolist()))


def test_instance_difficulty_from_a_rating_column(binary_corpus: Corpus) -> None:
    model = model_for(spec_for("instance", {"difficulty": "rating"}), binary_corpus)
    rows, out = inject(model, binary_corpus, 60, 0.2)
    rating = binary_corpus.train.extra["rating"].to_numpy()[rows]
    distance = np.abs(rating - 5.5)  # ratings 1..10: midpoint 5.5
    for c in (0, 1):
        cls = out.clean == c
        assert distance[cls & out.flipped].max() <= distance[cls & ~out.flipped].min()
    assert column_difficulty(np.array([1, 4, 7, 10])).tolist() == [4.5, 1.5, 1.5, 4.5]


def test_instance_refuses_bad_difficulty_columns(binary_corpus: Corpus) -> None:
    spec = spec_for("instance", {"difficulty": "stars"})
    with pytest.raises(
        DataError, match=r"difficulty = 'stars' is not a column .* columns are: noisy, rating"
    ):
        make_noise_model(spec, n_classes=2).check(binary_corpus, spec)
    train = frame(30, 2)
    train["rating"] = train["rating"].astype(str).where(train.index > 0, "five")
    spec = spec_for("instance", {"difficulty": "rating"})
    with pytest.raises(DataError, match=r"column 'rating' must be numeric.*such as 'five'"):
        make_noise_model(spec, n_classes=2).check(corpus_of(train), spec)


def test_instance_refuses_too_few_examples_for_the_folds(binary_corpus: Corpus) -> None:
    spec = spec_for("instance", {"reference_folds": 40}, sizes=(60,))
    with pytest.raises(DataError, match=r"30 per class\), too few for \[noise\] reference_folds"):
        make_noise_model(spec, n_classes=2).check(binary_corpus, spec)


def test_reference_margins_are_cached_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = frame(20, 2)
    texts, labels = list(df["text"]), df["label"].to_numpy()
    first = cached_reference_margins(texts, labels, n_classes=2, seed=0, cache_dir=tmp_path)
    assert len(list((tmp_path / "instance-reference").glob("*.npz"))) == 1

    def refit(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached margins should have been used")

    monkeypatch.setattr(instance_module, "reference_margins", refit)
    again = cached_reference_margins(texts, labels, n_classes=2, seed=0, cache_dir=tmp_path)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    with pytest.raises(AssertionError, match="cached margins"):  # another seed is another key
        cached_reference_margins(texts, labels, n_classes=2, seed=1, cache_dir=tmp_path)


# -- real ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_corpus() -> Corpus:
    return corpus_of(frame(100, 2, seed=5, noisy_share=0.3))


def test_real_takes_noisy_labels_where_they_disagree(noisy_corpus: Corpus) -> None:
    model = model_for(spec_for("real", {"noisy_label_column": "noisy"}), noisy_corpus)
    rates = [0.0, 0.05, 0.1, 0.2]
    results = [inject(model, noisy_corpus, 60, r) for r in rates]
    check_nested_noise([out for _, out in results], rates)
    rows, out = results[-1]
    noisy = noisy_corpus.train.extra["noisy"].to_numpy()[rows]
    assert np.array_equal(out.labels[out.flipped], noisy[out.flipped])
    assert (noisy[out.flipped] != out.clean[out.flipped]).all()
    per_class = np.bincount(out.clean[out.flipped], minlength=2)
    assert per_class.max() - per_class.min() <= 1


def test_real_balances_classes_as_far_as_the_data_allows() -> None:
    train = frame(50, 2, noisy_share=0.0)
    train.loc[train.index[:3], "noisy"] = 1  # class 0 has only 3 disagreeing labels
    train.loc[train.index[50:80], "noisy"] = 0
    corpus = corpus_of(train)
    spec = spec_for("real", {"noisy_label_column": "noisy"}, sizes=(100,), rates=(0.2,))
    _, out = inject(model_for(spec, corpus), corpus, 100, 0.2)
    assert np.bincount(out.clean[out.flipped], minlength=2).tolist() == [3, 17]
    keep_mix = spec_for(
        "real", {"noisy_label_column": "noisy", "balance_classes": False}, sizes=(100,)
    )
    _, out = inject(model_for(keep_mix, corpus), corpus, 100, 0.33)
    assert np.bincount(out.clean[out.flipped], minlength=2).tolist() == [3, 30]


def test_real_refuses_rates_beyond_the_disagreements(noisy_corpus: Corpus) -> None:
    spec = spec_for(
        "real", {"noisy_label_column": "noisy"}, sizes=(60, 200), rates=(0.1, 0.6), seeds=(0, 1)
    )
    labels, noisy = noisy_corpus.train.labels, noisy_label_ids(noisy_corpus, "noisy")
    worst = min(
        (noisy[r] != labels[r]).sum() / size
        for size in (60, 200)
        for r in [subsample_per_class(labels, size, seed=s) for s in (0, 1)]
    )
    with pytest.raises(
        DataError,
        match=rf"noise rate 0.6 needs .* differs from the clean one; this grid supports at most "
        rf"rate {worst:.4g} \(size",
    ):
        make_noise_model(spec, n_classes=2).check(noisy_corpus, spec)


def test_real_column_errors(noisy_corpus: Corpus) -> None:
    with pytest.raises(ConfigError, match=r"needs \[noise\] noisy_label_column"):
        spec_for("real")
    spec = spec_for("real", {"noisy_label_column": "crowd"})
    with pytest.raises(DataError, match=r"'crowd' is not a column .* columns are: noisy, rating"):
        make_noise_model(spec, n_classes=2).check(noisy_corpus, spec)
    train = frame(20, 2)
    train["noisy"] = train["noisy"].astype(object)
    train.loc[3, "noisy"] = "maybe"
    spec = spec_for("real", {"noisy_label_column": "noisy"}, sizes=(20,), rates=(0.0,))
    with pytest.raises(
        DataError, match=r"values that are not class names .*\['maybe'\]; the classes are"
    ):
        make_noise_model(spec, n_classes=2).check(corpus_of(train), spec)


def test_real_maps_string_labels_and_skips_missing(tmp_path: Path) -> None:
    train = frame(30, 2, noisy_share=0.5)
    names = np.array(["neg", "pos"])
    train["label"] = names[train["label"]]
    train["noisy"] = pd.Series(names[train["noisy"]], dtype=object).where(train.index % 5 != 0)
    train.to_parquet(tmp_path / "train.parquet")
    train.to_parquet(tmp_path / "test.parquet")
    corpus = load_corpus(DatasetSpec(source=str(tmp_path)))
    ids = noisy_label_ids(corpus, "noisy")
    assert (ids[::5] == -1).all()  # missing: never flipped
    spec = spec_for("real", {"noisy_label_column": "noisy"}, sizes=(60,), rates=(0.1,))
    rows, out = inject(model_for(spec, corpus), corpus, 60, 0.1)
    assert out.n_flipped == 6
    assert (ids[rows][out.flipped] == out.labels[out.flipped]).all()


# -- multi-class through every model, and through the runner ------------------------------------

ALL_MODELS: dict[str, dict[str, Any]] = {
    "uniform": {},
    "class_conditional": {"matrix": THREE_CLASS},
    "instance": {"mix": 1.0},
    "real": {"noisy_label_column": "noisy"},
}


@pytest.fixture(scope="module")
def three_class_corpus() -> Corpus:
    return corpus_of(frame(40, 3, seed=7, noisy_share=0.5))


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_every_model_on_three_classes(name: str, three_class_corpus: Corpus) -> None:
    spec = spec_for(name, ALL_MODELS[name], sizes=(60, 120), rates=(0.0, 0.1, 0.2), seeds=(0, 1))
    model = model_for(spec, three_class_corpus)
    for seed, size in itertools.product((0, 1), (60, 120)):
        outs = [inject(model, three_class_corpus, size, r, seed=seed)[1] for r in (0, 0.1, 0.2)]
        check_nested_noise(outs, [0.0, 0.1, 0.2])
        out = outs[-1]
        assert ((out.labels >= 0) & (out.labels < 3)).all()
        if name != "class_conditional":
            per_class = np.bincount(out.clean[out.flipped], minlength=3)
            assert per_class.max() - per_class.min() <= 1
    if name == "class_conditional":
        check_pair_quota(pair_counts(out, 3), np.array(THREE_CLASS), n_flips(0.2, 120))
    if name == "instance":
        # Multi-class flips go to the reference model's most likely wrong class.
        assert isinstance(model, InstanceNoise)
        rows = subsample_per_class(three_class_corpus.train.labels, 120, seed=1, n_classes=3)
        ref_rows, _, wrong = model.reference(1)
        expected = wrong[np.searchsorted(ref_rows, rows)]
        assert np.array_equal(out.labels[out.flipped], expected[out.flipped])


def _write_parquet(folder: Path, k: int, *, noisy_share: float = 0.5) -> Path:
    folder.mkdir()
    frame(40, k, seed=11, noisy_share=noisy_share).to_parquet(folder / "train.parquet")
    frame(20, k, seed=12).to_parquet(folder / "test.parquet")
    return folder


def test_run_experiment_with_every_model_and_repeats(tmp_path: Path) -> None:
    data = _write_parquet(tmp_path / "data", 3)
    spec = ExperimentSpec.from_dict(
        {
            "dataset": {"source": str(data)},
            "grid": {
                "sizes": [60, 120],
                "noise_rates": [0.0, 0.1, 0.2],
                "repeats": 2,
                "noise_model": list(ALL_MODELS),
            },
            "noise": {k: v for options in ALL_MODELS.values() for k, v in options.items()},
            "backend": {"name": "tfidf", "min_df": 1},
            "eval": {"test_size": 30},
            "run": {"store": str(tmp_path / "results.sqlite"), "cache_dir": str(tmp_path / "c")},
        }
    )
    summary = run_experiment(spec)
    assert (summary.n_done, summary.n_failed) == (4 * 2 * 3 * 2, 0)
    table = load_results(spec)
    assert sorted(set(table["noise_model"])) == sorted(ALL_MODELS)
    assert sorted(set(table["seed"])) == [0, 1]
    assert (table["realized_noise"] == table["noise_level"]).all()
    assert table.groupby(["noise_model", "seed"]).size().eq(6).all()
    # The instance reference margins were cached once per seed.
    assert len(list((tmp_path / "c" / "instance-reference").glob("*.npz"))) == 2
    # Repeats are independent replicates: each seed draws its own subsample and flips.
    corpus = load_corpus(spec.dataset)
    rows = {s: subsample_per_class(corpus.train.labels, 60, seed=s, n_classes=3) for s in (0, 1)}
    assert not np.array_equal(rows[0], rows[1])
    for variant in spec.variants():
        worker = Worker(variant, corpus=corpus)
        worker.prepare()
        flips = {}
        for s in (0, 1):
            plan = worker.noise_model.plan(corpus.train.labels[rows[s]], indices=rows[s], seed=s)
            flips[s] = rows[s][apply_plan(corpus.train.labels[rows[s]], 0.2, plan).flipped]
        assert set(flips[0]) != set(flips[1]), variant.grid.noise_model
    # Re-running stores nothing new: every (model, size, rate, seed) is one stored cell.
    assert run_experiment(spec).n_skipped == 48


def test_runner_refuses_an_unreachable_real_rate_before_any_work(tmp_path: Path) -> None:
    data = _write_parquet(tmp_path / "data", 2, noisy_share=0.2)
    spec = ExperimentSpec.from_dict(
        {
            "dataset": {"source": str(data)},
            "grid": {"sizes": [40], "noise_rates": [0.0, 0.45], "noise_model": "real"},
            "noise": {"noisy_label_column": "noisy"},
            "backend": {"name": "tfidf"},
            "eval": {"test_size": 20},
            "run": {"store": str(tmp_path / "results.sqlite")},
        }
    )
    with pytest.raises(DataError, match=r"this grid supports at most rate"):
        run_experiment(spec)
    assert not (tmp_path / "results.sqlite").exists()
