"""Naive and linear forecasting baselines (``python evaluate.py --no-model`` scores them under the paper's protocol).

Every baseline has ``forecast(history, horizon) -> (horizon,) array``; a NaN in the history is
skipped (last/mean/drift) or filled from the nearest valid values (seasonal naive, linear). The
linear model also needs ``fit(train_values, lookback, horizon)`` on the train region first.

    last            repeat the last valid value
    mean            repeat the mean of the history
    seasonal_naive  repeat the last season: y[L+h] = x[L - m + (h mod m)], m given or estimated
    drift           the line through the first and last valid values, extended (Hyndman's drift)
    linear          DLinear-style (Zeng et al. 2023, "Are Transformers Effective for Time Series
                    Forecasting?"), fit by least squares on every window of the train region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from timer1.core.rewards import moving_average
from timer1.core.window import interpolate_gaps


def _history(history) -> np.ndarray:
    """Validated 1-D float history with at least one finite value (NaN allowed elsewhere)."""
    try:
        x = np.asarray(history, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"history must be numeric: {err}") from None
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"history must be a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).any():
        raise ValueError("history has no finite value")
    return x


def _filled(history) -> np.ndarray:
    """The validated history with its gaps interpolated (timer1.core.window.interpolate_gaps)."""
    return interpolate_gaps(_history(history))


def _horizon(horizon) -> int:
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    return int(horizon)


def periods_for(period, count: int) -> list[int]:
    """The season length of each of ``count`` series from ``period``: one int for all or one per
    series, each a positive int; ValueError otherwise."""
    periods = [period] * count if isinstance(period, (int, np.integer)) else list(period)
    if len(periods) != count or any(not isinstance(m, (int, np.integer)) or m < 1 for m in periods):
        raise ValueError(f"period must be a positive int or one per series, got {period!r}")
    return [int(m) for m in periods]


class LastValue:
    name = "last"

    def forecast(self, history, horizon) -> np.ndarray:
        x, horizon = _history(history), _horizon(horizon)
        return np.full(horizon, x[np.isfinite(x)][-1])


class Mean:
    name = "mean"

    def forecast(self, history, horizon) -> np.ndarray:
        x, horizon = _history(history), _horizon(horizon)
        return np.full(horizon, x[np.isfinite(x)].mean())


class Drift:
    """y[L-1+h] = x_last + h' * slope, slope = (x_last - x_first) / (i_last - i_first) over valid points."""

    name = "drift"

    def forecast(self, history, horizon) -> np.ndarray:
        x, horizon = _history(history), _horizon(horizon)
        valid = np.flatnonzero(np.isfinite(x))
        first, last = valid[0], valid[-1]
        slope = (x[last] - x[first]) / (last - first) if last > first else 0.0
        steps_ahead = np.arange(1, horizon + 1) + (len(x) - 1 - last)  # from the last valid point
        return x[last] + slope * steps_ahead


def estimate_period(x: np.ndarray, min_correlation: float = 0.3) -> int:
    """The lag of the highest autocorrelation PEAK in [2, len/2], or 1.
    Only a local peak of at least ``min_correlation`` counts: a random walk, whose autocorrelation
    just decays, gets period 1 instead of its smallest lag."""
    x = _filled(x)
    max_period = len(x) // 2
    centred = x - x.mean()
    denom = float(np.dot(centred, centred))
    if denom == 0.0 or max_period < 2:
        return 1
    lags = np.arange(0, max_period + 2)
    acf = np.array([np.dot(centred[k:], centred[:len(x) - k]) / denom if k < len(x) else 0.0 for k in lags])
    best, best_value = 1, min_correlation
    for k in range(2, max_period + 1):
        if acf[k] > acf[k - 1] and acf[k] >= acf[k + 1] and acf[k] >= best_value:
            best, best_value = k, acf[k]
    if best > 1 and best + 1 < len(x):
        # this estimate divides every lag by the same n, so it shrinks with the lag and can put the
        # peak one lag early on a short history; the per-pair mean decides between k and k + 1
        per_pair = [np.dot(centred[k:], centred[:len(x) - k]) / (len(x) - k) for k in (best, best + 1)]
        best += int(per_pair[1] > per_pair[0])
    return best


