"""AutoARIMA: the orders chosen by Hyndman & Khandakar's stepwise search, for many series at once.

Hyndman & Khandakar (2008), "Automatic time series forecasting: the forecast package for R", JSS
27(3), section 3.2, as R's forecast::auto.arima and statsforecast's AutoARIMA run it by default:

1. differencing: D = 1 when the seasonal strength of an STL decomposition exceeds 0.64 (nsdiffs'
   "seas" test; m > 1 and more than 2m values), then d = 0, 1 or 2: difference while the KPSS test
   (Kwiatkowski et al. 1992, level stationarity, floor(3 sqrt(n) / 13) Bartlett lags) rejects at 5%
   (statistic above 0.463), on the seasonally differenced series (ndiffs);
2. the constant: a mean when d + D = 0, a drift when d + D = 1, none otherwise;
3. the search: fit ARIMA(2,d,2)(1,D,1), (0,d,0)(0,D,0), (1,d,0)(1,D,0), (0,d,1)(0,D,1) and, with a
   constant, (0,d,0)(0,D,0) without it; then, from the best's orders, try in turn P -/+ 1, Q -/+ 1,
   both, p -/+ 1, q -/+ 1, both, and the constant toggled, moving to the first that lowers the AICc
   and starting over from there, until no neighbour does (or 94 models have been tried). The moves
   carry R's running ``constant``, which only the toggle move changes: when the no-constant
   (0,d,0)(0,D,0) wins the first round, its neighbours are tried with the constant on. Bounds p, q <= 5
   (and < m), P, Q <= 2, each at most a third of the values (per season for P, Q);
4. each model on series of at most 150 values with m <= 12 by exact likelihood from the conditional
   sum of squares' estimates (R's method "CSS-ML"; timer1.core.arima_likelihood), on longer ones by
   the conditional sum of squares alone (R's "CSS", auto.arima's approximation), with
   AICc = -2 log L + 2k + 2k(k+1)/(n* - k - 1), n* = n - d - Dm, k = coefficients + 1, and refused
   (AICc = inf) when an AR or MA root lies within 1.01 of the unit circle (not stationary, not
   invertible).

Where this differs from the references: after a CSS search R and statsforecast refit the best models by
exact likelihood, in order of AICc, and keep the first that passes; here the CSS best is kept (tried
with an uncapped exact fit: on 30 synthetic monthly series of 200 values the refit cost 3 s a series,
against 0.15 s for the whole search, and changed the model on 24 of them, the likelihood pushing a
seasonal MA against the unit circle where it is refused). The exact fit refuses points outside the
stationary region where R reparametrises the AR side (transform.pars); the optimum is the same.
statsforecast 2.1.1 reoptimises by CSS after flipping MA roots (R re-evaluates the likelihood there),
so its "exact" refit of co2 returns the CSS estimates. The forecasts run the conditional recursion,
not the Kalman filter (the same once the filter has forgotten its start); seasonal models only for
1 < m <= 24 (as AutoETS here). test_arima.py measures the agreement.

Batched: at each round, every series still searching fits all its untried neighbours, and all those
(series, model) problems are one Levenberg-Marquardt run (timer1.core.least_squares) whose every
residual call filters all of them in one pass. The search path is R's: the neighbours are tried in
R's order, and only the first that improves is taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from timer1.core.arima import (
    ArimaFit,
    ArimaSpec,
    Factors,
    css_residuals,
    difference,
    factors,
    multiply_out,
    polynomials,
)
from timer1.core.arima_likelihood import standardized, stationary
from timer1.core.baselines import _filled, periods_for
from timer1.core.ets import MAX_SEASON
from timer1.core.least_squares import levenberg_marquardt
from timer1.core.stl_ar import stl_batch, strength

KPSS_CRITICAL = 0.463  # 5% critical value of the level-stationarity KPSS statistic (Kwiatkowski et al. 1992, table 1)
SEASONAL_STRENGTH = 0.64  # nsdiffs' "seas" heuristic threshold
MAX_P, MAX_Q, MAX_SP, MAX_SQ, MAX_D = 5, 5, 2, 2, 2
MAX_MODELS = 94
MIN_ROOT = 1.01
EXACT_UP_TO, EXACT_MAX_SEASON = 150, 12  # auto.arima's "approximation" below these: search by CSS-ML
ML_ITERATIONS = 10  # Levenberg-Marquardt steps from the CSS estimates (median problem: 7; fixture agreement
                   # 12 of 19 models at 10, 11 at 50, for half the cost)


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
    exact: bool  # every model by exact likelihood (CSS-ML), else by CSS
    best: ArimaSpec  # the model of least AICc so far
    position: ArimaSpec  # where the moves start: the best's orders with R's running ``constant``
    tried: dict = field(default_factory=dict)  # ArimaSpec -> AICc, R's ``results``
    fits: dict = field(default_factory=dict)  # ArimaSpec -> Fitted, every model fitted
    done: bool = False

    @property
    def n_star(self) -> int:
        """The values left after differencing: n - d - Dm."""
        return len(self.y) - self.d - self.period * self.D

    def spec(self, p, q, P, Q, constant) -> ArimaSpec:
        return ArimaSpec(p, self.d, q, P, self.D, Q, self.period, bool(constant))


def start_search(y: np.ndarray, period: int) -> Search:
    """One series' search before its first round: the differencing, the bounds, whether it searches by
    exact likelihood, and as ``best`` the (0,d,0)(0,D,0) model with the constant the differencing allows."""
    n = len(y)
    m = period if 1 < period <= MAX_SEASON else 1
    D = nsdiffs(y, m) if m > 1 else 0
    d = ndiffs(difference(y, 0, D, m))
    max_p, max_q = min(MAX_P, n // 3), min(MAX_Q, n // 3)
    max_sp, max_sq = (min(MAX_SP, n // 3 // m), min(MAX_SQ, n // 3 // m)) if m > 1 else (0, 0)
    if m > 1:
        max_p, max_q = min(max_p, m - 1), min(max_q, m - 1)
    null = ArimaSpec(0, d, 0, 0, D, 0, m, d + D <= 1)
    return Search(y, d, D, m, (max_p, max_q, max_sp, max_sq), n <= EXACT_UP_TO and m <= EXACT_MAX_SEASON, null, null)


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
    """The neighbours of the search's position in R's order, those within bounds and not yet tried."""
    b = s.position
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


@dataclass
class Fitted:
    """One model fitted to one series: coefficients (R's order), the sum of squared residuals (CSS: the
    conditional residuals; ML: the standardized innovations v / sqrt(F)), and -2 log L as R's arima
    counts it, n* (log(ssq / residuals counted) [+ mean log F] + 1 + log 2 pi); inf when the fit failed."""

    coef: np.ndarray
    ssq: float
    deviance: float


def aicc(n_star: int, deviance: float, n_coef: int) -> float:
    """auto.arima's criterion: -2 log L + 2k + 2k(k+1)/(n* - k - 1), k = n_coef + 1 (sigma^2 counts)."""
    k = n_coef + 1
    if not math.isfinite(deviance) or n_star - k - 1 <= 0:
        return -math.inf if deviance == -math.inf and n_star - k - 1 > 0 else math.inf
    return deviance + 2 * k + 2 * k * (k + 1) / (n_star - k - 1)


