"""The judge's SFT teacher, Algorithm 1 of the paper (arXiv 2506.10630) applied to judgements.

For forecasting, the teacher drafts k candidate answers, keeps the one of least error against the
target and revises it toward the truth. For a judgement the same three steps are:

1. draft: the judgements the evidence alone suggests (``draft_weights``): the rule (least backtest
   error), the least error at the latest origins, the equal mean of the best two and three;
2. select: the draft whose combined forecast has the least MAE against the target;
3. revise toward the truth: the best sparse weights for this target among the REVISE_AMONG
   candidates of least backtest error (``oracle_weights``: one of them, or two in steps of a
   quarter), kept when they beat the selected draft.

The revision stays among the best-backtested candidates on purpose: the oracle over the whole pool
(a candidate the evidence ranks last that happened to fit this target) is noise a model cannot learn
from the evidence; measured, a tiny model trained on it wrote judgements worse than the rule
(validation MASE 4.45 against 4.30) and reasoning that contradicted its prompt.

The reasoning written before the answer cites the evidence for each candidate the answer keeps (the
column of the backtest where it does best, and what the seasonal and trend strength say), so the
model learns which evidence points where; it is short, because a judgement's cost is its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from timer1.core.combine import top_mean_weights
from timer1.core.evidence import COLUMNS, Evidence
from timer1.core.judge import JudgeCase, judge_completion, judge_prompt, number, rule_weights

PAIR_STEPS = (0.25, 0.5, 0.75)   # the first candidate's share in an oracle pair
REVISE_AMONG = 3                  # the revision picks among this many candidates of least backtest error
COLUMN_WORDS = {"all": "over all origins", "latest": "at the latest origins",
                "early": "on the first half of the horizon", "late": "on the second half of the horizon"}


def case_mae(case: JudgeCase, weights: np.ndarray) -> float:
    """MAE of the combination ``weights`` against the case's target."""
    return float(np.mean(np.abs(np.asarray(weights) @ case.forecasts - case.target)))


def draft_weights(evidence: Evidence) -> list[np.ndarray]:
    """The judgements the evidence alone suggests (step 1), each (K,)."""
    latest = np.zeros(len(evidence.names))
    latest[int(np.argmin(evidence.errors[:, COLUMNS.index("latest")]))] = 1.0
    drafts = [rule_weights(evidence), latest, top_mean_weights(evidence.errors, 2), top_mean_weights(evidence.errors, 3)]
    return drafts[:len(evidence.names)]


def oracle_weights(case: JudgeCase, among: int | None = None) -> np.ndarray:
    """(K,) the best sparse weights for the target: a single candidate, or a pair with the first's
    share in PAIR_STEPS, whichever has the least MAE (ties: the simpler answer); only among the
    ``among`` candidates of least mean backtest error when given (all: the unconstrained oracle)."""
    K = len(case.evidence.names)
    order = np.argsort(case.evidence.errors[:, COLUMNS.index("all")], kind="stable")
    allowed = sorted(order[:among] if among else range(K))
    options = [np.eye(K)[k] for k in allowed]
    for i, j in combinations(allowed, 2):
        for share in PAIR_STEPS:
            w = np.zeros(K)
            w[i], w[j] = share, 1 - share
            options.append(w)
    maes = [case_mae(case, w) for w in options]
    return options[int(np.argmin(maes))]   # argmin keeps the first of equal MAEs: singles come first


def teacher_weights(case: JudgeCase) -> np.ndarray:
    """Steps 1-3: the best draft, revised to the oracle's weights when those are better."""
    drafts = draft_weights(case.evidence)
    best = min(drafts, key=lambda w: case_mae(case, w))
    oracle = oracle_weights(case, REVISE_AMONG)
    return oracle if case_mae(case, oracle) < case_mae(case, best) else best


def reasoning(evidence: Evidence, weights: np.ndarray) -> str:
    """A short analysis citing, for each kept candidate, the backtest column where it does best."""
    e = evidence
    sentences = [_shape_sentence(e)]
    for k in [k for k in np.argsort(-weights, kind="stable") if weights[k] > 0]:
        ranks = np.argsort(np.argsort(e.errors, axis=0, kind="stable"), axis=0, kind="stable")[k]  # (4,)
        c = int(np.argmin(ranks))
        place = "the lowest" if ranks[c] == 0 else f"rank {ranks[c] + 1} of {len(e.names)}"
        sentences.append(f"{e.names[k]} has {place} error {COLUMN_WORDS[COLUMNS[c]]} ({number(e.errors[k, c])}).")
    if np.count_nonzero(weights) > 1:
        sentences.append("Their errors are close, so I combine them.")
    return " ".join(sentences)


def _shape_sentence(e: Evidence) -> str:
    strongest = max(e.seasonality, key=lambda p: p[1], default=None)
    if strongest is not None and strongest[1] >= 0.5:
        season = f"Seasonality is strong at period {strongest[0]} ({number(strongest[1])})"
    elif strongest is not None and strongest[1] >= 0.2:
        season = f"Seasonality is weak at period {strongest[0]} ({number(strongest[1])})"
    else:
        season = "There is little seasonality"
    trend = "a clear trend" if e.trend >= 0.5 else "no clear trend"
    shift = f", and the level moved {number(e.shift)} lately" if abs(e.shift) >= 2 else ""
    return f"{season}, {trend} ({number(e.trend)}){shift}."


@dataclass
class JudgeSample:
    """One SFT sample: the prompt (user turn), the teacher's completion, its weights (K,)."""

    prompt: str
    completion: str
    weights: np.ndarray


def teacher_sample(case: JudgeCase) -> JudgeSample:
    """The SFT sample of one training case (its target known)."""
    weights = teacher_weights(case)
    text = judge_completion(reasoning(case.evidence, weights), case.evidence.names, weights)
    return JudgeSample(judge_prompt(case.evidence), text, weights)
