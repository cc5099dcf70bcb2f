"""CSV files in and out: the encoding and delimiter sniffed, a date column found and parsed, numbers in
any common spelling (thousands separators, decimal commas), rows put in time order, gaps reported; a
file streams in blocks, so memory grows with the columns used. Missing cells stay NaN in
``Series.values``. ``series_from_values`` makes the same Series from Python lists."""

from __future__ import annotations

import calendar
import codecs
import csv
import io
import os
import re
import warnings
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from timer1.data import calendars
from timer1.data.dates import (DateCells, DateLabels, Step, date_components, date_fields, format_dates, parse_dates,
                               parse_other_layouts, years_as_dates)
from timer1.data.row_order import chronological_order, long_hint, report_calendar, report_gaps, step_of
from timer1.util.atomic import write_text_atomic

_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


_DECIMAL_COMMA_RE = re.compile(r"[ \t]*[+-]?\d+,\d+[ \t]*")


DATE_COLUMN_NAMES = {"date", "time", "timestamp", "datetime", "ds", "index", "t"}
YEAR_COLUMN_NAMES = {"year", "yr", "years"}   # whole numbers 1000-2999 under these names (or a date name) are years


DELIMITERS = ",;\t|"


SAMPLE_BYTES = 1 << 16   # the head of the file the encoding and the delimiter are guessed from


BLOCK_ROWS = 1 << 16     # rows turned into numpy arrays at a time while a file streams in


HEAD_ROWS = 50           # rows a date column is looked for in, when it is not the first


@dataclass
class Series:
    """One CSV: channels side by side, NaN where a cell was missing."""

    name: str                        # file stem, e.g. "ETTh1"
    channels: list[str]
    values: np.ndarray               # (T, C) float64, NaN where a cell was empty/unparseable
    timestamps: np.ndarray | None    # (T,) datetime64[s], or None (running index / unparseable dates)
    step: Step
    dates: Sequence[str] = field(default_factory=list)  # (T,) dates in the file's layout (or row numbers)

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.channels):
            raise ValueError(f"series {self.name}: values shape {self.values.shape} does not match "
                             f"{len(self.channels)} channels")
        if not self.dates:
            if self.timestamps is not None:
                self.dates = DateLabels(self.timestamps, self.step.style)
            else:
                self.dates = DateLabels(np.arange(len(self.values), dtype=np.float64), "{i:.0f}")
        if len(self.dates) != len(self.values):
            raise ValueError(f"series {self.name}: {len(self.dates)} dates for {len(self.values)} rows")

    def __len__(self) -> int:
        return len(self.values)

    def column(self, channel: str) -> np.ndarray:
        if channel not in self.channels:
            raise ValueError(f"series {self.name}: no channel {channel!r} (has {', '.join(self.channels)})")
        return self.values[:, self.channels.index(channel)]


@dataclass(frozen=True)
class CsvDialect:
    """How a file is written: text encoding, field delimiter, decimal comma ("1,5") or point."""

    encoding: str
    delimiter: str
    decimal_comma: bool

    def note(self) -> str | None:
        """A warning for anything other than UTF-8, commas between fields and decimal points."""
        parts = []
        if self.encoding == "latin-1":
            parts.append("not UTF-8, read as Latin-1")
        elif self.encoding == "utf-16":
            parts.append("read as UTF-16")
        if self.delimiter != ",":
            parts.append(f"fields separated by {self.delimiter!r}")
        if self.decimal_comma:
            parts.append("decimal commas")
        return "; ".join(parts) or None


def sniff_dialect(path: Path) -> CsvDialect:
    """Guess encoding (BOM, else UTF-8 if the head decodes, else Latin-1), the delimiter
    (``csv.Sniffer`` on the first lines) and decimal commas (only with a non-comma delimiter)."""
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
    encoding = _sniff_encoding(head, complete=len(head) < SAMPLE_BYTES)
    if encoding != "utf-16" and b"\x00" in head:
        raise ValueError(f"{path}: not a readable CSV file (binary content: a NUL byte)")
    lines = [line for line in head.decode(encoding, errors="ignore").splitlines() if line.strip()]
    if len(head) == SAMPLE_BYTES:
        lines = lines[:-1]  # the last line may be cut
    lines = lines[:50]
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","  # one column, or nothing to go by
    decimal_comma = delimiter != "," and any(_DECIMAL_COMMA_RE.fullmatch(cell) for line in lines[1:]
                                             for cell in line.split(delimiter)[1:])
    return CsvDialect(encoding, delimiter, decimal_comma)