def deviance(n_star: int, log_variance: float) -> float:
    """-2 log L = n* (log_variance + 1 + log 2 pi), R's arima ("value" is log_variance / 2)."""
    return n_star * (log_variance + 1.0 + math.log(2 * math.pi)) if math.isfinite(log_variance) else math.inf


def admissible(spec: ArimaSpec, coef: np.ndarray) -> bool:
    """Every root of the AR and MA sides at least MIN_ROOT from 0 (stationary and invertible)."""
    a, b, _ = polynomials(spec, coef)
    return _roots_beyond(np.concatenate([[1.0], -a[0]]), MIN_ROOT) and _roots_beyond(np.concatenate([[1.0], b[0]]), MIN_ROOT)


def _roots_beyond(side: np.ndarray, bound: float) -> bool:
    """Whether every root of the polynomial side[0] + side[1] z + ... lies beyond ``bound`` in modulus."""
    nonzero = np.nonzero(np.abs(side) > 1e-8)[0]
    return bool(nonzero[-1] == 0 or np.min(np.abs(np.roots(side[:nonzero[-1] + 1][::-1]))) >= bound)


@dataclass
class Layout:
    """Problems of one period as rows: each differenced series right-aligned in ``rows`` (P, T), its
    first column ``first``, its model; ``factors_of`` reads a batch of points into zero-padded Factors."""

    rows: np.ndarray
    first: np.ndarray
    specs: list[ArimaSpec]
    period: int
    kinds: list[ArimaSpec]  # the distinct models
    kind_of: np.ndarray  # (P,) each problem's index in kinds

    @classmethod
    def of(cls, problems: list[tuple[np.ndarray, ArimaSpec]], period: int) -> "Layout":
        ws = [difference(y, spec.d, spec.D, spec.period) for y, spec in problems]
        steps = max(len(w) for w in ws)
        rows = np.zeros((len(problems), steps))
        for i, w in enumerate(ws):
            rows[i, steps - len(w):] = w
        specs = [spec for _, spec in problems]
        kinds = sorted(set(specs), key=str)
        index = {spec: k for k, spec in enumerate(kinds)}
        return cls(rows, np.array([steps - len(w) for w in ws]), specs, period, kinds,
                   np.array([index[spec] for spec in specs]))

    @property
    def dims(self) -> np.ndarray:
        return np.array([spec.n_coef for spec in self.specs])

    def factors_of(self, points: np.ndarray, owner: np.ndarray) -> Factors:
        """Factors (zero-padded to the batch's largest orders) of points (K, D) of problems ``owner`` (K,)."""
        orders = [max(getattr(spec, name) for spec in self.specs) for name in ("p", "q", "P", "Q")]
        out = Factors(*(np.zeros((len(owner), k)) for k in orders), np.zeros(len(owner)))
        kind = self.kind_of[owner]
        for k in np.unique(kind):  # rows of one model share a layout
            at, spec = np.nonzero(kind == k)[0], self.kinds[k]
            g = factors(spec, points[at, :spec.n_coef])
            out.phi[at, :spec.p], out.theta[at, :spec.q], out.sphi[at, :spec.P], out.stheta[at, :spec.Q] = \
                g.phi, g.theta, g.sphi, g.stheta
            out.mu[at] = g.mu
        return out


