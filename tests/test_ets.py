"""ETS (timer1.core.ets, ets_fit, ets_variance, nelder_mead): recursions by hand, the likelihood and
AICc computed independently, parity with statsforecast's AutoETS (tests/fixtures/ets_reference.json,
written by make_ets_reference.py), batching, the filtered update, awkward inputs.

The fits are the slow part: each set of series is fitted once per module (``functools.cache``)."""

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from timer1.core.ets import EtsFit, EtsParams, EtsSpec, filter_batch, neg2_loglik
from timer1.core.ets_fit import Ets, candidate_models, fit_auto_ets, fit_candidates
from timer1.core.nelder_mead import minimize

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "ets_reference.json").read_text())


def one(**values) -> EtsParams:
    """A batch of one parameter vector; season given in R's order (last column used first)."""
    defaults = {"alpha": 0.5, "beta": 0.0, "gamma": 0.0, "phi": 1.0, "level": 0.0, "trend": 0.0, "season": [0.0]}
    defaults.update(values)
    return EtsParams(*(np.atleast_1d(np.asarray(defaults[k], dtype=float))
                       for k in ("alpha", "beta", "gamma", "phi", "level", "trend")),
                     season=np.asarray(defaults["season"], dtype=float)[None, :])


def stack(*params: EtsParams) -> EtsParams:
    return EtsParams(*(np.concatenate([getattr(p, f) for p in params]) for f in EtsParams.__dataclass_fields__))


def test_simple_exponential_smoothing_by_hand():
    y = np.array([[10.0], [12.0], [11.0], [13.0]])  # (T, 1)
    result = filter_batch(y, one(alpha=0.5, level=10.0), mult_from=1)
    # level: 10 -> 10 (no error) -> 11 (error 2) -> 11 (no error) -> 12 (error 2)
    assert result.yhat[:, 0].tolist() == [10.0, 10.0, 11.0, 11.0]
    assert result.level[0] == 12.0
    assert neg2_loglik(result, np.array([4]), mult_from=1)[0] == pytest.approx(4 * math.log(8.0))
    # multiplicative errors: e_t = (y - yhat) / yhat, plus 2 sum log|yhat|
    e = np.array([0, 2 / 10, 0, 2 / 11])
    expected = 4 * math.log(np.sum(e ** 2)) + 2 * math.log(10 * 10 * 11 * 11)
    assert neg2_loglik(result, np.array([4]), mult_from=0)[0] == pytest.approx(expected)


def test_additive_damped_trend_forecast_is_level_plus_phi_sums():
    spec = EtsSpec("A", "A", "N", damped=True)
    fit = EtsFit(spec, 0.5, 0.1, 0.0, 0.9, one(), level=100.0, trend=2.0, season=np.ones(1), n=10, sigma2=1.0)
    assert fit.forecast(3) == pytest.approx([100 + 2 * 0.9, 100 + 2 * (0.9 + 0.81), 100 + 2 * (0.9 + 0.81 + 0.729)])
    undamped = EtsFit(EtsSpec("A", "A", "N"), 0.5, 0.1, 0.0, 1.0, one(), 100.0, 2.0, np.ones(1), 10, 1.0)
    assert undamped.forecast(3) == pytest.approx([102.0, 104.0, 106.0])


def test_multiplicative_season_by_hand():
    # m = 2, R's order: column 1 (0.8) is the seasonal term of the first observation
    params = one(alpha=0.5, gamma=0.1, level=10.0, season=[1.2, 0.8])
    result = filter_batch(np.array([[9.0], [11.0]]), params, mult_from=0)
    # t=0: yhat = 10 * 0.8 = 8; l = 10 + 0.5 (9/0.8 - 10) = 10.625; s = 0.8 + 0.1 (9/10 - 0.8) = 0.81
    # t=1: yhat = 10.625 * 1.2 = 12.75; l = 10.625 + 0.5 (11/1.2 - 10.625); s = 1.2 + 0.1 (11/10.625 - 1.2)
    level = 10.625 + 0.5 * (11 / 1.2 - 10.625)
    assert result.yhat[:, 0] == pytest.approx([8.0, 12.75])
    assert result.level[0] == pytest.approx(level)
    assert result.season[0] == pytest.approx([0.81, 1.2 + 0.1 * (11 / 10.625 - 1.2)])  # next step first
    fit = EtsFit(EtsSpec("M", "N", "M", period=2), 0.5, 0.0, 0.1, 1.0, params, level, 0.0, result.season[0], 2, 0.01)
    assert fit.forecast(3) == pytest.approx(level * result.season[0][[0, 1, 0]])


