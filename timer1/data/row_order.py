"""Rows in time order and the step of their dates: the order that sorts a file's rows (newest first
or shuffled onto one step; repeated dates refused, with a hint when the file is long), the step the
dates keep (timer1.data.dates.classify_step, with a calendar of closed days or hours:
timer1.data.calendars), and the warnings that say what was found (a calendar, missing steps)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from timer1.core.baselines import period_for_step
from timer1.data import calendars
from timer1.data.dates import Step, classify_step, format_dates, grid_positions


ID_COLUMN_NAMES = {"unique_id", "id", "series", "series_id", "item_id", "item", "sku", "store", "ticker", "symbol",
                   "key", "name", "code"}   # a long CSV's series names (read_long), hinted at when dates repeat


def long_hint(header: list[str], date_index: int, names: list[str], arrays: list[np.ndarray]) -> str:
    """What to say when dates repeat and a column looks like series ids (named like one, or holding
    no number): the file is long (one row per series and date), to be read as such."""
    text = {name for name, col in zip(names, arrays) if np.isnan(col).all()}
    ids = [name for k, name in enumerate(header)
           if k != date_index and (name in text or name.lower() in ID_COLUMN_NAMES)]
    if not ids:
        return ""
    return (f"; column {ids[0]!r} looks like series ids: this is a long file (one row per series and date), "
            f"read it with --id-column {ids[0]} (Python: Forecaster.predict_df)")


def chronological_order(path: Path, keys: np.ndarray | None, lines: np.ndarray, step: Step,
                   long_hint: str = "") -> np.ndarray | None:
    """The row order that puts the dates in time order, None when they already are. Shuffled dates
    that fit no regular step are an error: guessing an order there would forecast garbage; repeated
    dates are one too (with ``long_hint`` when the file looks long)."""
    if keys is None or len(keys) < 2:
        return None
    diffs = np.diff(keys)
    if (diffs > 0).all():
        return None
    order = np.argsort(keys, kind="stable")
    repeated = np.flatnonzero(np.diff(keys[order]) == 0)
    if repeated.size:
        first, second = sorted((order[repeated[0]], order[repeated[0] + 1]))
        raise ValueError(f"{path}: lines {lines[first]} and {lines[second]} have the same date "
                         f"{date_label(keys[first], step)}; a series needs one row per date{long_hint}")
    if (diffs < 0).all():
        warnings.warn(f"{path}: rows are newest first; sorted oldest first by date")
        return order
    sorted_keys = keys[order]
    if regular(sorted_keys, step):
        warnings.warn(f"{path}: rows are not in date order; sorted by date")
        return order
    i = int(np.flatnonzero(diffs < 0)[0])
    raise ValueError(f"{path}: dates are out of order with no regular step: line {lines[i + 1]} "
                     f"({date_label(keys[i + 1], step)}) comes after line {lines[i]} ({date_label(keys[i], step)}); "
                     f"sort the file by date")


def date_label(key, step: Step) -> str:
    """A sort key written as the file writes its dates."""
    if step.kind == "index":
        return step.style.format(i=float(key))
    return format_dates(np.array([key], dtype="datetime64[s]"), step.style)[0]


def median_positive_diff(keys: np.ndarray) -> float:
    diffs = np.diff(keys.astype(np.float64))
    positive = diffs[diffs > 0]
    return float(np.median(positive)) if positive.size else 1.0


def step_of(keys: np.ndarray, draft: Step, timestamps: np.ndarray | None) -> Step:
    """The step of sorted keys: a named spacing for dates, the median increment for an index."""
    seconds = median_positive_diff(keys)
    if timestamps is None:
        return Step("index", seconds, 0, draft.style)
    return calendars.with_calendar(classify_step(seconds, draft.style), timestamps)


def regular(sorted_keys: np.ndarray, step: Step) -> bool:
    """Whether sorted keys sit on one regular step (gaps allowed)."""
    if step.kind == "index":
        offsets = (sorted_keys - sorted_keys[0]) / median_positive_diff(sorted_keys)
        return bool(np.allclose(offsets, np.round(offsets)))
    timestamps = sorted_keys.astype("datetime64[s]")
    return grid_positions(timestamps, step_of(sorted_keys, step, timestamps)) is not None


def report_calendar(path: Path, step: Step) -> None:
    """One line when the dates keep a calendar with closed days or hours (timer1.data.calendars)."""
    if not (step.weekdays or step.times):
        return
    cycle = "a week" if step.kind == "daily" else "a day"
    warnings.warn(f"{path}: the dates keep a calendar ({calendars.describe(step)}): read as {step.name} steps, "
                  f"future dates skip the closed times, {cycle} is {period_for_step(step)} steps")


def report_gaps(path: Path, timestamps: np.ndarray, lines: np.ndarray, step: Step) -> None:
    """Warn when dates skip steps of the regular grid, or do not fall on one grid at all."""
    positions = grid_positions(timestamps, step)
    if positions is None:
        warnings.warn(f"{path}: dates do not follow one {step.kind} step; rows are used as if evenly spaced")
        return
    missing = int(positions[-1]) + 1 - len(positions)
    if missing:
        first = int(np.flatnonzero(np.diff(positions) > 1)[0])
        warnings.warn(f"{path}: {missing} {step.name} steps are missing from the dates (the first after "
                      f"{date_label(timestamps[first].astype(np.int64), step)}, line {lines[first]}); forecasts "
                      f"fill them on the regular grid")
