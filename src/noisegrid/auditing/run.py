"""The audit: how noisy are the dataset's own labels, and which ones are wrong?

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

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..analysis import Interval
from ..analysis.calibration import calibrate_noise
from ..errors import ConfigError, DataError, require
from ..noise import inject_noise
from ..sampling import STREAM_AUDIT, rng_for
from .result import DEFAULT_CALIBRATION_RATES, DEFAULT_SAMPLE, PRECISION_DEPTHS, AuditResult

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus

__all__ = ["audit"]

AUDIT_BACKENDS = ("tfidf", "embed")
EXCERPT_CHARS = 200
_CURVE_POINTS = 160


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
    reference = _reference_curve(oof, proba, rates, k, seed, n_folds)
    calibrated = (
        calibrate_noise(
            noise_ci, [t for t, _ in reference], [g for _, g in reference], upper=1 - 1 / k
        )
        if reference
        else Interval(math.nan, math.nan, math.nan, level, "no calibration")
    )
    cv_accuracy = float(np.mean(proba.argmax(axis=1) == given))
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
        "The raw count's interval resamples examples with their out-of-fold probabilities fixed; "
        "it does not include the variation from refitting the model."
    )
    if math.isfinite(calibrated.estimate):
        notes.append(
            "The calibrated estimate reads the raw count off a reference curve: the count on the "
            "model's own out-of-fold predictions with uniform noise injected at known rates "
            "(same texts, features and folds); its interval maps the raw count's and adds the "
            "curve's scatter."
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
        calibrated_noise_rate=calibrated,
        reference_curve=tuple(reference),
        cv_accuracy=cv_accuracy,
    )


def _reference_curve(
    oof: _OutOfFold, proba: np.ndarray, rates: Sequence[float], k: int, seed: int, n_folds: int
) -> list[tuple[float, float]]:
    """The count at known noise: (true rate, count) on the model's own predictions as labels.

    Empty when the predictions miss a class the folds need (then nothing is calibrated).
    """
    from cleanlab import count

    reference = proba.argmax(axis=1)
    if len(rates) < 2 or np.bincount(reference, minlength=k).min() < n_folds:
        return []
    out = []
    for rate in rates:
        noisy = inject_noise(reference, rate, seed=seed + 1, n_classes=k)
        p = oof.predict(noisy.labels, warm=True)
        out.append(
            (noisy.realized_rate, float(1 - np.trace(count.estimate_joint(noisy.labels, p))))
        )
    return out


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
