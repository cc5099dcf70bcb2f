"""STL + AR (timer1.core.stl_ar): Levinson-Durbin and the AR recursions by hand, the loess
smoothers on lines and constants, parity with statsmodels set up as R's stlm(y, modelfunction = ar)
(tests/fixtures/stl_ar_reference.json, written by make_stl_ar_reference.py) stage by stage,
batching, awkward inputs.

Tolerances against the fixture: it stores every component to 10 significant digits, so a value
of a series whose values reach |y| <= Y agrees to within 1e-9 Y (measured: 5e-10 Y, its rounding)."""

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from timer1.core.baselines import _filled
from timer1.core.stl_ar import (
    StlArFit,
    ar_forecast,
    autocovariances,
    fit_stl_ar,
    levinson_durbin,
    loess_band,
    max_order,
    psi_weights,
    stl_batch,
    subseries_band,
)

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "stl_ar_reference.json").read_text())
SERIES = REFERENCE["series"]
ADJUSTED = [r for r in SERIES if r["adjusted"]]


def train(record) -> np.ndarray:
    return np.asarray(record["values"][:-record["horizon"]], dtype=np.float64)


@functools.cache
def fitted() -> tuple[StlArFit, ...]:
    """Every fixture series fitted in one batched call."""
    return tuple(fit_stl_ar([train(r) for r in SERIES], [r["period"] for r in SERIES]))


def tolerance(record) -> float:
    return 1e-9 * np.max(np.abs(record["values"]))


def test_levinson_durbin_solves_the_yule_walker_systems_solved_by_hand():
    # c = (5, 3, 2, 1). Order 1: phi = 3/5, v = 5 - 9/5. Order 2, [[5, 3], [3, 5]] phi = (3, 2) by
    # Cramer's rule: det 16, phi = (9/16, 1/16). Order 3, [[5,3,2],[3,5,3],[2,3,5]] phi = (3,2,1):
    # det 51, phi = (29, 6, -5) / 51; v_p = c_0 - sum phi_j c_j.
    acov = np.array([[5.0, 3.0, 2.0, 1.0], [4.0, 2.0, 1.0, 0.5]])  # the second row: AR(1), phi 0.5
    coefs, variances = levinson_durbin(acov)
    assert coefs[0, 0, :1] == pytest.approx([3 / 5])
    assert coefs[0, 1, :2] == pytest.approx([9 / 16, 1 / 16])
    assert coefs[0, 2, :3] == pytest.approx([29 / 51, 6 / 51, -5 / 51])
    assert variances[0] == pytest.approx([5, 16 / 5, 51 / 16, 161 / 51])
    assert coefs[1, 2, :3] == pytest.approx([0.5, 0.0, 0.0], abs=1e-12)
    assert variances[1] == pytest.approx([4, 3, 3, 3])


def test_autocovariances_divide_by_n_and_each_series_keeps_its_own_length():
    x = np.array([1.0, 2.0, 3.0, 2.0, 1.0])  # mean 1.8: centred (-0.8, 0.2, 1.2, 0.2, -0.8)
    acov = autocovariances([x, np.arange(9.0)], 2)
    # c_2 = (-0.8 * 1.2 + 0.2 * 0.2 + 1.2 * -0.8) / 5
    assert acov[0] == pytest.approx([2.8 / 5, 0.16 / 5, -1.88 / 5])
    centred = np.arange(9.0) - 4
    assert acov[1] == pytest.approx([centred[k:] @ centred[:9 - k] / 9 for k in range(3)])


def test_ar_forecast_and_psi_weights_by_hand():
    ar = np.array([0.5, -0.2])
    # x = 0.5 x_{t-1} - 0.2 x_{t-2} from (..., 1, 2): 0.8, then 0.4 - 0.4 = 0, then -0.16
    assert ar_forecast(np.array([7.0, 1.0, 2.0]), ar, 3) == pytest.approx([0.8, 0.0, -0.16])
    # psi_1 = 0.5, psi_2 = 0.25 - 0.2, psi_3 = 0.5 * 0.05 - 0.2 * 0.5
    assert psi_weights(ar, 4) == pytest.approx([1.0, 0.5, 0.05, -0.075])
    assert psi_weights(np.zeros(0), 3).tolist() == [1.0, 0.0, 0.0]


