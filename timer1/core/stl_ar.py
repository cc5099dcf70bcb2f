"""STL + autoregression: FFORMA's "stlm_ar" candidate, R's forecast::stlm(y, modelfunction = ar), numpy only.

FFORMA (Montero-Manso, Athanasopoulos, Hyndman & Talagala 2020, "FFORMA: Feature-based forecast
model averaging", IJF 36(1)) pools, beside ETS, Theta and the naive methods, an ARIMA-class model
fitted as R's forecast::stlm does with ``modelfunction = ar``:

1. seasonal adjustment by STL (Cleveland, Cleveland, McRae & Terpenning 1990, "STL: A
   Seasonal-Trend Decomposition Procedure Based on Loess", J. Official Statistics 6(1)) with
   stlm's defaults: s.window 11, not robust (below). A series with period 1 or at most
   two full periods is not adjusted: R's stl refuses it, and FFORMA's stlm_ar_forec then falls
   back to auto.arima(x, d = 0, D = 0), a stationary ARMA; here the same ar.yw on the raw series
   stands in for it (no ARMA search);
2. R's ar.yw on the adjusted series: demeaned, the divisor-n autocovariances (R's acf), the
   Yule-Walker equations of every order p <= min(n - 1, floor(10 log10 n)) (here at most n - 2,
   ``max_order``) solved at once by Levinson-Durbin, the order of least AIC = n log(sigma_p^2) +
   2p + 2, and its innovations variance scaled by n / (n - p - 1) (ar.yw's "Splus compatibility"
   factor);
3. forecasts: the AR recursion on the demeaned adjusted series (R's predict.ar) plus the mean,
   plus the last m values of the seasonal component repeated (forecast.stlm: a seasonal naive
   forecast of the season); intervals from the AR alone, z * sqrt(sigma^2 sum_{j<h} psi_j^2), the
   season taken as known, as forecast.stlm does.

Yule-Walker estimates are always stationary, so on a trending series the forecast reverts to the
mean of the adjusted series, as R's does: the trend is left to the pool's other candidates.

Batched: the STL of every series of one (length, period) is a few band-matrix products over the
whole batch, the Levinson-Durbin recursion runs over all series at once: 100 monthly series of 200
values fit in about 20 ms in one call, one such series alone in about 1 ms (benchmarks/stl_ar_fit.py).

STL as R's stats::stl runs it (the netlib Fortran of Cleveland et al., which statsmodels' STL
also follows), with the defaults stlm passes: s.window 11 (the first of mstl's 7 + 4 * seq(6) for
one seasonal period; forecast 8.x, the FFORMA era, used 13), s.degree 0, t.window =
nextodd(ceiling(1.5 m / (1 - 1.5 / s.window))), l.window = nextodd(m), t.degree = l.degree = 1,
each jump ceiling(window / 10), 2 inner passes and no robustness pass (robust = FALSE). One inner pass:

    detrended  = y - trend
    cycle      = each cycle-subseries (every m-th value) smoothed by loess(s.window, s.degree) and
                 extended one value at each end: n + 2m values
    low        = loess(l.window) of the moving averages of length m, m and 3 of cycle: n values
    seasonal   = cycle (its middle n values) - low
    trend      = loess(t.window, t.degree) of y - seasonal

Without robustness weights every loess is a fixed linear map of its input, set by the length,
span, degree and jump alone. So each is built once per (n, m) as a band matrix,
out[t] = sum_w weights[t, w] x[start[t] + w], and the decomposition of a whole batch of series of
one length is a handful of gathers and products (``stl_batch``).

The loess estimate at x_s from the window [left, right] (1-based, as the Fortran counts): tricube
weights of |j - x_s| / h, h the larger distance to the window's ends (plus (span - n) // 2 when the
span exceeds the data), 1 within 0.001 h, 0 beyond 0.999 h, normalised; degree 1 multiplies them by
1 + b (j - a) (a the weighted mean of j, b = (x_s - a) / sum w (j - a)^2) unless the window is too
narrow to fit a slope (sqrt of that sum <= 0.001 (n - 1)). With a jump J > 1 the estimate is made at
1, 1 + J, ... and at n, and the values between are linearly interpolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from timer1.core.baselines import _filled, _horizon, periods_for

S_WINDOW = 11  # R's stlm: mstl's s.window = 7 + 4 * seq(6), first value (forecast 8.x used 13)
INNER = 2  # stl's inner passes when robust = FALSE


@dataclass(frozen=True)
class Band:
    """A linear map from n_in to n_out values with a band structure:
    out[..., t] = sum_w weights[t, w] * x[..., start[t] + w]."""

    start: np.ndarray  # (n_out,) int, 0-based
    weights: np.ndarray  # (n_out, W)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(..., n_in) -> (..., n_out)."""
        width = self.weights.shape[1]
        padded = np.concatenate([x, np.zeros(x.shape[:-1] + (width,))], axis=-1)  # a band may overhang
        out = np.zeros(x.shape[:-1] + (len(self.start),))  # (..., n_out)
        for w in range(width):  # summed in one fixed order: a row's result never depends on the other rows
            out += padded[..., self.start + w] * self.weights[:, w]
        return out


