"""The judge task: its answer layout and parser, the combination, the reward, the evidence, the
backtest it reads, the teacher of its SFT samples and the non-LLM combinations it is measured against."""

import math

import numpy as np
import pytest

from timer1.core.arima import forecasts_at
from timer1.core.arima_fit import fit_auto_arima
from timer1.core.backtest import FIT_HISTORY, LIKELIHOOD_HISTORY, Problem, backtest, errors_at, statistical_candidates
from timer1.core.combine import SOFTMAX_COEF, Outcome, error_features, fit_softmax, softmax_weights, top_mean_weights
from timer1.core.ets_fit import fit_auto_ets
from timer1.core.evidence import Evidence, error_columns, level_shift, scale_of, strengths
from timer1.core.judge import (JudgeCase, build_cases, combine, format_weights, judge_completion, judge_prompt,
                               judge_reward, parse_weights, rule_weights)
from timer1.core.judge_teacher import oracle_weights, teacher_sample, teacher_weights, draft_weights, case_mae
from timer1.core.stl_ar import fit_stl_ar

NAMES = ["seasonal naive (period 24)", "seasonal naive (period 168)", "last value", "theta", "ets"]


def evidence(errors, names=NAMES) -> Evidence:
    errors = np.asarray(errors, dtype=np.float64)
    return Evidence("hourly", 1000, 4, 24, [(24, 0.8)], 0.3, 0.5, list(names), errors)


# ---------------------------------------------------------------------------------------------- answers

def test_parse_weights_reads_names_with_digits_and_renormalizes():
    text = "<think>x</think>\n<answer>\nseasonal naive (period 168) 3\ntheta 1\n</answer>"
    assert parse_weights(text, NAMES).tolist() == [0, 0.75, 0, 0.25, 0]


@pytest.mark.parametrize("answer, expected", [
    ("ets 0.5, theta 0.5", [0, 0, 0, 0.5, 0.5]),           # commas
    ("ETS: 1; Theta = 3", [0, 0, 0, 0.75, 0.25]),          # case, punctuation, semicolons
    ("ets 0.5\nprophet 0.5", [0, 0, 0, 0, 1]),             # an unknown name is skipped
    ("ets -1\ntheta 0.2", [0, 0, 0, 1, 0]),                # a negative weight counts as 0
    ("ets 0.2\nets 0.2\ntheta 0.6", [0, 0, 0, 0.6, 0.4]),  # a repeated name adds up
    ("ets nan\ntheta 2", [0, 0, 0, 1, 0]),                 # a weight that is not a number is skipped
])
def test_parse_weights_cases(answer, expected):
    assert parse_weights(f"<answer>{answer}</answer>", NAMES) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["no answer here", "<answer></answer>", "<answer>ets 0\ntheta 0</answer>",
                                  "<answer>prophet 1</answer>", None, 42, "<answer>ets 1e999</answer>"])
def test_unreadable_answers_are_none(text):
    assert parse_weights(text, NAMES) is None


def test_an_unclosed_answer_is_read_to_the_end():
    assert parse_weights("<think>a</think><answer>theta 1\nets 1", NAMES) == pytest.approx([0, 0, 0, .5, .5])


def test_written_weights_parse_back():
    weights = np.array([0.25, 0, 0, 0.75, 0])
    text = judge_completion("because", NAMES, weights)
    assert text == "<think>because</think>\n<answer>\ntheta 0.75\nseasonal naive (period 24) 0.25\n</answer>"
    assert parse_weights(text, NAMES) == pytest.approx(weights)
    assert format_weights(NAMES, np.array([0, 0, 1.0, 0, 0])) == "<answer>\nlast value 1\n</answer>"


def test_combine_and_rule():
    forecasts = np.array([[1.0, 2.0], [3.0, 5.0]])
    assert combine(forecasts, [0.25, 0.75]).tolist() == [2.5, 4.25]
    assert rule_weights(evidence([[2, 0, 0, 0]] * 2 + [[1, 9, 9, 9]] + [[3, 0, 0, 0]] * 2)).tolist() == [0, 0, 1, 0, 0]


