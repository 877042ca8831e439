"""The ``noisegrid`` command line: thin Typer commands over the public API.

Every command that reads an experiment takes the same ``CONFIG``, ``--set`` and ``--store``
arguments. Library errors become one line on stderr and exit code 2, without a traceback; so does
anything unexpected (exit code 3), with a pointer to ``noisegrid --debug``, which shows the
traceback instead.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import click
import typer
from typer.core import TyperCommand

from .errors import ConfigError, NoisegridError

if TYPE_CHECKING:
    from .config import ExperimentSpec

app = typer.Typer(
    name="noisegrid",
    help="More labels or cleaner labels? Run a size × noise grid and measure the trade-off.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help text: rich's help renderer costs a third of a second at every start, and its
    # markup would swallow the square brackets of section names such as [run].
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])


class _Command(TyperCommand):
    """A command whose usage line reads ``noisegrid status [OPTIONS] CONFIG``, as in the README
    (typer writes a required argument in braces: ``{CONFIG}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


ConfigArg = Annotated[
    Path, typer.Argument(help="Experiment TOML file.", metavar="CONFIG", show_default=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help=(
            "Override a config value: section.key=value (TOML literal), repeatable. Relative "
            "paths resolve against the current directory."
        ),
        metavar="KEY=VALUE",
        show_default=False,
    ),
]
StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help=(
            "Results database (SQLite file); overrides the store key of the config's [run] "
            "section. A relative path resolves against the current directory."
        ),
        metavar="PATH",
        show_default=False,
    ),
]

AllOpt = Annotated[
    bool,
    typer.Option(
        "--all",
        help=(
            "Include the cells of this experiment the store holds outside the config's grid "
            "(other sizes, noise rates or seeds, e.g. from an earlier --set)."
        ),
    ),
]

TrackOpt = Annotated[
    str | None,
    typer.Option(
        "--track",
        help='Also log to an experiment tracker ("mlflow"); same as --set track.to=NAME.',
        metavar="NAME",
        show_default=False,
    ),
]

EXIT_FAILED_CELLS = 1
EXIT_USAGE = 2
EXIT_UNEXPECTED = 3
EXIT_INTERRUPTED = 130

_debug = {"on": False}


@app.callback()
def _main(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="Show the traceback of an unexpected error (also NOISEGRID_DEBUG=1)."
        ),
    ] = False,
) -> None:
    """More labels or cleaner labels? Run a size × noise grid and measure the trade-off."""
    _debug["on"] = debug or os.environ.get("NOISEGRID_DEBUG", "") not in ("", "0")


def _errors_as_one_line(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NoisegridError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException):
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            # The last resort: nobody sees a raw traceback unless they ask for it.
            if _debug["on"]:
                raise
            line, code = _unexpected(exc, command=func.__name__)
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


_OS_FIXES = {
    errno.ENOSPC: "the disk is full; free some space there or write elsewhere",
    errno.EROFS: "that file system is read-only; use a location on a writable disk",
    errno.EACCES: "you lack the permission; fix the permissions or use another location",
    errno.EPERM: "you lack the permission; fix the permissions or use another location",
    errno.ENOENT: "check that the path exists",
    errno.EISDIR: "a folder is in the way; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def _unexpected(exc: Exception, *, command: str) -> tuple[str, int]:
    """The one line (and exit code) for an exception no library check turned into a message."""
    debug = f"run `noisegrid --debug {command} ...` for the traceback"
    if isinstance(exc, OSError) and exc.errno in _OS_FIXES:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}: {_OS_FIXES[exc.errno]} ({debug})", EXIT_USAGE
    text = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
    return f"unexpected {detail}; {debug}, and please report it", EXIT_UNEXPECTED


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if quiet else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def _echo_and_save(result: Any, out: Path | None, save: Callable[[Any, Path], list[Path]]) -> None:
    """Print a result's description and, with ``--out``, save its files there and say which."""
    typer.echo(result.describe())
    if out is not None:
        written = save(result, out)
        typer.echo(f"wrote {', '.join(p.name for p in written)} to {out}")


