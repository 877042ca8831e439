"""Loading a corpus: a Hugging Face hub dataset, a local folder of split files, or aclImdb.

A :class:`Corpus` holds the train and test splits as plain texts and integer labels
(``0..K-1``, with the class names kept), plus any other columns of the source (for example IMDB's
``rating``) for noise models that need them. :func:`check_corpus` refuses, with one line naming the
problem and the fix, every dataset that cannot serve the experiment, before any training.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._cache import write_entry
from .config import NOISE_RATE_DECIMALS, DatasetSpec, ExperimentSpec
from .errors import DataError, MissingDependencyError

SPLIT_FILE_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
HUB_HOST = "huggingface.co"
HUB_PROBE_TIMEOUT_S = 3.0
MIN_TEST_SIZE = 10
"""Fewest test rows a grid may be scored on: below it one example moves accuracy by more than ten
points, so an accuracy of 1.0 or 0.5 is luck, not a measurement."""


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
        The source cannot be found or read (the message names the file and what is wrong with it),
        a column is missing, texts or labels are empty, or there are fewer than two classes.
    """
    folder = _local_folder(spec)
    if folder is None:
        frames = _load_hub(spec)
    elif _is_aclimdb(folder, spec):
        frames = {s: _read_aclimdb_split(folder / s) for s in (spec.train_split, spec.test_split)}
    else:
        frames = {s: _read_split(folder, s, spec) for s in (spec.train_split, spec.test_split)}
    return _build_corpus(spec, frames)


def _local_folder(spec: DatasetSpec) -> Path | None:
    """The local folder ``dataset.source`` names, or None for a hub dataset name."""
    path = Path(spec.source).expanduser()
    if path.is_dir():
        return path
    # A split file names its folder: train.csv is read with the test.csv beside it.
    split_file = path.suffix in SPLIT_FILE_SUFFIXES and path.stem in (
        spec.train_split,
        spec.test_split,
    )
    if split_file and path.is_file():
        return path.parent
    if path.is_file():
        raise DataError(
            f"dataset.source '{spec.source}' is a file, not a folder; point it at the folder that "
            f"holds the split files (e.g. --set dataset.source={path.parent}), named "
            f"{spec.train_split}.parquet/.csv/.jsonl and {spec.test_split}.*"
        )
    if path.suffix in SPLIT_FILE_SUFFIXES or spec.source.startswith((".", "/", "~")):
        raise DataError(
            f"dataset.source '{spec.source}' does not exist; point it at a folder holding "
            f"{spec.train_split}.parquet/.csv/.jsonl and {spec.test_split}.* files, an aclImdb "
            f"folder, or give a Hugging Face dataset name (looked in {path.absolute()}; a "
            "relative path in a config file is relative to the file's folder, one given with "
            "--set to the current directory)"
        )
    return None


def _is_aclimdb(folder: Path, spec: DatasetSpec) -> bool:
    return (folder / spec.train_split / "pos").is_dir() or (
        folder / spec.train_split / "neg"
    ).is_dir()


def _split_files(folder: Path, split: str) -> list[Path]:
    """The files a split is read from: ``<split>.parquet``, ``.csv``, ``.jsonl`` or the shards
    ``<split>-*.parquet``; more than one of these is ambiguous and refused."""
    candidates = [folder / f"{split}{suffix}" for suffix in SPLIT_FILE_SUFFIXES]
    candidates += sorted(folder.glob(f"{split}-*.parquet"))
    found = [p for p in candidates if p.is_file()]
    if not found:
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "(empty folder)"
        raise DataError(
            f"no '{split}' file in {folder} (looked for {split}.parquet, .csv, .jsonl); the folder "
            f"has: {present}; rename the file or set dataset.train_split / dataset.test_split"
        )
    whole = [p for p in found if p.stem == split]
    shards = [p for p in found if p.stem != split]
    if len(whole) > 1 or (whole and shards):
        names = ", ".join(p.name for p in found)
        raise DataError(
            f"split '{split}' is ambiguous in {folder}: {names} would each be read as the whole "
            f"split; keep one file (or only the shards {split}-*.parquet) and move the others "
            "out of the folder"
        )
    return found


