"""Series data: CSV reading, date styles and steps, the Time-R1 evaluation protocol, windows, synthetic series.

A CSV holds a date column first (optional) and one numeric column per channel. `read_csv` returns a
`Series`; the windowing functions cut it into univariate `Window`s (one channel, a look-back history
and the horizon target that follows it), which `timer1.prompts` turns into text.

Date styles recognised in the first column (the three of the shared data plus two calendar forms):
``2016-07-01 00:00:00`` (ISO, also with ``T``), ``2020/1/1 0:00`` (slashes, unpadded), a plain number
running index such as nasdaq's ``1.0``, a plain date ``2020-01-31`` and a month ``2020-01``. If the
first column is named like a date (date, time, timestamp, ...) but its cells do not parse, the values
are still read, ``timestamps`` is None, the dates become a running row index, and a warning is issued:
callers decide whether that is acceptable. If the first column is numeric and not named like a date,
there is no date column: every column is a channel (also with a warning).

Missing cells (policy):
- ``Series.values`` keeps NaN wherever a cell was empty or not a number (``inf`` counts as missing).
- Inside a window's history, gaps are filled by linear interpolation between the nearest valid
  neighbours; gaps at the edges take the nearest valid value. A history with no valid value at all
  cannot be filled and its window is skipped.
- Target values are never filled. A window whose target has any NaN is EXCLUDED from
  `paper_windows`, `rolling_windows` and `train_windows` (`paper_windows` warns, because the count then
  differs from the paper's). Use `make_window` directly to build a window with a NaN target.

The Time-R1 evaluation protocol (official eval code ``eval/dataLoader.py`` of the Time-R1 repository,
checked against its text): look-back 96 and horizon 96 (nasdaq 36/36); ETTh test region starts at row
12*30*24 + 4*30*24 = 11520 and ends at 12*30*24 + 8*30*24 = 14400 (Informer split; ETTm: times 4);
every other set uses ``num_test = int(0.2 * T)`` and the test region starts at ``T - num_test``
(the Time-Series-Library ``Dataset_Custom`` rule, which the official code repeats; note
``T - int(0.2*T)`` can differ from ``int(0.8*T)`` by one row). Window i of a channel has its history in
rows ``[start - L + i*stride, start + i*stride)`` and its target in the H rows after; stride is L
(nasdaq: 1); the first 10 windows per channel are used. Inputs of non-ETT sets are rounded to 3
decimals (targets are not). That gives 70 samples for ETTh1/ETTh2, 80 exchange, 110 per AQ set,
70 wind, 50 nasdaq.
"""

from __future__ import annotations

import calendar
import csv
import io
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from timer1.atomic import write_text_atomic

ETT_HOURLY_TRAIN_END = 12 * 30 * 24          # 8640: 12 months of hours
ETT_HOURLY_VAL_END = 12 * 30 * 24 + 4 * 30 * 24  # 11520: + 4 months
ETT_HOURLY_TEST_END = 12 * 30 * 24 + 8 * 30 * 24  # 14400: + 4 more months
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
DATE_COLUMN_NAMES = {"date", "time", "timestamp", "datetime", "ds", "index", "t"}

# year, separator, month, day (optional), time separator, hour, minute, second (all optional)
_DATE_RE = re.compile(
    r"^[ \t]*(\d{4})([-/])(\d{1,2})(?:\2(\d{1,2}))?(?:([ T])(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?[ \t]*$",
    re.MULTILINE,
)


# ----------------------------------------------------------------------------------------------
# Steps and date formatting

@dataclass(frozen=True)
class Step:
    """The step between consecutive rows, and how dates are written.

    kind: "seconds", "minutes", "hourly", "daily", "weekly" (fixed length `seconds`),
          "monthly", "quarterly", "yearly" (calendar steps of `months` months; `seconds` holds the
          median spacing for information, future dates follow the calendar), or "index" (a running
          number; `seconds` is then its increment).
    style: a `str.format` template over Y m d H M S (dates) or i (index) that rewrites a date in
          the input's own layout, e.g. ``"{Y:04d}/{m}/{d} {H}:{M:02d}"`` for ``2020/1/1 0:00``.
    """

    kind: str
    seconds: float = 0.0
    months: int = 0
    style: str = "{Y:04d}-{m:02d}-{d:02d} {H:02d}:{M:02d}:{S:02d}"

    @property
    def is_calendar(self) -> bool:
        return self.months > 0