def test_a_fit_forecasts_mean_plus_recursion_plus_the_last_season():
    adjusted = np.array([10.0, 11.0, 12.0])  # mean 11: centred (-1, 0, 1)
    season = np.array([0.0, 5.0, -5.0])  # m = 2: the last season is (5, -5)
    fit = StlArFit(2, season, adjusted, 1, np.array([0.5]), 11.0, 4.0, np.zeros(2))
    assert fit.forecast(3) == pytest.approx([11 + 0.5 + 5, 11 + 0.25 - 5, 11 + 0.125 + 5])
    assert fit.variance(3) == pytest.approx([4.0, 4 * 1.25, 4 * (1.25 + 0.0625)])
    lo, hi = fit.interval(3, level=95)
    assert (hi - lo) / 2 == pytest.approx(1.959964 * np.sqrt(fit.variance(3)), rel=1e-6)


@pytest.mark.parametrize("n, span, degree, jump", [(30, 7, 1, 1), (30, 7, 1, 3), (30, 41, 1, 5), (17, 11, 0, 2),
                                                   (200, 21, 1, 3), (5, 3, 1, 1)])
def test_loess_keeps_lines_of_its_degree_and_its_weights_sum_to_one(n, span, degree, jump):
    band = loess_band(n, span, degree, jump)
    t = np.arange(1.0, n + 1)
    line = 3.0 - 0.25 * t if degree == 1 else np.full(n, 3.0)
    assert band.apply(line[None, :])[0] == pytest.approx(line, abs=1e-10)
    assert band.weights.sum(axis=1) == pytest.approx(np.ones(n))


def test_subseries_smoother_extends_a_constant_one_value_each_side():
    band = subseries_band(6, 11, 0, 2)
    assert band.apply(np.full((1, 6), 4.0))[0] == pytest.approx(np.full(8, 4.0))


@pytest.mark.parametrize("record", ADJUSTED, ids=[r["name"] for r in ADJUSTED])
def test_stl_components_match_statsmodels_set_as_r(record):
    seasonal, trend = stl_batch(train(record)[None, :], record["period"])
    assert np.max(np.abs(seasonal[0] - record["seasonal"])) <= tolerance(record)
    assert np.max(np.abs(trend[0] - record["trend"])) <= tolerance(record)


def test_unadjusted_series_are_exactly_the_non_seasonal_and_the_too_short_ones():
    for record, fit in zip(SERIES, fitted()):
        assert (fit.period > 1) == record["adjusted"], record["name"]
        if not record["adjusted"]:
            assert not fit.seasonal.any()


def test_chosen_orders_and_coefficients_match_ar_yw():
    same = [fit.order == record["order"] for record, fit in zip(SERIES, fitted())]
    assert all(same), [r["name"] for r, ok in zip(SERIES, same) if not ok]  # measured: 17 of 17
    for record, fit in zip(SERIES, fitted()):
        assert fit.ar == pytest.approx(record["ar"], abs=1e-8)
        assert fit.sigma2 == pytest.approx(record["sigma2"], rel=1e-9)
        assert fit.aic == pytest.approx(record["aic"], abs=1e-6)
        assert fit.aic[fit.order] == 0.0


def test_point_forecasts_and_intervals_match_the_reference():
    ratios = []
    for record, fit in zip(SERIES, fitted()):
        horizon = record["horizon"]
        ours, ref = fit.forecast(horizon), np.asarray(record["mean"])
        actual = np.asarray(record["values"][-horizon:])
        ratios.append(np.mean(np.abs(ours - ref)) / np.mean(np.abs(ref - actual)))
        assert np.max(np.abs(ours - ref)) <= tolerance(record), record["name"]
        lo, hi = fit.interval(horizon, REFERENCE["meta"]["level"])
        assert np.max(np.abs(lo - record["lo"])) <= tolerance(record)
        assert np.max(np.abs(hi - record["hi"])) <= tolerance(record)
    assert np.median(ratios) < 0.05  # the goal; measured: 2.5e-9 (worst series 2.5e-8)
    assert np.max(ratios) < 1e-6


