"""The CLI: thin commands, one-line errors, exit codes, the shared CONFIG/--set/--store options."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from noisegrid import load_results
from noisegrid.cli import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_run_status_export(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(make_dataset())
    code, out, _ = invoke("run", cfg, "--quiet")
    assert code == 0, out
    assert "4 cells done, 0 failed, 0 already stored" in out

    code, out, _ = invoke("status", cfg)
    assert code == 0 and "4 done, 0 failed, 0 pending of 4 cells" in out

    code, out, _ = invoke("status", cfg, "--set", "grid.sizes=[20, 40, 60]")
    assert "4 done, 0 failed, 2 pending of 6 cells" in out

    csv = tmp_path / "out" / "r.csv"
    code, out, _ = invoke("export", cfg, "--format", "csv", "--out", csv)
    assert code == 0 and csv.is_file()
    table = pd.read_csv(csv)
    for column in (
        "train_size",
        "noise_level",
        "eval_accuracy",
        "seed",
        "noise_model",
        "realized_noise",
        "eval_macro_f1",
        "eval_log_loss",
        "fit_seconds",
    ):
        assert column in table.columns
    assert len(table) == 4

    pq = tmp_path / "r.parquet"
    code, _, _ = invoke("export", cfg, "--format", "parquet", "--out", pq)
    assert code == 0 and len(pd.read_parquet(pq)) == 4

    code, out, _ = invoke("run", cfg, "--quiet")
    assert code == 0 and "0 cells done, 0 failed, 4 already stored" in out


def test_store_option_moves_the_results(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(make_dataset())
    other = tmp_path / "elsewhere" / "x.sqlite"
    assert invoke("run", cfg, "-q", "--store", other)[0] == 0
    assert other.is_file()
    assert "4 done" in invoke("status", cfg, "--store", other)[1]
    assert "0 done, 0 failed, 4 pending" in invoke("status", cfg)[1]


def test_failed_cells_exit_non_zero(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    import test_runner  # noqa: F401 - registers the majority_test backend

    cfg = write_config(make_dataset(), backend='name = "majority_test"\nfail_size = 40')
    code, out, err = invoke("run", cfg, "-q")
    assert code == 1
    assert "2 cells done, 2 failed" in out
    assert "2 cell(s) failed; fix the cause and use --retry-failed" in err
    code, out, _ = invoke("status", cfg)
    assert "2 done, 2 failed, 0 pending" in out


def test_export_bad_format(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(make_dataset())
    code, _, err = invoke("export", cfg, "--format", "xlsx", "--out", "x.xlsx")
    assert code == 2 and "export format must be 'csv' or 'parquet'; got 'xlsx'" in err


@pytest.mark.parametrize(
    ("kwargs", "overrides", "message"),
    [
        ({"sizes": "[21]"}, [], "cannot be split evenly over 2 classes"),
        ({"sizes": "[2000]"}, [], "the maximum is 120"),
        ({"rates": "[0.6]"}, [], "noise rate 0.6 is out of range for 2 classes"),
        ({"test_size": 500}, [], "eval.test_size 500 is larger"),
        ({}, ["grid.sise=[1]"], "unknown key 'sise' in [grid]"),
        ({}, ["dataset.text_column=review"], "has no column 'review'; its columns are: text"),
        ({}, ["backend.name=bert"], "unknown backend 'bert'"),
        ({}, ["oops"], "--set expects section.key=value"),
    ],
)
def test_bad_config_one_line_error_and_no_store(
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    tmp_path: Path,
    kwargs: dict,
    overrides: list[str],
    message: str,
) -> None:
    cfg = write_config(make_dataset(), **kwargs)
    args = ["run", cfg]
    for item in overrides:
        args += ["--set", item]
    code, out, err = invoke(*args)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "Traceback" not in err + out
    assert not (tmp_path / "results.sqlite").exists()


def test_console_script_prints_one_line_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "noisegrid.cli", "run", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: config file '{tmp_path / 'missing.toml'}' does not exist; pass the path of an "
        "experiment TOML"
    ]


def test_validate(make_dataset: Callable[..., Path], write_config: Callable[..., Path]) -> None:
    cfg = write_config(make_dataset())
    code, out, _ = invoke("validate", cfg)
    assert code == 0 and out.startswith("ok: 4 cells, fingerprint")


def test_export_of_a_fingerprint_not_in_the_store_is_an_error(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(make_dataset())
    invoke("run", cfg, "-q")
    other = cfg.with_name("other.toml")
    other.write_text(cfg.read_text().replace("test_size = 20", "test_size = 10"))
    out = tmp_path / "empty.csv"
    code, _, err = invoke("export", other, "--out", out)
    assert code == 2
    assert "holds no cells of this experiment's grid" in err
    assert "differs in: eval.test_size (stored 20, now 10)" in err
    assert not out.exists()
    # The library's table of an experiment with nothing stored is empty, with the columns.
    table = load_results(other)
    assert table.empty and "eval_accuracy" in table.columns


# --- what a new user meets: paths, defaults, help, log lines ---------------------------------


def _project(tmp_path: Path, make_dataset: Callable[..., Path], **kwargs: object) -> Path:
    """A config in its own folder that names its data and store relative to that folder."""
    from conftest import config_text

    project = tmp_path / "project"
    project.mkdir()
    make_dataset(name="project/data", **kwargs)
    cfg = project / "exp.toml"
    cfg.write_text(config_text("data", store="runs/results.sqlite"))
    return cfg


def test_relative_paths_in_a_config_resolve_against_its_folder(
    make_dataset: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _project(tmp_path, make_dataset)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = invoke("run", "../project/exp.toml", "-q")
    assert code == 0, err
    store = cfg.parent / "runs" / "results.sqlite"
    assert f"results in {store}" in out and store.is_file()
    assert not (elsewhere / "runs").exists()
    code, out, _ = invoke("status", "../project/exp.toml")
    assert out.startswith(f"4 done, 0 failed, 0 pending of 4 cells (store: {store})")
    # --store is typed here, so it is relative to here.
    assert invoke("run", cfg, "-q", "--store", "mine.sqlite")[0] == 0
    assert (elsewhere / "mine.sqlite").is_file()


def test_a_missing_dataset_folder_error_says_where_it_looked(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config("./missing-data")
    code, _, err = invoke("validate", cfg)
    assert code == 2
    assert f"(looked in {tmp_path / 'missing-data'}; a relative path in a config file" in err
    assert err.count("\n") == 1


def test_validate_explain_prints_every_default(
    make_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    import tomllib

    folder = make_dataset(n_train=30, n_test=20, n_classes=3)
    cfg = tmp_path / "three.toml"
    # No [eval]: the old fixed test_size (2000) failed here; the default now fits the data.
    cfg.write_text(
        f'[dataset]\nsource = "{folder}"\n[grid]\nsizes = [30]\nnoise_rates = [0.0]\n'
        '[backend]\nname = "tfidf"\n'
    )
    code, out, err = invoke("validate", cfg, "--explain")
    assert code == 0, err
    # stdout is the config alone (`> resolved.toml` gives a valid file); the status goes to stderr.
    toml_text = out
    first = err.strip()
    assert first.startswith("ok: 1 cells")
    assert (
        "# test_size: not set, so 60 = the largest class-balanced sample up to 2,000 "
        "(min(2,000, 3 classes × 20 in the smallest class of the test split), rounded down to a "
        "multiple of 3)"
    ) in out
    for line in (
        f'source = "{folder}"',
        '# label_column = "label"  # default',
        "# seeds = [0]  # default",
        "# min_df = 2  # default",
        "# C = 4.0  # default",
        "# backend 'tfidf' does not read: epochs, steps, learning_rate, batch_size, "
        "weight_decay, warmup_ratio, max_length, precision, eval_batch_size",
        '# executor = "local"  # default',
    ):
        assert line in out.splitlines(), line
    resolved = tomllib.loads(toml_text)
    assert resolved["run"]["store"] == str(tmp_path / "runs" / "noisegrid.sqlite")
    # The explanation is itself the same experiment.
    again = tmp_path / "resolved.toml"
    again.write_text(toml_text)
    code, out_again, _ = invoke("validate", again)
    assert code == 0 and out_again.splitlines()[0] == first


def test_validate_explain_writes_paths_given_on_the_command_line_absolute(
    make_dataset: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    cfg = _project(tmp_path, make_dataset)
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(
        "validate", cfg, "--explain", "--set", "dataset.source=project/data",
        "--set", "run.cache_dir=cache", "--store", "elsewhere/r.sqlite",
    )  # fmt: skip
    assert code == 0, err
    resolved = tomllib.loads(out)
    assert resolved["dataset"]["source"] == str(tmp_path / "project" / "data")
    assert resolved["run"]["store"] == str(tmp_path / "elsewhere" / "r.sqlite")
    assert resolved["run"]["cache_dir"] == str(tmp_path / "cache")
    # Written to a file in another folder, it is still the same experiment.
    moved = tmp_path / "project" / "deeper" / "resolved.toml"
    moved.parent.mkdir()
    moved.write_text(out)
    monkeypatch.chdir(moved.parent)
    code, _, err_again = invoke("validate", moved, "--explain")
    assert code == 0 and err_again == err


def test_store_help_names_the_run_section() -> None:
    code, out, _ = invoke("status", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "overrides the store key of the config's [run] section" in flat
    assert "A relative path resolves against the current directory" in flat


def test_quiet_lines_name_the_noise_model_when_there_are_several(
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = write_config(make_dataset(), extra="", sizes="[20]")
    with caplog.at_level(logging.INFO, logger="noisegrid"):
        code, _, err = invoke(
            "run",
            cfg,
            "-q",
            "--set",
            'grid.noise_model=["uniform", "class_conditional"]',
            "--set",
            "noise.pair_flip=true",
        )
    assert code == 0, err
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done ")]
    assert len(lines) == 4
    assert sum(line.startswith("done class_conditional: n=20 noise=0.1 seed=0") for line in lines)
    assert sum(line.startswith("done uniform: n=20 noise=0.1 seed=0") for line in lines)


def test_test_only_backends_are_not_offered(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(make_dataset())
    code, _, err = invoke("validate", cfg, "--set", "backend.name=bert")
    assert code == 2 and "unknown backend 'bert' in backend.name; available: " in err
    assert "sleep" not in err and "tfidf" in err
    # Still there for whoever names it (benchmarks, fault tests).
    assert invoke("validate", cfg, "--set", 'backend={name="sleep"}')[0] == 0


def test_help_starts_without_the_numeric_stack() -> None:
    # What `noisegrid status --help` imports decides how long it takes to start.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "noisegrid", "status", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "--store" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    heavy = {"numpy", "pandas", "sklearn", "scipy", "noisegrid.config", "rich.markdown"}
    assert imported & heavy == set()


def test_status_loads_no_model_library(write_config: Callable[..., Path], tmp_path: Path) -> None:
    # Listing the backends for the fingerprint registers them without building a model:
    # scikit-learn (and torch) load only when a cell runs.
    cfg = write_config(tmp_path / "data")
    code = (
        "import sys\n"
        "from noisegrid.cli import app\n"
        f"try:\n    app(['status', {str(cfg)!r}])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('sklearn', 'torch') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


# --- one experiment, one fingerprint; what else the store holds --------------------------------


def test_every_command_prints_the_same_fingerprint_however_the_data_path_is_spelled(
    make_dataset: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    cfg = _project(tmp_path, make_dataset)  # names its data "data", relative to its folder
    monkeypatch.chdir(tmp_path)
    assert invoke("run", cfg, "-q")[0] == 0
    spellings = {
        "as in the config": [],
        "relative, typed here": ["--set", "dataset.source=project/data"],
        "absolute": ["--set", f"dataset.source={tmp_path / 'project' / 'data'}"],
        "with a detour": ["--set", "dataset.source=./project/../project/data/"],
    }
    pattern = re.compile(r"fingerprint:? ([0-9a-f]{16})")
    seen: dict[tuple[str, str], set[str]] = {}
    for spelling, args in spellings.items():
        outputs = {
            "validate": invoke("validate", cfg, *args)[1],
            "status": invoke("status", cfg, *args)[1],
            "plan": invoke("plan", cfg, *args)[1],
        }
        out = tmp_path / "out" / spelling.replace(" ", "-")
        assert invoke("export", cfg, *args, "--out", out / "r.csv")[0] == 0
        outputs["export"] = " ".join(
            f"fingerprint {f}" for f in pd.read_csv(out / "r.csv")["fingerprint"]
        )
        assert invoke("report", cfg, *args, "--out", out / "report")[0] == 0
        outputs["report"] = (out / "report" / "summary.md").read_text(encoding="utf-8")
        for command, text in outputs.items():
            seen[(spelling, command)] = set(pattern.findall(text))
    for (spelling, command), found in seen.items():
        print(f"{command:>8} | {spelling:<22} | {', '.join(sorted(found))}")
    assert all(len(found) == 1 for found in seen.values()), seen
    assert len(set.union(*seen.values())) == 1, seen


def test_status_export_and_report_say_what_the_store_holds_outside_the_grid(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(make_dataset(), sizes="[20, 40, 60]", rates="[0.0, 0.1, 0.2]")
    assert invoke("run", cfg, "-q", "--set", "grid.seeds=[0, 1, 2, 3]")[0] == 0
    note = (
        "note: the store also holds 27 cells of this experiment outside the grid (seeds 1–3); "
        "--all to include them"
    )
    code, out, _ = invoke("status", cfg)
    assert code == 0 and out.startswith("9 done, 0 failed, 0 pending of 9 cells (store: ")
    assert note in out.splitlines()
    code, out, _ = invoke("status", cfg, "--all")
    assert out.startswith(
        "36 done, 0 failed, 0 pending of 36 cells, 9 in the grid and 27 outside it (store: "
    )
    assert "note:" not in out

    csv = tmp_path / "r.csv"
    code, _, err = invoke("export", cfg, "--out", csv)
    assert code == 0 and len(pd.read_csv(csv)) == 9 and note in err.splitlines()
    code, _, err = invoke("export", cfg, "--out", csv, "--all")
    assert code == 0 and len(pd.read_csv(csv)) == 36 and "note:" not in err
    assert sorted(pd.read_csv(csv)["seed"].unique()) == [0, 1, 2, 3]

    code, out, err = invoke("report", cfg, "--out", tmp_path / "report", "--all")
    assert code == 0, err
    assert "uniform noise: 36 of 36 runs done" in out and "note:" not in err
    code, out, err = invoke("report", cfg, "--out", tmp_path / "report")
    assert code == 0 and "uniform noise: 9 of 9 runs done" in out and note in err.splitlines()

    # Other sizes and noise rates are named too; a grid that covers everything has no note.
    assert (
        invoke("run", cfg, "-q", "--set", "grid.sizes=[80]", "--set", "grid.noise_rates=[0.3]")[0]
        == 0
    )
    out = invoke("status", cfg)[1]
    assert (
        "note: the store also holds 28 cells of this experiment outside the grid (size 80; "
        "noise rate 0.3; seeds 1–3); --all to include them"
    ) in out
    everything = [
        "--set",
        "grid.sizes=[20, 40, 60, 80]",
        "--set",
        "grid.noise_rates=[0, 0.1, 0.2, 0.3]",
    ]
    out = invoke("status", cfg, *everything, "--set", "grid.seeds=[0, 1, 2, 3]")[1]
    assert "37 done" in out and "note:" not in out


def test_plan_projects_tfidf_from_a_timed_probe(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(make_dataset(), sizes="[20, 40]", rates="[0.0, 0.1, 0.2]")
    code, out, err = invoke("plan", cfg)
    assert code == 0, err
    lines = out.splitlines()
    assert "6 cells in 2 sibling groups (3 cells each)" in lines
    probe = "  probe: the group of 40 examples (3 cells) took "
    assert any(line.startswith(probe) for line in lines)
    rows = [line.split() for line in lines if line.startswith(("     20", "     40"))]
    assert [(r[0], r[3]) for r in rows] == [("20", "3"), ("40", "3")]
    assert any(line.startswith("projected wall time on this machine: ") for line in lines)
    code, out, _ = invoke("plan", cfg, "--no-probe")
    assert code == 0 and "without the probe there is no projection of time" in out


def test_a_split_file_as_dataset_source_reads_its_folder(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    folder = make_dataset(fmt="csv")
    by_folder = invoke("validate", write_config(folder))[1]
    by_file = invoke("validate", write_config(folder / "train.csv", name="file.toml"))[1]
    assert by_file.startswith("ok: 4 cells, fingerprint ")
    assert by_file.split(";")[0] == by_folder.split(";")[0]  # the same data, the same experiment


def test_usage_lines_name_config_without_braces_and_audit_shows_its_sample() -> None:
    for command in ("run", "status", "export", "report", "validate", "plan", "audit", "advise"):
        code, out, _ = invoke(command, "--help")
        usage = out.splitlines()[0]
        assert code == 0 and usage.endswith(f"{command} [OPTIONS] CONFIG"), usage
    flat = " ".join(invoke("audit", "--help")[1].split())
    from noisegrid.auditing import DEFAULT_SAMPLE

    assert f"(default: {DEFAULT_SAMPLE:,}, or every example of a smaller split" in flat


def test_a_store_of_another_experiment_says_what_it_holds(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(make_dataset())
    cfg.write_text('name = "first"\n' + cfg.read_text())
    assert invoke("run", cfg, "-q")[0] == 0
    other = cfg.with_name("other.toml")
    other.write_text(cfg.read_text().replace('name = "first"', 'name = "second"'))
    code, _, err = invoke("export", other, "--set", "backend.C=2", "--out", tmp_path / "x.csv")
    assert code == 2
    assert (
        "holds no cells of this experiment's grid (fingerprint " in err
        and "; it holds 4 cell(s) of 'first' (fingerprint " in err
        and ", backend tfidf); run this grid first (noisegrid run CONFIG)" in err
    ), err
    # A grid none of whose stored cells it covers points at --all.
    code, _, err = invoke("export", cfg, "--set", "grid.seeds=[5]", "--out", tmp_path / "x.csv")
    assert code == 2 and "outside the grid (seed 0) (--all includes them)" in err, err
