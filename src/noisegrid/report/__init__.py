"""The report: one self-contained HTML page, PNG figures, ``summary.md`` and ``results.csv``.

:func:`build_report` turns a results table (finished or partial) into a folder::

    report.html        interactive figures (plotly.js inlined: opens offline), tables, provenance
    summary.md         the plain-language summary and the tables, as Markdown
    results.csv        the tidy results table as analysed
    figures/*.png      static versions of the figures (matplotlib), for slides and papers

:func:`save_audit` and :func:`save_advice` write an audit's or an advice's files with their
figure (``noisegrid audit --out``, ``noisegrid advise --out``).

The statistics come from :mod:`noisegrid.analysis` (and the result objects of
:mod:`noisegrid.auditing` and :mod:`noisegrid.advising`); this package only draws and writes them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..analysis import Analysis, analyze
from ..errors import AnalysisError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..analysis.advise import AdviceResult
    from ..auditing import AuditResult

__all__ = ["build_report", "collect_provenance", "make_figures", "save_advice", "save_audit"]

VERSIONED_PACKAGES = (
    "noisegrid",
    "numpy",
    "pandas",
    "scikit-learn",
    "statsmodels",
    "scipy",
    "plotly",
    "matplotlib",
    "torch",
    "transformers",
    "ray",
)
"""Packages whose installed versions the provenance lists (those not installed are left out)."""


def build_report(
    results: pd.DataFrame,
    *,
    out_dir: str | Path,
    spec: Any = None,
    provenance: Mapping[str, Any] | None = None,
    analysis: Analysis | None = None,
    n_classes: int | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
    png: bool = True,
    advice: AdviceResult | None = None,
) -> Path:
    """Write the report of a results table into ``out_dir``; return the path of ``report.html``.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results table (``noisegrid.load_results``); failed rows are counted, not used.
    out_dir : str or Path
        Folder to write into (created if needed; existing report files are replaced).
    spec : ExperimentSpec or mapping, optional
        The experiment spec, shown in the provenance section with only the settings its backend
        and noise models read (:meth:`~noisegrid.ExperimentSpec.effective_dict`); its ``[grid]``
        tells the analysis which runs are still missing.
    provenance : mapping, optional
        Extra provenance entries (shown as given; they override the collected ones).
    analysis : Analysis, optional
        A precomputed :func:`noisegrid.analyze` result; computed from ``results`` if omitted.
    n_classes, n_bootstrap, seed
        Passed to :func:`noisegrid.analyze` when ``analysis`` is omitted.
    png : bool, default True
        Also write PNG versions of the figures into ``out_dir/figures``.
    advice : AdviceResult, optional
        A :func:`noisegrid.advise` result for the "Advice" section; computed from ``spec`` when
        ``spec`` is an ExperimentSpec with an ``[advice]`` section (which may audit its data).

    Returns
    -------
    Path
        ``out_dir / "report.html"``.

    Raises
    ------
    AnalysisError
        If the table cannot be analysed, ``spec`` is of the wrong type or ``out_dir`` is a file.

    Examples
    --------
    >>> import noisegrid  # doctest: +SKIP
    >>> table = noisegrid.load_results("experiment.toml")  # doctest: +SKIP
    >>> noisegrid.build_report(table, out_dir="report")  # doctest: +SKIP
    PosixPath('report/report.html')
    """
    # plotly and matplotlib load here, not at ``import noisegrid``.
    from ._figures import make_figures as _make_figures
    from ._html import render_html
    from ._markdown import render_markdown
    from ._png import write_pngs

    spec_dict = _spec_dict(spec)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"out_dir must be a folder; '{out}' is a file — pass a folder path")
    if analysis is None:
        grid = spec_dict.get("grid") if spec_dict else None
        analysis = analyze(
            results, grid=grid, n_classes=n_classes, n_bootstrap=n_bootstrap, seed=seed
        )
    if advice is None and getattr(spec, "advice", None) is not None:
        from ..advising import advise

        advice = advise(spec, analysis=analysis, seed=seed)
    prov = collect_provenance(results, analysis=analysis, spec=spec_dict)
    prov.update(provenance or {})
    title = _title(spec_dict, prov)

    figures = _make_figures(analysis)
    page = render_html(
        analysis, figures, title=title, provenance=prov, spec=spec_dict, advice=advice
    )
    with _staged(out) as folder:
        png_names: list[str] = []
        if png:
            png_names = [p.name for p in write_pngs(analysis, folder / "figures")]
        if png and advice is not None:
            from ._advice import write_advice_png

            png_names.append(write_advice_png(advice, folder / "figures" / "advice.png").name)
        (folder / "report.html").write_text(page, encoding="utf-8")
        summary = render_markdown(
            analysis, title=title, provenance=prov, figures=png_names, advice=advice
        )
        (folder / "summary.md").write_text(summary, encoding="utf-8")
        results.to_csv(folder / "results.csv", index=False)
    return out / "report.html"


REPORT_ENTRIES = ("report.html", "summary.md", "results.csv", "figures")
"""What :func:`build_report` writes into its folder; anything else there is left alone."""


@contextlib.contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A folder to write the report into, swapped in whole at the end.

    The report is written into a hidden sibling folder and renamed into place, so a report
    stopped half-way (SIGTERM, a full disk) never leaves new figures beside an old ``report.html``.
    An existing ``out`` is renamed aside for the swap and its other files are moved back; where the
    parent folder cannot hold the sibling, the report is written in place.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError:
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    try:
        # mkdtemp makes a private folder; the report gets the folder's usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        mode = out.stat().st_mode & 0o7777 if out.is_dir() else 0o777 & ~umask
        os.chmod(staging, mode)
        yield staging
        if not out.exists():
            os.rename(staging, out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "report")
        os.rename(staging, out)
        for entry in (old / "report").iterdir():
            if entry.name not in REPORT_ENTRIES:
                os.rename(entry, out / entry.name)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def make_figures(analysis: Analysis) -> dict[str, go.Figure]:
    """Build the report's interactive figures (for a notebook).

    Parameters
    ----------
    analysis : Analysis
        From :func:`noisegrid.analyze`.

    Returns
    -------
    dict of str to plotly.graph_objects.Figure
        Keys are ``"<kind>-<noise model>"`` (kinds: ``heatmap``, ``learning-curves``,
        ``contours``, ``exchange-rate``) plus ``"noise-models"`` when the table holds several
        noise models; figures with nothing to draw are left out.
    """
    from ._figures import make_figures as _make_figures

    return _make_figures(analysis)


def save_audit(result: AuditResult, out_dir: str | Path, *, figure: bool = True) -> list[Path]:
    """Write an audit's tables (:meth:`~noisegrid.auditing.AuditResult.save`) and its figure.

    Parameters
    ----------
    result : AuditResult
    out_dir : str or Path
        The folder (created if missing).
    figure : bool, default True
        Also draw ``calibration.png`` (estimated against injected noise, and the suspect list's
        precision), when the audit has a calibration.

    Returns
    -------
    list of Path
        The files written.
    """
    written = result.save(out_dir)
    if figure and not result.calibration.empty:
        from ._advice import write_calibration_png

        written.append(write_calibration_png(result, Path(out_dir) / "calibration.png"))
    return written


def save_advice(result: AdviceResult, out_dir: str | Path, *, figure: bool = True) -> list[Path]:
    """Write an advice's tables (:meth:`~noisegrid.AdviceResult.save`) and ``advice.png``.

    Parameters
    ----------
    result : AdviceResult
    out_dir : str or Path
        The folder (created if missing).
    figure : bool, default True
        Also draw ``advice.png`` (predicted accuracy against budget for each strategy).

    Returns
    -------
    list of Path
        The files written.
    """
    written = result.save(out_dir)
    if figure:
        from ._advice import write_advice_png

        written.append(write_advice_png(result, Path(out_dir) / "advice.png"))
    return written


def collect_provenance(
    results: pd.DataFrame, *, analysis: Analysis, spec: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Dataset, model, backend, fingerprints, run counts, dates and package versions.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results table.
    analysis : Analysis
        Its analysis (for the run counts).
    spec : mapping, optional
        The spec as plain data; its ``name`` is recorded.

    Returns
    -------
    dict
        Ordered entries for the provenance table; values are strings or flat mappings.
    """
    prov: dict[str, Any] = {}
    if spec and spec.get("name"):
        prov["experiment"] = spec["name"]
    for col in ("dataset", "backend", "model"):
        values = _unique(results, col)
        if values:
            prov[col] = ", ".join(values)
        elif col == "model" and "model" in results.columns:
            prov[col] = "none (the backend uses no pretrained model)"
    prov["noise models"] = ", ".join(analysis.noise_models)
    fingerprints = _unique(results, "fingerprint")
    if fingerprints:
        prov["fingerprint"] = ", ".join(fingerprints)
    runs = {
        nm: (
            f"{a.coverage.n_done} done, {a.coverage.n_failed} failed, "
            f"{a.coverage.n_missing} missing of {a.coverage.n_expected}"
        )
        for nm, a in analysis.by_noise_model.items()
    }
    prov["runs"] = next(iter(runs.values())) if len(runs) == 1 else runs
    if "finished_at" in results.columns:
        stamps = results["finished_at"].dropna().astype(str)
        stamps = stamps[stamps != ""]
        if len(stamps):
            prov["runs finished"] = f"{stamps.min()} to {stamps.max()}"
    prov["report generated"] = datetime.now(UTC).isoformat(timespec="seconds")
    prov["analysis"] = (
        f"n_classes={analysis.n_classes}, bootstrap B={analysis.n_bootstrap}, "
        f"seed={analysis.seed}, confidence={analysis.confidence:g}"
    )
    prov["python"] = platform.python_version()
    prov["versions"] = _versions()
    return prov


def _versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _unique(results: pd.DataFrame, col: str) -> list[str]:
    if col not in results.columns:
        return []
    values = results[col].dropna().astype(str)
    return sorted(v for v in set(values) if v and v.lower() != "nan")


def _spec_dict(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    if hasattr(spec, "effective_dict"):
        # Only the settings the backend and noise models read: a tfidf report lists no
        # fine-tuning hyper-parameters.
        return dict(spec.effective_dict())
    if hasattr(spec, "to_dict"):
        return dict(spec.to_dict())
    if isinstance(spec, Mapping):
        return dict(spec)
    raise AnalysisError(
        f"spec must be an ExperimentSpec or a mapping (its to_dict()); got {type(spec).__name__}"
    )


def _title(spec: Mapping[str, Any] | None, prov: Mapping[str, Any]) -> str:
    name = spec.get("name") if spec else None
    if name:
        return f"noisegrid report: {name}"
    parts = [prov[k] for k in ("dataset", "backend") if prov.get(k)]
    return "noisegrid report" + (f": {' / '.join(parts)}" if parts else "")
