"""Long CSV files: one row per (series, time), the layout of statsforecast, GluonTS and Chronos'
``predict_df`` (``unique_id,ds,y``), read with the standard library.

    unique_id,ds,y
    store_a,2019-01-01,412
    store_a,2019-02-01,398
    store_b,2019-01-01,77
    ...

Series come in order of first appearance; within a series rows may come in any order (sorted by their
parsed dates, the layouts timer1.data.csv_io reads). An empty cell or NA/NaN is a missing value.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from timer1.data.csv_io import parse_dates

MISSING = {"", "na", "nan", "null", "none"}


@dataclass(frozen=True)
class LongColumns:
    """The names of the id, timestamp and target columns."""

    id: str = "unique_id"
    timestamp: str = "ds"
    target: str = "y"


@dataclass
class LongSeries:
    id: str
    values: np.ndarray   # (T,)
    dates: list[str]     # T date cells, increasing
    indexed: bool        # the dates are a running index (whole numbers), not calendar dates

    def next_index(self, horizon: int) -> list[str]:
        """The running index's next ``horizon`` values (see `continue_index`)."""
        return [str(v) for v in continue_index([int(d) for d in self.dates], horizon)]


def continue_index(values, horizon: int) -> list:
    """The next ``horizon`` values of a running index (numbers), on its most common step."""
    steps, counts = np.unique(np.diff(np.asarray(values)), return_counts=True)
    step = steps[np.argmax(counts)].item() if len(steps) else 1
    return [values[-1] + step * k for k in range(1, horizon + 1)]


def number(cell: str, where: str) -> float:
    if cell.strip().lower() in MISSING:
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"{where}: {cell!r} is not a number") from None
    if math.isinf(value):
        raise ValueError(f"{where}: {cell!r} is not a finite number")
    return value


def read_long(path: Path, columns: LongColumns) -> list[LongSeries]:
    """Every series of a long CSV; ValueError (one line) for a missing column, a non-number, dates that
    do not parse or repeat within a series."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in (columns.id, columns.timestamp, columns.target) if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} (columns: {', '.join(header)})")
        rows: dict[str, list[tuple[str, float]]] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path} line {line}, column {columns.target!r}"
            rows.setdefault(row[columns.id], []).append((row[columns.timestamp], number(row[columns.target], where)))
    if not rows:
        raise ValueError(f"{path}: no rows below the header")
    series = [in_time_order(path, key, cells) for key, cells in rows.items()]
    if len({s.indexed for s in series}) > 1:
        raise ValueError(f"{path}: some series are dated and some have a running index; give them one kind")
    return series


def in_time_order(path: Path, key: str, cells: list[tuple[str, float]]) -> LongSeries:
    dates = [d.strip() for d, _ in cells]
    parsed = parse_dates(dates)
    indexed = parsed is None and all(d.lstrip("-").isdigit() for d in dates)
    if parsed is not None:
        keys = parsed[0].astype(np.int64)
    elif indexed:
        keys = np.array([int(d) for d in dates], dtype=np.int64)
    else:
        raise ValueError(f"{path}: series {key!r}: dates do not parse as one layout, first {dates[0]!r}")
    order = np.argsort(keys, kind="stable")
    repeated = np.flatnonzero(np.diff(keys[order]) == 0)
    if repeated.size:
        raise ValueError(f"{path}: series {key!r}: the date {dates[order[repeated[0]]]!r} appears twice")
    return LongSeries(key, np.array([cells[i][1] for i in order]), [dates[i] for i in order], indexed)

