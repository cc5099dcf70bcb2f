"""The judge task inside train_sft.py and train_grip.py (``--data.judge_dir=DIR``).

The training loops stay the forecasting task's; what changes is what a prompt is, how a completion
is rewarded and how the policy is validated:

- prompts: the case's evidence as one user turn (timer1.core.judge.judge_prompt);
- reward: timer1.core.judge.judge_reward on the combined forecast (GRIP);
- validation: the policy judges held-out cases (greedy), the combination is scored by MASE (the
  series' own one-step scale), an unreadable answer takes the rule's forecast and is counted.
  ``val_mase`` is then the checkpoint score as for forecasting; ``val_rule_mase`` is the rule's on
  the same cases, the number to beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from timer1.core.judge import JudgeCase, combine, judge_reward, judge_texts, mean_weights, rule_weights
from timer1.core.rewards import REWARD_KEYS
from timer1.train.judge_data import case_from_json, read_cases
from timer1.train.validation import evaluating
from timer1.util import dist


@dataclass
class ScaledCase:
    """A judge case and its MASE scale (the series' mean absolute one-step change)."""

    case: JudgeCase
    scale: float


def split_path(judge_dir: str, split: str) -> Path:
    """``judge_dir/<split>.jsonl``; a missing file is a one-line error naming the command that builds it."""
    path = Path(judge_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no judge cases at {path}: build them with python -m timer1.train.judge_data "
                                f"--out {judge_dir}")
    return path


def load_cases(judge_dir: str, split: str) -> list[ScaledCase]:
    """The cases of ``judge_dir/<split>.jsonl``."""
    return [ScaledCase(case, scale) for case, scale in read_cases(split_path(judge_dir, split))]


def scaled_case(record: dict) -> ScaledCase:
    """The case of one record of a judge JSONL file (timer1.train.judge_data)."""
    return ScaledCase(*case_from_json(record["case"]))


def score_judgements(texts: list[str], cases: Sequence[JudgeCase], K: int) -> tuple[torch.Tensor, dict]:
    """Rewards (B, K) of K completions per case (prompt-major) and every term as (B, K) arrays."""
    scores = [judge_reward(text, cases[i // K]) for i, text in enumerate(texts)]
    terms = {k: np.array([s[k] for s in scores], dtype=np.float64).reshape(len(cases), K)
             for k in (*REWARD_KEYS, "total")}
    return torch.tensor(terms["total"], dtype=torch.float32), terms


@torch.no_grad()
def evaluate_judgements(model: torch.nn.Module, tokenizer, cases: Sequence[ScaledCase], *, max_new_tokens: int,
                        batch_size: int = 8, info: Optional[dist.DistInfo] = None) -> dict:
    """``{"val_mse", "val_mase", "val_rule_mase", "val_unparsed", "val_n"}``: greedy judgements of
    held-out cases, their combined forecasts scored (MSE on the target-normalised scale, MASE on the
    series' one-step scale), averaged over cases; sharded over ranks like evaluate_forecasts."""
    shard = list(cases)
    if info is not None and info.distributed:
        shard = dist.shard_by_stride(shard, info.rank, info.world_size)
    sums = torch.zeros(5, dtype=torch.float64)   # mse, mase, rule mase, unparsed, n
    with evaluating(dist.unwrap(model)) as core:
        for i in range(0, len(shard), batch_size):
            chunk = shard[i:i + batch_size]
            answers = judge_texts(core, tokenizer, [c.case for c in chunk], samples=1, max_new_tokens=max_new_tokens)
            for c, texts in zip(chunk, answers):
                weights, read = mean_weights(texts, c.case)
                sums += torch.tensor([_normalised_mse(c.case, weights), _mase(c, weights),
                                      _mase(c, rule_weights(c.case.evidence)), float(not read), 1.0],
                                     dtype=torch.float64)
    if info is not None and info.distributed:
        sums = dist.all_reduce_mean(sums) * info.world_size
    n = max(sums[4].item(), 1.0)
    return {"val_mse": sums[0].item() / n, "val_mase": sums[1].item() / n, "val_rule_mase": sums[2].item() / n,
            "val_unparsed": int(round(sums[3].item())), "val_n": int(round(sums[4].item()))}


def _mase(c: ScaledCase, weights: np.ndarray) -> float:
    return float(np.mean(np.abs(combine(c.case.forecasts, weights) - c.case.target))) / c.scale


def _normalised_mse(case: JudgeCase, weights: np.ndarray) -> float:
    """MSE after dividing both by the target's std (the reward's normalisation), so cases weigh alike."""
    std = float(np.std(case.target))
    err = (combine(case.forecasts, weights) - case.target) / (std if std > 0 and math.isfinite(std) else 1.0)
    return float(np.mean(err ** 2))
