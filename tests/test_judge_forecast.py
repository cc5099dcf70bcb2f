"""The judge in the product: the Forecaster's default mode with a judge, the averaged weights, the
rule it falls back to, the band of the combination's own residuals, and what ``source`` says."""

import numpy as np
import pytest

from timer1.core.backtest import Problem
from timer1.core.judge import build_cases, combine, mean_weights, rule_weights
from timer1.forecast.forecaster import Forecaster
from timer1.forecast.judge_forecast import Judgement, combined_band
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
    assert result.source == f"rule: {best} 1.00" and result.answer == "judge" and result.kept == 0
    np.testing.assert_allclose(out.point[0], combine(case.forecasts, weights), rtol=1e-12)
    expected = band_samples(out.point[0], case.residuals[int(np.argmax(weights))])
    np.testing.assert_allclose(result.samples, expected, rtol=1e-12)


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


def test_the_combinations_band_is_made_of_its_own_residuals():
    residuals = np.random.default_rng(0).normal(size=(3, 10, 4))          # (K, O, H)
    weights = np.array([0.5, 0.0, 0.5])
    point = np.arange(4.0)
    mixed = 0.5 * residuals[0] + 0.5 * residuals[2]                        # (O, H)
    np.testing.assert_allclose(combined_band(weights, residuals, point), band_samples(point, mixed))


def test_source_names_the_weights_largest_first():
    j = Judgement(["theta", "ets", "drift"], np.array([0.25, 0.75, 0.0]), 3, np.zeros(2), None, "")
    assert j.source == "judge: ets 0.75 + theta 0.25"
    assert Judgement(["theta"], np.array([1.0]), 0, np.zeros(2), None, "").source == "rule: theta 1.00"
