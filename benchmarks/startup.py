"""Start-up benchmark: CPU seconds of the commands that read a config, best of 3.

Runs ``noisegrid status CONFIG``, ``noisegrid validate CONFIG`` and ``noisegrid --help`` as fresh
processes (``python -m noisegrid``) on ``examples/laptop-tfidf.toml`` with the local IMDB copy as
its dataset, and the same two commands on a small dataset (200 short texts, the example's grid
shrunk to fit), and prints the CPU time (user + system) of each, the best of ``--repeat`` runs.
CPU time, not wall time: it depends less on how busy the machine is (on a loaded machine it still
grows by 10-20%). ``status`` reads the store (a fresh, empty one in a temporary folder) and
``validate`` also loads the data and checks it against the grid, so both include what a user
waits for before any work, not just imports; on IMDB, reading and checking its 50,000 reviews is
about half a second of ``validate``'s time, and the small dataset shows the start-up alone.

Target (issue 24): ``status`` and ``validate`` at most 1 s of CPU each.

Usage (from the repository root)::

    .venv/bin/python benchmarks/startup.py
    .venv/bin/python benchmarks/startup.py --data /path/to/imdb --repeat 5
    .venv/bin/python benchmarks/startup.py --importtime status   # the slowest imports of one
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _machine import cpu_report

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "laptop-tfidf.toml"
DATA = ROOT.parent / "shared" / "data" / "imdb"


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def command_cpu(args: list[str], *, env: dict[str, str]) -> float:
    """CPU seconds of one ``python -m noisegrid ARGS`` process (it must exit 0)."""
    before = _child_cpu()
    proc = subprocess.run(
        [sys.executable, "-m", "noisegrid", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    spent = _child_cpu() - before
    if proc.returncode != 0:
        raise SystemExit(f"noisegrid {' '.join(args)} failed:\n{proc.stderr}")
    return spent


def slowest_imports(args: list[str], *, env: dict[str, str], n: int = 15) -> str:
    """The ``n`` top-level imports with the largest cumulative time (``-X importtime``)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "noisegrid", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if cumulative.strip().isdigit() and not name.startswith("   "):
            rows.append((int(cumulative), name.strip()))
    rows.sort(reverse=True)
    return "\n".join(f"  {us / 1e6:6.3f} s  {name}" for us, name in rows[:n])


def small_dataset(folder: Path) -> Path:
    """200 short two-class texts as train/test parquet files (pandas only imported here)."""
    import pandas as pd

    words = ["good", "bad", "film", "plot", "actor", "scene", "very", "really"]
    for split, n in (("train", 120), ("test", 80)):
        rows = [
            {"text": f"{words[i % 2]} {words[2 + i % 6]} {split} {i}", "label": i % 2}
            for i in range(n)
        ]
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="IMDB folder (train/test parquet)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command; the best counts")
    parser.add_argument(
        "--importtime",
        choices=["status", "validate", "help"],
        help="also list the slowest top-level imports of one command",
    )
    args = parser.parse_args()
    if not (args.data / "train.parquet").is_file():
        raise SystemExit(f"no IMDB copy at {args.data}; pass --data FOLDER")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    print(cpu_report())
    with tempfile.TemporaryDirectory() as tmp:
        common = [
            str(CONFIG),
            "--set",
            f"dataset.source={args.data.resolve()}",
            "--store",
            str(Path(tmp) / "startup.sqlite"),
        ]
        small = [
            str(CONFIG),
            "--set",
            f"dataset.source={small_dataset(Path(tmp) / 'small')}",
            "--set",
            "grid.sizes=[20, 40]",
            "--set",
            "eval.test_size=20",
            "--store",
            str(Path(tmp) / "small.sqlite"),
        ]
        commands = {
            "help": ["--help"],
            "status": ["status", *common],
            "validate": ["validate", *common],
            "status (small data)": ["status", *small],
            "validate (small data)": ["validate", *small],
        }
        # One untimed run first: the data identity is hashed once per version of the files.
        command_cpu(commands["validate"], env=env)
        command_cpu(commands["validate (small data)"], env=env)
        print(f"{'command':<22} {'best CPU s':>10}   all runs")
        for name, argv in commands.items():
            runs = [command_cpu(argv, env=env) for _ in range(args.repeat)]
            shown = " ".join(f"{r:.2f}" for r in runs)
            print(f"{name:<22} {min(runs):>10.2f}   {shown}")
        if args.importtime:
            print(f"\nslowest imports of {args.importtime}:")
            print(slowest_imports(commands[args.importtime], env=env))


if __name__ == "__main__":
    main()