def test_one_pass_over_mixed_rows_equals_each_row_alone():
    # the fit filters additive- and multiplicative-season rows of different lengths in one pass
    rng = np.random.default_rng(7)
    y = 50 + np.cumsum(rng.normal(0, 1, (12, 3)), axis=0)  # (T, 3)
    rows = [one(alpha=0.3, level=50.0, season=[0.0] * 4),  # no season: zero additive terms
            one(alpha=0.2, beta=0.05, gamma=0.1, phi=0.9, level=49.0, trend=0.5, season=[1.0, -2.0, 0.5, 0.5]),
            one(alpha=0.4, beta=0.1, gamma=0.2, level=51.0, trend=-0.2, season=[1.1, 0.9, 1.05, 0.95])]
    lengths = np.array([12, 7, 12])
    together = filter_batch(y, stack(*rows), mult_from=2, lengths=lengths)
    lik = neg2_loglik(together, lengths, mult_from=1)
    errors_only = filter_batch(y, stack(*rows), mult_from=2, lengths=lengths, states=False)  # the optimizer's
    assert np.array_equal(errors_only.diff, together.diff) and errors_only.level is None
    for j, (params, n) in enumerate(zip(rows, lengths)):
        alone = filter_batch(y[:n, j:j + 1], params, mult_from=0 if j == 2 else 1)
        assert together.yhat[:n, j] == pytest.approx(alone.yhat[:, 0], rel=1e-14)
        assert together.level[j] == pytest.approx(alone.level[0], rel=1e-14)
        assert together.trend[j] == pytest.approx(alone.trend[0], rel=1e-14)
        assert together.season[j] == pytest.approx(alone.season[0], rel=1e-14)
        assert lik[j] == pytest.approx(neg2_loglik(alone, np.array([n]), mult_from=0 if j else 1)[0], rel=1e-12)


def fit_model(y: np.ndarray, spec: EtsSpec) -> EtsFit:
    """One given model fitted by the engine fit_auto_ets runs, as the only candidate."""
    (candidate,) = [c for c in candidate_models(y, spec.period) if c.spec == spec]
    return fit_candidates([y], [[candidate]])[0][0]


def test_likelihood_and_aicc_of_a_fit_recomputed_by_hand():
    rng = np.random.default_rng(3)
    y = 50 + np.cumsum(rng.normal(0, 1, 30))
    fit = fit_model(y, EtsSpec("A", "N", "N"))
    level, sse = fit.initial.level[0], 0.0
    for value in y:  # l_t = l_{t-1} + alpha (y_t - l_{t-1})
        sse += (value - level) ** 2
        level += fit.alpha * (value - level)
    lik, k = len(y) * math.log(sse), 3  # alpha, l0, sigma
    assert fit.neg2_loglik == pytest.approx(lik, rel=1e-10)
    assert fit.aicc == pytest.approx(lik + 2 * k + 2 * k * (k + 1) / (len(y) - k - 1), rel=1e-10)
    assert fit.level == pytest.approx(level)
    assert fit.sigma2 == pytest.approx(sse / (len(y) - k - 1))


def test_nelder_mead_finds_minima_of_problems_of_different_sizes_each_as_if_alone():
    centre = np.array([[1.0, -2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.5, -1.0]])
    x0 = np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.2, 0.2]])
    # lower == upper fixes a coordinate: problem 0 has 2 dimensions, 1 has one, 2 has two (not the first)
    lower = np.array([[-9, -9, 0], [-9, 0, 0], [0, -9, -9.0]])
    upper = np.array([[9, 9, 0], [2.5, 0, 0], [0, 9, 9.0]])

    def objective(points, problems):
        return np.sum((points - centre[problems]) ** 2, axis=1)

    together = minimize(objective, x0, lower, upper, max_iter=500, tol_std=1e-12)
    assert together.x[0] == pytest.approx([1.0, -2.0, 0.0], abs=1e-4)
    assert together.x[1] == pytest.approx([2.5, 0.0, 0.0])  # clamped at its upper bound
    assert together.x[2] == pytest.approx([0.0, 0.5, -1.0], abs=1e-4)
    assert np.all(together.x[lower == upper] == lower[lower == upper])  # fixed ones never move
    for p in range(3):
        alone = minimize(lambda pts, _, p=p: objective(pts, np.full(len(pts), p)), x0[p:p + 1],
                         lower[p:p + 1], upper[p:p + 1], max_iter=500, tol_std=1e-12)
        assert np.array_equal(alone.x[0], together.x[p]) and alone.iterations[0] == together.iterations[p]


@functools.cache
def reference_fits():
    """The fixture's series fitted in one batch (a few seconds; shared by the tests below)."""
    series = REFERENCE["series"]
    train = [np.array(r["values"][:-r["horizon"]]) for r in series]
    return series, fit_auto_ets(train, [r["period"] for r in series])


