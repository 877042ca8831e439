"""The tfidf backend and the backend registry."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_frame
from noisegrid import ConfigError, ExperimentSpec, load_results, load_spec, run_experiment
from noisegrid.backends import BACKENDS, get_backend_class, make_backend
from noisegrid.backends.tfidf import SubsampleFeatures, TermCounts, TfidfOptions


def make(**options: object):  # type: ignore[no-untyped-def]
    spec = ExperimentSpec.from_dict(
        {"grid": {"sizes": [10], "noise_rates": [0.0]}, "backend": {"name": "tfidf", **options}}
    )
    return make_backend(spec, n_classes=3, cache_dir=Path("/nonexistent"))


def test_learns_a_three_class_problem() -> None:
    train = synthetic_frame(40, 3, seed=1)
    test = synthetic_frame(20, 3, seed=2)
    fitted = make(min_df=1).fit(train["text"].tolist(), train["label"].to_numpy(), seed=0)
    proba = fitted.predictor.predict_proba(test["text"].tolist())
    assert proba.shape == (60, 3)
    assert np.allclose(proba.sum(axis=1), 1)
    assert (proba.argmax(axis=1) == test["label"].to_numpy()).mean() > 0.8
    assert fitted.info["n_features"] > 10


def test_missing_class_in_training_labels_keeps_all_columns() -> None:
    train = synthetic_frame(20, 2, seed=1)
    fitted = make(min_df=1).fit(train["text"].tolist(), train["label"].to_numpy(), seed=0)
    proba = fitted.predictor.predict_proba(["great movie", "awful movie"])
    assert proba.shape == (2, 3) and (proba[:, 2] == 0).all()


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"ngram_max \(1\) must be >= ngram_min \(2\)"):
        make(ngram_min=2, ngram_max=1)


def test_empty_text_is_handled() -> None:
    train = synthetic_frame(20, 2, seed=1)
    fitted = make(min_df=1).fit(train["text"].tolist(), train["label"].to_numpy(), seed=0)
    assert fitted.predictor.predict_proba([""]).shape == (1, 3)


def test_registry_lists_names() -> None:
    assert get_backend_class("tfidf").name == "tfidf"
    assert "tfidf" in BACKENDS.names()


# -- the group path: featurise once, fit many ------------------------------------------------

EDGE_TEXTS = [
    "A great, great film. Great!",
    "an awful film; AWFUL acting",
    "",
    "film",
    "Café crème — naïve résumé of a film",
    "great acting and a great great film",
    "x y z",  # single-letter tokens only: no terms under the default token pattern
    "the film the film the film",
    "ab abc ab_c abc_ a1 A1 Ab ABC éé ée zz z9 9z __ ab ab",  # sort order: prefixes, case, digits
]


def options(**overrides: object) -> TfidfOptions:
    return TfidfOptions(**{"min_df": 1, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"ngram_min": 1, "ngram_max": 3},
        {"ngram_min": 2, "ngram_max": 2},
        {"ngram_min": 3, "ngram_max": 3},
        {"ngram_max": 1, "lowercase": False},
        {"strip_accents": "unicode"},
        {"strip_accents": "ascii"},
    ],
)
def test_term_counts_match_the_vectorizers_analyzer(opts: dict[str, object]) -> None:
    o = options(**opts)
    analyze = o.vectorizer().build_analyzer()
    counts = TermCounts(o)
    counts.rows(EDGE_TEXTS[:3])
    rows = counts.rows([*EDGE_TEXTS, EDGE_TEXTS[0]])  # a second batch, a repeated text
    assert rows[0] == rows[-1] == 0 and len(counts) == len(EDGE_TEXTS)
    matrix = counts.matrix()
    terms = counts.terms(range(counts.n_terms))
    for text, row in zip(EDGE_TEXTS, rows, strict=False):
        line = matrix[row]
        found = {terms[j]: v for j, v in zip(line.indices, line.data, strict=True)}
        assert found == dict(Counter(analyze(text))), text


@pytest.mark.parametrize(
    "opts",
    [
        {"min_df": 2},
        {"min_df": 1, "ngram_max": 3},
        {"min_df": 1, "max_df": 0.5},
        {"min_df": 2, "max_features": 7},  # ties in term frequency at the cut
        {"min_df": 1, "max_features": 1},
        {"min_df": 1, "sublinear_tf": False, "strip_accents": "unicode"},
    ],
)
def test_subsample_features_equal_tfidf_vectorizer(opts: dict[str, object]) -> None:
    o = options(**opts)
    train = [*EDGE_TEXTS, *synthetic_frame(15, 2, seed=3)["text"]]
    test = ["an unseen word", "", "great film", *synthetic_frame(5, 2, seed=4)["text"]]
    counts = TermCounts(o)
    counts.rows(test[:2])  # texts counted before the subsample: other rows, more terms
    features = SubsampleFeatures(counts, train, o)
    reference = o.vectorizer()
    expected = reference.fit_transform(train)
    assert features.n_features == len(reference.vocabulary_)
    assert (features.train != expected).nnz == 0
    # The same entries in the same order, so fits on either are the same bit for bit.
    for part in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(features.train, part), getattr(expected, part))
    assert (features.transform(test) != reference.transform(test)).nnz == 0


@pytest.mark.parametrize(
    ("texts", "opts", "message"),
    [
        (["", "a b"], {}, "empty vocabulary"),
        (["good film", "bad movie", "fine plot", "dull show"], {"min_df": 3}, "no terms remain"),
        (["good film", "bad film"], {"min_df": 2, "max_df": 0.1}, "max_df corresponds to <"),
    ],
)
def test_subsample_features_raise_the_vectorizers_errors(
    texts: list[str], opts: dict[str, object], message: str
) -> None:
    o = options(**opts)
    with pytest.raises(ValueError, match=message):
        o.vectorizer().fit(texts)
    with pytest.raises(ValueError, match=message):
        SubsampleFeatures(TermCounts(o), texts, o)


def test_fit_group_equals_one_fit_per_labeling() -> None:
    train = synthetic_frame(30, 3, seed=1)
    texts, clean = train["text"].tolist(), train["label"].to_numpy()
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(len(clean)) < 0.3, (clean + 1) % 3, clean)
    two_classes = np.where(clean == 2, 0, clean)  # a labeling that misses a class
    labelings = [clean, noisy, two_classes]
    test = [*synthetic_frame(10, 3, seed=2)["text"], ""]
    backend = make(min_df=1)
    assert backend.fits_groups
    group = backend.fit_group(texts, labelings, seed=5)
    probas = backend.predict_group(group, test)
    for labels, output, proba in zip(labelings, group, probas, strict=True):
        alone = backend.fit(texts, labels, seed=5)
        assert output.info == alone.info
        np.testing.assert_allclose(proba, alone.predictor.predict_proba(test), atol=1e-6)
        np.testing.assert_allclose(output.predictor.predict_proba(test), proba)
    assert (probas[2][:, 2] == 0).all()


def test_fit_group_fits_one_cell_at_a_time_beyond_trigrams() -> None:
    train = synthetic_frame(10, 2, seed=1)
    texts, labels = train["text"].tolist(), train["label"].to_numpy()
    backend = make(min_df=1, ngram_max=4)
    (output,) = backend.fit_group(texts, [labels], seed=0)
    alone = backend.fit(texts, labels, seed=0)
    assert output.info == alone.info
    probas = backend.predict_group([output], texts)
    np.testing.assert_allclose(probas[0], alone.predictor.predict_proba(texts))
    with pytest.raises(ValueError, match="n-grams of up to 3 words"):
        TermCounts(options(ngram_max=4))


def test_features_are_cached_per_subsample() -> None:
    texts = synthetic_frame(10, 2, seed=1)["text"].tolist()
    backend = make(min_df=1)
    first = backend.features(texts)
    assert backend.features(list(texts)) is first  # the same subsample under another noise model
    assert backend.features(texts[:10]) is not first


@pytest.mark.slow
def test_group_path_matches_per_cell_path_on_imdb(
    imdb_dir: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(
        imdb_dir,
        sizes="[300, 1000]",
        rates="[0.0, 0.1, 0.2]",
        test_size=1000,
        backend='name = "tfidf"',
    )
    accuracy = {}
    for stack in ("auto", 1):
        store = tmp_path / f"stack-{stack}.sqlite"
        spec = load_spec(cfg, overrides=[f"run.stack={stack!r}", f"run.store={store!s}"])
        assert run_experiment(spec).n_done == 6
        table = load_results(spec).set_index(["train_size", "noise_level"])
        accuracy[stack] = table["eval_accuracy"]
        assert set(table["info"].map(lambda i: json.loads(i)["group_size"])) == (
            {3} if stack == "auto" else {1}
        )
    difference = (accuracy["auto"] - accuracy[1]).abs()
    assert difference.max() <= 0.001, difference
