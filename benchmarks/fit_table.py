"""The table the fitting benchmarks (ets_fit.py, stl_ar_fit.py) print: per way of fitting its total and
per-series seconds and, beside a reference library's fit of the same series, the median |difference|
of the point forecasts and the share of equal model choices."""

from __future__ import annotations

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
