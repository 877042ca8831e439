"""What an audit found: :class:`AuditResult`, its text, its files, and :func:`load_audit`.

The numbers come from :func:`noisegrid.auditing.audit`; the calibration figure is drawn by
:mod:`noisegrid.report` from this object.

Noise matrices here follow the project's orientation: entry ``[i, j]`` is
P(observed label j | true label i), rows sum to 1 (cleanlab's ``noise_matrix`` is the transpose).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import Interval
from ..errors import AnalysisError

__all__ = [
    "DEFAULT_CALIBRATION_RATES",
    "DEFAULT_SAMPLE",
    "PRECISION_DEPTHS",
    "AuditResult",
    "load_audit",
]

DEFAULT_CALIBRATION_RATES = (0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30)
"""Uniform noise injected on top of the labels as given, for the calibration table."""

DEFAULT_SAMPLE = 10_000
"""Examples audited by default (a class-proportional random sample when the split is larger)."""

PRECISION_DEPTHS = (100, 500)
"""Depths of the suspect list whose precision the calibration table shows."""


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AuditResult:
    """What :func:`~noisegrid.auditing.audit` found.

    Attributes
    ----------
    noise_rate : Interval
        The raw estimate of the fraction of wrong labels (confident learning: one minus the trace
        of the estimated joint of given and true labels), with a bootstrap interval over examples
        (out-of-fold probabilities held fixed).
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
    calibrated_noise_rate : Interval
        The headline: the raw count read off the reference curve (NaN without calibration);
        see :mod:`noisegrid.analysis.calibration`. An upper bound on the wrong labels: examples
        the model cannot separate count too.
    reference_curve : tuple of (float, float)
        The reference curve: (known noise rate, count) with the model's own out-of-fold
        predictions as labels and uniform noise injected on them.
    cv_accuracy : float
        Out-of-fold accuracy of the audit's model against the labels as given.
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
    calibrated_noise_rate: Interval = field(
        default_factory=lambda: Interval(math.nan, math.nan, math.nan, 0.95, "no calibration")
    )
    reference_curve: tuple[tuple[float, float], ...] = ()
    cv_accuracy: float = math.nan

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    @property
    def noise_estimate(self) -> float:
        """The noise rate to act on: the calibrated estimate, else the raw one."""
        c = self.calibrated_noise_rate.estimate
        return c if math.isfinite(c) else self.noise_rate.estimate

    def headline(self) -> str:
        """The first line of the output: the calibrated estimate, the raw count beside it.

        E.g. ``label noise: 2.1% calibrated (95% CI 1.6–2.6%), an upper bound; raw count 2.6%
        (95% CI 2.3–2.9%); cross-validated accuracy 88.4%``. Without a calibration, the raw count
        leads (``estimated label noise: 4.8% (95% CI 4.1–5.6%)``).
        """
        r = self.noise_rate
        raw = _pct1(r.estimate) + _ci(r)
        cal = self.calibrated_noise_rate
        if not math.isfinite(cal.estimate):
            return f"estimated label noise: {raw}"
        acc = (
            f"; cross-validated accuracy {_pct1(self.cv_accuracy)}"
            if math.isfinite(self.cv_accuracy)
            else ""
        )
        return (
            f"label noise: {_pct1(cal.estimate)} calibrated{_ci(cal)}, an upper bound; "
            f"raw count {raw}{acc}"
        )

    def upper_bound_note(self) -> str:
        """Why the headline is an upper bound, in one sentence."""
        acc = (
            f" (the model is {_pct1(self.cv_accuracy)} accurate out of fold)"
            if math.isfinite(self.cv_accuracy)
            else ""
        )
        curve = self.reference_curve
        slope = (
            (curve[-1][1] - curve[0][1]) / (curve[-1][0] - curve[0][0])
            if len(curve) >= 2 and curve[-1][0] > curve[0][0]
            else math.nan
        )
        beta = (
            f"; the calibration corrects how the count responds to noise (on the reference curve "
            f"it rises {slope:.2f} points per point), not that"
            if math.isfinite(slope)
            else ""
        )
        return (
            "An upper bound: confident learning counts the examples the model cannot separate"
            f"{acc} as wrong labels too, so the level mixes label errors with hard examples{beta}."
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
            The (total) noise rate of the labels to review. Each curve is keyed by the total noise
            of its copy (:meth:`curve_totals`: the injected rate on top of the data's own,
            :attr:`noise_estimate`); the curves around ``noise`` are interpolated, the noisiest
            is used above their range, and below it the least noisy is scaled by
            ``noise / its total`` (fewer wrong labels, proportionally fewer at every depth).
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
        totals = self.curve_totals(rates)

        def at(rate: float) -> np.ndarray:
            c = curves[curves["injected"] == rate]
            return np.interp(
                d,
                c["depth_fraction"].to_numpy(dtype=float),
                c["precision"].to_numpy(dtype=float),
                left=float(c["precision"].iloc[0]),
            )

        if noise <= totals[0]:
            out = at(float(rates[0])) * (max(noise, 0.0) / totals[0] if totals[0] > 0 else 1.0)
        elif noise >= totals[-1]:
            out = at(float(rates[-1]))
        else:
            hi = int(np.searchsorted(totals, noise))
            t0, t1 = float(totals[hi - 1]), float(totals[hi])
            w = (noise - t0) / (t1 - t0)
            out = (1 - w) * at(float(rates[hi - 1])) + w * at(float(rates[hi]))
        return np.where(d > 0, np.clip(out, 0.0, 1.0), 0.0)

    def curve_totals(self, injected: Any) -> np.ndarray:
        """The total noise of a copy with ``injected`` noise on top of the data's own.

        Flipping a share ``r`` of labels that are wrong at rate ``e0`` leaves
        ``e0 + r − e0·r·K/(K − 1)`` wrong; ``e0`` is :attr:`noise_estimate`.
        """
        r = np.asarray(injected, dtype=float)
        own = self.noise_estimate
        c = self.n_classes / (self.n_classes - 1)
        return np.asarray(own + r - own * r * c, dtype=float)

    def describe(self, *, n_suspects: int = 5) -> str:
        """The text the CLI prints: headline first, then the tables."""
        lines = [self.headline()]
        if math.isfinite(self.calibrated_noise_rate.estimate):
            lines.append(self.upper_bound_note())
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

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write the tables into ``out_dir``.

        Files: ``suspects.csv``, ``per_class.csv``, ``noise_matrix.csv``, ``calibration.csv``,
        ``precision_curves.csv`` and ``audit.json`` (everything :func:`load_audit` needs). The
        calibration figure is drawn by :func:`noisegrid.report.save_audit`, which calls this.

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
            "calibrated_noise_rate": [
                self.calibrated_noise_rate.estimate,
                self.calibrated_noise_rate.low,
                self.calibrated_noise_rate.high,
            ],
            "calibrated_method": self.calibrated_noise_rate.method,
            "reference_curve": [list(point) for point in self.reference_curve],
            "cv_accuracy": self.cv_accuracy,
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
    c_est, c_low, c_high = (
        float(x) if x is not None else math.nan
        for x in meta.get("calibrated_noise_rate", [None, None, None])
    )
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
        calibrated_noise_rate=Interval(
            c_est,
            c_low,
            c_high,
            float(meta["level"]),
            str(meta.get("calibrated_method", "no calibration")),
        ),
        reference_curve=tuple((float(t), float(g)) for t, g in meta.get("reference_curve", [])),
        cv_accuracy=_num(meta.get("cv_accuracy")),
    )


def _num(x: Any) -> float:
    return float(x) if x is not None else math.nan


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


def _ci(r: Interval) -> str:
    if math.isnan(r.low):
        return ""
    return f" ({r.level * 100:g}% CI {_pct1(r.low, unit=False)}–{_pct1(r.high)})"


def _pct0(x: float) -> str:
    return f"{100 * x:g}%"


def _pts(x: float, *, sign: bool = False) -> str:
    return f"{100 * x:+.1f} points" if sign else f"{100 * x:.1f} points"