def test_a_batch_equals_each_series_alone():
    rng = np.random.default_rng(3)
    t = np.arange(120)
    series = [50 + 0.2 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, 120),
              rng.normal(0, 1, 90).cumsum(),
              50 + 0.2 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 2, 120),
              10 + np.sin(np.arange(37) * np.pi / 2) + rng.normal(0, 0.1, 37),
              rng.normal(0, 1, 15)]
    periods = [12, 1, 12, 4, 4]
    together = fit_stl_ar(series, periods)
    for values, m, fit in zip(series, periods, together):
        alone = fit_stl_ar([values], m)[0]
        assert alone.order == fit.order and alone.period == fit.period
        # bit for bit: sums run in one fixed order whatever else is in the batch, so a series' forecast
        # never depends on its batch (sharded forecasts under torchrun equal one process's)
        np.testing.assert_array_equal(fit.forecast(20), alone.forecast(20))
        np.testing.assert_array_equal(fit.interval(20)[0], alone.interval(20)[0])


def test_constant_series_forecast_the_constant_with_no_spread():
    for values, m in ((np.full(60, 5.0), 12), (np.full(30, -2.5), 1)):
        fit = fit_stl_ar([values], m)[0]
        assert fit.order == 0 and fit.sigma2 == 0.0
        assert fit.forecast(13) == pytest.approx(np.full(13, values[0]), abs=1e-9)
        lo, hi = fit.interval(13)
        assert hi - lo == pytest.approx(np.zeros(13), abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 11, 24, 25])
def test_short_series_give_finite_forecasts(n):
    values = 10 + np.sin(np.arange(n)) + 0.1 * np.arange(n)
    fit = fit_stl_ar([values], 12)[0]
    assert fit.period == (12 if n > 24 else 1)
    assert fit.order <= max_order(n) <= max(n - 2, 0)
    lo, hi = fit.interval(6)
    assert np.isfinite(fit.forecast(6)).all() and np.isfinite(lo).all() and np.isfinite(hi).all()
    if n == 1:
        assert fit.forecast(2).tolist() == [values[0]] * 2


def test_max_order_is_r_order_max_but_leaves_one_degree_of_freedom():
    assert [max_order(n) for n in (1, 2, 3, 12, 100, 216)] == [0, 0, 1, 10, 20, 23]
    assert max_order(216) == math.floor(10 * math.log10(216))


def test_gaps_are_filled_before_fitting():
    rng = np.random.default_rng(5)
    values = 20 + 3 * np.sin(2 * np.pi * np.arange(96) / 12) + rng.normal(0, 0.5, 96)
    values[[10, 11, 40, 95]] = np.nan
    gappy, filled = fit_stl_ar([values], 12)[0], fit_stl_ar([_filled(values)], 12)[0]
    assert np.isfinite(gappy.forecast(12)).all()
    assert gappy.forecast(12) == pytest.approx(filled.forecast(12), rel=1e-12)


def test_bad_periods_and_levels_are_refused():
    with pytest.raises(ValueError):
        fit_stl_ar([np.arange(30.0)], 0)
    with pytest.raises(ValueError):
        fit_stl_ar([np.arange(30.0), np.arange(30.0)], [12])
    with pytest.raises(ValueError):
        fit_stl_ar([np.arange(30.0)], 4)[0].interval(3, level=100)


def test_a_trending_series_reverts_to_the_mean_as_r_does():
    # a Yule-Walker AR is stationary: its forecast goes back to the adjusted series' mean
    t = np.arange(144)
    values = 100 + 10 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(1).normal(0, 1, 144) + 0.5 * t
    fit = fit_stl_ar([values], 12)[0]
    assert fit.forecast(600)[-12:] == pytest.approx(fit.mean + fit.seasonal[-12:], abs=1e-2)
    assert fit.mean < fit.adjusted[-12:].mean() - 20
