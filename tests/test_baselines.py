"""Baselines of timer1.core.baselines on hand-made series."""


import numpy as np
import pytest

from timer1.core.baselines import (BASELINES, Drift, LastValue, Linear, Mean, SeasonalNaive, estimate_period,
                                   make_baseline, period_from_step)


def test_registry_names():
    assert list(BASELINES) == ["last", "mean", "seasonal_naive", "drift", "linear"]
    assert isinstance(make_baseline("drift"), Drift)
    assert make_baseline("seasonal_naive", period=7).period == 7
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("arima")


@pytest.mark.parametrize("model, history, horizon, expected", [
    (LastValue(), [1.0, 2.0, np.nan], 3, [2.0, 2.0, 2.0]),        # last VALID value
    (Mean(), [1.0, np.nan, 3.0], 2, [2.0, 2.0]),                   # NaN skipped: (1 + 3) / 2
    (Drift(), [2.0, 2.5, 3.0, 3.5], 3, [4.0, 4.5, 5.0]),           # a line is continued exactly
    (Drift(), [0.0, 1.0, 2.0, np.nan], 2, [4.0, 5.0]),             # slope 1 from t=0..2; t=4, 5
    (Drift(), [7.0], 2, [7.0, 7.0]),                               # one point: no slope
    (SeasonalNaive(3), [9.0, 1.0, 2.0, 3.0], 5, [1.0, 2.0, 3.0, 1.0, 2.0]),
    (SeasonalNaive(2), [1.0, np.nan, 3.0, 4.0], 2, [3.0, 4.0]),
    (SeasonalNaive(3), [0.0, np.nan, 2.0, 4.0], 3, [1.0, 2.0, 4.0]),  # gap filled by interpolation
])
def test_naive_forecasts_by_hand(model, history, horizon, expected):
    np.testing.assert_allclose(model.forecast(np.array(history), horizon), expected)


def test_seasonal_naive_is_exact_on_a_periodic_series_and_finds_its_period():
    t = np.arange(96 + 48)
    series = np.sin(2 * np.pi * t / 24) + 0.5 * np.cos(2 * np.pi * t / 8)
    history, future = series[:96], series[96:]
    np.testing.assert_allclose(SeasonalNaive(24).forecast(history, 48), future, atol=1e-12)
    assert estimate_period(history) == 24
    np.testing.assert_allclose(SeasonalNaive().forecast(history, 48), future, atol=1e-12)


def test_estimate_period_of_a_random_walk_is_one():
    walk = np.cumsum(np.random.default_rng(0).normal(size=96))
    assert estimate_period(walk) == 1                     # decaying autocorrelation has no peak
    assert estimate_period(np.full(10, 3.0)) == 1         # constant: no correlation at all


@pytest.mark.parametrize("seconds, expected", [(3600, 24), (900, 96), (86400, None), (None, None), (7, None)])
def test_period_from_step(seconds, expected):
    assert period_from_step(seconds) == expected


@pytest.mark.parametrize("name", ["last", "mean", "seasonal_naive", "drift"])
def test_naive_baselines_validate_inputs(name):
    model = make_baseline(name)
    out = model.forecast(np.array([1.0, np.nan, 3.0, 2.0, 5.0, 4.0]), 4)
    assert out.shape == (4,) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="no finite value"):
        model.forecast(np.array([np.nan, np.nan]), 2)
    with pytest.raises(ValueError, match="horizon"):
        model.forecast(np.array([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="1-D"):
        model.forecast(np.ones((2, 2)), 2)


def test_seasonal_period_longer_than_history_raises():
    with pytest.raises(ValueError, match="longer than the history"):
        SeasonalNaive(10).forecast(np.arange(5.0), 3)


def _ar_series(coefs, n, seed):
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for t in range(len(coefs), n):
        x[t] = sum(c * x[t - 1 - k] for k, c in enumerate(coefs)) + rng.normal()
    return x


def _effective_map(model, lookback):
    """The forecast's linear map on the history: column j = f(e_j) - f(0) (f is affine)."""
    base = model.forecast(np.zeros(lookback), model.horizon)
    return np.stack([model.forecast(e, model.horizon) - base for e in np.eye(lookback)], axis=1)  # (H, L)


def test_linear_recovers_an_ar2_process():
    # x_t = 0.6 x_{t-1} + 0.3 x_{t-2} + e_t. One step ahead: weights 0.6 (last), 0.3 (second last).
    # Two steps: x_{t+1} = 0.6 (0.6 x_t + 0.3 x_{t-1}) + 0.3 x_t = 0.66 x_t + 0.18 x_{t-1}.
    x = _ar_series([0.6, 0.3], 6000, seed=0)
    model = Linear(kernel=3, center="none").fit(x, lookback=6, horizon=2)
    weights = _effective_map(model, 6)
    expected = np.zeros((2, 6))
    expected[0, -1], expected[0, -2] = 0.6, 0.3
    expected[1, -1], expected[1, -2] = 0.66, 0.18
    np.testing.assert_allclose(weights, expected, atol=0.05)
    assert abs(model.forecast(np.zeros(6), 2)).max() < 0.1   # no intercept in a zero-mean process


def test_linear_centred_on_last_value_recovers_a_level_free_process_and_ignores_level():
    # x_t = 1.2 x_{t-1} - 0.2 x_{t-2} + e_t (coefficients sum to 1: a random walk with AR(1) steps).
    # Centring on the last value can express it exactly, and the forecast follows any level shift.
    x = _ar_series([1.2, -0.2], 6000, seed=1)
    model = Linear(kernel=3, center="last").fit(x, lookback=6, horizon=1)
    weights = _effective_map(model, 6)[0]
    np.testing.assert_allclose(weights, [0, 0, 0, 0, -0.2, 1.2], atol=0.05)
    history = x[-6:]
    np.testing.assert_allclose(model.forecast(history + 1000.0, 1), model.forecast(history, 1) + 1000.0)


def test_linear_skips_nan_windows_fills_nan_history_and_checks_shapes():
    x = _ar_series([0.6, 0.3], 3000, seed=2)
    x[100] = np.nan
    model = Linear().fit(x, lookback=30, horizon=4)
    assert np.isfinite(model.weights).all() and model.weights.shape == (61, 4)
    history = x[-30:].copy()
    gappy = history.copy()
    gappy[10] = np.nan
    filled = history.copy()
    filled[10] = 0.5 * (history[9] + history[11])
    np.testing.assert_allclose(model.forecast(gappy, 4), model.forecast(filled, 4))
    np.testing.assert_allclose(model.forecast(history, 2), model.forecast(history, 4)[:2])
    with pytest.raises(ValueError, match="fitted for lookback 30"):
        model.forecast(history[:20], 4)
    with pytest.raises(ValueError, match="horizon <= 4"):
        model.forecast(history, 5)
    with pytest.raises(ValueError, match="not fitted"):
        Linear().forecast(history, 4)
    with pytest.raises(ValueError, match="fewer than lookback"):
        Linear().fit(x[:10], 30, 4)
    with pytest.raises(ValueError, match="no window without missing"):
        Linear().fit(np.full(50, np.nan), 10, 2)
    with pytest.raises(ValueError, match="center"):
        Linear(center="mean")


def test_estimate_period_on_a_short_history_is_not_one_lag_early():
    # two cycles of 12: the plain autocorrelation peaks at 11 (it shrinks with the lag); the
    # per-pair refinement moves the estimate to the true 12
    t = np.arange(24)
    assert estimate_period(np.sin(2 * np.pi * t / 12)) == 12