def _read_split(folder: Path, split: str, spec: DatasetSpec) -> pd.DataFrame:
    files = _split_files(folder, split)
    for file in files:
        if file.stat().st_size == 0:
            raise DataError(
                f"cannot read {file}: the file is empty (0 bytes); write the split into it again "
                "or remove it"
            )
    suffix = files[0].suffix
    if suffix == ".parquet":
        frame = pd.concat([_read_parquet(p) for p in files], ignore_index=True)
    elif suffix == ".csv":
        frame = _read_csv(files[0], spec)
    else:
        frame = _read_json(files[0], lines=suffix == ".jsonl")
    frame.attrs["files"] = ", ".join(str(p) for p in files)
    if suffix in (".csv", ".jsonl"):
        frame.attrs["lines_of"] = str(files[0])
    return frame


def _read_parquet(file: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(file)
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:  # pyarrow's errors
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = re.sub(r"^Could not open Parquet input source '.*?': ", "", reason)
        raise DataError(
            f"cannot read {file}: it is not a readable parquet file ({reason}); write the split "
            "again (e.g. DataFrame.to_parquet) or give it as .csv or .jsonl"
        ) from None


def _read_csv(file: Path, spec: DatasetSpec) -> pd.DataFrame:
    try:
        # Texts and labels are read as written: a class named NA or a text "None" is not missing.
        own = {spec.text_column, spec.label_column}
        na = {c: ([""] if c in own else list(_CSV_NA)) for c in _csv_header(file)}
        frame = pd.read_csv(file, encoding="utf-8", keep_default_na=False, na_values=na)
    except UnicodeDecodeError:
        raise _not_utf8(file) from None
    except pd.errors.EmptyDataError:
        raise DataError(
            f"cannot read {file}: it has no header line (no columns); the first line must name the "
            f"columns, e.g. {spec.text_column},{spec.label_column}"
        ) from None
    except pd.errors.ParserError as exc:
        problem = _csv_problem(file, spec) or str(exc).strip().splitlines()[-1]
        raise DataError(f"cannot read {file}: {problem}") from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas takes a first data row with more fields than the header as an index column.
        problem = _csv_problem(file, spec) or "a row has more fields than the header"
        raise DataError(f"cannot read {file}: {problem}")
    text = frame.get(spec.text_column)
    if text is not None and text.map(lambda t: isinstance(t, str) and "\n" in t).any():
        merged = _csv_problem(file, spec, labels=frame.get(spec.label_column), only_merged=True)
        if merged:
            raise DataError(f"cannot read {file}: {merged}")
    return frame


_CSV_NA = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
"""pandas' default missing-value markers, kept for the columns other than texts and labels."""


def _csv_header(file: Path) -> list[str]:
    with file.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _csv_problem(
    file: Path, spec: DatasetSpec, *, labels: pd.Series | None = None, only_merged: bool = False
) -> str | None:
    """Where a csv file's structure goes wrong, with the line number and the fix (or None)."""
    known = {str(v).strip() for v in labels.dropna()} if labels is not None else set()
    with file.open(newline="", encoding="utf-8") as handle:
        # Strict quoting finds broken structure; rows swallowed by a quote parse as pandas did.
        reader = csv.reader(handle, strict=not only_merged)
        line = 1
        try:
            header = next(reader)
            line = reader.line_num + 1
            position = header.index(spec.label_column) if spec.label_column in header else -1
            for record in reader:
                if len(record) != len(header) and not only_merged:
                    return (
                        f"line {line} has {len(record)} fields where the header has "
                        f"{len(header)} ({', '.join(header)}): a text with a comma must be "
                        'quoted ("good, really") — quote it or remove the extra field'
                    )
                if reader.line_num > line and position >= 0:
                    swallowed = [
                        row
                        for value in record
                        for row in value.split("\n")[:-1]
                        if _looks_like_row(row, len(header), position, known)
                    ]
                    if swallowed:
                        return (
                            f'a quote (") on line {line} opens a field that runs to line '
                            f"{reader.line_num} and swallows what look like "
                            f"{len(swallowed)} row(s) ({swallowed[0][:40]!r}): a stray quote — "
                            'write a quote inside a text as "" or quote the whole text'
                        )
                line = reader.line_num + 1
        except csv.Error as exc:
            if only_merged:
                return None
            if "end of data" in str(exc):
                return (
                    f'the quote (") opened on line {line} is never closed: the file ends inside '
                    'a quoted field — close that quote, or write a quote inside a text as ""'
                )
            return f'line {line} has a stray quote ({exc}); write a quote inside a text as ""'
    return None


def _looks_like_row(text: str, n_fields: int, label_position: int, labels: set[str]) -> bool:
    fields = next(csv.reader([text]), [])
    return len(fields) == n_fields and fields[label_position].strip() in labels


def _not_utf8(file: Path) -> DataError:
    data = file.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return DataError(
            f"cannot read {file}: it is not UTF-8 text (byte 0x{data[exc.start]:02x} on line "
            f"{line}); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        )
    return DataError(f"cannot read {file}: it is not UTF-8 text; save it as UTF-8")


def _read_json(file: Path, *, lines: bool) -> pd.DataFrame:
    try:
        return pd.read_json(file, lines=lines, encoding="utf-8")
    except UnicodeDecodeError:
        raise _not_utf8(file) from None
    except (ValueError, TypeError) as exc:
        problem = _jsonl_problem(file) if lines else None
        reason = problem or f"it is not valid JSON ({str(exc).splitlines()[0]})"
        raise DataError(
            f"cannot read {file}: {reason}; fix or remove "
            + ("that line" if problem else "the broken part")
        ) from None


def _jsonl_problem(file: Path) -> str | None:
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                return f"line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
            if not isinstance(value, dict):
                return f"line {number} is a JSON {type(value).__name__}, not an object"
    return None


_ACLIMDB_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")


def _aclimdb_files(folder: Path) -> list[Path]:
    return [f for name in ("neg", "pos") for f in sorted((folder / name).glob("*.txt"))]


def _read_aclimdb_split(folder: Path) -> pd.DataFrame:
    """Read aclImdb's ``<split>/{neg,pos}/<id>_<rating>.txt`` layout (``unsup`` is ignored)."""
    if not folder.is_dir():
        raise DataError(
            f"aclImdb split folder {folder} does not exist; expected {folder}/pos, /neg"
        )
    rows: list[dict[str, Any]] = []
    for file in _aclimdb_files(folder):
        match = _ACLIMDB_NAME.match(file.name)
        rating = int(match.group(2)) if match else None
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise _not_utf8(file) from None
        rows.append(
            {
                "id": f"{folder.name}/{file.parent.name}/{file.stem}",
                "text": text,
                "label": file.parent.name,
                "rating": rating,
            }
        )
    if not rows:
        raise DataError(f"aclImdb split folder {folder} has no pos/*.txt or neg/*.txt files")
    frame = pd.DataFrame(rows)
    frame.attrs["files"] = str(folder)
    return frame


# -- what the data is -----------------------------------------------------------------------------
def dataset_identity(spec: DatasetSpec, *, cache_dir: str | Path | None = None) -> str:
    """What the dataset is, independent of how its path is written.

    A local dataset is identified by the content of the files a load reads (``sha256:`` and 16 hex
    characters of their hash); the hash is cached under ``cache_dir`` by each file's resolved
    path, size, modification time, inode and change time, so it is computed once per version of
    the files. The change time (ctime) is what a tool that restores the modification time after
    writing (``touch -d``, ``rsync -t``, ``cp -p``) cannot set back, so in-place edits are seen;
    the price is a fresh hash after a mere ``chmod`` or ``chown``. A hub
    dataset is identified by its name, configuration and, when the local Hugging Face cache knows
    it, the revision (``hub:NAME[/CONFIG][@REVISION]``).

    Parameters
    ----------
    spec : DatasetSpec
    cache_dir : str or Path, optional
        Where content hashes are cached; no caching without it.

    Returns
    -------
    str

    Raises
    ------
    DataError
        The local source or one of its split files does not exist.
    """
    folder = _local_folder(spec)
    if folder is None:
        name = spec.source + (f"/{spec.config_name}" if spec.config_name else "")
        revision = _hub_revision(spec.source)
        return f"hub:{name}" + (f"@{revision}" if revision else "")
    if _is_aclimdb(folder, spec):
        files = [f for s in (spec.train_split, spec.test_split) for f in _aclimdb_files(folder / s)]
    else:
        files = [f for s in (spec.train_split, spec.test_split) for f in _split_files(folder, s)]
    return _content_hash(folder, files, cache_dir=cache_dir)


def resolve_data_identity(
    spec: ExperimentSpec, *, cache_dir: str | Path | None = None
) -> ExperimentSpec:
    """``spec`` with its :attr:`~noisegrid.config.ExperimentSpec.data_identity` set.

    Call it once before taking fingerprints; a spec whose identity is already set is returned
    as it is.
    """
    if spec.data_identity is not None:
        return spec
    return spec.with_data_identity(dataset_identity(spec.dataset, cache_dir=cache_dir))


def _content_hash(root: Path, files: list[Path], *, cache_dir: str | Path | None) -> str:
    stats = [(f, f.stat()) for f in files]
    key_text = "\n".join(
        f"{os.path.realpath(f)}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}\t{st.st_ctime_ns}"
        for f, st in stats
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()
    cached = Path(cache_dir).expanduser() / "data-identity" / key if cache_dir else None
    if cached is not None:
        # An unreadable or damaged entry is a miss.
        with contextlib.suppress(OSError, ValueError):
            value = cached.read_text(encoding="utf-8").strip()
            if _CONTENT_HASH.fullmatch(value):
                return value
    digest = hashlib.sha256()
    for file, _ in stats:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    value = "sha256:" + digest.hexdigest()[:16]
    if cached is not None:
        write_entry(cached, lambda tmp: tmp.write_text(value, encoding="utf-8"))
    return value


_CONTENT_HASH = re.compile(r"sha256:[0-9a-f]{16}")


def _hub_revision(name: str) -> str | None:
    """The revision of ``name`` the local Hugging Face hub cache holds, if it records one."""
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    root = (
        Path(cache)
        if cache
        else Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"
    )
    ref = root / f"datasets--{name.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


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
        if df.empty:
            where = df.attrs.get("files", f"'{spec.source}'")
            raise DataError(
                f"split '{split}' has no rows ({where} holds only its column names); "
                "fill it with labelled examples or point dataset.source at the data"
            )
        _check_values(df, spec, split)

    _check_spellings(train_df, test_df, spec)
    label_names = _label_names(train_df, test_df, spec)
    index = {name: i for i, name in enumerate(label_names)}
    unseen = sorted(set(map(label_key, pd.unique(test_df[spec.label_column]))) - set(index))
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
    # Python loops over plain lists: Series.map costs several times as much on 25,000 rows.
    values = texts.tolist()
    is_text = np.fromiter((isinstance(t, str) for t in values), dtype=bool, count=len(values))
    not_text = texts.notna() & ~is_text
    n_not_text = int(not_text.sum())
    if n_not_text < int(texts.notna().sum()):
        # Among texts, a number is a text written without quotes (JSON 12345): read it as one.
        not_text &= ~texts.map(
            lambda t: isinstance(t, (int, float, np.number)) and not isinstance(t, (bool, np.bool_))
        )
        n_not_text = int(not_text.sum())
    if n_not_text:
        examples = ", ".join(repr(v) for v in texts[not_text].head(3))
        what = (
            "holds numbers, not texts"
            if n_not_text == int(texts.notna().sum())
            else f"has {n_not_text} values that are not texts"
        )
        raise DataError(
            f"column '{spec.text_column}' of split '{split}' {what} (e.g. {examples}); set "
            "dataset.text_column to the column holding the texts; the columns are: "
            f"{', '.join(map(str, df.columns))}"
        )
    # What is left besides strings are numbers among texts, which are texts.
    bad_text = texts.isna() | np.fromiter(
        (isinstance(t, str) and t.strip() == "" for t in values), dtype=bool, count=len(values)
    )
    labels = df[spec.label_column]
    bad_label = labels.isna()
    if not pd.api.types.is_numeric_dtype(labels):
        bad_label |= np.fromiter(
            (isinstance(v, str) and v.strip() == "" for v in labels.tolist()),
            dtype=bool,
            count=len(labels),
        )
    for what, mask, column in (
        ("empty or missing texts", bad_text, spec.text_column),
        ("missing labels", bad_label, spec.label_column),
    ):
        n = int(mask.sum())
        if n:
            places = _places(df, np.flatnonzero(mask.to_numpy())[:5])
            more = ", ..." if n > 5 else ""
            raise DataError(
                f"split '{split}' has {n} {what} in column '{column}' ({places}{more}); "
                "drop or fill those rows before running"
            )


def _places(df: pd.DataFrame, rows: np.ndarray) -> str:
    """Where rows are: file lines for csv and jsonl, else row numbers counted from 0."""
    source = df.attrs.get("lines_of")
    if source is None:
        return f"rows {', '.join(str(i) for i in rows)}, counting from 0"
    lines = _record_lines(Path(source))
    found = [str(lines[i]) for i in rows if i < len(lines)]
    return f"{Path(source).name} lines {', '.join(found)}"


def _record_lines(file: Path) -> list[int]:
    """The line each data record starts on (csv: after the header; jsonl: non-blank lines)."""
    with file.open(newline="", encoding="utf-8") as handle:
        if file.suffix == ".jsonl":
            return [n for n, line in enumerate(handle, start=1) if line.strip()]
        reader = csv.reader(handle)
        next(reader, None)
        starts, line = [], reader.line_num + 1
        for _ in reader:
            starts.append(line)
            line = reader.line_num + 1
        return starts


def _check_spellings(train_df: pd.DataFrame, test_df: pd.DataFrame, spec: DatasetSpec) -> None:
    """Refuse labels that differ only in spaces, case or number format ('pos ', '1.0')."""
    seen: dict[str, set[str]] = {}
    for df in (train_df, test_df):
        for value in pd.unique(df[spec.label_column]):
            name = label_key(value)
            seen.setdefault(_spelling(name), set()).add(name)
    clashes = [sorted(names) for names in seen.values() if len(names) > 1]
    if clashes:
        shown = "; ".join(" and ".join(map(repr, names)) for names in clashes[:3])
        raise DataError(
            f"column '{spec.label_column}' spells one class in several ways ({shown}): they "
            "differ only in spaces, case or number format, and would count as different "
            "classes; write each class one way (e.g. strip the spaces) in both splits"
        )


def _spelling(name: str) -> str:
    text = name.strip().casefold()
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if np.isfinite(number) else text


def label_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, np.integer):
        value = int(value)
    return str(value)


def _label_names(
    train_df: pd.DataFrame, test_df: pd.DataFrame, spec: DatasetSpec
) -> tuple[str, ...]:
    declared = train_df.attrs.get("label_names")
    present = {label_key(v) for v in pd.unique(train_df[spec.label_column])}
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
    # Each distinct label is mapped once, then every row by its code.
    codes, uniques = pd.factorize(df[spec.label_column])
    ids = np.array([index[label_key(v)] for v in uniques], dtype=np.int64)
    labels = ids[codes] if len(codes) else np.zeros(0, dtype=np.int64)
    extra = df.drop(columns=[spec.text_column, spec.label_column]).reset_index(drop=True)
    return Split(texts=[str(t) for t in df[spec.text_column].tolist()], labels=labels, extra=extra)


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
        rounded = (
            f" (grid.noise_rates are rounded to {NOISE_RATE_DECIMALS} decimals, so a rate "
            f"within {0.5 * 10**-NOISE_RATE_DECIMALS:g} of {limit:g} counts as {limit:g})"
            if bad_rates[0] == round(limit, NOISE_RATE_DECIMALS)
            else ""
        )
        raise DataError(
            f"noise rate {bad_rates[0]} is out of range for {k} classes{rounded}: rates must be in "
            f"[0, {limit:g}) (at 1 - 1/K the labels carry no information); lower grid.noise_rates"
        )
    _check_realised_rates(spec, k)
    if len(corpus.test) == 0 and corpus.n_test_dropped_overlap:
        raise DataError(
            f"every row of split '{spec.dataset.test_split}' ({corpus.n_test_dropped_overlap}) "
            f"repeats a text of split '{spec.dataset.train_split}', so no test data is left (test "
            "rows that also appear in training are dropped); use a test split of texts the model "
            "does not train on"
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
        dropped = (
            f", after dropping {corpus.n_test_dropped_overlap} test rows that repeat training texts"
            if corpus.n_test_dropped_overlap
            else ""
        )
        raise DataError(
            f"eval.test_size {test_size} is larger than class-balanced sampling of split "
            f"'{spec.dataset.test_split}' allows: the maximum is {max_test}{dropped}; lower "
            "eval.test_size, or leave it out for the largest class-balanced sample (up to 2,000 "
            "rows)"
        )
    if test_size < MIN_TEST_SIZE:
        step = f"an accuracy on {test_size} rows moves in steps of {100 / test_size:.3g} points"
        if spec.eval.test_size is not None:
            raise DataError(
                f"eval.test_size {test_size} is below the minimum of {MIN_TEST_SIZE}: {step} and "
                f"cannot tell cells apart; set eval.test_size to at least {MIN_TEST_SIZE}, or "
                "leave it out for the largest class-balanced sample"
            )
        smallest = corpus.label_names[int(counts.argmin())]
        raise DataError(
            f"the test sample would hold only {test_size} rows: it is class-balanced and class "
            f"{smallest!r} has {counts.min()} example(s) in split '{spec.dataset.test_split}'; "
            f"{step} and cannot tell cells apart (the minimum is {MIN_TEST_SIZE} rows) — add test "
            f"rows of the small classes (at least {-(-MIN_TEST_SIZE // k)} of each)"
        )


def _check_realised_rates(spec: ExperimentSpec, k: int) -> None:
    """Refuse a (size, rate) whose whole number of flipped labels reaches 1 - 1/K.

    A rate flips ``round(rate × size)`` labels (round half up, as
    :func:`noisegrid.noise.base.n_flips` counts them), so a rate just under the bound can still
    flip exactly the share at which the labels carry no information.
    """
    for size in spec.grid.sizes:
        # The most flips that keep the realised rate m / size below (K - 1) / K.
        max_flips = -(-(k - 1) * size // k) - 1
        for rate in spec.grid.noise_rates:
            flips = math.floor(rate * size + 0.5 + 1e-9)
            if flips > max_flips:
                raise DataError(
                    f"noise rate {rate:g} flips {flips} of the {size} labels at grid size {size} "
                    f"(realised rate {flips / size:.4g}, a whole number of labels): at "
                    f"{(k - 1) / k:.4g} = 1 - 1/K for {k} classes the labels carry no "
                    f"information; keep rates below {(max_flips + 0.5) / size:.6g} at that size "
                    "(lower grid.noise_rates, or drop or raise that size)"
                )


def resolve_test_size(corpus: Corpus, spec: ExperimentSpec) -> int:
    """The test sample's size for ``spec`` on ``corpus``.

    ``[eval] test_size`` when set; otherwise the largest class-balanced sample of the usable test
    split (after dropping rows that repeat training texts) up to 2,000 rows, rounded down to a
    multiple of K (:meth:`~noisegrid.config.EvalSpec.resolve_test_size`).
    """
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