def test_reward_of_a_perfect_combination_and_of_an_unreadable_answer():
    target = np.array([0.0, 1.0, 0.0, 1.0])
    forecasts = np.stack([target + 1, target - 1, np.zeros(4), np.ones(4), target])
    case = JudgeCase(evidence(np.ones((5, 4))), forecasts, target)
    # weights 1/2, 1/2 on target + 1 and target - 1 give the target: mse term 2 * (1 - sigmoid(0)) = 1
    terms = judge_reward("<think>a</think><answer>seasonal naive (period 24) 1\nseasonal naive (period 168) 1</answer>", case)
    assert terms["format"] == 0 and terms["length"] == pytest.approx(0.1) and terms["mse"] == pytest.approx(1.0)
    assert terms["total"] == pytest.approx(sum(v for k, v in terms.items() if k != "total"))
    bad = judge_reward("theta 1", case)
    assert bad["format"] == -1 and bad["length"] == 0 and bad["mse"] == 0 and bad["total"] == -1


def test_prompt_states_every_candidate_and_the_instruction():
    e = evidence(np.arange(20).reshape(5, 4) / 7)
    text = judge_prompt(e)
    assert "Series: 1000 hourly values; forecast the next 4." in text
    assert "Seasonal strength: 0.8 at period 24. Trend strength: 0.3." in text
    assert "theta: 1.71 1.86 2 2.14" in text and "<answer>" in text
    assert text.count("\n") == 4 + len(NAMES)


# ---------------------------------------------------------------------------------------------- evidence

def test_scale_shift_and_error_columns_by_hand():
    x = np.array([0.0, 2.0, 1.0, 3.0, 7.0, 9.0])
    assert scale_of(x) == pytest.approx((2 + 1 + 2 + 4 + 2) / 5)
    assert scale_of(np.ones(5)) == 1.0
    assert level_shift(x, 2, 2.0) == pytest.approx(((7 + 9) / 2 - (1 + 3) / 2) / 2)
    assert level_shift(x, 4, 1.0) == 0.0
    residuals = np.array([[[1.0, -3.0], [2.0, 2.0], [0.0, 4.0], [1.0, 1.0]]])  # (1, O=4, H=2)
    columns = error_columns(residuals, 2.0)
    assert columns.tolist() == [[14 / 8 / 2, 12 / 6 / 2, 4 / 4 / 2, 10 / 4 / 2]]


def test_strengths_tell_a_season_from_noise():
    t = np.arange(600)
    rng = np.random.default_rng(0)
    seasonal, _ = strengths(10 * np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(600), 12)
    noise_s, noise_t = strengths(rng.standard_normal(600), 12)
    _, trend = strengths(0.5 * t + rng.standard_normal(600), 12)
    assert seasonal > 0.95 and noise_s < 0.3 and noise_t < 0.3 and trend > 0.95


# ---------------------------------------------------------------------------------------------- backtest

def series(n=700, seed=0):
    t = np.arange(n)
    return 50 + 0.02 * t + 5 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(seed).standard_normal(n)


