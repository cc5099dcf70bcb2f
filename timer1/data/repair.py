"""The window a user's series is forecast from: the last ``lookback`` values on a regular time grid,
missing steps and NaN interpolated, isolated glitches (far outliers) replaced, every repair reported,
and refused when more than MAX_REPAIRED_SHARE of the look-back had to be made up."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from timer1.core.window import Window, interpolate_gaps
from timer1.data.csv_io import Series, future_dates
from timer1.data.dates import grid_positions

MAX_REPAIRED_SHARE = 0.25  # a forecast look-back with more repaired values than this is refused


OUTLIER_MADS = 10.0        # an isolated value this many scaled MADs from the look-back's median is a glitch


@dataclass(frozen=True)
class Repairs:
    """What `forecast_window` repaired in a look-back before a model reads it, by date: steps of the
    regular grid with no row, cells that were empty / not a number / infinite, isolated glitches."""

    missing_steps: list[str]
    bad_cells: list[str]
    outliers: list[str]

    @property
    def count(self) -> int:
        return len(self.missing_steps) + len(self.bad_cells) + len(self.outliers)

    def describe(self, lookback: int) -> str:
        """One line: how many values of the look-back were repaired, of which kind, and where."""
        kinds = [(self.missing_steps, "missing step"), (self.bad_cells, "empty or non-number cell"),
                 (self.outliers, f"outlier beyond {OUTLIER_MADS:g} MADs")]
        parts = [f"{len(dates)} {name}{'s' if len(dates) > 1 else ''} at {_some(dates)}"
                 for dates, name in kinds if dates]
        return f"repaired {self.count} of {lookback} look-back values by interpolation: {'; '.join(parts)}"


def _some(dates: list[str], shown: int = 3) -> str:
    return ", ".join(dates[:shown]) + (f" and {len(dates) - shown} more" if len(dates) > shown else "")


def glitches(history: np.ndarray) -> np.ndarray:
    """(L,) bool: isolated values more than OUTLIER_MADS scaled MADs from the median (a Hampel filter
    restricted to single points: a run of two or more is a level shift, kept). One 1e9 glitch would
    otherwise set the whole compact scale and every other value would print as the same integer."""
    x = np.asarray(history, dtype=np.float64)
    finite = np.isfinite(x)
    if finite.sum() < 3:
        return np.zeros(len(x), dtype=bool)
    median = np.median(x[finite])
    deviation = np.abs(x - median)
    spread = 1.4826 * np.median(deviation[finite]) or 1.2533 * np.mean(deviation[finite])
    far = finite & (deviation > OUTLIER_MADS * spread) if spread > 0 else np.zeros(len(x), dtype=bool)
    before = np.concatenate([[False], far[:-1]])
    after = np.concatenate([far[1:], [False]])
    return far & ~before & ~after


def _grid_tail(series: Series, channel: str, lookback: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The last `lookback` steps of the regular grid: values (NaN where the file has no row), a mask
    of those missing steps, and their dates. Dates off any grid: the last rows."""
    column = series.column(channel)
    positions = None if series.timestamps is None else grid_positions(series.timestamps, series.step)
    if positions is None:
        if not 0 < lookback <= len(series):
            raise ValueError(f"series {series.name}: lookback {lookback} outside 1..{len(series)}")
        return column[-lookback:].copy(), np.zeros(lookback, dtype=bool), series.dates[-lookback:]
    steps = int(positions[-1]) + 1
    if not 0 < lookback <= steps:
        raise ValueError(f"series {series.name}: lookback {lookback} outside 1..{steps}")
    first = steps - lookback
    rows = np.flatnonzero(positions >= first)
    values, missing = np.full(lookback, np.nan), np.ones(lookback, dtype=bool)
    values[positions[rows] - first], missing[positions[rows] - first] = column[rows], False
    if missing.mean() > MAX_REPAIRED_SHARE:
        return values, missing, []  # refused by the caller before dates are spelled out
    anchor = rows[0] if not missing[0] else rows[0] - 1  # the last row at or before the first step
    dates = [series.dates[anchor]] + future_dates(series.timestamps[anchor], series.step,
                                                  int(positions[-1] - positions[anchor]))
    return values, missing, dates[-lookback:]


def forecast_window(series: Series, channel: str, lookback: int, horizon: int,
                    round_inputs: int | None = None, dataset: str | None = None) -> tuple[Window, Repairs]:
    """The window for a real forecast, and what was repaired in it: missing steps, non-number cells
    and glitches of the look-back are interpolated, refused when more than MAX_REPAIRED_SHARE. The
    target is `horizon` future dates with NaN values."""
    if horizon <= 0:
        raise ValueError(f"series {series.name}: horizon must be positive, got {horizon}")
    values, missing, dates = _grid_tail(series, channel, lookback)
    bad = ~missing & ~np.isfinite(values)
    outliers = glitches(values)
    repaired = missing | bad | outliers
    if repaired.mean() > MAX_REPAIRED_SHARE:
        raise ValueError(f"{series.name}/{channel}: {int(repaired.sum())} of the last {lookback} values are "
                         f"missing, not numbers or outliers (more than {MAX_REPAIRED_SHARE:.0%}); "
                         f"fix the data or use a shorter look-back")
    history = interpolate_gaps(np.where(outliers, np.nan, values))
    if round_inputs is not None:
        history = np.round(history, round_inputs)
    repairs = Repairs(*([d for d, flag in zip(dates, mask) if flag] for mask in (missing, bad, outliers)))
    window = Window(dataset=dataset or series.name, channel=channel, history=history,
                    target=np.full(horizon, np.nan), history_dates=list(dates),
                    target_dates=future_dates(series, None, horizon), start=max(len(series) - lookback, 0))
    return window, repairs
