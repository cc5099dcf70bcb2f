"""Reflection on the series' own history (timer1.forecast.reflect) and the Theta candidate: origins,
the choice, the band from the chosen candidate's backtest errors, and the product default end to end."""

import numpy as np
import pytest

from timer1 import Forecaster
from timer1.core.baselines import Theta, seasonal_indices
from timer1.core.slow_think import SlowThinkResult
from timer1.forecast.reflect import (GREEDY, MIN_RESIDUALS, MODEL, ModelAnswers, Reflection, band_samples,
                                     candidate_periods, conclude, model_origins, origins, reflect)


def test_origins_are_the_latest_first_with_the_target_inside_and_enough_before():
    assert origins(30, 5, 4, 3) == [25, 22, 19, 16]              # n - H, then every stride
    assert origins(20, 5, 10, 5, min_fit=8) == [15, 10]            # none with fewer than 8 values before it
    assert origins(10, 5, 4, 1) == []                              # 5 before the only origin: too few
    assert model_origins(np.zeros(40), 8) == [32, 24, 16]          # a horizon apart, MODEL_ORIGINS of them


def test_candidate_periods_follow_the_dates_and_fit_two_cycles():
    assert candidate_periods(24, np.zeros(500), 24) == [24, 168]   # hourly: the day and the week
    assert candidate_periods(52, np.zeros(120), 24) == []           # two years do not fit before the origin
    assert candidate_periods(12, np.zeros(60), 12) == [12]


def test_a_ramp_chooses_drift_with_no_error_and_a_zero_width_band():
    history = 3.0 + 2.0 * np.arange(60)                            # 3, 5, 7, ...
    off = ModelAnswers({MODEL: np.zeros(6), GREEDY: np.zeros(6)}, {MODEL: [np.zeros(6)] * 3, GREEDY: [np.zeros(6)] * 3})
    out = reflect(history, 6, None, off, lookback=24)           # a model that answers 0: far off
    assert out.choice == "drift" and out.errors["drift"] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(out.point, 3.0 + 2.0 * np.arange(60, 66))
    assert set(out.errors) == {"drift", MODEL, GREEDY}             # the best statistical one meets the model's two
    assert out.errors[MODEL] == pytest.approx(np.mean(history[-18:]))   # zeros against the last 3 x 6 values
    np.testing.assert_allclose(out.samples, np.tile(out.point, (len(out.samples), 1)), atol=1e-9)
    assert out.model_origins == 3


def test_a_model_that_was_right_on_its_origins_is_kept_on_a_tie():
    history = 3.0 + 2.0 * np.arange(60)
    then = [history[o:o + 6] for o in model_origins(history, 6)]   # exact at every origin, as drift is
    answers = ModelAnswers({MODEL: np.full(6, 99.0), GREEDY: np.zeros(6)}, {MODEL: then, GREEDY: [np.zeros(6)] * 3})
    out = reflect(history, 6, None, answers, lookback=24)
    assert out.choice == MODEL and out.errors[MODEL] == 0.0 and out.point[0] == 99.0 and out.errors[GREEDY] > 0


def test_band_quantiles_are_the_residuals_quantiles_pooled_over_neighbour_steps():
    residuals = np.arange(1.0, 21.0)[:, None] * np.ones((1, 3))   # 20 origins, 3 steps, the same at each step
    samples = band_samples(np.array([10.0, 20.0, 30.0]), residuals)
    for h, point in enumerate((10.0, 20.0, 30.0)):
        np.testing.assert_allclose(np.quantile(samples[:, h], [0.1, 0.9]), point + np.quantile(np.arange(1.0, 21.0), [0.1, 0.9]),
                                   rtol=0.02)
    assert band_samples(np.zeros(2), np.ones((MIN_RESIDUALS // 2 - 1, 2))) is None   # too few residuals


def test_without_enough_residuals_the_drafts_band_moves_to_the_chosen_point():
    drafts = np.array([[1.0, 1.0], [3.0, 3.0]])
    result = SlowThinkResult(np.array([2.0, 2.0]), {}, drafts, [], [], 2, 0, 1)
    out = conclude(result, Reflection("drift", np.array([10.0, 11.0]), None, {"drift": 0.5}, 2, 0), band_scale=2.0)
    np.testing.assert_allclose(out.samples, [[8.0, 9.0], [12.0, 13.0]])   # spread doubled around the new point
    assert out.source == "drift" and out.answer == "reflection: drift" and out.backtest_mae == {"drift": 0.5}


def test_theta_is_ses_plus_half_the_trend_by_hand():
    # a straight line: alpha 1 keeps the last value, the drift is half the slope a step (Hyndman & Billah 2003)
    np.testing.assert_allclose(Theta().forecast(np.arange(1.0, 7.0), 3), [6.5, 7.0, 7.5])


def test_seasonal_indices_recover_a_multiplicative_pattern():
    pattern = np.array([0.5, 1.0, 1.5, 1.0])
    x = 10.0 * np.tile(pattern, 12)
    np.testing.assert_allclose(seasonal_indices(x, 4), pattern, rtol=1e-12)
    assert seasonal_indices(-x, 4) is None and seasonal_indices(x[:6], 4) is None


def test_the_default_forecast_of_a_ramp_is_the_ramp_continued():
    forecaster = Forecaster.from_pretrained("timer1-tiny", threads=1)
    ramp = 50.0 + 0.5 * np.arange(150)
    out = forecaster.predict(ramp, 12, seed=0)                     # the default: reflection
    assert out.source == ["drift"] and out.results[0].answer == "reflection: drift"
    np.testing.assert_allclose(out.point[0], 50.0 + 0.5 * np.arange(150, 162), rtol=1e-12)
    slow = forecaster.predict(ramp, 12, seed=0, mode="slow")       # the model alone is left as it was
    assert slow.results[0].answer in ("median", "greedy")


def test_a_long_history_brings_in_the_linear_candidate_fitted_on_the_past_only():
    """A sine of period 17.5 obeys x_t = 2 cos(w) x_{t-1} - x_{t-2}: the linear model, fitted on the
    values before each origin, continues it exactly, where no whole-period repeat can."""
    t = np.arange(300)
    history = 10 + np.sin(2 * np.pi * t / 17.5)
    off = ModelAnswers({MODEL: np.zeros(6), GREEDY: np.zeros(6)}, {MODEL: [np.zeros(6)] * 3, GREEDY: [np.zeros(6)] * 3})
    out = reflect(history, 6, None, off, lookback=24)
    assert out.choice == "linear" and out.errors["linear"] < 1e-6
    np.testing.assert_allclose(out.point, 10 + np.sin(2 * np.pi * np.arange(300, 306) / 17.5), atol=1e-6)
    assert set(out.errors) == {"linear", MODEL, GREEDY}