def period_from_step(step_seconds: float | None) -> int | None:
    """The daily cycle in steps for sub-daily data (hourly -> 24, 15 min -> 96); None otherwise."""
    if not step_seconds or step_seconds <= 0 or step_seconds >= 86400 or 86400 % step_seconds:
        return None
    return int(86400 // step_seconds)


def period_for_step(step) -> int | None:
    """The natural cycle of a :class:`timer1.data.Step`: a day for sub-daily data (24 hourly, 96 for
    15 minutes: `period_from_step`), a week of days, a year of weeks, months or quarters; None for
    yearly data and a running index (then the history's autocorrelation decides). A calendar with
    closed days or hours (timer1.data.calendars) counts open steps: a business-day week is 5, a day
    of trading hours its open slots."""
    if step.kind == "daily" and step.weekdays:
        return len(step.weekdays)
    if step.times:
        return len(step.times)
    calendar = {"daily": 7, "weekly": 52, "monthly": 12, "quarterly": 4}
    if step.kind in calendar:
        return calendar[step.kind]
    if step.kind in ("index", "yearly"):
        return None
    return period_from_step(step.seconds)


@dataclass
class SeasonalNaive:
    """Repeat the last full season. ``period=None``: estimate it from each history (``estimate_period``)."""

    period: int | None = None
    name = "seasonal_naive"

    def forecast(self, history, horizon) -> np.ndarray:
        x, horizon = _filled(history), _horizon(horizon)
        period = self.period if self.period is not None else estimate_period(x)
        if not isinstance(period, (int, np.integer)) or period < 1:
            raise ValueError(f"seasonal period must be a positive integer, got {period!r}")
        if period > len(x):
            raise ValueError(f"seasonal period {period} is longer than the history ({len(x)} values)")
        last_season = x[len(x) - period:]  # (m,)
        return last_season[np.arange(horizon) % period]


def ridge_solve(features: np.ndarray, targets: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_W |F W - Y|^2 + lam |W|^2 with lam = ridge * mean(diag(F^T F)), by the normal equations."""
    gram = features.T @ features  # (P, P)
    lam = ridge * float(np.mean(np.diag(gram))) if ridge > 0 else 0.0
    return np.linalg.solve(gram + lam * np.eye(len(gram)), features.T @ targets)


@lru_cache(maxsize=32)
def average_matrix(lookback: int, kernel: int) -> np.ndarray:
    """(L, L) the moving average as a matrix: it is linear, so column j is the average of the unit
    impulse e_j (built once per shape: a backtest forecasts at every origin with the same one)."""
    average = np.stack([moving_average(e, kernel) for e in np.eye(lookback)], axis=1)
    average.flags.writeable = False
    return average


@dataclass
class Linear:
    """DLinear-style linear model: y = W_s seasonal(x) + W_t trend(x) + b, one (W_s, W_t, b) per series.

    center="last" subtracts the window's last value from inputs and targets and adds it back (as
    NLinear does), so a level never seen in training does not bias the forecast. The 2L features
    span only L dimensions (trend and seasonal are both linear in x): the tiny ridge picks the
    minimum-norm split between W_s and W_t.
    """

    kernel: int = 25
    center: str = "last"
    ridge: float = 1e-6
    weights: np.ndarray | None = field(default=None, repr=False)  # (2L + 1, H)
    lookback: int = 0
    horizon: int = 0
    name = "linear"

    def __post_init__(self):
        if self.center not in ("last", "none"):
            raise ValueError(f"Linear.center must be 'last' or 'none', got {self.center!r}")

    def _features(self, windows: np.ndarray) -> np.ndarray:
        """(N, L) windows -> (N, 2L + 1) [seasonal, trend, 1]."""
        trend = windows @ average_matrix(windows.shape[1], self.kernel).T  # (N, L)
        return np.hstack([windows - trend, trend, np.ones((len(windows), 1))])

    def _offset(self, windows: np.ndarray) -> np.ndarray:
        return windows[:, -1:] if self.center == "last" else np.zeros((len(windows), 1))

    def fit(self, train_values, lookback: int, horizon: int) -> "Linear":
        values = np.asarray(train_values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"train_values must be 1-D, got shape {values.shape}")
        if lookback < 1 or horizon < 1:
            raise ValueError(f"lookback and horizon must be positive, got {lookback}, {horizon}")
        if len(values) < lookback + horizon:
            raise ValueError(f"train region has {len(values)} values, fewer than lookback+horizon={lookback + horizon}")
        rows = np.lib.stride_tricks.sliding_window_view(values, lookback + horizon)  # (N, L+H)
        rows = rows[np.isfinite(rows).all(axis=1)]
        if len(rows) == 0:
            raise ValueError("train region has no window without missing values")
        inputs, targets = rows[:, :lookback], rows[:, lookback:]  # (N, L), (N, H)
        offset = self._offset(inputs)  # (N, 1)
        features = self._features(inputs - offset)  # (N, 2L+1)
        self.weights = ridge_solve(features, targets - offset, self.ridge)  # (2L+1, H)
        self.lookback, self.horizon = lookback, horizon
        return self

    def forecast(self, history, horizon) -> np.ndarray:
        if self.weights is None:
            raise ValueError("Linear baseline is not fitted: call fit(train_values, lookback, horizon) first")
        x, horizon = _filled(history), _horizon(horizon)
        if len(x) != self.lookback or horizon > self.horizon:
            raise ValueError(f"Linear was fitted for lookback {self.lookback} and horizon <= {self.horizon}, "
                             f"got history of {len(x)} and horizon {horizon}")
        window = x[None, :]  # (1, L)
        offset = self._offset(window)
        return (self._features(window - offset) @ self.weights + offset)[0, :horizon]


@dataclass
class Theta:
    """The Theta method (Assimakopoulos & Nikolopoulos 2000, the M3 competition's winner) in the form
    Hyndman & Billah (2003) proved it to be: simple exponential smoothing whose forecast drifts by half
    the slope of the series' least-squares line. With ``period`` > 1 the series is first seasonally
    adjusted by classical multiplicative decomposition, when it is positive, at least two cycles long
    and its autocorrelation at the period passes the 90% test the original method uses."""

    period: int = 1
    name = "theta"

    def forecast(self, history, horizon) -> np.ndarray:
        x, horizon = _filled(history)[-THETA_MAX_HISTORY:], _horizon(horizon)
        n = len(x)
        indices = seasonal_indices(x, self.period)  # (m,) or None
        adjusted = x / indices[np.arange(n) % len(indices)] if indices is not None else x  # (n,)
        alpha, level = ses_fit(adjusted)
        slope = np.polyfit(np.arange(n), adjusted, 1)[0] if n > 1 else 0.0
        steps = np.arange(horizon)  # h - 1
        drift = 0.5 * slope * (steps + 1 / alpha - (1 - alpha) ** n / alpha)  # Hyndman & Billah, eq. 4
        out = level + drift  # (H,)
        return out * indices[(n + steps) % len(indices)] if indices is not None else out


THETA_MAX_HISTORY = 2000  # Theta fits this many last values at most: the level forgets older ones anyway


def ses_fit(x: np.ndarray) -> tuple[float, float]:
    """(alpha, final level) of simple exponential smoothing, alpha on a grid by the one-step-ahead
    squared error, the level started at the first value."""
    alphas = np.linspace(0.05, 1.0, 20)  # (A,)
    level = np.full(len(alphas), x[0])
    sse = np.zeros(len(alphas))
    for value in x[1:]:
        sse += (value - level) ** 2
        level = level + alphas * (value - level)
    best = int(np.argmin(sse))
    return float(alphas[best]), float(level[best])


def seasonal_indices(x: np.ndarray, period: int) -> np.ndarray | None:
    """Multiplicative seasonal indices (mean 1) of classical decomposition, or None when the series
    is not positive, shorter than two cycles, or shows no cycle at ``period`` (|r_m| below 1.645 times
    its standard error, sqrt((1 + 2 sum_{k<m} r_k^2) / n))."""
    n = len(x)
    if period < 2 or n < 2 * period or (x <= 0).any():
        return None
    centred = x - x.mean()
    denom = float(np.dot(centred, centred))
    if denom == 0.0:
        return None
    acf = np.array([np.dot(centred[k:], centred[:n - k]) / denom for k in range(1, period + 1)])  # r_1..r_m
    if abs(acf[-1]) < 1.645 * np.sqrt((1 + 2 * np.sum(acf[:-1] ** 2)) / n):
        return None
    weights = np.ones(period + 1 if period % 2 == 0 else period)
    if period % 2 == 0:
        weights[[0, -1]] = 0.5  # the 2 x m centred moving average of an even period
    trend = np.convolve(x, weights / period, mode="valid")  # (n - len(weights) + 1,)
    offset = len(weights) // 2
    ratios = x[offset:offset + len(trend)] / trend
    phases = (np.arange(len(trend)) + offset) % period
    indices = np.array([ratios[phases == p].mean() for p in range(period)])  # (m,)
    return indices / indices.mean()


BASELINES = {
    "last": LastValue,
    "mean": Mean,
    "seasonal_naive": SeasonalNaive,
    "drift": Drift,
    "linear": Linear,
}


def make_baseline(name: str, **kwargs):
    """A baseline by its report name (``BASELINES`` keys)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return BASELINES[name](**kwargs)
