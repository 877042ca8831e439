"""The README's Python snippets run as written, so the manual cannot drift from the code.

Every ```python block of README.md runs, in order, in one folder laid out as the README assumes:
``examples/laptop-tfidf.toml`` (the shipped example with a smaller grid: sizes 1,000-3,000, three
noise rates, two seeds, a 600-review test sample, one in-process worker) and
``../shared/data/imdb``, here a synthetic two-class corpus whose accuracy grows with size and
falls with noise as IMDB's does, so that the analysis, the audit and the advice have something to
measure. Shell snippets are not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import _FILLER

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
EXAMPLE = REPO / "examples" / "laptop-tfidf.toml"

SMALLER_GRID = {
    "sizes": "[1000, 2000, 3000]",
    "noise_rates": "[0.0, 0.1, 0.2]",
    "seeds": "[0, 1]",
    "test_size": "600",
    "executor": '"local"\nworkers = 1',  # in-process: worker processes take longer to start
}

_CUES = (["good", "great", "fine", "loved"], ["bad", "awful", "dull", "hated"])


def python_snippets(text: str) -> list[str]:
    """The ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _reviews(n_per_class: int, *, seed: int) -> pd.DataFrame:
    """Short texts with a weak class signal: each holds one cue word, of its own class 3 times
    in 4, among filler words, so accuracy climbs with size and stays well below 100%."""
    rng = np.random.default_rng(seed)
    filler = [*_FILLER, *(f"w{i}" for i in range(300))]
    rows = []
    for label in (0, 1):
        for _ in range(n_per_class):
            cue_class = label if rng.random() < 0.75 else 1 - label
            words = [*rng.choice(filler, size=12), rng.choice(_CUES[cue_class])]
            rng.shuffle(words)
            rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def _smaller_example(text: str) -> str:
    for key, value in SMALLER_GRID.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, f"examples/laptop-tfidf.toml has no single '{key} = ' line any more"
    return text


@pytest.mark.slow
def test_every_python_snippet_of_the_readme_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snippets = python_snippets(README.read_text(encoding="utf-8"))
    assert len(snippets) >= 3, "the README's Python snippets were not found"
    data = tmp_path / "shared" / "data" / "imdb"
    data.mkdir(parents=True)
    _reviews(1600, seed=1).to_parquet(data / "train.parquet")
    _reviews(400, seed=2).to_parquet(data / "test.parquet")
    repo = tmp_path / "repo"
    (repo / "examples").mkdir(parents=True)
    (repo / "examples" / EXAMPLE.name).write_text(_smaller_example(EXAMPLE.read_text()))
    monkeypatch.chdir(repo)
    monkeypatch.setenv("NOISEGRID_CACHE", str(tmp_path / "cache"))
    for i, snippet in enumerate(snippets, start=1):
        code = compile(snippet, f"README.md python snippet {i}", "exec")
        exec(code, {"__name__": f"readme_snippet_{i}"})
    assert (repo / "reports" / "laptop" / "report.html").is_file()
    assert (repo / "runs" / "audit-imdb" / "suspects.csv").is_file()


def test_the_snippets_are_found() -> None:
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\n```\n"
    assert python_snippets(text) == ["x = 1\n", "y = 2\n"]
