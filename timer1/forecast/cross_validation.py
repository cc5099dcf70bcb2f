"""Rolling-origin cross-validation on your own series, in the shape of statsforecast's
``cross_validation(df, h, n_windows, step_size)``: a long table of id, timestamp, ``cutoff``, ``y``,
``forecast``, one column per quantile level, ``source``.

    cv = forecaster.cross_validation(df, h=12, n_windows=3)          # pandas, timer1.forecast.frames
    python forecast.py stores.csv --id-column unique_id --horizon 12 --cross-validation 3

The windows are the evaluation on a rolling forecasting origin (Tashman 2000; Hyndman & Athanasopoulos,
"Forecasting: Principles and Practice", 5.10), placed as statsforecast places them: the last window's
``h`` values end each series, the windows ``step_size`` apart (default ``h``), oldest first. At each
cutoff every series is forecast by one batched `Forecaster.predict` call from its values up to and
including the cutoff, never one after it, so a window's forecast is exactly what ``predict`` on that
prefix gives with the same seed (tested). The summary scores it beside the two baselines a
forecaster checks first (seasonal naive at the dates' period, last value) on the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from timer1.core.baselines import LastValue, SeasonalNaive, period_for_step
from timer1.core.metrics import mae, mase
from timer1.data.csv_io import series_from_values
from timer1.forecast.inputs import MIN_CONTEXT, quantile_column
from timer1.forecast.output import format_number


@dataclass(frozen=True)
class Folds:
    """The windows: ``h`` steps each, the last ``n_windows`` cutoffs, ``step_size`` apart (None = h)."""

    h: int
    n_windows: int = 1
    step_size: int | None = None

    def __post_init__(self):
        for name in ("h", "n_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        if self.step_size is not None and (not isinstance(self.step_size, (int, np.integer)) or self.step_size < 1):
            raise ValueError(f"step_size must be a positive whole number, got {self.step_size!r}")

    def ends(self, length: int, name: str) -> list[int]:
        """Where each window's history ends (exclusive; the cutoff is the value before), oldest first;
        ValueError naming the series when its first window has fewer than MIN_CONTEXT values before it."""
        step = self.step_size or self.h
        ends = [length - self.h - (self.n_windows - 1 - k) * step for k in range(self.n_windows)]
        if ends[0] < MIN_CONTEXT:
            raise ValueError(f"series {name!r} has {length} values: {self.n_windows} windows of {self.h} steps, "
                             f"{step} apart, need at least {MIN_CONTEXT + self.h + (self.n_windows - 1) * step}")
        return ends


@dataclass
class CrossValidation:
    """The table as columns (one entry per row: series, window, step), plus what the summary needs:
    per row the look-back the forecast read (for MASE) and the baselines' forecasts."""

    columns: dict[str, list]
    histories: list[np.ndarray]
    baselines: dict[str, list[float]]

    def csv_rows(self) -> list[list[str]]:
        """The table's rows as forecast.py writes them: numbers in 10 digits, NaN (no band) empty."""
        def cell(value) -> str:
            if isinstance(value, (float, np.floating)):
                return "" if np.isnan(value) else format_number(value)
            return str(value)

        return [[cell(value) for value in row] for row in zip(*self.columns.values())]


def cross_validate(forecaster, series: tuple[list, list[np.ndarray], list[list], bool], folds: Folds,
                   names: tuple[str, str], **options) -> CrossValidation:
    """Cross-validate ``forecaster`` on ``series`` = (ids, values per id, timestamps per id, whether
    they are dates: else a running index, written back as given), the output's id and timestamp columns
    named ``names``; ``options`` are predict's (quantiles, mode, seed). One predict call per window."""
    ids, values, labels, dated = series
    stamps = labels if dated else None
    ends = [folds.ends(len(v), key) for key, v in zip(ids, values)]                  # (N, n_windows)
    levels = options.get("quantiles", (0.1, 0.5, 0.9))
    columns = {names[0]: [], names[1]: [], "cutoff": [], "y": [], "forecast": [],
               **{quantile_column(q): [] for q in levels}, "source": []}
    per_window = [_window_forecast(forecaster, values, stamps, [e[k] for e in ends], folds.h, options)
                  for k in range(folds.n_windows)]
    histories, baselines = [], {"seasonal naive": [], "last value": []}
    for i, key in enumerate(ids):
        dates = labels[i]
        period = period_for_step(series_from_values(values[i], None if stamps is None else stamps[i]).step)
        for k, out in enumerate(per_window):
            end = ends[i][k]
            history, actual = values[i][:end], values[i][end:end + folds.h]
            naive = {"seasonal naive": SeasonalNaive(period).forecast(history, folds.h),
                     "last value": LastValue().forecast(history, folds.h)}
            for j in range(folds.h):
                for name, value in ((names[0], key), (names[1], dates[end + j]), ("cutoff", dates[end - 1]),
                                    ("y", actual[j]), ("forecast", out.point[i, j]), ("source", out.source[i])):
                    columns[name].append(value)
                for q in levels:
                    columns[quantile_column(q)].append(out.quantiles[q][i, j])
                for name, forecast in naive.items():
                    baselines[name].append(float(forecast[j]))
                histories.append(history[-forecaster.lookback:])
    return CrossValidation(columns, histories, baselines)


def _window_forecast(forecaster, values: list[np.ndarray], stamps, ends: list[int], h: int, options: dict):
    """One window: every series' prefix through one `Forecaster.predict` call."""
    contexts = [v[:end] for v, end in zip(values, ends)]
    dates = None if stamps is None else [list(s[:end]) for s, end in zip(stamps, ends)]
    return forecaster.predict(contexts, h, timestamps=dates, **options)


def summary(cv: CrossValidation, method: str, levels: Sequence[float]) -> list[str]:
    """One line per method, the forecast and the baselines: MAE and MASE (timer1.core.metrics.mase on the
    look-back each forecast read, averaged over rows' windows) and the widest band's coverage."""
    actual = np.array(cv.columns["y"], dtype=np.float64)
    lines = [_score_line(method, np.array(cv.columns["forecast"], dtype=np.float64), actual, cv)]
    low, high = (np.array(cv.columns[quantile_column(q)], dtype=np.float64) for q in (min(levels), max(levels)))
    banded = np.isfinite(low) & np.isfinite(high) & np.isfinite(actual) & (min(levels) < max(levels))
    if banded.any():
        inside = (actual[banded] >= low[banded]) & (actual[banded] <= high[banded])
        lines[0] += (f", {100 * (max(levels) - min(levels)):g}% band covers {inside.mean():.0%} "
                     f"of {banded.sum()} values")
    for name, forecast in cv.baselines.items():
        lines.append(_score_line(name, np.array(forecast), actual, cv))
    return lines


def _score_line(name: str, forecast: np.ndarray, actual: np.ndarray, cv: CrossValidation) -> str:
    known = np.isfinite(actual)
    scaled = [mase([f], [y], h) for f, y, h, ok in zip(forecast, actual, cv.histories, known) if ok]
    finite = [s for s in scaled if np.isfinite(s)]
    return (f"{name}: MAE {mae(forecast[known], actual[known]):.4g}, "
            f"MASE {np.mean(finite) if finite else float('nan'):.4g} ({known.sum()} values)")
