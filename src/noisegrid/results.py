"""Reading an experiment's results: the tidy table, status counts and export.

Every reader resolves the spec's data identity first (:func:`resolve_spec`), so it finds the cells
``noisegrid run`` stored for the same data however its path is written, and says so when the store
holds cells of the same experiment under other fingerprints (:func:`other_fingerprints`).

The tidy table has one row per cell with the reference experiment's column names
(``train_size``, ``noise_level``, ``eval_accuracy``); ``docs/results-schema.md`` lists them all.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .backends import get_backend_class
from .config import ExperimentSpec, load_spec
from .data import resolve_data_identity
from .errors import ConfigError, OutputError, StoreError
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
    """An :class:`ExperimentSpec` from a TOML path (with overrides) or an existing spec.

    Its data identity is resolved (see :func:`noisegrid.data.dataset_identity`), so its
    fingerprints are those ``noisegrid run`` stores cells under.

    Raises
    ------
    ConfigError, DataError
        The config is invalid, or the local data it names cannot be found.
    """
    if isinstance(config, ExperimentSpec):
        if overrides:
            raise ConfigError("overrides apply to a TOML path; change the spec object instead")
        spec = config
        if store is not None:
            run = config.run.model_copy(update={"store": str(store)})
            spec = config.model_copy(update={"run": run})
    else:
        spec = load_spec(config, overrides=overrides, store=store)
    return resolve_data_identity(spec, cache_dir=spec.run.cache_path())


def load_results(
    config: str | Path | ExperimentSpec,
    *,
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
    include_failed: bool = True,
    all_cells: bool = False,
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
    all_cells : bool, default False
        Also the cells of the same experiment (same fingerprint) the store holds outside the
        config's grid: other sizes, noise rates or seeds run with ``--set`` or an earlier grid
        (``--all`` on the command line; :func:`cells_outside_grid` says what they are).

    Returns
    -------
    DataFrame
        Columns :data:`TIDY_COLUMNS`, sorted by noise model, seed, size and noise level.
        Empty (with those columns) when nothing is stored yet.
    """
    spec = resolve_spec(config, overrides=overrides, store=store)
    frames = []
    with ResultStore(spec.run.store) as rs:
        for variant in spec.variants():
            raw = rs.frame(variant.fingerprint())
            if not all_cells:
                wanted = {c.key for c in expand_grid(variant)}
                keys = zip(raw["train_size"], raw["noise_rate"], raw["seed"], strict=True)
                # A boolean array, not a list: an empty list would select zero columns.
                mask = np.array(
                    [(int(s), float(r), int(d)) in wanted for s, r, d in keys], dtype=bool
                )
                raw = raw[mask]
            frames.append(_tidy(raw, variant))
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


def require_results(spec: ExperimentSpec, table: pd.DataFrame) -> None:
    """Raise :class:`StoreError` when the store holds no cell of ``spec``'s grid.

    The message says whether the store is missing, or which other fingerprints of the same
    experiment it holds and what differs, and how to fix it.

    Parameters
    ----------
    spec : ExperimentSpec
        A resolved spec (:func:`resolve_spec`).
    table : DataFrame
        Its tidy table (:func:`load_results`).
    """
    with ResultStore(spec.run.store) as rs:
        if not rs.exists():
            raise StoreError(
                f"results store {spec.run.store} does not exist; run the grid first "
                "(noisegrid run CONFIG), or point --store / [run] store at the store that holds it"
            )
        if not table.empty:
            return
        note = other_fingerprints(spec, rs)
        outside = cells_outside_grid(spec, rs)
        held = _what_it_holds(rs)
    if note:
        detail = f"; {note}"
    elif outside is not None:
        detail = f"; {outside.describe()} (--all includes them)"
    elif held:
        detail = (
            f"; it holds {held}; run this grid first (noisegrid run CONFIG), or point --store / "
            "[run] store at the store that holds it"
        )
    else:
        detail = "; run the grid first (noisegrid run CONFIG)"
    raise StoreError(
        f"results store {spec.run.store} holds no cells of this experiment's grid "
        f"(fingerprint {spec.fingerprint()}){detail}"
    )


