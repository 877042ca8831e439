"""Shared fixtures: tiny synthetic datasets on disk, the real IMDB copy, config files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
IMDB_DIR = REPO.parent / "shared" / "data" / "imdb"

_CLASS_WORDS = [
    ["great", "wonderful", "superb", "loved"],
    ["awful", "boring", "terrible", "hated"],
    ["confusing", "odd", "strange", "puzzling"],
    ["funny", "hilarious", "witty", "laughed"],
]
_FILLER = [
    "the",
    "a",
    "movie",
    "film",
    "plot",
    "actor",
    "scene",
    "story",
    "watch",
    "time",
    "really",
    "very",
    "some",
]


def synthetic_frame(
    n_per_class: int, n_classes: int = 2, *, seed: int = 0, string_labels: bool = False
) -> pd.DataFrame:
    """Learnable texts: each class has its own cue words mixed with shared filler words."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_classes):
        for i in range(n_per_class):
            words = list(rng.choice(_FILLER, size=8)) + list(rng.choice(_CLASS_WORDS[c], size=2))
            rng.shuffle(words)
            label: object = f"class_{c}" if string_labels else c
            rows.append(
                {
                    "text": " ".join(words),
                    "label": label,
                    "rating": int(rng.integers(1, 11)),
                    "row": i,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Write train/test parquet files of a synthetic corpus; returns the folder."""

    def make(
        n_train: int = 60,
        n_test: int = 40,
        n_classes: int = 2,
        *,
        string_labels: bool = False,
        fmt: str = "parquet",
        name: str = "data",
    ) -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        train = synthetic_frame(n_train, n_classes, seed=1, string_labels=string_labels)
        test = synthetic_frame(n_test, n_classes, seed=2, string_labels=string_labels)
        for split, df in (("train", train), ("test", test)):
            if fmt == "parquet":
                df.to_parquet(
                    folder / "train.parquet" if split == "train" else folder / "test.parquet"
                )
            elif fmt == "csv":
                df.to_csv(folder / f"{split}.csv", index=False)
            else:
                df.to_json(folder / f"{split}.jsonl", orient="records", lines=True)
        return folder

    return make


def config_text(
    source: Path | str,
    *,
    sizes: str = "[20, 40]",
    rates: str = "[0.0, 0.1]",
    seeds: str = "[0]",
    store: Path | str = "results.sqlite",
    test_size: int = 20,
    backend: str = 'name = "tfidf"\nmin_df = 1',
    extra: str = "",
) -> str:
    return f"""
[dataset]
source = "{source}"

[grid]
sizes = {sizes}
noise_rates = {rates}
seeds = {seeds}

[backend]
{backend}

[eval]
test_size = {test_size}

[run]
store = "{store}"
{extra}
"""


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write an experiment TOML (see :func:`config_text`) and return its path."""

    def write(source: Path | str, name: str = "exp.toml", **kwargs: object) -> Path:
        kwargs.setdefault("store", tmp_path / "results.sqlite")
        path = tmp_path / name
        path.write_text(config_text(source, **kwargs))  # type: ignore[arg-type]
        return path

    return write


@pytest.fixture
def imdb_dir() -> Path:
    if not (IMDB_DIR / "train.parquet").is_file():
        pytest.skip("the local IMDB copy ../shared/data/imdb is not present")
    return IMDB_DIR


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run faster on one thread; two threads contend on a shared 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with its tokenizer, saved to a folder (built once per test module)."""
    from tiny_hf import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")
