"""Exponential smoothing state space models (ETS), numpy only: the model, its filter, its forecasts.

The innovations state space form of Hyndman, Koehler, Ord & Snyder, "Forecasting with Exponential
Smoothing: The State Space Approach" (Springer 2008), as R's forecast::ets (and statsforecast's
AutoETS, its port) implement it. A model is ETS(error, trend, season): error A or M, trend N, A or
Ad (additive damped), season N, A or M, with state level l, slope b and the last m seasonal terms.
Written in the error-correction form of chapter 2 (Table 2.1), where the point recursions do not
depend on the error type (it only changes the likelihood and the variances):

    q_t     = l_{t-1} + phi b_{t-1}                    (phi = 1 undamped, b = 0 without trend)
    yhat_t  = q_t + s_{t-m}   or   q_t * s_{t-m}       (additive / multiplicative season)
    l_t     = q_t + alpha (p_t - q_t),  p_t = y_t - s_{t-m}  or  y_t / s_{t-m}
    b_t     = phi b_{t-1} + (beta / alpha) (l_t - l_{t-1} - phi b_{t-1})
    s_t     = s_{t-m} + gamma (u_t - s_{t-m}),  u_t = y_t - q_t  or  y_t / q_t

beta here is the beta of R's ets (alpha times the beta* of Holt's method). The likelihood (section
5.2, eq. 5.7 concentrated on sigma) is -2 log L = n log(sum e_t^2) + 2 sum log|yhat_t| for
multiplicative errors (e_t = (y_t - yhat_t) / yhat_t), without the last term for additive ones.

``filter_batch`` runs the recursion for a batch of parameter vectors at once (models of both season
types in one pass): vectorized over the batch, a loop over time only. Fitting, model selection and the ``Ets`` baseline live in
timer1.core.ets_fit, the prediction variances in timer1.core.ets_variance.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from timer1.core.baselines import _filled, _horizon
from timer1.core.ets_variance import forecast_variance

MAX_SEASON = 24  # R's ets ignores seasonality above 24 (one optimized state per season term)


@dataclass(frozen=True)
class EtsSpec:
    """Which ETS model: error "A"/"M", trend "N"/"A" (+ damped), season "N"/"A"/"M", period m."""

    error: str
    trend: str
    season: str
    damped: bool = False
    period: int = 1

    @property
    def name(self) -> str:
        return f"ETS({self.error},{self.trend}{'d' if self.damped else ''},{self.season})"

    @property
    def m(self) -> int:
        """Season length as the state sees it (1 for a non-seasonal model)."""
        return self.period if self.season != "N" else 1


@dataclass
class EtsParams:
    """A batch of B parameter vectors: smoothing (B,) and initial states (season (B, m), R's order:
    column m-1 is the seasonal term of the first observation, column 0 the newest)."""

    alpha: np.ndarray
    beta: np.ndarray  # 0 without trend
    gamma: np.ndarray  # 0 without season
    phi: np.ndarray  # 1 undamped
    level: np.ndarray
    trend: np.ndarray  # 0 without trend
    season: np.ndarray  # (B, m); ignored for season "N"


@dataclass
class FilterResult:
    yhat: np.ndarray  # (T, B) one-step forecasts
    diff: np.ndarray  # (T, B) y - yhat
    level: np.ndarray | None  # (B,) states after each row's last observation (None: not asked for)
    trend: np.ndarray | None
    season: np.ndarray | None  # (B, m) in forecast order: column j is used j+1 steps ahead (mod m)


def filter_batch(y: np.ndarray, params: EtsParams, mult_from: int, lengths=None,
                 states: bool = True) -> FilterResult:
    """Run the ETS recursion over y (T, B), time first, for B parameter vectors sharing one m.

    Rows [0, mult_from) have an additive season (a model without season is one whose m seasonal
    terms and gamma are 0), rows [mult_from, B) a multiplicative one. Row b is y[:lengths[b], b]
    (default: all T); values past a row's length are ignored (pad them with anything finite).

    The states live in one (3m + 2, B) array, the ring: slot j (rows 3j, 3j+1, 3j+2) holds level,
    slope and the seasonal term of phase j. Step t = j (mod m) writes q_t and phi b_{t-1} into rows
    3j+3, 3j+4 (slot j+1's level and slope), so rows 3j+2..3j+4 hold [s_{t-m}, q_t, phi b_{t-1}]
    and the whole update is that (3, B) block plus gains times one error, giving [s_t, l_t, b_t]:
    p_t - q_t = e / s and u_t - s_{t-m} = e / q (e = y_t - yhat_t) for a multiplicative season,
    e itself for an additive one, and (beta / alpha)(l_t - l_{t-1} - phi b) = beta (p_t - q_t).
    About ten numpy calls a step, whatever the models: the loop over time is the cost.
    ``states=False`` (the optimizer's calls: the likelihood needs only the errors) skips copying
    each row's states when it ends, which rows of many lengths (a backtest's) made a fifth of a fit.
    """
    y = np.asarray(y, dtype=np.float64)
    steps, batch = y.shape
    m = params.season.shape[1]
    ring = np.empty((3 * m + 2, batch))
    ring[0], ring[1] = params.level, params.trend
    ring[2:3 * m:3] = params.season[:, ::-1].T  # slot j: R's column m-1-j (column m-1 is used first)
    gains = np.stack([params.gamma, params.alpha, params.beta])  # (3, B) in a block's row order
    phi = np.ascontiguousarray(params.phi, dtype=np.float64)
    yhat, diff, step = np.empty((steps, batch)), np.empty((steps, batch)), np.empty((3, batch))
    add, mul = slice(0, mult_from), slice(mult_from, batch)
    step_season, step_rest = step[0, mul], step[1:, mul]
    final = _FinalStates(np.full(batch, steps) if lengths is None else np.asarray(lengths), m) if states else None
    ending = final.ending if final else {}
    slots = [_slot_views(ring, j, add, mul) for j in range(m)]
    rows = zip(range(steps), y, yhat, diff, yhat[:, add], yhat[:, mul])
    # positional out= and views made once: a step is ten numpy calls and little else
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for (t, y_t, yhat_t, diff_t, yhat_add, yhat_mul), slot in zip(rows, itertools.cycle(slots)):
            level, slope, block, q, damped, s_add, q_add, s_mul, q_mul = slot
            np.multiply(phi, slope, damped)
            np.add(level, damped, q)
            if mult_from:
                np.add(q_add, s_add, yhat_add)
            if mult_from < batch:
                np.multiply(q_mul, s_mul, yhat_mul)
            np.subtract(y_t, yhat_t, diff_t)
            np.multiply(gains, diff_t, step)
            if mult_from < batch:
                np.divide(step_season, q_mul, step_season)
                np.divide(step_rest, s_mul, step_rest)
            np.add(block, step, block)
            if slot is slots[-1]:  # the next step reads slot 0
                ring[:2] = ring[3 * m:]
            if t in ending:
                final.record(t, ring)
    kept = (final.level, final.trend, final.season) if final else (None, None, None)
    return FilterResult(yhat, diff, *kept)


def _slot_views(ring: np.ndarray, j: int, add: slice, mul: slice) -> tuple:
    """Views of slot j's step: l_{t-1}, b_{t-1}, the (3, B) block [s_{t-m}, q_t, phi b_{t-1}]
    (updated in place to [s_t, l_t, b_t]), q and phi b, and s and q of either season type."""
    block = ring[3 * j + 2:3 * j + 5]
    s, q, damped = block
    return ring[3 * j], ring[3 * j + 1], block, q, damped, s[add], q[add], s[mul], q[mul]


class _FinalStates:
    """Copies each row's states after its last observation (rows may end at different times)."""

    def __init__(self, lengths: np.ndarray, m: int):
        self.m = m
        ends = np.unique(lengths)
        self.ending = {int(n) - 1: np.flatnonzero(lengths == n) if len(ends) > 1 else slice(None)
                       for n in ends if n > 0}
        self.level, self.trend = np.zeros(len(lengths)), np.zeros(len(lengths))
        self.season = np.ones((len(lengths), m))

    def record(self, t: int, ring: np.ndarray) -> None:
        rows, now = self.ending[t], 3 * ((t + 1) % self.m)  # slot (t+1) mod m holds l_t, b_t now
        self.level[rows], self.trend[rows] = ring[now, rows], ring[now + 1, rows]
        # forecast order: the next observation (time t+1) reads slot (t+1) mod m
        slots = (t + 1 + np.arange(self.m)) % self.m
        self.season[rows] = ring[3 * slots + 2][:, rows].T


def neg2_loglik(result: FilterResult, lengths: np.ndarray, mult_from: int) -> np.ndarray:
    """-2 log L up to a constant (Hyndman et al. 2008, eq. 5.7), (B,): n log(sum e^2), plus
    2 sum log|yhat| for the rows [mult_from, B) of multiplicative error (e = (y - yhat) / yhat).
    Guards as R's C code: |yhat| < 1e-10 gets 1e-10 added before dividing, a zero sum of squares
    1e-8, a zero |yhat| 1e-8 inside the log; a NaN comes back +inf."""
    steps, batch = result.diff.shape
    lengths = np.asarray(lengths)
    diff, yhat = result.diff, result.yhat
    if lengths.min() < steps:  # past its end a row counts as a perfect forecast of 1
        valid = np.arange(steps)[:, None] < lengths[None, :]  # (T, B)
        diff, yhat = np.where(valid, diff, 0.0), np.where(valid, yhat, 1.0)
    logs = np.zeros(batch)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        errors = diff[:, :mult_from]
        sse = np.einsum("tk,tk->k", errors, errors)
        if mult_from < batch:
            errors, logs[mult_from:] = _relative_errors(diff[:, mult_from:], yhat[:, mult_from:])
            sse = np.concatenate([sse, np.einsum("tk,tk->k", errors, errors)])
        lik = lengths * np.log(np.where(sse > 0, sse, sse + 1e-8)) + 2.0 * logs
    return np.where(np.isnan(lik), np.inf, lik)


def _relative_errors(diff: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, K) e = diff / yhat (guarded) and (K,) sum_t log|yhat_t|."""
    errors = diff / yhat
    tiny = np.flatnonzero(yhat.min(axis=0, initial=np.inf) < 1e-10)  # positive series: rare
    if len(tiny):
        near = yhat[:, tiny]
        tiny = tiny[(np.abs(near) < 1e-10).any(axis=0)]
        near = yhat[:, tiny]  # R adds 1e-10 to a forecast this close to 0 before dividing
        errors[:, tiny] = diff[:, tiny] / np.where(np.abs(near) < 1e-10, near + 1e-10, near)
    return errors, _sum_log(yhat)


def _sum_log(yhat: np.ndarray) -> np.ndarray:
    """(K,) sum over t of log|yhat_t| (log 1e-8 for a 0), as logs of products of 8 rows at a
    time: one log in 8; the columns where a product leaves 1e-300 < |p| < 1e300 go log by log."""
    whole = yhat.shape[0] - yhat.shape[0] % 8
    products = np.abs(yhat[:whole].reshape(whole // 8, 8, yhat.shape[1]).prod(axis=1))  # (T/8, K)
    total = np.log(products).sum(axis=0) + np.log(np.abs(yhat[whole:])).sum(axis=0)
    bad = np.flatnonzero(~((products > 1e-300) & (products < 1e300)).all(axis=0) | ~np.isfinite(total))
    if len(bad):
        size = np.abs(yhat[:, bad])
        total[bad] = np.log(np.where(size > 0, size, size + 1e-8)).sum(axis=0)
    return total


def damped_sums(phi: float, horizon: int) -> np.ndarray:
    """(H,) phi + phi^2 + ... + phi^h for h = 1..H: the slope multiplier of the h-step forecast."""
    return np.cumsum(phi ** np.arange(1, horizon + 1))


@dataclass
class EtsFit:
    """One fitted ETS model: parameters, initial states (R's order), states after the last value."""

    spec: EtsSpec
    alpha: float
    beta: float
    gamma: float
    phi: float
    initial: EtsParams  # batch of one: the fitted initial states
    level: float
    trend: float
    season: np.ndarray  # (m,) forecast order: season[j] is used j+1 steps ahead (mod m)
    n: int  # values filtered
    sigma2: float  # innovation variance: sum e^2 / (n - k - 1), k = n_params (as statsforecast)
    neg2_loglik: float = np.nan
    aicc: float = np.nan
    n_params: int = 0  # optimized parameters and free initial states, + 1 for sigma

    @property
    def name(self) -> str:
        return self.spec.name

    def forecast(self, horizon: int) -> np.ndarray:
        """(H,) point forecasts: l + phi_h b, then + s or * s (Hyndman et al. 2008, Table 2.1)."""
        horizon = _horizon(horizon)
        slope = damped_sums(self.phi, horizon) * self.trend if self.spec.trend != "N" else 0.0
        base = self.level + slope  # (H,)
        seasonal = self.season[np.arange(horizon) % len(self.season)]
        if self.spec.season == "A":
            return base + seasonal
        if self.spec.season == "M":
            return base * seasonal
        return np.broadcast_to(base, (horizon,)).astype(np.float64)

    def variance(self, horizon: int) -> np.ndarray:
        """(H,) forecast variances from the model (classes 1-3 of Hyndman et al. 2008, ch. 6)."""
        return forecast_variance(self, _horizon(horizon))

    def interval(self, horizon: int, level: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each (H,): the forecast -/+ z * sqrt(variance), z the normal quantile of
        (1 + level/100) / 2 (as R's forecast.ets and statsforecast for these models)."""
        if not 0 < level < 100:
            raise ValueError(f"level must be in (0, 100), got {level!r}")
        mean = self.forecast(horizon)
        z = NormalDist().inv_cdf(0.5 + level / 200.0)
        half = z * np.sqrt(np.maximum(self.variance(horizon), 0.0))
        return mean - half, mean + half

    def refilter(self, history) -> EtsFit:
        """The same parameters and initial states, filtered over ``history`` from its start: the
        slow reference that ``extend`` is tested against."""
        values = _filled(history)
        return self._with_states(self._filter(values, self.initial), len(values))

    def extend(self, history) -> EtsFit:
        """The model after ``history``: the fitted series followed by new values (the first
        ``self.n`` values are taken to be the ones fitted). Only the new values are filtered, from
        the stored states, so a rolling-origin backtest costs one fit and a few filter steps per
        origin; equal to ``refilter(history)`` up to rounding. Parameters and sigma2 stay fitted."""
        values = _filled(history)
        if len(values) < self.n:
            raise ValueError(f"extend needs the {self.n} fitted values and more, got {len(values)}")
        if len(values) == self.n:
            return self
        now = EtsParams(*(np.array([v]) for v in (self.alpha, self.beta, self.gamma, self.phi,
                                                  self.level, self.trend)),
                        season=self.season[None, ::-1] if self.spec.season != "N" else np.zeros((1, 1)))
        return self._with_states(self._filter(values[self.n:], now), len(values))

    def _filter(self, values: np.ndarray, params: EtsParams) -> FilterResult:
        return filter_batch(values[:, None], params, 0 if self.spec.season == "M" else 1)

    def _with_states(self, result: FilterResult, n: int) -> EtsFit:
        return replace(self, level=float(result.level[0]), trend=float(result.trend[0]),
                       season=result.season[0].copy(), n=n)
