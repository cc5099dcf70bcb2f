"""The Time-R1 evaluation protocol, the splits and the windows cut from a series.

The protocol (official ``eval/dataLoader.py``): look-back 96 and horizon 96 (nasdaq 36/36). ETTh's
test region is rows [11520, 14400) (Informer's 12/4/4-month split; ETTm: times 4); every other set
starts it at ``T - int(0.2 * T)`` (Time-Series-Library ``Dataset_Custom``; this can differ from
``int(0.8*T)`` by one row). Window i has its history in rows ``[start - L + i*stride, start + i*stride)``
and its target in the H rows after; stride is L (nasdaq: 1); the first 10 windows per channel are
used. Inputs of non-ETT sets are rounded to 3 decimals (targets are not). A window's history is
interpolated between valid neighbours; a target is never filled, and a window whose target has a NaN
is left out.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from timer1.core.window import Window, interpolate_gaps
from timer1.data.csv_io import Series

ETT_HOURLY_TRAIN_END = 12 * 30 * 24               # 12 months of hours


ETT_HOURLY_VAL_END = 12 * 30 * 24 + 4 * 30 * 24   # + 4 months


ETT_HOURLY_TEST_END = 12 * 30 * 24 + 8 * 30 * 24  # + 4 more months


@dataclass(frozen=True)
class Protocol:
    """How the paper evaluates one dataset."""

    lookback: int
    horizon: int
    stride: int
    n_windows: int
    split: str = "ratio"             # "ett_hourly", "ett_minute" (15-minute rows) or "ratio" (70/10/20)
    round_inputs: int | None = 3     # decimals the history is rounded to, None: raw


def _bounds(split: str, n_rows: int) -> tuple[int, int, int]:
    """(train_end, val_end, test_end)."""
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


PAPER_DATASETS = ("etth1", "etth2", "ettm1", "ettm2", "exchange", "aqshunyi", "aqwan", "wind", "nasdaq")


def is_paper_dataset(dataset_name: str) -> bool:
    """Whether a file stem names one of the paper's datasets (its protocol's horizon is the default)."""
    return Path(str(dataset_name)).stem.lower() in PAPER_DATASETS


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
    """(test_start, test_end) rows of the test region."""
    _, val_end, test_end = _bounds(protocol_for(dataset or series.name).split, len(series))
    return val_end, test_end


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


def _windows_at(series: Series, starts: Sequence[int], lookback: int, horizon: int,
                channels: Sequence[str] | None, round_inputs: int | None, dataset: str | None,
                on_skip: Callable[[str, int], None] | None = None) -> list[Window]:
    """Windows at `starts` whose target is complete and whose history has a valid value."""
    out = []
    for channel in (channels or series.channels):
        column = series.column(channel)
        for start in starts:
            history = column[start:start + lookback]
            target = column[start + lookback:start + lookback + horizon]
            if np.isfinite(target).all() and np.isfinite(history).any():
                out.append(make_window(series, channel, start, lookback, horizon, round_inputs, dataset))
            elif on_skip is not None:
                on_skip(channel, start)
    return out


def paper_windows(series: Series, dataset: str | None = None,
                  channels: Sequence[str] | None = None) -> list[Window]:
    """The paper's test samples: the first 10 windows per channel of the test region, channels in
    file order (the official code's order differs; the set is the same)."""
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
    """Rolling-origin windows over the whole test region, origins `stride` apart (default: horizon)."""
    stride = stride or horizon
    test_start, test_end = split_test_region(series, dataset)
    first = test_start - lookback
    starts = [s for s in range(first, test_end - lookback - horizon + 1, stride) if s >= 0]
    return _windows_at(series, starts, lookback, horizon, channels, round_inputs, dataset)


def train_windows(series: Series, lookback: int, horizon: int, stride: int,
                  channels: Sequence[str] | None = None, dataset: str | None = None,
                  round_inputs: int | None = None) -> list[Window]:
    """Windows inside the train region [0, train_end)."""
    train_end, _ = split_bounds(series, dataset)
    return region_windows(series, (0, train_end), lookback, horizon, stride, channels, dataset, round_inputs)


def region_windows(series: Series, rows: tuple[int, int], lookback: int, horizon: int, stride: int,
                   channels: Sequence[str] | None = None, dataset: str | None = None,
                   round_inputs: int | None = None) -> list[Window]:
    """Every `stride`-th window whose history AND target lie in ``rows`` [lo, hi), channel by channel."""
    lo, hi = rows
    if lookback <= 0 or horizon <= 0 or stride <= 0:
        raise ValueError(f"lookback, horizon, stride must be positive (got {lookback}, {horizon}, {stride})")
    starts = list(range(lo, hi - lookback - horizon + 1, stride))
    return _windows_at(series, starts, lookback, horizon, channels, round_inputs, dataset)


def validation_windows(series: Series, lookback: int, horizon: int, stride: int,
                       channels: Sequence[str] | None = None, dataset: str | None = None,
                       round_inputs: int | None = None) -> list[Window]:
    """Windows inside the validation region [train_end, val_end): held out from training, never test."""
    train_end, val_end = split_bounds(series, dataset)
    return region_windows(series, (train_end, val_end), lookback, horizon, stride, channels, dataset, round_inputs)


def evenly_spaced(items: Sequence, n: int) -> list:
    """n items spread evenly over the list, first and last included (all when n <= 0). Windows come
    channel by channel, so the first n would see the first channel only."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]
