"""The experiment spec: TOML loading, validation, ``--set`` overrides and the fingerprint.

This is the ground floor of the package: it imports nothing above :mod:`noisegrid.errors`. The
plug-in families (backends, noise models, executors) validate their own options one floor up, in
:mod:`noisegrid.plugins`, which installs itself here as the :class:`PluginCatalog`.

An :class:`ExperimentSpec` is frozen and fully validated before any work starts. Its
:meth:`~ExperimentSpec.fingerprint` hashes every field that changes a cell's result (dataset, noise
model and options, backend and options, the training settings the backend reads, evaluation
settings) and nothing that does not (the store path, the executor, the tracker, progress options,
and the grid's lists: a cell's result does not depend on which *other* cells are in the grid, so
growing a grid reuses the cells already done).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import ConfigError

FINGERPRINT_VERSION = 2
"""Bumped whenever the meaning of a stored result changes for the same spec.

2: a cell's training seed depends on (seed, train_size) only, no longer on its noise rate
(common random numbers between sibling cells), so results differ from version 1's."""

NOISE_RATE_DECIMALS = 6
"""Noise rates are rounded to this many decimals, so 0.025 * 3 and 0.075 are the same cell."""


class PluginCatalog(Protocol):
    """What the spec asks of the plug-in families, answered one floor up (``noisegrid.plugins``).

    This module is the ground floor and imports nothing above :mod:`noisegrid.errors`; the plug-in
    layer installs its catalog with :func:`set_plugin_catalog` when it is imported, which
    :func:`plugin_catalog` does by name on first use.
    """

    def check(self, spec: ExperimentSpec) -> None:
        """Validate the backend's and noise models' options and the executor's name."""

    def noise_keys(self, model: str) -> Collection[str]:
        """The ``[noise]`` keys noise model ``model`` reads."""

    def train_keys(self, backend: str) -> Collection[str]:
        """The ``[train]`` keys backend ``backend`` reads."""


_catalog: PluginCatalog | None = None


def set_plugin_catalog(catalog: PluginCatalog) -> None:
    """Install the catalog that validates plug-in options (called by ``noisegrid.plugins``)."""
    global _catalog
    _catalog = catalog


PLUGIN_LAYER = "noisegrid.plugins"
"""The module that installs the catalog when imported (found by name, like an entry point)."""


def plugin_catalog() -> PluginCatalog:
    """The installed plug-in catalog, loading the plug-in layer by name on first use.

    The layer is located by name rather than imported here, so the spec never depends on the
    plug-ins above it; importing it registers the catalog (:func:`set_plugin_catalog`).
    """
    if _catalog is None:
        importlib.import_module(PLUGIN_LAYER)
    if _catalog is None:  # pragma: no cover - the plug-in layer always installs one
        raise RuntimeError(f"{PLUGIN_LAYER} did not install a plug-in catalog")
    return _catalog


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _OpenSection(BaseModel):
    """A section whose extra keys are validated later by a plug-in (backend or noise model)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def options(self, *, exclude: Sequence[str] = ()) -> dict[str, Any]:
        """Return the section's keys as a plain dict (plug-in options)."""
        data = self.model_dump()
        return {k: v for k, v in data.items() if k not in exclude}


class DatasetSpec(_Section):
    """``[dataset]``: where the corpus comes from and which columns to read."""

    source: str = "imdb"
    """A Hugging Face hub name (``imdb``), a local folder of split files, or an aclImdb folder."""
    config_name: str | None = None
    """Hugging Face dataset configuration name, for hub datasets that have several."""
    text_column: str = "text"
    label_column: str = "label"
    train_split: str = "train"
    test_split: str = "test"

    @model_validator(mode="after")
    def _distinct_splits(self) -> DatasetSpec:
        if self.train_split == self.test_split:
            raise ValueError(
                f"train_split and test_split are both '{self.train_split}'; the test sample must "
                "come from a different split than the training data"
            )
        return self


