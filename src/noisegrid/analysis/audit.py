"""Audit: how noisy are the dataset's own labels, and which ones are wrong?

:func:`audit` estimates the label noise of a training split with confident learning (cleanlab's
``count.estimate_joint`` and ``filter.find_label_issues``) on out-of-fold class probabilities from
a cheap backend (TF-IDF + logistic regression by default, frozen-encoder embeddings with
``backend="embed"``), and ranks the labels most likely to be wrong for people to review.

It then **calibrates itself on the same data**: it injects uniform noise at known rates (0–30% by
default) with the project's own noise code (:func:`noisegrid.noise.inject_noise`), audits each
noisy copy the same way and reports the estimate against the truth, and the precision of the
suspect list at every depth (of the top ``k`` suspects, how many were flipped). That precision
curve is what :func:`noisegrid.advise` uses to price a label review.

Noise matrices here follow the project's orientation: entry ``[i, j]`` is
P(observed label j | true label i), rows sum to 1 (cleanlab's ``noise_matrix`` is the transpose).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import AnalysisError, ConfigError, DataError, require
from ..noise import inject_noise
from ..sampling import STREAM_AUDIT, rng_for
from ._types import Interval

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus

__all__ = [
    "DEFAULT_CALIBRATION_RATES",
    "DEFAULT_SAMPLE",
    "AuditResult",
    "audit",
    "load_audit",
]

DEFAULT_CALIBRATION_RATES = (0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30)
"""Uniform noise injected on top of the labels as given, for the calibration table."""

DEFAULT_SAMPLE = 10_000
"""Examples audited by default (a class-proportional random sample when the split is larger)."""

PRECISION_DEPTHS = (100, 500)
"""Depths of the suspect list whose precision the calibration table shows."""

AUDIT_BACKENDS = ("tfidf", "embed")
EXCERPT_CHARS = 200
_CURVE_POINTS = 160


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AuditResult:
    """What :func:`audit` found.

    Attributes
    ----------
    noise_rate : Interval
        Estimated fraction of wrong labels (confident learning: one minus the trace of the
        estimated joint of given and true labels), with a bootstrap interval over examples.
    per_class : pandas.DataFrame
        One row per class: ``label``, ``n_labelled``, ``wrong_rate`` (share of the examples given
        this label whose true class is another) with ``wrong_low``/``wrong_high``,
        ``flip_rate`` (share of the examples truly of this class labelled otherwise: one minus
        the noise matrix's diagonal), ``n_true_estimated`` and ``n_flagged``.
    noise_matrix : numpy.ndarray, shape (K, K)
        Entry ``[i, j]`` = P(observed label j | true label i); rows sum to 1.
    suspects : pandas.DataFrame
        The labels cleanlab flags as issues, most suspicious first: ``rank``, ``row`` (position in
        the training split), ``id`` (the source's id column, else the row), ``given_label``,
        ``suggested_label``, ``label_quality`` (cleanlab's self-confidence, lower is more
        suspicious), ``p_given``, ``p_suggested``, ``text`` (an excerpt).
    calibration : pandas.DataFrame
        One row per injected rate: ``injected`` (share of labels flipped), ``estimated`` with
        ``ci_low``/``ci_high``, ``added`` (estimate minus the estimate of the labels as given),
        ``expected`` (the total noise if the labels as given hold ``noise_rate``), ``n_flagged``
        and ``precision_at_<k>`` for each ``k`` of :data:`PRECISION_DEPTHS` (NaN at rate 0, or
        when the audit has fewer than ``k`` examples). Empty when calibration was skipped.
    precision_curves : pandas.DataFrame
        For each injected rate above 0: ``injected``, ``depth`` (suspects reviewed),
        ``depth_fraction`` (depth / examples audited), ``precision`` (share of those that were
        flipped) and ``recall`` (share of the flipped labels among them).
    label_names : tuple of str
    n_audited : int
        Examples audited (the sample).
    n_total : int
        Examples in the split the sample was drawn from.
    backend : str
        Backend of the out-of-fold probabilities.
    n_folds : int
    n_bootstrap : int
    seed : int
    source : str
        What was audited, for the output.
    notes : tuple of str
    """

    noise_rate: Interval
    per_class: pd.DataFrame
    noise_matrix: np.ndarray
    suspects: pd.DataFrame
    calibration: pd.DataFrame
    precision_curves: pd.DataFrame
    label_names: tuple[str, ...]
    n_audited: int
    n_total: int
    backend: str
    n_folds: int
    n_bootstrap: int
    seed: int
    source: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def headline(self) -> str:
        """The first line of the output, e.g. ``estimated label noise: 4.8% (95% CI 4.1–5.6%)``."""
        r = self.noise_rate
        if math.isnan(r.low):
            return f"estimated label noise: {_pct1(r.estimate)}"
        return (
            f"estimated label noise: {_pct1(r.estimate)} "
            f"({r.level * 100:g}% CI {_pct1(r.low, unit=False)}–{_pct1(r.high)})"
        )

    def calibration_summary(self) -> str:
        """One sentence on how the estimate tracks noise injected at known rates."""
        cal = self.calibration[self.calibration["injected"] > 0]
        if cal.empty:
            return "No calibration (no injected rates above 0)."
        err = (cal["estimated"] - cal["expected"]).to_numpy(dtype=float)
        slope = _slope(self.calibration["injected"], self.calibration["estimated"])
        worst = cal.iloc[int(np.argmax(np.abs(err)))]
        return (
            f"Against uniform noise injected at {_pct0(cal['injected'].min())}–"
            f"{_pct0(cal['injected'].max())}, the estimate rises {slope:.2f} points per injected "
            f"point and is off the expected total (the injected noise on top of "
            f"{_pct1(self.noise_rate.estimate)} of its own) by {_pts(float(np.mean(np.abs(err))))} "
            f"on average, at most {_pts(float(worst['estimated'] - worst['expected']), sign=True)} "
            f"(at {_pct0(worst['injected'])} injected)."
        )

    def review_precision(self, noise: float, depth_fraction: Any) -> np.ndarray:
        """Share of reviewed suspects that are wrong, as the calibration measured it.

        Parameters
        ----------
        noise : float
            The noise rate of the labels to review; the curves of the calibrated rates around it
            are interpolated (the nearest one is used outside their range).
        depth_fraction : float or array
            Suspects reviewed, as a fraction of the dataset (0–1).

        Returns
        -------
        numpy.ndarray
            Cumulative precision at each depth (0 where nothing is reviewed).

        Raises
        ------
        AnalysisError
            The audit has no calibration curves.
        """
        curves = self.precision_curves
        if curves.empty:
            raise AnalysisError(
                "this audit has no calibration curves (it ran without injected rates above 0); "
                "run it with calibration to price reviews"
            )
        d = np.atleast_1d(np.asarray(depth_fraction, dtype=float))
        rates = np.sort(curves["injected"].unique())

        def at(rate: float) -> np.ndarray:
            c = curves[curves["injected"] == rate]
            return np.interp(
                d,
                c["depth_fraction"].to_numpy(dtype=float),
                c["precision"].to_numpy(dtype=float),
                left=float(c["precision"].iloc[0]),
            )

        if noise <= rates[0]:
            out = at(float(rates[0]))
        elif noise >= rates[-1]:
            out = at(float(rates[-1]))
        else:
            hi = int(np.searchsorted(rates, noise))
            r0, r1 = float(rates[hi - 1]), float(rates[hi])
            w = (noise - r0) / (r1 - r0)
            out = (1 - w) * at(r0) + w * at(r1)
        return np.where(d > 0, np.clip(out, 0.0, 1.0), 0.0)

    def describe(self, *, n_suspects: int = 5) -> str:
        """The text the CLI prints: headline first, then the tables."""
        lines = [self.headline()]
        lines.append(
            (
                f"audited {self.n_audited:,} of {self.n_total:,} examples (a class-proportional "
                f"random sample, seed {self.seed})"
                if self.n_audited < self.n_total
                else f"audited all {self.n_total:,} examples"
            )
            + f" of {self.source}: {self.backend} out-of-fold probabilities "
            f"({self.n_folds}-fold), cleanlab confident learning, bootstrap B={self.n_bootstrap}"
        )
        lines.append("")
        lines.append(
            "per class (wrong = share of the examples given that label whose true class "
            "is another):"
        )
        lines.append(_format_frame(_per_class_view(self)))
        lines.append("")
        lines.append("noise matrix (row = true class, column = observed label, rows sum to 1):")
        lines.append(_format_frame(self.noise_matrix_frame().map(lambda v: f"{v:.3f}")))
        if not self.calibration.empty:
            lines.append("")
            lines.append("calibration (uniform noise injected on top of the labels as given):")
            lines.append(_format_frame(_calibration_view(self)))
            lines.append(self.calibration_summary())
        lines.append("")
        lines.append(
            f"{len(self.suspects):,} labels flagged as likely wrong"
            + (
                f"; the first {min(n_suspects, len(self.suspects))} (p_suggested: the out-of-fold "
                "probability of the suggested label):"
                if len(self.suspects)
                else "."
            )
        )
        for row in self.suspects.head(n_suspects).itertuples():
            text = str(row.text)
            short = text if len(text) <= 70 else text[:67] + "..."
            lines.append(
                f"  {row.rank:>3}. id {row.id}: given {row.given_label!r}, suggested "
                f"{row.suggested_label!r} (p_suggested={row.p_suggested:.2f}): {short}"
            )
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def noise_matrix_frame(self) -> pd.DataFrame:
        """:attr:`noise_matrix` labelled: index = true class, columns = observed label."""
        names = list(self.label_names)
        return pd.DataFrame(
            self.noise_matrix,
            index=pd.Index(names, name="true"),
            columns=pd.Index(names, name="observed"),
        )

    def save(self, out_dir: str | Path, *, figure: bool = True) -> list[Path]:
        """Write the tables (and the calibration figure) into ``out_dir``.

        Files: ``suspects.csv``, ``per_class.csv``, ``noise_matrix.csv``, ``calibration.csv``,
        ``precision_curves.csv``, ``audit.json`` (everything :func:`load_audit` needs) and, with
        ``figure``, ``calibration.png``.

        Returns
        -------
        list of Path
            The files written.
        """
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise AnalysisError(f"--out must be a folder; '{out}' is a file — pass a folder path")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        tables = {
            "suspects.csv": self.suspects,
            "per_class.csv": self.per_class,
            "calibration.csv": self.calibration,
            "precision_curves.csv": self.precision_curves,
        }
        for name, frame in tables.items():
            frame.to_csv(out / name, index=False)
            written.append(out / name)
        self.noise_matrix_frame().to_csv(out / "noise_matrix.csv")
        written.append(out / "noise_matrix.csv")
        meta = {
            "noise_rate": [self.noise_rate.estimate, self.noise_rate.low, self.noise_rate.high],
            "level": self.noise_rate.level,
            "method": self.noise_rate.method,
            "noise_matrix": self.noise_matrix.tolist(),
            "label_names": list(self.label_names),
            "n_audited": self.n_audited,
            "n_total": self.n_total,
            "backend": self.backend,
            "n_folds": self.n_folds,
            "n_bootstrap": self.n_bootstrap,
            "seed": self.seed,
            "source": self.source,
            "notes": list(self.notes),
        }
        (out / "audit.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        written.append(out / "audit.json")
        if figure and not self.calibration.empty:
            from ..report._advice import write_calibration_png

            written.append(write_calibration_png(self, out / "calibration.png"))
        return written


def load_audit(folder: str | Path) -> AuditResult:
    """Read an audit written by :meth:`AuditResult.save` (``noisegrid audit --out DIR``).

    Raises
    ------
    AnalysisError
        The folder has no ``audit.json`` or a table is missing.
    """
    path = Path(folder)
    meta_path = path / "audit.json"
    if not meta_path.is_file():
        raise AnalysisError(
            f"'{path}' holds no audit (no audit.json); write one with: noisegrid audit CONFIG "
            f"--out {path}"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    frames = {}
    for name in ("suspects", "per_class", "calibration", "precision_curves"):
        file = path / f"{name}.csv"
        if not file.is_file():
            raise AnalysisError(f"audit folder '{path}' lacks {file.name}; write the audit again")
        try:
            frames[name] = pd.read_csv(file)
        except pd.errors.EmptyDataError:
            frames[name] = pd.DataFrame()
    est, low, high = (float(x) if x is not None else math.nan for x in meta["noise_rate"])
    return AuditResult(
        noise_rate=Interval(est, low, high, float(meta["level"]), str(meta["method"])),
        per_class=frames["per_class"],
        noise_matrix=np.asarray(meta["noise_matrix"], dtype=float),
        suspects=frames["suspects"],
        calibration=frames["calibration"],
        precision_curves=frames["precision_curves"],
        label_names=tuple(meta["label_names"]),
        n_audited=int(meta["n_audited"]),
        n_total=int(meta["n_total"]),
        backend=str(meta["backend"]),
        n_folds=int(meta["n_folds"]),
        n_bootstrap=int(meta["n_bootstrap"]),
        seed=int(meta["seed"]),
        source=str(meta.get("source", "")),
        notes=tuple(meta.get("notes", ())),
    )


# --------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------


def audit(
    data: ExperimentSpec | str | Path | Corpus | Sequence[str],
    labels: Sequence[Any] | np.ndarray | None = None,
    *,
    overrides: Sequence[str] = (),
    backend: str = "tfidf",
    sample: int | None = DEFAULT_SAMPLE,
    n_folds: int = 5,
    calibration_rates: Sequence[float] = DEFAULT_CALIBRATION_RATES,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    ids: Sequence[Any] | None = None,
) -> AuditResult:
    """Estimate the noise in a dataset's own labels and rank the labels most likely wrong.

    Parameters
    ----------
    data : ExperimentSpec, path of an experiment TOML, Corpus, or sequence of str
        What to audit: the training split of the experiment's dataset (``[dataset]``), of a
        corpus, or these texts.
    labels : sequence, optional
        The texts' labels (any values: ints, strings); required with texts, not allowed
        otherwise.
    overrides : sequence of str, default ()
        ``section.key=value`` items applied to a TOML path, as for ``noisegrid run --set``.
    backend : {"tfidf", "embed"}, default "tfidf"
        Where the out-of-fold probabilities come from: TF-IDF + logistic regression (seconds), or
        logistic regression on frozen-encoder embeddings (needs the ``transformers`` extra;
        embeddings are cached). With a spec whose ``[backend]`` is the same backend, its options
        are used.
    sample : int or None, default 10000
        Audit a class-proportional random sample of this many examples when the split is larger;
        ``None`` audits every example.
    n_folds : int, default 5
        Cross-validation folds; every class needs at least this many examples.
    calibration_rates : sequence of float, default 0, 0.05, ..., 0.30
        Uniform noise rates injected on top of the labels as given for the calibration table and
        the suspect list's precision; ``()`` skips the calibration.
    n_bootstrap : int, default 200
        Bootstrap resamples of examples for the intervals (0: none).
    confidence : float, default 0.95
    seed : int, default 0
        Seeds the sample, the folds, the injected noise and the bootstrap (no global state).
    ids : sequence, optional
        Row ids of the texts for the suspect list (default: their positions).

    Returns
    -------
    AuditResult

    Raises
    ------
    AnalysisError, ConfigError, DataError
        Bad options, one class only, or too few examples of a class for the folds.
    MissingDependencyError
        cleanlab is not installed (``pip install 'noisegrid[audit]'``).

    Examples
    --------
    >>> import noisegrid  # doctest: +SKIP
    >>> result = noisegrid.audit("examples/laptop-tfidf.toml",  # doctest: +SKIP
    ...                          overrides=["dataset.source=../shared/data/imdb"])
    >>> print(result.headline())  # doctest: +SKIP
    estimated label noise: 2.6% (95% CI 2.3–2.9%)
    """
    _check_options(backend, sample, n_folds, n_bootstrap, confidence, seed)
    require("cleanlab", extra="audit", purpose="noisegrid audit")
    texts, y, names, row_ids, source, spec = _resolve_data(data, labels, ids, overrides)
    k = len(names)
    n_total = len(texts)
    rows = _sample_rows(y, k, sample, seed)
    _check_counts(y[rows], names, n_folds, sample is not None and len(rows) < n_total)
    rates = _check_rates(calibration_rates, k)
    if backend == "embed":
        _check_embed(spec)  # cheap: dependencies and the model, before any work

    sub_texts = [texts[int(i)] for i in rows]
    given = y[rows]
    oof = _OutOfFold(sub_texts, given, k, backend=backend, spec=spec, n_folds=n_folds, seed=seed)
    rng = rng_for(seed, STREAM_AUDIT, 2)

    from cleanlab import count, filter, rank

    proba = oof.predict(given)
    joint = count.estimate_joint(given, proba)
    estimate = float(1 - np.trace(joint))
    boot = _bootstrap_joints(given, proba, n_bootstrap, rng)
    level = confidence
    noise_ci = _percentile(
        [1 - np.trace(j) for j in boot], estimate, level, f"bootstrap over examples, B={len(boot)}"
    )

    issues = np.asarray(
        filter.find_label_issues(given, proba, return_indices_ranked_by="self_confidence"),
        dtype=np.int64,
    )
    quality = np.asarray(rank.get_label_quality_scores(given, proba), dtype=float)
    per_class = _per_class(joint, boot, given, issues, names, len(rows), level)
    suspects = _suspects(issues, given, proba, quality, rows, row_ids, sub_texts, names)

    cal_rows: list[dict[str, Any]] = []
    curves: list[pd.DataFrame] = []
    c = k / (k - 1)
    for rate in rates:
        if rate == 0:
            cal_rows.append(_calibration_row(0.0, estimate, noise_ci, len(issues), estimate, c, {}))
            continue
        noisy = inject_noise(given, rate, seed=seed, n_classes=k)
        p = oof.predict(noisy.labels, warm=True)
        j = count.estimate_joint(noisy.labels, p)
        est = float(1 - np.trace(j))
        ci = _percentile(
            [1 - np.trace(b) for b in _bootstrap_joints(noisy.labels, p, n_bootstrap, rng)],
            est,
            level,
            "",
        )
        flagged = np.asarray(
            filter.find_label_issues(noisy.labels, p, return_indices_ranked_by="self_confidence"),
            dtype=np.int64,
        )
        q = np.asarray(rank.get_label_quality_scores(noisy.labels, p), dtype=float)
        order = _suspect_order(flagged, q)
        hits = np.cumsum(noisy.flipped[order])
        prec = {
            depth: float(hits[depth - 1] / depth) if depth <= len(order) else math.nan
            for depth in PRECISION_DEPTHS
        }
        cal_rows.append(
            _calibration_row(noisy.realized_rate, est, ci, len(flagged), estimate, c, prec)
        )
        curves.append(_curve(noisy.realized_rate, hits, noisy.n_flipped))

    calibration = pd.DataFrame(cal_rows) if cal_rows else pd.DataFrame()
    curve_frame = (
        pd.concat(curves, ignore_index=True)
        if curves
        else pd.DataFrame(columns=["injected", "depth", "depth_fraction", "precision", "recall"])
    )
    notes = []
    if rates:
        notes.append(
            "Precision counts only the injected flips as hits: a suspect that is one of the "
            "data's own wrong labels counts as a miss, so it is a lower bound."
        )
    notes.append(
        "The interval resamples examples with their out-of-fold probabilities fixed; it does not "
        "include the variation from refitting the model."
    )
    return AuditResult(
        noise_rate=noise_ci,
        per_class=per_class,
        noise_matrix=_noise_matrix(joint),
        suspects=suspects,
        calibration=calibration,
        precision_curves=curve_frame,
        label_names=names,
        n_audited=len(rows),
        n_total=n_total,
        backend=backend,
        n_folds=n_folds,
        n_bootstrap=int(n_bootstrap),
        seed=seed,
        source=source,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _check_options(
    backend: str, sample: int | None, n_folds: int, n_bootstrap: int, confidence: float, seed: int
) -> None:
    if backend not in AUDIT_BACKENDS:
        raise ConfigError(
            f"the audit's backend must be one of {', '.join(AUDIT_BACKENDS)} (a cheap model for "
            f"out-of-fold probabilities); got {backend!r}"
        )
    if sample is not None and (not _is_int(sample) or sample < 2):
        raise ConfigError(
            f"sample must be a number of examples >= 2 (or None for all); got {sample!r}"
        )
    if not _is_int(n_folds) or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2; got {n_folds!r}")
    if not _is_int(n_bootstrap) or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap must be an integer >= 0; got {n_bootstrap!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _check_rates(rates: Sequence[float], k: int) -> list[float]:
    limit = 1 - 1 / k
    out = sorted({round(float(r), 6) for r in rates})
    bad = [r for r in out if not 0 <= r < limit]
    if bad:
        raise ConfigError(
            f"calibration rates must be fractions in [0, {limit:g}) for {k} classes; got {bad[0]}"
        )
    if out and out[0] != 0:
        out.insert(0, 0.0)  # the labels as given are the calibration's baseline
    return out


def _resolve_data(
    data: Any, labels: Any, ids: Any, overrides: Sequence[str]
) -> tuple[list[str], np.ndarray, tuple[str, ...], np.ndarray, str, ExperimentSpec | None]:
    from ..config import ExperimentSpec
    from ..data import Corpus, load_corpus

    spec: ExperimentSpec | None = None
    if isinstance(data, str | Path | ExperimentSpec):
        if labels is not None:
            raise ConfigError("labels are read from the experiment's dataset; do not pass labels")
        from ..results import resolve_spec

        spec = resolve_spec(
            data if isinstance(data, ExperimentSpec) else Path(data), overrides=overrides
        )
        data = load_corpus(spec.dataset)
    if isinstance(data, Corpus):
        if labels is not None:
            raise ConfigError("labels are read from the corpus; do not pass labels")
        extra = data.train.extra
        row_ids = extra["id"].to_numpy() if "id" in extra.columns else np.arange(len(data.train))
        split = spec.dataset.train_split if spec is not None else "train"
        return (
            list(data.train.texts),
            np.asarray(data.train.labels, dtype=np.int64),
            tuple(data.label_names),
            row_ids,
            f"{data.source} ({split} split)",
            spec,
        )
    if isinstance(data, pd.Series | np.ndarray):
        data = list(data)
    if not isinstance(data, Sequence) or (data and not isinstance(data[0], str)):
        raise ConfigError(
            "audit(data, ...) takes an experiment TOML path, an ExperimentSpec, a Corpus, or a "
            f"list of texts with labels; got {type(data).__name__}"
        )
    if labels is None:
        raise ConfigError("audit(texts, labels): give the texts' labels")
    values = list(labels)
    if len(values) != len(data):
        raise DataError(f"got {len(data)} texts but {len(values)} labels; give one label per text")
    empty = [i for i, t in enumerate(data) if not str(t).strip()]
    if empty:
        raise DataError(
            f"{len(empty)} texts are empty (rows {', '.join(map(str, empty[:5]))}); drop them"
        )
    names, y = _encode_labels(values)
    if ids is not None and len(ids) != len(data):
        raise DataError(f"got {len(data)} texts but {len(ids)} ids; give one id per text")
    row_ids = np.asarray(list(ids)) if ids is not None else np.arange(len(data))
    return [str(t) for t in data], y, names, row_ids, "the texts given", None


def _encode_labels(values: list[Any]) -> tuple[tuple[str, ...], np.ndarray]:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        raise DataError("some labels are missing (None or NaN); drop or fill those rows")
    numeric = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values)
    uniq = sorted(set(values)) if numeric else sorted({str(v) for v in values})
    index = {v: i for i, v in enumerate(uniq)}
    y = np.fromiter(
        (index[v if numeric else str(v)] for v in values), dtype=np.int64, count=len(values)
    )
    return tuple(str(v) for v in uniq), y


def _sample_rows(y: np.ndarray, k: int, sample: int | None, seed: int) -> np.ndarray:
    """A class-proportional random sample (largest remainders), or every row."""
    n = len(y)
    if sample is None or sample >= n:
        return np.arange(n)
    counts = np.bincount(y, minlength=k)
    quota = counts * sample / n
    take = np.floor(quota).astype(int)
    short = sample - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:short]] += 1
    rng = rng_for(seed, STREAM_AUDIT, 1)
    picked = [rng.permutation(np.flatnonzero(y == c))[: take[c]] for c in range(k)]
    return np.sort(np.concatenate(picked))


def _check_counts(y: np.ndarray, names: tuple[str, ...], n_folds: int, sampled: bool) -> None:
    k = len(names)
    if k < 2:
        only = f" ('{names[0]}')" if names else ""
        raise DataError(
            f"the labels have a single class{only}; an audit needs at least two classes — check "
            "the label column"
        )
    counts = np.bincount(y, minlength=k)
    c = int(counts.argmin())
    if counts[c] < n_folds:
        fix = "audit more examples (--sample) or lower --folds" if sampled else "lower --folds"
        raise DataError(
            f"class '{names[c]}' has {int(counts[c])} example(s) in the audited data, but "
            f"{n_folds}-fold cross-validation needs at least {n_folds} per class; {fix}, or drop "
            "that class"
        )


def _check_embed(spec: ExperimentSpec | None) -> None:
    from ..backends import get_backend_class

    get_backend_class("embed").check(_embed_spec(spec))


def _embed_spec(spec: ExperimentSpec | None) -> ExperimentSpec:
    """The spec the ``embed`` backend reads: the experiment's own when it embeds, else defaults."""
    from ..config import BackendSpec, ExperimentSpec

    if spec is None:
        return ExperimentSpec.from_dict(
            {"grid": {"sizes": [2], "noise_rates": [0.0]}, "backend": {"name": "embed"}}
        )
    if spec.backend.name != "embed":
        return spec.model_copy(update={"backend": BackendSpec(name="embed")})
    return spec


# --------------------------------------------------------------------------------------------
# Out-of-fold probabilities
# --------------------------------------------------------------------------------------------


class _OutOfFold:
    """Out-of-fold class probabilities for any labelling of one set of texts.

    Features are computed once: TF-IDF and the scaler are label-free, so fitting them on every
    audited text leaks no label into a held-out prediction. The folds are stratified by the labels
    as given and shared by every labelling, so calibration differs from the audit only in the
    labels. With ``warm=True`` a fold's classifier starts from its previous solution (the problem
    is convex: same optimum, fewer iterations).
    """

    def __init__(
        self,
        texts: list[str],
        given: np.ndarray,
        n_classes: int,
        *,
        backend: str,
        spec: ExperimentSpec | None,
        n_folds: int,
        seed: int,
    ) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        self.n_classes = n_classes
        self.x, options = _features(texts, backend, spec)
        rng = rng_for(seed, STREAM_AUDIT, 0)
        cv = StratifiedKFold(n_folds, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
        self.folds = list(cv.split(np.zeros(len(given)), given))
        self.models = [
            LogisticRegression(
                C=options["C"],
                max_iter=options["max_iter"],
                class_weight=options["class_weight"],
                random_state=seed,
            )
            for _ in self.folds
        ]

    def predict(self, labels: np.ndarray, *, warm: bool = False) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        proba = np.zeros((len(labels), self.n_classes))
        # One BLAS thread: for these problem sizes extra threads cost more in contention than
        # they save, several times over on a busy machine.
        with threadpool_limits(limits=1):
            for model, (train, test) in zip(self.models, self.folds, strict=True):
                model.set_params(warm_start=warm)
                model.fit(self.x[train], labels[train])
                p = model.predict_proba(self.x[test])
                proba[np.ix_(test, model.classes_)] = p
        return proba


def _features(
    texts: list[str], backend: str, spec: ExperimentSpec | None
) -> tuple[Any, dict[str, Any]]:
    from ..backends import get_backend_class

    if backend == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer

        cls = get_backend_class("tfidf")
        raw = spec.backend_options() if spec is not None and spec.backend.name == "tfidf" else {}
        o = cls.Options(**raw)
        vectorizer = TfidfVectorizer(
            ngram_range=(o.ngram_min, o.ngram_max),  # type: ignore[attr-defined]
            sublinear_tf=o.sublinear_tf,  # type: ignore[attr-defined]
            min_df=o.min_df,  # type: ignore[attr-defined]
            max_df=o.max_df,  # type: ignore[attr-defined]
            max_features=o.max_features,  # type: ignore[attr-defined]
            lowercase=o.lowercase,  # type: ignore[attr-defined]
            strip_accents=o.strip_accents,  # type: ignore[attr-defined]
            dtype=np.float32,
        )
        x = vectorizer.fit_transform(texts)
    else:
        from sklearn.preprocessing import StandardScaler

        from ..backends import make_backend

        espec = _embed_spec(spec)
        backend_obj = make_backend(espec, n_classes=2, cache_dir=espec.run.cache_path())
        o = backend_obj.options
        x = StandardScaler().fit_transform(backend_obj.features(texts))  # type: ignore[attr-defined]
    options = {
        "C": float(o.C),  # type: ignore[attr-defined]
        "max_iter": int(o.max_iter),  # type: ignore[attr-defined]
        "class_weight": o.class_weight,  # type: ignore[attr-defined]
    }
    return x, options


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _bootstrap_joints(
    labels: np.ndarray, proba: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> list[np.ndarray]:
    from cleanlab import count

    k = proba.shape[1]
    out = []
    n = len(labels)
    for _ in range(n_bootstrap):
        pick = rng.integers(0, n, size=n)
        if np.bincount(labels[pick], minlength=k).min() == 0:
            continue  # a resample without some class has no joint over all classes
        out.append(count.estimate_joint(labels[pick], proba[pick]))
    return out


def _percentile(draws: Sequence[float], estimate: float, level: float, method: str) -> Interval:
    if len(draws) < 2:
        return Interval(estimate, math.nan, math.nan, level, "no interval (n_bootstrap=0)")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(np.asarray(draws, dtype=float), [alpha, 1 - alpha])
    return Interval(estimate, float(lo), float(hi), level, method)


def _noise_matrix(joint: np.ndarray) -> np.ndarray:
    # joint[i, j] = P(given i, true j); the project's noise matrix is P(observed j | true i).
    true_mass = joint.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = (joint / true_mass[None, :]).T
    return np.nan_to_num(m, nan=0.0)


def _wrong_given(joint: np.ndarray) -> np.ndarray:
    given_mass = joint.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(1 - np.diag(joint) / given_mass, dtype=float)


def _per_class(
    joint: np.ndarray,
    boot: list[np.ndarray],
    given: np.ndarray,
    issues: np.ndarray,
    names: tuple[str, ...],
    n: int,
    level: float,
) -> pd.DataFrame:
    k = len(names)
    wrong = _wrong_given(joint)
    if len(boot) >= 2:
        draws = np.vstack([_wrong_given(b) for b in boot])
        alpha = (1 - level) / 2
        low, high = np.nanquantile(draws, alpha, axis=0), np.nanquantile(draws, 1 - alpha, axis=0)
    else:
        low = high = np.full(k, np.nan)
    flagged = np.bincount(given[issues], minlength=k) if len(issues) else np.zeros(k, int)
    return pd.DataFrame(
        {
            "label": list(names),
            "n_labelled": np.bincount(given, minlength=k),
            "wrong_rate": wrong,
            "wrong_low": low,
            "wrong_high": high,
            "flip_rate": 1 - np.diag(_noise_matrix(joint)),
            "n_true_estimated": np.round(joint.sum(axis=0) * n).astype(int),
            "n_flagged": flagged,
        }
    )


def _suspect_order(flagged: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """cleanlab's flagged issues (most suspicious first), then every other example by quality."""
    rest = np.setdiff1d(np.arange(len(quality)), flagged, assume_unique=False)
    rest = rest[np.argsort(quality[rest], kind="stable")]
    return np.concatenate([flagged, rest]).astype(np.int64)


def _suspects(
    issues: np.ndarray,
    given: np.ndarray,
    proba: np.ndarray,
    quality: np.ndarray,
    rows: np.ndarray,
    row_ids: np.ndarray,
    texts: list[str],
    names: tuple[str, ...],
) -> pd.DataFrame:
    others = proba[issues].copy()
    others[np.arange(len(issues)), given[issues]] = -np.inf
    suggested = others.argmax(axis=1) if len(issues) else np.zeros(0, dtype=np.int64)
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(issues) + 1),
            "row": rows[issues],
            "id": row_ids[rows[issues]],
            "given_label": [names[int(c)] for c in given[issues]],
            "suggested_label": [names[int(c)] for c in suggested],
            "label_quality": quality[issues],
            "p_given": proba[issues, given[issues]],
            "p_suggested": proba[issues, suggested],
            "text": [_excerpt(texts[int(i)]) for i in issues],
        }
    )


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _calibration_row(
    injected: float,
    estimate: float,
    ci: Interval,
    n_flagged: int,
    own: float,
    c: float,
    precision: dict[int, float],
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "injected": injected,
        "estimated": estimate,
        "ci_low": ci.low,
        "ci_high": ci.high,
        "added": estimate - own,
        # Flipping a share r of labels that are already wrong with rate e0 leaves
        # e0 + r − e0·r·K/(K−1) wrong (a flipped wrong label may land on the true class).
        "expected": own + injected - own * injected * c,
        "n_flagged": n_flagged,
    }
    for depth in PRECISION_DEPTHS:
        row[f"precision_at_{depth}"] = precision.get(depth, math.nan)
    return row


def _curve(injected: float, hits: np.ndarray, n_flipped: int) -> pd.DataFrame:
    n = len(hits)
    depths = np.unique(
        np.concatenate(
            [
                np.round(np.geomspace(1, n, _CURVE_POINTS)),
                np.round(np.linspace(1, n, _CURVE_POINTS // 2)),
                [d for d in PRECISION_DEPTHS if d <= n],
            ]
        ).astype(np.int64)
    )
    h = hits[depths - 1].astype(float)
    return pd.DataFrame(
        {
            "injected": injected,
            "depth": depths,
            "depth_fraction": depths / n,
            "precision": h / depths,
            "recall": h / n_flipped if n_flipped else np.nan,
        }
    )


def _slope(x: pd.Series, y: pd.Series) -> float:
    xs, ys = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
    if np.unique(xs).size < 2:
        return math.nan
    return float(np.polyfit(xs, ys, 1)[0])


def _per_class_view(result: AuditResult) -> pd.DataFrame:
    pc = result.per_class
    ci = [
        "" if math.isnan(lo) else f"{_pct1(lo, unit=False)}–{_pct1(hi)}"
        for lo, hi in zip(pc["wrong_low"], pc["wrong_high"], strict=True)
    ]
    return pd.DataFrame(
        {
            "class": pc["label"],
            "labelled": [f"{int(v):,}" for v in pc["n_labelled"]],
            "wrong": [_pct1(v) for v in pc["wrong_rate"]],
            "95% CI": ci,
            "flipped away": [_pct1(v) for v in pc["flip_rate"]],
            "flagged": [f"{int(v):,}" for v in pc["n_flagged"]],
        }
    )


def _calibration_view(result: AuditResult) -> pd.DataFrame:
    cal = result.calibration
    out = pd.DataFrame(
        {
            "injected": [_pct1(v) for v in cal["injected"]],
            "estimated": [_pct1(v) for v in cal["estimated"]],
            "95% CI": [
                "" if math.isnan(lo) else f"{_pct1(lo, unit=False)}–{_pct1(hi)}"
                for lo, hi in zip(cal["ci_low"], cal["ci_high"], strict=True)
            ],
            "expected": [_pct1(v) for v in cal["expected"]],
            "added": [_pts(v, sign=True) for v in cal["added"]],
        }
    )
    for depth in PRECISION_DEPTHS:
        col = cal[f"precision_at_{depth}"]
        out[f"precision@{depth}"] = ["—" if math.isnan(v) else f"{v:.2f}" for v in col]
    return out


def _format_frame(frame: pd.DataFrame) -> str:
    text = frame.to_string(index=frame.index.name is not None)
    return "\n".join("  " + line for line in text.splitlines())


def _pct1(x: float, *, unit: bool = True) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{100 * x:.1f}%" if unit else f"{100 * x:.1f}"


def _pct0(x: float) -> str:
    return f"{100 * x:g}%"


def _pts(x: float, *, sign: bool = False) -> str:
    return f"{100 * x:+.1f} points" if sign else f"{100 * x:.1f} points"
