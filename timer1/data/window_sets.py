"""The window sets a run draws from: training windows (train regions, several shapes, a share of
synthetic series), validation windows (validation regions, never the test region), a user's own
files split by time, and the evaluation windows of the paper's protocol or rolling origins."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from timer1.core.window import Window
from timer1.data.csv_io import read_csv
from timer1.data.protocol import (evenly_spaced, paper_windows, protocol_for, region_windows, rolling_windows,
                                  train_windows, validation_windows)
from timer1.data.synthetic import synthetic_frame


@dataclass(frozen=True)
class WindowSpec:
    """Which windows a training run draws: CSV stems under ``data_dir`` (train or validation region
    only, never the test region), plus a fraction of seeded synthetic series."""

    data_dir: str
    datasets: tuple[str, ...]
    lookback: int
    horizon: int
    stride: int
    channels: tuple[str, ...] = ()
    max_windows: int = 0
    synthetic_frac: float = 0.0
    shapes: tuple[tuple[int, int], ...] = ()  # more (lookback, horizon) shapes for training windows
    files: tuple[str, ...] = ()               # the user's own CSV paths (split by time: FILE_VALIDATION_SHARE)

    @property
    def train_shapes(self) -> tuple[tuple[int, int], ...]:
        return ((self.lookback, self.horizon), *self.shapes)


def parse_shape(text: str) -> tuple[int, int]:
    """``"96x24"`` -> (96, 24); ValueError naming the text otherwise."""
    try:
        lookback, horizon = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"bad window shape {text!r}: write LOOKBACKxHORIZON, e.g. 96x24") from None
    if lookback < 2 or horizon < 1:
        raise ValueError(f"bad window shape {text!r}: need a look-back >= 2 and a horizon >= 1")
    return lookback, horizon


def window_spec_from(data) -> WindowSpec:
    """The WindowSpec a run's ``DataConfig`` (timer1.train.config) asks for."""
    return WindowSpec(data.data_dir, tuple(data.datasets), data.lookback, data.horizon, data.stride,
                      tuple(data.channels), data.max_windows, data.synthetic_frac,
                      tuple(parse_shape(s) for s in data.shapes), tuple(data.files))


FILE_VALIDATION_SHARE = 0.2   # of a user file's rows, the last part: held out for validation


def file_windows(spec: WindowSpec, region: str) -> list[Window]:
    """Windows from the user's own CSV files, split by time: training windows lie wholly in the first
    1 - FILE_VALIDATION_SHARE of the rows, validation windows forecast the last part from the
    look-back before it (as the paper's test windows do)."""
    out: list[Window] = []
    for file in spec.files:
        series = read_csv(file)
        name = Path(file).stem
        split = len(series) - int(len(series) * FILE_VALIDATION_SHARE)
        if split < spec.lookback + spec.horizon or len(series) - split < spec.horizon:
            raise ValueError(f"{file}: {len(series)} rows are too few to train and validate on windows of "
                             f"{spec.lookback} + {spec.horizon} (the last {FILE_VALIDATION_SHARE:.0%} is held out); "
                             f"pass a smaller --data.lookback / --data.horizon")
        channels = [c for c in spec.channels if c in series.channels] or None
        if region == "train":
            for lookback, horizon in spec.train_shapes:
                out += region_windows(series, (0, split), lookback, horizon, spec.stride, channels, name)
        else:
            out += region_windows(series, (split - spec.lookback, len(series)), spec.lookback, spec.horizon,
                                  spec.stride, channels, name)
    return out