def _classify_step(median_seconds: float, style: str) -> Step:
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


def _date_components(timestamps: np.ndarray) -> dict[str, np.ndarray]:
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


def format_dates(timestamps: np.ndarray, style: str) -> list[str]:
    """Write datetime64 values with a Step.style template."""
    if len(timestamps) == 0:
        return []
    parts = _date_components(np.asarray(timestamps))
    keys = list(parts)
    return [style.format(**dict(zip(keys, map(int, row)))) for row in zip(*parts.values())]


def _parse_date_cells(cells: Sequence[str]) -> tuple[np.ndarray, str] | None:
    """Parse date strings of one layout into datetime64[s] and a template that rewrites them.

    One regex pass over the joined column (C speed), then integer fields -> datetime64 with numpy.
    Returns None when any cell does not match, the layouts are mixed, or a date is impossible
    (month 13, Feb 30, hour 24).
    """
    if not cells:
        return None
    groups = _DATE_RE.findall("\n".join(cells))
    if len(groups) != len(cells):
        return None  # some cell is not a date (or holds a newline)
    years, seps, months, days, time_seps, hours, minutes, seconds = zip(*groups)
    if len(set(seps)) != 1 or len(set(time_seps)) != 1 or len({d == "" for d in days}) != 1 \
            or len({s == "" for s in seconds}) != 1:
        return None  # mixed layouts in one column: refuse rather than guess
    sep, time_sep, has_day, has_secs = seps[0], time_seps[0], days[0] != "", seconds[0] != ""

    def ints(field: tuple[str, ...], default: int) -> np.ndarray:
        return np.array(field, dtype=np.int64) if field[0] != "" else np.full(len(field), default)

    y, m, d = ints(years, 1970), ints(months, 1), ints(days, 1)
    hh, mm, ss = ints(hours, 0), ints(minutes, 0), ints(seconds, 0)
    if ((m < 1) | (m > 12) | (d < 1) | (hh > 23) | (mm > 59) | (ss > 59)).any():
        return None
    month_start = ((y - 1970) * 12 + (m - 1)).astype("datetime64[M]")
    days_in_month = ((month_start + 1).astype("datetime64[D]") - month_start.astype("datetime64[D]")).astype(np.int64)
    if (d > days_in_month).any():
        return None
    offsets = ((d - 1) * 86400 + hh * 3600 + mm * 60 + ss).astype("timedelta64[s]")
    timestamps = month_start.astype("datetime64[s]") + offsets

    def pad(field: tuple[str, ...]) -> str:
        """Zero-padding of a field: seen ("01") or not ("1"); if every value has two digits,
        ISO-like dashes pad and slashes do not (the wind file's 2020/1/1 0:00)."""
        if any(len(f) == 1 for f in field):
            return ""
        if any(f.startswith("0") for f in field):
            return ":02d"
        return ":02d" if sep == "-" else ""

    style = "{Y:04d}" + sep + "{m" + pad(months) + "}"
    if has_day:
        style += sep + "{d" + pad(days) + "}"
    if time_sep:
        style += time_sep + "{H" + pad(hours) + "}:{M:02d}"
        if has_secs:
            style += ":{S:02d}"
    return timestamps, style


def _parse_index_cells(cells: Sequence[str]) -> tuple[np.ndarray, str] | None:
    """A running-number date column (nasdaq's 1.0, 2.0, ...): values and a template."""
    try:
        numbers = np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        return None
    if len(numbers) == 0 or not np.all(np.isfinite(numbers)):
        return None
    decimals = max((len(c.strip().split(".")[1]) if "." in c else 0) for c in cells)
    return numbers, "{i:." + str(min(decimals, 6)) + "f}"


def _median_positive_diff(x: np.ndarray) -> float:
    diffs = np.diff(x)
    if diffs.size and np.any(diffs <= 0):
        warnings.warn("dates are not strictly increasing; the step is the median of positive gaps")
    positive = diffs[diffs > 0]
    return float(np.median(positive)) if positive.size else 1.0


