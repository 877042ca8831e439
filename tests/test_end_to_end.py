"""Three kinds of dataset a new user brings, end to end through the command line.

Each is written the way people keep their data, with a config beside it that names everything by
relative path: a binary csv with string labels, a 3-class jsonl, and a 5-class parquet whose label
column is not called ``label`` and whose test split is small (so the default test sample must fit
it). Each runs ``validate``, ``run``, ``status`` and ``report`` with the tfidf backend on a tiny
grid, from a directory other than the config's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import _FILLER
from noisegrid.cli import app

_WORDS = [
    ["great", "wonderful", "superb", "loved", "brilliant"],
    ["awful", "boring", "terrible", "hated", "dull"],
    ["confusing", "odd", "strange", "puzzling", "weird"],
    ["funny", "hilarious", "witty", "laughed", "comic"],
    ["scary", "creepy", "dark", "chilling", "eerie"],
]


def _frame(names: list[str], n_per_class: int, *, seed: int, text: str, label: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c, name in enumerate(names):
        for _ in range(n_per_class):
            words = list(rng.choice(_FILLER, size=8)) + list(rng.choice(_WORDS[c], size=2))
            rng.shuffle(words)
            rows.append({text: " ".join(words), label: name, "id": len(rows)})
    return pd.DataFrame(rows)


def _binary_csv(folder: Path) -> None:
    names = ["positive", "negative"]
    for split, n, seed in (("train", 60, 1), ("test", 30, 2)):
        _frame(names, n, seed=seed, text="text", label="label").to_csv(
            folder / f"{split}.csv", index=False
        )


def _three_class_jsonl(folder: Path) -> None:
    names = ["praise", "complaint", "question"]
    for split, n, seed in (("train", 40, 1), ("test", 20, 2)):
        _frame(names, n, seed=seed, text="text", label="label").to_json(
            folder / f"{split}.jsonl", orient="records", lines=True
        )


def _five_class_parquet(folder: Path) -> None:
    names = ["drama", "horror", "comedy", "action", "romance"]
    for split, n, seed in (("train", 40, 1), ("test", 8, 2)):
        _frame(names, n, seed=seed, text="body", label="genre").to_parquet(
            folder / f"{split}.parquet"
        )


CASES = {
    # name: (writer, [dataset] lines, sizes, noise rates, validate says, default test size)
    "binary-csv": (_binary_csv, "", "[20, 40, 80]", "[0.0, 0.1, 0.2]", "negative=60", 60),
    "three-jsonl": (_three_class_jsonl, "", "[30, 60, 90]", "[0.0, 0.1, 0.2]", "praise=40", 60),
    "five-parquet": (
        _five_class_parquet,
        'text_column = "body"\nlabel_column = "genre"\n',
        "[50, 100, 150]",
        "[0.0, 0.2, 0.4]",
        "drama=40",
        40,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_new_dataset_runs_end_to_end(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write, columns, sizes, rates, class_counts, test_size = CASES[case]
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    write(project / "data")
    (project / "exp.toml").write_text(
        f'[dataset]\nsource = "data"\n{columns}'
        f"[grid]\nsizes = {sizes}\nnoise_rates = {rates}\n"
        '[backend]\nname = "tfidf"\nmin_df = 1\n'
        "[train]\nepochs = 3\n"  # read by no part of tfidf: must not show in the report
        '[run]\nstore = "runs/results.sqlite"\n'
    )  # no [eval]: the default test sample must fit each test split
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = "../project/exp.toml"
    cli = CliRunner()

    def invoke(*args: str) -> str:
        result = cli.invoke(app, list(args))
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        return result.stdout

    checked = invoke("validate", cfg)
    assert checked.startswith("ok: 9 cells") and class_counts in checked
    store = project / "runs" / "results.sqlite"
    assert f"results in {store}" in invoke("run", cfg, "--quiet")
    assert invoke("status", cfg).startswith(
        f"9 done, 0 failed, 0 pending of 9 cells (store: {store})"
    )
    out = invoke("report", cfg, "--out", "report")
    assert "uniform noise: 9 of 9 runs done" in out
    assert "456" not in out  # the published IMDB value belongs to IMDB grids only
    report = elsewhere / "report"
    results = pd.read_csv(report / "results.csv")
    assert (results["test_size"] == test_size).all()
    assert sorted(results["train_size"].unique()) == [int(s) for s in sizes.strip("[]").split(",")]
    page = (report / "report.html").read_text(encoding="utf-8")
    assert "learning_rate" not in page and '"epochs"' not in page  # settings tfidf never reads
    assert (report / "summary.md").is_file() and any((report / "figures").glob("*.png"))