def loess_rows(n: int, span: int, degree: int, xs: np.ndarray, left: np.ndarray) -> np.ndarray:
    """(P, min(span, n)) weights of the loess estimates at positions xs (P,) (1-based, may lie
    outside 1..n) from the windows starting at left (P,) (1-based): the Fortran's stlest."""
    width = min(span, n)
    xs, left = np.asarray(xs, dtype=np.float64)[:, None], np.asarray(left)[:, None]  # (P, 1)
    j = left + np.arange(width)  # (P, W) 1-based positions
    h = np.maximum(xs - left, left + width - 1 - xs)
    if span > n:
        h = h + (span - n) // 2
    r = np.abs(j - xs)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(r <= 0.001 * h, 1.0, np.clip(1.0 - (r / h) ** 3, 0.0, None) ** 3)
    w = np.where(r <= 0.999 * h, w, 0.0)
    w = w / w.sum(axis=1, keepdims=True)  # never 0: x_s itself or its neighbour is in the window
    if degree > 0:
        a = np.sum(w * j, axis=1, keepdims=True)
        c = np.sum(w * (j - a) ** 2, axis=1, keepdims=True)
        fit_slope = (np.sqrt(c) > 0.001 * (n - 1)) & (h > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(fit_slope, w * ((xs - a) / c * (j - a) + 1.0), w)
    return w


def loess_band(n: int, span: int, degree: int, jump: int) -> Band:
    """The Fortran's stless over n values as a band: estimates at 1, 1 + J, ... (J = min(jump, n-1)),
    at n too when the steps miss it, the values between interpolated linearly."""
    if n < 2:
        return Band(np.zeros(1, dtype=np.int64), np.ones((1, 1)))
    step = min(jump, n - 1)
    at = np.arange(1, n + 1, step)  # (P,) where loess is evaluated
    if span >= n:
        left = np.ones(len(at), dtype=np.int64)
    else:  # the window slides with x_s, clamped at both ends
        left = np.clip(at - (span + 1) // 2 + 1, 1, n - span + 1)
    if at[-1] != n:  # the last value, with the window of the last step (as the Fortran)
        at, left = np.append(at, n), np.append(left, left[-1])
    rows = loess_rows(n, span, degree, at, left)  # (P, w)
    # output t lies between estimates a and a + 1: (1 - f) row_a + f row_{a+1}
    t = np.arange(1, n + 1)
    a = np.searchsorted(at, t, side="right") - 1  # (n,) last estimate at or before t
    b = np.minimum(a + 1, len(at) - 1)
    f = np.where(b > a, (t - at[a]) / np.maximum(at[b] - at[a], 1), 0.0)
    offset = left[b] - left[a]  # (n,) >= 0: the windows only move right
    width = rows.shape[1]
    weights = np.zeros((n, width + int(offset.max())))
    weights[:, :width] = (1 - f)[:, None] * rows[a]
    weights[np.arange(n)[:, None], offset[:, None] + np.arange(width)] += f[:, None] * rows[b]
    return Band(left[a] - 1, weights)


def subseries_band(k: int, span: int, degree: int, jump: int) -> Band:
    """One cycle-subseries of k values smoothed and extended to k + 2: loess at 0 from the first
    min(span, k) values, the smoother over 1..k, loess at k + 1 from the last ones (the Fortran's
    stlss, which puts these at the positions one period before and after the data)."""
    inner = loess_band(k, span, degree, jump)
    width = min(span, k)
    ends = loess_rows(k, span, degree, np.array([0, k + 1]), np.array([1, max(1, k - span + 1)]))  # (2, w)
    size = max(inner.weights.shape[1], width)
    weights = np.zeros((k + 2, size))
    weights[1:-1, :inner.weights.shape[1]] = inner.weights
    weights[0, :width], weights[-1, :width] = ends
    start = np.concatenate([[0], inner.start, [max(0, k - span)]])
    return Band(start, weights)


def nextodd(x: float) -> int:
    x = int(round(x))
    return x + 1 if x % 2 == 0 else x


def _odd_span(span: int) -> int:
    """The Fortran widens every span to at least 3 and odd."""
    span = max(3, span)
    return span + 1 if span % 2 == 0 else span


@dataclass(frozen=True)
class StlPlan:
    """The linear smoothers of STL for one (n, m)."""

    n: int
    period: int
    long_phase: Band  # the cycle-subseries of ceil(n / m) values
    short_phase: Band | None  # those one shorter (None when m divides n)
    phases_long: int  # how many phases have ceil(n / m) values: the first ones
    low_pass: Band
    trend: Band


@lru_cache(maxsize=64)
def stl_plan(n: int, period: int) -> StlPlan:
    """The smoothers for n values of period m, windows and jumps as R's stl() derives them from
    s.window = S_WINDOW."""
    if period < 2 or n <= 2 * period:
        raise ValueError(f"STL needs period >= 2 and more than two periods, got n={n}, m={period}")
    t_window = nextodd(math.ceil(1.5 * period / (1 - 1.5 / S_WINDOW)))
    l_window = nextodd(period)
    jumps = [math.ceil(w / 10) for w in (S_WINDOW, t_window, l_window)]  # from R's spans, before widening
    s_span, t_span, l_span = (_odd_span(w) for w in (S_WINDOW, t_window, l_window))
    longest = -(-n // period)
    phases_long = n - (longest - 1) * period
    short = subseries_band(longest - 1, s_span, 0, jumps[0]) if phases_long < period else None
    return StlPlan(n, period, subseries_band(longest, s_span, 0, jumps[0]), short, phases_long,
                   loess_band(n, l_span, 1, jumps[2]), loess_band(n, t_span, 1, jumps[1]))


def moving_average(x: np.ndarray, length: int) -> np.ndarray:
    """(..., T) -> (..., T - length + 1) means of every run of ``length`` values, summed oldest first:
    one fixed order, so a row's means never depend on the other rows of the batch."""
    n = x.shape[-1] - length + 1
    total = x[..., :n].copy()
    for k in range(1, length):
        total += x[..., k:k + n]
    return total / length


def cycle_subseries(x: np.ndarray, plan: StlPlan) -> np.ndarray:
    """(B, n) -> (B, n + 2m): every phase smoothed, one extra cycle before and after.

    The values laid out as (B, cycles, m) make column j the subseries of phase j; the first
    ``phases_long`` columns have one value more than the rest, so two smoothers cover them."""
    batch, m = x.shape[0], plan.period
    cycles = -(-plan.n // m)
    table = np.zeros((batch, cycles * m))
    table[:, :plan.n] = x
    table = table.reshape(batch, cycles, m).transpose(0, 2, 1)  # (B, m, cycles)
    out = np.zeros((batch, m, cycles + 2))
    split = plan.phases_long
    out[:, :split] = plan.long_phase.apply(table[:, :split])
    if plan.short_phase is not None:
        out[:, split:, :cycles + 1] = plan.short_phase.apply(table[:, split:, :cycles - 1])
    # position c * m + j (c = 0: the cycle before the data) holds phase j's c-th value
    return out.transpose(0, 2, 1).reshape(batch, -1)[:, :plan.n + 2 * m]


def strength(remainder: np.ndarray, part: np.ndarray) -> float:
    """max(0, 1 - Var(remainder) / Var(part)): with part = seasonal + remainder the seasonal strength,
    with trend + remainder the trend strength (Wang, Smith & Hyndman 2006; Hyndman's tsfeatures)."""
    total = float(np.var(part))
    return 0.0 if total <= 0 else max(0.0, 1.0 - float(np.var(remainder)) / total)


def stl_batch(y, period: int) -> tuple[np.ndarray, np.ndarray]:
    """(seasonal, trend), each (B, n), of R's stl(y, s.window = S_WINDOW, robust = FALSE) for a batch
    y (B, n) of series of one length (finite values, n > 2m)."""
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    plan = stl_plan(y.shape[1], int(period))
    m, n = plan.period, plan.n
    trend = np.zeros_like(y)
    for _ in range(INNER):
        cycle = cycle_subseries(y - trend, plan)  # (B, n + 2m)
        smooth = moving_average(moving_average(moving_average(cycle, m), m), 3)  # (B, n)
        seasonal = cycle[:, m:m + n] - plan.low_pass.apply(smooth)
        trend = plan.trend.apply(y - seasonal)
    return seasonal, trend


# The autoregression (R's ar.yw and predict.ar) and stlm


@dataclass
class StlArFit:
    """One fitted STL + AR model. ``period`` is the m the series was adjusted with (1: not adjusted,
    then ``seasonal`` is zeros)."""

    period: int
    seasonal: np.ndarray  # (n,) STL seasonal component
    adjusted: np.ndarray  # (n,) the series less its seasonal component: what the AR models
    order: int
    ar: np.ndarray  # (p,) phi_1..phi_p: x_t = sum_j phi_j x_{t-j} + e_t on the demeaned series
    mean: float  # of the adjusted series
    sigma2: float  # innovations variance, ar.yw's var.pred
    aic: np.ndarray  # (order_max + 1,) AIC by order, its minimum subtracted

    @property
    def n(self) -> int:
        return len(self.adjusted)

    def forecast(self, horizon: int) -> np.ndarray:
        """(H,) the AR forecast of the adjusted series plus the last season repeated."""
        horizon = _horizon(horizon)
        return ar_forecast(self.adjusted - self.mean, self.ar, horizon) + self.mean + self._season(horizon)

    def variance(self, horizon: int) -> np.ndarray:
        """(H,) sigma^2 (psi_0^2 + ... + psi_{h-1}^2): R's predict.ar standard error, squared."""
        return self.sigma2 * np.cumsum(psi_weights(self.ar, _horizon(horizon)) ** 2)

    def interval(self, horizon: int, level: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each (H,): the forecast -/+ z sqrt(variance), z the normal quantile of
        (1 + level/100) / 2 (R's forecast.ar; forecast.stlm adds the season to both ends)."""
        if not 0 < level < 100:
            raise ValueError(f"level must be in (0, 100), got {level!r}")
        mean = self.forecast(horizon)
        half = NormalDist().inv_cdf(0.5 + level / 200.0) * np.sqrt(self.variance(horizon))
        return mean - half, mean + half

    def _season(self, horizon: int) -> np.ndarray:
        if self.period == 1:
            return np.zeros(horizon)
        last = self.seasonal[self.n - self.period:]  # (m,)
        return last[np.arange(horizon) % self.period]


def ar_forecast(centred: np.ndarray, ar: np.ndarray, horizon: int) -> np.ndarray:
    """(H,) x_{n+h} = sum_j phi_j x_{n+h-j}, future values replaced by their forecasts (mean 0)."""
    p = len(ar)
    path = np.concatenate([centred[len(centred) - p:] if p else np.zeros(0), np.zeros(horizon)])
    reversed_ar = ar[::-1]  # lines up with path[t - p:t]
    for t in range(p, p + horizon):
        path[t] = np.dot(reversed_ar, path[t - p:t])
    return path[p:]


def psi_weights(ar: np.ndarray, count: int) -> np.ndarray:
    """(count,) psi_0 = 1, psi_j = sum_{i=1..min(j,p)} phi_i psi_{j-i}: the MA(inf) weights of the
    AR (R's ar2ma), which carry the h-step forecast error variance."""
    psi = np.zeros(count)
    psi[0] = 1.0
    for j in range(1, count):
        lags = min(j, len(ar))
        psi[j] = np.dot(ar[:lags], psi[j - 1::-1][:lags])
    return psi


def autocovariances(series: list[np.ndarray], max_lag: int) -> np.ndarray:
    """(B, max_lag + 1) c_k = sum_t (x_t - xbar)(x_{t+k} - xbar) / n of each series (R's acf with
    type "covariance"), one series at a time: its demeaned values are padded with max_lag zeros,
    which add nothing to any sum."""
    out = np.empty((len(series), max_lag + 1))
    for row, x in zip(out, series):  # one series at a time: its sums never depend on the other series
        centred = x - x.mean()
        padded = np.concatenate([centred, np.zeros(max_lag)])  # lags never run off
        row[:] = [(centred * padded[k:k + len(x)]).sum() for k in range(max_lag + 1)]
        row /= len(x)
    return out


def levinson_durbin(acov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yule-Walker solutions of every order 1..P for a batch: acov (B, P + 1) ->
    coefs (B, P, P), row p-1 holding phi of the order-p model in its first p columns, and
    variances (B, P + 1), the innovations variance of orders 0..P (Durbin 1960; R's eureka).

    Order k from order k-1: the partial autocorrelation kappa = (c_k - sum_j phi_j c_{k-j}) / v,
    phi_j <- phi_j - kappa phi_{k-j}, phi_k = kappa, v <- v (1 - kappa^2)."""
    batch, order_max = acov.shape[0], acov.shape[1] - 1
    coefs = np.zeros((batch, order_max, order_max))
    variances = np.empty((batch, order_max + 1))
    variances[:, 0] = acov[:, 0]
    phi = np.zeros((batch, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(1, order_max + 1):
            kappa = (acov[:, k] - (phi * acov[:, k - 1:0:-1]).sum(axis=1)) / variances[:, k - 1]
            phi = np.concatenate([phi - kappa[:, None] * phi[:, ::-1], kappa[:, None]], axis=1)  # (B, k)
            coefs[:, k - 1, :k] = phi
            variances[:, k] = variances[:, k - 1] * (1.0 - kappa ** 2)
    return coefs, variances


def max_order(n: int) -> int:
    """R's order.max, min(n - 1, floor(10 log10 n)), but at most n - 2 so that ar.yw's n / (n - p - 1)
    stays finite (R allows p = n - 1 there and reports an infinite variance; it only matters for n <= 11)."""
    return max(0, min(n - 2, math.floor(10 * math.log10(n)))) if n > 1 else 0


@dataclass
class ArFit:
    order: int
    ar: np.ndarray  # (p,)
    mean: float
    sigma2: float
    aic: np.ndarray  # (order_max + 1,)


def fit_ar_batch(series: list[np.ndarray]) -> list[ArFit]:
    """R's ar.yw with aic = TRUE for every series of the list at once (lengths may differ).

    A series whose centred values are all (relative to its size) zero, a constant one, gets order 0
    and variance 0: R stops there ("zero-variance series"), a forecaster repeats the mean."""
    lengths = np.array([len(x) for x in series])
    orders_max = np.array([max_order(n) for n in lengths])
    acov = autocovariances(series, int(orders_max.max()))  # (B, P + 1)
    scale = np.array([np.max(np.abs(x)) for x in series])
    flat = acov[:, 0] <= (1e-10 * scale) ** 2  # rounding-level spread only
    acov[flat] = np.eye(1, acov.shape[1])  # a harmless white-noise stand-in, overridden below
    coefs, variances = levinson_durbin(acov)
    scores = _aic(variances, lengths, orders_max)  # (B, P + 1)
    out = []
    for b, x in enumerate(series):
        order = 0 if flat[b] else int(np.argmin(scores[b]))  # the first of equal scores, as R
        n = lengths[b]
        sigma2 = 0.0 if flat[b] else variances[b, order] * n / max(n - order - 1, 1)
        kept = scores[b, :orders_max[b] + 1]
        out.append(ArFit(order, coefs[b, order - 1, :order].copy() if order else np.zeros(0), float(x.mean()),
                         float(sigma2), kept - kept.min() if np.isfinite(kept.min()) else kept))
    return out


def _aic(variances: np.ndarray, lengths: np.ndarray, orders_max: np.ndarray) -> np.ndarray:
    """(B, P + 1) AIC n log(v_p) + 2p + 2 (R's ar.yw: p coefficients and the mean), +inf past each
    series' order.max."""
    orders = np.arange(variances.shape[1])[None, :]  # (1, P + 1)
    n = lengths[:, None].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = n * np.log(variances) + 2.0 * orders + 2.0
    scores = np.where(np.isnan(scores), np.inf, scores)
    return np.where(orders <= orders_max[:, None], scores, np.inf)


def fit_stl_ar(series_list, period) -> list[StlArFit]:
    """STL + AR (R's stlm(y, modelfunction = ar)) for each series, all series fitted together.

    series_list: 1-D arrays (lengths may differ; NaN gaps interpolated first, as baselines._filled
    does); period: the season length m, one int for all or one per series (baselines.periods_for).
    A series with m = 1 or n <= 2m is not seasonally adjusted: its fit has period 1."""
    series = [_filled(s) for s in series_list]
    periods = [m if m > 1 and len(x) > 2 * m else 1 for x, m in zip(series, periods_for(period, len(series)))]
    seasonal = [np.zeros(len(x)) for x in series]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (x, m) in enumerate(zip(series, periods)):
        if m > 1:
            groups.setdefault((len(x), m), []).append(i)
    for (_, m), members in groups.items():  # one batched STL per (length, period)
        seasons, _ = stl_batch(np.stack([series[i] for i in members]), m)
        for row, i in enumerate(members):
            seasonal[i] = seasons[row]
    adjusted = [x - s for x, s in zip(series, seasonal)]
    return [StlArFit(m, s, a, f.order, f.ar, f.mean, f.sigma2, f.aic)
            for m, s, a, f in zip(periods, seasonal, adjusted, fit_ar_batch(adjusted))]

