"""Reflection on the series' own history (timer1.forecast.reflect) and the Theta candidate: origins,
the choice, the band from the chosen candidate's backtest errors, and the product default end to end."""

import numpy as np
import pytest

from timer1 import Forecaster
from timer1.core.baselines import Theta, seasonal_indices
from timer1.core.slow_think import SlowThinkResult
from timer1.forecast.band import BandCalibration
from timer1.core.backtest import (LINEAR_LOOKBACK, candidate_periods, errors_at, linear_candidate, origins,
                                  statistical_candidates)
from timer1.forecast.reflect import (MIN_RESIDUALS, MODEL, MODEL_WEIGHT, ModelAnswers, Reflection, band_samples,
                                     conclude, model_origins, reflect)

OFF = ModelAnswers(np.zeros(6), [np.zeros(6)] * 3)   # a model that answers 0 to every 6-step question


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
    out = reflect(history, 6, None, OFF)                           # the model far off
    assert out.choice == "drift" and out.errors["drift"] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(out.point, 3.0 + 2.0 * np.arange(60, 66))
    assert set(out.errors) == {"drift", MODEL, "drift + model"}    # the best statistical one meets its blend
    assert out.errors[MODEL] == pytest.approx(np.mean(history[-18:]))   # zeros against the last 3 x 6 values
    assert out.errors["drift + model"] == pytest.approx(MODEL_WEIGHT * np.mean(history[-18:]))
    np.testing.assert_allclose(out.samples, np.tile(out.point, (len(out.samples), 1)), atol=1e-9)
    assert out.model_origins == 3


def noisy_series(n=80, seed=1):
    return 10.0 + np.random.default_rng(seed).normal(0.0, 1.0, n)


def test_a_model_right_on_its_origins_is_blended_in_at_its_weight():
    history = noisy_series()
    alone = reflect(history, 6, None, OFF)                          # what the statistical side picks
    exact = ModelAnswers(np.full(6, 99.0), [history[o:o + 6] for o in model_origins(history, 6)])
    out = reflect(history, 6, None, exact)
    best = alone.choice
    assert out.choice == f"{best} + model" and out.errors[MODEL] == 0.0
    # an exact model scales the statistical residuals by (1 - w) on the model's origins
    assert out.errors[out.choice] == pytest.approx((1 - MODEL_WEIGHT) * out.errors[best])
    np.testing.assert_allclose(out.point, (1 - MODEL_WEIGHT) * alone.point + MODEL_WEIGHT * 99.0)
    # the band is the statistical candidate's residual spread, moved to the blended point
    np.testing.assert_allclose(out.samples - out.point, alone.samples - alone.point, atol=1e-12)


def test_a_model_no_better_than_the_statistical_answer_is_left_out():
    history = noisy_series()
    alone = reflect(history, 6, None, OFF)
    best = statistical_candidates(candidate_periods(None, history, 6))[alone.choice]
    same = [best.forecast(history[:o], 6) for o in model_origins(history, 6)]   # the very same answers
    out = reflect(history, 6, None, ModelAnswers(np.full(6, 99.0), same))
    assert out.choice == alone.choice and out.errors[MODEL] == pytest.approx(out.errors[alone.choice])
    np.testing.assert_allclose(out.point, alone.point)


def test_model_origins_before_the_statistical_ones_are_left_out():
    # 80 monthly values, horizon 24: the model was asked at 56, 32 and 8, but seasonal naive (period 12)
    # cannot answer at 8 and the earliest statistical origin is 12
    history = 10 + np.sin(2 * np.pi * np.arange(80) / 12)
    answers = ModelAnswers(np.zeros(24), [history[o:o + 24] for o in (56, 32)] + [np.zeros(24)])
    out = reflect(history, 24, 12, answers)
    assert out.model_origins == 2 and out.errors[MODEL] == 0.0      # the two it could be compared on


