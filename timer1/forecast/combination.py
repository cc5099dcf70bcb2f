"""The default forecast: backtest, evidence, the weights (the judge's, or the equal mean of the best
TOP_K), the combined forecast, its band.

For a batch of series (every value before each origin): the candidates are backtested together
(timer1.core.backtest). Without a judge the weights are the equal mean of the TOP_K candidates of least
backtest error (timer1.core.combine.top_mean_weights); with one, the evidence is written for the judge
(timer1.core.judge), the model answers ``samples`` judgements per series and the readable ones' weights
are averaged (one greedy answer when ``samples`` is 1). The forecast is the weighted combination of the
candidates' forecasts; the band comes from the combination's own backtest residuals (the weights
applied to every candidate's residuals at every origin), by split conformal as reflection's
(timer1.forecast.reflect.band_samples), widened per level by COMBINATION_BAND. A series whose
judgements are all unreadable gets the rule's weights and says so.

TOP_K and COMBINATION_BAND were chosen on training cases and checked on validation cases
(``benchmarks/default_combination.py``; docs/results.md has the tables), never on test windows or the
public series the results report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from timer1.core.combine import top_mean_weights
from timer1.core.judge import JudgeCase, combine, judge_texts, mean_weights
from timer1.forecast.band import BandCalibration, widen_samples
from timer1.util.seeding import derive_seed

JUDGE_MAX_TOKENS = 256    # a judgement's budget (the teacher's completions take about 170 tokens)
JUDGE_SAMPLES = 8         # judgements averaged per series: on the judge's validation cases 8 averaged scored
                          # 2.815 geometric-mean MASE against one greedy answer's 2.944 (the rule: 3.072)
TOP_K = 3                 # candidates the default averages without a judge: of k = 1..5 the least geometric-mean
                          # MASE on the training cases, 2.787 (the rule: 2.935); validation 2.840 (rule 3.072)
COMBINATION_BAND = BandCalibration((0.5, 0.8, 0.9, 0.95), (1.088, 1.133, 1.184, 1.164))
                          # per central coverage, the factor that makes the best 3's band cover that share of
                          # the training outcomes (its split-conformal 10-90% band covered 77.3%)


@dataclass
class Judgement:
    """One series' weights (K,) over ``names``, how many of the judge's sampled answers were readable,
    the point (H,), the band as samples (levels, H) or None, and what weighed: ``by`` "judge", "rule"
    (no judgement was readable) or "best 3" (the equal mean without a judge)."""

    names: list[str]
    weights: np.ndarray
    read: int
    point: np.ndarray
    samples: np.ndarray | None
    text: str
    by: str

    @property
    def source(self) -> str:
        """The weights as ``source`` writes them: ``judge: theta 0.75 + ets 0.25`` (``rule:`` when no
        answer was readable, ``best 3:`` for the equal mean without a judge)."""
        kept = [k for k in np.argsort(-self.weights, kind="stable") if self.weights[k] > 0]
        parts = " + ".join(f"{self.names[k]} {self.weights[k]:.2f}" for k in kept)
        return f"{self.by}: {parts}"


def combined_band(weights: np.ndarray, residuals: np.ndarray | None, point: np.ndarray,
                  calibration: BandCalibration = COMBINATION_BAND) -> np.ndarray | None:
    """The band around ``point`` from the combination's backtest residuals: weights (K,) applied to
    the candidates' residuals (K, O, H), split conformal per step, widened per level by
    ``calibration``; None without residuals (cases read back from training files) or too few."""
    from timer1.forecast.reflect import band_samples

    if residuals is None:
        return None
    samples = band_samples(point, np.tensordot(weights, residuals, axes=1))  # (O, H) residuals
    return None if samples is None else widen_samples(samples, calibration)


def best_k(case: JudgeCase) -> Judgement:
    """The default's judgement without a judge: the equal mean of the TOP_K of least backtest error."""
    weights = top_mean_weights(case.evidence.errors, TOP_K)
    point = combine(case.forecasts, weights)
    return Judgement(case.evidence.names, weights, 0, point, combined_band(weights, case.residuals, point),
                     f"the equal mean of the {TOP_K} candidates of least backtest error", f"best {TOP_K}")


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


def is_combination(result) -> bool:
    """Whether a forecasting result (timer1.core.slow_think.SlowThinkResult) is a combination made here."""
    return result.answer in ("judge", "rule", f"best {TOP_K}")


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
    the best TOP_K's equal mean when it is None), the combination and its band, as results
    (``as_result``); None where a history has no backtest origin."""
    from timer1.core.backtest import Problem
    from timer1.core.judge import build_cases

    n = len(fulls)
    cases = build_cases([Problem(f.history, horizon, p) for f, p in zip(fulls, periods)],
                        list(steps) if steps is not None else ["unknown"] * n)
    live = [i for i in range(n) if cases[i] is not None]
    own_seeds = [seeds[i] if seeds is not None else 0 for i in live]
    out: list = [None] * n
    judged = ([best_k(cases[i]) for i in live] if judge is None
              else judge_series(judge, [cases[i] for i in live], seeds=own_seeds))
    for i, judgement in zip(live, judged):
        out[i] = as_result(judgement)
    return out
