"""The judge in the product: backtest, evidence, the model's judgement, the combined forecast, its band.

For a batch of series (every value before each origin): the candidates are backtested together
(timer1.core.backtest), the evidence is written for the judge (timer1.core.judge), the model answers
``samples`` judgements per series and the readable ones' weights are averaged (one greedy answer when
``samples`` is 1), the forecast is the weighted combination of the candidates' forecasts, and the
band comes from the combination's own backtest residuals (the weights applied to every candidate's
residuals at every origin), by split conformal as reflection's (timer1.forecast.reflect.band_samples).
A series whose judgements are all unreadable gets the rule's weights and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from timer1.core.codec import chat_ids
from timer1.core.judge import JudgeCase, combine, judge_prompt, parse_weights, rule_weights
from timer1.core.sampler import generate
from timer1.util.seeding import derive_seed

JUDGE_TEMPERATURE = 1.0   # the temperature GRIP samples at: averaged samples estimate the policy's mean judgement
JUDGE_MAX_TOKENS = 256    # a judgement's budget (the teacher's completions take about 170 tokens)


@dataclass
class Judgement:
    """One series' judgement: weights (K,) over ``names``, how many of the sampled answers were
    readable (0: the rule's weights), the point (H,) and the band as samples (levels, H) or None."""

    names: list[str]
    weights: np.ndarray
    read: int
    point: np.ndarray
    samples: np.ndarray | None
    text: str

    @property
    def source(self) -> str:
        """The weights as ``source`` writes them: ``judge: theta 0.75 + ets 0.25`` (``rule:`` when no
        answer was readable)."""
        kept = [k for k in np.argsort(-self.weights, kind="stable") if self.weights[k] > 0]
        parts = " + ".join(f"{self.names[k]} {self.weights[k]:.2f}" for k in kept)
        return f"{'judge' if self.read else 'rule'}: {parts}"


@torch.no_grad()
def judge_texts(policy, cases: list[JudgeCase], samples: int, seed: int) -> list[list[str]]:
    """``samples`` completions per case (greedy when 1), decoded, case-major."""
    prompts = [chat_ids(policy.tokenizer, [{"role": "user", "content": judge_prompt(c.evidence)}]) for c in cases]
    sampling = {"temperature": 0.0} if samples == 1 else {"temperature": JUDGE_TEMPERATURE}
    out = generate(policy.model, prompts, max_new_tokens=JUDGE_MAX_TOKENS, num_samples=samples,
                   eos_ids=policy.tokenizer.eos_ids, seed=[derive_seed(seed, i) for i in range(len(cases))],
                   **sampling)
    texts = [policy.tokenizer.decode(t, skip_special_tokens=True) for t in out.tokens]
    return [texts[i * samples:(i + 1) * samples] for i in range(len(cases))]


def mean_weights(texts: list[str], case: JudgeCase) -> tuple[np.ndarray, int]:
    """(weights, readable answers): the mean of the readable answers' weights, or the rule's."""
    read = [w for w in (parse_weights(t, case.evidence.names) for t in texts) if w is not None]
    if not read:
        return rule_weights(case.evidence), 0
    return np.mean(read, axis=0), len(read)


def combined_band(weights: np.ndarray, residuals: np.ndarray, point: np.ndarray) -> np.ndarray | None:
    """The band around ``point`` from the combination's backtest residuals: weights (K,) applied to
    the candidates' residuals (K, O, H)."""
    from timer1.forecast.reflect import band_samples

    return band_samples(point, np.tensordot(weights, residuals, axes=1))  # (O, H) residuals


def judge_series(policy, cases: list[JudgeCase], *, samples: int = 1, seed: int = 0,
                 batch: int = 64) -> list[Judgement]:
    """The judgement of each case (built by timer1.core.judge.build_cases, so with its backtest
    residuals), ``batch`` cases per call."""
    out = []
    for start in range(0, len(cases), batch):
        chunk = cases[start:start + batch]
        for case, texts in zip(chunk, judge_texts(policy, chunk, samples, seed + start)):
            weights, read = mean_weights(texts, case)
            point = combine(case.forecasts, weights)
            out.append(Judgement(case.evidence.names, weights, read, point,
                                 combined_band(weights, case.residuals, point), texts[0]))
    return out


def as_result(judgement: Judgement):
    """The judgement as the forecasting loop's per-window result (timer1.core.slow_think.SlowThinkResult):
    the combination's point, its band's samples (the point alone when too few residuals: no band),
    ``source`` naming the weights, the judge's text as the reasoning."""
    from timer1.core.slow_think import SlowThinkResult, aggregate

    samples = judgement.samples if judgement.samples is not None else judgement.point[None, :]
    _, quantiles = aggregate(samples)
    return SlowThinkResult(point=judgement.point.copy(), quantiles=quantiles, samples=samples,
                           reasoning=[judgement.text], drafts=[], kept=judgement.read, dropped=0, rounds=1,
                           source=judgement.source, answer="judge",
                           band="backtest errors" if judgement.samples is not None else "none")
