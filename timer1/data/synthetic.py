"""Seeded synthetic series (level, trend, seasonal sines, level shifts, spikes, noise): extra training
windows (``data.synthetic_frac``), the tiny tokenizer's corpus, and test data with known parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from timer1.data.csv_io import Series, future_dates
from timer1.data.dates import Step, format_dates, parse_dates


@dataclass(frozen=True)
class Components:
    """What a synthetic series is made of: level + trend*t + sines of (period, amplitude) with random
    phases + `level_shifts` steps of +-shift_size + `spikes` single-row outliers + Gaussian noise."""

    level: float = 10.0
    trend: float = 0.0
    periods: Sequence[tuple[float, float]] = ((24.0, 1.0),)
    level_shifts: int = 0
    shift_size: float = 3.0
    spikes: int = 0
    spike_size: float = 5.0
    noise: float = 0.1


def synthetic_series(length: int, seed: int, **components) -> np.ndarray:
    """A seeded (length,) series of the given `Components` (keyword fields; the rest default)."""
    if length <= 0:
        raise ValueError(f"synthetic_series: length must be positive, got {length}")
    c = Components(**components)
    level, trend, periods, noise = c.level, c.trend, c.periods, c.noise
    level_shifts, shift_size, spikes, spike_size = c.level_shifts, c.shift_size, c.spikes, c.spike_size
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
    first = parse_dates([start])
    if first is None:
        raise ValueError(f"synthetic_frame: cannot parse start date {start!r}")
    dates = format_dates(first[0][:1], step.style)
    dates += future_dates(first[0][0], step, length - 1)
    timestamps = parse_dates(dates)[0]
    values = np.stack([synthetic_series(length, seed + i, **components) for i in range(len(channels))], axis=1)
    return Series(name, list(channels), values, timestamps, step, dates)