@app.command(cls=_Command)
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
    track: TrackOpt = None,
) -> None:
    """Run every cell of the grid that is not stored yet (re-running resumes)."""
    from .config import load_spec
    from .runner import run_experiment
    from .tracking import track_results

    _setup_logging(quiet)
    spec = load_spec(config, overrides=_with_track(set_, track), store=store)
    progress = _Progress(quiet=quiet, noise_model_names=len(spec.grid.noise_models) > 1)
    try:
        with track_results(spec) as tracked, progress:
            summary = run_experiment(
                spec,
                retry_failed=retry_failed,
                fail_fast=fail_fast,
                on_start=progress.start,
                on_result=tracked(progress.advance),
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


@app.command(cls=_Command)
@_errors_as_one_line
def status(
    config: ConfigArg, set_: SetOpt = None, store: StoreOpt = None, all_: AllOpt = False
) -> None:
    """Print how many cells are done, failed and pending."""
    from .results import experiment_status

    st = experiment_status(config, overrides=set_ or [], store=store, all_cells=all_)
    typer.echo(st.describe())
    for label in st.failed[:20]:
        typer.echo(f"  failed: {label}")
    if st.outside is not None and not all_:
        typer.echo(f"note: {st.outside.describe()}; --all to include them")
    if st.other:
        typer.echo(f"note: {st.other}")


@app.command(cls=_Command)
@_errors_as_one_line
def export(
    config: ConfigArg,
    out: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
    format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help='Log the stored cells to an experiment tracker ("mlflow") instead of a file.',
            metavar="TRACKER",
        ),
    ] = None,
    set_: SetOpt = None,
    store: StoreOpt = None,
    all_: AllOpt = False,
) -> None:
    """Write one tidy row per cell as CSV or parquet, or log the stored cells to a tracker."""
    from .results import export_results, resolve_spec

    spec = resolve_spec(config, overrides=_with_track(set_, to), store=store)
    if to is not None:
        from .tracking import export_to_tracker

        typer.echo(export_to_tracker(spec).describe())
        return
    if out is None:
        raise ConfigError("export needs --out FILE (or --to mlflow to log to a tracker)")
    path = export_results(spec, out=out, format=format, all_cells=all_)  # type: ignore[arg-type]
    _note_what_else(spec, all_cells=all_)
    typer.echo(f"wrote {path}")


def _with_track(overrides: list[str] | None, track: str | None) -> list[str]:
    return [*(overrides or []), *([f"track.to={track}"] if track else [])]


def _note_what_else(spec: ExperimentSpec, *, all_cells: bool) -> None:
    """Notes on stderr: cells of this experiment outside the grid, and under other fingerprints."""
    from .results import cells_outside_grid, other_fingerprints

    outside = None if all_cells else cells_outside_grid(spec)
    if outside is not None:
        typer.echo(f"note: {outside.describe()}; --all to include them", err=True)
    note = other_fingerprints(spec)
    if note:
        typer.echo(f"note: {note}", err=True)


@app.command(cls=_Command)
@_errors_as_one_line
def report(
    config: ConfigArg,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    set_: SetOpt = None,
    store: StoreOpt = None,
    all_: AllOpt = False,
    track: TrackOpt = None,
) -> None:
    """Write the HTML report, PNG figures, summary.md and results.csv of the stored grid."""
    from .analysis import analyze
    from .report import build_report
    from .results import check_writable, load_results, require_results, resolve_spec

    spec = resolve_spec(config, overrides=_with_track(set_, track), store=store)
    table = load_results(spec, all_cells=all_)
    require_results(spec, table)
    check_writable(out, option="--out")
    _note_what_else(spec, all_cells=all_)
    analysis = analyze(table, grid=spec.to_dict()["grid"])
    path = build_report(table, out_dir=out, spec=spec, analysis=analysis)
    typer.echo(analysis.summary())
    typer.echo(f"wrote {path}")
    if spec.track is not None:
        from .tracking import track_report

        summary = track_report(spec, analysis=analysis, out_dir=out)
        typer.echo(f"{summary.describe()}; report attached")


@app.command(cls=_Command)
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
    from .results import load_results, require_results, resolve_spec

    spec = resolve_spec(config, overrides=set_ or [], store=store)
    table = load_results(spec)
    require_results(spec, table)
    typer.echo(str(tradeoff_at(table, size=size, noise=noise, noise_model=noise_model)))


@app.command(cls=_Command)
@_errors_as_one_line
def audit(
    config: ConfigArg,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for suspects.csv, per_class.csv, calibration.csv, …"),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="Out-of-fold probabilities from: tfidf or embed.")
    ] = "tfidf",
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            help=(
                "Audit a class-proportional sample of N examples (default: 10,000, or every "
                "example of a smaller split; --full: every example)."
            ),
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Audit every training example (no sample).")
    ] = False,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds.")] = 5,
    no_calibration: Annotated[
        bool,
        typer.Option("--no-calibration", help="Skip the injected-noise calibration (faster)."),
    ] = False,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Bootstrap resamples for the intervals.")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sample, folds, noise.")] = 0,
    set_: SetOpt = None,
) -> None:
    """Estimate the noise in the dataset's own labels and list the labels most likely wrong."""
    from .auditing import DEFAULT_CALIBRATION_RATES, DEFAULT_SAMPLE
    from .auditing import audit as run_audit

    if full and sample is not None:
        raise ConfigError("give --sample N or --full, not both")
    result = run_audit(
        config,
        overrides=set_ or [],
        backend=backend,
        sample=None if full else (sample if sample is not None else DEFAULT_SAMPLE),
        n_folds=folds,
        calibration_rates=() if no_calibration else DEFAULT_CALIBRATION_RATES,
        n_bootstrap=bootstrap,
        seed=seed,
    )
    from .report import save_audit

    _echo_and_save(result, out, save_audit)


