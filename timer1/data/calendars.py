"""Regular calendars with closed days or hours: business days (Monday to Friday), shops closed on
Sundays, trading or office hours. A file that never holds a Saturday or a Sunday is not missing two
days a week: its step is one *open* day, its week five steps long, and its future skips the weekend
(as pandas' ``freq="B"`` and statsforecast's business-day frequency do).

A calendar is two tuples on a `timer1.data.dates.Step` whose step is a day or divides a day:
``weekdays`` (the open days, 0 = Monday; empty = every day) and ``times`` (the open times of day in
seconds after midnight, for sub-daily steps; empty = every slot of the day). Positions on such a grid
count open slots only, so a Friday and the next Monday are one step apart.

Detection (`with_calendar`) is deliberately cautious: closed days or times are taken as a calendar only
when the dates cover enough of the cycle to tell (three weeks for days, three days for hours) and the
closed part is one contiguous stretch of the cycle (a weekend, a night), never scattered gaps, which
are missing values and are reported and filled as such.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DAY = 86400
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MIN_DAYS_FOR_WEEKDAYS = 21   # three weeks: every weekday seen at least twice in a daily file
MIN_DAYS_FOR_TIMES = 3


def _days_and_times(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(days since 1970-01-01, seconds after midnight), each (T,) int64."""
    seconds = np.asarray(timestamps).astype("datetime64[s]").astype(np.int64)
    return seconds // DAY, seconds % DAY


def weekday(days: np.ndarray) -> np.ndarray:
    """0 = Monday for days since 1970-01-01 (a Thursday)."""
    return (days + 3) % 7


def _one_stretch(present: set[int], cycle: int) -> bool:
    """Whether the absent members of range(cycle) form one contiguous stretch, wrapping around."""
    absent = [k for k in range(cycle) if k not in present]
    if not absent or len(absent) == cycle:
        return False
    starts = [k for k in absent if (k - 1) % cycle in present]
    return len(starts) == 1


def with_calendar(step, timestamps: np.ndarray):
    """``step`` with the closed weekdays or times of day the dates show (see the module docstring);
    ``step`` itself when there are none, or when the step is not a day or a divisor of one."""
    seconds = int(round(step.seconds))
    if step.is_calendar or step.kind == "index" or seconds <= 0 or DAY % seconds or len(timestamps) < 2:
        return step
    days, times = _days_and_times(timestamps)
    span = int(days[-1] - days[0]) + 1
    weekdays: tuple[int, ...] = ()
    present_days = set(weekday(days).tolist())
    if span >= MIN_DAYS_FOR_WEEKDAYS and _one_stretch(present_days, 7):
        weekdays = tuple(sorted(present_days))
    open_times: tuple[int, ...] = ()
    slots = DAY // seconds
    if slots > 1 and len(set(days.tolist())) >= MIN_DAYS_FOR_TIMES:
        offset = int(times[0] % seconds)
        if not ((times - offset) % seconds).any():
            present_slots = set(((times - offset) // seconds).tolist())
            if _one_stretch(present_slots, slots):
                open_times = tuple(offset + seconds * k for k in sorted(present_slots))
    if not weekdays and not open_times:
        return step
    return dataclasses.replace(step, weekdays=weekdays, times=open_times)


def slots_per_day(step) -> int:
    return len(step.times) if step.times else DAY // int(round(step.seconds))


def positions(timestamps: np.ndarray, step) -> np.ndarray | None:
    """Open slots after the first date, for each date; None when a date falls on a closed day or
    time, or between slots."""
    days, times = _days_and_times(timestamps)
    seconds = int(round(step.seconds))
    if step.weekdays:
        rank = np.full(7, -1)
        rank[list(step.weekdays)] = np.arange(len(step.weekdays))
        day_rank = rank[weekday(days)]
        if (day_rank < 0).any():
            return None
        day_index = (days + 3) // 7 * len(step.weekdays) + day_rank   # open days since a Monday
    else:
        day_index = days
    if step.times:
        open_times = np.array(step.times)
        slot = np.minimum(np.searchsorted(open_times, times), len(open_times) - 1)
        if (open_times[slot] != times).any():
            return None
    else:
        if (times % seconds != times[0] % seconds).any():
            return None
        slot = times // seconds
    absolute = day_index * slots_per_day(step) + slot
    out = absolute - absolute[0]
    return out if (np.diff(out) > 0).all() else None


def next_times(last: np.datetime64, step, n: int) -> np.ndarray:
    """The ``n`` open slots after ``last`` (datetime64[s]), skipping closed days and times."""
    seconds = int(round(step.seconds))
    out, t = [], np.datetime64(last, "s")
    while len(out) < n:
        t = t + np.timedelta64(seconds, "s")
        days, times = _days_and_times(np.array([t]))
        if step.weekdays and int(weekday(days)[0]) not in step.weekdays:
            continue
        if step.times and int(times[0]) not in step.times:
            continue
        out.append(t)
    return np.array(out, dtype="datetime64[s]")


def describe(step) -> str:
    """The calendar in words, e.g. "open Monday to Friday" or "open 09:00 to 17:00, Monday to Friday"."""
    parts = []
    if step.times:
        first, last = step.times[0], step.times[-1]
        parts.append(f"{first // 3600:02d}:{first % 3600 // 60:02d} to {last // 3600:02d}:{last % 3600 // 60:02d}")
    if step.weekdays:
        first = next(k for k in step.weekdays if (k - 1) % 7 not in step.weekdays)   # after the closed days
        last = (first + len(step.weekdays) - 1) % 7
        parts.append(WEEKDAY_NAMES[first] + ("" if first == last else f" to {WEEKDAY_NAMES[last]}"))
    return "open " + ", ".join(parts)
