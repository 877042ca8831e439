"""Sending a grid to an experiment tracker: live during ``run``, after the fact, and its report.

The store is the source of truth; a tracker is a copy kept where a team already looks. Three ways
in, all idempotent (runs are found again by their tags, so nothing is logged twice):

- :func:`track_results`, around :func:`~noisegrid.runner.run_experiment`: the driver logs each
  cell right after the store commits it (workers never talk to the tracker). A tracker that is
  down or refuses a request costs no result and never stops the run: the first failure turns
  logging off for the rest of the run, and one warning at the end says how many cells were not
  logged and how to catch up;
- :func:`export_to_tracker`: logs every stored cell not logged yet (``noisegrid export CONFIG
  --to mlflow``);
- :func:`track_report`: the same catch-up, then the report's files and the exchange rate on the
  experiment's parent run (``noisegrid report CONFIG --track mlflow``).

What goes where: one parent run per experiment fingerprint (one per noise model of a grid), with
the resolved spec flattened as params; one child run per done cell with its params and metrics.
Failed cells are not logged; they are once a retry succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ExperimentSpec
from .data import resolve_data_identity
from .errors import ConfigError, TrackerError
from .results import flatten
from .store import ResultStore
from .trackers import CellRecord, ParentRecord, Tracker, get_tracker_class

if TYPE_CHECKING:
    from .analysis import Analysis
    from .records import CellResult

log = logging.getLogger("noisegrid")

CELL_METRICS = (
    "accuracy",
    "macro_f1",
    "log_loss",
    "realized_noise",
    "fit_seconds",
    "predict_seconds",
)
"""Store columns logged as each cell's metrics (when set and finite)."""

_MAX_PARAM_CHARS = 500
"""Longer param values are cut (older MLflow servers refuse more than 500 characters)."""


def make_tracker(spec: ExperimentSpec) -> Tracker:
    """The tracker of ``spec``'s ``[track]`` section, its URI and experiment resolved.

    Raises
    ------
    ConfigError
        ``spec`` has no ``[track]`` section, or names an unknown tracker.
    MissingDependencyError
        The tracker's client is not installed (the message names the pip extra).
    """
    track = spec.track
    if track is None:
        raise ConfigError(
            'no tracker configured; add a [track] section with to = "mlflow", or pass '
            "--track mlflow (--to mlflow for export)"
        )
    cls = get_tracker_class(track.to)
    cls.check()
    uri = track.uri or cls.default_uri(Path(spec.run.store).absolute().parent)
    return cls(uri=uri, experiment=track.experiment or spec.name or "noisegrid")


def with_tracker(spec: ExperimentSpec, to: str | None) -> ExperimentSpec:
    """``spec`` tracked by ``to`` (``--track`` / ``--to``), keeping its other ``[track]`` keys."""
    if to is None:
        return spec
    data = spec.to_dict()
    data["track"] = {**data.get("track", {}), "to": to}
    out = ExperimentSpec.from_dict(data, source="--track")
    return out if spec.data_identity is None else out.with_data_identity(spec.data_identity)


def parent_record(variant: ExperimentSpec) -> ParentRecord:
    """The parent run of one experiment (a one-noise-model spec with its data identity)."""
    from ._version import __version__

    fingerprint = variant.fingerprint()
    data = variant.effective_dict()
    data.pop("track", None)
    params = {k: _param(v) for k, v in flatten(data).items()}
    tags = {
        "noisegrid.version": __version__,
        "noisegrid.noise_model": variant.grid.noise_model_name,
        "noisegrid.backend": variant.backend.name,
        "noisegrid.store": str(Path(variant.run.store).absolute()),
    }
    if variant.data_identity is not None:
        tags["noisegrid.data_identity"] = variant.data_identity
    name = f"{variant.name or 'grid'} · {variant.grid.noise_model_name} · {fingerprint}"
    return ParentRecord(fingerprint=fingerprint, name=name, params=params, tags=tags)


def cell_record(row: Mapping[str, Any], *, fingerprint: str) -> CellRecord:
    """The child run of one stored cell; ``row`` has the store's column names."""
    size, rate, seed = int(row["train_size"]), float(row["noise_rate"]), int(row["seed"])
    metrics = {}
    for name in CELL_METRICS:
        value = row.get(name)
        if value is not None and math.isfinite(float(value)):
            metrics[name] = float(value)
    return CellRecord(
        key=cell_key(size, rate, seed),
        name=f"n={size} noise={rate:g} seed={seed}",
        params={
            "train_size": size,
            "noise_rate": rate,
            "noise_model": str(row["noise_model"]),
            "seed": seed,
        },
        metrics=metrics,
        tags={"noisegrid.fingerprint": fingerprint},
    )


def cell_key(train_size: int, noise_rate: float, seed: int) -> str:
    """A cell's key as a tag value: ``"1000/0.1/0"``."""
    return f"{train_size}/{noise_rate:g}/{seed}"


# -- live, during run ------------------------------------------------------------------------------