def load_windows(spec: WindowSpec, region: str = "train", seed: int = 0) -> list[Window]:
    """Training (``region="train"``) or held-out validation (``"val"``) windows for a run.

    Validation windows come in the main shape only, so scores stay comparable. ``max_windows`` caps
    the real windows (a seeded random subset); synthetic windows then make up ``synthetic_frac``. A
    channel that no dataset has is an error (a typo would otherwise train on everything).
    """
    if region not in ("train", "val"):
        raise ValueError(f"region must be train or val, got {region!r}")
    windows: list[Window] = []
    datasets = [(name, read_csv(Path(spec.data_dir) / f"{name}.csv")) for name in spec.datasets]
    _check_channels(spec, datasets)
    for name, series in datasets:
        channels = [c for c in spec.channels if c in series.channels] or None
        rounding = protocol_for(name).round_inputs
        if region == "train":
            for lookback, horizon in spec.train_shapes:
                windows += train_windows(series, lookback, horizon, spec.stride, channels=channels,
                                         dataset=name, round_inputs=rounding)
        else:
            windows += validation_windows(series, spec.lookback, spec.horizon, spec.stride, channels=channels,
                                          dataset=name, round_inputs=rounding)
    windows += file_windows(spec, region)
    rng = np.random.default_rng(seed + (0 if region == "train" else 1))
    if spec.max_windows and len(windows) > spec.max_windows:
        keep = np.sort(rng.choice(len(windows), size=spec.max_windows, replace=False))
        windows = [windows[i] for i in keep]
    shapes = spec.train_shapes if region == "train" else spec.train_shapes[:1]
    windows += _synthetic_windows(spec, shapes, len(windows), seed + (0 if region == "train" else 10_000))
    if not windows:
        raise ValueError(f"no usable {region} windows (lookback {spec.lookback}, horizon {spec.horizon}) "
                         f"in {', '.join(spec.datasets) or 'no datasets'}")
    return windows


def _check_channels(spec: WindowSpec, datasets: list) -> None:
    """ValueError naming the first asked channel that none of the (name, Series) datasets has."""
    present = {channel for _, series in datasets for channel in series.channels}
    missing = [c for c in spec.channels if c not in present]
    if datasets and missing:
        raise ValueError(f"no dataset has channel {missing[0]!r} (datasets {', '.join(spec.datasets)} "
                         f"have {', '.join(sorted(present))})")


def _synthetic_windows(spec: WindowSpec, shapes, n_real: int, seed: int) -> list[Window]:
    """Enough synthetic windows that they are ``synthetic_frac`` of the total, each of a random shape:
    level, trend, one or two cycles with random harmonics (so cycles are not all sines), level
    shifts, spikes and noise, each drawn at random."""
    frac = spec.synthetic_frac
    if frac <= 0:
        return []
    wanted = max(1, round(n_real * frac / (1 - frac))) if frac < 1 else max(1, spec.max_windows or 64)
    rng = np.random.default_rng(seed)
    out: list[Window] = []
    while len(out) < wanted:
        lookback, horizon = shapes[int(rng.integers(len(shapes)))]
        cycles = []
        for period in rng.choice([4, 7, 12, 24, 48, 96, 168], size=int(rng.integers(1, 3)), replace=False):
            amplitude = float(rng.uniform(0.5, 10))
            cycles.append((float(period), amplitude))
            cycles += [(period / h, amplitude * float(rng.uniform(0, 0.5))) for h in (2, 3) if period / h >= 2]
        series = synthetic_frame(
            int((lookback + horizon) / 0.7) + 1, seed + len(out), name="synthetic",
            level=float(rng.uniform(-50, 200)), trend=float(rng.normal(0, 0.05)),
            periods=tuple(cycles), level_shifts=int(rng.integers(0, 3)),
            spikes=int(rng.integers(0, 3)), noise=float(rng.uniform(0.05, 1.0)))
        out += train_windows(series, lookback, horizon, spec.stride, dataset="synthetic")[:1]
    return out[:wanted]


def evaluation_windows(series, dataset: str, protocol: str = "paper", *, lookback: int | None = None,
                       horizon: int | None = None, stride: int | None = None,
                       limit: int = 0) -> tuple[list[Window], int, int]:
    """The test windows evaluate.py scores, and their look-back and horizon: the paper's or a rolling
    origin over the test region; ``limit`` keeps that many spread evenly over all of them."""
    spec = protocol_for(dataset)
    if protocol == "paper":
        windows, lookback, horizon = paper_windows(series, dataset), spec.lookback, spec.horizon
    else:
        lookback, horizon = lookback or spec.lookback, horizon or spec.horizon
        windows = rolling_windows(series, lookback, horizon, stride or horizon, dataset=dataset,
                                  round_inputs=spec.round_inputs)
    return (evenly_spaced(windows, limit) if limit else windows), lookback, horizon
