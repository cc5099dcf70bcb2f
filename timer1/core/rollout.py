"""The rollout half of a GRIP step as small functions; train_grip.py runs them in order.

One GRIP step (paper Sec. 3.3; the objective is ``timer1.core.grip``) on B prompts:

1. ``sample_rollout``: the current policy samples ``K = k * G`` completions per prompt;
2. ``score_rollout``: each completion is scored by ``compute_reward`` -> rewards ``(B, K)``;
3. ``timer1.core.grip.make_groups``: G of the K are selected per prompt, with advantages and weights;
4. ``build_batch``: the selected trajectories become one token batch, each distinct prompt stored
   once and each completion pointing to its prompt;
5. ``completion_logprobs``: the one function that turns a batch into per-token log-probs
   ``(N, T)``, encoding each prompt once; the reference pass and every update use it alike.

Old log-probs are not a separate pass: at the first inner update of a rollout the weights are
still the sampling weights, so ``old = logp.detach()`` of that forward is the old policy by
definition (ratio exactly 1 there, whatever the dtype, autocast or checkpointing), and later
inner updates reuse it. The sampler's own log-probs come from another kernel order (KV-cached
decoding) and would bias the ratio in bf16, so they are not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from timer1.core.grip import Groups
from timer1.core.model import KVCache, Qwen2Config, head_logprobs
from timer1.core.rewards import REWARD_KEYS, compute_reward
from timer1.core.sampler import generate, left_pad
from timer1.util.dist import unwrap
from timer1.util.seeding import derive_seed


@dataclass
class Rollout:
    """K sampled completions for each of B prompts, prompt-major (sample i continues prompt i // K)."""

    prompts: list[list[int]]  # B token-id lists
    completions: list[list[int]]  # B * K token-id lists (eos kept as the last token when hit)
    finished: list[bool]  # B * K, stopped on an eos id (False: cut at max_new_tokens)
    texts: list[str]  # B * K decoded completions (without the closing eos)
    K: int

    @property
    def num_tokens(self) -> int:
        return sum(len(c) for c in self.completions)


def sample_rollout(model: nn.Module, tokenizer, prompts: list[list[int]], *, K: int, max_new_tokens: int,
                   seed: int = 0, prompts_per_call: int = 0, **sampling) -> Rollout:
    """Sample K completions per prompt from ``model`` as it is now (the old policy of this step);
    ``sampling``: temperature, top_k, top_p (timer1.core.sampler.Sampling). Each sampler call decodes
    the K rows of ``prompts_per_call`` prompts together; 0: as many prompts as :func:`kv_budget`
    holds the KV cache of (:func:`fitting_prompts`)."""
    core = unwrap(model)
    param = core.lm_head.weight
    max_len = max(len(p) for p in prompts) + max_new_tokens
    step = prompts_per_call or fitting_prompts(core.config, K, max_len, param.dtype, kv_budget(param.device))
    tokens, finished = [], []
    for call, start in enumerate(range(0, len(prompts), step)):
        out = generate(core, prompts[start:start + step], max_new_tokens=max_new_tokens, num_samples=K,
                       eos_ids=tokenizer.eos_ids, seed=derive_seed(seed, call), **sampling)
        tokens += out.tokens
        finished += out.finished
    texts = [tokenizer.decode(toks[:-1] if done else toks) for toks, done in zip(tokens, finished)]
    return Rollout(prompts, tokens, finished, texts, K)


KV_SHARE_OF_FREE = 0.5
"""The share of the GPU memory free to PyTorch that one sampler call's KV cache may fill: the rest is
for the prefill's copy of the prompts' cache, the step's activations and the (N, V) sampling tensors."""
CPU_KV_BUDGET = 4 << 30
"""KV-cache bytes a sampler call may fill off CUDA, where free memory is not asked (4 GiB)."""


def kv_bytes_per_row(config: Qwen2Config, max_len: int, dtype: torch.dtype) -> int:
    """Bytes of one row's KV cache (:class:`timer1.core.model.KVCache`): keys and values, every layer,
    every kv head, ``head_dim`` numbers for each of ``max_len`` slots."""
    per_slot = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim
    return per_slot * max_len * dtype.itemsize


def fitting_prompts(config: Qwen2Config, K: int, max_len: int, dtype: torch.dtype, budget: int) -> int:
    """How many prompts' ``K`` rows of ``max_len`` slots fit ``budget`` bytes of KV cache (at least one:
    a prompt's group is never split over calls)."""
    return max(1, budget // (K * kv_bytes_per_row(config, max_len, dtype)))


def kv_budget(device: torch.device) -> int:
    """KV-cache bytes one sampler call may use on ``device``: :data:`KV_SHARE_OF_FREE` of the memory
    free on a CUDA device, counting what PyTorch's allocator holds but does not use as free;
    :data:`CPU_KV_BUDGET` elsewhere."""
    if device.type != "cuda":
        return CPU_KV_BUDGET
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(KV_SHARE_OF_FREE * (free + cached))


def digit_share(text: str) -> float:
    """Fraction of the characters of ``text`` that are ASCII digits (0 for an empty text)."""
    return sum(c in "0123456789" for c in text) / len(text) if text else 0.0


def score_completion(text: str, target: np.ndarray, reward: str = "paper", digit_bonus: float = 0.0) -> dict:
    """``compute_reward``, plus a ``digits`` term ``digit_bonus * digit_share(text)`` in the total.

    The bonus is for smoke runs and tests only: a random model never writes the format, so every
    reward is equal and no weight moves; the share of digits differs between samples from the first
    step, so the whole gradient path (and DDP's sync of it) gets exercised.
    """
    terms = compute_reward(text, target, variant=reward)
    if digit_bonus:
        terms["digits"] = digit_bonus * digit_share(text)
        terms["total"] += terms["digits"]
    return terms


def score_rollout(rollout: Rollout, targets: Sequence[np.ndarray], *, reward: str = "paper",
                  digit_bonus: float = 0.0) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Reward every completion against its prompt's target: the totals ``(B, K)`` and every term."""
    B, K = len(rollout.prompts), rollout.K
    if len(targets) != B:
        raise ValueError(f"score_rollout: {len(targets)} targets for {B} prompts")
    scores = [score_completion(text, targets[i // K], reward, digit_bonus)
              for i, text in enumerate(rollout.texts)]  # B*K dicts
    keys = [k for k in (*REWARD_KEYS, "digits", "total") if k in scores[0]]
    terms = {k: np.array([s[k] for s in scores], dtype=np.float64).reshape(B, K) for k in keys}
    rewards = torch.tensor(terms["total"], dtype=torch.float32)  # (B, K)
    return rewards, terms


@dataclass
class TrainBatch:
    """The selected trajectories as tensors, group-major. Each distinct prompt is stored once (the G
    rows of a group share it): ``prompt_ids`` left-padded, so every prompt ends in the last column;
    row i continues prompt ``prompt_index[i]`` with its completion, right-padded. Per-token tensors
    are ``(N, T)`` over completion positions."""

    prompt_ids: torch.Tensor  # (P, Lp) long, left-padded
    prompt_mask: torch.Tensor  # (P, Lp) bool, real prompt tokens
    prompt_index: torch.Tensor  # (N,) long, the prompt each row continues
    completion_ids: torch.Tensor  # (N, T) long, right-padded
    completion_mask: torch.Tensor  # (N, T) bool, real completion tokens
    advantages: torch.Tensor  # (N,)
    weights: torch.Tensor  # (N,) a group's weights sum to 1 (less where rows were dropped)
    rewards: torch.Tensor  # (N,)

    @property
    def num_rows(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum())

    def rows(self, start: int, stop: int) -> "TrainBatch":
        """Rows ``[start, stop)``, with only the prompts they continue and no padding column that none
        of them needs."""
        used, index = torch.unique(self.prompt_index[start:stop], return_inverse=True)  # (p,), (n,)
        prompt_mask = self.prompt_mask[used]  # (p, Lp)
        prompt_width = int(prompt_mask.sum(dim=1).max())
        mask = self.completion_mask[start:stop]  # (n, T)
        width = int(mask.sum(dim=1).max().clamp_min(1))
        return TrainBatch(self.prompt_ids[used, -prompt_width:], prompt_mask[:, -prompt_width:], index,
                          self.completion_ids[start:stop, :width], mask[:, :width], self.advantages[start:stop],
                          self.weights[start:stop], self.rewards[start:stop])

    def micro_batches(self, size: int) -> list["TrainBatch"]:
        """Consecutive micro-batches of at most ``size`` rows."""
        return [self.rows(i, min(i + size, self.num_rows)) for i in range(0, self.num_rows, size)]

    def to(self, device) -> "TrainBatch":
        return TrainBatch(*(t.to(device) for t in (self.prompt_ids, self.prompt_mask, self.prompt_index,
                                                   self.completion_ids, self.completion_mask, self.advantages,
                                                   self.weights, self.rewards)))


def build_batch(rollout: Rollout, groups: Groups, pad_id: int, keep: torch.Tensor | None = None) -> TrainBatch:
    """The selected completions as a TrainBatch; ``keep`` ``(B, G)`` drops rows. A rank left with
    no row keeps a weight-0 placeholder that keeps DDP's collectives in step with the other ranks."""
    B, G = groups.index.shape
    keep = torch.ones(B, G, dtype=torch.bool) if keep is None else keep.clone()
    placeholder = not bool(keep.any())
    if placeholder:
        keep.view(-1)[0] = True
    flat = [(b, g) for b in range(B) for g in range(G) if keep[b, g]]
    samples = [b * rollout.K + int(groups.index[b, g]) for b, g in flat]
    completions = [[] if placeholder else rollout.completions[i] for i in samples]
    used = sorted({b for b, _ in flat})  # the prompts with a row left
    prompt_ids, prompt_mask = left_pad([rollout.prompts[b] for b in used], "cpu")  # (P, Lp), as the sampler's
    T = max(1, max(len(c) for c in completions))
    completion_ids = torch.full((len(samples), T), pad_id, dtype=torch.long)
    completion_mask = torch.zeros((len(samples), T), dtype=torch.bool)
    for row, completion in enumerate(completions):
        completion_ids[row, :len(completion)] = torch.tensor(completion, dtype=torch.long)
        completion_mask[row, :len(completion)] = True
    prompt_index = torch.tensor([used.index(b) for b, _ in flat])
    pick = torch.tensor([b for b, _ in flat]), torch.tensor([g for _, g in flat])
    weights = groups.weights[pick].float() * (0.0 if placeholder else 1.0)  # (N,)
    return TrainBatch(prompt_ids, prompt_mask, prompt_index, completion_ids, completion_mask,
                      groups.advantages[pick].float(), weights, groups.rewards[pick].float())


def completion_logprobs(model: nn.Module, batch: TrainBatch, temperature: float = 1.0) -> torch.Tensor:
    """Per-token log-probs ``(N, T)`` fp32 of each completion token under ``softmax(logits / temperature)``
    (the sampling distribution), 0 on padding.

    Each prompt is encoded once, not once per row (a group's G rows share it; the prompt is a third
    to a half of a row's tokens): all its tokens but the last fill a KV cache, the cache is copied to
    the rows that continue it, and each row then runs its prompt's last token and its completion on
    top, so position t predicts completion token t. The keys, values and rotary positions are those of
    one forward over prompt + completion, and gradients flow back through the copies into the
    prompt's pass. Only completion positions reach ``lm_head``.
    """
    core = unwrap(model)
    P, Lp = batch.prompt_ids.shape
    T = batch.completion_ids.shape[1]
    param = core.lm_head.weight
    cache = KVCache(core.config, P, Lp - 1, param.device, param.dtype)
    context, context_mask = batch.prompt_ids[:, :-1], batch.prompt_mask[:, :-1]  # (P, Lp - 1)
    if Lp > 1:  # the DDP wrapper runs once, below: one forward per backward, as DDP expects
        core(context, attention_mask=None if bool(context_mask.all()) else context_mask, cache=cache,
             return_hidden=True, last_only=True)
    rows = cache.select_rows(batch.prompt_index, Lp - 1 + T)
    inputs = torch.cat([batch.prompt_ids[batch.prompt_index, -1:], batch.completion_ids[:, :-1]], dim=1)  # (N, T)
    hidden = model(inputs, cache=rows, return_hidden=True)  # (N, T, D)
    logp = head_logprobs(core.lm_head, hidden, batch.completion_ids, temperature)  # (N, T)
    return logp.masked_fill(~batch.completion_mask, 0.0)  # (N, T)
