"""Calibrate a model's forecast band on held-out windows.

    python -m timer1.forecast.calibrate checkpoints/timer1-tiny [--windows 64] [--level 0.8]

Slow thinking's band is the spread of its drafts. A small model's drafts are too alike, so their
10-90% band covers far fewer outcomes than 80% (README has timer1-tiny's numbers). Conformal
calibration (Angelopoulos & Bates 2021, "A gentle introduction to conformal prediction", split
conformal with a scaled band) fixes the band's width without touching the point forecast: each
quantile is moved away from the median by one factor ``c``,

    q' = median + c * (q - median),

with ``c`` the smallest factor that puts a share ``level`` of held-out outcomes inside [q0.1', q0.9']
(pooled over windows and steps). The windows come from the datasets' validation regions, never the
test region. ``c`` is written to ``MODEL/timer1_calibration.json``; the forecaster applies it (timer1.forecast.band).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from timer1.forecast.band import CALIBRATION_FILE


def needed_scale(median: np.ndarray, low: np.ndarray, high: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per point, the smallest ``c`` with ``median + c (low - median) <= outcome <= median + c (high - median)``:
    ``(y - m) / (high - m)`` above the median, ``(m - y) / (m - low)`` below (inf when that side of the
    band is empty and the outcome is off the median, 0 on the median). All arrays of one shape."""
    above = outcome >= median
    gap = np.where(above, outcome - median, median - outcome)  # >= 0
    width = np.where(above, high - median, median - low)  # >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap == 0, 0.0, np.where(width > 0, gap / width, np.inf))


def band_scale(medians, lows, highs, outcomes, level: float = 0.8) -> float:
    """The factor that makes the widened band [low', high'] cover ``level`` of the outcomes, pooled over
    every window and step (lists of (H,) arrays, windows of any horizon)."""
    if not 0 < level < 1:
        raise ValueError(f"coverage level must be in (0, 1), got {level}")
    needed = np.concatenate([needed_scale(*map(np.asarray, parts)).ravel()
                             for parts in zip(medians, lows, highs, outcomes)])
    if needed.size == 0:
        raise ValueError("no held-out outcome to calibrate on")
    scale = float(np.quantile(needed, level, method="higher"))
    if not np.isfinite(scale):
        raise ValueError(f"more than {1 - level:.0%} of the outcomes fall off a band with no width "
                         "(too few drafts kept): no scale can make it cover them")
    return scale


# ----------------------------------------------------------------------------------------------
# The command: calibrate a model on the validation regions of the paper's datasets

DATASETS = ("ETTh1", "ETTh2", "exchange", "aqwan", "aqshunyi", "wind", "nasdaq")


def validation_windows(data_dir: str, n_windows: int) -> list:
    """About ``n_windows`` windows spread evenly over the validation regions of the seven datasets, each
    dataset in its protocol's look-back and horizon (nasdaq 36 -> 36, the others 96 -> 96)."""
    from timer1.data.csv_io import read_csv
    from timer1.data.protocol import evenly_spaced, protocol_for
    from timer1.data.protocol import validation_windows as region

    per_dataset = max(1, n_windows // len(DATASETS))
    windows = []
    for name in DATASETS:
        protocol = protocol_for(name)
        series = read_csv(Path(data_dir) / f"{name}.csv")
        windows += evenly_spaced(region(series, protocol.lookback, protocol.horizon, protocol.horizon,
                                        dataset=name, round_inputs=protocol.round_inputs), per_dataset)
    return windows


def calibrate(forecaster, windows: list, level: float = 0.8, seed: int = 0) -> tuple[float, float]:
    from timer1.forecast.forecaster import WindowHints

    """(band scale, coverage of the drafts' own band) of ``forecaster`` (its slow thinking, band scale 1)."""
    medians, lows, highs, targets = [], [], [], []
    for horizon in sorted({w.horizon for w in windows}):  # one forecasting call per horizon
        group = [(i, w) for i, w in enumerate(windows) if w.horizon == horizon]
        forecast = forecaster.forecast_windows([w for _, w in group], mode="slow", quantiles=(0.1, 0.9),
                                               hints=WindowHints(seeds=[seed + 1000 * i for i, _ in group]))
        medians += list(forecast.point)
        lows += list(forecast.quantiles[0.1])
        highs += list(forecast.quantiles[0.9])
        targets += [w.target for _, w in group]
    covered = np.concatenate([(y >= lo) & (y <= hi) for y, lo, hi in zip(targets, lows, highs)])
    return band_scale(medians, lows, highs, targets, level), float(covered.mean())


def main(argv=None) -> int:
    import argparse
    import dataclasses
    import sys

    from timer1.forecast.forecaster import Forecaster
    from timer1.forecast.resolve import resolve_model
    from timer1.util.atomic import write_json_atomic
    from timer1.util.cli import show_warnings_as_lines

    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m timer1.forecast.calibrate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model directory, training run or name (as forecast.py --model)")
    parser.add_argument("--adapter", default=None, help="a LoRA adapter (the calibration is written beside it)")
    parser.add_argument("--windows", type=int, default=64, help="validation windows (default 64)")
    parser.add_argument("--level", type=float, default=0.8, help="coverage of the 10-90%% band (default 0.8)")
    parser.add_argument("--data", default="../shared/data", help="folder with the dataset CSVs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    show_warnings_as_lines()
    try:
        model_dir, adapter_dir = resolve_model(args.model, args.adapter)
        forecaster = Forecaster.from_pretrained(model_dir, adapter_dir)
        forecaster.facts = dataclasses.replace(forecaster.facts, band_scale=1.0)  # the drafts' own spread
        windows = validation_windows(args.data, args.windows)
        scale, raw = calibrate(forecaster, windows, args.level, args.seed)
    except (OSError, ValueError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    target = adapter_dir or model_dir
    write_json_atomic(target / CALIBRATION_FILE, {
        "band_scale": scale, "level": args.level, "raw_coverage": raw, "windows": len(windows),
        "samples": forecaster.config.samples, "temperature": forecaster.config.temperature,
        "note": "validation regions of the paper's seven datasets; python -m timer1.forecast.calibrate"})
    print(f"{len(windows)} validation windows: the drafts' 10-90% band covered {raw:.1%} of outcomes; "
          f"band scale {scale:.3f} covers {args.level:.0%}; wrote {target / CALIBRATION_FILE}")
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