def _what_it_holds(store: ResultStore, *, limit: int = 3) -> str:
    """The experiments a store holds, e.g. ``50 cells of 'laptop-embed' (fingerprint …)``."""
    experiments = sorted(store.experiments().items(), key=lambda item: -item[1][1])
    parts = []
    for fingerprint, (recorded, n_cells) in experiments[:limit]:
        name = recorded.get("name") if recorded else None
        backend = (recorded or {}).get("backend", {}).get("name")
        what = f"'{name}'" if name else "an unnamed experiment"
        extra = f", backend {backend}" if backend else ""
        parts.append(f"{n_cells} cell(s) of {what} (fingerprint {fingerprint}{extra})")
    if len(experiments) > limit:
        parts.append(f"{len(experiments) - limit} more experiment(s)")
    return ", ".join(parts)


def other_fingerprints(spec: ExperimentSpec, store: ResultStore | None = None) -> str | None:
    """Whether the store holds cells of this experiment under other fingerprints, and why.

    Compares the recorded spec of every other fingerprint with cells in the store, among those
    of the same experiment ``name``, with ``spec`` (a resolved spec), field by field over what
    the fingerprint covers.

    Returns
    -------
    str or None
        One sentence naming the cell count and the fields that differ (the closest fingerprint's),
        or None when there is nothing else of this experiment in the store.
    """
    if store is None:
        with ResultStore(spec.run.store) as rs:
            return other_fingerprints(spec, rs)
    variants = {v.grid.noise_model: v for v in spec.variants()}
    ours = {v.fingerprint() for v in variants.values()}
    candidates = []
    for fingerprint, (stored, n_cells) in store.experiments().items():
        if fingerprint in ours or stored is None or stored.get("name") != spec.name:
            continue
        model = stored.get("grid", {}).get("noise_model")
        mine = variants.get(model) if isinstance(model, str) else None
        mine = mine if mine is not None else next(iter(variants.values()))
        changes = _differences(stored, _recorded(mine), train_keys=set(mine.used_train()))
        candidates.append((len(changes), fingerprint, n_cells, changes))
    if not candidates:
        return None
    candidates.sort(key=lambda c: (c[0], -c[2]))
    _, fingerprint, n_cells, changes = candidates[0]
    total = sum(c[2] for c in candidates)
    where = (
        f"under another fingerprint ({fingerprint})"
        if len(candidates) == 1
        else f"under {len(candidates)} other fingerprints (the closest, {fingerprint}, has "
        f"{n_cells})"
    )
    differs = "; ".join(changes) if changes else "nothing recorded (an older noisegrid's store)"
    return (
        f"the store holds {total} cell(s) of this experiment {where}, which differs in: " + differs
    )


@dataclass(frozen=True)
class OutsideGrid:
    """Cells of an experiment (same fingerprint) that the store holds outside the config's grid.

    Attributes
    ----------
    n_cells : int
        How many (done or failed).
    sizes, noise_rates, seeds : tuple
        The values of those cells that the grid does not list.
    """

    n_cells: int
    sizes: tuple[int, ...] = ()
    noise_rates: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()

    def describe(self) -> str:
        """``the store also holds 27 cells of this experiment outside the grid (seeds 1–3)``."""
        parts = []
        if self.sizes:
            parts.append(f"size{'s' * (len(self.sizes) > 1)} {_values(self.sizes)}")
        if self.noise_rates:
            noun = "noise rates" if len(self.noise_rates) > 1 else "noise rate"
            parts.append(f"{noun} {', '.join(f'{r:g}' for r in self.noise_rates)}")
        if self.seeds:
            parts.append(f"seed{'s' * (len(self.seeds) > 1)} {_values(self.seeds)}")
        what = f" ({'; '.join(parts)})" if parts else ""
        cells = "cell" if self.n_cells == 1 else "cells"
        return (
            f"the store also holds {self.n_cells} {cells} of this experiment outside the grid{what}"
        )


def _values(values: Sequence[int]) -> str:
    """``1–3`` for a run of consecutive integers, else ``1, 4, 9``."""
    ordered = sorted(values)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}–{ordered[-1]}"
    return ", ".join(str(v) for v in ordered)


