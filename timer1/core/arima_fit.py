"""AutoARIMA: the orders chosen by Hyndman & Khandakar's stepwise search, for many series at once.

Hyndman & Khandakar (2008), "Automatic time series forecasting: the forecast package for R", JSS
27(3), section 3.2, as R's forecast::auto.arima and statsforecast's AutoARIMA run it by default:

1. differencing: D = 1 when the seasonal strength of an STL decomposition exceeds 0.64 (nsdiffs'
   "seas" test; m > 1 and more than 2m values), then d = 0, 1 or 2: difference while the KPSS test
   (Kwiatkowski et al. 1992, level stationarity, floor(3 sqrt(n) / 13) Bartlett lags) rejects at 5%
   (statistic above 0.463), on the seasonally differenced series (ndiffs);
2. the constant: a mean when d + D = 0, a drift when d + D = 1, none otherwise;
3. the search: fit ARIMA(2,d,2)(1,D,1), (0,d,0)(0,D,0), (1,d,0)(1,D,0), (0,d,1)(0,D,1) and, with a
   constant, (0,d,0)(0,D,0) without it; then, from the best, try in turn P -/+ 1, Q -/+ 1, both,
   p -/+ 1, q -/+ 1, both, and the constant toggled, moving to the first that lowers the AICc and
   starting over from there, until no neighbour does (or 94 models have been tried). Bounds p, q <= 5
   (and < m), P, Q <= 2, each at most a third of the values (per season for P, Q);
4. each model by conditional sum of squares (R's method "CSS", coefficients from 0, the constant from
   the mean of the differenced series) with AICc = n* log(sigma^2) + 2k + 2k(k+1)/(n* - k - 1),
   n* = n - d - Dm, k = coefficients + 1, and refused (AICc = inf) when an AR or MA root lies within
   1.01 of the unit circle (not stationary, not invertible).

Where this differs from the references: every model is fitted by CSS (R and statsforecast use the
exact likelihood, "CSS-ML", on series of at most 150 values with m <= 12, and refit the chosen model
by it on longer ones); the forecasts run the conditional recursion, not the Kalman filter (the same
once the filter has forgotten its start); seasonal models only for 1 < m <= 24 (as AutoETS here).
When the no-constant (0,d,0)(0,D,0) wins the first round, the search goes on from it with the constant
off; R's auto.arima and statsforecast keep the constant on for the moves that follow (their "constant"
is not reset there), so on such a series the paths can part. test_arima.py measures the agreement.

Batched: at each round, every series still searching fits all its untried neighbours, and all those
(series, model) problems are one Levenberg-Marquardt run (timer1.core.least_squares) whose every
residual call filters all of them in one pass. The search path is R's: the neighbours are tried in
R's order, and only the first that improves is taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from timer1.core.arima import ArimaFit, ArimaSpec, Factors, css_residuals, difference, factors, polynomials
from timer1.core.baselines import _filled, periods_for
from timer1.core.ets import MAX_SEASON
from timer1.core.least_squares import levenberg_marquardt
from timer1.core.stl_ar import stl_batch, strength

KPSS_CRITICAL = 0.463  # 5% critical value of the level-stationarity KPSS statistic (Kwiatkowski et al. 1992, table 1)
SEASONAL_STRENGTH = 0.64  # nsdiffs' "seas" heuristic threshold
MAX_P, MAX_Q, MAX_SP, MAX_SQ, MAX_D = 5, 5, 2, 2, 2
MAX_MODELS = 94
MIN_ROOT = 1.01


def kpss_statistic(x: np.ndarray) -> float:
    """KPSS level statistic: sum_t S_t^2 / (n^2 s^2), S the partial sums of x - mean(x), s^2 the
    Newey-West long-run variance with floor(3 sqrt(n) / 13) Bartlett-weighted lags."""
    e = np.asarray(x, dtype=np.float64) - np.mean(x)
    n = len(e)
    lags = math.floor(3 * math.sqrt(n) / 13)
    s2 = float(e @ e) + 2 * sum((1 - k / (lags + 1)) * float(e[k:] @ e[:-k]) for k in range(1, lags + 1))
    return float(np.sum(np.cumsum(e) ** 2)) / (n * s2)  # (sum S^2 / n^2) / (s2 / n)


def is_constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def ndiffs(x: np.ndarray) -> int:
    """First differences while KPSS rejects level stationarity at 5%, at most MAX_D (forecast::ndiffs)."""
    d = 0
    while d < MAX_D and len(x) > 2 and not is_constant(x) and kpss_statistic(x) > KPSS_CRITICAL:
        x, d = np.diff(x), d + 1
    return d


def nsdiffs(x: np.ndarray, period: int) -> int:
    """1 when STL's seasonal strength max(0, 1 - Var(R) / Var(S + R)) exceeds 0.64 (forecast::nsdiffs,
    test "seas"), else 0; a series with m <= 1 or at most 2m values is not tested."""
    if period <= 1 or len(x) <= 2 * period or is_constant(x):
        return 0
    seasonal, trend = (part[0] for part in stl_batch(x[None, :], period))
    remainder = x - seasonal - trend
    return int(strength(remainder, seasonal + remainder) > SEASONAL_STRENGTH)


@dataclass
class Search:
    """One series' stepwise search: its values, differencing, the orders it may reach, the models
    tried (spec -> AICc) and fitted (spec -> (coef, sigma^2 of the CSS)), and where it stands."""

    y: np.ndarray
    d: int
    D: int
    period: int
    bounds: tuple[int, int, int, int]  # max p, q, P, Q
    best: ArimaSpec
    tried: dict = field(default_factory=dict)  # ArimaSpec -> AICc, R's ``results``
    fits: dict = field(default_factory=dict)  # ArimaSpec -> (coef, css sigma^2), every model fitted
    done: bool = False

    @property
    def n_star(self) -> int:
        """The values left after differencing: n - d - Dm."""
        return len(self.y) - self.d - self.period * self.D

    def spec(self, p, q, P, Q, constant) -> ArimaSpec:
        return ArimaSpec(p, self.d, q, P, self.D, Q, self.period, bool(constant))


def start_search(y: np.ndarray, period: int) -> Search:
    """One series' search before its first round: the differencing, the bounds, and as ``best`` the
    (0,d,0)(0,D,0) model with the constant the differencing allows."""
    n = len(y)
    m = period if 1 < period <= MAX_SEASON else 1
    D = nsdiffs(y, m) if m > 1 else 0
    d = ndiffs(difference(y, 0, D, m))
    max_p, max_q = min(MAX_P, n // 3), min(MAX_Q, n // 3)
    max_sp, max_sq = (min(MAX_SP, n // 3 // m), min(MAX_SQ, n // 3 // m)) if m > 1 else (0, 0)
    if m > 1:
        max_p, max_q = min(max_p, m - 1), min(max_q, m - 1)
    constant = d + D <= 1
    return Search(y, d, D, m, (max_p, max_q, max_sp, max_sq), ArimaSpec(0, d, 0, 0, D, 0, m, constant))


def first_models(s: Search) -> list[ArimaSpec]:
    """The search's starting models in R's order (the 2,2,1,1 one first)."""
    max_p, max_q, max_sp, max_sq = s.bounds
    small = len(s.y) < 10
    p, q = min(1 if small else 2, max_p), min(1 if small else 2, max_q)
    sp, sq = (0, 0) if small else (min(1, max_sp), min(1, max_sq))
    c = s.best.constant
    out = [s.spec(p, q, sp, sq, c), s.spec(0, 0, 0, 0, c)]
    if max_p > 0 or max_sp > 0:
        out.append(s.spec(int(max_p > 0), 0, int(max_sp > 0), 0, c))
    if max_q > 0 or max_sq > 0:
        out.append(s.spec(0, int(max_q > 0), 0, int(max_sq > 0), c))
    if c:
        out.append(s.spec(0, 0, 0, 0, False))
    return out


def neighbours(s: Search) -> list[ArimaSpec]:
    """The best model's neighbours in R's order, those within bounds and not yet tried."""
    b = s.best
    max_p, max_q, max_sp, max_sq = s.bounds
    moves = [(0, 0, -1, 0), (0, 0, 0, -1), (0, 0, 1, 0), (0, 0, 0, 1),
             (0, 0, -1, -1), (0, 0, -1, 1), (0, 0, 1, -1), (0, 0, 1, 1),
             (-1, 0, 0, 0), (0, -1, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0),
             (-1, -1, 0, 0), (-1, 1, 0, 0), (1, -1, 0, 0), (1, 1, 0, 0)]
    out = []
    for dp, dq, dsp, dsq in moves:
        p, q, sp, sq = b.p + dp, b.q + dq, b.P + dsp, b.Q + dsq
        if 0 <= p <= max_p and 0 <= q <= max_q and 0 <= sp <= max_sp and 0 <= sq <= max_sq:
            out.append(replace(b, p=p, q=q, P=sp, Q=sq))
    if b.d + b.D <= 1:  # the constant toggled
        out.append(replace(b, constant=not b.constant))
    return [spec for spec in out if spec not in s.tried]


def aicc(n_star: int, sigma2: float, n_coef: int) -> float:
    """auto.arima's CSS criterion: n* log(sigma^2) + 2k + 2k(k+1)/(n* - k - 1), k = n_coef + 1."""
    k = n_coef + 1
    if sigma2 <= 0 or n_star - k - 1 <= 0:
        return -math.inf if sigma2 <= 0 and n_star - k - 1 > 0 else math.inf
    return n_star * math.log(sigma2) + 2 * k + 2 * k * (k + 1) / (n_star - k - 1)


