"""``validate --explain``: the resolved spec as TOML, every default shown, the same experiment."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from noisegrid import ExperimentSpec, load_corpus
from noisegrid.explain import explain_spec, toml_value


def _spec(folder: Path, **sections: dict) -> ExperimentSpec:
    data: dict = {
        "dataset": {"source": str(folder)},
        "grid": {"sizes": [20], "noise_rates": [0.0, 0.1]},
        "backend": {"name": "tfidf"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return ExperimentSpec.from_dict(data)


def _round_trip(spec: ExperimentSpec, text: str) -> ExperimentSpec:
    again = ExperimentSpec.from_dict(tomllib.loads(text))
    assert again.fingerprint() == spec.fingerprint()
    return again


def test_explained_spec_is_the_same_experiment(make_dataset: Callable[..., Path]) -> None:
    folder = make_dataset()
    spec = _spec(folder, backend={"C": 2.0}, grid={"repeats": 2})
    text = explain_spec(spec, load_corpus(spec.dataset))
    again = _round_trip(spec, text)
    assert again.grid.seeds == (0, 1)
    lines = text.splitlines()
    assert "C = 2.0" in lines and "# ngram_max = 2  # default" in lines
    assert "seeds = [0, 1]" in lines  # repeats, written out as the seeds it means


def test_several_noise_models_say_who_reads_each_key(make_dataset: Callable[..., Path]) -> None:
    folder = make_dataset()
    spec = _spec(
        folder,
        grid={"noise_model": ["uniform", "class_conditional"]},
        noise={"pair_flip": True},
    )
    text = explain_spec(spec, load_corpus(spec.dataset))
    _round_trip(spec, text)
    assert "pair_flip = true  # read by class_conditional" in text.splitlines()


def test_step_budget_leaves_epochs_out(make_dataset: Callable[..., Path]) -> None:
    folder = make_dataset()
    spec = _spec(folder, backend={"name": "finetune", "model": str(folder)}, train={"steps": 5})
    text = explain_spec(spec, load_corpus(spec.dataset))
    _round_trip(spec, text)
    lines = text.splitlines()
    assert "steps = 5" in lines and "# epochs: not set (the budget is steps)" in lines
    assert "# learning_rate = 2e-05  # default" in lines


@pytest.mark.parametrize(
    ("value", "text"),
    [(1, "1"), (0.5, "0.5"), (float("inf"), "inf"), ("é\n", '"é\\n"'), ([1, "a"], '[1, "a"]')],
)
def test_toml_values_read_back(value: object, text: str) -> None:
    assert toml_value(value) == text
    assert tomllib.loads(f"v = {text}")["v"] == value
