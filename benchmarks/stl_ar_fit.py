"""Cost of fitting STL + AR (timer1.core.stl_ar, R's stlm(y, modelfunction = ar)), beside statsmodels.

100 synthetic monthly series of 200 values (level x trend x season x AR(1) noise, seeded). Rows:
our fit of the whole list in one call, our fit one series a call (what a per-series baseline
pays), and, when statsmodels is importable, the reference path of
tests/fixtures/make_stl_ar_reference.py (statsmodels' STL set as R's stl, then Yule-Walker at every
order and R's AIC) one series at a time, with the median |difference| of the 12-step point
forecasts and the share of equal AR orders. One thread. timer1.core.stl_ar imports numpy only, so
it runs in the fixture's scratch venv too:

    OMP_NUM_THREADS=1 PYTHONPATH=/work/main /tmp/smvenv/bin/python benchmarks/stl_ar_fit.py
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from fit_table import run_benchmark, timed_fits
from timer1.core.stl_ar import fit_stl_ar, stl_plan

PERIOD, HORIZON = 12, 12
FIXTURE_SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "make_stl_ar_reference.py"


def synthetic(count: int, length: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = []
    for _ in range(count):
        noise = np.zeros(length)
        phi, shocks = rng.uniform(0.2, 0.9), rng.normal(0, 2, length)
        for i in range(1, length):
            noise[i] = phi * noise[i - 1] + shocks[i]
        level = 100 + rng.uniform(-20, 20) + rng.uniform(0, 0.3) * t
        season = rng.uniform(3, 15) * np.sin(2 * np.pi * (t + rng.integers(PERIOD)) / PERIOD)
        out.append(level + season + noise)
    return out


def batched(series):
    stl_plan.cache_clear()  # the smoothers are built once per (n, m): count that once here
    return timed_fits(lambda s: fit_stl_ar(s, PERIOD), series, HORIZON, lambda f: f.order)


def one_by_one(series):
    return timed_fits(lambda s: [fit_stl_ar([y], PERIOD)[0] for y in s], series, HORIZON, lambda f: f.order)


def statsmodels_path(series):
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        return None
    sys.path.insert(0, str(FIXTURE_SCRIPT.parent))   # the script imports public_series beside it
    spec = importlib.util.spec_from_file_location("make_stl_ar_reference", FIXTURE_SCRIPT)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    start = time.perf_counter()
    means, orders = [], []
    for y in series:
        seasonal, _ = reference.stl_components(y, PERIOD)
        fit = reference.ar_yule_walker(y - seasonal)
        mean, _ = reference.ar_forecast(y - seasonal, fit, HORIZON)
        means.append(mean + seasonal[len(y) - PERIOD:][np.arange(HORIZON) % PERIOD])
        orders.append(fit["order"])
    return time.perf_counter() - start, np.stack(means), orders


def main() -> None:
    run_benchmark(__doc__.splitlines()[0], synthetic,
                  {"timer1 stl_ar, one call (1 thread)": batched, "timer1 stl_ar, a call a series": one_by_one},
                  ("statsmodels STL + yule_walker", statsmodels_path), "order", f"m={PERIOD}, h={HORIZON}")


if __name__ == "__main__":
    main()
