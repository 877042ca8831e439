"""Loading corpora and refusing data that cannot serve the grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from noisegrid import DataError, ExperimentSpec, check_corpus, load_corpus
from noisegrid import data as data_mod
from noisegrid.config import DatasetSpec
from noisegrid.data import dataset_identity, resolve_data_identity, resolve_test_size


def spec_for(source: Path | str, **grid: object) -> ExperimentSpec:
    g = {"sizes": [20], "noise_rates": [0.0]}
    g.update(grid)
    test_size = g.pop("test_size", 20)
    return ExperimentSpec.from_dict(
        {
            "dataset": {"source": str(source)},
            "grid": g,
            "backend": {"name": "tfidf"},
            "eval": {} if test_size is None else {"test_size": test_size},
        }
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_loads_split_files(make_dataset: Callable[..., Path], fmt: str) -> None:
    folder = make_dataset(30, 20, fmt=fmt)
    corpus = load_corpus(DatasetSpec(source=str(folder)))
    assert len(corpus.train) == 60 and len(corpus.test) == 40
    assert corpus.label_names == ("0", "1")
    assert corpus.train.labels.dtype == np.int64
    assert "rating" in corpus.train.extra.columns
    assert corpus.max_train_size() == 60


def test_string_labels_map_to_ids_with_names(make_dataset: Callable[..., Path]) -> None:
    folder = make_dataset(10, 10, n_classes=3, string_labels=True)
    corpus = load_corpus(DatasetSpec(source=str(folder)))
    assert corpus.label_names == ("class_0", "class_1", "class_2")
    assert set(corpus.train.labels) == {0, 1, 2}
    assert corpus.n_classes == 3


def test_non_contiguous_integer_labels_are_remapped(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": ["a b", "c d", "e f", "g h"], "label": [-1, 1, -1, 1]})
    df.to_csv(tmp_path / "train.csv", index=False)
    df.to_csv(tmp_path / "test.csv", index=False)
    corpus = load_corpus(DatasetSpec(source=str(tmp_path)))
    assert corpus.label_names == ("-1", "1")
    assert corpus.train.labels.tolist() == [0, 1, 0, 1]


def test_aclimdb_layout(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for label, rating in (("pos", 9), ("neg", 2)):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / f"{i}_{rating}.txt").write_text(f"{split} {label} review {i}")
    (tmp_path / "train" / "unsup").mkdir()
    (tmp_path / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    corpus = load_corpus(DatasetSpec(source=str(tmp_path)))
    assert corpus.label_names == ("neg", "pos")
    assert len(corpus.train) == 6
    assert sorted(corpus.train.extra["rating"].unique().tolist()) == [2, 9]


def test_test_rows_duplicating_training_texts_are_dropped(tmp_path: Path) -> None:
    train = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]})
    test = pd.DataFrame({"text": ["a", "x", "y", "z"], "label": [0, 1, 0, 1]})
    train.to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    corpus = load_corpus(DatasetSpec(source=str(tmp_path)))
    assert corpus.test.texts == ["x", "y", "z"]
    assert corpus.n_test_dropped_overlap == 1
    assert not set(corpus.test.texts) & set(corpus.train.texts)


def _write(tmp_path: Path, train: pd.DataFrame, test: pd.DataFrame | None = None) -> Path:
    train.to_parquet(tmp_path / "train.parquet")
    if test is None:
        test = train.copy()
        col = "text" if "text" in test else test.columns[0]
        test[col] = test[col].map(lambda t: f"{t} t" if isinstance(t, str) and t.strip() else t)
    test.to_parquet(tmp_path / "test.parquet")
    return tmp_path


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    folder = _write(tmp_path, pd.DataFrame({"review": ["a", "b"], "label": [0, 1]}))
    with pytest.raises(DataError, match=r"has no column 'text'; its columns are: review, label"):
        load_corpus(DatasetSpec(source=str(folder)))


def test_fewer_than_two_classes(tmp_path: Path) -> None:
    folder = _write(tmp_path, pd.DataFrame({"text": ["a", "b"], "label": [1, 1]}))
    with pytest.raises(DataError, match="fewer than two classes"):
        load_corpus(DatasetSpec(source=str(folder)))


def test_empty_texts_say_how_many_and_where(tmp_path: Path) -> None:
    folder = _write(tmp_path, pd.DataFrame({"text": ["a", "", None, "  "], "label": [0, 1, 0, 1]}))
    with pytest.raises(DataError, match=r"'train' has 3 empty or missing texts .*rows 1, 2, 3"):
        load_corpus(DatasetSpec(source=str(folder)))


def test_missing_labels(tmp_path: Path) -> None:
    folder = _write(tmp_path, pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", None, "y"]}))
    with pytest.raises(
        DataError, match=r"1 missing labels in column 'label' \(rows 1, counting from 0\)"
    ):
        load_corpus(DatasetSpec(source=str(folder)))


def test_test_labels_unknown_to_train(tmp_path: Path) -> None:
    train = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    test = pd.DataFrame({"text": ["c", "d"], "label": ["x", "z"]})
    folder = _write(tmp_path, train, test)
    with pytest.raises(DataError, match=r"labels that never occur in 'train': \['z'\]"):
        load_corpus(DatasetSpec(source=str(folder)))


def test_missing_split_file_lists_folder(tmp_path: Path) -> None:
    pd.DataFrame({"text": ["a"], "label": [0]}).to_parquet(tmp_path / "train.parquet")
    with pytest.raises(DataError, match=r"no 'test' file in .*the folder has: train.parquet"):
        load_corpus(DatasetSpec(source=str(tmp_path)))


def test_missing_local_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; point it at a folder"):
        load_corpus(DatasetSpec(source=str(tmp_path / "nope")))


def test_unreachable_hub_fails_fast_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(data_mod, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    with pytest.raises(DataError, match=r"hub is unreachable.*--set dataset.source="):
        load_corpus(DatasetSpec(source="some-user/some-dataset-not-cached"))


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"sizes": [21]}, r"grid size 21 cannot be split evenly over 2 classes.*\(e.g. 20 or 22\)"),
        ({"sizes": [200]}, r"grid size 200 is larger than .* the maximum is 60 \(2 classes × 30"),
        ({"noise_rates": [0.5]}, r"noise rate 0.5 is out of range for 2 classes.*\[0, 0.5\)"),
        ({"test_size": 41}, r"eval.test_size 41 cannot be split evenly"),
        ({"test_size": 100}, r"eval.test_size 100 is larger .*maximum is 40"),
    ],
)
def test_grid_the_data_cannot_serve(
    make_dataset: Callable[..., Path], grid: dict, message: str
) -> None:
    folder = make_dataset(30, 20)
    corpus = load_corpus(DatasetSpec(source=str(folder)))
    with pytest.raises(DataError, match=message):
        check_corpus(corpus, spec_for(folder, **grid))


def test_noise_bound_depends_on_classes(make_dataset: Callable[..., Path]) -> None:
    folder = make_dataset(30, 20, n_classes=3)
    corpus = load_corpus(DatasetSpec(source=str(folder)))
    check_corpus(corpus, spec_for(folder, sizes=[30], noise_rates=[0.6], test_size=30))
    with pytest.raises(DataError, match=r"\[0, 0.666667\)"):
        check_corpus(corpus, spec_for(folder, sizes=[30], noise_rates=[0.7], test_size=30))


def test_real_imdb_copy_loads(imdb_dir: Path) -> None:
    corpus = load_corpus(DatasetSpec(source=str(imdb_dir)))
    assert len(corpus.train) == 25000
    assert corpus.train.class_counts(2).tolist() == [12500, 12500]
    assert corpus.max_train_size() == 25000
    assert "rating" in corpus.train.extra
    assert not set(corpus.test.texts) & set(corpus.train.texts)


def test_default_test_size_fits_the_test_split(make_dataset: Callable[..., Path]) -> None:
    # 3 classes, 20 test rows each: the old fixed default (2000) failed twice (not a multiple of
    # 3, larger than the split); the default now takes all 60.
    folder = make_dataset(30, 20, n_classes=3)
    corpus = load_corpus(DatasetSpec(source=str(folder)))
    spec = spec_for(folder, sizes=[30], test_size=None)
    check_corpus(corpus, spec)
    assert resolve_test_size(corpus, spec) == 60


def test_test_split_without_a_class_is_refused(tmp_path: Path) -> None:
    pd.DataFrame({"text": ["a b", "c d", "e f", "g h"], "label": [0, 1, 2, 2]}).to_csv(
        tmp_path / "train.csv", index=False
    )
    pd.DataFrame({"text": ["x y", "z w"], "label": [0, 2]}).to_csv(
        tmp_path / "test.csv", index=False
    )
    corpus = load_corpus(DatasetSpec(source=str(tmp_path)))
    with pytest.raises(DataError, match=r"split 'test' has no examples of class '1'"):
        check_corpus(corpus, spec_for(tmp_path, sizes=[3], test_size=None))


def test_missing_local_path_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=rf"looked in {tmp_path / 'nope'};"):
        load_corpus(DatasetSpec(source="./nope"))


def test_identity_follows_the_content_not_the_path(
    make_dataset: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_dataset(fmt="csv")
    cache = tmp_path / "cache"
    first = dataset_identity(DatasetSpec(source=str(folder)), cache_dir=cache)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 16
    assert len(list((cache / "data-identity").iterdir())) == 1
    (tmp_path / "link").symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    for spelling in (f"{folder}/", "./data", "data/../data", "link"):
        assert dataset_identity(DatasetSpec(source=spelling), cache_dir=cache) == first, spelling
    # Other files in the folder are not read, so they are not part of the identity.
    (folder / "notes.txt").write_text("unrelated")
    assert dataset_identity(DatasetSpec(source=str(folder)), cache_dir=cache) == first
    train = folder / "train.csv"
    train.write_text(train.read_text().replace("movie", "film"))
    changed = dataset_identity(DatasetSpec(source=str(folder)), cache_dir=cache)
    assert changed != first
    # The cache is keyed by path, size and mtime: a stale entry is never returned.
    assert dataset_identity(DatasetSpec(source=str(folder))) == changed


def test_identity_of_a_hub_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    spec = DatasetSpec(source="user/reviews", config_name="plain")
    assert dataset_identity(spec) == "hub:user/reviews/plain"
    ref = tmp_path / "datasets--user--reviews" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("0123abcd\n")
    assert dataset_identity(spec) == "hub:user/reviews/plain@0123abcd"


def test_resolved_spec_fingerprint_is_the_datas(make_dataset: Callable[..., Path]) -> None:
    folder = make_dataset()
    plain = spec_for(folder)
    resolved = resolve_data_identity(plain)
    assert resolved.data_identity == dataset_identity(plain.dataset)
    assert resolve_data_identity(resolved) is resolved
    assert resolve_data_identity(spec_for(f"{folder}/")).fingerprint() == resolved.fingerprint()
    with pytest.raises(DataError, match="does not exist"):
        resolve_data_identity(spec_for(folder / "missing"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("train.csv", b"", r"train\.csv: the file is empty \(0 bytes\)"),
        ("train.csv", b'text,label\na,0\n"b,1\n', r"the quote .* opened on line 3 is never closed"),
        ("train.csv", b"text,label\na,0\nb,c,1\n", r"line 3 has 3 fields where the header has 2"),
        ("train.csv", b"text,label\ncaf\xe9,0\n", r"not UTF-8 text \(byte 0xe9 on line 2\)"),
        ("train.jsonl", b'{"text": "a", "label": 0}\n[1]\n', r"line 2 is a JSON list, not an"),
        ("train.parquet", b"PAR1 not really", r"train\.parquet: it is not a readable parquet file"),
    ],
)
def test_unreadable_split_file_is_named_with_the_fix(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(content)
    pd.DataFrame({"text": ["x", "y"], "label": [0, 1]}).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(DataError, match=message):
        load_corpus(DatasetSpec(source=str(tmp_path)))


def test_a_csv_text_with_quoted_newlines_is_fine(tmp_path: Path) -> None:
    rows = pd.DataFrame({"text": ["line one\nline two, 1", "plain", "x", "y"], "label": [0, 1] * 2})
    rows.to_csv(tmp_path / "train.csv", index=False)
    rows.assign(text=rows["text"] + " t").to_csv(tmp_path / "test.csv", index=False)
    corpus = load_corpus(DatasetSpec(source=str(tmp_path)))
    assert corpus.train.texts[0] == "line one\nline two, 1"
