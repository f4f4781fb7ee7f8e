"""Trend fits of a metric against model size, with bootstrap intervals. Pure: numpy + scipy.

    from scaling.fit import fit_trend, fit_trends, predict
    from scaling.sizes import parse_size
    fit = fit_trend(points)                 # points: SizePoints of one (metric, arm, benchmark, budget)
    fit.coef, fit.coef_lo, fit.coef_hi      # coefficients and their intervals
    predict(fit, parse_size("70b"))         # (value, lo, hi)

x = log10(params), with params the *active* parameter count (MoE-aware) unless the points say
``params_convention="total"``. x_ref is the mean x of the fitted sizes (the geometric-mean size),
so coefficients describe the study's own range and are less correlated.

Forms (every fit is an unweighted least-squares fit, each size counting once):

* ``log_linear`` (default): y = value_at_ref + slope_per_decade * (x - x_ref).
* ``saturating``: power law to a ceiling, y = ceiling - gap_at_ref * 10**(-exponent * (x - x_ref)),
  exponent > 0 (gap_at_ref < 0 approaches the ceiling from above, e.g. lengths falling to a floor).
  Fitted by variable projection: for each exponent on a log grid (0.01..8) the model is linear in
  (ceiling, gap); the best grid point is refined by a parabola in log(exponent).

Form choice (our rule; the papers fit no trends): the small-sample Akaike criterion
AICc = n ln(RSS/n) + 2k + 2k(k+1)/(n-k-1), with k = fitted coefficients + 1 (the noise variance).
The saturating form needs n >= 6 sizes (so that n-k-1 > 0) and is chosen only when its AICc is
lower than the log-linear one by more than 2 (``AICC_MARGIN``); otherwise log-linear stays.

Intervals: a percentile bootstrap over problems. Each SizePoint carries replicates of its value
computed on resampled problem sets (metrics.py; the same resamples for every size of a
benchmark). Each replicate set of points is refitted with the chosen form; coef_lo/coef_hi are
the (1-level)/2 and (1+level)/2 quantiles of the refitted coefficients. Points without
replicates get normal replicates from their interval, sd = (hi - lo) / (2 z).
``predict(params)`` gives the same bootstrap interval for the trend at a new size, combined in
quadrature with the scatter of single sizes around the trend (max of the residual sd and the
median point sd) so that it bounds a *measured* value there (``interval="trend"`` leaves it out).
Leave-one-size-out (LOSO): refit without each size and predict it; ``loso_error`` is the root
mean square of those errors and says how far to trust an interpolation or extrapolation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np
from scipy import stats

from .errors import FitError
from .records import SizePoint, TrendFit
from .sizes import parse_size

FORMS = ("log_linear", "saturating")
COEFS = {
    "log_linear": ("value_at_ref", "slope_per_decade"),
    "saturating": ("ceiling", "gap_at_ref", "exponent"),
}
AICC_MARGIN = 2.0  # saturating must beat log-linear by more than this AICc difference
_EXP_GRID = np.geomspace(0.01, 8.0, 241)  # exponents tried by the saturating fit
# value ranges a prediction is clipped to (fractions and accuracies live in [0, 1])
BOUNDS = {
    "accuracy": (0.0, 1.0),
    "pass_at_k": (0.0, 1.0),
    "truncated_frac": (0.0, 1.0),
    "accuracy_auc": (0.0, 1.0),
    "accuracy_change": (-1.0, 1.0),
    "length_reduction_frac": (-math.inf, 1.0),
    "length_change_frac": (-1.0, math.inf),
    "tokens_mean": (0.0, math.inf),
    "tokens_median": (0.0, math.inf),
    "tokens_correct_mean": (0.0, math.inf),
    "tokens_incorrect_mean": (0.0, math.inf),
    "accuracy_per_1k_tokens": (0.0, math.inf),
}

# ------------------------------------------------------------------------------ the forms
def form_values(form: str, coef: dict[str, np.ndarray] | dict[str, float], x: np.ndarray, x_ref: float) -> np.ndarray:
    """A form's values at x = log10(params) (coefficients as floats, or arrays of replicates)."""
    d = np.asarray(x, dtype=np.float64) - x_ref
    if form == "log_linear":
        return np.asarray(coef["value_at_ref"]) + np.asarray(coef["slope_per_decade"]) * d
    if form == "saturating":
        c, g, e = (np.asarray(coef[k]) for k in COEFS["saturating"])
        return c - g * np.power(10.0, -e * d)
    raise ValueError(f"unknown form {form!r}; known: {FORMS}")


