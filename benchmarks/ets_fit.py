"""Cost of fitting AutoETS (timer1.core.ets_fit) to a batch of series, beside statsforecast's.

100 synthetic monthly series of 200 values (linear trend x multiplicative season x noise, seeded);
our batched fit in one thread and, when statsforecast is importable, its AutoETS one series at a
time on the same data, with the median |difference| of the 12-step point forecasts and the share of
equal model choices. Two cores: two processes of one thread, each fitting half the series in one batch
(the way torchrun's ranks split a long CSV), timed from the first start to the last answer. No row for
two threads: a step of the filter is ten short numpy calls that hold the GIL between them, and
splitting the batch in halves measured slower than one thread.
timer1.core.ets imports numpy only, so it runs in statsforecast's scratch venv too (see
tests/fixtures/make_ets_reference.py):

    OMP_NUM_THREADS=1 PYTHONPATH=/work/main /tmp/sfvenv/bin/python benchmarks/ets_fit.py
"""

from __future__ import annotations

import numpy as np

from fit_table import in_processes, reference_fits, run_benchmark, timed_fits
from timer1.core.ets_fit import fit_auto_ets

PERIOD, HORIZON = 12, 12


def synthetic(count: int, length: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = []
    for _ in range(count):
        level = 100 + rng.uniform(-20, 20) + rng.uniform(0, 0.5) * t
        season = 1 + rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * (t + rng.integers(PERIOD)) / PERIOD)
        out.append(level * season * (1 + rng.normal(0, 0.03, length)))
    return out


def ours(series):
    return timed_fits(lambda s: fit_auto_ets(s, PERIOD), series, HORIZON, lambda f: f.name)


def fit_part(series):
    return fit_auto_ets(series, PERIOD)


def ours_in_processes(series, processes: int):
    return timed_fits(in_processes(fit_part, processes), series, HORIZON, lambda f: f.name)


def statsforecast(series):
    try:
        from statsforecast.models import AutoETS
    except ImportError:
        return None
    return reference_fits(lambda: AutoETS(season_length=PERIOD), series, HORIZON, lambda m: m.model_["method"])


def main() -> None:
    run_benchmark(__doc__.splitlines()[0], synthetic,
                  {"timer1 ets (1 thread)": ours, "timer1 ets (2 processes of 1 thread)": lambda s: ours_in_processes(s, 2)},
                  ("statsforecast AutoETS", statsforecast), "model", f"m={PERIOD}")


if __name__ == "__main__":
    main()