def fit_css(problems: list[tuple[np.ndarray, ArimaSpec]]) -> list[Fitted]:
    """Each (series y, model) by conditional sum of squares (R's method "CSS": coefficients from 0, the
    constant from the mean of the differenced series): the problems of one period in one lock-step
    Levenberg-Marquardt run."""
    return _by_period(problems, _fit_css_one_period)


def _by_period(problems: list, fit_one_period) -> list:
    out: list = [None] * len(problems)
    by_period: dict[int, list[int]] = {}
    for i, problem in enumerate(problems):
        by_period.setdefault(problem[1].period, []).append(i)
    for period, members in by_period.items():
        for i, fitted in zip(members, fit_one_period([problems[i] for i in members], period)):
            out[i] = fitted
    return out


def _fit_css_one_period(problems: list[tuple[np.ndarray, ArimaSpec]], period: int) -> list[Fitted]:
    lay = Layout.of(problems, period)
    starts = lay.first + np.array([spec.ar_lags for spec in lay.specs])
    x0 = np.zeros((len(problems), max(lay.dims)))
    for i, spec in enumerate(lay.specs):
        if spec.constant:
            x0[i, spec.n_coef - 1] = lay.rows[i, lay.first[i]:].mean()

    def residuals(points: np.ndarray, owner: np.ndarray) -> np.ndarray:
        return css_residuals(lay.rows[owner], lay.factors_of(points, owner), period, starts[owner])

    result = levenberg_marquardt(residuals, x0, lay.dims)
    counted = lay.rows.shape[1] - starts
    out = []
    for i, spec in enumerate(lay.specs):
        ssq = float(result.sse[i])
        n_star = lay.rows.shape[1] - lay.first[i]
        out.append(Fitted(result.x[i, :spec.n_coef].copy(), ssq,
                          deviance(n_star, math.log(ssq / max(counted[i], 1))) if ssq > 0 else -math.inf))
    return out