def _sniff_encoding(head: bytes, complete: bool) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return "latin-1"  # numbers and dates read the same; only odd header letters could differ
    return "utf-8-sig"  # drops a UTF-8 byte-order mark when there is one


def _cells_to_floats(cells: Sequence[str], decimal_comma: bool) -> np.ndarray:
    """Parse one column; empty/unparseable/infinite cells become NaN."""
    if decimal_comma:
        cells = [c.replace(",", ".") for c in cells]
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


def _index_numbers(cells: Sequence[str]) -> tuple[np.ndarray, int] | None:
    """A running-number date column (nasdaq's 1.0, 2.0, ...): the numbers and their decimals."""
    try:
        numbers = np.array(cells, dtype=np.float64)
    except ValueError:
        return None
    if not np.all(np.isfinite(numbers)):
        return None
    return numbers, max((len(c.strip().split(".")[1]) if "." in c else 0) for c in cells)


@dataclass
class _Block:
    """Up to BLOCK_ROWS parsed rows: the date column (the first, unless `_find_date_column` says
    otherwise) as dates or numbers, the kept value columns, and the file line of every row (for messages)."""

    dates: DateCells | None
    other: tuple[np.ndarray, str, str | None] | None   # a less common date layout (dates.parse_other_layouts)
    numbers: tuple[np.ndarray, int] | None
    first: np.ndarray | None          # the first column as floats, when it may turn out to be a channel
    values: list[np.ndarray]
    lines: np.ndarray


def _parse_block(rows: list[list[str]], lines: list[int], keep: list[int], dialect: CsvDialect,
                 date_index: int) -> _Block:
    first_cells = [row[date_index].strip() for row in rows]
    dates = DateCells.parse(first_cells)
    other = None if dates is not None else parse_other_layouts(first_cells)
    is_date = dates is not None or other is not None
    numbers = None if is_date else _index_numbers(first_cells)
    first = None if is_date else _cells_to_floats(first_cells, dialect.decimal_comma)
    values = [_cells_to_floats([row[k] for row in rows], dialect.decimal_comma) for k in keep]
    return _Block(dates, other, numbers, first, values, np.array(lines, dtype=np.int64))


def _row_blocks(rows, width: int, path: Path):
    """(rows, line numbers) BLOCK_ROWS at a time; blank lines skipped, short rows padded with empty
    cells, a row with extra non-empty fields is an error naming its line."""
    block, lines = [], []
    for row in rows:
        if len(row) != width or not row[0]:  # the common full row with a date costs two tests
            if not any(row):
                continue
            if len(row) > width:
                if any(c.strip() for c in row[width:]):
                    raise ValueError(f"{path}: line {rows.line_num} has {len(row)} fields, header has {width}")
                del row[width:]
            else:
                row.extend([""] * (width - len(row)))
        block.append(row)
        lines.append(rows.line_num)
        if len(block) == BLOCK_ROWS:
            yield block, lines
            block, lines = [], []
    if block:
        yield block, lines


def _find_date_column(path: Path, dialect: CsvDialect, header: list[str], date_column: str | None) -> int:
    """The index of the date column: ``date_column`` when named, else the first column when its
    head parses as dates or is named like them, else the first later column that does (a date
    column need not come first); else 0 (then `_date_column` decides whether it is an index)."""
    if date_column is not None:
        if date_column not in header:
            raise ValueError(f"{path}: no date column {date_column!r}; the columns are {', '.join(header)}")
        return header.index(date_column)
    with open(path, encoding=dialect.encoding, newline="") as text:
        rows = list(islice((row for row in csv.reader(text, delimiter=dialect.delimiter) if any(row)), HEAD_ROWS + 1))[1:]

    def dated(k: int) -> bool:
        cells = [row[k].strip() for row in rows if len(row) > k]
        return bool(cells) and (DateCells.parse(cells) is not None or parse_other_layouts(cells) is not None)

    for k, name in enumerate(header):
        if k == 0 and (dated(0) or name.lower() in DATE_COLUMN_NAMES | YEAR_COLUMN_NAMES):
            return 0
        if k > 0 and dated(k):
            warnings.warn(f"{path}: column {name!r} read as the dates (it is not the first column)")
            return k
    return 0


