"""The third fault campaign: hard links, ambiguous split files, noise at the bound, tiny test
samples, caches, and the messages that named the wrong cause.

Each case runs through the CLI in-process, like :mod:`test_failures` (whose helpers it reuses): a
case that must fail asserts one ``error:`` line naming the cause and the fix, no traceback, and
that a store which existed before is byte for byte unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from test_failures import Case, Env, Prepared, check, invoke


@pytest.fixture(name="env")
def _env(
    tmp_path: Path, make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> Iterator[Env]:
    e = Env(tmp_path, make_dataset, write_config)
    try:
        yield e
    finally:
        e.unmount_all()


# -- 1. hard links ------------------------------------------------------------------------------


def _hard_linked(command: str, *, snapshot: bool = False) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        cfg = env.stored()
        if snapshot:
            # `cp -al`: a folder of hard links beside the original
            copy = env.tmp / "snapshot"
            copy.mkdir()
            os.link(env.store, copy / "results.sqlite")
            other = copy / "results.sqlite"
        else:
            other = env.tmp / "b.sqlite"
            os.link(env.store, other)
        args: list[object] = [command, cfg, "--store", other]
        if command == "run":
            args += ["--set", "backend.seconds=0.01"]
        if command == "export":
            args += ["--out", env.tmp / "out.csv"]
        return Prepared(args, store=env.store)

    return make


HARD_LINK = (
    r"results store \S+ has 2 hard links \(other names for the same file, made by `ln` or "
    r"`cp -al`\); SQLite keeps one journal per name, so using two names loses cells — give it a "
    r"name of its own: remove the other links, or copy it \(cp "
)
LOSS = [
    Case("hard-link-run-variant", _hard_linked("run"), 2, HARD_LINK),
    Case("hard-link-status", _hard_linked("status"), 2, HARD_LINK),
    Case("hard-link-snapshot-run", _hard_linked("run", snapshot=True), 2, HARD_LINK),
    Case("hard-link-snapshot-export", _hard_linked("export", snapshot=True), 2, HARD_LINK),
]


@pytest.mark.parametrize("case", LOSS, ids=lambda c: c.id)
def test_hard_linked_store_is_refused(env: Env, case: Case) -> None:
    check(case, env)


def test_hard_linked_store_keeps_every_cell(env: Env) -> None:
    cfg = env.stored()
    other = env.tmp / "b.sqlite"
    os.link(env.store, other)
    code, _, err = invoke("run", cfg, "--store", other, "--set", "backend.seconds=0.01")
    assert code == 2 and "hard links" in err
    other.unlink()
    code, out, _ = invoke("status", cfg)
    assert code == 0 and out.startswith("4 done, 0 failed, 0 pending"), out


# -- 2. ambiguous split files ---------------------------------------------------------------------


def _beside_the_split(*names: str, command: str = "run") -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        folder = env.data()
        train = pd.read_parquet(folder / "train.parquet")
        for name in names:
            if name.endswith(".parquet"):
                half = len(train) // 2
                part = train.iloc[:half] if "00000" in name else train.iloc[half:]
                (part if "-0" in name else train).to_parquet(folder / name)
            elif name.endswith(".csv"):
                train.to_csv(folder / name, index=False)
            else:
                train.to_json(folder / name, orient="records", lines=True)
        return Prepared([command, env.config(folder)], store=env.store)

    return make


SHARDS = ("train-00000-of-00002.parquet", "train-00001-of-00002.parquet")
AMBIGUOUS = [
    Case(
        "whole-file-beside-shards",
        _beside_the_split(*SHARDS),
        2,
        r"split 'train' is ambiguous in \S+data: train\.parquet, train-00000-of-00002\.parquet, "
        r"train-00001-of-00002\.parquet would each be read as the whole split; keep one file \(or "
        r"only the shards train-\*\.parquet\) and move the others out of the folder",
    ),
    Case(
        "whole-file-beside-shards-validate",
        _beside_the_split(*SHARDS, command="validate"),
        2,
        r"split 'train' is ambiguous in \S+: train\.parquet, train-00000",
    ),
    Case(
        "parquet-beside-csv",
        _beside_the_split("train.csv"),
        2,
        r"split 'train' is ambiguous in \S+: train\.parquet, train\.csv would each be read",
    ),
    Case(
        "parquet-beside-jsonl",
        _beside_the_split("train.jsonl"),
        2,
        r"split 'train' is ambiguous in \S+: train\.parquet, train\.jsonl would each be read",
    ),
]


@pytest.mark.parametrize("case", AMBIGUOUS, ids=lambda c: c.id)
def test_ambiguous_split_files_are_named(env: Env, case: Case) -> None:
    check(case, env)


def test_shards_alone_are_one_split(env: Env) -> None:
    folder = env.data()
    train = pd.read_parquet(folder / "train.parquet")
    (folder / "train.parquet").unlink()
    train.iloc[:60].to_parquet(folder / SHARDS[0])
    train.iloc[60:].to_parquet(folder / SHARDS[1])
    code, out, err = invoke("validate", env.config(folder))
    assert code == 0, out + err


# -- 3. a test sample too small to measure, 4. noise at the bound ---------------------------------


def _one_test_example_of_a_class(env: Env) -> Prepared:
    folder = env.data()
    test = pd.read_parquet(folder / "test.parquet")
    pd.concat([test[test["label"] == 0], test[test["label"] == 1].head(1)]).to_parquet(
        folder / "test.parquet"
    )
    cfg = env.write_config(folder, backend='name = "tfidf"\nmin_df = 1')
    text = cfg.read_text().replace("test_size = 20", "")
    cfg.write_text(text)
    return Prepared(["run", cfg], store=env.store)


def _grid(command: str = "run", n_train: int = 60, **kwargs: Any) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        folder = env.make_dataset(n_train=n_train, n_classes=kwargs.pop("n_classes", 2))
        return Prepared([command, env.config(folder, **kwargs)], store=env.store)

    return make


SILENT = [
    Case(
        "automatic-test-sample-of-two",
        _one_test_example_of_a_class,
        2,
        r"the test sample would hold only 2 rows: it is class-balanced and class '1' has 1 "
        r"example\(s\) in split 'test'; an accuracy on 2 rows moves in steps of 50 points and "
        r"cannot tell cells apart \(the minimum is 10 rows\) — add test rows of the small "
        r"classes \(at least 5 of each\)",
    ),
    Case(
        "test-size-set-to-four",
        _grid(test_size=4),
        2,
        r"eval\.test_size 4 is below the minimum of 10: an accuracy on 4 rows moves in steps of "
        r"25 points and cannot tell cells apart; set eval\.test_size to at least 10",
    ),
    Case(
        "noise-just-under-the-bound-flips-half",
        _grid(n_train=100, sizes="[200]", rates="[0.0, 0.499]"),
        2,
        r"noise rate 0\.499 flips 100 of the 200 labels at grid size 200 \(realised rate 0\.5, a "
        r"whole number of labels\): at 0\.5 = 1 - 1/K for 2 classes the labels carry no "
        r"information; keep rates below 0\.4975 at that size",
    ),
    Case(
        "noise-just-under-the-bound-three-classes",
        _grid("validate", n_classes=3, sizes="[30]", rates="[0.66]"),
        2,
        r"noise rate 0\.66 flips 20 of the 30 labels at grid size 30 \(realised rate 0\.6667, .*"
        r"at 0\.6667 = 1 - 1/K for 3 classes the labels carry no information; keep rates below "
        r"0\.65 at that size",
    ),
    Case(
        "noise-rounded-to-the-bound",
        _grid(rates="[0.0, 0.4999996]"),
        2,
        r"noise rate 0\.5 is out of range for 2 classes \(grid\.noise_rates are rounded to 6 "
        r"decimals, so a rate within 5e-07 of 0\.5 counts as 0\.5\): rates must be in \[0, 0\.5\)",
    ),
]


@pytest.mark.parametrize("case", SILENT, ids=lambda c: c.id)
def test_silent_wrong_result_is_refused(env: Env, case: Case) -> None:
    check(case, env)


# -- 8. caches: an unreadable entry is a miss, an unwritable cache a warning ---------------------

CACHE_WARNING = (
    r"cannot write the cache \S+ \(.*\); going on without caching there — make it writable or "
    r"set run\.cache_dir \(or \$NOISEGRID_CACHE\) to a writable folder"
)


def _with_cache(env: Env, cache: Path, **kwargs: Any) -> Path:
    return env.config(
        backend='name = "tfidf"\nmin_df = 1', extra=f'cache_dir = "{cache}"', **kwargs
    )


def test_damaged_data_identity_entries_are_misses(env: Env) -> None:
    cache = env.tmp / "cache"
    cfg = _with_cache(env, cache)
    code, out, err = invoke("run", cfg)
    assert code == 0, out + err
    entries = list((cache / "data-identity").iterdir())
    assert entries
    for entry in entries:
        entry.write_bytes(os.urandom(64) + b"\xff\xfe")
    code, out, err = invoke("status", cfg)
    assert code == 0, out + err
    assert out.startswith("4 done, 0 failed, 0 pending"), out
    # The damaged entries were replaced by good ones.
    assert all(e.read_text().startswith("sha256:") for e in entries)


@pytest.mark.parametrize("noise", ["uniform", "instance"])
def test_cache_dir_that_is_a_file_warns_once_and_runs(
    env: Env, noise: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = env.tmp / "cache-file"
    cache.write_text("not a folder")
    cfg = _with_cache(env, cache)
    code, out, err = invoke("run", cfg, "--set", f"grid.noise_model={noise}")
    assert code == 0, out + err
    assert "4 cells done, 0 failed" in out, out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and all(re.fullmatch(CACHE_WARNING, w) for w in warnings), warnings
    assert len(set(warnings)) == len(warnings)
    assert cache.read_text() == "not a folder"


def test_damaged_instance_cache_entries_are_misses(env: Env) -> None:
    cache = env.tmp / "cache"
    cfg = _with_cache(env, cache)
    code, out, err = invoke("run", cfg, "--set", "grid.noise_model=instance")
    assert code == 0, out + err
    entries = list((cache / "instance-reference").iterdir())
    assert entries and not [e for e in entries if e.name.endswith(".tmp")]
    for entry in entries:
        entry.write_bytes(os.urandom(200))
    env.store.unlink()
    code, out, err = invoke("run", cfg, "--set", "grid.noise_model=instance")
    assert code == 0, out + err
    assert "4 cells done, 0 failed" in out, out
