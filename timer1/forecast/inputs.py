"""What `Forecaster.predict` accepts, checked before any model runs: contexts (one series or several,
NaN/None for missing), timestamps, the mode and quantile levels. Every bad input is a one-line
ValueError naming what is wrong."""

from __future__ import annotations

import datetime
import math
from typing import Sequence

import numpy as np

MODES = ("auto", "rule", "slow", "single")


MIN_CONTEXT = 8         # fewer values show no level, step size or cycle for the critic to check against


QUANTILES = (0.1, 0.5, 0.9)   # the band forecast.py writes (timer1.core.slow_think aggregates the same three)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """The requested quantile levels as floats strictly between 0 and 1 (ValueError otherwise)."""
    try:
        levels = tuple(float(q) for q in quantiles)
    except (TypeError, ValueError):
        raise ValueError(f"quantiles must be numbers between 0 and 1, got {quantiles!r}") from None
    bad = [q for q in levels if not 0 < q < 1]
    if bad or not levels:
        raise ValueError(f"quantiles must be numbers strictly between 0 and 1, got {list(quantiles)!r}")
    return levels


def parse_quantiles(text: str) -> tuple[float, ...]:
    """Levels written as on the command line, ``"0.05,0.5,0.95"``, checked as `check_quantiles`
    does, in ascending order without repeats."""
    try:
        levels = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--quantiles takes numbers between 0 and 1 separated by commas, got {text!r}") from None
    return tuple(sorted(set(check_quantiles(levels))))


def quantile_column(level: float) -> str:
    """The column of a quantile level in every table timer1 writes: ``q0.05``, ``q0.5``, ``q0.975``."""
    return f"q{level:g}"


def _is_number(x) -> bool:
    return x is None or (isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool))


def as_contexts(context) -> list[np.ndarray]:
    """One series (a 1-D array or list of numbers) or several (a list of them, or a 2-D array) as a
    list of float arrays, None and NaN kept as NaN; ValueError naming what is wrong."""
    if isinstance(context, np.ndarray):
        if context.ndim not in (1, 2) or context.size == 0:
            raise ValueError(f"context must be a 1-D array or a 2-D (series, values) array, got shape {context.shape}")
        rows = [context] if context.ndim == 1 else list(context)
    elif isinstance(context, (list, tuple)) and context:
        rows = [context] if all(_is_number(x) for x in context) else list(context)
    else:
        raise ValueError(f"context must be a non-empty list or array of numbers, or a list of them, "
                         f"got {type(context).__name__}")
    out = []
    for i, row in enumerate(rows):
        values = list(row) if isinstance(row, (list, tuple, np.ndarray)) else None
        if not values or not all(_is_number(x) for x in values):
            raise ValueError(f"series {i} must be a non-empty list of numbers (None or NaN for missing)")
        row_values = np.array([math.nan if x is None else float(x) for x in values], dtype=np.float64)
        if np.isinf(row_values).any():  # missing is NaN or None; inf is a broken value, not a gap to fill
            position = int(np.flatnonzero(np.isinf(row_values))[0])
            raise ValueError(f"series {i} holds {row_values[position]:g} at position {position}: not a finite "
                             f"number (a missing value is NaN or None; null in JSON)")
        out.append(row_values)
    return out


def _date_list(dates) -> list | None:
    """A sequence of dates as a list (a list, tuple, numpy array, pandas DatetimeIndex or Series), or
    None when it is a single value (a string or a date)."""
    if isinstance(dates, (list, tuple, np.ndarray)) or (hasattr(dates, "dtype") and hasattr(dates, "__iter__")):
        return list(dates)
    return None


def as_timestamps(timestamps, n_series: int) -> list[list[str]] | None:
    """None, or one list of dates per series (a single list is taken for a single series). Dates are
    strings in any layout forecast.py reads, year numbers, or datetime-like values (datetime, date,
    numpy datetime64, pandas Timestamp; a DatetimeIndex or Series of them)."""
    if timestamps is None:
        return None
    outer = _date_list(timestamps)
    if not outer:
        raise ValueError(f"timestamps must be a list of dates (one list per series), got {type(timestamps).__name__}")
    inner = [_date_list(t) for t in outer]
    if any(t is not None for t in inner) and not all(t is not None for t in inner):
        raise ValueError("timestamps must be one list of dates, or one list per series (every series dated)")
    lists = inner if all(t is not None for t in inner) else [outer]
    if len(lists) != n_series:
        raise ValueError(f"got timestamps for {len(lists)} series but {n_series} series")
    return [[_date_text(d) for d in dates] for dates in lists]


def _date_text(value) -> str:
    """A date as text: strings as given, whole year numbers as years, numpy/Python/pandas datetimes
    and dates in ISO form (a time-zone-aware one keeps its UTC offset)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 1000 <= value <= 2999:
        return str(int(value))
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[s]")).replace("T", " ")
    if isinstance(value, datetime.datetime):        # pandas' Timestamp is one
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise ValueError(f"timestamps must be date strings, year numbers or datetimes, got {shown} "
                     f"({type(value).__name__})")
