"""Loading a corpus: a Hugging Face hub dataset, a local folder of split files, or aclImdb.

A :class:`Corpus` holds the train and test splits as plain texts and integer labels
(``0..K-1``, with the class names kept), plus any other columns of the source (for example IMDB's
``rating``) for noise models that need them. :func:`check_corpus` refuses, with one line naming the
problem and the fix, every dataset that cannot serve the experiment, before any training.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import DatasetSpec, ExperimentSpec
from .errors import DataError, MissingDependencyError

SPLIT_FILE_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
HUB_HOST = "huggingface.co"
HUB_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Split:
    """One split of a corpus.

    Attributes
    ----------
    texts : list of str
    labels : ndarray of int, shape (n,)
        Class ids in ``0..K-1``.
    extra : DataFrame
        The source's other columns, row-aligned with ``texts`` (may have no columns).
    """

    texts: list[str]
    labels: np.ndarray
    extra: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=n_classes)


@dataclass(frozen=True)
class Corpus:
    """A labelled train split and test split with shared class names."""

    train: Split
    test: Split
    label_names: tuple[str, ...]
    source: str
    n_test_dropped_overlap: int = 0
    """Test rows dropped because their exact text also appears in the training split."""

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def max_train_size(self) -> int:
        """Largest class-balanced training size: K × the smallest class count."""
        return int(self.n_classes * self.train.class_counts(self.n_classes).min())

    def max_test_size(self) -> int:
        return int(self.n_classes * self.test.class_counts(self.n_classes).min())


def load_corpus(spec: DatasetSpec) -> Corpus:
    """Load the dataset ``spec`` describes and map its labels to ``0..K-1``.

    Parameters
    ----------
    spec : DatasetSpec
        ``source`` is a local folder (split files or the aclImdb layout) if such a path exists,
        otherwise a Hugging Face hub dataset name.

    Returns
    -------
    Corpus

    Raises
    ------
    DataError
        The source cannot be found or read, a column is missing, texts or labels are empty, or
        there are fewer than two classes.
    """
    path = Path(spec.source).expanduser()
    if path.is_dir():
        if (path / spec.train_split / "pos").is_dir() or (path / spec.train_split / "neg").is_dir():
            frames = {s: _read_aclimdb_split(path / s) for s in (spec.train_split, spec.test_split)}
        else:
            frames = {s: _read_split_file(path, s) for s in (spec.train_split, spec.test_split)}
    elif path.suffix in SPLIT_FILE_SUFFIXES or spec.source.startswith((".", "/", "~")):
        raise DataError(
            f"dataset.source '{spec.source}' does not exist; point it at a folder holding "
            f"{spec.train_split}.parquet/.csv/.jsonl and {spec.test_split}.* files, an aclImdb "
            f"folder, or give a Hugging Face dataset name (looked in {path.absolute()}; a "
            "relative path in a config file is relative to the file's folder, one given with "
            "--set to the current directory)"
        )
    else:
        frames = _load_hub(spec)
    return _build_corpus(spec, frames)


def _read_split_file(folder: Path, split: str) -> pd.DataFrame:
    candidates = [folder / f"{split}{suffix}" for suffix in SPLIT_FILE_SUFFIXES]
    candidates += sorted(folder.glob(f"{split}-*.parquet"))
    found = [p for p in candidates if p.is_file()]
    if not found:
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "(empty folder)"
        raise DataError(
            f"no '{split}' file in {folder} (looked for {split}.parquet, .csv, .jsonl); the folder "
            f"has: {present}; rename the file or set dataset.train_split / dataset.test_split"
        )
    first = found[0]
    if first.suffix == ".parquet":
        parquet = [p for p in found if p.suffix == ".parquet"]
        return pd.concat([pd.read_parquet(p) for p in parquet], ignore_index=True)
    if first.suffix == ".csv":
        return pd.read_csv(first)
    return pd.read_json(first, lines=first.suffix == ".jsonl")


_ACLIMDB_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")


def _read_aclimdb_split(folder: Path) -> pd.DataFrame:
    """Read aclImdb's ``<split>/{neg,pos}/<id>_<rating>.txt`` layout (``unsup`` is ignored)."""
    if not folder.is_dir():
        raise DataError(
            f"aclImdb split folder {folder} does not exist; expected {folder}/pos, /neg"
        )
    rows: list[dict[str, Any]] = []
    for _label, name in enumerate(("neg", "pos")):
        for file in sorted((folder / name).glob("*.txt")):
            match = _ACLIMDB_NAME.match(file.name)
            rating = int(match.group(2)) if match else None
            rows.append(
                {
                    "id": f"{folder.name}/{name}/{file.stem}",
                    "text": file.read_text(encoding="utf-8"),
                    "label": name,
                    "rating": rating,
                }
            )
    if not rows:
        raise DataError(f"aclImdb split folder {folder} has no pos/*.txt or neg/*.txt files")
    return pd.DataFrame(rows)


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    host = os.environ.get("HF_ENDPOINT", f"https://{HUB_HOST}").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host.split(":")[0], 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(spec: DatasetSpec) -> dict[str, pd.DataFrame]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise MissingDependencyError("loading hub datasets needs: pip install datasets") from None
    online = hub_reachable()
    try:
        with _offline(datasets, enabled=not online):
            dsd = datasets.load_dataset(spec.source, spec.config_name)
    except Exception as exc:
        if not online:
            raise DataError(
                f"the Hugging Face hub is unreachable and dataset '{spec.source}' is not in the "
                "local cache; download it where you have internet, or point dataset.source at a "
                "local folder with train/test parquet, csv or jsonl files, e.g. "
                "--set dataset.source=../shared/data/imdb"
            ) from None
        raise DataError(
            f"could not load dataset '{spec.source}' from the Hugging Face hub: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    frames = {}
    for split in (spec.train_split, spec.test_split):
        if split not in dsd:
            raise DataError(
                f"dataset '{spec.source}' has no split '{split}'; it has: {', '.join(dsd)}; "
                "set dataset.train_split / dataset.test_split"
            )
        ds = dsd[split]
        frame = ds.to_pandas()
        feature = ds.features.get(spec.label_column)
        names = getattr(feature, "names", None)
        if names is not None and spec.label_column in frame:
            frame[spec.label_column] = [
                names[i] if i >= 0 else None for i in frame[spec.label_column]
            ]
            frame.attrs["label_names"] = list(names)
        frames[split] = frame
    return frames


@contextlib.contextmanager
def _offline(datasets_module: Any, *, enabled: bool) -> Iterator[None]:
    """Offline mode for one load: a dataset already in the local cache loads without retries."""
    if not enabled:
        yield
        return
    config = datasets_module.config
    saved = {k: getattr(config, k, None) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    saved_env = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    try:
        for key in saved:
            setattr(config, key, True)
            os.environ[key] = "1"
        yield
    finally:
        for key, value in saved.items():
            setattr(config, key, value)
        for key, env in saved_env.items():
            if env is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = env


def _build_corpus(spec: DatasetSpec, frames: dict[str, pd.DataFrame]) -> Corpus:
    train_df, test_df = frames[spec.train_split], frames[spec.test_split]
    for split, df in ((spec.train_split, train_df), (spec.test_split, test_df)):
        missing = [c for c in (spec.text_column, spec.label_column) if c not in df.columns]
        if missing:
            raise DataError(
                f"split '{split}' of '{spec.source}' has no column "
                f"{', '.join(map(repr, missing))}; "
                f"its columns are: {', '.join(map(str, df.columns))}; set dataset.text_column / "
                "dataset.label_column"
            )
        _check_values(df, spec, split)

    label_names = _label_names(train_df, test_df, spec)
    index = {name: i for i, name in enumerate(label_names)}
    unseen = sorted(set(map(_label_key, test_df[spec.label_column])) - set(index))
    if unseen:
        raise DataError(
            f"split '{spec.test_split}' has labels that never occur in '{spec.train_split}': "
            f"{unseen[:5]}; the model cannot learn them — remove those rows"
        )
    if len(label_names) < 2:
        raise DataError(
            f"split '{spec.train_split}' has fewer than two classes ({list(label_names)}); "
            f"a classifier needs at least two — check dataset.label_column ('{spec.label_column}')"
        )

    train = _to_split(train_df, spec, index)
    test = _to_split(test_df, spec, index)
    # Test data must never overlap training data: drop exact duplicates of training texts.
    seen = set(train.texts)
    keep = np.array([t not in seen for t in test.texts], dtype=bool)
    n_dropped = int((~keep).sum())
    if n_dropped:
        test = Split(
            texts=[t for t, k in zip(test.texts, keep, strict=True) if k],
            labels=test.labels[keep],
            extra=test.extra.loc[keep].reset_index(drop=True),
        )
    return Corpus(
        train=train,
        test=test,
        label_names=label_names,
        source=spec.source,
        n_test_dropped_overlap=n_dropped,
    )


def _check_values(df: pd.DataFrame, spec: DatasetSpec, split: str) -> None:
    texts = df[spec.text_column]
    bad_text = texts.isna() | ~texts.map(lambda t: isinstance(t, str) and t.strip() != "")
    bad_label = df[spec.label_column].isna() | df[spec.label_column].map(
        lambda v: isinstance(v, str) and v.strip() == ""
    )
    for what, mask, column in (
        ("empty or missing texts", bad_text, spec.text_column),
        ("missing labels", bad_label, spec.label_column),
    ):
        n = int(mask.sum())
        if n:
            rows = ", ".join(str(i) for i in np.flatnonzero(mask.to_numpy())[:5])
            more = ", ..." if n > 5 else ""
            raise DataError(
                f"split '{split}' has {n} {what} in column '{column}' (rows {rows}{more}); "
                "drop or fill those rows before running"
            )


def _label_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, np.integer):
        value = int(value)
    return str(value)


def _label_names(
    train_df: pd.DataFrame, test_df: pd.DataFrame, spec: DatasetSpec
) -> tuple[str, ...]:
    declared = train_df.attrs.get("label_names")
    present = {_label_key(v) for v in train_df[spec.label_column]}
    if declared:
        # Keep the dataset's declared class order, minus classes the training split never uses.
        return tuple(n for n in map(str, declared) if n in present)
    values = pd.unique(train_df[spec.label_column])
    if all(
        isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer())
        for v in values
    ):
        return tuple(str(v) for v in sorted({int(v) for v in values}))
    return tuple(sorted(present))


