"""The CLI: thin commands, one-line errors, exit codes, the shared CONFIG/--set/--store options."""

from __future__ import annotations

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