def test_parity_with_statsforecast_autoets():
    # R's usual bounds; statsforecast caps beta at 0.2/m for all but its first trend candidate, so
    # on the trending quarterly series (beta pinned at 0.2 there) the two fits part: 17 of the 18
    # choose the same model, and the point forecasts stay within a fraction of a percent
    series, fits = reference_fits()
    relative, same = [], []
    for record, fit in zip(series, fits):
        h = record["horizon"]
        theirs, truth = np.array(record["mean"]), np.array(record["values"][-h:])
        relative.append(np.mean(np.abs(fit.forecast(h) - theirs)) / np.mean(np.abs(theirs - truth)))
        same.append(fit.name == record["model"])
        print(f"{record['name']:30s} {record['model']:12s} {fit.name:12s} {relative[-1]:.2e}")
    print(f"median relative difference {np.median(relative):.2e}, same model {sum(same)}/{len(same)}")
    assert np.median(relative) <= 0.05
    assert sum(same) >= 17


def test_intervals_match_statsforecast_where_both_follow_the_book():
    # compared: our fit equal to theirs (same model, point forecasts within 1e-6), and a variance
    # both compute as Hyndman et al. (2008) do -- not a seasonal model with h > m (statsforecast
    # takes k = floor((H - 1) / m) at every step of class 1), not M,A,A (it uses alpha * beta * j
    # in place of alpha + beta * j); rel 1e-3: their fit's last digits differ from ours
    series, fits = reference_fits()
    compared = []
    for record, fit in zip(series, fits):
        h, m = record["horizon"], record["period"]
        same_fit = fit.name == record["model"] and fit.forecast(h) == pytest.approx(record["mean"], rel=1e-6)
        if same_fit and (h <= m or fit.spec.season == "N") and fit.name != "ETS(M,A,A)":
            lo, hi = fit.interval(h, REFERENCE["meta"]["level"])
            assert lo == pytest.approx(record["lo"], rel=1e-3), record["name"]
            assert hi == pytest.approx(record["hi"], rel=1e-3), record["name"]
            compared.append(fit.name)
    assert len(compared) >= 8 and {"ETS(A,N,N)", "ETS(M,N,N)", "ETS(A,A,A)"} <= set(compared), compared


def test_variances_at_one_step_and_for_simple_smoothing():
    params = one(alpha=0.3, level=10.0)
    ann = EtsFit(EtsSpec("A", "N", "N"), 0.3, 0.0, 0.0, 1.0, params, 10.0, 0.0, np.ones(1), 20, 4.0)
    assert ann.variance(3) == pytest.approx(4.0 * (1 + 0.09 * np.arange(3)))
    for spec in (EtsSpec("M", "N", "N"), EtsSpec("M", "A", "M", period=4), EtsSpec("M", "N", "A", period=4)):
        season = np.array([1.1, 0.9, 1.2, 0.8]) if spec.season == "M" else np.array([1.0, -1.0, 2.0, -2.0])
        fit = EtsFit(spec, 0.3, 0.05, 0.1, 1.0, params, 10.0, 0.5, season, 20, 0.01)
        variance = fit.variance(6)
        assert variance[0] == pytest.approx(0.01 * fit.forecast(1)[0] ** 2)  # v_1 = sigma^2 mu_1^2
        assert np.all(variance[1:] > variance[0] * 0.5)


def test_class3_variance_agrees_with_simulation():
    spec = EtsSpec("M", "A", "M", period=2)
    params = one(alpha=0.3, beta=0.05, gamma=0.2, level=10.0, trend=0.5, season=[1.2, 0.8])
    fit = EtsFit(spec, 0.3, 0.05, 0.2, 1.0, params, 10.0, 0.5, np.array([0.8, 1.2]), 20, 0.02)
    rng = np.random.default_rng(0)
    paths, horizon = 200_000, 4
    level, slope = np.full(paths, 10.0), np.full(paths, 0.5)
    season = np.tile([1.2, 0.8], (paths, 1))  # R's order: the last column is used next
    values = np.zeros((paths, horizon))
    for h in range(horizon):  # Hyndman et al. 2008, Table 2.2, M,A,M written out
        q, old = level + slope, season[:, -1]
        values[:, h] = q * old * (1 + rng.normal(0, math.sqrt(0.02), paths))
        new_level = q + 0.3 * (values[:, h] / old - q)
        slope = slope + 0.05 / 0.3 * (new_level - level - slope)
        season = np.column_stack([old + 0.2 * (values[:, h] / q - old), season[:, :-1]])
        level = new_level
    assert np.var(values, axis=0) == pytest.approx(fit.variance(horizon), rel=0.03)


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(1)
    t = np.arange(60)
    series = [20 + 0.3 * t + 3 * np.sin(2 * np.pi * t / 4) + rng.normal(0, 1, 60),
              (50 + rng.normal(0, 2, 45)) * np.tile([1.1, 0.9, 1.2, 0.8], 12)[:45],
              np.cumsum(rng.normal(0, 1, 37))]
    together = fit_auto_ets(series, 4)
    for values, fit in zip(series, together):
        alone = fit_auto_ets([values], 4)[0]
        assert alone.name == fit.name
        assert alone.forecast(8) == pytest.approx(fit.forecast(8), rel=1e-7, abs=1e-9)


