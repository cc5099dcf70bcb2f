"""Validation during training: the policy's forecasts on held-out windows (greedy, or slow thinking's
median of drafts), scored on the real scale; ``val_mase`` is the checkpoint score."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional, Sequence

import torch

from timer1.core.codec import PromptFormat, complete_forecast, forecast_from_completion, prompt_ids
from timer1.core.metrics import mae, mase, mse
from timer1.core.policy import Policy
from timer1.core.sampler import generate
from timer1.core.slow_think import SlowThinkConfig, slow_think
from timer1.util import dist, fsdp


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model` in eval mode inside the block (no dropout), back in its previous mode after it; its
    weights gathered whole when FSDP shards them (ranks decode different numbers of steps)."""
    was_training = model.training
    model.eval()
    try:
        with fsdp.gathered(model):
            yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate_forecasts(model: torch.nn.Module, tokenizer, windows: Sequence, fmt: PromptFormat, *,
                       max_new_tokens: int, batch_size: int = 8, samples: int = 1,
                       info: Optional[dist.DistInfo] = None) -> dict:
    """``{"val_mse", "val_mae", "val_mase", "val_unparsed", "val_n"}`` of one greedy answer per window
    (``samples=1``), or of slow thinking's median of ``samples`` drafts (one round, seed 0: every
    evaluation draws alike; what forecast.py does), averaged over windows on the real scale.

    A missing or short answer is completed (`timer1.core.codec.complete_forecast`) and counted unparsed.
    ``val_mase`` is scale-free, so it is the checkpoint score: raw MSE over a mix of datasets is decided
    by the largest-scale one. With a distributed `info` the windows are sharded by stride and the sums
    all-reduced, so every rank returns the same numbers.
    """
    shard = list(windows)
    if info is not None and info.distributed:
        shard = dist.shard_by_stride(shard, info.rank, info.world_size)
    sums = torch.zeros(6, dtype=torch.float64)         # mse, mae, mase, windows with a mase, unparsed, n
    with evaluating(dist.unwrap(model)) as core:
        for i in range(0, len(shard), batch_size):
            chunk = shard[i:i + batch_size]
            for window, (forecast, complete) in zip(chunk, _forecasts(core, tokenizer, chunk, fmt, max_new_tokens, samples)):
                scaled = mase(forecast, window.target, window.history)  # NaN for a flat history
                has_mase = math.isfinite(scaled)
                sums += torch.tensor([mse(forecast, window.target), mae(forecast, window.target),
                                      scaled if has_mase else 0.0, float(has_mase), float(not complete), 1.0],
                                     dtype=torch.float64)
    if info is not None and info.distributed:
        sums = dist.all_reduce_mean(sums) * info.world_size
    n = max(sums[5].item(), 1.0)
    return {"val_mse": sums[0].item() / n, "val_mae": sums[1].item() / n,
            "val_mase": sums[2].item() / sums[3].item() if sums[3].item() > 0 else float("nan"),
            "val_unparsed": int(round(sums[4].item())), "val_n": int(round(sums[5].item()))}


def _forecasts(model, tokenizer, windows: list, fmt: PromptFormat, max_new_tokens: int, samples: int) -> list:
    """(forecast (H,), was the model's own) per window: greedy, or slow thinking's median of ``samples``."""
    if samples > 1:
        config = SlowThinkConfig(samples=samples, rounds=1, max_new_tokens=max_new_tokens, seed=0)
        results = slow_think(Policy(model, tokenizer, "validation", fmt), windows, config)
        return [(r.point, r.fallback is None) for r in results]
    out = generate(model, [prompt_ids(tokenizer, w, fmt) for w in windows], max_new_tokens=max_new_tokens,
                   temperature=0.0, eos_ids=tokenizer.eos_ids)
    return [complete_forecast(forecast_from_completion(tokenizer.decode(t, skip_special_tokens=True), w, fmt), w)
            for w, t in zip(windows, out.tokens)]


def checkpoint_score(metrics: dict) -> Optional[float]:
    """Lower is better: ``val_mase`` (``val_mse`` when no window has one); None without an evaluation."""
    if "val_mse" not in metrics:
        return None
    mase_value = metrics.get("val_mase", float("nan"))
    return mase_value if math.isfinite(mase_value) else metrics["val_mse"]