def _to_split(df: pd.DataFrame, spec: DatasetSpec, index: dict[str, int]) -> Split:
    labels = np.fromiter((index[_label_key(v)] for v in df[spec.label_column]), dtype=np.int64)
    extra = df.drop(columns=[spec.text_column, spec.label_column]).reset_index(drop=True)
    return Split(texts=[str(t) for t in df[spec.text_column]], labels=labels, extra=extra)


def check_corpus(corpus: Corpus, spec: ExperimentSpec) -> None:
    """Refuse a grid the corpus cannot serve; one line naming the problem and the fix.

    Checks every size against class-balanced sampling (``size`` must be a multiple of K and at most
    K × the smallest class count), every noise rate against ``[0, 1 - 1/K)``, and ``test_size``
    against the test split.

    Raises
    ------
    DataError
    """
    k = corpus.n_classes
    not_multiple = [s for s in spec.grid.sizes if s % k]
    if not_multiple:
        s = not_multiple[0]
        raise DataError(
            f"grid size {s} cannot be split evenly over {k} classes; sizes must be multiples "
            f"of {k} "
            f"(e.g. {s - s % k} or {s - s % k + k})"
        )
    max_size = corpus.max_train_size()
    too_big = [s for s in spec.grid.sizes if s > max_size]
    if too_big:
        counts = corpus.train.class_counts(k)
        raise DataError(
            f"grid size {max(too_big)} is larger than class-balanced sampling of split "
            f"'{spec.dataset.train_split}' allows: the maximum is {max_size} ({k} classes × "
            f"{counts.min()} examples in the smallest class); lower grid.sizes"
        )
    limit = 1.0 - 1.0 / k
    bad_rates = [r for r in spec.grid.noise_rates if not 0.0 <= r < limit]
    if bad_rates:
        raise DataError(
            f"noise rate {bad_rates[0]} is out of range for {k} classes: rates must be in "
            f"[0, {limit:g}) (at 1 - 1/K the labels carry no information); lower grid.noise_rates"
        )
    counts = corpus.test.class_counts(k)
    if counts.min() == 0:
        absent = [name for name, n in zip(corpus.label_names, counts, strict=True) if n == 0]
        raise DataError(
            f"split '{spec.dataset.test_split}' has no examples of class "
            f"{', '.join(map(repr, absent[:5]))}, so no class-balanced test sample can be drawn; "
            "add such rows to the test split or drop the class from both splits"
        )
    test_size = resolve_test_size(corpus, spec)
    if test_size % k:
        raise DataError(
            f"eval.test_size {test_size} cannot be split evenly over {k} classes; use a multiple "
            f"of {k} (e.g. {test_size - test_size % k})"
        )
    max_test = corpus.max_test_size()
    if test_size > max_test:
        raise DataError(
            f"eval.test_size {test_size} is larger than class-balanced sampling of split "
            f"'{spec.dataset.test_split}' allows: the maximum is {max_test}; lower eval.test_size, "
            "or leave it out for the largest class-balanced sample (up to 2,000 rows)"
        )


def resolve_test_size(corpus: Corpus, spec: ExperimentSpec) -> int:
    """The test sample's size: ``[eval] test_size``, or the largest class-balanced sample of the
    usable test split up to 2,000 rows, rounded down to a multiple of K."""
    return spec.eval.resolve_test_size(corpus.n_classes, corpus.max_test_size())


def describe_corpus(corpus: Corpus) -> str:
    """One line: sizes and class balance, for logs."""
    k = corpus.n_classes
    counts = ", ".join(
        f"{name}={n}"
        for name, n in zip(corpus.label_names, corpus.train.class_counts(k), strict=True)
    )
    return f"{corpus.source}: {len(corpus.train)} train ({counts}), {len(corpus.test)} test" + (
        f", {corpus.n_test_dropped_overlap} test rows dropped as duplicates of train"
        if corpus.n_test_dropped_overlap
        else ""
    )


def texts_at(split: Split, indices: Sequence[int] | np.ndarray) -> list[str]:
    return [split.texts[int(i)] for i in indices]
