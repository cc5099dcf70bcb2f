"""Dates of a series: parsing a date column, the step between rows, writing dates in the input's layout.

Layouts recognised (one per column, never mixed):
- year first: ``2016-07-01 00:00:00`` (ISO, also with ``T``), ``2020/1/1 0:00`` (slashes, unpadded),
  a plain date ``2020-01-31``, a month ``2020-01``;
- year last: ``07/01/1950``, ``31.12.2020 23:00``. Which of the first two fields is the day is read
  from the values (a field above 12 is a day); when both orders give valid dates, the one with the
  more regular step wins, month first (US) on a tie, and a warning says which was chosen;
- an optional UTC offset after the time, ``Z``, ``+02:00`` or ``+0200`` (ISO 8601). One offset in the
  whole column is kept as written; several (summer time) are converted to UTC, with a warning;
- less common layouts (`parse_other_layouts`): ``19580329`` (YYYYMMDD digits), quarters ``1959Q1`` /
  ``1959-Q1``, month names ``Jan-1-1995`` / ``1995 Jan`` / ``January 1995``, ISO weeks ``2020-W05``;
  each reading is said in one warning, since digits or names could have meant something else.

Parsing is one regex pass over a joined block of cells, then numpy, so a column can be parsed chunk by
chunk as `timer1.data.csv_io.read_csv` streams a file.
"""

from __future__ import annotations

import datetime
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from timer1.data import calendars