def test_backtest_columns_match_their_slow_references():
    x, horizon = series(), 12
    out, = backtest([Problem(x, horizon, 24)])
    assert out.points[0] == len(x) - horizon and len(out.points) == 24
    # the simple candidates: each origin's residuals as errors_at computes them
    simple = statistical_candidates([24, 168] if 2 * 168 <= len(x) - horizon else [24])
    for name, forecaster in simple.items():
        k = out.names.index(name)
        assert np.allclose(out.residuals[k], errors_at(forecaster, x, out.points, horizon))
        assert np.allclose(out.forecasts[k], forecaster.forecast(x, horizon))
    # ETS: one fit before the earliest origin, refiltered from the start over each later history and the whole
    k, first = out.names.index("ets"), out.points[-1]
    fit = fit_auto_ets([x[max(0, first - LIKELIHOOD_HISTORY):first]], 24)[0]
    for row, o in enumerate(out.points):
        expected = x[o:o + horizon] - fit.refilter(x[max(0, first - LIKELIHOOD_HISTORY):o]).forecast(horizon)
        assert np.allclose(out.residuals[k, row], expected, atol=1e-8)
    assert np.allclose(out.forecasts[k], fit.refilter(x[max(0, first - LIKELIHOOD_HISTORY):]).forecast(horizon))  # run on
    # ARIMA: one fit before the earliest origin, its recursion rerun on each later history alone and the whole
    k = out.names.index("arima")
    fit = fit_auto_arima([x[max(0, first - LIKELIHOOD_HISTORY):first]], 24)[0]
    for row, o in enumerate(out.points):
        past = x[max(0, first - LIKELIHOOD_HISTORY):o]
        expected = x[o:o + horizon] - forecasts_at(fit.spec, fit.coef, past, [len(past)], horizon)[0]
        assert np.allclose(out.residuals[k, row], expected, atol=1e-8)
    past = x[max(0, first - LIKELIHOOD_HISTORY):]
    assert np.allclose(out.forecasts[k], forecasts_at(fit.spec, fit.coef, past, [len(past)], horizon)[0])  # run on
    # STL + AR: refitted at every origin on the values before it
    k = out.names.index("stl + ar")
    for row, o in enumerate(out.points):
        expected = x[o:o + horizon] - fit_stl_ar([x[max(0, o - FIT_HISTORY):o]], 24)[0].forecast(horizon)
        assert np.allclose(out.residuals[k, row], expected)


def test_a_short_history_forecasts_now_from_a_fit_on_all_of_it():
    """Where the values before the earliest origin are fewer than LIKELIHOOD_HISTORY, a fit on the
    latest values sees more of them: ETS and ARIMA forecast now from that second fit."""
    x, horizon = series(200), 12
    out, = backtest([Problem(x, horizon, 24)])
    assert out.points[-1] < LIKELIHOOD_HISTORY <= len(x) + 40
    assert np.allclose(out.forecasts[out.names.index("ets")], fit_auto_ets([x], 24)[0].forecast(horizon))
    assert np.allclose(out.forecasts[out.names.index("arima")], fit_auto_arima([x], 24)[0].forecast(horizon))
    past = fit_auto_arima([x[:out.points[-1]]], 24)[0]  # the backtest still scores the past fit
    o = out.points[0]
    np.testing.assert_allclose(out.residuals[out.names.index("arima"), 0],
                               x[o:o + horizon] - forecasts_at(past.spec, past.coef, x[:o], [o], horizon)[0], atol=1e-8)


def test_backtest_of_a_batch_equals_each_alone_and_short_histories_have_none():
    problems = [Problem(series(400, 1), 8, 24), Problem(np.arange(5.0), 8, None), Problem(series(300, 2), 6, 12)]
    together = backtest(problems)
    assert together[1] is None and backtest([problems[1]]) == [None]
    for problem, out in zip(problems, together):
        if out is not None:
            alone, = backtest([problem])
            assert out.names == alone.names and np.allclose(out.residuals, alone.residuals)
            assert np.allclose(out.forecasts, alone.forecasts)


def test_build_cases_never_read_the_target():
    x = series(500, 3)
    target = np.arange(12.0)
    with_target, = build_cases([Problem(x, 12, 24)], ["hourly"], [target])
    without, = build_cases([Problem(x, 12, 24)], ["hourly"])
    assert without.target is None and with_target.target.tolist() == target.tolist()
    assert np.array_equal(with_target.evidence.errors, without.evidence.errors)
    assert judge_prompt(with_target.evidence) == judge_prompt(without.evidence)


# ---------------------------------------------------------------------------------------------- combinations