def admissible(spec: ArimaSpec, coef: np.ndarray) -> bool:
    """Every root of the AR and MA sides at least MIN_ROOT from 0 (stationary and invertible)."""
    a, b, _ = polynomials(spec, coef)
    for side in (np.concatenate([[1.0], -a[0]]), np.concatenate([[1.0], b[0]])):
        nonzero = np.nonzero(np.abs(side) > 1e-8)[0]
        if nonzero[-1] > 0 and np.min(np.abs(np.roots(side[:nonzero[-1] + 1][::-1]))) < MIN_ROOT:
            return False
    return True


def fit_css(problems: list[tuple[np.ndarray, ArimaSpec]]) -> list[tuple[np.ndarray, float]]:
    """(coef, sigma^2 = SSE / residuals counted) of each (series y, model) by conditional sum of squares:
    the problems of one period in one lock-step Levenberg-Marquardt run."""
    out: list = [None] * len(problems)
    by_period: dict[int, list[int]] = {}
    for i, (_, spec) in enumerate(problems):
        by_period.setdefault(spec.period, []).append(i)
    for period, members in by_period.items():
        for i, fitted in zip(members, _fit_css_one_period([problems[i] for i in members], period)):
            out[i] = fitted
    return out


def _fit_css_one_period(problems: list[tuple[np.ndarray, ArimaSpec]], period: int) -> list[tuple[np.ndarray, float]]:
    ws = [difference(y, spec.d, spec.D, spec.period) for y, spec in problems]
    steps = max(len(w) for w in ws)
    rows = np.zeros((len(problems), steps))  # right-aligned differenced series
    for i, w in enumerate(ws):
        rows[i, steps - len(w):] = w
    specs = [spec for _, spec in problems]
    starts = np.array([steps - len(w) + spec.ar_lags for w, spec in zip(ws, specs)])
    width = max(spec.n_coef for spec in specs)
    x0 = np.zeros((len(problems), width))
    for i, (w, spec) in enumerate(zip(ws, specs)):
        if spec.constant:
            x0[i, spec.n_coef - 1] = w.mean()
    kinds = sorted(set(specs), key=str)  # the distinct models: rows of one model share a layout
    kind_of = np.array([kinds.index(spec) for spec in specs])
    orders = [max(getattr(spec, name) for spec in specs) for name in ("p", "q", "P", "Q")]

    def residuals(points: np.ndarray, owner: np.ndarray) -> np.ndarray:
        count = len(owner)
        f = Factors(*(np.zeros((count, k)) for k in orders), np.zeros(count))
        kind = kind_of[owner]
        for k in np.unique(kind):
            at = np.nonzero(kind == k)[0]
            g = factors(kinds[k], points[at, :kinds[k].n_coef])
            f.phi[at, :g.phi.shape[1]], f.theta[at, :g.theta.shape[1]] = g.phi, g.theta
            f.sphi[at, :g.sphi.shape[1]], f.stheta[at, :g.stheta.shape[1]], f.mu[at] = g.sphi, g.stheta, g.mu
        return css_residuals(rows[owner], f, period, starts[owner])

    result = levenberg_marquardt(residuals, x0, np.array([spec.n_coef for spec in specs]))
    counted = steps - starts
    return [(result.x[i, :spec.n_coef].copy(), float(result.sse[i] / max(counted[i], 1)))
            for i, spec in enumerate(specs)]