# ----------------------------------------------------------------------------------------------
# Series and CSV reading

@dataclass
class Series:
    """One CSV: channels side by side, NaN where a cell was missing."""

    name: str                        # file stem, e.g. "ETTh1"
    channels: list[str]
    values: np.ndarray               # (T, C) float64, NaN where a cell was empty/unparseable
    timestamps: np.ndarray | None    # (T,) datetime64[s], or None (running index / unparseable dates)
    step: Step
    dates: list[str] = field(default_factory=list)  # (T,) dates as written in the file (or row numbers)

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.channels):
            raise ValueError(f"series {self.name}: values shape {self.values.shape} does not match "
                             f"{len(self.channels)} channels")
        if not self.dates:
            if self.timestamps is not None:
                self.dates = format_dates(self.timestamps, self.step.style)
            else:
                self.dates = [str(i) for i in range(len(self.values))]
        if len(self.dates) != len(self.values):
            raise ValueError(f"series {self.name}: {len(self.dates)} dates for {len(self.values)} rows")

    def __len__(self) -> int:
        return len(self.values)

    def column(self, channel: str) -> np.ndarray:
        """(T,) values of one channel; ValueError naming the channel if it is absent."""
        if channel not in self.channels:
            raise ValueError(f"series {self.name}: no channel {channel!r} (has {', '.join(self.channels)})")
        return self.values[:, self.channels.index(channel)]