def fit_ml(problems: list[tuple[np.ndarray, ArimaSpec]]) -> list[Fitted]:
    """Each (series y, model) by exact likelihood from its conditional-sum-of-squares fit, R's method
    "CSS-ML": a CSS fit whose AR or seasonal AR side is not stationary fails (R stops there), the others
    are refined by Levenberg-Marquardt on the Kalman filter's scaled innovations (AR points outside the
    stationary region refused), and MA sides with roots inside the unit circle are flipped outside
    (R's maInvert: the same likelihood)."""
    starts = fit_css(problems)
    ok = [_stationary_ar(spec, fitted.coef) for (_, spec), fitted in zip(problems, starts)]
    refined = _by_period([(y, spec, fitted.coef) for (y, spec), fitted, good in zip(problems, starts, ok) if good],
                         _fit_ml_one_period)
    out, taken = [], iter(refined)
    for good, fitted in zip(ok, starts):
        out.append(next(taken) if good else Fitted(fitted.coef, math.nan, math.inf))
    return out


def _stationary_ar(spec: ArimaSpec, coef: np.ndarray) -> bool:
    """R's arCheck on the CSS estimates: every root of phi(B) and of Phi(B) outside the unit circle (the
    likelihood's own Schur-Cohn test)."""
    f = factors(spec, coef)
    return bool(stationary(f.phi)[0] and stationary(f.sphi)[0])