def test_the_band_is_split_conformal_on_absolute_errors_pooled_over_neighbour_steps():
    residuals = np.arange(1.0, 21.0)[:, None] * np.ones((1, 3))   # 20 origins, errors 1..20 at each of 3 steps
    samples = band_samples(np.array([10.0, 20.0, 30.0]), residuals)
    # 20 origins pool one step either side: steps 0 and 2 see 40 scores (1..20 twice), step 1 sees 60.
    # The 80% band's half-width is the ceil((n + 1) 0.8)-th smallest score: the 33rd of 40 and the 49th
    # of 60, both 17; the point is the middle.
    np.testing.assert_allclose(np.quantile(samples, 0.1, axis=0), [10 - 17, 20 - 17, 30 - 17])
    np.testing.assert_allclose(np.quantile(samples, 0.9, axis=0), [10 + 17, 20 + 17, 30 + 17])
    np.testing.assert_allclose(np.quantile(samples, 0.5, axis=0), [10, 20, 30])
    assert band_samples(np.zeros(2), np.ones((MIN_RESIDUALS // 2 - 1, 2))) is None   # too few residuals


def test_without_enough_residuals_the_drafts_band_moves_to_the_chosen_point():
    drafts = np.array([[1.0, 1.0], [3.0, 3.0]])
    result = SlowThinkResult(np.array([2.0, 2.0]), {}, drafts, [], [], 2, 0, 1)
    doubled = BandCalibration((0.8,), (2.0,))
    out = conclude(result, Reflection("drift", np.array([10.0, 11.0]), None, {"drift": 0.5}, 2, 0), doubled)
    for q, offset in ((0.0, -2.0), (0.1, -1.6), (0.5, 0.0), (0.9, 1.6), (1.0, 2.0)):  # drafts' q-quantile 1 + 2q
        np.testing.assert_allclose(np.quantile(out.samples, q, axis=0), [10 + offset, 11 + offset])
    assert out.source == "drift" and out.answer == "reflection: drift" and out.backtest_mae == {"drift": 0.5}
    assert out.band == "drafts"


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
    out = forecaster.predict(ramp, 12, seed=0)                     # the default: on the exact continuations
    assert out.source[0].startswith("softmax: ") and {part.rsplit(" ", 1)[0] for part in
                                                      out.source[0].removeprefix("softmax: ").split(" + ")} == {"drift", "linear", "ets", "arima"}
    np.testing.assert_allclose(out.point[0], 50.0 + 0.5 * np.arange(150, 162), rtol=1e-9)
    rule = forecaster.predict(ramp, 12, seed=0, mode="rule")       # reflection
    assert rule.source == ["drift"] and rule.results[0].answer == "reflection: drift"
    np.testing.assert_allclose(rule.point[0], 50.0 + 0.5 * np.arange(150, 162), rtol=1e-12)
    slow = forecaster.predict(ramp, 12, seed=0, mode="slow")       # the model alone is left as it was
    assert slow.results[0].answer in ("median", "greedy")


def test_a_long_history_brings_in_the_linear_candidate_fitted_on_the_past_only():
    """A sine of period 17.5 obeys x_t = 2 cos(w) x_{t-1} - x_{t-2}: the linear model, fitted on the
    values before the earliest origin, continues it exactly, where no whole-period repeat can."""
    t = np.arange(300)
    history = 10 + np.sin(2 * np.pi * t / 17.5)
    out = reflect(history, 6, None, OFF)
    assert out.choice == "linear" and out.errors["linear"] < 1e-6
    np.testing.assert_allclose(out.point, 10 + np.sin(2 * np.pi * np.arange(300, 306) / 17.5), atol=1e-6)
    assert set(out.errors) == {"linear", MODEL, "linear + model"}


def test_the_linear_candidate_reads_the_past_only_with_a_lookback_it_can_fit():
    history = np.sin(np.arange(5000) / 7.0)
    assert linear_candidate(history, 96, 4000).fitted.lookback == LINEAR_LOOKBACK
    assert linear_candidate(history, 20, 400).fitted.lookback == (400 - 20 + 1) // 5   # 4 windows per input
    assert linear_candidate(history, 10, 45) is None                                  # a look-back under 8
    changed = history.copy()
    changed[400:] = 1e6                                            # what follows the earliest origin is never read
    a, b = linear_candidate(history, 20, 400), linear_candidate(changed, 20, 400)
    np.testing.assert_array_equal(a.fitted.weights, b.fitted.weights)
    np.testing.assert_allclose(errors_at(a, history, [400], 20), 0.0, atol=1e-6)   # a sine continued exactly



def test_a_model_that_fell_back_is_not_blended_or_credited():
    """When every draft failed the critic the model's "answer" is the fallback: however well it would
    have backtested, it is not blended in and the source does not say "model" (issue 38, item 4)."""
    history = noisy_series()
    right = [history[o:o + 6] for o in model_origins(history, 6)]
    fell_back = reflect(history, 6, None, ModelAnswers(np.full(6, 99.0), right, fell_back=True))
    assert fell_back.choice == reflect(history, 6, None, OFF).choice and "model" not in fell_back.choice
    assert MODEL not in fell_back.errors and fell_back.model_origins == 0
    short = reflect(np.arange(6.0), 6, None, ModelAnswers(np.zeros(6), [], fell_back=True))   # no origin at all
    assert short.choice == MODEL     # the fallback answers; conclude() keeps the fallback's own source
