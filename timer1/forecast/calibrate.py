"""Calibrate a model's forecast band on held-out windows, level by level.

    python -m timer1.forecast.calibrate timer1/checkpoints/timer1-tiny [--windows 64]

Slow thinking's band is the spread of its drafts. A small model's drafts are too alike, so their
10-90% band covers far fewer outcomes than 80% (README has timer1-tiny's numbers). Conformal
calibration (Angelopoulos & Bates 2021, "A gentle introduction to conformal prediction", split
conformal with a scaled band) fixes the band's width without touching the point forecast: for each
central coverage c in COVERAGES, the drafts' c-band [q_(1-c)/2, q_(1+c)/2] is moved away from the
median by one factor ``s_c``,

    q' = median + s_c * (q - median),

with ``s_c`` the smallest factor that puts a share c of held-out outcomes inside it (pooled over
windows and steps). Levels between take interpolated factors (timer1.forecast.band), so a 5-95% band
is calibrated for 90% and a 10-90% band for 80%. The windows come from the datasets' validation
regions, never the test region. The factors are written to ``MODEL/timer1_calibration.json``; the
forecaster applies them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from timer1.forecast.band import CALIBRATION_FILE, BandCalibration


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


COVERAGES = (0.5, 0.8, 0.9, 0.95)  # the central bands calibrated: 25-75%, 10-90%, 5-95%, 2.5-97.5%


def edges(coverage: float) -> tuple[float, float]:
    """The quantile levels bounding the central band of ``coverage``."""
    return round((1 - coverage) / 2, 6), round((1 + coverage) / 2, 6)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per coverage in COVERAGES: the factor that makes the band cover it, and what the drafts' own
    band covered, on the ``windows`` that had a band."""

    scales: dict[float, float]
    raw_coverage: dict[float, float]
    windows: int


def calibrate(forecaster, windows: list, seed: int = 0) -> Calibration:
    """The band factors of ``forecaster`` (its slow thinking, uncalibrated) on ``windows`` (all of one
    horizon share a call; those whose drafts agree, no band, are left out)."""
    from timer1.forecast.forecaster import WindowHints

    levels = sorted({q for c in COVERAGES for q in edges(c)})
    points, bands, targets = [], {q: [] for q in levels}, []
    for horizon in sorted({w.horizon for w in windows}):  # one forecasting call per horizon
        group = [(i, w) for i, w in enumerate(windows) if w.horizon == horizon]
        forecast = forecaster.forecast_windows([w for _, w in group], mode="slow", quantiles=levels,
                                               hints=WindowHints(seeds=[seed + 1000 * i for i, _ in group]))
        points += list(forecast.point)
        for q in levels:
            bands[q] += list(forecast.quantiles[q])
        targets += [w.target for _, w in group]
    widest = edges(max(COVERAGES))
    banded = [i for i, (lo, hi) in enumerate(zip(bands[widest[0]], bands[widest[1]])) if (hi > lo).any()]
    if not banded:
        raise ValueError("no window kept two different drafts: there is no band to calibrate")
    scales, raw = {}, {}
    for c in COVERAGES:   # windows without a band (one draft kept, a fallback) get none in a forecast either
        low, high = ([bands[q][i] for i in banded] for q in edges(c))   # lists of (H,): horizons differ
        kept_points, kept_targets = [points[i] for i in banded], [targets[i] for i in banded]
        scales[c] = band_scale(kept_points, low, high, kept_targets, c)
        raw[c] = float(np.mean(np.concatenate([(y >= lo) & (y <= hi) for y, lo, hi in zip(kept_targets, low, high)])))
    return Calibration(scales, raw, len(banded))


def main(argv=None) -> int:
    import argparse
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
    parser.add_argument("--data", default="../shared/data", help="folder with the dataset CSVs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    show_warnings_as_lines()
    try:
        model_dir, adapter_dir = resolve_model(args.model, args.adapter)
        forecaster = Forecaster.from_pretrained(model_dir, adapter_dir)
        forecaster.facts = dataclasses.replace(forecaster.facts, calibration=BandCalibration())  # drafts' own spread
        windows = validation_windows(args.data, args.windows)
        found = calibrate(forecaster, windows, args.seed)
    except (OSError, ValueError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    target = adapter_dir or model_dir
    write_json_atomic(target / CALIBRATION_FILE, {
        "band_scales": {f"{c:g}": s for c, s in found.scales.items()},
        "raw_coverage": {f"{c:g}": r for c, r in found.raw_coverage.items()}, "windows": len(windows), "windows_with_a_band": found.windows,
        "samples": forecaster.config.samples, "temperature": forecaster.config.temperature,
        "note": "central coverage -> band factor, on the validation regions of the paper's seven datasets; "
                "python -m timer1.forecast.calibrate"})
    print(f"{len(windows)} validation windows, {found.windows} with a band; wrote {target / CALIBRATION_FILE}")
    for c in COVERAGES:
        low, high = edges(c)
        print(f"  {low:g}-{high:g} band: the drafts' own covered {found.raw_coverage[c]:.1%}, "
              f"x {found.scales[c]:.3f} covers {c:.0%}")
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
