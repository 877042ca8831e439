"""The third fault campaign: hard links, ambiguous split files, noise at the bound, tiny test
samples, caches, and the messages that named the wrong cause.

Each case runs through the CLI in-process, like :mod:`test_failures` (whose helpers it reuses): a
case that must fail asserts one ``error:`` line naming the cause and the fix, no traceback, and
that a store which existed before is byte for byte unchanged.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
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


# -- 9. misleading messages, 7. status of a missing store, seeds=[true] ----------------------------


def _texts(n: int) -> list[str]:
    return [f"movie {i} was {'good fun' if i % 2 else 'dull stuff'}" for i in range(n)]


def _labels(train_labels: list[object], fmt: str = "parquet") -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        folder = env.tmp / "data"
        folder.mkdir()
        n = len(train_labels)
        for split, texts in (("train", _texts(n)), ("test", [t + " again" for t in _texts(n)])):
            frame = pd.DataFrame({"text": texts, "label": train_labels})
            if fmt == "csv":
                frame.to_csv(folder / f"{split}.csv", index=False)
            else:
                frame.to_parquet(folder / f"{split}.parquet")
        return Prepared(["validate", env.config(folder)], store=env.store)

    return make


def _csv_with(text: str, label: str) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        folder = env.tmp / "data"
        folder.mkdir()
        rows = [(t, "pos" if i % 2 else label) for i, t in enumerate(_texts(40))]
        rows[0] = (text, label)
        for split in ("train", "test"):
            suffix = "" if split == "train" else " again"
            pd.DataFrame(
                {"text": [t + suffix for t, _ in rows], "label": [lab for _, lab in rows]}
            ).to_csv(folder / f"{split}.csv", index=False)
        return Prepared(["run", env.config(folder)], store=env.store)

    return make


def _jsonl(lines: list[str], command: str = "run") -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        folder = env.data(fmt="jsonl")
        (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return Prepared([command, env.config(folder)], store=env.store)

    return make


def _good_jsonl(n: int) -> list[str]:
    return [f'{{"text": "{t}", "label": {i % 2}}}' for i, t in enumerate(_texts(n))]


def _damaged_store(env: Env) -> Prepared:
    cfg = env.stored()
    conn = sqlite3.connect(env.store)
    conn.execute("DROP TABLE meta")
    conn.commit()
    conn.close()
    return Prepared(["run", cfg], store=env.store)


def _store_is(path: str, command: str) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        args: list[object] = [command, env.config(), "--store", path]
        if command == "export":
            args += ["--out", env.tmp / "out.csv"]
        side = [Path(path + "-journal"), Path(path + ".lock")]
        there = [p.exists() for p in side]
        return Prepared(args, after=lambda: _nothing_new(side, there))

    return make


def _nothing_new(paths: list[Path], there: list[bool]) -> None:
    assert [p.exists() for p in paths] == there, "a file was created beside the store path"


def _status_of_missing_store(env: Env) -> Prepared:
    return Prepared(
        ["status", env.config(), "--store", env.tmp / "a" / "missing" / "path.sqlite"],
        after=lambda: _absent(env.tmp / "a"),
    )


def _absent(path: Path) -> None:
    assert not path.exists()


def _seeds_true(env: Env) -> Prepared:
    return Prepared(["run", env.config(), "--set", "grid.seeds=[true]"], store=env.store)


MISLEADING = [
    Case(
        "label-with-a-trailing-space",
        _labels(["pos", "neg", "pos ", "neg"] * 10),
        2,
        r"column 'label' spells one class in several ways \('pos' and 'pos '\): they differ only "
        r"in spaces, case or number format, and would count as different classes; write each "
        r"class one way",
    ),
    Case(
        "string-labels-one-and-one-point-zero",
        _labels(["1", "0", "1.0", "0"] * 10),
        2,
        r"spells one class in several ways \('1' and '1\.0'\)",
    ),
    Case(
        "class-named-NA-in-csv",
        _labels(["NA", "pos"] * 20, fmt="csv"),
        0,
        r"NA=20, pos=20",
    ),
    Case("texts-None-and-nan-in-csv", _csv_with("None", "nan"), 0, r"4 cells done, 0 failed"),
    Case(
        "jsonl-text-that-is-a-number",
        _jsonl([*_good_jsonl(40), '{"text": 12345, "label": 1}']),
        0,
        r"4 cells done, 0 failed",
    ),
    Case(
        "jsonl-line-without-a-label",
        _jsonl([*_good_jsonl(30), "", '{"text": "no label here"}', *_good_jsonl(4)]),
        2,
        r"split 'train' has 1 missing labels in column 'label' \(train\.jsonl lines 32\); drop or "
        "fill those rows",
    ),
    Case(
        "damaged-noisegrid-store",
        _damaged_store,
        2,
        r"\S+results\.sqlite is a damaged noisegrid results store: it lacks table meta; noisegrid "
        r"leaves it unchanged — recover what SQLite can read",
    ),
    Case(
        "dev-null-as-store-run",
        _store_is("/dev/null", "run"),
        2,
        r"results store '/dev/null' is a device, not a file a store can live in; give a file path",
    ),
    Case(
        "dev-null-as-store-export",
        _store_is("/dev/null", "export"),
        2,
        r"results store '/dev/null' is a device, not a file a store can live in",
    ),
    Case(
        "status-of-a-missing-store",
        _status_of_missing_store,
        0,
        r"0 done, 0 failed, 4 pending of 4 cells \(store: \S+path\.sqlite, which does not exist "
        r"yet: a run creates it\)",
    ),
    Case(
        "seeds-true",
        _seeds_true,
        2,
        r"'seeds' in \[grid\]: seeds must hold numbers, not true/false \(got \[True\]\)",
    ),
]


@pytest.mark.parametrize("case", MISLEADING, ids=lambda c: c.id)
def test_message_names_the_real_cause(env: Env, case: Case) -> None:
    check(case, env)


# -- 6. a report stopped half-way, and a report into a folder that refuses writes ----------------


def test_report_stopped_half_way_leaves_the_old_report_whole(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = env.stored(backend='name = "tfidf"\nmin_df = 1')
    out = env.tmp / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = invoke("report", cfg, "--out", out)
    assert code == 0, err
    for path in out.rglob("*"):
        if path.is_file() and path.name != "notes.txt":
            path.write_bytes(b"the previous report's " + path.name.encode())
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert (out / "figures") in out.rglob("*")

    def stopped(*args: object, **kwargs: object) -> str:
        raise KeyboardInterrupt  # as SIGTERM or Ctrl-C would, after the figures were written

    import noisegrid.report._markdown

    monkeypatch.setattr(noisegrid.report._markdown, "render_markdown", stopped)
    code, _, err = invoke("report", cfg, "--out", out)
    assert code != 0 and "holds no cells" not in err
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in env.tmp.iterdir() if p.name.startswith(".report")) == []


def test_report_replaces_its_files_and_keeps_others(env: Env) -> None:
    cfg = env.stored(backend='name = "tfidf"\nmin_df = 1')
    out = env.tmp / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "report.html").write_text("old")
    code, _, err = invoke("report", cfg, "--out", out)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "report.html").read_text() != "old"
    assert [p.name for p in env.tmp.iterdir() if p.name.startswith(".report")] == []


def test_report_into_an_immutable_folder_names_the_folder(env: Env) -> None:
    cfg = env.stored(backend='name = "tfidf"\nmin_df = 1')
    out = env.tmp / "report"
    out.mkdir()
    proc = subprocess.run(["chattr", "+i", str(out)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here: {proc.stderr.strip()}")
    try:
        code, _, err = invoke("report", cfg, "--out", out)
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=False)
    assert code == 2, err
    assert re.fullmatch(
        rf"error: cannot write {re.escape(str(out))}: Operation not permitted; you may not write "
        r"there; fix the permissions or choose another --out\n",
        err,
    ), err


# -- 5. data changed in place, its size and modification time restored -----------------------------


def test_data_edited_in_place_with_its_mtime_restored_is_new_data(env: Env) -> None:
    folder = env.data(fmt="csv")
    cache = env.tmp / "cache"
    cfg = env.write_config(
        folder, backend='name = "tfidf"\nmin_df = 1', extra=f'cache_dir = "{cache}"'
    )
    code, out, err = invoke("run", cfg)
    assert code == 0, out + err
    train = folder / "train.csv"
    st = train.stat()
    text = train.read_text()
    train.write_text(text.replace("great", "grate", 1))  # same size, other content
    os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert train.stat().st_size == st.st_size and train.stat().st_mtime_ns == st.st_mtime_ns
    code, out, err = invoke("status", cfg)
    assert code == 0, out + err
    assert out.startswith("0 done, 0 failed, 4 pending"), out
    assert "the data files changed since those cells ran" in out, out


def test_immutable_cache_folder_warns_and_runs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    cache = env.tmp / "cache"
    cache.mkdir()
    proc = subprocess.run(["chattr", "+i", str(cache)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here: {proc.stderr.strip()}")
    try:
        cfg = _with_cache(env, cache)
        code, out, err = invoke("run", cfg, "--set", "grid.noise_model=instance")
    finally:
        subprocess.run(["chattr", "-i", str(cache)], check=False)
    assert code == 0, out + err
    assert "4 cells done, 0 failed" in out, out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and all(re.fullmatch(CACHE_WARNING, w) for w in warnings), warnings
    assert list(cache.iterdir()) == []
