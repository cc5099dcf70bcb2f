"""Cost of fitting AutoARIMA (timer1.core.arima_fit) to a batch of series, beside statsforecast's.

100 synthetic monthly series of 200 values (the ones of stl_ar_fit.py: level, trend, season and
AR(1) noise, seeded); our batched search in one thread, and in two processes of one thread each
fitting half the series (two cores, the way torchrun's ranks split a long CSV), timed from the first
start to the last answer; when statsforecast is importable, its AutoARIMA one series at a time on the
same data, with the median |difference| of the 12-step point forecasts and the share of equal models
(orders and constant). timer1.core.arima_fit imports numpy only, so it runs in statsforecast's
scratch venv too (see tests/fixtures/make_arima_reference.py):

    OMP_NUM_THREADS=1 PYTHONPATH=/work/main /tmp/sfvenv/bin/python benchmarks/arima_fit.py
"""

from __future__ import annotations

from fit_table import in_processes, reference_fits, run_benchmark, timed_fits
from stl_ar_fit import synthetic
from timer1.core.arima_fit import fit_auto_arima

PERIOD, HORIZON = 12, 12


def model_of(fit) -> tuple:
    s = fit.spec
    return (s.p, s.d, s.q, s.P, s.D, s.Q, s.constant)


def fit_part(series):
    return fit_auto_arima(series, PERIOD)


def statsforecast(series):
    try:
        from statsforecast.models import AutoARIMA
    except ImportError:
        return None
    return reference_fits(lambda: AutoARIMA(season_length=PERIOD), series, HORIZON, reference_model)


def reference_model(model) -> tuple:
    p, q, P, Q, _, d, D = (int(v) for v in model.model_["arma"])
    return (p, d, q, P, D, Q, any(k in ("intercept", "drift") for k in model.model_["coef"]))


def main() -> None:
    run_benchmark(__doc__.splitlines()[0], synthetic,
                  {"timer1 arima (1 thread)": lambda s: timed_fits(fit_part, s, HORIZON, model_of),
                   "timer1 arima (2 processes of 1 thread)": lambda s: timed_fits(in_processes(fit_part, 2), s, HORIZON, model_of)},
                  ("statsforecast AutoARIMA", statsforecast), "model", f"m={PERIOD}")


if __name__ == "__main__":
    main()
