"""The default forecast: the learned softmax of the backtested candidates' errors, or the judge's weights
(averaged, the rule when unreadable); the band of the candidates' residuals, each with its weight, widened by
COMBINATION_BAND; what ``source`` says; mode "rule" (the default before round 4)."""

import numpy as np
import pytest

from timer1.core.backtest import Problem
from timer1.core.judge import build_cases, combine, mean_weights, rule_weights
from timer1.forecast.forecaster import Forecaster
from timer1.core.combine import softmax_weights
from timer1.forecast.band import BandCalibration, widen_samples
from timer1.forecast.combination import COMBINATION_BAND, Judgement, combined_band, tally_key
from timer1.forecast.reflect import band_samples
from timer1.train.random_init import random_policy

DIMS = {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}


@pytest.fixture(scope="module")
def judged():
    """A forecaster whose judge is a random model: it never writes a readable answer."""
    return Forecaster(random_policy(DIMS, seed=0), judge=random_policy(DIMS, seed=1))


def monthly(n=120, seed=0):
    t = np.arange(n)
    return 100 + 0.5 * t + 10 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(seed).normal(0, 1, n)


def test_an_unreadable_judge_falls_back_to_the_rule_with_the_rules_band(judged):
    values = monthly()
    dates = [f"{2000 + i // 12}-{i % 12 + 1:02d}-01" for i in range(len(values))]
    out = judged.predict(values, 12, timestamps=dates, seed=0)
    result = out.results[0]
    case, = build_cases([Problem(values, 12, 12)], ["monthly"])
    weights = rule_weights(case.evidence)
    best = case.evidence.names[int(np.argmax(weights))]
    assert result.source == f"rule: {best} 1.00" and result.answer == "rule" and result.kept == 0
    np.testing.assert_allclose(out.point[0], combine(case.forecasts, weights), rtol=1e-12)
    expected = widen_samples(band_samples(out.point[0], case.residuals[int(np.argmax(weights))]), COMBINATION_BAND)
    np.testing.assert_allclose(result.samples, expected, rtol=1e-12)


def test_the_default_without_a_judge_weighs_by_the_learned_softmax_and_says_so(judged):
    values = monthly(seed=3)
    plain = Forecaster(judged.policy)                                     # no judge
    out = plain.predict(values, 12, timestamps=[f"{2000 + i // 12}-{i % 12 + 1:02d}-01" for i in range(120)])
    case, = build_cases([Problem(values, 12, 12)], ["monthly"])
    weights = softmax_weights(case.evidence.errors)
    assert weights.sum() == pytest.approx(1.0) and np.all(weights > 0)
    np.testing.assert_allclose(out.point[0], weights @ case.forecasts, rtol=1e-12)
    assert out.results[0].answer == "softmax"
    shown = [(case.evidence.names[k], weights[k]) for k in np.argsort(-weights, kind="stable")
             if round(float(weights[k]), 2) > 0]                          # largest first, 0.00 left out
    assert out.source[0] == "softmax: " + " + ".join(f"{name} {w:.2f}" for name, w in shown)
    np.testing.assert_allclose(out.results[0].samples, combined_band(weights, case.residuals, out.point[0]))
    assert out.results[0].band == "backtest errors" and 0.1 in out.quantiles


def test_mode_rule_is_reflection_on_the_models_drafts(judged):
    values = monthly(seed=4)
    out = Forecaster(judged.policy).predict(values, 12, mode="rule", seed=0)
    assert out.results[0].answer.startswith("reflection")
    assert "best" not in out.source[0]


def test_a_series_too_short_to_backtest_is_reflected_on_as_without_a_judge(judged):
    values = monthly(14)
    plain = Forecaster(judged.policy)
    a, b = judged.predict(values, 12, seed=0), plain.predict(values, 12, seed=0)
    np.testing.assert_array_equal(a.point, b.point)
    assert a.source == b.source


