"""The ``noisegrid`` command line: thin Typer commands over the public API.

Every command that reads an experiment takes the same ``CONFIG``, ``--set`` and ``--store``
arguments. Library errors become one line on stderr and a non-zero exit, without a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .errors import NoisegridError

app = typer.Typer(
    name="noisegrid",
    help="More labels or cleaner labels? Run a size × noise grid and measure the trade-off.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[Path, typer.Argument(help="Experiment TOML file.", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config value: section.key=value (TOML literal), repeatable.",
        show_default=False,
    ),
]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="Results database; overrides [run] store.")
]

EXIT_FAILED_CELLS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _errors_as_one_line(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NoisegridError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if quiet else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


@app.command()
@_errors_as_one_line
def run(
    config: ConfigArg,
    set_: SetOpt = None,
    store: StoreOpt = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Re-run cells stored as failed.")
    ] = False,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first failed cell.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Log lines instead of a progress bar.")
    ] = False,
) -> None:
    """Run every cell of the grid that is not stored yet (re-running resumes)."""
    from .config import load_spec
    from .runner import run_experiment

    _setup_logging(quiet)
    spec = load_spec(config, overrides=set_ or [], store=store)
    progress = _Progress(quiet=quiet)
    try:
        with progress:
            summary = run_experiment(
                spec,
                retry_failed=retry_failed,
                fail_fast=fail_fast,
                on_start=progress.start,
                on_result=progress.advance,
            )
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: finished cells are stored in {spec.run.store}; run the same command "
            "again to resume",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    typer.echo(summary.describe())
    if summary.failures:
        for failure in summary.failures[:10]:
            typer.echo(f"  failed: {failure.cell.label()}: {failure.error}", err=True)
        hint = "" if summary.stopped_early else "; fix the cause and use --retry-failed"
        typer.echo(f"{summary.n_failed} cell(s) failed{hint}", err=True)
        raise typer.Exit(EXIT_FAILED_CELLS)


@app.command()
@_errors_as_one_line
def status(config: ConfigArg, set_: SetOpt = None, store: StoreOpt = None) -> None:
    """Print how many cells are done, failed and pending."""
    from .results import experiment_status

    st = experiment_status(config, overrides=set_ or [], store=store)
    typer.echo(st.describe())
    for label in st.failed[:20]:
        typer.echo(f"  failed: {label}")


@app.command()
@_errors_as_one_line
def export(
    config: ConfigArg,
    out: Annotated[Path, typer.Option("--out", help="Output file.")],
    format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    set_: SetOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write one tidy row per cell (reference column names included) as CSV or parquet."""
    from .results import export_results

    path = export_results(
        config,
        out=out,
        format=format,  # type: ignore[arg-type]
        overrides=set_ or [],
        store=store,
    )
    typer.echo(f"wrote {path}")


@app.command()
@_errors_as_one_line
def report(
    config: ConfigArg,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    set_: SetOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write the HTML report, PNG figures, summary.md and results.csv of the stored grid."""
    from .analysis import analyze
    from .report import build_report
    from .results import load_results, resolve_spec

    spec = resolve_spec(config, overrides=set_ or [], store=store)
    table = load_results(spec)
    analysis = analyze(table, grid=spec.to_dict()["grid"])
    path = build_report(table, out_dir=out, spec=spec, analysis=analysis)
    typer.echo(analysis.summary())
    typer.echo(f"wrote {path}")


@app.command()
@_errors_as_one_line
def tradeoff(
    config: ConfigArg,
    size: Annotated[int, typer.Option("--size", help="Training examples, e.g. 10000.")],
    noise: Annotated[float, typer.Option("--noise", help="Noise rate as a fraction, e.g. 0.1.")],
    noise_model: Annotated[
        str | None,
        typer.Option("--noise-model", help="Which noise model, when the grid has several."),
    ] = None,
    set_: SetOpt = None,
    store: StoreOpt = None,
) -> None:
    """Print the local exchange rate at one (size, noise) point: labels to correct vs collect."""
    from .analysis import tradeoff as tradeoff_at
    from .results import load_results

    table = load_results(config, overrides=set_ or [], store=store)
    typer.echo(str(tradeoff_at(table, size=size, noise=noise, noise_model=noise_model)))


@app.command()
@_errors_as_one_line
def validate(config: ConfigArg, set_: SetOpt = None, store: StoreOpt = None) -> None:
    """Check the config and the data against the grid, without running anything."""
    from .config import load_spec
    from .data import describe_corpus
    from .runner import prepare_run

    spec = load_spec(config, overrides=set_ or [], store=store)
    corpus = prepare_run(spec)
    typer.echo(
        f"ok: {spec.grid.n_cells_total} cells, fingerprint "
        f"{spec.fingerprint()}; {describe_corpus(corpus)}"
    )


@app.command()
@_errors_as_one_line
def plan(
    config: ConfigArg,
    set_: SetOpt = None,
    store: StoreOpt = None,
    no_probe: Annotated[
        bool,
        typer.Option("--no-probe", help="Project from FLOP counts; time no training steps."),
    ] = False,
    probe_seconds: Annotated[
        float, typer.Option("--probe-seconds", help="Time budget of the timed probe.")
    ] = 60.0,
    gpu_hour_cost: Annotated[
        float | None,
        typer.Option("--gpu-hour-cost", help="Price of one GPU-hour: print the run's cost."),
    ] = None,
) -> None:
    """Project cells, sibling groups, training tokens, memory and wall time on this machine."""
    from .config import load_spec
    from .planning import plan_experiment

    spec = load_spec(config, overrides=set_ or [], store=store)
    result = plan_experiment(
        spec, probe=not no_probe, probe_seconds=probe_seconds, gpu_hour_cost=gpu_hour_cost
    )
    typer.echo(result.describe())


class _Progress:
    """A rich progress bar over cells (elapsed, ETA), or log lines with ``--quiet``."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, n_pending: int, n_skipped: int) -> None:
        log = logging.getLogger("noisegrid")
        log.info("%d cells to run, %d already stored", n_pending, n_skipped)
        if self.quiet or n_pending == 0:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("cells", total=n_pending, last="")

    def advance(self, result: Any) -> None:
        acc = result.metrics.get("accuracy")
        last = f"{result.cell.label()} acc={acc:.3f}" if acc is not None else "FAILED"
        if self._bar is not None:
            self._bar.update(self._task, advance=1, last=last)
        else:
            logging.getLogger("noisegrid").info("%s %s", result.status, last)


if __name__ == "__main__":  # pragma: no cover - python -m noisegrid.cli
    app()
