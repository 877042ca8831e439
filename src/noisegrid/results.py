"""Reading an experiment's results: the tidy table, status counts and export.

The tidy table has one row per cell with the reference experiment's column names
(``train_size``, ``noise_level``, ``eval_accuracy``); ``docs/results-schema.md`` lists them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .backends import get_backend_class
from .config import ExperimentSpec, load_spec
from .errors import ConfigError
from .grid import expand_grid
from .store import ResultStore

TIDY_COLUMNS = [
    "fingerprint", "train_size", "noise_level", "seed", "noise_model", "status",
    "realized_noise", "n_flipped", "eval_accuracy", "eval_macro_f1", "eval_log_loss",
    "test_size", "fit_seconds", "predict_seconds", "backend", "model", "dataset", "info",
    "error", "finished_at",
]  # fmt: skip

_RENAME = {
    "noise_rate": "noise_level",
    "accuracy": "eval_accuracy",
    "macro_f1": "eval_macro_f1",
    "log_loss": "eval_log_loss",
}


def resolve_spec(
    config: str | Path | ExperimentSpec,
    *,
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
) -> ExperimentSpec:
    """An :class:`ExperimentSpec` from a TOML path (with overrides) or an existing spec."""
    if isinstance(config, ExperimentSpec):
        if overrides:
            raise ConfigError("overrides apply to a TOML path; change the spec object instead")
        if store is not None:
            run = config.run.model_copy(update={"store": str(store)})
            return config.model_copy(update={"run": run})
        return config
    return load_spec(config, overrides=overrides, store=store)


def load_results(
    config: str | Path | ExperimentSpec,
    *,
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
    include_failed: bool = True,
) -> pd.DataFrame:
    """The tidy results table of an experiment: one row per stored cell of its grid.

    Parameters
    ----------
    config : str, Path or ExperimentSpec
        The experiment TOML (or spec); selects the store and which cells belong to it.
    overrides : sequence of str, default ()
        ``section.key=value`` items, as for ``noisegrid run --set``.
    store : str or Path, optional
        Results database; overrides ``[run] store``.
    include_failed : bool, default True
        Keep failed cells (NaN metrics, ``status == "failed"``).

    Returns
    -------
    DataFrame
        Columns :data:`TIDY_COLUMNS`, sorted by noise model, seed, size and noise level.
        Empty (with those columns) when nothing is stored yet.
    """
    spec = resolve_spec(config, overrides=overrides, store=store)
    frames = []
    rs = ResultStore(spec.run.store)
    try:
        for variant in spec.variants():
            raw = rs.frame(variant.fingerprint())
            wanted = {c.key for c in expand_grid(variant)}
            keys = zip(raw["train_size"], raw["noise_rate"], raw["seed"], strict=True)
            # A boolean array, not a list: an empty list would select zero columns.
            mask = np.array([(int(s), float(r), int(d)) in wanted for s, r, d in keys], dtype=bool)
            raw = raw[mask]
            frames.append(_tidy(raw, variant))
    finally:
        rs.close()
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TIDY_COLUMNS)
    if not include_failed:
        table = table[table["status"] == "done"]
    return table.sort_values(["noise_model", "seed", "train_size", "noise_level"]).reset_index(
        drop=True
    )


def _tidy(raw: pd.DataFrame, spec: ExperimentSpec) -> pd.DataFrame:
    out = raw.rename(columns=_RENAME)
    options = get_backend_class(spec.backend.name).Options.model_validate(spec.backend_options())
    out["backend"] = spec.backend.name
    out["model"] = get_backend_class(spec.backend.name).model_id(options)
    out["dataset"] = spec.dataset.source
    out["noise_model"] = spec.grid.noise_model
    for col in ("train_size", "seed"):
        out[col] = out[col].astype("int64")
    return out.reindex(columns=TIDY_COLUMNS)


@dataclass(frozen=True)
class ExperimentStatus:
    """Done / failed / pending counts of an experiment's grid."""

    store: Path
    n_cells: int
    n_done: int
    n_failed: int
    failed: list[str]

    @property
    def n_pending(self) -> int:
        return self.n_cells - self.n_done - self.n_failed

    def describe(self) -> str:
        return (
            f"{self.n_done} done, {self.n_failed} failed, {self.n_pending} pending "
            f"of {self.n_cells} cells (store: {self.store})"
        )


def experiment_status(
    config: str | Path | ExperimentSpec,
    *,
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
) -> ExperimentStatus:
    """Count the grid's cells by stored status. Never creates a store."""
    spec = resolve_spec(config, overrides=overrides, store=store)
    done = failed = 0
    failed_cells: list[str] = []
    rs = ResultStore(spec.run.store)
    try:
        for variant in spec.variants():
            statuses = rs.statuses(variant.fingerprint())
            for cell in expand_grid(variant):
                st = statuses.get(cell.key)
                done += st == "done"
                if st == "failed":
                    failed += 1
                    failed_cells.append(f"{variant.grid.noise_model}: {cell.label()}")
    finally:
        rs.close()
    return ExperimentStatus(
        store=Path(spec.run.store),
        n_cells=spec.grid.n_cells_total,
        n_done=done,
        n_failed=failed,
        failed=failed_cells,
    )


def export_results(
    config: str | Path | ExperimentSpec,
    *,
    out: str | Path,
    format: Literal["csv", "parquet"] = "csv",
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
) -> Path:
    """Write the tidy table (failed cells included) to ``out`` as CSV or parquet."""
    if format not in ("csv", "parquet"):
        raise ConfigError(f"export format must be 'csv' or 'parquet'; got '{format}'")
    table = load_results(config, overrides=overrides, store=store)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path