def cells_outside_grid(
    spec: ExperimentSpec, store: ResultStore | None = None
) -> OutsideGrid | None:
    """What the store holds of ``spec``'s experiment outside its grid, or None when nothing.

    Only cells stored under the spec's own fingerprints count (the same experiment: same data,
    model, noise and budget), of sizes, noise rates or seeds the config does not list. Cells of
    other fingerprints are :func:`other_fingerprints`' business.

    Parameters
    ----------
    spec : ExperimentSpec
        A resolved spec (:func:`resolve_spec`).
    store : ResultStore, optional
        An open store; default: the spec's.
    """
    if store is None:
        with ResultStore(spec.run.store) as rs:
            return cells_outside_grid(spec, rs)
    outside: list[tuple[int, float, int]] = []
    for variant in spec.variants():
        wanted = {c.key for c in expand_grid(variant)}
        outside += [key for key in store.statuses(variant.fingerprint()) if key not in wanted]
    if not outside:
        return None
    grid = spec.grid
    rates = {round(float(r), 6) for r in grid.noise_rates}
    return OutsideGrid(
        n_cells=len(outside),
        sizes=tuple(sorted({s for s, _, _ in outside} - set(grid.sizes))),
        noise_rates=tuple(sorted({r for _, r, _ in outside if round(r, 6) not in rates})),
        seeds=tuple(sorted({d for _, _, d in outside} - set(grid.seeds))),
    )