def test_top_mean_and_learned_softmax_by_hand():
    errors = np.array([[2.0] * 4, [1.0] * 4, [4.0] * 4])
    assert top_mean_weights(errors, 2).tolist() == [0.5, 0.5, 0]
    ratio = np.log((np.array([2.0, 1.0, 4.0]) + 1e-6) / (1.0 + 1e-6))   # to the best (eps 1e-6), every column alike
    ranks = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]]   # the best, 2nd, 3rd by the error over all origins
    expected = np.concatenate([np.repeat(ratio[:, None], 4, 1), np.repeat(ratio[:, None] ** 2, 4, 1), ranks], axis=1)
    np.testing.assert_allclose(error_features(errors), expected, rtol=1e-12)
    coef = np.zeros(12)
    coef[0], coef[8] = -1.0, 0.5                  # logits: -log 2, 0 + 0.5 (the best's rank), -log 4
    w = softmax_weights(errors, coef)
    assert w == pytest.approx(np.array([0.5, np.exp(0.5), 0.25]) / (0.75 + np.exp(0.5)), rel=1e-5)
    far = error_features(np.array([[1.0] * 4, [np.inf] * 4, [np.nan] * 4]))   # unusable: FAR, its square 9
    assert far[1:, :4].tolist() == [[10.0] * 4] * 2 and far[1:, 4:8].tolist() == [[9.0] * 4] * 2
    tied = np.exp(SOFTMAX_COEF[8:10])            # equal errors: only the ranks (1st, 2nd) tell them apart
    assert softmax_weights(np.array([[1.0] * 4, [1.0] * 4])) == pytest.approx(tied / tied.sum())


def outcomes(target: np.ndarray, groups=("a", "b", "c")) -> list[Outcome]:
    """The same two candidates in every case: errors 1 and 1.5 (the first ranks best), forecasts 0
    and 5, ``target`` the truth."""
    errors, forecasts = np.array([[1.0] * 4, [1.5] * 4]), np.array([[0.0, 0.0], [5.0, 5.0]])
    return [Outcome(errors, forecasts, target, 1.0, g) for g in groups]


def test_fit_softmax_learns_sharp_weights_when_the_best_backtest_is_right_and_flat_ones_when_the_mean_is():
    sharp = softmax_weights(np.array([[1.0] * 4, [1.5] * 4]), fit_softmax(outcomes(np.zeros(2))))
    assert sharp[0] > 0.95                       # the candidate of least error is exact: all on it
    flat = softmax_weights(np.array([[1.0] * 4, [1.5] * 4]), fit_softmax(outcomes(np.full(2, 2.5))))
    assert flat == pytest.approx([0.5, 0.5], abs=0.02)   # the truth is the two candidates' mean


# ---------------------------------------------------------------------------------------------- teacher

def test_oracle_finds_the_pair_that_makes_the_target():
    f = np.array([[0.0, 4.0], [4.0, 8.0], [9.0, 9.0], [1.0, 1.0], [2.0, 2.0]])
    case = JudgeCase(evidence(np.ones((5, 4))), f, 0.25 * f[0] + 0.75 * f[1])
    assert oracle_weights(case).tolist() == [0.25, 0.75, 0, 0, 0]
    single = JudgeCase(evidence(np.ones((5, 4))), f, f[3])
    assert oracle_weights(single).tolist() == [0, 0, 0, 1, 0]
    # among the 2 best-backtested (candidates 2 and 4 here) the oracle may not pick candidate 3
    ranked = JudgeCase(evidence([[5] * 4, [4] * 4, [1] * 4, [3] * 4, [2] * 4]), f, f[3])
    assert oracle_weights(ranked, among=2).tolist() == [0, 0, 0, 0, 1]


def test_teacher_is_never_worse_than_its_drafts_and_writes_a_readable_completion():
    rng = np.random.default_rng(5)
    for _ in range(20):
        case = JudgeCase(evidence(rng.uniform(0.5, 3, (5, 4))), rng.normal(size=(5, 6)), rng.normal(size=6))
        chosen = teacher_weights(case)
        assert all(case_mae(case, chosen) <= case_mae(case, d) + 1e-12 for d in draft_weights(case.evidence))
        sample = teacher_sample(case)
        assert parse_weights(sample.completion, NAMES) == pytest.approx(sample.weights)
        assert judge_reward(sample.completion, case)["format"] == 0
        assert all(NAMES[k] in sample.completion.split("</think>")[0] for k in np.flatnonzero(sample.weights))
        assert math.isclose(sample.weights.sum(), 1.0)