@functools.cache
def fits_to_extend():
    """Every candidate fitted to the first 110 of 150 values of a seasonal series (one batch)."""
    rng = np.random.default_rng(2)
    t = np.arange(150)
    y = (100 + 0.2 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12)) + rng.normal(0, 1, 150)
    return y, {fit.spec: fit for fit in fit_candidates([y[:110]], [candidate_models(y[:110], 12)])[0]}


@pytest.mark.parametrize("spec", [EtsSpec("A", "A", "A", True, 12), EtsSpec("M", "A", "M", False, 12),
                                  EtsSpec("M", "N", "N")])
def test_extend_equals_refiltering_from_the_start(spec):
    y, fits = fits_to_extend()
    fit = fits[spec]
    extended, scratch = fit.extend(y), fit.refilter(y)  # the fast path and its slow reference
    assert extended.n == scratch.n == 150
    assert extended.level == pytest.approx(scratch.level, rel=1e-10)
    assert extended.forecast(24) == pytest.approx(scratch.forecast(24), rel=1e-10)
    assert fit.refilter(y[:110]).forecast(5) == pytest.approx(fit.forecast(5), rel=1e-12)
    assert extended.alpha == fit.alpha and extended.sigma2 == fit.sigma2  # nothing re-optimized
    assert fit.extend(y[:110]) is fit
    with pytest.raises(ValueError):
        fit.extend(y[:100])


def test_constant_short_and_gappy_series():
    rng = np.random.default_rng(4)
    y = 30 + np.cumsum(rng.normal(0, 1, 50))
    gappy = y.copy()
    gappy[[10, 11, 30]] = np.nan  # filled by linear interpolation before fitting
    filled = y.copy()
    filled[10], filled[11], filled[30] = y[9] + (y[12] - y[9]) / 3, y[9] + 2 * (y[12] - y[9]) / 3, (y[29] + y[31]) / 2
    short = np.array([3.0, 4.0, 6.0, 5.0, 7.0, 6.0, 8.0, 9.0, 8.0, 10.0])
    constant, short_fit, tiny, from_gappy, from_filled = fit_auto_ets(
        [np.full(40, 7.5), short, np.array([1.0, 2.0, 4.0]), gappy, filled], [12, 12, 1, 1, 1])
    assert constant.name == "ETS(A,N,N)" and constant.forecast(5) == pytest.approx(np.full(5, 7.5))
    assert constant.interval(5, 80)[0] == pytest.approx(np.full(5, 7.5))  # no spread
    assert short_fit.spec.season == "N"  # 10 values, m = 12: no season
    assert tiny.forecast(2) == pytest.approx([4.0, 4.0], abs=1e-3)  # about the last value
    assert all(c.spec.season == "N" for c in candidate_models(np.arange(1.0, 25.0), 24))  # n = 24 = m
    assert from_gappy.forecast(3) == pytest.approx(from_filled.forecast(3))


def test_non_positive_series_get_no_multiplicative_component():
    rng = np.random.default_rng(5)
    t = np.arange(72)
    y = 5 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, 72)  # crosses zero
    assert all("M" not in (c.spec.error, c.spec.season) for c in candidate_models(y, 12))
    with_zero = np.abs(y) + 1.0
    with_zero[5] = 0.0
    assert all("M" not in (c.spec.error, c.spec.season) for c in candidate_models(with_zero, 12))
    assert "M" not in fit_auto_ets([y], 12)[0].name
    assert any(c.spec.season == "M" for c in candidate_models(np.abs(y) + 1.0, 12))


def test_ets_baseline_interface():
    rng = np.random.default_rng(6)
    t = np.arange(96)
    y = 50 + 0.1 * t + 8 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, 96)
    model = Ets()  # the period estimated from the history
    assert model.name == "ets"
    forecast = model.forecast(y, 12)
    assert forecast.shape == (12,)
    truth = 50 + 0.1 * (96 + np.arange(12)) + 8 * np.sin(2 * np.pi * (96 + np.arange(12)) / 12)
    assert np.mean(np.abs(forecast - truth)) < 2.0  # the season (m = 12) is found
    assert Ets(period=1).fit(y).spec.season == "N"
    with pytest.raises(ValueError):
        model.forecast(y, 0)