def _recorded(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec as the store records it (see :meth:`ResultStore.register_experiment`)."""
    data = spec.to_dict()
    if spec.data_identity is not None:
        data["data_identity"] = spec.data_identity
    return data


def _differences(
    stored: dict[str, Any], current: dict[str, Any], *, train_keys: set[str]
) -> list[str]:
    """What differs between two recorded specs, over what the fingerprint covers.

    ``train_keys`` are the ``[train]`` settings the current backend reads; the others are not
    part of its fingerprint.
    """
    changes = []
    old_id, new_id = stored.get("data_identity"), current.get("data_identity")
    if old_id != new_id:
        if old_id and new_id and old_id.startswith("sha256:") and new_id.startswith("sha256:"):
            changes.append(
                f"the dataset's content (stored {old_id}, now {new_id}: the data files changed "
                "since those cells ran)"
            )
        elif old_id is None:
            changes.append(
                f"the dataset's identity (not recorded by the noisegrid that stored those cells; "
                f"now {new_id})"
            )
        else:
            changes.append(f"the dataset's identity (stored {old_id}, now {new_id})")
    old, new = flatten(stored), flatten(current)
    for key in sorted(set(old) | set(new)):
        section = key.split(".")[0]
        if section in _NOT_FINGERPRINTED or key in ("grid.sizes", "grid.noise_rates", "grid.seeds"):
            continue
        if section == "train" and key.removeprefix("train.") not in train_keys:
            continue
        # With both identities known, the path as written is not part of the fingerprint.
        if key == "dataset.source" and old_id and new_id:
            continue
        if old.get(key) != new.get(key):
            changes.append(f"{key} (stored {_show(old.get(key))}, now {_show(new.get(key))})")
    return changes


_NOT_FINGERPRINTED = {"name", "description", "run", "track", "data_identity", "repeats"}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: ``{"train": {"epochs": 2}}`` gives ``train.epochs``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _show(value: Any) -> str:
    text = "unset" if value is None else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class ExperimentStatus:
    """Done / failed / pending counts of an experiment's grid."""

    store: Path
    n_cells: int
    n_done: int
    n_failed: int
    failed: list[str]
    other: str | None = None
    """Cells of this experiment stored under other fingerprints, and what differs (or None)."""
    fingerprint: str = ""
    """The experiment's fingerprint, as every command prints it."""
    outside: OutsideGrid | None = None
    """Cells of this experiment stored outside the config's grid (or None)."""
    all_cells: bool = False
    """Whether the counts include the cells outside the grid."""
    store_exists: bool = True
    """Whether the store file exists (a run creates it)."""

    @property
    def n_pending(self) -> int:
        return self.n_cells - self.n_done - self.n_failed

    def describe(self) -> str:
        """One line: the counts, the store and the fingerprint.

        With ``all_cells``, the cell count says how many of them lie outside the grid.
        """
        cells = f"{self.n_cells} cells"
        if self.all_cells and self.outside is not None:
            n_grid = self.n_cells - self.outside.n_cells
            cells += f", {n_grid} in the grid and {self.outside.n_cells} outside it"
        fingerprint = f"; fingerprint {self.fingerprint}" if self.fingerprint else ""
        return (
            f"{self.n_done} done, {self.n_failed} failed, {self.n_pending} pending "
            f"of {cells} (store: {self.store}"
            + ("" if self.store_exists else ", which does not exist yet: a run creates it")
            + f"){fingerprint}"
        )


def experiment_status(
    config: str | Path | ExperimentSpec,
    *,
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
    all_cells: bool = False,
) -> ExperimentStatus:
    """Count the grid's cells by stored status. Never creates or writes a store.

    ``all_cells`` also counts the cells of the same experiment the store holds outside the
    grid (see :func:`cells_outside_grid`); either way the status names them.
    """
    spec = resolve_spec(config, overrides=overrides, store=store)
    done = failed = 0
    failed_cells: list[str] = []
    with ResultStore(spec.run.store) as rs:
        outside = cells_outside_grid(spec, rs)
        for variant in spec.variants():
            statuses = rs.statuses(variant.fingerprint())
            grid = {cell.key: cell.label() for cell in expand_grid(variant)}
            keys = list(grid)
            if all_cells:
                keys += sorted(k for k in statuses if k not in grid)
            for key in keys:
                st = statuses.get(key)
                done += st == "done"
                if st == "failed":
                    failed += 1
                    label = grid.get(key) or f"n={key[0]} noise={key[1]:.3g} seed={key[2]}"
                    failed_cells.append(f"{variant.grid.noise_model}: {label}")
        other = other_fingerprints(spec, rs)
        exists = rs.exists()
    n_outside = outside.n_cells if all_cells and outside is not None else 0
    return ExperimentStatus(
        store=Path(spec.run.store),
        n_cells=spec.grid.n_cells_total + n_outside,
        n_done=done,
        n_failed=failed,
        failed=failed_cells,
        other=other,
        fingerprint=spec.fingerprint(),
        outside=outside,
        all_cells=all_cells,
        store_exists=exists,
    )


def export_results(
    config: str | Path | ExperimentSpec,
    *,
    out: str | Path,
    format: Literal["csv", "parquet"] = "csv",
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
    all_cells: bool = False,
) -> Path:
    """Write the tidy table (failed cells included) to ``out`` as CSV or parquet.

    ``all_cells`` also writes the cells of the experiment stored outside the grid (see
    :func:`load_results`).

    Raises
    ------
    ConfigError
        An unknown format.
    StoreError
        The store does not exist or holds no cell of this experiment's grid.
    OutputError
        ``out`` cannot be written (read-only or full disk, a folder in the way).
    """
    if format not in ("csv", "parquet"):
        raise ConfigError(f"export format must be 'csv' or 'parquet'; got '{format}'")
    spec = resolve_spec(config, overrides=overrides, store=store)
    table = load_results(spec, all_cells=all_cells)
    require_results(spec, table)
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if format == "csv":
            table.to_csv(path, index=False)
        else:
            table.to_parquet(path, index=False)
    except OSError as exc:
        raise output_error(exc, path, option="--out") from None
    return path


def output_error(exc: OSError, path: str | Path, *, option: str) -> OutputError:
    """One line for an output that cannot be written: which file, why, and the fix."""
    where = exc.filename or path
    if exc.errno == errno.ENOSPC:
        fix = f"free some space on that disk, or choose another {option}"
    elif exc.errno == errno.EROFS:
        fix = f"that disk is read-only; choose an {option} on a writable disk"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = f"you may not write there; fix the permissions or choose another {option}"
    elif exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
        fix = f"a folder or file is in the way; choose another {option}"
    else:
        fix = f"choose another {option}"
    return OutputError(f"cannot write {where}: {exc.strerror or exc}; {fix}")


def check_writable(folder: str | Path, *, option: str) -> Path:
    """Create ``folder`` and check a file can be written in it, before expensive work.

    Raises
    ------
    OutputError
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"noisegrid")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename).parent == path:
            exc.filename = None  # the probe's own name means nothing to the user: name the folder
        raise output_error(exc, path, option=option) from None
    return path