def fit_round(searches: list[Search], wanted: list[list[ArimaSpec]]) -> None:
    """Fit every search's wanted models not fitted yet, all in one batch, and score the wanted ones."""
    todo = [(i, spec) for i, specs in enumerate(wanted) for spec in specs if spec not in searches[i].fits]
    for (i, spec), fitted in zip(todo, fit_css([(searches[i].y, spec) for i, spec in todo])):
        searches[i].fits[spec] = fitted
    for s, specs in zip(searches, wanted):
        for spec in specs:
            coef, sigma2 = s.fits[spec]
            ok = np.all(np.isfinite(coef)) and admissible(spec, coef)
            s.tried.setdefault(spec, aicc(s.n_star, sigma2, spec.n_coef) if ok else math.inf)


def fit_auto_arima(series_list, period) -> list[ArimaFit]:
    """AutoARIMA for each series (1-D arrays, NaN gaps interpolated), all searched together; period:
    one m for all or one per series."""
    series = [_filled(np.asarray(x, dtype=np.float64)) for x in series_list]
    searches = [start_search(y, m) for y, m in zip(series, periods_for(period, len(series)))]
    searching = [s for s in searches if not is_constant(difference(s.y, s.d, s.D, s.period))]
    first = [first_models(s) for s in searching]
    fit_round(searching, first)
    for s, specs in zip(searching, first):  # the first of the least AICc, as R's sequential "<"
        s.best = min(specs, key=lambda spec: s.tried[spec])
    while searching := [s for s in searching if not s.done]:
        wanted = [neighbours(s)[:max(0, MAX_MODELS - len(s.tried))] for s in searching]
        fit_round(searching, wanted)
        for s, specs in zip(searching, wanted):
            better = [spec for spec in specs if s.tried[spec] < s.tried[s.best]]
            for spec in specs[specs.index(better[0]) + 1 if better else len(specs):]:
                del s.tried[spec]  # R never reached these: it moved at the first improvement
            s.done = not better
            if better:
                s.best = better[0]
    return [final_fit(s) for s in searches]


def final_fit(s: Search) -> ArimaFit:
    """The chosen model with sigma^2 = SSE / (n* - k + 1), the variance statsforecast's intervals use;
    a series constant after differencing gets (0,d,0)(0,D,0) with its mean difference as constant, and
    one where no model has a finite AICc (too few values for any) the (0,d,0)(0,D,0) model fitted."""
    if not s.fits:
        w = difference(s.y, s.d, s.D, s.period)
        constant = s.d + s.D <= 1
        spec = ArimaSpec(0, s.d, 0, 0, s.D, 0, s.period, constant)
        return ArimaFit(spec, np.array([w.mean()]) if constant else np.zeros(0), 0.0, -math.inf, s.y)
    spec = s.best if math.isfinite(s.tried[s.best]) else s.spec(0, 0, 0, 0, s.best.constant)
    coef, css_sigma2 = s.fits[spec]
    sse = css_sigma2 * (s.n_star - spec.ar_lags)  # fit_css divided it by the residuals counted
    return ArimaFit(spec, coef, sse / max(s.n_star - spec.n_coef, 1), s.tried.get(spec, math.inf), s.y)
