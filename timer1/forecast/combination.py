"""The default forecast: backtest, evidence, the weights (the judge's, or the learned softmax of the
backtest errors), the combined forecast, its band.

For a batch of series (every value before each origin): the candidates are backtested together
(timer1.core.backtest). Without a judge the weights are the learned softmax of the candidates' backtest
errors (timer1.core.combine.softmax_weights: FFORMA's output layer on the backtest); with one, the
evidence is written for the judge
(timer1.core.judge), the model answers ``samples`` judgements per series and the readable ones' weights
are averaged (one greedy answer when ``samples`` is 1). The forecast is the weighted combination of the
candidates' forecasts; the band comes from the candidates' backtest residuals at every origin, each
candidate's counting with its weight, by weighted split conformal as reflection's
(timer1.forecast.reflect.band_samples), widened per level by COMBINATION_BAND. A series whose
judgements are all unreadable gets the rule's weights and says so.

The softmax's coefficients (combine.SOFTMAX_COEF) and COMBINATION_BAND were fitted on training cases
and checked on validation cases
(``benchmarks/default_combination.py``; docs/results.md has the tables), never on test windows or the
public series the results report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from timer1.core.combine import softmax_weights
from timer1.core.judge import JudgeCase, combine, judge_texts, mean_weights
from timer1.forecast.band import BandCalibration, widen_samples
from timer1.util.seeding import derive_seed

JUDGE_MAX_TOKENS = 256    # a judgement's budget (the teacher's completions take about 170 tokens)
JUDGE_SAMPLES = 8         # judgements averaged per series: on the judge's validation cases 8 averaged scored
                          # 2.815 geometric-mean MASE against one greedy answer's 2.944 (the rule: 3.072)
COMBINATION_BAND = BandCalibration((0.5, 0.8, 0.9, 0.95), (0.976, 1.027, 1.064, 1.169))
                          # per central coverage, the factor that makes the default's band cover that share
                          # of the training outcomes (its split-conformal 10-90% band covered 80.5%)


@dataclass
class Judgement:
    """One series' weights (K,) over ``names``, how many of the judge's sampled answers were readable,
    the point (H,), the band as samples (levels, H) or None, and what weighed: ``by`` "judge", "rule"
    (no judgement was readable) or "softmax" (the learned softmax without a judge)."""

    names: list[str]
    weights: np.ndarray
    read: int
    point: np.ndarray
    samples: np.ndarray | None
    text: str
    by: str

    @property
    def source(self) -> str:
        """The weights as ``source`` writes them, largest first: ``judge: theta 0.75 + ets 0.25``
        (``rule:`` when no answer was readable, ``softmax:`` without a judge); weights that round to
        0.00 are left out of the text, not of the forecast."""
        kept = [k for k in np.argsort(-self.weights, kind="stable") if round(float(self.weights[k]), 2) > 0]
        parts = " + ".join(f"{self.names[k]} {self.weights[k]:.2f}" for k in kept)
        return f"{self.by}: {parts}"


def combined_band(weights: np.ndarray, residuals: np.ndarray | None, point: np.ndarray,
                  calibration: BandCalibration = COMBINATION_BAND) -> np.ndarray | None:
    """The band around ``point`` from the candidates' backtest residuals (K, O, H), each candidate's
    counting with its weight (K,): weighted split conformal per step (the weights' mixture of the
    candidates' errors, not the errors of their weighted sum, whose backtest averages away what the
    candidates miss together), widened per level by ``calibration``; None without residuals (cases
    read back from training files) or too few."""
    from timer1.forecast.reflect import band_samples

    if residuals is None:
        return None
    candidates, origins, horizon = residuals.shape
    samples = band_samples(point, residuals.reshape(candidates * origins, horizon), np.repeat(weights, origins))
    return None if samples is None else widen_samples(samples, calibration)


def learned(case: JudgeCase) -> Judgement:
    """The default's judgement without a judge: the learned softmax of the backtest errors."""
    weights = softmax_weights(case.evidence.errors)
    point = combine(case.forecasts, weights)
    return Judgement(case.evidence.names, weights, 0, point, combined_band(weights, case.residuals, point),
                     "the learned softmax of the candidates' backtest errors", "softmax")


