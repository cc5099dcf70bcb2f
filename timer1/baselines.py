"""Naive and linear forecasting baselines, and the baseline table under the paper's protocol.

Every baseline has ``forecast(history, horizon) -> (horizon,) array``; a NaN in the history is
skipped (last/mean/drift) or filled from the nearest valid values (seasonal naive, linear). The
linear model also needs ``fit(train_values, lookback, horizon)`` on the train region first.

    last            repeat the last valid value
    mean            repeat the mean of the history
    seasonal_naive  repeat the last season: y[L+h] = x[L - m + (h mod m)]; the period m is given
                    (the script takes it from the step: 24 for hourly data, 96 for 15-minute data)
                    or, if None, estimated from the history's autocorrelation (see ``estimate_period``)
    drift           the line through the first and last valid values, extended (Hyndman's drift)
    linear          DLinear-style (Zeng et al. 2023, "Are Transformers Effective for Time Series
                    Forecasting?"): split the look-back into trend (moving average, window 25) and
                    seasonal parts, map each to the horizon with its own linear layer, add them;
                    fit by least squares on every window of the train region (stride 1).

Run the table (MSE/MAE per window on the raw scale, averaged over the paper's windows):

    python -m timer1.baselines --data ../shared/data [--datasets ETTh1 nasdaq] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # before numpy loads: the (N, 193) solves here run ~20x faster on one
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # BLAS thread
        os.environ.setdefault(_var, "1")  # than with threads contending on a busy machine

import numpy as np

from timer1.atomic import write_json_atomic
from timer1.rewards import moving_average


def _history(history) -> np.ndarray:
    """Validated 1-D float history with at least one finite value (NaN allowed elsewhere)."""
    try:
        x = np.asarray(history, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"history must be numeric: {err}") from None
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"history must be a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).any():
        raise ValueError("history has no finite value")
    return x


def _horizon(horizon) -> int:
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    return int(horizon)


def fill_gaps(x: np.ndarray) -> np.ndarray:
    """NaN/inf replaced by linear interpolation between valid neighbours (ends: nearest valid value)."""
    x = _history(x)
    valid = np.isfinite(x)
    if valid.all():
        return x.copy()
    idx = np.arange(len(x))
    return np.interp(idx, idx[valid], x[valid])


class LastValue:
    name = "last"

    def forecast(self, history, horizon) -> np.ndarray:
        x, horizon = _history(history), _horizon(horizon)
        return np.full(horizon, x[np.isfinite(x)][-1])


class Mean:
    name = "mean"

    def forecast(self, history, horizon) -> np.ndarray:
        x, horizon = _history(history), _horizon(horizon)
        return np.full(horizon, x[np.isfinite(x)].mean())


class Drift:
    """y[L-1+h] = x_last + h' * slope, slope = (x_last - x_first) / (i_last - i_first) over valid points."""

    name = "drift"

    def forecast(self, history, horizon) -> np.ndarray:
        x, horizon = _history(history), _horizon(horizon)
        valid = np.flatnonzero(np.isfinite(x))
        first, last = valid[0], valid[-1]
        slope = (x[last] - x[first]) / (last - first) if last > first else 0.0
        steps_ahead = np.arange(1, horizon + 1) + (len(x) - 1 - last)  # from the last valid point
        return x[last] + slope * steps_ahead


def estimate_period(x: np.ndarray, min_period: int = 2, max_period: int | None = None,
                    min_correlation: float = 0.3) -> int:
    """The lag of the highest autocorrelation PEAK in [min_period, max_period] (default len/2), or 1.

    A lag counts only if its autocorrelation is a local peak (higher than at lag-1, not lower than
    at lag+1) and at least ``min_correlation``: a random walk, whose autocorrelation just decays,
    then gets period 1 (seasonal naive degrades to last value) instead of its smallest lag.
    """
    x = fill_gaps(x)
    max_period = max_period or len(x) // 2
    centred = x - x.mean()
    denom = float(np.dot(centred, centred))
    if denom == 0.0 or max_period < min_period:
        return 1
    lags = np.arange(0, max_period + 2)
    acf = np.array([np.dot(centred[k:], centred[:len(x) - k]) / denom if k < len(x) else 0.0 for k in lags])
    best, best_value = 1, min_correlation
    for k in range(max(min_period, 1), max_period + 1):
        if acf[k] > acf[k - 1] and acf[k] >= acf[k + 1] and acf[k] >= best_value:
            best, best_value = k, acf[k]
    if best > 1 and best + 1 < len(x):
        # this estimate divides every lag by the same n, so it shrinks with the lag and can put the
        # peak one lag early on a short history; the per-pair mean decides between k and k + 1
        per_pair = [np.dot(centred[k:], centred[:len(x) - k]) / (len(x) - k) for k in (best, best + 1)]
        best += int(per_pair[1] > per_pair[0])
    return best


