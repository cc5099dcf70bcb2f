"""The evidence about one series that the judge reads: what the product already measures.

FFORMA (Montero-Manso et al. 2020) learns combination weights from series features; here the
features are few and are written out for a language model to reason over, beside the strongest
evidence of all, each candidate's own rolling-origin backtest (timer1.core.backtest):

- the step, the length, the horizon;
- seasonal and trend strength (Wang, Smith & Hyndman 2006, "Characteristic-based clustering for
  time series data", as Hyndman's tsfeatures computes them from an STL decomposition):
  F_s = max(0, 1 - Var(R) / Var(S + R)), F_t = max(0, 1 - Var(R) / Var(T + R));
- the latest level shift: the mean of the last ``horizon`` values against the mean of the
  ``horizon`` before, in units of the series' mean absolute one-step change (MASE's scale);
- each candidate's backtest error in the same units: over every origin, at the latest
  ``LATEST`` origins, and over the first and the second half of the horizon.

Every number is scale-free, so series of any level and unit read alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from timer1.core.backtest import FIT_HISTORY, Backtest
from timer1.core.rewards import moving_average
from timer1.core.stl_ar import stl_batch, strength

LATEST = 3   # origins that count as "latest" (the most recent behaviour of each candidate)
COLUMNS = ("all", "latest", "early", "late")   # the error columns, in the prompt's order


@dataclass
class Evidence:
    """What the judge is told about one series. errors: (K, 4) each candidate's mean absolute
    backtest error in scaled units, columns ``COLUMNS``; seasonality: (period, strength) pairs."""

    step: str
    length: int
    horizon: int
    origins: int
    seasonality: list[tuple[int, float]]
    trend: float
    shift: float
    names: list[str]
    errors: np.ndarray


def scale_of(history: np.ndarray) -> float:
    """The mean absolute one-step change of the history (MASE's denominator, timer1.core.metrics);
    1.0 for a constant history, so a perfect candidate still reads as 0."""
    diffs = np.abs(np.diff(np.asarray(history, dtype=np.float64)))
    diffs = diffs[np.isfinite(diffs)]
    scale = float(diffs.mean()) if diffs.size else 0.0
    return scale if scale > 0 else 1.0


def strengths(history: np.ndarray, period: int) -> tuple[float, float]:
    """(seasonal, trend) strength of the last FIT_HISTORY values by STL at ``period`` (Wang et al.
    2006); a period the history cannot decompose (fewer than two cycles and a value) gives seasonal
    strength 0 and the trend strength of a centred moving average's trend (DLinear's, 7 values)."""
    x = np.asarray(history, dtype=np.float64)[-FIT_HISTORY:]
    if period > 1 and len(x) > 2 * period:
        seasonal, trend = (part[0] for part in stl_batch(x[None, :], period))
    else:
        seasonal, trend = np.zeros_like(x), moving_average(x, 7)
    remainder = x - seasonal - trend
    return strength(remainder, seasonal + remainder), strength(remainder, trend + remainder)


def level_shift(history: np.ndarray, horizon: int, scale: float) -> float:
    """Mean of the last ``horizon`` values less the mean of the ``horizon`` before, in scaled units
    (0 when the history is shorter than two horizons)."""
    x = np.asarray(history, dtype=np.float64)
    if len(x) < 2 * horizon:
        return 0.0
    return float(x[-horizon:].mean() - x[-2 * horizon:-horizon].mean()) / scale


def error_columns(residuals: np.ndarray, scale: float) -> np.ndarray:
    """(K, 4) mean absolute residual per ``COLUMNS`` from (K, O, H) residuals (origins latest first)."""
    abs_res = np.abs(residuals) / scale
    half = max(1, residuals.shape[2] // 2)
    late = abs_res[:, :, half:] if residuals.shape[2] > 1 else abs_res
    return np.stack([abs_res.mean(axis=(1, 2)), abs_res[:, :LATEST].mean(axis=(1, 2)),
                     abs_res[:, :, :half].mean(axis=(1, 2)), late.mean(axis=(1, 2))], axis=1)


def gather_evidence(history: np.ndarray, backtest: Backtest, step: str) -> Evidence:
    """The evidence of one series from its history (every value before the origin) and backtest."""
    horizon = backtest.forecasts.shape[1]
    scale = scale_of(history)
    by_period = [strengths(history, m) for m in backtest.periods or [1]]   # one STL per period
    seasonality = [(m, seasonal) for m, (seasonal, _) in zip(backtest.periods, by_period)]
    trend = by_period[0][1]   # the trend strength at the first (the dates') period
    return Evidence(step, len(history), horizon, len(backtest.points), seasonality, trend,
                    level_shift(history, horizon, scale), list(backtest.names),
                    error_columns(backtest.residuals, scale))
