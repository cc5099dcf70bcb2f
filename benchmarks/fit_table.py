"""The table the fitting benchmarks (ets_fit.py, arima_fit.py, stl_ar_fit.py) print: per way of fitting its
total and per-series seconds and, beside a reference library's fit of the same series, the median
|difference| of the point forecasts and the share of equal model choices; and the command line they share."""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def timed_fits(fit, series: list, horizon: int, choice) -> tuple[float, np.ndarray, list]:
    """(seconds of ``fit(series)``, point forecasts (N, H), ``choice(model)`` per fitted model): one
    row of the table below."""
    start = time.perf_counter()
    models = fit(series)
    seconds = time.perf_counter() - start
    return seconds, np.stack([m.forecast(horizon) for m in models]), [choice(m) for m in models]


def in_processes(fit_batch, processes: int):
    """A fit of a list of series that splits it in ``processes`` contiguous parts, each fitted by
    ``fit_batch`` (a module-level function: it is pickled) in a process of its own, the way torchrun's
    ranks split a long CSV."""
    def fit(all_series):
        parts = np.array_split(np.arange(len(all_series)), processes)
        with ProcessPoolExecutor(processes) as pool:
            fitted = pool.map(fit_batch, [[all_series[i] for i in part] for part in parts])
            return [model for part in fitted for model in part]
    return fit


def print_fit_table(rows: list[tuple], reference: tuple | None, choice: str) -> None:
    """``rows``: (label, seconds, point forecasts (N, H), choices) per way; ``reference`` the same tuple
    of the reference (None when its library is not importable), ``choice`` what a choice is called."""
    width = max(len(row[0]) for row in rows) + 2
    print(f"{'fit':{width}s} {'total s':>8s} {'ms/series':>10s} {'median |diff|':>14s} {'same ' + choice:>11s}")
    for label, seconds, means, choices in rows:
        diff = same = ""
        if reference is not None:
            diff = f"{np.median(np.abs(means - reference[2])):.3g}"
            same = f"{np.mean([a == b for a, b in zip(choices, reference[3])]):.0%}"
        print(f"{label:{width}s} {seconds:8.3f} {1000 * seconds / len(means):10.3f} {diff:>14s} {same:>11s}")


def reference_fits(make_model, series: list, horizon: int, choice) -> tuple[float, np.ndarray, list]:
    """A reference library's row: ``make_model().fit(y)`` one series at a time (statsforecast's models),
    its ``predict(h)["mean"]``, and ``choice(model)``."""
    start = time.perf_counter()
    models = [make_model().fit(y) for y in series]
    seconds = time.perf_counter() - start
    return seconds, np.stack([m.predict(h=horizon)["mean"] for m in models]), [choice(m) for m in models]


def run_benchmark(description: str, synthetic, ways: dict, reference, choice: str, setting: str) -> None:
    """Parse --count and --length, make the synthetic series, time every way (label -> fit(series) ->
    a row) and the reference ((label, fit(series) -> a row) or None when its library is missing, then
    the fit returns None), and print the table under a line naming the setting."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--length", type=int, default=200)
    args = parser.parse_args()
    series = synthetic(args.count, args.length)
    rows = [(label, *fit(series)) for label, fit in ways.items()]
    made = None if reference is None else reference[1](series)
    ref = None if made is None else (reference[0], *made)
    print(f"{args.count} series x {args.length} values, {setting}")
    print_fit_table(rows + ([ref] if ref else []), ref, choice)