def _fit_linear(x: np.ndarray, Y: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Least squares of every column of Y (n, R) on x; x centred by the caller."""
    xc = x - x.mean()
    sxx = float(xc @ xc)
    ym = Y.mean(axis=0)
    slope = (xc @ (Y - ym)) / sxx
    level = ym + slope * (0.0 - x.mean())  # value at x_ref = 0 (x is already x - x_ref)
    resid = Y - (level + slope * x[:, None])
    return {"value_at_ref": level, "slope_per_decade": slope}, (resid**2).sum(axis=0)


def _fit_saturating(x: np.ndarray, Y: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Variable projection over the exponent grid, refined by a parabola in log(exponent)."""
    R = Y.shape[1]
    Yc = Y - Y.mean(axis=0)
    syy = (Yc**2).sum(axis=0)

    def rss_at(E: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Z = np.power(10.0, -np.outer(E, x))  # (G, n)
        Zc = Z - Z.mean(axis=1, keepdims=True)
        szz = (Zc**2).sum(axis=1)  # (G,)
        szy = Zc @ Yc  # (G, R)
        with np.errstate(all="ignore"):
            beta = szy / szz[:, None]
            rss = syy[None, :] - szy**2 / szz[:, None]
        return rss, beta, Z.mean(axis=1)

    rss, _, _ = rss_at(_EXP_GRID)
    rss = np.where(np.isfinite(rss), rss, np.inf)
    i = np.argmin(rss, axis=0)  # (R,)
    u = np.log(_EXP_GRID)
    h = u[1] - u[0]
    ii = np.clip(i, 1, len(u) - 2)
    r0, r1, r2 = rss[ii - 1, np.arange(R)], rss[ii, np.arange(R)], rss[ii + 1, np.arange(R)]
    with np.errstate(all="ignore"):
        den = r0 - 2 * r1 + r2
        delta = np.where((den > 0) & (i == ii), 0.5 * h * (r0 - r2) / den, 0.0)
    e = np.exp(u[i] + np.clip(np.nan_to_num(delta), -h, h))
    Z = np.power(10.0, -e[None, :] * x[:, None])  # (n, R)
    Zc = Z - Z.mean(axis=0)
    beta = (Zc * Yc).sum(axis=0) / (Zc**2).sum(axis=0)  # y = alpha + beta z
    alpha = Y.mean(axis=0) - beta * Z.mean(axis=0)
    resid = Y - (alpha + beta * Z)
    return {"ceiling": alpha, "gap_at_ref": -beta, "exponent": e}, (resid**2).sum(axis=0)


_FITTERS = {"log_linear": _fit_linear, "saturating": _fit_saturating}


def _aicc(rss: float, n: int, p: int) -> float:
    k = p + 1
    if n - k - 1 <= 0:
        return math.inf
    return n * math.log(max(rss, 1e-300) / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


# ----------------------------------------------------------------------------- fitting
def _replicates(points: Sequence[SizePoint], boot: np.ndarray | None, level: float, seed: int, n_boot: int) -> np.ndarray:
    """(n_points, R) bootstrap replicates of the point values."""
    n = len(points)
    if boot is not None:
        B = np.asarray(boot, dtype=np.float64)
        if B.ndim != 2 or B.shape[1] != n:
            raise ValueError(f"boot must have shape (replicates, {n}), got {B.shape}")
        return B.T
    if all(p.boot is not None for p in points):
        lens = {len(p.boot) for p in points}
        if len(lens) == 1:
            return np.stack([np.asarray(p.boot, dtype=np.float64) for p in points])
    lo = np.array([p.lo for p in points], dtype=np.float64)
    hi = np.array([p.hi for p in points], dtype=np.float64)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise FitError(
            f"{points[0].metric}: points have neither bootstrap replicates nor intervals (lo/hi); "
            "compute them with metrics.compute_metrics"
        )
    z = stats.norm.ppf(0.5 + level / 2)
    sd = (hi - lo) / (2 * z)
    rng = np.random.default_rng(seed)
    vals = np.array([p.value for p in points], dtype=np.float64)
    return vals[:, None] + sd[:, None] * rng.standard_normal((n, n_boot))


def fit_trend(
    points: Sequence[SizePoint],
    *,
    boot: np.ndarray | None = None,
    forms: Sequence[str] = FORMS,
    level: float = 0.95,
    seed: int = 0,
    n_boot: int = 1000,
) -> TrendFit:
    """Fit one metric against log10(params) (see module docstring). ``boot``: optional
    precomputed replicates of the point values, shape (replicates, points), overriding
    ``SizePoint.boot``. ``forms`` lists the candidate forms (the first that is eligible is the
    default). Raises FitError for fewer than 3 distinct sizes, no variance, or non-finite values."""
    pts = list(points)
    if not pts:
        raise FitError("no points to fit")
    for f in forms:
        if f not in FORMS:
            raise ValueError(f"unknown form {f!r}; known: {FORMS}")
    desc = f"{pts[0].metric} [{pts[0].arm}, {pts[0].benchmark}, budget {pts[0].budget_tokens}]"
    if len({p.params_convention for p in pts}) > 1:
        raise FitError(f"{desc}: points mix params conventions (active and total); use one")
    x_all = np.log10(np.array([float(p.params) for p in pts]))
    y = np.array([p.value for p in pts], dtype=np.float64)
    if not np.isfinite(y).all() or not np.isfinite(x_all).all():
        raise FitError(f"{desc}: non-finite values at sizes {[p.size for p, v in zip(pts, y) if not np.isfinite(v)]}")
    n = len(pts)
    if len(np.unique(x_all)) < 3:
        raise FitError(f"{desc}: needs at least 3 distinct sizes, got {len(np.unique(x_all))}; add sizes to the study")
    tss = float(((y - y.mean()) ** 2).sum())
    if tss <= 1e-15 * max(1.0, float((y**2).sum())):
        raise FitError(f"{desc}: the metric does not vary across sizes (all {y[0]:.4g}); nothing to fit")
    x_ref = float(x_all.mean())
    x = x_all - x_ref
    # choose the form on the observed points
    aicc: dict[str, float] = {}
    obs: dict[str, tuple[dict[str, np.ndarray], float]] = {}
    for f in forms:
        c, rss = _FITTERS[f](x, y[:, None])
        obs[f] = (c, float(rss[0]))
        aicc[f] = _aicc(float(rss[0]), n, len(COEFS[f]))
    form = forms[0]
    for f in forms[1:]:
        if math.isfinite(aicc[f]) and aicc[f] < aicc[form] - AICC_MARGIN:
            form = f
    parts = []
    for i, f in enumerate(forms):
        if math.isfinite(aicc[f]):
            parts.append(f"AICc {f}={aicc[f]:.2f}")
        elif i == 0:
            parts.append(f"{f} is the default (AICc needs n >= {len(COEFS[f]) + 3} sizes)")
        else:
            parts.append(f"{f} not eligible (needs n >= {len(COEFS[f]) + 3} sizes, have {n})")
    crit = ", ".join(parts)
    coef_arr, rss_v = obs[form]
    coef = {k: float(v[0]) for k, v in coef_arr.items()}
    # bootstrap refits
    Y = _replicates(pts, boot, level, seed, n_boot)
    keep = np.isfinite(Y).all(axis=0)
    Y = Y[:, keep]
    if Y.shape[1] < 20:
        raise FitError(f"{desc}: fewer than 20 usable bootstrap replicates ({Y.shape[1]}); the points are too sparse")
    bcoef, _ = _FITTERS[form](x, Y)
    a = (1.0 - level) / 2.0
    coef_lo = {k: float(np.quantile(v, a)) for k, v in bcoef.items()}
    coef_hi = {k: float(np.quantile(v, 1.0 - a)) for k, v in bcoef.items()}
    boot_list = [dict(zip(bcoef, vals)) for vals in zip(*(bcoef[k].tolist() for k in bcoef))]
    p = len(COEFS[form])
    resid_sd = math.sqrt(rss_v / (n - p)) if n > p else float("nan")
    point_sd = float(np.median(Y.std(axis=1, ddof=1)))
    # leave one size out
    loso: dict[str, float] = {}
    for key in dict.fromkeys(p_.size for p_ in pts):
        m = np.array([p_.size != key for p_ in pts])
        xs = x_all[m]
        if len(np.unique(xs)) < 3 or (form == "saturating" and m.sum() < 5):
            continue
        xr = float(xs.mean())
        c_, _ = _FITTERS[form](xs - xr, y[m][:, None])
        pred = form_values(form, {k: v[0] for k, v in c_.items()}, x_all[~m], xr)
        loso[key] = float(np.mean(pred - y[~m]))
    loso_error = math.sqrt(np.mean(np.square(list(loso.values())))) if loso else float("nan")
    return TrendFit(
        metric=pts[0].metric,
        form=form,
        coef=coef,
        coef_lo=coef_lo,
        coef_hi=coef_hi,
        r2=1.0 - rss_v / tss,
        loso_error=loso_error,
        points=pts,
        arm=pts[0].arm,
        benchmark=pts[0].benchmark,
        budget_tokens=pts[0].budget_tokens,
        criterion=f"{crit}; chose {form}" + (f" (margin {AICC_MARGIN})" if len(forms) > 1 else ""),
        boot=boot_list,
        params_convention=pts[0].params_convention,
        level=level,
        resid_sd=resid_sd,
        point_sd=point_sd,
        loso_errors=loso,
        x_ref=x_ref,
    )


def predict(fit: TrendFit, params: float | str, *, interval: str = "observation") -> tuple[float, float, float]:
    """(value, lo, hi) of ``fit`` at ``params`` (a count or a size string like ``70b``)."""
    if interval not in ("observation", "trend"):
        raise ValueError("interval must be 'observation' or 'trend'")
    n_params = parse_size(params, fit.params_convention) if isinstance(params, str) else float(params)
    x = np.array([math.log10(n_params)])
    value = float(form_values(fit.form, fit.coef, x, fit.x_ref)[0])
    keys = COEFS[fit.form]
    bc = {k: np.array([b[k] for b in fit.boot]) for k in keys}
    preds = form_values(fit.form, bc, np.full(1, x[0]), fit.x_ref) if fit.boot else np.array([value])
    a = (1.0 - fit.level) / 2.0
    q_lo, q_hi = float(np.quantile(preds, a)), float(np.quantile(preds, 1.0 - a))
    lo, hi = min(q_lo, value), max(q_hi, value)
    if interval == "observation":
        z = float(stats.norm.ppf(0.5 + fit.level / 2))
        s = max(np.nan_to_num(fit.resid_sd), np.nan_to_num(fit.point_sd))
        lo = value - math.hypot(value - lo, z * s)
        hi = value + math.hypot(hi - value, z * s)
    b_lo, b_hi = BOUNDS.get(fit.metric, (-math.inf, math.inf))
    clip = lambda v: min(max(v, b_lo), b_hi)  # noqa: E731
    return clip(value), clip(lo), clip(hi)


def trend_curve(fit: TrendFit, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fitted line and its bootstrap band ("trend" interval) at many params (for plots)."""
    x = np.log10(np.asarray(params, dtype=np.float64))
    value = form_values(fit.form, fit.coef, x, fit.x_ref)
    keys = COEFS[fit.form]
    bc = {k: np.array([b[k] for b in fit.boot])[:, None] for k in keys}
    preds = form_values(fit.form, bc, x[None, :], fit.x_ref)
    a = (1.0 - fit.level) / 2.0
    lo, hi = np.quantile(preds, a, axis=0), np.quantile(preds, 1.0 - a, axis=0)
    b_lo, b_hi = BOUNDS.get(fit.metric, (-math.inf, math.inf))
    return np.clip(value, b_lo, b_hi), np.clip(np.minimum(lo, value), b_lo, b_hi), np.clip(np.maximum(hi, value), b_lo, b_hi)


def fit_trends(
    points: Sequence[SizePoint],
    *,
    metrics: Sequence[str] | None = None,
    forms: Sequence[str] = FORMS,
    level: float = 0.95,
    seed: int = 0,
    failures: list[str] | None = None,
) -> list[TrendFit]:
    """Fit every (metric, arm, benchmark, budget) group of ``points`` (optionally only
    ``metrics``). Degenerate groups are skipped; their FitError messages go to ``failures``."""
    groups: dict[tuple[str, str, str, int], list[SizePoint]] = defaultdict(list)
    for p in points:
        if metrics is None or p.metric in metrics:
            groups[(p.metric, p.arm, p.benchmark, p.budget_tokens)].append(p)
    out: list[TrendFit] = []
    for key in sorted(groups):
        pts = sorted(groups[key], key=lambda p: p.params)
        try:
            out.append(fit_trend(pts, forms=forms, level=level, seed=seed))
        except FitError as err:
            if failures is not None:
                failures.append(str(err))
    return out


# ------------------------------------------------------------------ is there a trend at all?
R2_MIN = 0.5  # below this R² a fit explains less than half the spread between sizes: "no trend"
LOSO_MAX = 1.0  # LOSO error / error of predicting each size by the mean of the others; >= this: "no trend"


def mean_loso_error(values: Sequence[float]) -> float:
    """RMS error of predicting each value by the mean of the others (the no-trend baseline):
    n/(n-1) times the population sd of the values."""
    y = np.asarray(values, dtype=np.float64)
    n = len(y)
    return float(n / (n - 1) * y.std()) if n > 1 else float("nan")


def trend_verdict(fit: TrendFit) -> tuple[str, str]:
    """("trend" | "unsure" | "no trend", reason): the report's rule for what it may call a trend.

    * "no trend" when R² < ``R2_MIN`` (0.5), or when the leave-one-size-out error is at least
      ``LOSO_MAX`` (1.0) times the error of predicting each size by the mean of the other sizes
      (the fit predicts a size it has not seen no better than ignoring size). With 3 sizes LOSO
      is not defined (a line needs 3 sizes) and only the R² test applies.
    * "unsure" when the bootstrap interval of the direction (log-linear slope per decade;
      saturating gap) includes 0: sizes line up, but another draw of problems could flip it.
    * "trend" otherwise.
    """
    if not np.isfinite(fit.r2) or fit.r2 < R2_MIN:
        return "no trend", f"R² {fit.r2:.2f} < {R2_MIN}"
    base = mean_loso_error([p.value for p in fit.points])
    if np.isfinite(fit.loso_error) and np.isfinite(base) and fit.loso_error >= LOSO_MAX * base:
        return "no trend", (f"leave-one-size-out error {fit.loso_error:.3g} >= {LOSO_MAX:g} x that of the mean of "
                            f"the other sizes ({base:.3g})")
    key = "slope_per_decade" if fit.form == "log_linear" else "gap_at_ref"
    lo, hi = fit.coef_lo.get(key, math.nan), fit.coef_hi.get(key, math.nan)
    if not (lo > 0 or hi < 0):
        return "unsure", f"the {fit.level:.0%} interval of {key} [{lo:.3g}, {hi:.3g}] includes 0"
    return "trend", f"R² {fit.r2:.2f}" + (f", LOSO error {fit.loso_error:.3g}" if np.isfinite(fit.loso_error) else "")


def boot_coef_arrays(fit: TrendFit) -> dict[str, np.ndarray]:
    """The bootstrap coefficients of a fit as arrays (for plots and tests)."""
    return {k: np.array([b[k] for b in fit.boot]) for k in COEFS[fit.form]}


__all__ = [
    "FORMS",
    "COEFS",
    "AICC_MARGIN",
    "fit_trend",
    "fit_trends",
    "predict",
    "trend_curve",
    "boot_coef_arrays",
    "form_values",
    "trend_verdict",
    "R2_MIN",
    "LOSO_MAX",
]