def _cells_to_floats(cells: Sequence[str]) -> np.ndarray:
    """Parse one column; empty/unparseable/infinite cells become NaN."""
    try:
        out = np.array(cells, dtype=np.float64)  # fast path: every cell a plain number
    except ValueError:
        out = np.empty(len(cells), dtype=np.float64)
        for i, cell in enumerate(cells):
            cell = cell.strip()
            if _THOUSANDS_RE.fullmatch(cell):
                cell = cell.replace(",", "")  # a quoted "1,234.5"
            try:
                out[i] = float(cell)
            except ValueError:
                out[i] = np.nan
    out[~np.isfinite(out)] = np.nan
    return out


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.exists():
        raise FileNotFoundError(f"no such CSV file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a CSV file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            rows = [row for row in csv.reader(f) if any(row)]  # skip blank lines
        except (csv.Error, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a readable CSV file ({err})") from None
    if not rows:
        raise ValueError(f"{path}: empty file (no header, no rows)")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if not body:
        raise ValueError(f"{path}: header only, no data rows")
    width = len(header)
    for line_no, row in enumerate(body, start=2):
        if len(row) > width:
            if any(c.strip() for c in row[width:]):
                raise ValueError(f"{path}: line {line_no} has {len(row)} fields, header has {width}")
            del row[width:]
        elif len(row) < width:
            row.extend([""] * (width - len(row)))
    return header, body


def read_csv(path: str | os.PathLike) -> Series:
    """Read a time-series CSV (first column dates, then one numeric column per channel).

    Uses only the csv module and numpy; dates are parsed by one regex per cell and numpy's
    datetime64 (the 48k-row wind file reads in a fraction of a second).
    """
    path = Path(path)
    header, body = _read_rows(path)
    columns = [list(col) for col in zip(*body)]  # C+1 lists of T cells
    first_name, first_cells = header[0], [c.strip() for c in columns[0]]

    timestamps, dates, step, value_start = None, None, None, 1
    parsed_dates = _parse_date_cells(first_cells)
    if parsed_dates is not None:
        timestamps, style = parsed_dates
        seconds = _median_positive_diff(timestamps.astype(np.int64).astype(np.float64))
        step, dates = _classify_step(seconds, style), first_cells
    elif first_name.lower() in DATE_COLUMN_NAMES:
        parsed_index = _parse_index_cells(first_cells)
        if parsed_index is not None:
            numbers, style = parsed_index
            step, dates = Step("index", _median_positive_diff(numbers), 0, style), first_cells
        else:
            warnings.warn(f"{path}: column {first_name!r} does not parse as dates; using a running row index")
    elif _parse_index_cells(first_cells) is not None:
        warnings.warn(f"{path}: no date column found; every column is a channel, dates are row numbers")
        value_start = 0
    else:
        warnings.warn(f"{path}: column {first_name!r} does not parse as dates; using a running row index")
    if step is None:
        step = Step("index", 1.0, 0, "{i:.0f}")

    channels, arrays = [], []
    for name, cells in zip(header[value_start:], columns[value_start:]):
        col = _cells_to_floats(cells)
        if np.isnan(col).all():
            warnings.warn(f"{path}: column {name!r} has no numeric value; dropped")
            continue
        channels.append(name or f"column{len(channels)}")
        arrays.append(col)
    if not arrays:
        raise ValueError(f"{path}: no numeric column")
    values = np.stack(arrays, axis=1)  # (T, C)
    return Series(path.stem, channels, values, timestamps, step, dates or [])


def write_csv(series: Series, path: str | os.PathLike, decimals: int | None = None) -> None:
    """Write a Series as CSV (date column first), atomically (temp file in the same dir, then rename)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["date", *series.channels])
    for date, row in zip(series.dates, series.values):
        cells = ["" if np.isnan(v) else (repr(float(v)) if decimals is None else f"{v:.{decimals}f}")
                 for v in row]
        writer.writerow([date, *cells])
    write_text_atomic(path, buffer.getvalue(), newline="")


# ----------------------------------------------------------------------------------------------
# Future dates

def future_dates(series_or_last: Series | np.datetime64 | str | float, step: Step | None = None,
                 n: int = 1) -> list[str]:
    """The n dates after the last one, continuing its step and written in its style.

    Calendar steps (monthly, quarterly, yearly): if the last date is the last day of its month,
    the continuation stays on month ends (Jan 31 -> Feb 28/29 -> Mar 31); otherwise it keeps the
    same day of the month, clipped to the month's length (Jan 15 -> Feb 15). Fixed steps add
    `step.seconds`; an index adds its increment.
    """
    if isinstance(series_or_last, Series):
        step = step or series_or_last.step
        last = (series_or_last.timestamps[-1] if series_or_last.timestamps is not None
                else series_or_last.dates[-1])
    else:
        last = series_or_last
    if step is None:
        raise ValueError("future_dates needs a step when given a single date")
    if n <= 0:
        return []
    if step.kind == "index":
        if isinstance(last, np.datetime64):
            raise ValueError("future_dates: an index step continues a number, not a datetime")
        last_number = float(last)
        return [step.style.format(i=last_number + k * step.seconds) for k in range(1, n + 1)]
    if isinstance(last, str):
        parsed = _parse_date_cells([last.strip()])
        if parsed is None:
            raise ValueError(f"future_dates: cannot parse date {last!r}")
        last = parsed[0][0]
    last = np.datetime64(last, "s")
    if not step.is_calendar:
        offsets = np.arange(1, n + 1, dtype=np.int64) * int(round(step.seconds))
        return format_dates(last + offsets.astype("timedelta64[s]"), step.style)
    c = {k: int(v[0]) for k, v in _date_components(np.array([last])).items()}
    month_end = c["d"] == calendar.monthrange(c["Y"], c["m"])[1]
    out = []
    for k in range(1, n + 1):
        total = c["m"] - 1 + k * step.months
        year, month = c["Y"] + total // 12, total % 12 + 1
        days_in_month = calendar.monthrange(year, month)[1]
        day = days_in_month if month_end else min(c["d"], days_in_month)
        out.append(step.style.format(Y=year, m=month, d=day, H=c["H"], M=c["M"], S=c["S"]))
    return out


# ----------------------------------------------------------------------------------------------
# Protocol and splits

@dataclass(frozen=True)
class Protocol:
    """How the paper evaluates one dataset.

    split: "ett_hourly" (Informer 12/4/4 months of hours), "ett_minute" (the same in 15-minute rows)
    or "ratio" (70/10/20 with num_test = int(0.2*T)). round_inputs: decimals the history is rounded
    to (3 for non-ETT sets), None to keep it raw.
    """

    lookback: int
    horizon: int
    stride: int
    n_windows: int
    split: str = "ratio"
    round_inputs: int | None = 3

    def test_start(self, n_rows: int) -> int:
        """First row of the test region (the first target row of window 0)."""
        return _bounds(self.split, n_rows)[1]

    def test_end(self, n_rows: int) -> int:
        """One past the last row of the test region."""
        return _bounds(self.split, n_rows)[2]


def _bounds(split: str, n_rows: int) -> tuple[int, int, int]:
    """(train_end, val_end, test_end) for a split rule."""
    if split in ("ett_hourly", "ett_minute"):
        scale = 1 if split == "ett_hourly" else 4
        train_end, val_end, test_end = (ETT_HOURLY_TRAIN_END * scale, ETT_HOURLY_VAL_END * scale,
                                        ETT_HOURLY_TEST_END * scale)
        if n_rows <= val_end:
            raise ValueError(f"series has {n_rows} rows, too few for the ETT split (test starts at row {val_end})")
        return train_end, val_end, min(test_end, n_rows)
    if split == "ratio":
        num_train, num_test = int(n_rows * 0.7), int(n_rows * 0.2)
        return num_train, n_rows - num_test, n_rows
    raise ValueError(f"unknown split rule {split!r}")


def protocol_for(dataset_name: str) -> Protocol:
    """The paper's protocol for a dataset name (file stem); unknown names get 96/96 and 70/10/20."""
    key = Path(str(dataset_name)).stem.lower()
    if key in ("etth1", "etth2"):
        return Protocol(96, 96, 96, 10, "ett_hourly", None)
    if key in ("ettm1", "ettm2"):
        return Protocol(96, 96, 96, 10, "ett_minute", None)
    if key == "nasdaq":
        return Protocol(36, 36, 1, 10, "ratio", 3)
    return Protocol(96, 96, 96, 10, "ratio", 3)


def split_bounds(series: Series, dataset: str | None = None) -> tuple[int, int]:
    """(train_end, val_end): train is rows [0, train_end), the test region starts at val_end."""
    train_end, val_end, _ = _bounds(protocol_for(dataset or series.name).split, len(series))
    return train_end, val_end


def split_test_region(series: Series, dataset: str | None = None) -> tuple[int, int]:
    """(test_start, test_end) rows of the test region (ETTh ends at row 14400, others at T)."""
    _, val_end, test_end = _bounds(protocol_for(dataset or series.name).split, len(series))
    return val_end, test_end


# ----------------------------------------------------------------------------------------------
# Windows

@dataclass(frozen=True, eq=False)
class Window:
    """One univariate forecasting sample: L history values, then the H target values after them."""

    dataset: str
    channel: str
    history: np.ndarray        # (L,) float64, gaps interpolated
    target: np.ndarray         # (H,) float64, never filled (may hold NaN only if built by make_window)
    history_dates: list[str]   # (L,) dates as written in the file
    target_dates: list[str]    # (H,)
    start: int                 # row of the first history value

    @property
    def lookback(self) -> int:
        return len(self.history)

    @property
    def horizon(self) -> int:
        return len(self.target)


def interpolate_gaps(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN; edges take the nearest valid value. All-NaN raises ValueError."""
    x = np.asarray(x, dtype=np.float64)
    valid = np.isfinite(x)
    if valid.all():
        return x.copy()
    if not valid.any():
        raise ValueError("cannot interpolate a window with no valid value")
    idx = np.arange(len(x))
    return np.interp(idx, idx[valid], x[valid])  # np.interp holds the end values flat beyond the edges


def make_window(series: Series, channel: str, start: int, lookback: int, horizon: int,
                round_inputs: int | None = None, dataset: str | None = None) -> Window:
    """The window whose history is rows [start, start+L) of `channel` and target the next H rows."""
    if start < 0 or start + lookback + horizon > len(series):
        raise ValueError(f"series {series.name}: window rows [{start}, {start + lookback + horizon}) "
                         f"outside [0, {len(series)})")
    column = series.column(channel)
    history = interpolate_gaps(column[start:start + lookback])
    if round_inputs is not None:
        history = np.round(history, round_inputs)
    target = column[start + lookback:start + lookback + horizon].copy()
    return Window(
        dataset=dataset or series.name,
        channel=channel,
        history=history,
        target=target,
        history_dates=series.dates[start:start + lookback],
        target_dates=series.dates[start + lookback:start + lookback + horizon],
        start=start,
    )


def forecast_window(series: Series, channel: str, lookback: int, horizon: int,
                    round_inputs: int | None = None, dataset: str | None = None) -> Window:
    """The window for a real forecast: the last `lookback` rows as history, the next `horizon`
    dates continued by `future_dates`, and an unknown target (all NaN, never invented)."""
    if not 0 < lookback <= len(series):
        raise ValueError(f"series {series.name}: lookback {lookback} outside 1..{len(series)}")
    if horizon <= 0:
        raise ValueError(f"series {series.name}: horizon must be positive, got {horizon}")
    start = len(series) - lookback
    history = interpolate_gaps(series.column(channel)[start:])
    if round_inputs is not None:
        history = np.round(history, round_inputs)
    return Window(dataset=dataset or series.name, channel=channel, history=history,
                  target=np.full(horizon, np.nan), history_dates=series.dates[start:],
                  target_dates=future_dates(series, None, horizon), start=start)


def _usable(series: Series, channel: str, start: int, lookback: int, horizon: int) -> bool:
    """A window is usable when its target is complete and its history has a valid value."""
    column = series.column(channel)
    history = column[start:start + lookback]
    target = column[start + lookback:start + lookback + horizon]
    return bool(np.isfinite(target).all() and np.isfinite(history).any())


def _windows_at(series: Series, starts: Sequence[int], lookback: int, horizon: int,
                channels: Sequence[str] | None, round_inputs: int | None, dataset: str | None,
                on_skip: Callable[[str, int], None] | None = None) -> list[Window]:
    out = []
    for channel in (channels or series.channels):
        for start in starts:
            if _usable(series, channel, start, lookback, horizon):
                out.append(make_window(series, channel, start, lookback, horizon, round_inputs, dataset))
            elif on_skip is not None:
                on_skip(channel, start)
    return out


def paper_windows(series: Series, dataset: str | None = None,
                  channels: Sequence[str] | None = None) -> list[Window]:
    """The paper's test samples: the first 10 windows per channel of the test region.

    Window i: history rows [test_start - L + i*stride, test_start + i*stride), target the next H rows.
    Channels come in file order (the official code follows its own table, e.g. nasdaq Close, Open,
    Volume, Low, High); the set of samples is the same.
    Windows with a missing target value are skipped with a warning (the paper's data has none).
    """
    dataset = dataset or series.name
    p = protocol_for(dataset)
    test_start, test_end = split_test_region(series, dataset)
    starts = [test_start - p.lookback + i * p.stride for i in range(p.n_windows)]
    starts = [s for s in starts if s >= 0 and s + p.lookback + p.horizon <= test_end]

    def warn_skip(channel: str, start: int) -> None:
        warnings.warn(f"{dataset}/{channel}: window at row {start} has missing values; skipped")

    return _windows_at(series, starts, p.lookback, p.horizon, channels, p.round_inputs, dataset, warn_skip)


def rolling_windows(series: Series, lookback: int, horizon: int, stride: int | None = None,
                    channels: Sequence[str] | None = None, dataset: str | None = None,
                    round_inputs: int | None = None) -> list[Window]:
    """Rolling-origin windows over the whole test region: the first target starts at the test start,
    origins advance by `stride` (default: horizon, so targets do not overlap) while the target fits."""
    stride = stride or horizon
    test_start, test_end = split_test_region(series, dataset)
    first = test_start - lookback
    starts = [s for s in range(first, test_end - lookback - horizon + 1, stride) if s >= 0]
    return _windows_at(series, starts, lookback, horizon, channels, round_inputs, dataset)


def train_windows(series: Series, lookback: int, horizon: int, stride: int,
                  channels: Sequence[str] | None = None, rng: np.random.Generator | int | None = None,
                  max_windows: int | None = None, dataset: str | None = None,
                  round_inputs: int | None = None) -> list[Window]:
    """Windows whose history AND target lie in the train region [0, train_end).

    With `max_windows` (None or 0: no cap), a random subset of that size is returned in row order,
    drawn with `rng` (a Generator or a seed; default seed 0).
    """
    train_end, _ = split_bounds(series, dataset)
    windows = region_windows(series, 0, train_end, lookback, horizon, stride, channels, dataset, round_inputs)
    if max_windows and len(windows) > max_windows:
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng or 0)
        keep = np.sort(generator.choice(len(windows), size=max_windows, replace=False))
        windows = [windows[i] for i in keep]
    return windows


def region_windows(series: Series, lo: int, hi: int, lookback: int, horizon: int, stride: int,
                   channels: Sequence[str] | None = None, dataset: str | None = None,
                   round_inputs: int | None = None) -> list[Window]:
    """Every `stride`-th window whose history AND target lie in rows [lo, hi), channel by channel."""
    if lookback <= 0 or horizon <= 0 or stride <= 0:
        raise ValueError(f"lookback, horizon, stride must be positive (got {lookback}, {horizon}, {stride})")
    starts = list(range(lo, hi - lookback - horizon + 1, stride))
    return _windows_at(series, starts, lookback, horizon, channels, round_inputs, dataset)


def validation_windows(series: Series, lookback: int, horizon: int, stride: int,
                       channels: Sequence[str] | None = None, dataset: str | None = None,
                       round_inputs: int | None = None) -> list[Window]:
    """Windows inside the validation region [train_end, val_end): held out from training, never test."""
    train_end, val_end = split_bounds(series, dataset)
    return region_windows(series, train_end, val_end, lookback, horizon, stride, channels, dataset, round_inputs)


# ----------------------------------------------------------------------------------------------
# Synthetic series

def evenly_spaced(items: Sequence, n: int) -> list:
    """n items spread evenly over the list, first and last included (all of them when n <= 0 or
    n >= len). Used to pick validation and quick-evaluation windows: the windows of a dataset are
    ordered channel by channel, so taking the first n would see the first channel only."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def synthetic_series(length: int, seed: int, *, level: float = 10.0, trend: float = 0.0,
                     periods: Sequence[tuple[float, float]] = ((24.0, 1.0),), level_shifts: int = 0,
                     shift_size: float = 3.0, spikes: int = 0, spike_size: float = 5.0,
                     noise: float = 0.1) -> np.ndarray:
    """A seeded (length,) series: level + trend*t + sum of sines + level shifts + spikes + noise.

    periods: (period, amplitude) pairs, each sine with a random phase. level_shifts: that many steps
    at random rows, each of +-shift_size. spikes: that many single-row outliers of +-spike_size.
    noise: std of Gaussian noise. The same seed gives the same series.
    """
    if length <= 0:
        raise ValueError(f"synthetic_series: length must be positive, got {length}")
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    y = level + trend * t
    for period, amplitude in periods:
        y = y + amplitude * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    if level_shifts:
        rows = rng.choice(np.arange(1, length), size=min(level_shifts, length - 1), replace=False)
        for row in rows:
            y[row:] += shift_size * rng.choice([-1.0, 1.0])
    if spikes:
        rows = rng.choice(length, size=min(spikes, length), replace=False)
        y[rows] += spike_size * rng.choice([-1.0, 1.0], size=len(rows))
    return y + noise * rng.standard_normal(length)


def synthetic_frame(length: int, seed: int, channels: Sequence[str] = ("value",),
                    start: str = "2020-01-01 00:00:00", step: Step | None = None,
                    name: str = "synthetic", **components) -> Series:
    """A Series of synthetic channels (seeds seed, seed+1, ...) with dates from `start` every `step`."""
    step = step or Step("hourly", 3600.0)
    first = _parse_date_cells([start])
    if first is None:
        raise ValueError(f"synthetic_frame: cannot parse start date {start!r}")
    dates = [step.style.format(**{k: int(v[0]) for k, v in _date_components(first[0]).items()})]
    dates += future_dates(first[0][0], step, length - 1)
    timestamps = _parse_date_cells(dates)[0]
    values = np.stack([synthetic_series(length, seed + i, **components) for i in range(len(channels))], axis=1)
    return Series(name, list(channels), values, timestamps, step, dates)
