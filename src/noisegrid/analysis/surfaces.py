"""Candidate accuracy surfaces, compared by leave-one-cell-out cross-validation.

The candidates (linear, interaction, log-size, effective-size and power-law forms; see
``docs/analysis.md``) each predict accuracy in percent from training size and noise and give the
two slopes the exchange rate needs. :func:`fit_surfaces` fits every candidate that the grid
supports, cross-validates it with all seeds of a cell held out together, and keeps the best as a
:class:`~noisegrid.analysis.SurfaceFit`, with its bootstrap refits over seeds (``rates.py``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize

from ._format import pct_text
from ._types import FloatArray, SurfaceCandidate, SurfaceFit, broadcast, local_rate
from .rates import bootstrap_fits

# --------------------------------------------------------------------------------------------
# Candidate surfaces
# --------------------------------------------------------------------------------------------

MAX_EVALUATIONS = 200
"""Evaluations a power-law refinement may take from each starting point (twice where the first
does not converge)."""

MIN_EXPONENT = 0.01
"""Lower bound on the size exponent g of ``power_size_signal`` where its fit would otherwise
creep towards g → 0 (the logarithmic limit) without converging."""

_Features = Callable[[FloatArray, FloatArray], FloatArray]


class _LinearCandidate(SurfaceCandidate):
    """Linear in its parameters: acc = X(n, eta) @ beta, fitted by least squares."""

    def __init__(
        self,
        name: str,
        label: str,
        expression: str,
        features: _Features,
        d_size: _Features,
        d_noise: _Features,
        signal_coef: float | None = None,
        rate_from_form: bool = False,
    ) -> None:
        self.name, self.label, self.expression = name, label, expression
        self.rate_from_form = rate_from_form
        self._features, self._d_size, self._d_noise = features, d_size, d_noise
        self._signal_coef = signal_coef
        self.n_params = features(np.ones(1), np.zeros(1)).shape[1]

    def skip_reason(self, n: FloatArray, eta: FloatArray) -> str | None:
        return _signal_skip(self._signal_coef, eta)

    def fit(
        self, n: FloatArray, eta: FloatArray, y: FloatArray, start: FloatArray | None = None
    ) -> FloatArray | None:
        x = self._features(n, eta)
        # lstsq's rank uses matrix_rank's default tolerance: one decomposition, not two.
        beta, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
        if rank < x.shape[1]:
            return None
        return np.asarray(beta, dtype=float)

    def predict(self, params: FloatArray, n: FloatArray, eta: FloatArray) -> FloatArray:
        return np.asarray(self._features(n, eta) @ params, dtype=float)

    def slopes(
        self, params: FloatArray, n: FloatArray, eta: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        return (
            np.asarray(self._d_size(n, eta) @ params, dtype=float),
            np.asarray(self._d_noise(n, eta) @ params, dtype=float),
        )


class _PowerCandidate(SurfaceCandidate):
    """acc = a − b·m^(−g) with m = n·s²/1000: a power-law learning curve in effective size."""

    name = "effective_size_power"
    label = "power law in the effective size"
    n_params = 3
    rate_from_form = True

    def __init__(self, signal_coef: float) -> None:
        self._c = signal_coef
        self.expression = "a − b·(n·s²/1000)^(−g)"

    def skip_reason(self, n: FloatArray, eta: FloatArray) -> str | None:
        return _signal_skip(self._c, eta)

    def _m(self, n: FloatArray, eta: FloatArray) -> FloatArray:
        return n * (1 - self._c * eta) ** 2 / 1000

    def fit(
        self, n: FloatArray, eta: FloatArray, y: FloatArray, start: FloatArray | None = None
    ) -> FloatArray | None:
        m = self._m(n, eta)
        if np.unique(np.round(m, 9)).size < 3:
            return None
        logm = np.log(m)
        yc = y - y.mean()
        syy = float(yc @ yc)

        def sse(g: FloatArray) -> FloatArray:
            # For a fixed exponent g the model is linear in (a, b): the least-squares error has a
            # closed form, so g is found by a 1-D search (deterministic, no starting values).
            x = -np.exp(-np.outer(g, logm))
            xc = x - x.mean(axis=1, keepdims=True)
            sxx = np.einsum("ij,ij->i", xc, xc)
            sxy = xc @ yc
            with np.errstate(divide="ignore", invalid="ignore"):
                out = syy - sxy**2 / sxx
            return np.where(sxx > 0, out, np.inf)

        grid = np.geomspace(0.01, 3.0, 40)
        errors = sse(grid)
        i = int(np.argmin(errors))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        res = optimize.minimize_scalar(
            lambda g: float(sse(np.array([g]))[0]),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-6},
        )
        g = float(res.x) if res.fun <= errors[i] else float(grid[i])
        x = -np.exp(-g * logm)
        xc = x - x.mean()
        if not np.isfinite(errors[i]) or float(xc @ xc) <= 0:
            return None
        b = float(xc @ yc) / float(xc @ xc)
        a = float(y.mean()) - b * float(x.mean())
        return np.array([a, b, g], dtype=float)

    def predict(self, params: FloatArray, n: FloatArray, eta: FloatArray) -> FloatArray:
        a, b, g = params
        return np.asarray(a - b * self._m(n, eta) ** (-g), dtype=float)

    def slopes(
        self, params: FloatArray, n: FloatArray, eta: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        _, b, g = params
        s = 1 - self._c * eta
        dm = b * g * self._m(n, eta) ** (-g - 1)
        return dm * s**2 / 1000, dm * (n / 1000) * 2 * s * (-self._c / 100)


class _PowerSignalCandidate(SurfaceCandidate):
    """acc = a − b·(n/1000)^(−g)·s^(−h): the power law with the signal's exponent set free.

    With ``h = 2g`` this is :class:`_PowerCandidate`; the exchange rate is
    ``(h/g)·c·n/(100·s)``, so the data decide how much a noise point costs relative to theory.
    """

    name = "power_size_signal"
    label = "power law in size and label signal"
    n_params = 4

    def __init__(self, signal_coef: float) -> None:
        self._c = signal_coef
        self.expression = "a − b·(n/1000)^(−g)·s^(−h)"

    def skip_reason(self, n: FloatArray, eta: FloatArray) -> str | None:
        return _signal_skip(self._c, eta)

    def fit(
        self, n: FloatArray, eta: FloatArray, y: FloatArray, start: FloatArray | None = None
    ) -> FloatArray | None:
        return self._fit(n, eta, y, start)[0]

    def fit_checked(
        self, n: FloatArray, eta: FloatArray, y: FloatArray
    ) -> tuple[FloatArray | None, str | None]:
        params, converged = self._fit(n, eta, y, None)
        if params is None:
            return None, "did not separate the surface's terms"
        if not converged:
            return None, f"did not converge within {2 * MAX_EVALUATIONS} evaluations"
        return params, None

    def _fit(
        self, n: FloatArray, eta: FloatArray, y: FloatArray, start: FloatArray | None
    ) -> tuple[FloatArray | None, bool]:
        """The best least-squares fit from the global start (and ``start``), and whether the
        refinement that found it converged."""
        if np.unique(n).size < 2 or np.unique(eta).size < 2:
            return None, False
        lu, ls = np.log(n / 1000), np.log(1 - self._c * eta)
        x0 = self._global_start(lu, ls, y)
        if x0 is None:
            return None, False
        starts = [x0] if start is None else [x0, np.asarray(start, dtype=float)]

        def basis(p: FloatArray) -> FloatArray:
            return np.asarray(np.exp(-(p[2] * lu + p[3] * ls)), dtype=float)

        def resid(p: FloatArray) -> FloatArray:
            return p[0] - p[1] * basis(p) - y

        def jac(p: FloatArray) -> FloatArray:
            x = basis(p)
            return np.column_stack([np.ones_like(x), -x, p[1] * x * lu, p[1] * x * ls])

        best: tuple[float, FloatArray, bool] | None = None
        for x in starts:
            for res in self._refine(resid, jac, x):
                params = np.asarray(res.x, dtype=float)
                if not np.all(np.isfinite(params)) or params[2] <= 0 or not np.isfinite(res.cost):
                    continue
                fit = (float(res.cost), params, bool(res.status > 0))
                # A converged fit beats one that is not; among equals, the lower error wins.
                if best is None or (fit[2], -fit[0]) > (best[2], -best[0]):
                    best = fit
        if best is None:
            return None, False
        return best[1], best[2]

    @staticmethod
    def _refine(
        resid: Callable[[FloatArray], FloatArray],
        jac: Callable[[FloatArray], FloatArray],
        x0: FloatArray,
    ) -> list[Any]:
        """Levenberg–Marquardt from ``x0``; where it does not converge, a bounded refinement.

        Where accuracy is close to linear in log size the power law degenerates: g → 0 and
        b → ∞ along a valley whose floor is its logarithmic limit, and Levenberg–Marquardt
        creeps down it without converging. The exponent ratio h/g, which sets the exchange
        rate, is settled long before (on the laptop grids it moved by < 0.5% below g = 0.01),
        so the refinement then continues with g ≥ ``MIN_EXPONENT``, where it converges.
        """
        out: list[Any] = []
        with np.errstate(all="ignore"):
            try:
                res = optimize.least_squares(
                    resid, x0, jac=jac, method="lm", xtol=1e-10, max_nfev=MAX_EVALUATIONS
                )
            except (ValueError, np.linalg.LinAlgError):
                return out
            out.append(res)
            if res.status > 0 or not np.all(np.isfinite(res.x)):
                return out
            lower = np.array([-np.inf, -np.inf, MIN_EXPONENT, -np.inf])
            with contextlib.suppress(ValueError, np.linalg.LinAlgError):
                out.append(
                    optimize.least_squares(
                        resid,
                        np.maximum(res.x, lower + 1e-12),
                        jac=jac,
                        method="trf",
                        bounds=(lower, np.inf),
                        xtol=1e-10,
                        max_nfev=MAX_EVALUATIONS,
                    )
                )
        return out

    def _global_start(self, lu: FloatArray, ls: FloatArray, y: FloatArray) -> FloatArray | None:
        # Linear in (a, b) for fixed exponents (g, h): a closed-form error over a grid of
        # exponents gives a deterministic starting point for the local refinement.
        yc = y - y.mean()
        g_grid, h_grid = np.meshgrid(np.geomspace(0.02, 3.0, 15), np.linspace(0.0, 10.0, 15))
        g, h = g_grid.ravel(), h_grid.ravel()
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            x = -np.exp(-(np.outer(g, lu) + np.outer(h, ls)))
            xc = x - x.mean(axis=1, keepdims=True)
            sxx = np.einsum("ij,ij->i", xc, xc)
            sxy = xc @ yc
            err = float(yc @ yc) - sxy**2 / sxx
        err = np.where(np.isfinite(err) & (sxx > 0), err, np.inf)
        i = int(np.argmin(err))
        if not np.isfinite(err[i]):
            return None
        b = sxy[i] / sxx[i]
        a = float(y.mean()) - b * float(x[i].mean())
        return np.array([a, b, g[i], h[i]], dtype=float)

    def predict(self, params: FloatArray, n: FloatArray, eta: FloatArray) -> FloatArray:
        a, b, g, h = params
        s = 1 - self._c * eta
        return np.asarray(a - b * (n / 1000) ** (-g) * s ** (-h), dtype=float)

    def slopes(
        self, params: FloatArray, n: FloatArray, eta: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        _, b, g, h = params
        u, s = n / 1000, 1 - self._c * eta
        d_size = b * g * u ** (-g - 1) * s ** (-h) / 1000
        d_noise = -b * h * u ** (-g) * s ** (-h - 1) * self._c / 100
        return d_size, d_noise


def _signal_skip(signal_coef: float | None, eta: FloatArray) -> str | None:
    if signal_coef is None or eta.size == 0:
        return None
    limit = 1 / signal_coef
    if float(eta.max()) >= limit:
        return (
            f"needs noise below {pct_text(limit)} (where labels still carry signal); the grid goes "
            f"up to {pct_text(float(eta.max()))}"
        )
    return None


def _candidates(n_classes: int) -> list[SurfaceCandidate]:
    c = n_classes / (n_classes - 1)

    def ones(n: FloatArray) -> FloatArray:
        return np.ones_like(n, dtype=float)

    def zeros(n: FloatArray) -> FloatArray:
        return np.zeros_like(n, dtype=float)

    def sig(eta: FloatArray) -> FloatArray:
        return 1 - c * eta

    s_text = "1 − 2η" if n_classes == 2 else f"1 − η·{n_classes}/{n_classes - 1}"
    return [
        _LinearCandidate(
            "linear",
            "straight lines in size and noise",
            "b0 + b1·n/1000 + b2·p (the reference regression)",
            lambda n, e: np.column_stack([ones(n), n / 1000, 100 * e]),
            lambda n, e: np.column_stack([zeros(n), ones(n) / 1000, zeros(n)]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), ones(n)]),
        ),
        _LinearCandidate(
            "interaction",
            "straight lines with a size × noise term",
            "b0 + b1·n/1000 + b2·p + b3·(n/1000)·p",
            lambda n, e: np.column_stack([ones(n), n / 1000, 100 * e, n / 1000 * 100 * e]),
            lambda n, e: np.column_stack([zeros(n), ones(n) / 1000, zeros(n), 100 * e / 1000]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), ones(n), n / 1000]),
        ),
        _LinearCandidate(
            "log_size",
            "log of size, straight in noise",
            "b0 + b1·ln n + b2·p",
            lambda n, e: np.column_stack([ones(n), np.log(n), 100 * e]),
            lambda n, e: np.column_stack([zeros(n), 1 / n, zeros(n)]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), ones(n)]),
        ),
        _LinearCandidate(
            "log_size_interaction",
            "log of size with a noise × log-size term",
            "b0 + b1·ln n + b2·p + b3·p·ln n",
            lambda n, e: np.column_stack([ones(n), np.log(n), 100 * e, 100 * e * np.log(n)]),
            lambda n, e: np.column_stack([zeros(n), 1 / n, zeros(n), 100 * e / n]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), ones(n), np.log(n)]),
        ),
        _LinearCandidate(
            "log_size_log_signal",
            "log of size and log of label signal",
            f"b0 + b1·ln n + b2·ln s, s = {s_text}",
            lambda n, e: np.column_stack([ones(n), np.log(n), np.log(sig(e))]),
            lambda n, e: np.column_stack([zeros(n), 1 / n, zeros(n)]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), -c / 100 / sig(e)]),
            signal_coef=c,
        ),
        _LinearCandidate(
            "effective_size_log",
            "log of the effective size",
            f"b0 + b1·ln(n·s²), s = {s_text}",
            lambda n, e: np.column_stack([ones(n), np.log(n * sig(e) ** 2)]),
            lambda n, e: np.column_stack([zeros(n), 1 / n]),
            lambda n, e: np.column_stack([zeros(n), -2 * c / 100 / sig(e)]),
            signal_coef=c,
            rate_from_form=True,
        ),
        _PowerCandidate(c),
        _PowerSignalCandidate(c),
    ]


# --------------------------------------------------------------------------------------------
# Fitting and cross-validation
# --------------------------------------------------------------------------------------------


def _cross_validate(
    cand: SurfaceCandidate,
    n: FloatArray,
    eta: FloatArray,
    y: FloatArray,
    cell: npt.NDArray[np.integer[Any]],
) -> tuple[float, float] | str:
    """Leave-one-cell-out: all seeds of a (size, noise) cell are held out together.

    Every fold is fitted from its own data alone (no starting values from the full fit).
    """
    pred = np.empty_like(y)
    for c in np.unique(cell):
        test = cell == c
        params = cand.fit(n[~test], eta[~test], y[~test])
        if params is None:
            return "cannot be fitted when one cell is left out; the grid is too sparse for it"
        pred[test] = cand.predict(params, n[test], eta[test])
    resid = y - pred
    return float(np.sqrt(np.mean(resid**2))), float(np.mean(np.abs(resid)))


def fit_surfaces(
    done: pd.DataFrame,
    *,
    n_classes: int,
    n_bootstrap: int,
    rng: np.random.Generator,
    focus: tuple[int, float] | None,
) -> tuple[pd.DataFrame, SurfaceFit | None, str | None, SurfaceFit | None]:
    """Fit and cross-validate every candidate; return the table and the surface rates come from.

    Returns ``(table, best, skipped, form_fixed)``: ``best`` is the candidate with the lowest
    cross-validated error among those whose exchange rate the data determine (or among all
    when none of those could be fitted), ``skipped`` why there is none, and ``form_fixed`` the
    candidate that fits better than ``best`` but fixes the rate by its form, if there is one.
    """
    columns = [
        "name",
        "label",
        "expression",
        "rate_from_form",
        "n_params",
        "cv_rmse",
        "cv_mae",
        "rmse",
        "r_squared",
        "rate_at_focus",
        "selected",
        "skipped",
    ]
    n_sizes, n_noise = done["train_size"].nunique(), done["noise_level"].nunique()
    if done.empty:
        return pd.DataFrame(columns=columns), None, "no runs are done yet", None
    if n_sizes < 2 or n_noise < 2:
        what = "training size" if n_sizes < 2 else "noise level"
        why = (
            f"a surface needs at least two training sizes and two noise levels; the done runs have "
            f"a single {what}"
        )
        return pd.DataFrame(columns=columns), None, why, None

    if done["eval_accuracy"].nunique() == 1:
        why = "accuracy is the same in every done run, so there is no surface to fit"
        return pd.DataFrame(columns=columns), None, why, None
    n = done["train_size"].to_numpy(dtype=float)
    eta = done["noise_level"].to_numpy(dtype=float)
    y = done["eval_accuracy"].to_numpy(dtype=float) * 100
    cell = done.groupby(["train_size", "noise_level"], sort=True).ngroup().to_numpy()
    n_cells = int(cell.max()) + 1
    tss = float(np.sum((y - y.mean()) ** 2))

    rows: list[dict[str, Any]] = []
    fitted: dict[str, tuple[SurfaceCandidate, FloatArray, float]] = {}
    for cand in _candidates(n_classes):
        row: dict[str, Any] = {"name": cand.name, "label": cand.label}
        row.update(
            expression=cand.expression, rate_from_form=cand.rate_from_form, n_params=cand.n_params
        )
        reason: str | None = cand.skip_reason(n, eta)
        if reason is None and n_cells <= cand.n_params:
            reason = (
                f"needs more cells than its {cand.n_params} parameters for cross-validation; "
                f"there are {n_cells}"
            )
        params = None
        if reason is None:
            params = cand.fit(n, eta, y)
            if params is None:
                reason = "cannot be fitted: the grid does not separate its terms"
        cv: tuple[float, float] | str | None = reason
        if reason is None:
            # Each fold starts from its own data only: seeding it with the full-data fit would
            # hand the held-out cell to the fold, a leak that favours the nonlinear surfaces.
            cv = _cross_validate(cand, n, eta, y, cell)
            if isinstance(cv, str):
                reason = cv
        if reason is not None or params is None or cv is None or isinstance(cv, str):
            rows.append({**row, "skipped": reason, "selected": False})
            continue
        resid = y - cand.predict(params, n, eta)
        rate_focus = math.nan
        if focus is not None:
            rate_focus = float(local_rate(cand, params, *broadcast(*focus))[0])
        rows.append(
            {
                **row,
                "cv_rmse": cv[0],
                "cv_mae": cv[1],
                "rmse": float(np.sqrt(np.mean(resid**2))),
                "r_squared": 1 - float(resid @ resid) / tss if tss > 0 else math.nan,
                "rate_at_focus": rate_focus,
                "selected": False,
                "skipped": None,
            }
        )
        fitted[cand.name] = (cand, params, cv[0])

    table = pd.DataFrame(rows, columns=columns)
    if not fitted:
        return (
            table,
            None,
            "no candidate surface could be fitted (see the comparison table)",
            None,
        )
    best_fit = min(fitted, key=lambda k: fitted[k][2])
    # The rates come from the best surface whose rate the data determine. A form that fixes the
    # rate (effective size n·s²) gives the same rate whatever was measured, so it is used only
    # when no other candidate could be fitted; when it fits best, it is kept to say so.
    measured = [k for k in fitted if not fitted[k][0].rate_from_form]
    best_name = min(measured, key=lambda k: fitted[k][2]) if measured else best_fit
    table["selected"] = table["name"] == best_name
    cand, params, cv_rmse = fitted[best_name]
    resampling = None
    if cand.rate_from_form or n_bootstrap == 0:
        # A rate fixed by the form would only get a zero-width interval from resampling.
        boot = np.empty((0, cand.n_params), dtype=float)
    else:
        seed = done["seed"].to_numpy(dtype=int)
        boot, resampling = bootstrap_fits(
            cand, n, eta, y, cell, seed, n_bootstrap=n_bootstrap, rng=rng
        )
    best = SurfaceFit(
        name=best_name,
        expression=cand.expression,
        params=params,
        boot_params=boot,
        cv_rmse=cv_rmse,
        candidate=cand,
        resampling=resampling,
        label=cand.label,
    )
    form_fixed = None
    if best_fit != best_name:
        f_cand, f_params, f_cv = fitted[best_fit]
        form_fixed = SurfaceFit(
            name=best_fit,
            expression=f_cand.expression,
            params=f_params,
            boot_params=np.empty((0, f_cand.n_params), dtype=float),
            cv_rmse=f_cv,
            candidate=f_cand,
            label=f_cand.label,
        )
    return table, best, None, form_fixed