class LiveTracking:
    """Logs each cell the driver stores; never raises, and remembers what it could not log.

    Parameters
    ----------
    spec : ExperimentSpec
        The spec being run (with a ``[track]`` section).
    tracker : Tracker, optional
        Default: :func:`make_tracker`.
    """

    def __init__(self, spec: ExperimentSpec, *, tracker: Tracker | None = None) -> None:
        self.spec = spec
        self.tracker = tracker if tracker is not None else make_tracker(spec)
        self.n_seen = 0
        self.n_logged = 0
        self.n_missed = 0
        self.error: str | None = None
        self._variants: dict[str, ExperimentSpec] | None = None
        self._parents: dict[str, tuple[str, set[str]]] = {}

    def __call__(self, result: CellResult) -> None:
        """Log one stored cell (done cells only); a tracker failure is remembered, not raised."""
        if result.status != "done":
            return
        self.n_seen += 1
        if self.error is not None:
            self.n_missed += 1
            return
        try:
            variant = self._variant(result.noise_model)
            parent_id, logged = self._parent(variant)
            record = cell_record(_row(result), fingerprint=variant.fingerprint())
            if record.key not in logged:
                self.tracker.log_cell(parent_id, record)
                logged.add(record.key)
                self.n_logged += 1
        except Exception as exc:  # the cell is stored; the tracker's trouble must not stop the run
            self.error = _one_line(exc)
            self.n_missed += 1

    def wrap(self, callback: Callable[[CellResult], None] | None) -> Callable[[CellResult], None]:
        """A result callback that logs the cell, then calls ``callback`` (progress display)."""

        def on_result(result: CellResult) -> None:
            self(result)
            if callback is not None:
                callback(result)

        return on_result

    def warning(self) -> str | None:
        """The one line that says what was not logged, or None when everything was."""
        if self.error is None:
            return None
        return (
            f"{self.n_missed} of {self.n_seen} cells are stored in {self.spec.run.store} but not "
            f"logged to {self.tracker.describe()} ({self.error}); `noisegrid export CONFIG --to "
            f"{self.tracker.name}` logs them later"
        )

    def _variant(self, noise_model: str) -> ExperimentSpec:
        if self._variants is None:
            resolved = resolve_data_identity(self.spec, cache_dir=self.spec.run.cache_path())
            self._variants = {v.grid.noise_model_name: v for v in resolved.variants()}
        return self._variants[noise_model]

    def _parent(self, variant: ExperimentSpec) -> tuple[str, set[str]]:
        fingerprint = variant.fingerprint()
        if fingerprint not in self._parents:
            parent_id = self.tracker.find_or_create_parent(parent_record(variant))
            self._parents[fingerprint] = (parent_id, self.tracker.logged_cells(parent_id))
        return self._parents[fingerprint]


@contextlib.contextmanager
def track_results(
    spec: ExperimentSpec,
) -> Iterator[Callable[[Callable[[CellResult], None] | None], Callable[[CellResult], None]]]:
    """Log cells as :func:`~noisegrid.runner.run_experiment` stores them, when ``spec`` says so.

    Yields a function that wraps the run's ``on_result`` callback; without a ``[track]`` section it
    returns the callback unchanged. On exit, a tracker that failed gets one warning (logger
    ``noisegrid``) saying how many cells were not logged.

    Examples
    --------
    >>> with track_results(spec) as tracked:  # doctest: +SKIP
    ...     run_experiment(spec, on_result=tracked(None))
    """
    if spec.track is None:
        yield lambda callback: callback if callback is not None else _ignore
        return
    live = LiveTracking(spec)
    try:
        with _quiet_http():
            yield live.wrap
    finally:
        message = live.warning()
        if message:
            log.warning("%s", message)


def _ignore(result: CellResult) -> None:
    return None


# -- after the fact --------------------------------------------------------------------------------


@dataclass
class TrackingSummary:
    """What :func:`export_to_tracker` did."""

    where: str
    n_experiments: int = 0
    n_logged: int = 0
    n_already: int = 0
    parent_ids: dict[str, str] = field(default_factory=dict)
    """Parent run id per fingerprint."""

    def describe(self) -> str:
        return (
            f"logged {self.n_logged} cell(s) to {self.where} ({self.n_already} already there) "
            f"under {self.n_experiments} experiment run(s)"
        )


def export_to_tracker(spec: ExperimentSpec, *, to: str | None = None) -> TrackingSummary:
    """Log every stored done cell of ``spec`` that the tracker does not have yet.

    Parameters
    ----------
    spec : ExperimentSpec
        With its data identity resolved (:func:`noisegrid.results.resolve_spec`).
    to : str, optional
        The tracker (``"mlflow"``); default: ``[track] to``.

    Returns
    -------
    TrackingSummary

    Raises
    ------
    TrackerError
        The tracker cannot be reached or refused a request (the store is untouched).
    """
    spec = with_tracker(spec, to)
    tracker = make_tracker(spec)
    return _sync(spec, tracker)