@app.command(cls=_Command)
@_errors_as_one_line
def advise(
    config: ConfigArg,
    size: Annotated[
        int | None, typer.Option("--size", help="Labels you have (default: the audited split).")
    ] = None,
    noise: Annotated[
        float | None,
        typer.Option("--noise", help="Their noise rate, e.g. 0.1 (default: the audit's estimate)."),
    ] = None,
    label_cost: Annotated[
        float | None, typer.Option("--label-cost", help="Cost of one new label.")
    ] = None,
    review_cost: Annotated[
        float | None, typer.Option("--review-cost", help="Cost of reviewing one label.")
    ] = None,
    budget: Annotated[float | None, typer.Option("--budget", help="Money to spend.")] = None,
    new_label_noise: Annotated[
        float | None,
        typer.Option("--new-label-noise", help="Noise rate of new labels (default: --noise)."),
    ] = None,
    audit_dir: Annotated[
        Path | None,
        typer.Option("--audit", help="Reuse an audit folder written by noisegrid audit --out."),
    ] = None,
    review_precision: Annotated[
        float | None,
        typer.Option(
            "--review-precision", help="Share of reviewed labels that are wrong (skips the audit)."
        ),
    ] = None,
    noise_model: Annotated[
        str | None,
        typer.Option("--noise-model", help="Which noise model, when the grid has several."),
    ] = None,
    allow_extrapolation: Annotated[
        bool,
        typer.Option("--allow-extrapolation", help="Accept a start point outside the grid."),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for advice.csv, advice_curve.csv and advice.png."),
    ] = None,
    set_: SetOpt = None,
    store: StoreOpt = None,
) -> None:
    """Collect new labels, review suspected wrong ones, or mix: what the budget buys."""
    from .advising import advise as run_advise

    result = run_advise(
        config,
        overrides=set_ or [],
        store=store,
        size=size,
        noise=noise,
        label_cost=label_cost,
        review_cost=review_cost,
        budget=budget,
        new_label_noise=new_label_noise,
        audit=audit_dir,
        review_precision=review_precision,
        noise_model=noise_model,
        allow_extrapolation=allow_extrapolation,
    )
    from .report import save_advice

    _echo_and_save(result, out, save_advice)


@app.command(cls=_Command)
@_errors_as_one_line
def validate(
    config: ConfigArg,
    set_: SetOpt = None,
    store: StoreOpt = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Also print the resolved experiment as TOML, every default filled in.",
        ),
    ] = False,
) -> None:
    """Check the config and the data against the grid, without running anything."""
    from .config import load_spec
    from .data import describe_corpus, resolve_data_identity
    from .runner import prepare_run

    spec = load_spec(config, overrides=set_ or [], store=store)
    corpus = prepare_run(spec)
    spec = resolve_data_identity(spec, cache_dir=spec.run.cache_path())
    # With --explain, stdout is the resolved config (redirect it to a file and it runs as is),
    # so the status line goes to stderr.
    typer.echo(
        f"ok: {spec.grid.n_cells_total} cells, fingerprint "
        f"{spec.fingerprint()}; {describe_corpus(corpus)}",
        err=explain,
    )
    if explain:
        from .explain import explain_spec

        typer.echo(
            f"# {config} as it will run; lines ending '# default' are values left at their "
            "default (commented out: uncomment one to pin it)"
        )
        typer.echo(explain_spec(spec, corpus), nl=False)


@app.command(cls=_Command)
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
    """A rich progress bar over cells (elapsed, ETA), or log lines with ``--quiet``.

    ``noise_model_names`` puts each cell's noise model in its line: a grid with several runs the
    same (size, noise, seed) cell once per model.
    """

    def __init__(self, *, quiet: bool, noise_model_names: bool = False) -> None:
        self.quiet = quiet
        self.noise_model_names = noise_model_names
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
        label = result.cell.label()
        if self.noise_model_names:
            label = f"{result.noise_model}: {label}"
        last = f"{label} acc={acc:.3f}" if acc is not None else f"{label} FAILED"
        if self._bar is not None:
            self._bar.update(self._task, advance=1, last=last)
        else:
            logging.getLogger("noisegrid").info("%s %s", result.status, last)


if __name__ == "__main__":  # pragma: no cover - python -m noisegrid.cli
    app()