def period_from_step(step_seconds: float | None) -> int | None:
    """The daily cycle in steps for sub-daily data (hourly -> 24, 15 min -> 96); None otherwise."""
    if not step_seconds or step_seconds <= 0 or step_seconds >= 86400 or 86400 % step_seconds:
        return None
    return int(86400 // step_seconds)


@dataclass
class SeasonalNaive:
    """Repeat the last full season. ``period=None``: estimate it from each history (``estimate_period``)."""

    period: int | None = None
    name = "seasonal_naive"

    def forecast(self, history, horizon) -> np.ndarray:
        x, horizon = fill_gaps(history), _horizon(horizon)
        period = self.period if self.period is not None else estimate_period(x)
        if not isinstance(period, (int, np.integer)) or period < 1:
            raise ValueError(f"seasonal period must be a positive integer, got {period!r}")
        if period > len(x):
            raise ValueError(f"seasonal period {period} is longer than the history ({len(x)} values)")
        last_season = x[len(x) - period:]  # (m,)
        return last_season[np.arange(horizon) % period]


def ridge_solve(features: np.ndarray, targets: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_W |F W - Y|^2 + lam |W|^2 with lam = ridge * mean(diag(F^T F)); F (N, P), Y (N, H) -> (P, H).

    The normal equations cost O(N P^2) once, far less than an SVD-based lstsq on (N, P) here.
    """
    gram = features.T @ features  # (P, P)
    lam = ridge * float(np.mean(np.diag(gram))) if ridge > 0 else 0.0
    return np.linalg.solve(gram + lam * np.eye(len(gram)), features.T @ targets)


@dataclass
class Linear:
    """DLinear-style linear model: y = W_s seasonal(x) + W_t trend(x) + b, one (W_s, W_t, b) per series.

    center="last" (default) subtracts the window's last value from inputs and targets and adds it
    back (as NLinear does), so a level never seen in training (the test region follows the train
    region in time) does not bias the forecast; center="none" is plain DLinear on raw values.
    Fit: least squares over all train windows with no NaN, by the normal equations with a tiny
    ridge (``ridge`` times the mean diagonal of the Gram matrix; see ``ridge_solve``). Because
    trend = A x and seasonal = (I - A) x are both linear in x, the 2L features span only L
    dimensions: the ridge picks the (near) minimum-norm split between W_s and W_t, and the forecast
    equals that of one least-squares linear map on x. The two maps mirror DLinear's parameterisation.
    """

    kernel: int = 25
    center: str = "last"
    ridge: float = 1e-6
    weights: np.ndarray | None = field(default=None, repr=False)  # (2L + 1, H)
    lookback: int = 0
    horizon: int = 0
    name = "linear"

    def __post_init__(self):
        if self.center not in ("last", "none"):
            raise ValueError(f"Linear.center must be 'last' or 'none', got {self.center!r}")

    def _features(self, windows: np.ndarray) -> np.ndarray:
        """(N, L) windows -> (N, 2L + 1) [seasonal, trend, 1]."""
        lookback = windows.shape[1]
        # the moving average is linear: column j of A is the average of the unit impulse e_j
        average = np.stack([moving_average(e, self.kernel) for e in np.eye(lookback)], axis=1)  # (L, L)
        trend = windows @ average.T  # (N, L)
        return np.hstack([windows - trend, trend, np.ones((len(windows), 1))])

    def _offset(self, windows: np.ndarray) -> np.ndarray:
        return windows[:, -1:] if self.center == "last" else np.zeros((len(windows), 1))

    def fit(self, train_values, lookback: int, horizon: int) -> "Linear":
        values = np.asarray(train_values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"train_values must be 1-D, got shape {values.shape}")
        if lookback < 1 or horizon < 1:
            raise ValueError(f"lookback and horizon must be positive, got {lookback}, {horizon}")
        if len(values) < lookback + horizon:
            raise ValueError(f"train region has {len(values)} values, fewer than lookback+horizon={lookback + horizon}")
        rows = np.lib.stride_tricks.sliding_window_view(values, lookback + horizon)  # (N, L+H)
        rows = rows[np.isfinite(rows).all(axis=1)]
        if len(rows) == 0:
            raise ValueError("train region has no window without missing values")
        inputs, targets = rows[:, :lookback], rows[:, lookback:]  # (N, L), (N, H)
        offset = self._offset(inputs)  # (N, 1)
        features = self._features(inputs - offset)  # (N, 2L+1)
        self.weights = ridge_solve(features, targets - offset, self.ridge)  # (2L+1, H)
        self.lookback, self.horizon = lookback, horizon
        return self

    def forecast(self, history, horizon) -> np.ndarray:
        if self.weights is None:
            raise ValueError("Linear baseline is not fitted: call fit(train_values, lookback, horizon) first")
        x, horizon = fill_gaps(history), _horizon(horizon)
        if len(x) != self.lookback or horizon > self.horizon:
            raise ValueError(f"Linear was fitted for lookback {self.lookback} and horizon <= {self.horizon}, "
                             f"got history of {len(x)} and horizon {horizon}")
        window = x[None, :]  # (1, L)
        offset = self._offset(window)
        return (self._features(window - offset) @ self.weights + offset)[0, :horizon]


BASELINES = {
    "last": LastValue,
    "mean": Mean,
    "seasonal_naive": SeasonalNaive,
    "drift": Drift,
    "linear": Linear,
}


def make_baseline(name: str, **kwargs):
    """A baseline by its report name (``BASELINES`` keys)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return BASELINES[name](**kwargs)


# ---------------------------------------------------------------------------------------------
# the baseline table under the paper's protocol

PAPER_DATASETS = ("ETTh1", "ETTh2", "exchange", "aqwan", "aqshunyi", "wind", "nasdaq")


def evaluate_dataset(path: Path, dataset: str, names=tuple(BASELINES)) -> dict:
    """{baseline: {"mse", "mae", "n"}} over the paper's windows of one dataset (per-window, then mean).

    The linear model is fit per channel on the train region (rows [0, train_end) of ``split_bounds``);
    seasonal naive takes its period from the step (``period_from_step``), else from each history.
    """
    from timer1.data import paper_windows, protocol_for, read_csv, split_bounds
    from timer1.metrics import mae, mse

    series = read_csv(path)
    protocol = protocol_for(dataset)
    train_end, _ = split_bounds(series, dataset)
    windows = paper_windows(series, dataset)
    period = period_from_step(series.step.seconds if series.step.kind != "index" else None)
    fitted = {}
    scores = {name: {"mse": [], "mae": []} for name in names}
    for window in windows:
        if "linear" in names and window.channel not in fitted:
            fitted[window.channel] = Linear().fit(series.column(window.channel)[:train_end],
                                                  protocol.lookback, protocol.horizon)
        models = {"last": LastValue(), "mean": Mean(), "seasonal_naive": SeasonalNaive(period),
                  "drift": Drift(), "linear": fitted.get(window.channel)}
        for name in names:
            pred = models[name].forecast(window.history, window.horizon)
            scores[name]["mse"].append(mse(pred, window.target))
            scores[name]["mae"].append(mae(pred, window.target))
    return {name: {"mse": float(np.mean(s["mse"])), "mae": float(np.mean(s["mae"])), "n": len(s["mse"])}
            for name, s in scores.items()}


def evaluate(data_dir: Path, datasets=PAPER_DATASETS, names=tuple(BASELINES)) -> dict:
    """{dataset: {baseline: {"mse", "mae", "n"}}} for ``<data_dir>/<dataset>.csv``."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINES)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir}")
    results = {}
    for dataset in datasets:
        path = data_dir / f"{dataset}.csv"
        if not path.exists():
            raise FileNotFoundError(f"dataset file not found: {path}")
        results[dataset] = evaluate_dataset(path, dataset, names)
    return results


def format_table(results: dict) -> str:
    """Markdown table: one row per dataset, MSE / MAE per baseline."""
    names = list(next(iter(results.values())))
    lines = ["| dataset | n | " + " | ".join(f"{n} MSE | {n} MAE" for n in names) + " |",
             "|---|---:|" + "---:|" * (2 * len(names))]
    for dataset, per_baseline in results.items():
        n = next(iter(per_baseline.values()))["n"]
        cells = " | ".join(f"{per_baseline[k]['mse']:.4g} | {per_baseline[k]['mae']:.4g}" for k in names)
        lines.append(f"| {dataset} | {n} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m timer1.baselines", description=(
        "MSE/MAE of the naive and linear baselines under the Time-R1 paper protocol "
        "(first 10 windows per channel of the test region, raw scale, mean over windows)."))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"),
                        help="directory holding <dataset>.csv (default ../shared/data)")
    parser.add_argument("--datasets", nargs="+", default=list(PAPER_DATASETS), metavar="NAME",
                        help=f"datasets to run (default: {' '.join(PAPER_DATASETS)})")
    parser.add_argument("--baselines", nargs="+", default=list(BASELINES), metavar="NAME",
                        help=f"baselines to run (default: {' '.join(BASELINES)})")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help='also write {"results": {dataset: {baseline: {mse, mae, n}}}} to OUT')
    args = parser.parse_args(argv)
    try:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = evaluate(args.data, args.datasets, args.baselines)
        print(format_table(results))
        print(f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
        if args.json is not None:
            write_json_atomic(args.json, {"results": results})
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