_TIME = r"(?:([ T])(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?((?:[ \t]*(?:Z|[+-]\d{2}:?\d{2}))?)"
# year, separator, month, day (optional), then the optional time and UTC offset
_YEAR_FIRST_RE = re.compile(r"^[ \t]*(\d{4})([-/])(\d{1,2})(?:\2(\d{1,2}))?" + _TIME + r"[ \t]*$", re.MULTILINE)
# day and month (order decided later), separator, year, then the optional time and UTC offset
_YEAR_LAST_RE = re.compile(r"^[ \t]*(\d{1,2})([-/.])(\d{1,2})\2(\d{4})" + _TIME + r"[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Step:
    """The step between consecutive rows, and how dates are written.

    kind: "seconds", "minutes", "hourly", "daily", "weekly" (fixed length `seconds`), "monthly",
          "quarterly", "yearly" (calendar steps of `months` months), or "index" (a running number
          whose increment is `seconds`).
    style: a `str.format` template over Y m d H M S (dates) or i (index) that rewrites a date in
          the input's own layout, e.g. ``"{Y:04d}/{m}/{d} {H}:{M:02d}"`` for ``2020/1/1 0:00``.
    weekdays, times: a calendar with closed days or hours (timer1.data.calendars): the open days
          (0 = Monday) and open times of day (seconds after midnight); empty = always open.
    """

    kind: str
    seconds: float = 0.0
    months: int = 0
    style: str = "{Y:04d}-{m:02d}-{d:02d} {H:02d}:{M:02d}:{S:02d}"
    weekdays: tuple[int, ...] = ()
    times: tuple[int, ...] = ()

    @property
    def is_calendar(self) -> bool:
        return self.months > 0

    @property
    def name(self) -> str:
        """How messages name the step: "business-day" for Monday to Friday, "hourly open-hours" for
        other calendars with closed days or hours (timer1.data.calendars), else the kind."""
        if self.weekdays == (0, 1, 2, 3, 4) and not self.times and self.kind == "daily":
            return "business-day"
        return self.kind + (" open-hours" if self.weekdays or self.times else "")


def classify_step(median_seconds: float, style: str) -> Step:
    """Name a median row spacing; month-like spacings become calendar steps."""
    day = 86400.0
    s = float(median_seconds)
    if 28 * day <= s <= 31 * day:
        return Step("monthly", s, 1, style)
    if 89 * day <= s <= 92 * day:
        return Step("quarterly", s, 3, style)
    if 365 * day <= s <= 366 * day:
        return Step("yearly", s, 12, style)
    if s % (7 * day) == 0:
        kind = "weekly"
    elif s % day == 0:
        kind = "daily"
    elif s % 3600 == 0:
        kind = "hourly"
    elif s % 60 == 0:
        kind = "minutes"
    else:
        kind = "seconds"
    return Step(kind, s, 0, style)


def date_components(timestamps: np.ndarray) -> dict[str, np.ndarray]:
    """Split datetime64[s] values into integer calendar fields, vectorised."""
    ts = timestamps.astype("datetime64[s]")
    years = ts.astype("datetime64[Y]")
    months = ts.astype("datetime64[M]")
    days = ts.astype("datetime64[D]")
    secs = (ts - days).astype(np.int64)
    return {
        "Y": years.astype(np.int64) + 1970,
        "m": (months - years).astype(np.int64) + 1,
        "d": (days - months).astype(np.int64) + 1,
        "H": secs // 3600,
        "M": (secs % 3600) // 60,
        "S": secs % 60,
    }


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def date_fields(Y: int, m: int, d: int, H: int = 0, M: int = 0, S: int = 0) -> dict:
    """Every field a Step.style may use: Y m d H M S, the quarter q, the month's name b (Jan) and B
    (January), and the ISO 8601 year G and week V."""
    iso_year, iso_week, _ = datetime.date(Y, m, d).isocalendar()
    return {"Y": Y, "m": m, "d": d, "H": H, "M": M, "S": S, "q": (m - 1) // 3 + 1, "b": MONTHS[m - 1][:3],
            "B": MONTHS[m - 1], "G": iso_year, "V": iso_week}


def format_dates(timestamps: np.ndarray, style: str) -> list[str]:
    """Write datetime64 values with a Step.style template."""
    if len(timestamps) == 0:
        return []
    parts = date_components(np.asarray(timestamps))
    return [style.format(**date_fields(*map(int, row))) for row in zip(*parts.values())]


class DateLabels(Sequence):
    """Row labels written on demand from datetime64 values (or running numbers): a long series keeps
    int64 timestamps, not one Python string per row. Slices are lists."""

    def __init__(self, positions: np.ndarray, style: str):
        self.positions, self.style = positions, style

    def _format(self, positions: np.ndarray) -> list[str]:
        if np.issubdtype(positions.dtype, np.datetime64):
            return format_dates(positions, self.style)
        return [self.style.format(i=float(v)) for v in positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self._format(self.positions[key])
        return self._format(np.atleast_1d(self.positions[key]))[0]

    def __iter__(self):
        for start in range(0, len(self), 65536):  # a block at a time: fast, and memory stays bounded
            yield from self[start:start + 65536]

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"DateLabels({len(self)} dates, {self.style!r})"


# ----------------------------------------------------------------------------------------------
# Parsing a date column

def _zone_seconds(literal: str) -> int:
    """``Z`` / ``+02:00`` / ``-0530`` -> offset from UTC in seconds."""
    text = literal.strip().replace(":", "")
    if text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    return sign * (int(text[1:3]) * 3600 + int(text[3:5]) * 60)


@dataclass
class DateCells:
    """Date cells of one layout split into integer fields: one chunk of a column, or several merged.

    layout: (order, separator, time separator, has day, has seconds); order is "ymd" (a = month,
    b = day) or "year-last" (a, b = day and month in an order `resolve` decides). one_digit /
    leading_zero record, per padded field (a, b, H), whether some value was written "1" or "01".
    """

    layout: tuple
    fields: dict[str, np.ndarray]
    one_digit: dict[str, bool]
    leading_zero: dict[str, bool]
    zones: set[str]

    @classmethod
    def parse(cls, cells: Sequence[str]) -> "DateCells | None":
        """Split cells into fields; None when some cell is not a date or the layouts are mixed."""
        if not cells:
            return None
        text = "\n".join(cells)
        for order, pattern in (("ymd", _YEAR_FIRST_RE), ("year-last", _YEAR_LAST_RE)):
            groups = pattern.findall(text)
            if len(groups) == len(cells):
                break
        else:
            return None  # some cell is not a date (or holds a newline)
        columns = list(zip(*groups))
        if order == "ymd":
            year, sep, a, b, time_sep, hours, minutes, seconds, zones = columns
        else:
            a, sep, b, year, time_sep, hours, minutes, seconds, zones = columns
        layout = (order, set(sep), set(time_sep), {d == "" for d in b}, {s == "" for s in seconds},
                  {z == "" for z in zones})
        if any(len(part) != 1 for part in layout[1:]):
            return None  # mixed layouts in one column: refuse rather than guess
        layout = (order, sep[0], time_sep[0], b[0] != "", seconds[0] != "")

        def ints(field: tuple[str, ...], default: int, dtype) -> np.ndarray:
            """Narrow integers: a streamed column keeps a few bytes a row, not a Python int each."""
            return np.array(field, dtype=dtype) if field[0] != "" else np.full(len(field), default, dtype)

        zone_set = set(zones)
        fields = {"Y": ints(year, 1970, np.int16), "a": ints(a, 1, np.int8), "b": ints(b, 1, np.int8),
                  "H": ints(hours, 0, np.int8), "M": ints(minutes, 0, np.int8), "S": ints(seconds, 0, np.int8),
                  "tz": (np.array([_zone_seconds(z) if z else 0 for z in zones], dtype=np.int32)
                         if zone_set != {""} else np.zeros(len(zones), np.int32))}
        padded = {"a": a, "b": b, "H": hours}
        return cls(layout, fields, {k: 1 in set(map(len, v)) for k, v in padded.items()},
                   {k: any(map(str.startswith, v, repeat("0"))) for k, v in padded.items()}, zone_set)

    @classmethod
    def merge(cls, chunks: Sequence["DateCells | None"]) -> "DateCells | None":
        """One DateCells for consecutive chunks; None when a chunk failed or the layouts differ."""
        if not chunks or any(c is None or c.layout != chunks[0].layout for c in chunks):
            return None
        if len(chunks) == 1:
            return chunks[0]
        return cls(chunks[0].layout, {k: np.concatenate([c.fields[k] for c in chunks]) for k in chunks[0].fields},
                   {k: any(c.one_digit[k] for c in chunks) for k in chunks[0].one_digit},
                   {k: any(c.leading_zero[k] for c in chunks) for k in chunks[0].leading_zero},
                   set().union(*(c.zones for c in chunks)))

    def resolve(self) -> tuple[np.ndarray, str] | None:
        """(datetime64[s] timestamps, Step.style template), or None when a date is impossible
        (month 13, Feb 30, hour 24). Warns when the day/month order or the UTC offsets were a choice."""
        a, b = self.fields["a"], self.fields["b"]
        if self.layout[0] == "ymd":
            return self._build(a, b, "md")
        if a.max() > 12 or b.max() > 12:
            return self._build(b, a, "dm") if a.max() > 12 else self._build(a, b, "md")
        candidates = [built for built in (self._build(a, b, "md"), self._build(b, a, "dm")) if built is not None]
        if not candidates:
            return None
        chosen = min(candidates, key=lambda built: _grid_steps(built[0]))  # min is stable: month first on a tie
        if len(candidates) == 2:
            order = "MM/DD (month first)" if chosen is candidates[0] else "DD/MM (day first)"
            warnings.warn(f"dates like {self._example()} could be day or month first; read as {order}, "
                          f"the order with the more regular step")
        return chosen

    def _example(self) -> str:
        sep = self.layout[1]
        return f"{self.fields['a'][0]:02d}{sep}{self.fields['b'][0]:02d}{sep}{self.fields['Y'][0]:04d}"

    def _build(self, m: np.ndarray, d: np.ndarray, order: str) -> tuple[np.ndarray, str] | None:
        m, d = m.astype(np.int64), d.astype(np.int64)
        y, hh, mm, ss = (self.fields[k].astype(np.int64) for k in ("Y", "H", "M", "S"))
        midnights = _calendar(y, m, d) if not ((hh > 23) | (mm > 59) | (ss > 59)).any() else None
        if midnights is None:
            return None
        timestamps = midnights + (hh * 3600 + mm * 60 + ss).astype("timedelta64[s]")
        zone = "".join(self.zones)
        if len(self.zones) > 1:
            timestamps = timestamps - self.fields["tz"].astype("timedelta64[s]")
            warnings.warn(f"dates carry several UTC offsets ({', '.join(sorted(self.zones))}); "
                          f"read and written in UTC (+00:00)")
            zone = "+00:00"
        return timestamps, self._style(order, zone)

    def _style(self, order: str, zone: str) -> str:
        """The template that writes these dates back as they came (padding as seen, offset kept)."""
        kind, sep, time_sep, has_day, has_secs = self.layout
        month_key, day_key = ("a", "b") if order == "md" else ("b", "a")

        def pad(key: str) -> str:
            """Zero-padding of a field as seen; if every value has two digits, dashes and dots pad,
            slashes do not (the wind file's 2020/1/1 0:00)."""
            if self.one_digit[key]:
                return ""
            if self.leading_zero[key]:
                return ":02d"
            return ":02d" if sep in "-." else ""

        month, day = "{m" + pad(month_key) + "}", "{d" + pad(day_key) + "}"
        if kind == "ymd":
            style = "{Y:04d}" + sep + month + (sep + day if has_day else "")
        else:
            style = (day + sep + month if order == "dm" else month + sep + day) + sep + "{Y:04d}"
        if time_sep:
            style += time_sep + "{H" + pad("H") + "}:{M:02d}" + (":{S:02d}" if has_secs else "")
        return style + zone


def _grid_steps(timestamps: np.ndarray) -> float:
    """How many steps of their own regular grid the dates span (inf when they sit on none): the
    fewer, the more regular, which tells 07/01/1950 read as monthly from the same read as daily
    with years missing."""
    keys = np.sort(timestamps.astype(np.int64))
    diffs = np.diff(keys)
    if not (diffs > 0).any():
        return float(len(keys))
    positions = grid_positions(keys.astype("datetime64[s]"), classify_step(float(np.median(diffs[diffs > 0])), ""))
    return np.inf if positions is None else float(positions[-1] + 1)


def parse_dates(cells: Sequence[str]) -> tuple[np.ndarray, str] | None:
    """Parse date strings of one layout, common or not (`parse_other_layouts`, whose assumption is
    warned), into datetime64[s] and a template that rewrites them; None when any cell does not match,
    the layouts are mixed, or a date is impossible."""
    parsed = DateCells.parse(cells)
    if parsed is not None:
        return parsed.resolve()
    other = parse_other_layouts(cells)
    if other is None:
        return None
    if other[2]:
        warnings.warn(other[2])
    return other[0], other[1]


def grid_positions(timestamps: np.ndarray, step: Step) -> np.ndarray | None:
    """How many steps after the first date each date lies, when every date sits on the step's grid;
    None when some date falls between steps. Calendar steps count months (the day may wander)."""
    ts = np.asarray(timestamps).astype("datetime64[s]")
    if step.weekdays or step.times:
        return calendars.positions(ts, step)
    if step.is_calendar:
        c = date_components(ts)
        offsets, unit = (c["Y"] * 12 + c["m"]) - (c["Y"][0] * 12 + c["m"][0]), step.months
    else:
        offsets, unit = (ts - ts[0]).astype(np.int64), int(round(step.seconds))
    if unit <= 0 or (offsets % unit).any():
        return None
    positions = offsets // unit
    return positions if (np.diff(positions) > 0).all() else None


# ----------------------------------------------------------------------------------------------
# Less common layouts: digits, quarters, month names, ISO weeks

_MONTH_NUMBERS = {name.lower(): k + 1 for k, full in enumerate(MONTHS) for name in (full, full[:3])}
_MONTH_NUMBERS["sept"] = 9
_NAME = r"([A-Za-z]{3,9})"


def _month(names: Sequence[str]) -> np.ndarray | None:
    numbers = [_MONTH_NUMBERS.get(n.lower()) for n in names]
    return None if None in numbers else np.array(numbers, dtype=np.int64)


def _name_style(names: Sequence[str]) -> str:
    """{b} for short month names (Jan), {B} for full ones (January; June and July are both)."""
    return "{B}" if any(len(n) > 3 and n.lower() != "sept" for n in names) else "{b}"


def _digits(g):        # 19580329
    return g[0], g[1], g[2], "{Y:04d}{m:02d}{d:02d}", "8-digit numbers read as dates YYYYMMDD"


def _quarter(g):       # 1959Q1, 1959-Q1, 1959 q1
    quarters = np.array(g[2], dtype=np.int64)
    return (g[0], 3 * quarters - 2, None, "{Y:04d}" + g[1][0] + "Q{q}",
            f"dates like {g[0][0]}{g[1][0]}Q{g[2][0]} read as quarters (each the quarter's first day)")


def _name_day_year(g):  # Jan-1-1995, January 1 1995
    day = "{d:02d}" if any(d.startswith("0") for d in g[2]) else "{d}"
    return g[3], _month(g[0]), g[2], _name_style(g[0]) + g[1][0] + day + g[1][0] + "{Y:04d}", None


def _year_name(g):      # 1995 Jan, 1995-January
    return g[0], _month(g[2]), None, "{Y:04d}" + g[1][0] + _name_style(g[2]), None


def _name_year(g):      # Jan 1995, January-1995
    return g[2], _month(g[0]), None, _name_style(g[0]) + g[1][0] + "{Y:04d}", None


def _iso_week(g):       # 2020-W05, 2020W05
    try:
        mondays = [datetime.date.fromisocalendar(int(y), int(w), 1) for y, w in zip(g[0], g[2])]
    except ValueError:
        return None
    return ([d.year for d in mondays], [d.month for d in mondays], [d.day for d in mondays],
            "{G:04d}" + g[1][0] + "W{V:02d}", "ISO weeks read as their Mondays")


_OTHER_LAYOUTS = (
    (re.compile(r"^[ \t]*(\d{4})(\d{2})(\d{2})[ \t]*$", re.M), _digits),
    (re.compile(r"^[ \t]*(\d{4})([- ]?)[Qq]([1-4])[ \t]*$", re.M), _quarter),
    (re.compile(r"^[ \t]*" + _NAME + r"([- /])(\d{1,2})\2(\d{4})[ \t]*$", re.M), _name_day_year),
    (re.compile(r"^[ \t]*(\d{4})([- ])" + _NAME + r"[ \t]*$", re.M), _year_name),
    (re.compile(r"^[ \t]*" + _NAME + r"([- ])(\d{4})[ \t]*$", re.M), _name_year),
    (re.compile(r"^[ \t]*(\d{4})(-?)W(\d{2})[ \t]*$", re.M), _iso_week),
)


def parse_other_layouts(cells: Sequence[str]) -> tuple[np.ndarray, str, str | None] | None:
    """(datetime64[s] timestamps, Step.style, what was assumed or None) for a column in one of the less
    common layouts; None when no layout matches every cell, a separator is mixed, or a date is
    impossible."""
    if not cells:
        return None
    text = "\n".join(cells)
    for pattern, read in _OTHER_LAYOUTS:
        groups = pattern.findall(text)
        if len(groups) != len(cells):
            continue
        columns = list(zip(*groups))
        separators = [c for c in columns if c and all(not s or not s.strip("- /") for s in c)]
        if any(len(set(c)) > 1 for c in separators):
            return None   # 1959Q1 beside 1959-Q1: mixed layouts are refused, as above
        parsed = read(columns)
        if parsed is None or parsed[1] is None:
            return None
        year, month, day, style, note = parsed
        built = _calendar(np.array(year, dtype=np.int64), np.asarray(month, dtype=np.int64),
                          np.ones(len(cells), np.int64) if day is None else np.array(day, dtype=np.int64))
        return None if built is None else (built, style, note)
    return None


def _calendar(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray | None:
    """datetime64[s] midnights of (year, month, day) arrays; None when one is impossible (month 13,
    Feb 30). Every layout's dates are built here."""
    if ((m < 1) | (m > 12) | (d < 1)).any():
        return None
    month_start = ((y - 1970) * 12 + (m - 1)).astype("datetime64[M]")
    next_month = month_start + np.timedelta64(1, "M")  # a bare `+ 1` is numpy's deprecated generic unit
    days_in_month = next_month.astype("datetime64[D]") - month_start.astype("datetime64[D]")
    if (d > days_in_month.astype(np.int64)).any():
        return None
    return month_start.astype("datetime64[D]").astype("datetime64[s]") + ((d - 1) * 86400).astype("timedelta64[s]")


def years_as_dates(numbers: np.ndarray) -> np.ndarray | None:
    """A column of year numbers (1871, 1700.0) as the first days of those years; None unless every value
    is a whole number between 1000 and 2999."""
    if not (np.all(numbers == np.round(numbers)) and numbers.min() >= 1000 and numbers.max() <= 2999):
        return None
    return _calendar(numbers.astype(np.int64), np.ones(len(numbers), np.int64), np.ones(len(numbers), np.int64))