def test_mean_weights_average_the_readable_answers():
    case, = build_cases([Problem(monthly(), 12, 12)], ["monthly"])
    names = case.evidence.names
    texts = [f"<answer>{names[0]} 1</answer>", "nonsense", f"<answer>{names[1]} 0.5\n{names[0]} 0.5</answer>"]
    weights, read = mean_weights(texts, case)
    assert read == 2
    assert weights[0] == pytest.approx(0.75) and weights[1] == pytest.approx(0.25) and weights.sum() == pytest.approx(1)
    rule, none = mean_weights(["?", ""], case)
    assert none == 0 and rule.tolist() == rule_weights(case.evidence).tolist()


def test_the_combinations_band_is_its_weighted_candidates_residuals():
    """Each candidate's residuals count with its weight: a candidate of weight 0 takes no part (not even
    its largest error), and two of equal weight give the plain split-conformal band of their residuals
    pooled; the weighted sum of the residuals is not what the band is made of."""
    residuals = np.random.default_rng(0).normal(size=(3, 10, 4))          # (K, O, H)
    weights = np.array([0.5, 0.0, 0.5])
    point = np.arange(4.0)
    raw = band_samples(point, np.concatenate([residuals[0], residuals[2]]))   # (2 O, H), equal weights
    np.testing.assert_allclose(combined_band(weights, residuals, point, BandCalibration()), raw)
    louder = residuals.copy()
    louder[1] *= 100.0
    np.testing.assert_allclose(combined_band(weights, louder, point, BandCalibration()), raw)
    summed = band_samples(point, 0.5 * residuals[0] + 0.5 * residuals[2])
    assert np.all(np.abs(raw[-1] - point) > np.abs(summed[-1] - point))    # the sum averages errors away
    wide = combined_band(weights, residuals, point, BandCalibration((0.8,), (2.0,)))   # twice as far from the point
    np.testing.assert_allclose(wide - point, 2 * (raw - point), atol=1e-12)
    np.testing.assert_allclose(combined_band(weights, residuals, point), widen_samples(raw, COMBINATION_BAND))


def test_weighted_band_by_hand():
    """Two rows, weights 0.75 and 0.25, scores 1 and 3 at every step: effective n = 1 / (0.75^2 + 0.25^2)
    = 1.6 rows, so ceil(20 / 1.6 / 2) = 7 steps either side are pooled (15 steps, n = 24), and the
    shares times n / (n + 1) are 0.72 after the 1s and 0.96 after the 3s. Central 70%: 1; central 80%:
    3; central 98%: past every share, the largest, 3."""
    from timer1.forecast.reflect import BAND_LEVELS

    residuals = np.array([[1.0] * 40, [-3.0] * 40])                      # 40 steps: enough residuals
    samples = band_samples(np.zeros(40), residuals, np.array([0.75, 0.25]))
    top = dict(zip(np.round(BAND_LEVELS, 3), samples[:, 20]))
    assert (top[0.85], top[0.9], top[0.99]) == (1.0, 3.0, 3.0)
    assert (top[0.15], top[0.1]) == (-1.0, -3.0)                            # symmetric


def test_source_names_the_weights_largest_first():
    j = Judgement(["theta", "ets", "drift"], np.array([0.25, 0.75, 0.0]), 3, np.zeros(2), None, "", "judge")
    assert j.source == "judge: ets 0.75 + theta 0.25"
    assert Judgement(["theta"], np.array([1.0]), 0, np.zeros(2), None, "", "rule").source == "rule: theta 1.00"


def test_summaries_count_a_combination_by_its_weighing_and_leading_candidate():
    assert tally_key("softmax: theta 0.52 + seasonal naive (period 12) 0.31 + ets 0.17") == "softmax, most on theta"
    assert tally_key("judge: seasonal naive (period 12) 0.75 + ets 0.25") == "judge, most on seasonal naive (period 12)"
    assert tally_key("softmax: stl + ar 0.52 + theta 0.48") == "softmax, most on stl + ar"  # a name holding " + "
    assert tally_key("rule: drift 1.00") == "rule, most on drift"
    assert tally_key("model") == "model" and tally_key("drift") == "drift"   # not a combination: as it is