def _read_blocks(path: Path, dialect: CsvDialect, columns: Sequence[str] | None,
                 progress: Callable[[int, int], None] | None,
                 date_column: str | None) -> tuple[list[str], int, list[int], list[_Block]]:
    """Stream the file: its header, the date column's index, the indices of the value columns kept,
    and the parsed blocks."""
    size = path.stat().st_size
    with open(path, "rb") as raw, io.TextIOWrapper(raw, encoding=dialect.encoding, newline="") as text:
        rows = csv.reader(text, delimiter=dialect.delimiter)
        try:
            header = next((row for row in rows if any(row)), None)
            if header is None:
                raise ValueError(f"{path}: empty file (no header, no rows)")
            header = [h.strip() for h in header]
            unknown = [name for name in columns or () if name not in header]
            if unknown:
                raise ValueError(f"{path}: no column {unknown[0]!r}; the columns are {', '.join(header)}")
            date_index = _find_date_column(path, dialect, header, date_column)
            keep = [k for k, name in enumerate(header) if k != date_index and (columns is None or name in columns)]
            blocks = []
            for block, lines in _row_blocks(rows, len(header), path):
                blocks.append(_parse_block(block, lines, keep, dialect, date_index))
                if progress is not None:
                    progress(raw.tell(), size)
        except (csv.Error, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a readable CSV file ({err})") from None
    if not blocks:
        raise ValueError(f"{path}: header only, no data rows")
    return header, date_index, keep, blocks


def read_csv(path: str | os.PathLike, columns: Sequence[str] | None = None,
             progress: Callable[[int, int], None] | None = None, date_column: str | None = None) -> Series:
    """Read a time-series CSV (a date column, the first unless `_find_date_column` finds it later or
    ``date_column`` names it, and one numeric column per channel).

    The file streams in BLOCK_ROWS rows at a time and only the kept ``columns`` (None: all) are
    stored, so memory follows what is used, not the file. Rows are put in date order when they are
    not (newest first, or shuffled onto one regular step, with a warning); duplicated dates, or
    shuffled dates with no consistent step, are an error naming lines.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such CSV file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a CSV file")
    dialect = sniff_dialect(path)
    if dialect.note():
        warnings.warn(f"{path}: {dialect.note()}")
    header, date_index, keep, blocks = _read_blocks(path, dialect, columns, progress, date_column)
    lines = np.concatenate([b.lines for b in blocks])
    names = [header[k] for k in keep]
    arrays = [np.concatenate([b.values[j] for b in blocks]) for j in range(len(keep))]

    timestamps, keys, step = _date_column(path, header[date_index], blocks)
    if date_column is not None and keys is None:
        raise ValueError(f"{path}: column {date_column!r} does not parse as dates")
    if keys is None and timestamps is None and step is None:  # no date column: the first column is a channel
        if columns is None or header[0] in columns:
            names, arrays = [header[0]] + names, [np.concatenate([b.first for b in blocks])] + arrays
        step = Step("index", 1.0, 0, "{i:.0f}")
    order = chronological_order(path, keys, lines, step, long_hint(header, date_index, names, arrays))
    if order is not None:
        lines, arrays = lines[order], [a[order] for a in arrays]
        timestamps = None if timestamps is None else timestamps[order]
        keys = keys[order]
    if keys is not None:
        step = step_of(keys, step, timestamps)
    if timestamps is not None:
        report_calendar(path, step)
        report_gaps(path, timestamps, lines, step)

    channels, kept = [], []
    for name, col in zip(names, arrays):
        if np.isnan(col).all():
            warnings.warn(f"{path}: column {name!r} has no numeric value; dropped")
            continue
        channels.append(name or f"column{len(channels)}")
        kept.append(col)
    if not kept:
        hint = f" (found {';'!r} in the header: is this a semicolon-separated file?)" if ";" in header[0] else ""
        raise ValueError(f"{path}: no numeric column{hint}")
    dates = None if timestamps is not None or keys is None else DateLabels(keys, step.style)
    return Series(path.stem, channels, np.stack(kept, axis=1), timestamps, step, dates or [])


def series_from_values(values: Sequence[float], dates: Sequence[str] | None = None, name: str = "series",
                       channel: str = "value") -> Series:
    """A one-channel Series from values (NaN / None for missing) and optional increasing date
    strings: how the Python API gets the same `forecast_window` repairs as a CSV."""
    column = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if column.ndim != 1:
        raise ValueError(f"{name}: values must be one-dimensional, got shape {column.shape}")
    if dates is None:
        return Series(name, [channel], column[:, None], None, Step("index", 1.0, 0, "{i:.0f}"))
    cells = [str(d) for d in dates]
    if len(cells) != len(column):
        raise ValueError(f"{name}: {len(cells)} timestamps for {len(column)} values")
    parsed = parse_dates(cells) or _years(cells)
    if parsed is None:
        raise ValueError(f"{name}: timestamps do not parse as one date layout (e.g. 2020-01-31 or "
                         f"2020-01-31 13:00:00), first {cells[0]!r}")
    timestamps, style = parsed
    keys = timestamps.astype(np.int64)
    later = np.flatnonzero(np.diff(keys) <= 0)
    if later.size:
        raise ValueError(f"{name}: timestamps must increase; {cells[later[0] + 1]!r} follows {cells[later[0]]!r}")
    step = step_of(keys, Step("seconds", 1.0, 0, style), timestamps)
    return Series(name, [channel], column[:, None], timestamps, step, cells)


def _years(cells: list[str]) -> tuple[np.ndarray, str] | None:
    """Cells that are all four-digit years ("1990") as those years' first days, as a date column
    named like years reads them (`years_as_dates`)."""
    if not all(len(c.strip()) == 4 and c.strip().isdigit() for c in cells):
        return None
    years = years_as_dates(np.array([int(c) for c in cells], dtype=np.float64))
    return None if years is None else (years, "{Y:04d}")


def _date_column(path: Path, name: str, blocks: list[_Block]):
    """(timestamps, sort keys, step draft) of the first column; all None when it is a channel
    (numeric and not named like a date). A reading that is a guess (digits as YYYYMMDD, numbers as
    years, quarters, ISO weeks) is said in one warning."""
    cells = DateCells.merge([b.dates for b in blocks])
    parsed = None if cells is None else cells.resolve()
    if parsed is None:
        parsed = _other_layout(path, blocks)
    if parsed is not None:
        timestamps, style = parsed
        return timestamps, timestamps.astype(np.int64), Step("seconds", 1.0, 0, style)
    numbers = None if any(b.numbers is None for b in blocks) else np.concatenate([b.numbers[0] for b in blocks])
    if numbers is not None and name.lower() in DATE_COLUMN_NAMES | YEAR_COLUMN_NAMES:
        years = years_as_dates(numbers)
        if years is not None:
            warnings.warn(f"{path}: column {name!r} read as years")
            return years, years.astype(np.int64), Step("seconds", 1.0, 0, "{Y:04d}")
    if numbers is not None and name.lower() in DATE_COLUMN_NAMES:
        decimals = max(b.numbers[1] for b in blocks)
        return None, numbers, Step("index", 1.0, 0, "{i:." + str(min(decimals, 6)) + "f}")
    if numbers is not None:
        warnings.warn(f"{path}: no date column found; every column is a channel, dates are row numbers")
        return None, None, None
    warnings.warn(f"{path}: column {name!r} does not parse as dates; using a running row index")
    return None, None, Step("index", 1.0, 0, "{i:.0f}")


def _other_layout(path: Path, blocks: list[_Block]) -> tuple[np.ndarray, str] | None:
    """The first column in one of the less common layouts, the same in every block; its note warned once."""
    if any(b.other is None or b.other[1] != blocks[0].other[1] for b in blocks):
        return None
    if blocks[0].other[2]:
        warnings.warn(f"{path}: {blocks[0].other[2]}")
    return np.concatenate([b.other[0] for b in blocks]), blocks[0].other[1]


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


def future_dates(series_or_last: Series | np.datetime64 | str | float, step: Step | None = None,
                 n: int = 1) -> list[str]:
    """The n dates after the last one, continuing its step and written in its style.

    Calendar steps from a month's last day stay on month ends (Jan 31 -> Feb 28/29 -> Mar 31);
    otherwise they keep the day of the month, clipped to the month's length.
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
        parsed = parse_dates([last.strip()])
        if parsed is None:
            raise ValueError(f"future_dates: cannot parse date {last!r}")
        last = parsed[0][0]
    last = np.datetime64(last, "s")
    if step.weekdays or step.times:
        return format_dates(calendars.next_times(last, step, n), step.style)
    if not step.is_calendar:
        offsets = np.arange(1, n + 1, dtype=np.int64) * int(round(step.seconds))
        return format_dates(last + offsets.astype("timedelta64[s]"), step.style)
    c = {k: int(v[0]) for k, v in date_components(np.array([last])).items()}
    month_end = c["d"] == calendar.monthrange(c["Y"], c["m"])[1]
    out = []
    for k in range(1, n + 1):
        total = c["m"] - 1 + k * step.months
        year, month = c["Y"] + total // 12, total % 12 + 1
        days_in_month = calendar.monthrange(year, month)[1]
        day = days_in_month if month_end else min(c["d"], days_in_month)
        out.append(step.style.format(**date_fields(year, month, day, c["H"], c["M"], c["S"])))
    return out
