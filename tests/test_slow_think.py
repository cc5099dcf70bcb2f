"""timer1.core.slow_think: the critic on hand-made drafts, aggregation, the refine loop and the fallback."""

from dataclasses import replace

import numpy as np
import pytest

import timer1.core.slow_think as st
from timer1.core.baselines import SeasonalNaive
from timer1.core.codec import PromptFormat
from timer1.core.prompts import compact_scaler
from timer1.core.sampler import Generation
from timer1.core.slow_think import (QUANTILES, SlowThinkConfig, aggregate, backtest_window, choose_answer, conclude,
                                    critique, review, single_pass, slow_think)
from timer1.data.repair import forecast_window
from timer1.data.synthetic import synthetic_frame
from timer1.train.random_init import random_policy

TINY = {"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}
PERIOD = 24


@pytest.fixture(scope="module")
def policy():
    return random_policy(TINY, seed=0, prompt_format=PromptFormat("compact"))


@pytest.fixture(scope="module")
def window():
    """A clean daily cycle: 96 hours of history (level 10, amplitude 2), 24 steps to forecast."""
    series = synthetic_frame(200, 3, periods=((float(PERIOD), 2.0),), noise=0.0)
    return forecast_window(series, "value", 96, PERIOD)[0]


def continuation(window, offset=0.0):
    """The true continuation of the clean cycle (its last season repeated), shifted by ``offset``."""
    return SeasonalNaive(PERIOD).forecast(window.history, window.horizon) + offset


def compact_text(window, values, reasoning="the series repeats every 24 steps"):
    scaler = compact_scaler(window, 2)
    return f"<think>{reasoning}</think>\n<answer>{scaler.encode(values)}</answer>"


# ---------------------------------------------------------------- the critic


def test_a_good_draft_has_no_findings(window):
    assert critique(continuation(window), window.history, window.horizon, period=PERIOD) == []


def test_critic_names_each_problem(window):
    h, H = window.history, window.horizon
    assert critique(None, h, H) == ["no forecast could be parsed from the answer"]
    short = critique(continuation(window)[:10], h, H, period=PERIOD)
    assert short == [f"the answer has 10 values but the horizon is {H}"]

    jumped = continuation(window).copy()
    jumped[0] = h[-1] - 3.0  # the cycle moves ~0.33 a step: 3.0 is a jump, still inside the range
    findings = critique(jumped, h, H, period=PERIOD)
    assert len(findings) == 1 and findings[0].startswith("the first value") and "typical step change" in findings[0]

    wild = continuation(window).copy()
    wild[5] = h.max() + 10 * np.ptp(h)
    findings = critique(wild, h, H, period=PERIOD)
    assert findings == [f"1 of {H} values leave the history's range [{h.min():.6g}, {h.max():.6g}] widened by "
                        f"50% (first: {wild[5]:.6g} at step 6)"]


def test_critic_checks_the_seasonal_cycle(window):
    h, H = window.history, window.horizon
    anti = 2 * h.mean() - continuation(window)  # mirror image: same range, opposite phase
    anti += h[-1] - anti[0]  # and continuous with the last value: only the cycle (and range) is wrong
    findings = critique(anti, h, H, SlowThinkConfig(range_margin=2.0), period=PERIOD)
    assert len(findings) == 1 and "24-step cycle" in findings[0] and "rank correlation -1.00" in findings[0]
    flat = np.full(H, h[-1])
    assert critique(flat, h, H, period=PERIOD) == ["the forecast is flat but the history repeats every 24 steps"]


def test_critic_on_a_series_without_a_cycle():
    """A random walk has no seasonal check; a flat history tolerates only (almost) its own value."""
    walk = np.cumsum(np.random.default_rng(0).normal(size=96))
    assert critique(np.full(24, walk[-1]), walk, 24, period=PERIOD) == []
    flat = np.full(96, 5.0)
    assert critique(np.full(24, 5.0), flat, 24) == []
    assert critique(np.full(24, 6.0), flat, 24)[0].startswith("the first value 6 jumps 1")


def test_critic_thresholds_come_from_the_config(window):
    h = window.history
    step = np.mean(np.abs(np.diff(h)))
    draft = continuation(window).copy()
    draft[0] = h[-1] + 4 * step
    assert critique(draft, h, window.horizon, SlowThinkConfig(continuity=6), PERIOD) == []
    assert len(critique(draft, h, window.horizon, SlowThinkConfig(continuity=3), PERIOD)) == 1


# ---------------------------------------------------------------- aggregation and refine


def test_aggregate_gives_median_and_sample_quantiles():
    samples = np.arange(1.0, 10.0)[:, None] * np.ones((1, 4))  # 9 drafts: 1, 2, ..., 9 at every step
    point, quantiles = aggregate(samples)
    np.testing.assert_array_equal(point, 5.0)
    np.testing.assert_allclose(quantiles[0.1], 1.8)  # position 0.1 * (9 - 1) = 0.8 between 1 and 2
    np.testing.assert_allclose(quantiles[0.9], 8.2)
    np.testing.assert_allclose(quantiles[0.5], 5.0)
    np.testing.assert_allclose(quantiles[0.1], np.quantile(np.arange(1.0, 10.0), 0.1))
    with pytest.raises(ValueError, match="K >= 1"):
        aggregate(np.empty((0, 4)))


def test_bad_drafts_are_dropped_and_the_rest_aggregated(window):
    fmt = PromptFormat("compact")
    good = [compact_text(window, continuation(window, 0.2 * k), f"path {k}") for k in range(-2, 3)]
    bad = ["I am not sure.", compact_text(window, continuation(window)[:5]),
           compact_text(window, continuation(window, 50.0))]
    drafts = [review(t, window, fmt, period=PERIOD) for t in good + bad]
    result = conclude(window, drafts, rounds=1, period=PERIOD)
    assert (result.kept, result.dropped, result.used_fallback) == (5, 3, False)
    assert result.reasoning == good
    kept_values = np.stack([d.values for d in drafts[:5]])
    np.testing.assert_allclose(result.point, np.median(kept_values, axis=0))
    for q in QUANTILES:
        np.testing.assert_allclose(result.quantiles[q], np.quantile(kept_values, q, axis=0))
    # the compact scale is undone: the median path (offset 0) is the true continuation within half a step
    half_step = compact_scaler(window, 2).scale / 2
    assert np.abs(result.point - continuation(window)).max() <= half_step + 1e-9
    assert result.findings[5] == ["no forecast could be parsed from the answer"]
    assert "horizon is 24" in result.findings[6][0]
    assert any("range" in f for f in result.findings[7])


def test_fallback_when_every_draft_fails(window):
    drafts = [review("nothing here", window, PromptFormat("compact"), period=PERIOD) for _ in range(3)]
    result = conclude(window, drafts, rounds=2, period=PERIOD)
    assert result.used_fallback and result.kept == 0 and result.dropped == 3
    assert "seasonal naive (period 24)" in result.fallback and "2 round(s)" in result.fallback
    np.testing.assert_array_equal(result.point, continuation(window))
    assert result.samples.shape == (1, PERIOD)


# ---------------------------------------------------------------- with a (random) model


def test_slow_think_with_a_random_model_drafts_in_one_call_per_round(policy, window, monkeypatch):
    calls = []
    real = st.generate

    def counting(model, prompts, **kw):
        calls.append((len(prompts), kw["num_samples"], kw["temperature"]))
        return real(model, prompts, **kw)

    monkeypatch.setattr(st, "generate", counting)
    config = SlowThinkConfig(samples=4, rounds=2, max_new_tokens=6, seed=0)
    result = slow_think(policy, window, config, period=PERIOD)
    # garbage fails: a second round; each round one call for the window and its backtest, then one
    # greedy call for both
    assert calls == [(2, 4, 0.7), (2, 4, 0.7), (2, 1, 0.0)]
    assert result.used_fallback and result.kept + result.dropped == 8 and result.rounds == 2
    assert all(d.findings for d in result.drafts) and result.answer == "median"
    again = slow_think(policy, window, config, period=PERIOD)
    assert [d.text for d in again.drafts] == [d.text for d in result.drafts]  # seeded
    calls.clear()
    both = slow_think(policy, [window, window], config, period=PERIOD)  # several windows: still one call a round
    assert calls == [(4, 4, 0.7), (4, 4, 0.7), (4, 1, 0.0)] and len(both) == 2
    assert all(r.used_fallback and len(r.drafts) == 8 for r in both)
    calls.clear()
    alone = slow_think(policy, window, replace(config, backtest=False), period=PERIOD, seeds=[5])
    assert calls == [(1, 4, 0.7), (1, 4, 0.7)] and alone.backtest_mae is None
    with_test = slow_think(policy, window, config, period=PERIOD, seeds=[5])
    assert [d.text for d in alone.drafts] == [d.text for d in with_test.drafts]  # per-window seeds: the backtest draws apart


def scripted_generate(policy, replies):
    """A generate that answers round r with ``replies[r]`` (texts), recording the prompts it saw."""
    seen = []

    def fake(model, prompts, *, num_samples, **kw):
        seen.append([policy.tokenizer.decode(p) for p in prompts])
        texts = replies[len(seen) - 1]
        assert len(texts) == len(prompts) * num_samples
        eos = policy.tokenizer.eos_ids[0]
        return Generation(tokens=[policy.tokenizer.encode(t) + [eos] for t in texts],
                             logprobs=[[0.0]] * len(texts), finished=[True] * len(texts))

    return fake, seen


def test_critique_refinement_feeds_findings_back(policy, window, monkeypatch):
    good = [compact_text(window, continuation(window, d)) for d in (-0.1, 0.0, 0.1)]
    fake, seen = scripted_generate(policy, [["garbage", "more garbage", good[0]], good[1:]])
    monkeypatch.setattr(st, "generate", fake)
    config = SlowThinkConfig(samples=3, rounds=3, refine="critique", max_new_tokens=8, backtest=False)
    result = slow_think(policy, window, config, period=PERIOD)
    assert len(seen) == 2  # round 2 had enough passing drafts (3 >= ceil(3/2)): no round 3
    assert len(seen[1]) == 2  # one corrected answer asked for each failed draft
    assert "Your answer has problems: no forecast could be parsed from the answer" in seen[1][0]
    assert "garbage" in seen[1][0] and "more garbage" in seen[1][1]  # the draft is the assistant turn
    assert (result.kept, result.dropped, result.rounds) == (3, 2, 2)
    assert [d.round for d in result.drafts] == [1, 1, 1, 2, 2]
    np.testing.assert_allclose(result.point, np.median(np.stack([d.values for d in result.drafts if d.passed]), 0))


def test_single_pass_is_greedy_and_never_drops(policy, window, monkeypatch):
    a, b = single_pass(policy, [window, window], max_new_tokens=6)
    assert a.drafts[0].text == b.drafts[0].text  # greedy
    short = compact_text(window, continuation(window)[:4])
    fake, seen = scripted_generate(policy, [[short]])
    monkeypatch.setattr(st, "generate", fake)
    result = single_pass(policy, window, max_new_tokens=8)
    assert not result.used_fallback and result.kept == 1
    assert result.drafts[0].findings == ["the answer has 4 values but the horizon is 24"]
    assert result.point.shape == (24,) and np.all(result.point[4:] == result.point[3])  # extended, not dropped
    np.testing.assert_array_equal(result.quantiles[0.1], result.point)


def test_single_pass_after_a_forced_reasoning(policy, window, monkeypatch):
    """thoughts: the prompt ends with <think>thought</think> and the opening answer tag; the model
    writes only the values, and the draft's text is the whole completion."""
    values = continuation(window)
    answer = compact_text(window, values)
    fake, seen = scripted_generate(policy, [[answer[answer.index("<answer>") + len("<answer>"):]] * 2])
    monkeypatch.setattr(st, "generate", fake)
    empty, other = single_pass(policy, [window, window], max_new_tokens=8, thoughts=["", "level 11, rising"])
    assert seen[0][0].endswith("<think></think>\n<answer>")
    assert seen[0][1].endswith("<think>level 11, rising</think>\n<answer>")
    assert empty.drafts[0].text.startswith("<think></think>\n<answer>")
    np.testing.assert_allclose(empty.point, other.point)
    np.testing.assert_allclose(empty.point, values, atol=np.ptp(window.history) / 40)  # the 2-digit scale's rounding


def test_an_unknown_refine_is_refused():
    with pytest.raises(ValueError, match="refine"):
        SlowThinkConfig(refine="vote")


# ---------------------------------------------------------------- reflecting on the method: the backtest


def test_backtest_window_cuts_the_history(window):
    test = backtest_window(window)                                       # L = 96, H = 24: the last 24
    np.testing.assert_array_equal(test.history, window.history[:72])
    np.testing.assert_array_equal(test.target, window.history[72:])
    assert test.target_dates == window.history_dates[72:] and test.dataset == window.dataset
    long = replace(window, target=np.zeros(200), target_dates=[""] * 200)  # H > L/2: half the history
    assert backtest_window(long).lookback == 48 and backtest_window(long).horizon == 48
    short = replace(window, history=window.history[:7], history_dates=window.history_dates[:7])
    assert backtest_window(short) is None                                 # 4 + 3: too short to cut


def result_of(window, rows):
    """conclude() over drafts whose forecasts are ``rows`` (K, H)."""
    drafts = [st.Draft(f"draft {k}", np.asarray(r, float), []) for k, r in enumerate(rows)]
    return conclude(window, drafts, 1, PERIOD)


def test_choose_answer_by_the_backtest_error_by_hand(window):
    test = backtest_window(window)
    truth = continuation(window)
    drafted = result_of(window, [truth + 1, truth + 2, truth + 6])         # median truth + 2
    greedy = result_of(window, [truth - 1])
    # on the backtest the median is off by 3 everywhere, the greedy draft by 1: answer greedily
    test_drafted = result_of(test, [test.target + 3])
    test_greedy = result_of(test, [test.target - 1])
    chosen = choose_answer(drafted, greedy, test, test_drafted, test_greedy)
    assert chosen.answer == "greedy" and chosen.backtest_mae == {"median": 3.0, "greedy": 1.0}
    np.testing.assert_allclose(chosen.point, truth - 1)
    # the drafts' spread moves with the point: offsets -1, 0, +4 around it
    np.testing.assert_allclose(chosen.samples, np.stack([truth - 2, truth - 1, truth + 3]))
    np.testing.assert_allclose(chosen.quantiles[0.5], truth - 1)
    np.testing.assert_allclose(chosen.quantiles[0.9], truth - 1 + np.quantile([-1, 0, 4], 0.9))
    assert [d.text for d in chosen.drafts] == ["draft 0", "draft 1", "draft 2"]
    # a tie keeps the median; so does a greedy draft that fell back
    tie = choose_answer(drafted, greedy, test, test_drafted, result_of(test, [test.target - 3]))
    assert tie.answer == "median" and tie.backtest_mae == {"median": 3.0, "greedy": 3.0}
    np.testing.assert_allclose(tie.point, truth + 2)
    fell_back = conclude(window, [st.Draft("no numbers", None, ["no forecast"])], 1, PERIOD)
    assert choose_answer(drafted, fell_back, test, test_drafted, test_greedy).answer == "median"


def test_slow_think_answers_greedily_where_the_backtest_says_so(policy, window, monkeypatch):
    test = backtest_window(window)
    truth, past = continuation(window), test.target
    good, off = compact_text(window, truth), compact_text(window, truth + 0.5)
    test_off = compact_text(test, past + 0.5)
    # round 1: 3 drafts of the window (all 0.5 high), 3 of its backtest (0.5 high); then greedy for
    # both, each exact: the greedy way won the backtest, so the window's answer is its greedy draft
    fake, seen = scripted_generate(policy, [[off] * 3 + [test_off] * 3, [good, compact_text(test, past)]])
    monkeypatch.setattr(st, "generate", fake)
    result = slow_think(policy, window, SlowThinkConfig(samples=3, rounds=1, max_new_tokens=8), period=PERIOD)
    assert len(seen) == 2 and len(seen[0]) == 2 and len(seen[1]) == 2
    assert str(len(test.history)) in seen[0][1] and str(len(window.history)) in seen[0][0]
    assert result.answer == "greedy" and result.backtest_mae["greedy"] < result.backtest_mae["median"]
    half_step = compact_scaler(window, 2).scale / 2
    assert np.abs(result.point - truth).max() <= half_step + 1e-9