def judge_series(policy, cases: list[JudgeCase], *, samples: int = JUDGE_SAMPLES, seeds: list[int] | None = None,
                 batch: int = 64) -> list[Judgement]:
    """The judgement of each case (built by timer1.core.judge.build_cases, so with its backtest
    residuals), ``batch`` cases per call; ``seeds``: one per case (default 0 each)."""
    seeds = [derive_seed(s, 0) for s in (seeds if seeds is not None else [0] * len(cases))]
    out = []
    for start in range(0, len(cases), batch):
        chunk = cases[start:start + batch]
        texts_of = judge_texts(policy.model, policy.tokenizer, chunk, samples=samples, max_new_tokens=JUDGE_MAX_TOKENS,
                               seeds=seeds[start:start + batch])
        for case, texts in zip(chunk, texts_of):
            weights, read = mean_weights(texts, case)
            point = combine(case.forecasts, weights)
            out.append(Judgement(case.evidence.names, weights, read, point,
                                 combined_band(weights, case.residuals, point), texts[0], "judge" if read else "rule"))
    return out


def tally_key(source: str) -> str:
    """A ``source`` as summaries count it: a combination's weighing and its candidate of most weight
    ("softmax, most on theta": every combination's weights differ), any other source as it is."""
    by, weighed, parts = source.partition(": ")
    leading = re.match(r"(.+?) \d+\.\d+(?: \+ |$)", parts)  # a name may hold " + " itself: "stl + ar 0.52"
    return f"{by}, most on {leading.group(1)}" if weighed and leading else source


def is_combination(result) -> bool:
    """Whether a forecasting result (timer1.core.slow_think.SlowThinkResult) is a combination made here."""
    return result.answer in ("judge", "rule", "softmax")


def as_result(judgement: Judgement):
    """The judgement as the forecasting loop's per-window result (timer1.core.slow_think.SlowThinkResult):
    the combination's point, its band's samples (the point alone when too few residuals: no band),
    ``source`` naming the weights, the judge's text as the reasoning."""
    from timer1.core.slow_think import SlowThinkResult, aggregate

    samples = judgement.samples if judgement.samples is not None else judgement.point[None, :]
    _, quantiles = aggregate(samples)
    return SlowThinkResult(point=judgement.point.copy(), quantiles=quantiles, samples=samples,
                           reasoning=[judgement.text], drafts=[], kept=judgement.read, dropped=0, rounds=1,
                           source=judgement.source, answer=judgement.by,
                           band="backtest errors" if judgement.samples is not None else "none")


def combined_results(judge, fulls: list, horizon: int, periods: list, steps: list[str] | None,
                     seeds: list[int] | None) -> list:
    """The default mode's answer per window (each with every value before its origin, all of one
    horizon): the candidates backtested together, the weights (the ``judge``'s averaged judgements, or
    the learned softmax when it is None), the combination and its band, as results
    (``as_result``); None where a history has no backtest origin."""
    from timer1.core.backtest import Problem
    from timer1.core.judge import build_cases

    n = len(fulls)
    cases = build_cases([Problem(f.history, horizon, p) for f, p in zip(fulls, periods)],
                        list(steps) if steps is not None else ["unknown"] * n)
    live = [i for i in range(n) if cases[i] is not None]
    own_seeds = [seeds[i] if seeds is not None else 0 for i in live]
    out: list = [None] * n
    judged = ([learned(cases[i]) for i in live] if judge is None
              else judge_series(judge, [cases[i] for i in live], seeds=own_seeds))
    for i, judgement in zip(live, judged):
        out[i] = as_result(judgement)
    return out