class GridSpec(_Section):
    """``[grid]``: the cells to run (train size × noise rate × seed) and the noise model."""

    sizes: tuple[int, ...] = Field(min_length=1)
    noise_rates: tuple[float, ...] = Field(min_length=1)
    seeds: tuple[int, ...] = (0,)
    repeats: int | None = Field(default=None, ge=1)
    """Shortcut for ``seeds = [0, 1, ..., repeats - 1]``."""
    noise_model: str | tuple[str, ...] = "uniform"
    """One noise model, or several: the grid then runs once under each (see
    :meth:`ExperimentSpec.variants`)."""

    @field_validator("sizes", "noise_rates", "seeds", mode="before")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        # A single number is the commonest slip (seeds = 0); say what to write instead.
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            raise ValueError(f"{info.field_name} must be a list; use a list such as [{v}]")
        # pydantic would read true as 1: a boolean in a list of numbers is a slip, not a number.
        if isinstance(v, (list, tuple)) and any(isinstance(x, bool) for x in v):
            raise ValueError(f"{info.field_name} must hold numbers, not true/false")
        return v

    @field_validator("noise_model")
    @classmethod
    def _noise_models(cls, v: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(v, str):
            return v
        if not v:
            raise ValueError('give at least one noise model, e.g. noise_model = "uniform"')
        names = tuple(dict.fromkeys(v))
        return names[0] if len(names) == 1 else names

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [s for s in v if s < 2]
        if bad:
            raise ValueError(f"every size must be an integer >= 2; got {bad}")
        return tuple(sorted(set(v)))

    @field_validator("noise_rates")
    @classmethod
    def _rates(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        bad = [r for r in v if not 0.0 <= r < 1.0]
        if bad:
            raise ValueError(f"every noise rate must be a fraction in [0, 1); got {bad}")
        return tuple(sorted({round(float(r), NOISE_RATE_DECIMALS) for r in v}))

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("seeds must not be empty; use e.g. seeds = [0]")
        bad = [s for s in v if s < 0]
        if bad:
            raise ValueError(f"seeds must be non-negative integers; got {bad}")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _repeats(self) -> GridSpec:
        if self.repeats is not None:
            if "seeds" in self.model_fields_set:
                raise ValueError("give either seeds or repeats, not both")
            object.__setattr__(self, "seeds", tuple(range(self.repeats)))
        return self

    @property
    def noise_model_name(self) -> str:
        """The noise model of a one-model grid (a variant); raises for several."""
        if not isinstance(self.noise_model, str):
            raise ValueError("this grid has several noise models; use ExperimentSpec.variants()")
        return self.noise_model

    @property
    def noise_models(self) -> tuple[str, ...]:
        return (self.noise_model,) if isinstance(self.noise_model, str) else self.noise_model

    @property
    def n_cells(self) -> int:
        """Cells per noise model: sizes × noise rates × seeds."""
        return len(self.sizes) * len(self.noise_rates) * len(self.seeds)

    @property
    def n_cells_total(self) -> int:
        """Cells over every noise model of the grid."""
        return self.n_cells * len(self.noise_models)


class NoiseSpec(_OpenSection):
    """``[noise]``: options of the grid's noise model (validated by that model)."""


class BackendSpec(_OpenSection):
    """``[backend]``: ``name`` plus that backend's options (validated by that backend)."""

    name: str


class TrainSpec(_Section):
    """``[train]``: the training budget and hyper-parameters a backend reads.

    Defaults are the reference experiment's (distilbert fine-tuning: lr 2e-5, batch 16, 2 epochs,
    weight decay 0.01). The budget is ``epochs`` (default) or a fixed number of ``steps``; giving
    ``steps`` switches to a step budget, and giving both is an error.
    """

    epochs: float = Field(default=2.0, gt=0)
    steps: int | None = Field(default=None, ge=1)
    learning_rate: float = Field(default=2e-5, gt=0)
    batch_size: int = Field(default=16, ge=1)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    max_length: int | None = Field(default=None, ge=8)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    eval_batch_size: int = Field(default=128, ge=1)

    @model_validator(mode="after")
    def _one_budget(self) -> TrainSpec:
        if self.steps is not None and "epochs" in self.model_fields_set:
            raise ValueError(
                "give either epochs or steps as the training budget, not both "
                f"(got epochs = {self.epochs}, steps = {self.steps})"
            )
        return self

    @property
    def budget(self) -> str:
        """``"epochs"`` or ``"steps"``: which budget this spec fixes."""
        return "steps" if self.steps is not None else "epochs"


DEFAULT_TEST_SIZE_CAP = 2000
"""The most test rows an unset ``[eval] test_size`` draws (:meth:`EvalSpec.resolve_test_size`)."""


class EvalSpec(_Section):
    """``[eval]``: the held-out test sample (class-balanced, drawn once per seed)."""

    test_size: int | None = Field(default=None, ge=2)
    """Rows in the test sample; unset: the largest class-balanced sample of the test split up to
    :data:`DEFAULT_TEST_SIZE_CAP` rows."""

    def resolve_test_size(self, n_classes: int, max_test_size: int) -> int:
        """The test sample's size for a corpus with ``n_classes`` classes.

        Parameters
        ----------
        n_classes : int
            K, the number of classes.
        max_test_size : int
            K × the smallest class count of the usable test split (after dropping rows that
            duplicate training texts).

        Returns
        -------
        int
            ``test_size`` when set; otherwise ``min(2000, max_test_size)`` rounded down to a
            multiple of K.

        Examples
        --------
        >>> EvalSpec().resolve_test_size(3, 12_000)
        1998
        >>> EvalSpec().resolve_test_size(5, 150)
        150
        >>> EvalSpec(test_size=500).resolve_test_size(2, 12_000)
        500
        """
        if self.test_size is not None:
            return self.test_size
        cap = min(DEFAULT_TEST_SIZE_CAP, max_test_size)
        return cap - cap % n_classes

    def fingerprint_data(self) -> dict[str, Any]:
        """What the fingerprint hashes of ``[eval]``.

        An unset ``test_size`` hashes as the cap, the value it had before it depended on the
        data, so grids stored then keep their cells. No two different test samples share it: where
        the automatic size differs from the cap, an explicit ``test_size`` equal to the cap is
        refused (not a multiple of K, or larger than the test split allows).
        """
        return {"test_size": DEFAULT_TEST_SIZE_CAP if self.test_size is None else self.test_size}


class RunSpec(_Section):
    """``[run]``: where results go and how cells are executed. Never part of the fingerprint."""

    store: str = "runs/noisegrid.sqlite"
    """The results database; a config file's default is ``runs/noisegrid.sqlite`` in its folder."""
    executor: str = "local"
    workers: int | Literal["auto"] = "auto"
    """Parallel worker processes for the local executor: ``"auto"`` runs as many as the cores fit
    at the backend's threads per worker (tfidf: one per core; the transformer backends: one) when
    the grid has enough work to pay for starting them; a number fixes it (1: in the driver's own
    process). With Ray, a number above 1 sets the number of actors; otherwise as many start as the
    cluster's resources fit."""
    cache_dir: str | None = None
    """Where tokenisations and embeddings are cached; default ``$NOISEGRID_CACHE`` or
    ``~/.cache/noisegrid``."""
    address: str | None = None
    """Ray only: ``auto``, ``host:port``, ``ray://host:port``, or none to start a local instance."""
    resources: dict[str, float] = Field(default_factory=lambda: {"cpu": 1.0})
    """Per-cell resources for Ray: ``{cpu = 1, gpu = 0.5}``; fractional GPUs share a device."""
    max_retries: int = Field(default=3, ge=0)
    """How many times a cell whose worker died is retried (a cell that raises is not retried)."""
    stack: int | Literal["auto"] = "auto"
    """How many sibling cells (noise rates of one size and seed) a backend may fit together:
    ``"auto"`` lets the backend choose (the GPU's memory for stacked fine-tuning; all of them for
    tfidf), a number caps it, and ``1`` fits one cell at a time (the per-cell path)."""

    @field_validator("workers")
    @classmethod
    def _workers(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError('workers must be "auto" or an integer >= 1 (1: no worker processes)')
        return v

    @field_validator("stack")
    @classmethod
    def _stack(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError('stack must be "auto" or an integer >= 1 (1: one cell at a time)')
        return v

    def cache_path(self) -> Path:
        """``cache_dir``, else ``$NOISEGRID_CACHE``, else ``~/.cache/noisegrid``."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        env = os.environ.get("NOISEGRID_CACHE")
        return Path(env).expanduser() if env else Path.home() / ".cache" / "noisegrid"


class AdviceSpec(_Section):
    """``[advice]``: what labels and reviews cost, for ``noisegrid advise`` and the report.

    Never part of the fingerprint. ``size`` and ``noise`` default to the audited training split
    (its size and the audit's noise estimate); ``review_precision`` (a fixed share of reviewed
    labels that turn out wrong) replaces the audit's calibrated precision when given.
    """

    label_cost: float = Field(gt=0)
    """Cost of one new label."""
    review_cost: float = Field(gt=0)
    """Cost of reviewing one existing label."""
    budget: float = Field(gt=0)
    """Money to spend."""
    size: int | None = Field(default=None, ge=1)
    noise: float | None = Field(default=None, ge=0, lt=1)
    new_label_noise: float | None = Field(default=None, ge=0, lt=1)
    """Noise rate of new labels; default: the current noise rate."""
    review_precision: float | None = Field(default=None, ge=0, le=1)
    audit: str | None = None
    """A folder written by ``noisegrid audit --out``, reused instead of auditing again."""
    audit_sample: int | None = Field(default=None, ge=2)
    """Examples the audit samples when advice needs one (default: the audit's default)."""
    currency: str = "$"


class TrackSpec(_Section):
    """``[track]``: where results are also logged (an experiment tracker). Never fingerprinted.

    The results store stays the source of truth: a tracker that is down never loses or blocks a
    result, and ``noisegrid export CONFIG --to NAME`` logs what it missed.
    """

    to: str
    """The tracker: ``"mlflow"``."""
    uri: str | None = None
    """Where it lives; MLflow's default is ``$MLFLOW_TRACKING_URI``, else a ``sqlite:///``
    database ``mlflow.db`` in the store's folder."""
    experiment: str | None = None
    """The tracker's experiment; default: the spec's ``name``, else ``noisegrid``."""

    @field_validator("to", "uri", "experiment")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v


class ExperimentSpec(_Section):
    """A complete, validated experiment. Build with :func:`load_spec` or :meth:`from_dict`.

    Examples
    --------
    >>> spec = ExperimentSpec.from_dict({
    ...     "grid": {"sizes": [100, 200], "noise_rates": [0.0, 0.1]},
    ...     "backend": {"name": "tfidf"},
    ... })
    >>> spec.grid.n_cells
    4
    >>> len(spec.fingerprint())
    16
    """

    name: str | None = None
    description: str | None = None
    dataset: DatasetSpec = DatasetSpec()
    grid: GridSpec
    noise: NoiseSpec = NoiseSpec()
    backend: BackendSpec
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    run: RunSpec = RunSpec()
    advice: AdviceSpec | None = None
    track: TrackSpec | None = None

    _data_identity: str | None = PrivateAttr(default=None)

    @property
    def data_identity(self) -> str | None:
        """What the dataset is, as the loading step resolved it (None until then).

        A hash of the local split files' content, or a hub dataset's name, configuration and
        revision; set by :func:`noisegrid.data.resolve_data_identity`. When set, it stands for
        ``dataset.source`` in the fingerprint, so the same data under another path spelling shares
        the stored cells and new data in the same place does not.
        """
        return self._data_identity

    def with_data_identity(self, identity: str) -> ExperimentSpec:
        """A copy of the spec whose fingerprint identifies the data by ``identity``."""
        spec = self.model_copy()
        spec._data_identity = identity
        return spec

    @model_validator(mode="after")
    def _plugins(self) -> ExperimentSpec:
        # Plug-in options are checked here so a typo under [backend] or [noise] fails at load time;
        # the checks themselves live one floor up, in the catalog (noisegrid.plugins).
        plugin_catalog().check(self)
        return self

    @property
    def is_variant(self) -> bool:
        """True when the spec has exactly one noise model (it can be run and fingerprinted)."""
        return isinstance(self.grid.noise_model, str)

    def variants(self) -> list[ExperimentSpec]:
        """One spec per noise model, each with only the ``[noise]`` keys that model reads.

        A spec with one noise model is its own only variant. Each variant has its own fingerprint,
        so the uniform variant of a multi-model grid reuses a plain uniform grid's cells.
        """
        catalog = plugin_catalog()
        out = []
        options = self.noise.options()
        for model in self.grid.noise_models:
            fields = catalog.noise_keys(model)
            grid = self.grid.model_copy(update={"noise_model": model})
            noise = NoiseSpec(**{k: v for k, v in options.items() if k in fields})
            out.append(self.model_copy(update={"grid": grid, "noise": noise}))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> ExperimentSpec:
        """Validate a nested mapping (as parsed from TOML); raise :class:`ConfigError`."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(exc, source)) from None

    def fingerprint(self) -> str:
        """Hash of everything that changes a cell's result; 16 hex characters.

        The dataset enters by its :attr:`data_identity` once resolved, else by ``dataset.source``
        as written. A spec with several noise models hashes its variants' fingerprints.
        """
        if not self.is_variant:
            joined = ",".join(v.fingerprint() for v in self.variants())
            return hashlib.sha256(joined.encode()).hexdigest()[:16]
        dataset = self.dataset.model_dump()
        if self._data_identity is not None:
            dataset["source"] = self._data_identity
        payload = {
            "version": FINGERPRINT_VERSION,
            "dataset": dataset,
            "noise_model": self.grid.noise_model,
            "noise": self.noise.model_dump(),
            "backend": self.backend.model_dump(),
            "train": self.used_train(),
            "eval": self.eval.fingerprint_data(),
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (round-trips through :meth:`from_dict`)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["grid"].pop("repeats", None)
        return data

    def used_train(self) -> dict[str, Any]:
        """The ``[train]`` settings the spec's backend reads (tfidf reads none of them).

        Only these enter the fingerprint, so ``--set train.epochs=3`` on a tfidf grid reuses its
        cells.
        """
        keys = plugin_catalog().train_keys(self.backend.name)
        return {k: v for k, v in self.train.model_dump().items() if k in keys}

    def effective_dict(self) -> dict[str, Any]:
        """The spec as plain data, with only the settings its backend and noise models read.

        What a report lists as "the experiment": ``[train]`` keeps the keys the backend reads
        (dropped entirely when it reads none), ``[noise]`` the keys some noise model of the grid
        reads (the spec is already validated, so that is every key given).
        """
        data = self.to_dict()
        used = self.used_train()
        if used:
            data["train"] = {k: v for k, v in data.get("train", {}).items() if k in used}
        else:
            data.pop("train", None)
        if not data.get("noise"):
            data.pop("noise", None)
        return data

    def backend_options(self) -> dict[str, Any]:
        return self.backend.options(exclude=("name",))


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse one ``--set section.key=value`` item into a key path and a value.

    The value is read as a TOML literal (``[1000, 2000]``, ``0.1``, ``true``, ``"text"``); a value
    that is not valid TOML is taken as a plain string, so ``--set dataset.source=../data`` works
    without quotes, unless it starts like a list, table or quoted string (``[200,``): that is a
    typo and raises :class:`ConfigError`.

    Examples
    --------
    >>> parse_override("grid.sizes=[100, 200]")
    (['grid', 'sizes'], [100, 200])
    >>> parse_override("dataset.source=../shared/data/imdb")
    (['dataset', 'source'], '../shared/data/imdb')
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"--set expects section.key=value, got '{item}'; e.g. --set grid.seeds=[0,1,2]"
        )
    path = key.split(".")
    if any(not part for part in path):
        raise ConfigError(f"--set key '{key}' has an empty part; write it as section.key")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError as exc:
        if raw.strip().startswith(("[", "{", '"', "'")):
            # Meant as a list, table or quoted string: taking it as a bare word would hide the typo.
            raise ConfigError(
                f"--set {key}: {raw.strip()} is not a valid TOML value ({exc}); write it as a "
                "TOML literal, e.g. --set grid.sizes=[200,400]"
            ) from None
        value = raw.strip()
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``section.key=value`` override applied."""
    out = json.loads(json.dumps(data))  # deep copy of plain TOML data
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item}: '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return out


def load_spec(
    path: str | Path,
    *,
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
) -> ExperimentSpec:
    """Load, override and validate an experiment TOML file.

    Parameters
    ----------
    path : str or Path
        The experiment's TOML file.
    overrides : sequence of str, default ()
        ``section.key=value`` items applied after loading (values are TOML literals).
    store : str or Path, optional
        Results database path; overrides ``[run] store``.

    Returns
    -------
    ExperimentSpec

    Raises
    ------
    ConfigError
        The file is missing or not valid TOML, a key is unknown, or a value is invalid.
    """
    path = Path(path)
    if path.is_dir():
        found = ", ".join(sorted(p.name for p in path.glob("*.toml"))[:5])
        raise ConfigError(
            f"config '{path}' is a folder, not a file; pass the path of an experiment TOML"
            + (f" (the folder has: {found})" if found else "")
        )
    if not path.is_file():
        raise ConfigError(
            f"config file '{path}' does not exist; pass the path of an experiment TOML"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None
    # Paths written in the file are relative to the file; --set and --store values are relative
    # to the current directory (where the user typed them). Both end up absolute, so the spec
    # means the same from any directory (and `validate --explain` writes it out as such).
    base = path.absolute().parent
    data = resolve_paths(data, base=base)
    run = data.setdefault("run", {})
    if isinstance(run, dict) and "store" not in run:
        # The default store, too, sits by the config: the same results from any directory.
        run["store"] = _absolute(RunSpec.model_fields["store"].default, base)
    data = _paths_from_here(data, apply_overrides(data, overrides))
    if store is not None:
        given = str(store)
        # An empty --store (a folder, not a file) is left for validation to name as such.
        data.setdefault("run", {})["store"] = (
            given if given.strip() in ("", ".") else _absolute(given, Path.cwd())
        )
    return ExperimentSpec.from_dict(data, source=str(path))


def _paths_from_here(before: Mapping[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``after`` with the paths that ``--set`` changed resolved against the current directory."""
    changed: dict[str, Any] = {}
    for section, key in PATH_KEYS:
        node, old = after.get(section), before.get(section)
        if not isinstance(node, dict) or key not in node:
            continue
        if isinstance(old, Mapping) and old.get(key) == node[key]:
            continue
        changed.setdefault(section, {})[key] = node[key]
    resolved = resolve_paths(changed, base=Path.cwd())
    for section, values in resolved.items():
        after[section] = {**after[section], **values}
    return after


PATH_KEYS = (("dataset", "source"), ("run", "store"), ("run", "cache_dir"))
"""The keys whose relative values :func:`resolve_paths` resolves against a config file's folder."""

_SPLIT_FILE_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_paths(data: Mapping[str, Any], *, base: Path) -> dict[str, Any]:
    """Return a copy of config ``data`` whose relative paths are absolute, relative to ``base``.

    ``run.store`` and ``run.cache_dir`` are always paths. ``dataset.source`` is a path when it
    exists relative to ``base`` or looks like one (starts with ``.``, ``~`` or ``/``, names a
    split file such as ``reviews.csv``, or has more than one ``/``); otherwise it is a Hugging Face
    dataset name and is kept as written: ``imdb``, or ``owner/name`` (write ``./owner/name`` for a
    folder that does not exist yet). ``~`` expands to the home folder.

    Parameters
    ----------
    data : mapping
        Parsed TOML, before validation.
    base : Path
        The config file's folder (absolute).

    Returns
    -------
    dict

    Examples
    --------
    >>> resolve_paths({"run": {"store": "runs/a.sqlite"}}, base=Path("/exp"))["run"]["store"]
    '/exp/runs/a.sqlite'
    >>> resolve_paths({"dataset": {"source": "imdb"}}, base=Path("/exp"))["dataset"]["source"]
    'imdb'
    >>> resolve_paths({"dataset": {"source": "../data"}}, base=Path("/exp"))["dataset"]["source"]
    '/data'
    """
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for section, key in PATH_KEYS:
        node = out.get(section)
        if not isinstance(node, dict) or not isinstance(node.get(key), str):
            continue
        value = node[key]
        if not value.strip():
            continue  # an empty path is refused by validation, with its own message
        if section == "dataset" and not _is_local_path(value, base):
            continue
        node[key] = _absolute(value, base)
    return out


def _is_local_path(source: str, base: Path) -> bool:
    if source.startswith((".", "~", "/")) or "\\" in source:
        return True
    if Path(source).suffix in _SPLIT_FILE_SUFFIXES or (base / source).exists():
        return True
    return "/" in source and not _HUB_ID.match(source)


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    # normpath, not resolve(): keep symlinked folders as the user named them in messages.
    return os.path.normpath(path if path.is_absolute() else base / path)


def _format_validation_error(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = _where(loc)
        if err["type"] == "extra_forbidden":
            parent = _SECTIONS.get(loc[0]) if len(loc) > 1 else ExperimentSpec
            valid = ", ".join(parent.model_fields) if parent else ""
            parts.append(f"unknown key {where}; valid keys here: {valid}")
        elif err["type"] == "missing":
            parts.append(f"missing required key {where}")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            given = err.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            parts.append(f"{where}: {msg}{shown}")
    return f"invalid config {source}: " + "; ".join(parts)


def _where(loc: list[str]) -> str:
    if not loc:
        return "(top level)"
    if len(loc) == 1:
        return f"'{loc[0]}'" if loc[0] not in _SECTIONS else f"[{loc[0]}]"
    return f"'{loc[1]}' in [{loc[0]}]" + ("".join(f"[{p}]" for p in loc[2:]))


_SECTIONS: dict[str, type[BaseModel]] = {
    "dataset": DatasetSpec,
    "grid": GridSpec,
    "noise": NoiseSpec,
    "backend": BackendSpec,
    "train": TrainSpec,
    "eval": EvalSpec,
    "run": RunSpec,
    "advice": AdviceSpec,
    "track": TrackSpec,
}
