"""The judge task: Time-R1's recipe applied to weighing forecasters instead of writing digits.

The forecasting task (timer1.core.codec) asks the model for H numbers. The judge task asks the same
kind of model, trained by the same recipe (SFT warm-up, then GRIP), for what reasoning is good at:
reading the evidence about a series (timer1.core.evidence: its step, length, seasonal and trend
strength, a recent level shift, and every candidate's rolling-origin backtest errors) and answering
how much to trust each candidate. The forecast is the weighted combination of the candidates'
forecasts (Bates & Granger 1969), as FFORMA (Montero-Manso et al. 2020) learns it from features and
TSOrchestra (arXiv 2512.16022) learns it with GRPO.

The completion reasons inside ``<think>`` and answers inside ``<answer>``, one candidate a line::

    <think>theta has the lowest error at the latest origins ...</think>
    <answer>
    theta 0.75
    ets 0.25
    </answer>

``parse_weights`` never raises: unknown names are skipped, negative weights clipped to 0, the rest
renormalized to sum to 1; an answer with no positive weight is unreadable (None) and the caller falls
back to the rule (the candidate of least backtest error). The GRIP reward is the paper's (format,
length and accuracy terms, timer1.core.rewards) computed on the combined forecast, normalized by the
target, so series of any scale weigh alike.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from timer1.core.backtest import Problem, backtest
from timer1.core.codec import chat_ids
from timer1.core.combine import softmax_weights, top_mean_weights
from timer1.core.evidence import COLUMNS, LATEST, Evidence, gather_evidence
from timer1.core.rewards import PAPER, REWARD_KEYS, RewardOptions, format_reward, reward_terms
from timer1.core.sampler import generate

JUDGE_TEMPERATURE = 1.0   # the temperature GRIP samples at: averaged samples estimate the policy's mean judgement
INSTRUCTION = ("Weigh the forecasters for this series. Reason inside <think> </think>, then give each "
               "forecaster you keep and its weight inside <answer> </answer>, one per line, e.g. theta 0.75.")


@dataclass
class JudgeCase:
    """One judgement: the evidence shown, the candidates' forecasts now (K, H) in ``evidence.names``'
    order, on training windows the target (H,) they are scored against, and in the product the
    candidates' backtest residuals (K, O, H), which the combination's band is made of."""

    evidence: Evidence
    forecasts: np.ndarray
    target: np.ndarray | None = None
    residuals: np.ndarray | None = None


def number(value: float) -> str:
    """A scale-free number as the prompt writes it: three significant digits, no exponent."""
    if not math.isfinite(value):
        return "nan"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) >= 0.001 else "0"


def judge_prompt(evidence: Evidence) -> str:
    """The user turn of one judgement: the evidence, then the instruction. The candidates are listed
    best first (by the mean error over every origin), so the rule's choice is always the first line:
    a small model learns where to look before it learns to compare numbers."""
    e = evidence
    half = max(1, e.horizon // 2)
    seasonal = ", ".join(f"{number(s)} at period {m}" for m, s in e.seasonality) or "no period to test"
    lines = [f"Series: {e.length} {e.step} values; forecast the next {e.horizon}.",
             f"Seasonal strength: {seasonal}. Trend strength: {number(e.trend)}.",
             f"Last {e.horizon} values against the {e.horizon} before: {'+' if e.shift >= 0 else ''}{number(e.shift)}.",
             f"Backtest at {e.origins} origins, mean absolute error in units of the series' one-step change "
             f"(all origins, latest {min(LATEST, e.origins)}, steps 1-{half}, steps {min(half + 1, e.horizon)}-{e.horizon}):"]
    for k in np.argsort(e.errors[:, COLUMNS.index("all")], kind="stable"):  # the best over all origins first
        lines.append(f"{e.names[k]}: " + " ".join(number(v) for v in e.errors[k]))
    return "\n".join(lines + [INSTRUCTION])


def format_weights(names: list[str], weights: np.ndarray) -> str:
    """The answer block of ``weights`` (K,) over ``names``: candidates with a positive weight, the
    largest first, two decimals at most."""
    order = [k for k in np.argsort(-np.asarray(weights), kind="stable") if weights[k] > 0]
    return "<answer>\n" + "".join(f"{names[k]} {float(weights[k]):.2f}".rstrip("0").rstrip(".") + "\n"
                                  for k in order) + "</answer>"


def judge_completion(reasoning: str, names: list[str], weights: np.ndarray) -> str:
    """The full completion: the reasoning in ``<think>``, the weights in ``<answer>``."""
    return f"<think>{reasoning}</think>\n" + format_weights(names, weights)


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def answer_region(text: str) -> str | None:
    """The text inside the last ``<answer>`` (to ``</answer>`` or the end); None without one."""
    if not isinstance(text, str) or "<answer>" not in text:
        return None
    return text.rsplit("<answer>", 1)[1].split("</answer>", 1)[0]


def parse_weights(text: str, names: list[str]) -> np.ndarray | None:
    """(K,) weights over ``names`` summing to 1 from a completion, or None when unreadable. Items
    are separated by lines, commas or semicolons; each names a candidate (the longest name it starts
    with, case-insensitive) and then a number. Never raises."""
    region = answer_region(text)
    if region is None:
        return None
    weights = np.zeros(len(names))
    by_length = sorted(range(len(names)), key=lambda k: -len(names[k]))
    for item in re.split(r"[\n,;]", region):
        item = item.strip().lower()
        k = next((k for k in by_length if item.startswith(names[k].lower())), None)
        if k is None:
            continue
        found = _NUMBER.search(item[len(names[k]):])
        value = float(found.group()) if found else float("nan")
        if math.isfinite(value):
            weights[k] += max(0.0, value)
    total = weights.sum()
    return weights / total if total > 0 and math.isfinite(total) else None


def combine(forecasts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(H,) the weighted combination of the candidates' forecasts (K, H)."""
    return np.asarray(weights, dtype=np.float64) @ np.asarray(forecasts, dtype=np.float64)


