"""The experiment spec: loading, validation errors, overrides, fingerprint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from noisegrid import ConfigError, ExperimentSpec, load_spec
from noisegrid._registry import Registry
from noisegrid.config import apply_overrides, parse_override, resolve_paths

REPO = Path(__file__).resolve().parents[1]
BASE = {"grid": {"sizes": [100, 200], "noise_rates": [0.0, 0.1]}, "backend": {"name": "tfidf"}}


def spec_with(**sections: dict) -> ExperimentSpec:
    data = {k: dict(v) for k, v in BASE.items()}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return ExperimentSpec.from_dict(data)


def test_defaults_are_the_reference_hyperparameters() -> None:
    spec = spec_with()
    assert spec.train.learning_rate == 2e-5
    assert spec.train.batch_size == 16
    assert spec.train.epochs == 2
    assert spec.train.weight_decay == 0.01
    assert spec.train.budget == "epochs"
    assert spec.grid.seeds == (0,)
    assert spec.grid.noise_model == "uniform"
    assert spec.run.executor == "local"


def test_grid_values_are_normalised() -> None:
    spec = spec_with(grid={"sizes": [200, 100, 200], "noise_rates": [0.1, 0.025 * 3, 0.075]})
    assert spec.grid.sizes == (100, 200)
    assert spec.grid.noise_rates == (0.075, 0.1)


def test_spec_is_frozen() -> None:
    spec = spec_with()
    with pytest.raises(Exception, match="frozen"):
        spec.grid = spec.grid  # type: ignore[misc]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"grid": {"sise": [1]}}, r"unknown key 'sise' in \[grid\]; valid keys here: sizes"),
        ({"datset": {"source": "x"}}, r"unknown key 'datset'.*valid keys here: name"),
        ({"backend": {"C_": 1.0}}, r"unknown key 'C_' in \[backend\] of backend 'tfidf'"),
        ({"noise": {"matrix": [[1]]}}, r"unknown key 'matrix' in \[noise\]"),
        ({"backend": {"C": -1}}, r"'C' in \[backend\] of backend 'tfidf': .*greater than 0"),
        (
            {"backend": {"name": "nope"}},
            r"unknown backend 'nope' in backend.name; available: .*tfidf",
        ),
        ({"grid": {"noise_model": "nope"}}, r"unknown noise model 'nope'.*available: .*uniform"),
        (
            {"run": {"executor": "nope"}},
            r"unknown executor 'nope' in run.executor; available: .*local",
        ),
        (
            {"grid": {"noise_rates": [1.5]}},
            r"noise rate must be a fraction in \[0, 1\); got \[1.5\]",
        ),
        ({"grid": {"sizes": [0, 10]}}, r"every size must be an integer >= 2; got \[0\]"),
        ({"grid": {"sizes": "many"}}, r"'sizes' in \[grid\]: .*valid tuple"),
        ({"grid": {"seeds": [0], "repeats": 3}}, r"either seeds or repeats"),
        ({"train": {"epochs": 1, "steps": 10}}, r"either epochs or steps"),
        ({"train": {"precision": "fp8"}}, r"'precision' in \[train\]"),
        ({"dataset": {"test_split": "train"}}, r"must come from a different split"),
        ({"eval": {"test_size": 0}}, r"'test_size' in \[eval\]"),
    ],
)
def test_invalid_values_are_refused_with_one_line(sections: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        spec_with(**sections)
    assert "\n" not in str(info.value)


def test_missing_grid_is_named() -> None:
    with pytest.raises(ConfigError, match=r"missing required key \[grid\]"):
        ExperimentSpec.from_dict({"backend": {"name": "tfidf"}})


def test_repeats_expand_to_seeds() -> None:
    spec = spec_with(grid={"repeats": 3})
    assert spec.grid.seeds == (0, 1, 2)
    assert spec.grid.n_cells == 12


def test_steps_budget() -> None:
    spec = spec_with(train={"steps": 500})
    assert spec.train.budget == "steps"


def test_parse_override_reads_toml_literals_and_bare_strings() -> None:
    assert parse_override("grid.sizes=[1, 2]") == (["grid", "sizes"], [1, 2])
    assert parse_override("train.learning_rate=3e-5") == (["train", "learning_rate"], 3e-5)
    assert parse_override('dataset.source="imdb"') == (["dataset", "source"], "imdb")
    assert parse_override("dataset.source=../data") == (["dataset", "source"], "../data")
    assert parse_override("run.resources={cpu=1, gpu=0.5}") == (
        ["run", "resources"],
        {"cpu": 1, "gpu": 0.5},
    )


@pytest.mark.parametrize("item", ["grid.sizes", "=3", "grid..sizes=3"])
def test_bad_override_is_refused(item: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        parse_override(item)


@pytest.mark.parametrize("item", ["grid.sizes=[200,", "run.resources={cpu=1", 'dataset.source="x'])
def test_malformed_override_literal_is_refused_not_taken_as_a_string(item: str) -> None:
    key = item.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"--set {key}: .* is not a valid TOML value"):
        parse_override(item)


def test_override_into_a_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="'source' is a value, not a section"):
        apply_overrides({"dataset": {"source": "x"}}, ["dataset.source.x=1"])


def test_load_spec_with_overrides_and_store(tmp_path: Path) -> None:
    spec = load_spec(
        REPO / "examples" / "laptop-tfidf.toml",
        overrides=["grid.seeds=[0, 1]", "dataset.source=../shared/data/imdb"],
        store=tmp_path / "x.sqlite",
    )
    assert spec.grid.seeds == (0, 1)
    # A path typed on the command line is relative to where it was typed, and made absolute.
    assert spec.dataset.source == os.path.normpath(Path.cwd() / "../shared/data/imdb")
    assert spec.run.store == str(tmp_path / "x.sqlite")
    assert spec.grid.n_cells == 100


def test_load_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\nsizes = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_spec(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text(
        '[grid]\nsizes=[10]\nnoise_rates=[0.0]\nnoise_rate=[0.1]\n[backend]\nname="tfidf"\n'
    )
    with pytest.raises(ConfigError, match=rf"invalid config {typo}: unknown key 'noise_rate'"):
        load_spec(typo)
    with pytest.raises(ConfigError, match=r"is a folder, not a file; .*\(the folder has: bad"):
        load_spec(tmp_path)
    latin = tmp_path / "latin.toml"
    latin.write_bytes("# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.toml is not UTF-8 text \(byte 0xe9 at offset 5"):
        load_spec(latin)


def test_example_configs_match_their_documentation() -> None:
    laptop = load_spec(REPO / "examples" / "laptop-tfidf.toml")
    assert laptop.grid.sizes == (1000, 2000, 3000, 4000, 5000)
    assert laptop.grid.noise_rates == tuple(round(0.025 * i, 6) for i in range(10))
    assert laptop.grid.seeds == (0, 1, 2)  # three seeds, so the intervals cover replication
    assert laptop.grid.n_cells == 150
    assert laptop.backend.name == "tfidf"
    assert laptop.eval.test_size == 2000

    text = (REPO / "examples" / "reference.toml").read_text()
    assert 'model = "distilbert-base-uncased"' in text
    try:
        ref = load_spec(REPO / "examples" / "reference.toml")
    except ConfigError as exc:  # the finetune backend is not installed in this build
        assert "backend 'finetune' is not available yet" in str(exc)
        return
    assert ref.grid.sizes == tuple(range(1000, 15001, 1000))
    assert ref.grid.noise_rates == tuple(round(0.025 * i, 6) for i in range(11))
    assert ref.grid.n_cells == 165
    assert ref.dataset.source == "imdb"
    assert ref.eval.test_size == 10000
    t = ref.train
    assert (t.learning_rate, t.batch_size, t.epochs, t.weight_decay) == (2e-5, 16, 2, 0.01)
    # The exact recipe; the fast one differs only in precision and batching, on the same grid.
    assert t.precision == "fp32" and ref.backend_options()["group_by_length"] is False
    fast = load_spec(REPO / "examples" / "reference-fast.toml")
    assert fast.train.precision == "bf16" and fast.backend_options()["group_by_length"] is True
    assert (fast.grid, fast.eval) == (ref.grid, ref.eval)
    assert fast.train.model_copy(update={"precision": "fp32"}) == t
    assert fast.fingerprint() != ref.fingerprint()


def test_planned_plugin_says_not_available_yet() -> None:
    reg: Registry[object] = Registry("backend", key="backend.name")
    reg.register("tfidf")(type("T", (), {}))
    reg.plan("finetune")
    with pytest.raises(
        ConfigError, match=r"backend 'finetune' is not available yet.*one of: tfidf"
    ):
        reg.get("finetune")


def test_fingerprint_covers_results_not_bookkeeping() -> None:
    base = spec_with()
    assert base.fingerprint() == spec_with().fingerprint()
    # Store, executor, workers and the grid's lists do not change a cell's result.
    assert (
        spec_with(run={"store": "elsewhere.sqlite", "workers": 2}).fingerprint()
        == base.fingerprint()
    )
    assert spec_with(grid={"sizes": [100, 200, 300]}).fingerprint() == base.fingerprint()
    # Everything that changes results does.
    for sections in (
        {"backend": {"C": 2.0}},
        {"eval": {"test_size": 500}},
        {"dataset": {"source": "other"}},
    ):
        assert spec_with(**sections).fingerprint() != base.fingerprint(), sections


def test_fingerprint_holds_only_the_train_settings_the_backend_reads() -> None:
    # tfidf reads no [train] setting: changing one reuses every stored cell.
    tfidf = spec_with()
    assert spec_with(train={"epochs": 3}).fingerprint() == tfidf.fingerprint()
    assert tfidf.used_train() == {}
    assert "train" not in tfidf.effective_dict()
    # Fine-tuning reads them all.
    finetune = spec_with(backend={"name": "finetune"})
    changed = spec_with(backend={"name": "finetune"}, train={"learning_rate": 1e-4})
    assert changed.fingerprint() != finetune.fingerprint()
    assert changed.effective_dict()["train"]["learning_rate"] == 1e-4
    # embed reads only the encoder's settings.
    embed = spec_with(backend={"name": "embed"})
    assert spec_with(backend={"name": "embed"}, train={"epochs": 5}).fingerprint() == (
        embed.fingerprint()
    )
    assert set(embed.used_train()) == {"max_length", "precision", "eval_batch_size"}


def test_round_trip_through_dict() -> None:
    spec = spec_with(grid={"repeats": 2})
    again = ExperimentSpec.from_dict(spec.to_dict())
    assert again.to_dict() == spec.to_dict()
    assert again.grid.seeds == (0, 1)
    assert again.fingerprint() == spec.fingerprint()


# --- paths relative to the config file --------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "project" / "data").mkdir(parents=True)
    cfg = _write(
        tmp_path / "project" / "exp.toml",
        '[dataset]\nsource = "data"\n[grid]\nsizes = [10]\nnoise_rates = [0.0]\n'
        '[backend]\nname = "tfidf"\n[run]\nstore = "runs/r.sqlite"\ncache_dir = "../cache"\n',
    )
    monkeypatch.chdir(tmp_path)  # somewhere else than the config's folder
    spec = load_spec("project/exp.toml")
    assert spec.dataset.source == str(tmp_path / "project" / "data")
    assert spec.run.store == str(tmp_path / "project" / "runs" / "r.sqlite")
    assert spec.run.cache_dir == str(tmp_path / "cache")
    # Values typed on the command line are relative to the current directory, made absolute.
    typed = load_spec(
        cfg, overrides=["dataset.source=mine/a/b", "run.store=here.sqlite", "backend.C=2"]
    )
    assert typed.dataset.source == str(tmp_path / "mine" / "a" / "b")
    assert typed.run.store == str(tmp_path / "here.sqlite")
    assert typed.run.cache_dir == str(tmp_path / "cache")  # from the file, untouched
    assert load_spec(cfg, store="x.sqlite").run.store == str(tmp_path / "x.sqlite")
    # A hub name given on the command line stays a hub name.
    assert load_spec(cfg, overrides=["dataset.source=imdb"]).dataset.source == "imdb"


@pytest.mark.parametrize(
    ("source", "is_path"),
    [
        ("imdb", False),  # a hub name stays a hub name
        ("stanfordnlp/imdb", False),  # and so does owner/name
        ("./data", True),
        ("../shared/data/imdb", True),
        ("data/imdb/v2", True),
        ("reviews.csv", True),
        ("existing", True),  # a folder next to the config file
    ],
)
def test_dataset_source_is_a_path_only_when_it_looks_like_one(
    tmp_path: Path, source: str, is_path: bool
) -> None:
    (tmp_path / "existing").mkdir()
    data = resolve_paths({"dataset": {"source": source}}, base=tmp_path)
    resolved = data["dataset"]["source"]
    if is_path:
        assert Path(resolved).is_absolute() and resolved.startswith(str(tmp_path.parent))
    else:
        assert resolved == source


def test_home_folder_expands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    data = resolve_paths({"run": {"store": "~/r.sqlite"}}, base=Path("/elsewhere"))
    assert data["run"]["store"] == str(tmp_path / "r.sqlite")


# --- defaults -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["seeds", "sizes", "noise_rates"])
def test_a_number_where_a_list_belongs_says_use_a_list(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{key}' in \[grid\]: {key} must be a list; use a "):
        spec_with(grid={key: 0})
    with pytest.raises(ConfigError, match=r"use a list such as \[0\]"):
        spec_with(grid={"seeds": 0})


@pytest.mark.parametrize(
    ("n_classes", "max_test", "expected"),
    [(2, 25_000, 2000), (3, 12_000, 1998), (5, 60, 60), (3, 9, 9), (7, 2100, 1995)],
)
def test_default_test_size_is_the_largest_balanced_sample_up_to_the_cap(
    n_classes: int, max_test: int, expected: int
) -> None:
    assert spec_with().eval.test_size is None
    assert spec_with().eval.resolve_test_size(n_classes, max_test) == expected
    assert spec_with(eval={"test_size": 10}).eval.resolve_test_size(n_classes, max_test) == 10


def test_unset_test_size_keeps_the_fingerprint_of_the_old_default() -> None:
    # Grids stored when the default was a fixed 2000 keep their cells.
    assert spec_with().fingerprint() == spec_with(eval={"test_size": 2000}).fingerprint()
    assert spec_with().fingerprint() != spec_with(eval={"test_size": 1998}).fingerprint()


def test_data_identity_stands_for_the_source_in_the_fingerprint() -> None:
    here = spec_with(dataset={"source": "data"})
    there = spec_with(dataset={"source": "./data/"})
    assert here.data_identity is None
    assert here.fingerprint() != there.fingerprint()  # unresolved: the path as written
    same = "sha256:0123456789abcdef"
    assert (
        here.with_data_identity(same).fingerprint() == there.with_data_identity(same).fingerprint()
    )
    assert (
        here.with_data_identity(same).fingerprint()
        != here.with_data_identity("sha256:fedcba9876543210").fingerprint()
    )
    # Variants (one per noise model) keep the identity; the spec itself is unchanged.
    multi = spec_with(grid={"noise_model": ["uniform", "instance"]}).with_data_identity(same)
    assert {v.data_identity for v in multi.variants()} == {same}
    assert here.data_identity is None
    assert multi.to_dict() == spec_with(grid={"noise_model": ["uniform", "instance"]}).to_dict()


def test_an_empty_path_is_left_for_validation_to_refuse() -> None:
    data = resolve_paths({"run": {"store": ""}, "dataset": {"source": " "}}, base=Path("/x"))
    assert data == {"run": {"store": ""}, "dataset": {"source": " "}}