def _sync(spec: ExperimentSpec, tracker: Tracker) -> TrackingSummary:
    summary = TrackingSummary(where=tracker.describe())
    with ResultStore(spec.run.store) as store:
        for variant in spec.variants():
            fingerprint = variant.fingerprint()
            frame = store.frame(fingerprint)
            done = frame[frame["status"] == "done"]
            with _as_tracker_error(tracker):
                parent_id = tracker.find_or_create_parent(parent_record(variant))
                logged = tracker.logged_cells(parent_id)
                for row in done.to_dict("records"):
                    record = cell_record(
                        {str(k): v for k, v in row.items()}, fingerprint=fingerprint
                    )
                    if record.key in logged:
                        summary.n_already += 1
                        continue
                    tracker.log_cell(parent_id, record)
                    logged.add(record.key)
                    summary.n_logged += 1
            summary.parent_ids[fingerprint] = parent_id
            summary.n_experiments += 1
    return summary


def track_report(
    spec: ExperimentSpec, *, analysis: Analysis, out_dir: str | Path
) -> TrackingSummary:
    """Log the grid (as :func:`export_to_tracker`), then attach the report to each parent run.

    Attaches ``report.html``, ``summary.md``, ``results.csv`` and ``figures/*.png`` from
    ``out_dir`` and logs the exchange rate of the reference regression (``exchange_rate``,
    ``exchange_rate_low``, ``exchange_rate_high``: examples one point of noise is worth, with its
    interval) and the local rate at the summary's focus cell (``local_exchange_rate``, ...).

    Raises
    ------
    TrackerError
        The tracker cannot be reached or refused a request (the report is written already).
    """
    tracker = make_tracker(spec)
    summary = _sync(spec, tracker)
    out = Path(out_dir)
    files = [(out / name, "") for name in ("report.html", "summary.md", "results.csv")]
    files += [(png, "figures") for png in sorted((out / "figures").glob("*.png"))]
    files = [(path, folder) for path, folder in files if path.is_file()]
    for variant in spec.variants():
        parent_id = summary.parent_ids[variant.fingerprint()]
        metrics = _rate_metrics(analysis, variant.grid.noise_model_name)
        with _as_tracker_error(tracker):
            tracker.attach(parent_id, files=files, metrics=metrics)
    return summary


def _rate_metrics(analysis: Analysis, noise_model: str) -> dict[str, float]:
    nm = analysis.by_noise_model.get(noise_model)
    if nm is None:
        return {}
    out: dict[str, float] = {}
    rate = nm.reference.exchange_rate if nm.reference.skipped is None else None
    if rate is not None:
        out.update(
            exchange_rate=rate.estimate, exchange_rate_low=rate.low, exchange_rate_high=rate.high
        )
    local = nm.local_rates
    if analysis.focus is not None and not local.empty and {"rate", "train_size"} <= set(local):
        size, noise = analysis.focus
        at = local[(local["train_size"] == size) & ((local["noise_level"] - noise).abs() < 1e-9)]
        if len(at):
            row = at.iloc[0]
            out.update(
                local_exchange_rate=float(row["rate"]),
                local_exchange_rate_low=float(row.get("rate_low", math.nan)),
                local_exchange_rate_high=float(row.get("rate_high", math.nan)),
            )
    return {k: float(v) for k, v in out.items() if math.isfinite(float(v))}


@contextlib.contextmanager
def _as_tracker_error(tracker: Tracker) -> Iterator[None]:
    try:
        with _quiet_http():
            yield
    except TrackerError:
        raise
    except Exception as exc:  # whatever the client raises: one line that says what to do
        raise TrackerError(
            f"could not log to {tracker.describe()}: {_one_line(exc)}; the results stay in the "
            "store: check that the tracker is reachable and run the command again"
        ) from exc


# -- helpers ---------------------------------------------------------------------------------------


def _row(result: CellResult) -> dict[str, Any]:
    """A result as the store's columns (what :meth:`ResultStore.write` stores)."""
    size, rate, seed = result.cell.key
    return {
        "train_size": size,
        "noise_rate": rate,
        "seed": seed,
        "noise_model": result.noise_model,
        "realized_noise": result.realized_noise,
        "fit_seconds": result.fit_seconds,
        "predict_seconds": result.predict_seconds,
        **{k: result.metrics.get(k) for k in ("accuracy", "macro_f1", "log_loss")},
    }


def _one_line(exc: BaseException) -> str:
    """The reason in a few words: an OS error's own ("Connection refused"), else the first line."""
    text = str(exc).strip()
    found = _OS_REASON.search(text)
    if found:
        return found.group(1).strip()
    lines = text.splitlines()
    detail = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return detail if len(detail) <= 160 else detail[:157] + "..."


_OS_REASON = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


@contextlib.contextmanager
def _quiet_http() -> Iterator[None]:
    """Hush urllib3's retry warnings: the tracker's trouble is said once, by noisegrid."""
    http = logging.getLogger("urllib3")
    level = http.level
    http.setLevel(logging.ERROR)
    try:
        yield
    finally:
        http.setLevel(level)


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_CHARS else text[: _MAX_PARAM_CHARS - 3] + "..."


__all__ = [
    "LiveTracking",
    "TrackingSummary",
    "cell_record",
    "export_to_tracker",
    "make_tracker",
    "parent_record",
    "track_report",
    "track_results",
    "with_tracker",
]