def rule_weights(evidence: Evidence) -> np.ndarray:
    """(K,) the rule the judge replaces and falls back to: all weight on the candidate of least mean
    backtest error over every origin (reflection's choice, timer1.forecast.reflect)."""
    weights = np.zeros(len(evidence.names))
    weights[int(np.argmin(evidence.errors[:, COLUMNS.index("all")]))] = 1.0
    return weights


# the weighings without a model that evaluate.py and the benchmarks set beside the judge, by name:
# (evidence) -> (K,) weights
COMBINATIONS = {"rule": rule_weights,
                "top2": lambda evidence: top_mean_weights(evidence.errors, 2),
                "top3": lambda evidence: top_mean_weights(evidence.errors, 3),   # the default before the softmax
                "softmax": lambda evidence: softmax_weights(evidence.errors)}    # today's default


def judge_prompt_ids(tokenizer, case: JudgeCase) -> list[int]:
    """Token ids of the case's chat-templated prompt, ending with the assistant turn's opening."""
    return chat_ids(tokenizer, [{"role": "user", "content": judge_prompt(case.evidence)}])


@torch.no_grad()
def judge_texts(model, tokenizer, cases: list[JudgeCase], *, samples: int, max_new_tokens: int,
                seeds: list[int] | None = None) -> list[list[str]]:
    """``samples`` completions per case (greedy when 1, else at JUDGE_TEMPERATURE), decoded,
    case-major; with ``seeds`` (one per case) a case's judgements do not depend on the cases beside it."""
    sampling = {"temperature": 0.0} if samples == 1 else {"temperature": JUDGE_TEMPERATURE}
    out = generate(model, [judge_prompt_ids(tokenizer, c) for c in cases], max_new_tokens=max_new_tokens,
                   num_samples=samples, eos_ids=tokenizer.eos_ids, seed=seeds, **sampling)
    texts = [tokenizer.decode(t, skip_special_tokens=True) for t in out.tokens]
    return [texts[i * samples:(i + 1) * samples] for i in range(len(cases))]


def mean_weights(texts: list[str], case: JudgeCase) -> tuple[np.ndarray, int]:
    """(weights, readable answers): the mean of the readable answers' weights, or the rule's when
    none is readable (0 answers read)."""
    read = [w for w in (parse_weights(t, case.evidence.names) for t in texts) if w is not None]
    if not read:
        return rule_weights(case.evidence), 0
    return np.mean(read, axis=0), len(read)


def judge_reward(completion: str, case: JudgeCase, options: RewardOptions = PAPER) -> dict[str, float]:
    """Every reward term of one judgement and their sum under ``total``: the format of the
    completion, then length and accuracy of the combined forecast against ``case.target`` (none when
    the answer is unreadable). Never raises on the completion."""
    weights = parse_weights(completion, case.evidence.names)
    pred = None if weights is None else combine(case.forecasts, weights)
    terms = {"format": format_reward(completion if isinstance(completion, str) else "", options.strict_format),
             **reward_terms(pred, case.target, options)}
    terms["total"] = float(sum(terms[key] for key in REWARD_KEYS))
    return terms


def build_cases(problems: list[Problem], steps: list[str], targets: list | None = None) -> list[JudgeCase | None]:
    """The judgement of each problem (None where its history has no backtest origin): the backtest of
    every candidate (all problems in one batch), the evidence, and the target when given."""
    tests = backtest(problems)
    targets = targets if targets is not None else [None] * len(problems)
    return [None if t is None else JudgeCase(gather_evidence(p.history, t, step), t.forecasts,
                                              None if y is None else np.asarray(y, dtype=np.float64), t.residuals)
            for p, t, step, y in zip(problems, tests, steps, targets)]