def _fit_ml_one_period(problems: list[tuple[np.ndarray, ArimaSpec, np.ndarray]], period: int) -> list[Fitted]:
    lay = Layout.of([(y, spec) for y, spec, _ in problems], period)
    x0 = np.zeros((len(problems), max(lay.dims)))
    for i, (_, spec, coef) in enumerate(problems):
        x0[i, :spec.n_coef] = coef

    def scaled(points: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """z exp(mean log F / 2): the sum of their squares is n sigma^2 exp(mean log F), so least
        squares on them maximises the likelihood."""
        z, mean_log_f, _ = _filtered(lay, points, owner)
        with np.errstate(invalid="ignore", over="ignore"):
            return z * np.exp(mean_log_f / 2)[:, None]

    x = levenberg_marquardt(scaled, x0, lay.dims, max_iter=ML_ITERATIONS).x
    for i, spec in enumerate(lay.specs):
        x[i, :spec.n_coef] = invert_ma(spec, x[i, :spec.n_coef])
    z, mean_log_f, counted = _filtered(lay, x, np.arange(len(problems)))
    out = []
    for i, spec in enumerate(lay.specs):
        ssq = float(np.sum(z[i] ** 2)) if np.isfinite(mean_log_f[i]) else math.nan
        log_variance = math.log(ssq / counted[i]) + mean_log_f[i] if ssq > 0 else math.inf
        out.append(Fitted(x[i, :spec.n_coef], ssq, deviance(lay.rows.shape[1] - lay.first[i], log_variance)))
    return out


def _filtered(lay: Layout, points: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """arima_likelihood.standardized of the rows ``owner`` at ``points``."""
    f = lay.factors_of(points, owner)
    a, b = multiply_out(f, lay.period)
    u = lay.rows[owner] - f.mu[:, None]
    return standardized(u, a, b, lay.first[owner])


def invert_ma(spec: ArimaSpec, coef: np.ndarray) -> np.ndarray:
    """coef with each MA factor's roots inside the unit circle replaced by their inverses (R's maInvert)."""
    out = coef.copy()
    for start, order in ((spec.p, spec.q), (spec.p + spec.q + spec.P, spec.Q)):
        out[start:start + order] = _invert_one(coef[start:start + order])
    return out


def _invert_one(ma: np.ndarray) -> np.ndarray:
    """1 + ma_1 B + ... rebuilt from its roots, those inside the unit circle replaced by their inverses."""
    nonzero = np.nonzero(np.concatenate([[1.0], ma]) != 0)[0][-1]
    if nonzero == 0:
        return ma
    roots = np.roots(np.concatenate([[1.0], ma[:nonzero]])[::-1])
    inside = np.abs(roots) < 1
    if not inside.any():
        return ma
    roots[inside] = 1 / roots[inside]
    poly = np.real(np.poly(roots))[::-1]  # prod (z - root), constant term first: divided by it, 1 + ...
    out = np.zeros_like(ma)
    out[:nonzero] = (poly / poly[0])[1:]
    return out


def take_first_round(s: Search, specs: list[ArimaSpec]) -> None:
    """The best of the first round (the first of the least AICc, as R's sequential "<") and the search's
    position: its orders with the constant the search started with (R keeps ``constant`` on when the
    no-constant null model wins)."""
    s.best = min(specs, key=lambda spec: s.tried[spec])
    s.position = replace(s.best, constant=s.position.constant)


def fit_round(searches: list[Search], wanted: list[list[ArimaSpec]]) -> None:
    """Fit every search's wanted models not fitted yet, all in one batch (CSS-ML for exact searches,
    CSS for the others), and score the wanted ones."""
    todo = [(i, spec) for i, specs in enumerate(wanted) for spec in specs if spec not in searches[i].fits]
    for exact, fit in ((True, fit_ml), (False, fit_css)):
        part = [(i, spec) for i, spec in todo if searches[i].exact == exact]
        for (i, spec), fitted in zip(part, fit([(searches[i].y, spec) for i, spec in part]) if part else []):
            searches[i].fits[spec] = fitted
    for s, specs in zip(searches, wanted):
        for spec in specs:
            s.tried.setdefault(spec, _criterion(s, spec, s.fits[spec]))


def _criterion(s: Search, spec: ArimaSpec, fitted: Fitted) -> float:
    """The AICc of a fit, inf when it failed or a root lies within MIN_ROOT (auto.arima's myarima)."""
    ok = np.all(np.isfinite(fitted.coef)) and admissible(spec, fitted.coef)
    return aicc(s.n_star, fitted.deviance, spec.n_coef) if ok else math.inf


def fit_auto_arima(series_list, period) -> list[ArimaFit]:
    """AutoARIMA for each series (1-D arrays, NaN gaps interpolated), all searched together; period:
    one m for all or one per series."""
    series = [_filled(np.asarray(x, dtype=np.float64)) for x in series_list]
    searches = [start_search(y, m) for y, m in zip(series, periods_for(period, len(series)))]
    searching = [s for s in searches if not is_constant(difference(s.y, s.d, s.D, s.period))]
    first = [first_models(s) for s in searching]
    fit_round(searching, first)
    for s, specs in zip(searching, first):
        take_first_round(s, specs)
    while searching := [s for s in searching if not s.done]:
        wanted = [neighbours(s)[:max(0, MAX_MODELS - len(s.tried))] for s in searching]
        fit_round(searching, wanted)
        for s, specs in zip(searching, wanted):
            better = [spec for spec in specs if s.tried[spec] < s.tried[s.best]]
            for spec in specs[specs.index(better[0]) + 1 if better else len(specs):]:
                del s.tried[spec]  # R never reached these: it moved at the first improvement
            s.done = not better
            if better:
                s.best = s.position = better[0]
    return [final_fit(s) for s in searches]


def final_fit(s: Search) -> ArimaFit:
    """The chosen model with sigma^2 = ssq / (n* - k + 1), k = coefficients + 1 (auto.arima's myarima,
    the variance its intervals use); a series constant after differencing gets (0,d,0)(0,D,0) with its
    mean difference as constant, and one where no model has a finite AICc (too few values for any) the
    (0,d,0)(0,D,0) model fitted."""
    if not s.fits:
        w = difference(s.y, s.d, s.D, s.period)
        constant = s.d + s.D <= 1
        spec = ArimaSpec(0, s.d, 0, 0, s.D, 0, s.period, constant)
        return ArimaFit(spec, np.array([w.mean()]) if constant else np.zeros(0), 0.0, -math.inf, s.y)
    spec = s.best if math.isfinite(s.tried[s.best]) else s.spec(0, 0, 0, 0, s.best.constant)
    fitted = s.fits[spec]
    return ArimaFit(spec, fitted.coef, fitted.ssq / max(s.n_star - spec.n_coef, 1), s.tried.get(spec, math.inf), s.y)
