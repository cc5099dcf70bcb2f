"""The rollout half of a GRIP step, as small functions (train_grip.py runs them in order).

One GRIP step (paper Sec. 3.3, the GRIP objective in ``timer1.grip``) on B prompts:

1. ``sample_rollout``: the current policy (LoRA on, eval mode) samples ``K = k * G`` completions
   per prompt with the KV-cached sampler at the run's temperature; the sampler records the
   log-prob of every sampled token under the distribution it was drawn from;
2. ``score_rollout``: each completion is decoded and scored by ``compute_reward`` against the
   window's target on the completion's scale (``task.reward_target``) -> rewards ``(B, K)``;
3. ``timer1.grip.make_groups``: G of the K are selected per prompt, with advantages and weights;
4. ``build_batch``: the selected N = B * G trajectories become one padded token batch
   ``(N, P + T)``: each prompt left-padded to width P, each completion right-padded to width T,
   so column ``P + t`` holds completion token t of every row and ``token_logprobs(...)[:, P-1:]``
   is ``(N, T)``, aligned with ``completion_mask``;
5. ``old_logprobs`` / ``reference_logprobs``: per-token log-probs of the sampling policy (the
   sampler's own numbers, or recomputed with a full forward) and of the reference policy (LoRA
   switched off, an adapter snapshot swapped in, or a frozen copy for full fine-tuning);
6. ``micro_loss``: the GRIP loss of one micro-batch, scaled so that the gradients summed over
   micro-batches (and averaged over DDP ranks) equal the gradient of the full batch's loss.

Old log-probs, which to use. The sampler draws each token during KV-cached decoding, the loss
re-scores it with one full forward: same weights, same temperature, but a different kernel
order, so in fp32 they agree to ~1e-5 (tests/test_rollout.py checks it) and in bf16 only to ~1e-2
(max 0.025, mean 0.003 per token on the tests' tiny model), enough to bias the first inner update's ratio. And with ``top_p < 1`` (or
``top_k > 0``) the sampler's numbers are log-probs of the *truncated* distribution, while the
loss's ``logp`` is of the full tempered softmax: their ratio would not be 1 even for identical
weights. ``old_logprob_source(...)`` therefore picks ``"sampler"`` only for fp32 weights and no
truncation, and ``"recompute"`` (one no-grad forward over the batch) otherwise.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from timer1.grip import Groups, grip_loss
from timer1.lora import lora_disabled, lora_modules
from timer1.model import KVCache, head_logprobs, token_logprobs
from timer1.rewards import REWARD_KEYS, compute_reward
from timer1.sampler import generate


# ----------------------------------------------------------------------------------------------
# 1. sampling


@dataclass
class Rollout:
    """K sampled completions for each of B prompts, prompt-major (sample i continues prompt i // K)."""

    prompts: list[list[int]]  # B token-id lists
    completions: list[list[int]]  # B * K token-id lists (eos kept as the last token when hit)
    logprobs: list[list[float]]  # B * K, the sampler's log-prob of each completion token
    finished: list[bool]  # B * K, stopped on an eos id
    texts: list[str]  # B * K decoded completions (without the closing eos)
    K: int

    @property
    def num_tokens(self) -> int:
        return sum(len(c) for c in self.completions)


def sample_rollout(model: nn.Module, tokenizer, prompts: list[list[int]], *, K: int, max_new_tokens: int,
                   temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
                   prompts_per_call: int = 0) -> Rollout:
    """Sample K completions per prompt from ``model`` as it is now (the "old" policy of this step).

    Runs with dropout off (eval mode, restored afterwards) so the samples come from the policy the
    ratio is taken against. ``prompts_per_call > 0`` samples that many prompts per sampler call
    (the KV cache holds ``prompts_per_call * K`` rows; bounds memory for long completions), with
    ``seed + call`` per call. Texts are decoded without the closing eos so ``compute_reward`` sees
    the model's words only.
    """
    core = getattr(model, "module", model)
    was_training = core.training
    core.eval()
    step = prompts_per_call if prompts_per_call > 0 else len(prompts)
    tokens, logprobs, finished = [], [], []
    try:
        for call, start in enumerate(range(0, len(prompts), step)):
            out = generate(core, prompts[start:start + step], max_new_tokens=max_new_tokens, num_samples=K,
                           temperature=temperature, top_k=top_k, top_p=top_p, eos_ids=tokenizer.eos_ids,
                           seed=None if seed is None else seed + call)
            tokens += out.tokens
            logprobs += out.logprobs
            finished += out.finished
    finally:
        core.train(was_training)
    texts = [tokenizer.decode(toks[:-1] if done else toks) for toks, done in zip(tokens, finished)]
    return Rollout(prompts, tokens, logprobs, finished, texts, K)


# ----------------------------------------------------------------------------------------------
# 2. scoring

Scorer = Callable[[str, np.ndarray], dict]


def digit_share(text: str) -> float:
    """Fraction of the characters of ``text`` that are ASCII digits (0 for an empty text)."""
    return sum(c in "0123456789" for c in text) / len(text) if text else 0.0


def time_r1_scorer(variant: str = "paper", digit_bonus: float = 0.0) -> Scorer:
    """``compute_reward`` (the paper's or the official reward), plus, when ``digit_bonus > 0``, a
    ``digits`` term ``digit_bonus * digit_share(text)`` added to the total.

    The bonus is for smoke runs and tests only: a randomly initialised model never writes the
    ``<think>/<answer>`` format, so every completion gets the same reward, every advantage is 0 and
    no weight moves. The share of digits differs between samples from the first step, is easy to
    learn and is checkable, so the whole gradient path (and DDP's sync of it) gets exercised.
    """
    def score(text: str, target: np.ndarray) -> dict:
        terms = compute_reward(text, target, variant=variant)
        if digit_bonus:
            terms["digits"] = digit_bonus * digit_share(text)
            terms["total"] += terms["digits"]
        return terms
    return score


def score_rollout(rollout: Rollout, targets: Sequence[np.ndarray], *, variant: str = "paper",
                  digit_bonus: float = 0.0, scorer: Scorer | None = None) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Reward every completion against its prompt's target: rewards ``(B, K)`` (the ``total``) and
    every term as a ``(B, K)`` array (``format``, ``length``, ``mse``, ...).

    By default the scorer is ``time_r1_scorer(variant, digit_bonus)``; any other
    ``scorer(text, target) -> dict with "total"`` may replace it.
    """
    B, K = len(rollout.prompts), rollout.K
    if len(targets) != B:
        raise ValueError(f"score_rollout: {len(targets)} targets for {B} prompts")
    if scorer is None:
        scorer = time_r1_scorer(variant, digit_bonus)
    scores = [scorer(text, targets[i // K]) for i, text in enumerate(rollout.texts)]  # B*K dicts
    keys = [k for k in (*REWARD_KEYS, "digits", "total") if k in scores[0]]
    terms = {k: np.array([s[k] for s in scores], dtype=np.float64).reshape(B, K) for k in keys}
    rewards = torch.tensor(terms["total"], dtype=torch.float32)  # (B, K)
    return rewards, terms


# ----------------------------------------------------------------------------------------------
# 3. the padded training batch


@dataclass
class TrainBatch:
    """The selected trajectories as tensors. Rows are group-major (G consecutive rows per prompt).

    ``input_ids[:, :P]`` holds left-padded prompts, ``input_ids[:, P:]`` right-padded completions;
    every per-token tensor is ``(N, T)`` over the completion columns.
    """

    input_ids: torch.Tensor  # (N, P + T) long
    attention_mask: torch.Tensor  # (N, P + T) bool, real tokens
    completion_mask: torch.Tensor  # (N, T) bool, real completion tokens
    prompt_width: int  # P
    sampler_logp: torch.Tensor  # (N, T) fp32, the sampler's log-probs (0 on padding)
    advantages: torch.Tensor  # (N,)
    weights: torch.Tensor  # (N,) each group of G sums to 1
    rewards: torch.Tensor  # (N,)
    old_logp: torch.Tensor | None = None  # (N, T)
    ref_logp: torch.Tensor | None = None  # (N, T)

    @property
    def num_rows(self) -> int:
        return self.input_ids.shape[0]

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum())

    def rows(self, start: int, stop: int) -> "TrainBatch":
        """Rows ``[start, stop)`` with the columns no row needs cut off (a micro-batch)."""
        real = self.attention_mask[start:stop]  # (n, P + T)
        P = self.prompt_width
        lead = int((~real[:, :P]).all(dim=0).long().cumprod(0).sum())  # prompt pad columns common to all rows
        width = int(self.completion_mask[start:stop].sum(dim=1).max().clamp_min(1))  # longest completion

        def per_token(t):
            return None if t is None else t[start:stop, :width]

        return TrainBatch(
            input_ids=self.input_ids[start:stop, lead:P + width],
            attention_mask=real[:, lead:P + width],
            completion_mask=self.completion_mask[start:stop, :width],
            prompt_width=P - lead,
            sampler_logp=per_token(self.sampler_logp),
            advantages=self.advantages[start:stop],
            weights=self.weights[start:stop],
            rewards=self.rewards[start:stop],
            old_logp=per_token(self.old_logp),
            ref_logp=per_token(self.ref_logp),
        )

    def micro_batches(self, size: int) -> list["TrainBatch"]:
        """Consecutive micro-batches of at most ``size`` rows."""
        return [self.rows(i, min(i + size, self.num_rows)) for i in range(0, self.num_rows, size)]

    def to(self, device) -> "TrainBatch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return TrainBatch(**moved)


def build_batch(rollout: Rollout, groups: Groups, pad_id: int = 0) -> TrainBatch:
    """The selected completions (``groups.index`` ``(B, G)`` into each prompt's K) as a TrainBatch."""
    B, G = groups.index.shape
    K = rollout.K
    chosen = [b * K + int(j) for b in range(B) for j in groups.index[b]]  # N sample ids, group-major
    prompts = [rollout.prompts[i // K] for i in chosen]
    completions = [rollout.completions[i] for i in chosen]
    N = len(chosen)
    P = max(len(p) for p in prompts)
    T = max(1, max(len(c) for c in completions))
    input_ids = torch.full((N, P + T), pad_id, dtype=torch.long)
    attention = torch.zeros((N, P + T), dtype=torch.bool)
    sampler_logp = torch.zeros((N, T), dtype=torch.float32)
    for row, (prompt, completion, i) in enumerate(zip(prompts, completions, chosen)):
        input_ids[row, P - len(prompt):P] = torch.tensor(prompt, dtype=torch.long)
        input_ids[row, P:P + len(completion)] = torch.tensor(completion, dtype=torch.long)
        attention[row, P - len(prompt):P + len(completion)] = True
        sampler_logp[row, :len(completion)] = torch.tensor(rollout.logprobs[i], dtype=torch.float32)
    return TrainBatch(
        input_ids=input_ids,
        attention_mask=attention,
        completion_mask=attention[:, P:].clone(),  # (N, T)
        prompt_width=P,
        sampler_logp=sampler_logp,
        advantages=groups.advantages.reshape(-1).float(),  # (N,)
        weights=groups.weights.reshape(-1).float(),  # (N,)
        rewards=groups.rewards.reshape(-1).float(),  # (N,)
    )


# ----------------------------------------------------------------------------------------------
# 4. old and reference log-probs


def completion_logprobs(model: nn.Module, batch: TrainBatch, temperature: float = 1.0,
                        share_prompts: bool = True) -> torch.Tensor:
    """Per-token log-probs of the completion columns, ``(N, T)`` fp32 (differentiable when grads are on).

    With ``share_prompts`` (default) the rows of a group, which all continue the same prompt, run
    that prompt through the model once (``shared_prompt_hidden``): the prompt's keys/values and
    its last hidden state are computed for each distinct prompt and copied to its rows, gradients
    flowing back through the copies. Same numbers as the plain path (one forward over each padded
    row, ``token_logprobs``) up to float rounding (tests/test_rollout.py), with the prompt's share
    of the forward/backward work divided by the rows sharing it (G = 16: a 64-token prompt before
    128 completion tokens is a third of the plain path's tokens). The plain path is used when no
    two rows share a prompt, and under gradient checkpointing (the model only checkpoints
    cache-free forwards).
    """
    core = getattr(model, "module", model)
    P = batch.prompt_width
    shared = None
    if share_prompts and not (core.gradient_checkpointing and torch.is_grad_enabled()):
        shared = shared_prompt_hidden(model, batch)
    if shared is None:
        out = token_logprobs(model, batch.input_ids, attention_mask=batch.attention_mask,
                             temperature=temperature)  # (N, P + T - 1)
        return out[:, P - 1:]  # (N, T): column t scores completion token t
    return head_logprobs(core.lm_head, shared, batch.input_ids[:, P:], temperature)  # (N, T)


def shared_prompt_hidden(model: nn.Module, batch: TrainBatch) -> torch.Tensor | None:
    """Final hidden states ``(N, T, D)`` whose column t predicts completion token t, with each distinct
    prompt run once; None when every row has its own prompt (nothing to share).

    1. prefill the U distinct (left-padded) prompts into a KV cache, keeping each one's last hidden state;
    2. copy each prompt's cache to its rows (an index, so groups of any size and order work);
    3. run the right-padded completions of all N rows against those caches.
    The prefill runs on the bare module and step 3 through ``model`` (a DDP wrapper when there is one),
    so DDP sees one forward per backward; autograd carries both parts' gradients to the weights.
    """
    core = getattr(model, "module", model)
    P = batch.prompt_width
    key = torch.cat([batch.input_ids[:, :P], batch.attention_mask[:, :P].long()], dim=1)  # (N, 2P)
    unique, owner = torch.unique(key, dim=0, return_inverse=True)  # (U, 2P), (N,) row -> its prompt
    U, N = unique.shape[0], batch.num_rows
    if U == N:
        return None
    param = core.lm_head.weight
    prefill = KVCache(core.config, U, P, param.device, param.dtype)
    last = core(unique[:, :P], attention_mask=unique[:, P:].bool(), cache=prefill, return_hidden=True,
                last_only=True)  # (U, 1, D) predicts completion token 0
    T = batch.completion_mask.shape[1]
    cache = _rows_of(prefill, owner, P + T)
    hidden = model(batch.input_ids[:, P:], attention_mask=batch.completion_mask, cache=cache,
                   return_hidden=True)  # (N, T, D)
    return torch.cat([last[owner], hidden[:, :-1]], dim=1)  # (N, T, D)


def _rows_of(cache: KVCache, rows: torch.Tensor, max_len: int) -> KVCache:
    """A cache of ``len(rows)`` rows and ``max_len`` slots whose row i is ``cache``'s row ``rows[i]``
    (``KVCache.repeat_rows`` for arbitrary row indices; differentiable: the copies are index ops)."""
    n, filled = rows.shape[0], cache.length
    out = object.__new__(KVCache)

    def grow(t: torch.Tensor) -> torch.Tensor:  # (U, H, S, d) -> (n, H, max_len, d)
        new = t.new_zeros(n, t.shape[1], max_len, t.shape[3])
        new[:, :, :filled] = t[rows, :, :filled]
        return new

    out.k, out.v = [grow(t) for t in cache.k], [grow(t) for t in cache.v]
    out.valid = cache.valid.new_zeros(n, max_len)
    out.valid[:, :filled] = cache.valid[rows, :filled]
    out.next_pos = cache.next_pos[rows].clone()
    out.length, out.has_padding = filled, cache.has_padding
    return out


@torch.no_grad()
def batched_logprobs(model: nn.Module, batch: TrainBatch, temperature: float, micro_batch: int,
                     share_prompts: bool = True) -> torch.Tensor:
    """``completion_logprobs`` under no_grad, ``micro_batch`` rows at a time, in eval mode -> (N, T)."""
    core = getattr(model, "module", model)
    was_training = core.training
    core.eval()
    out = torch.zeros(batch.completion_mask.shape, dtype=torch.float32, device=batch.input_ids.device)
    try:
        for start in range(0, batch.num_rows, micro_batch):
            mb = batch.rows(start, min(start + micro_batch, batch.num_rows))
            out[start:start + mb.num_rows, :mb.completion_mask.shape[1]] = completion_logprobs(core, mb, temperature,
                                                                                             share_prompts)
    finally:
        core.train(was_training)
    return out.masked_fill(~batch.completion_mask, 0.0)  # (N, T)


def old_logprob_source(model: nn.Module, top_p: float, top_k: int = 0, requested: str = "auto") -> str:
    """``"sampler"`` or ``"recompute"`` (see the module docstring): ``auto`` uses the sampler's
    numbers only when they are the full tempered softmax (no top-p/top-k) computed in fp32."""
    if requested not in ("auto", "sampler", "recompute"):
        raise ValueError(f"old log-prob source must be auto, sampler or recompute, got {requested!r}")
    truncated = top_p < 1.0 or top_k > 0
    if requested == "sampler" and truncated:
        raise ValueError("old_logprobs='sampler' needs top_p=1 and top_k=0: the sampler's log-probs are of the "
                         "truncated distribution, the loss's of the full one; use 'recompute'")
    if requested != "auto":
        return requested
    dtype = getattr(model, "module", model).lm_head.weight.dtype
    return "sampler" if not truncated and dtype == torch.float32 else "recompute"


def old_logprobs(model: nn.Module, batch: TrainBatch, *, source: str, temperature: float,
                 micro_batch: int, share_prompts: bool = True) -> torch.Tensor:
    """Log-probs of the sampling policy ``(N, T)``: the sampler's, or recomputed by a full forward."""
    if source == "sampler":
        return batch.sampler_logp
    return batched_logprobs(model, batch, temperature, micro_batch, share_prompts)


@contextlib.contextmanager
def swapped_adapter(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Run with the LoRA weights temporarily replaced by ``snapshot`` (name -> tensor), restored after.

    The reference policy when RL continues an SFT adapter: the SFT adapter itself, at the cost of one
    adapter-sized copy instead of a second model.
    """
    params = dict(getattr(model, "module", model).named_parameters())
    missing = [name for name in snapshot if name not in params]
    if missing:
        raise ValueError(f"adapter snapshot names a parameter the model does not have: {missing[0]}")
    saved = {name: params[name].detach().clone() for name in snapshot}
    with torch.no_grad():
        for name, value in snapshot.items():
            params[name].copy_(value)
    try:
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


def adapter_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every LoRA weight (for ``swapped_adapter``)."""
    core = getattr(model, "module", model)
    return {f"{name}.{part}.weight": getattr(m, part).weight.detach().clone()
            for name, m in lora_modules(core).items() for part in ("lora_A", "lora_B")}


@dataclass
class Reference:
    """Where the reference policy of the KL term comes from (exactly one way):

    - ``kind="base"``: the policy's own weights with every LoRA update switched off (``lora_disabled``);
    - ``kind="adapter"``: the policy with its LoRA weights swapped for ``snapshot`` (the SFT adapter);
    - ``kind="model"``: a separate frozen ``model`` (full fine-tuning: a second copy of the weights).
    """

    kind: str
    model: nn.Module | None = None
    snapshot: dict[str, torch.Tensor] | None = None

    def __post_init__(self):
        if self.kind not in ("base", "adapter", "model"):
            raise ValueError(f"Reference.kind must be base, adapter or model, got {self.kind!r}")
        if (self.kind == "model") != (self.model is not None) or (self.kind == "adapter") != (self.snapshot is not None):
            raise ValueError(f"Reference(kind={self.kind!r}) needs exactly its own field (model or snapshot)")

    @contextlib.contextmanager
    def active(self, policy: nn.Module) -> Iterator[nn.Module]:
        """The module whose log-probs are the reference's."""
        core = getattr(policy, "module", policy)
        if self.kind == "model":
            yield self.model
        elif self.kind == "adapter":
            with swapped_adapter(core, self.snapshot):
                yield core
        else:
            with lora_disabled(core):
                yield core


def reference_logprobs(policy: nn.Module, reference: Reference, batch: TrainBatch, *, temperature: float,
                       micro_batch: int, share_prompts: bool = True) -> torch.Tensor:
    """Log-probs ``(N, T)`` of the reference policy on the batch (no grad)."""
    with reference.active(policy) as ref_model:
        return batched_logprobs(ref_model, batch, temperature, micro_batch, share_prompts)


# ----------------------------------------------------------------------------------------------
# 5. the loss of one micro-batch


@dataclass(frozen=True)
class BatchTotals:
    """Sums over the whole batch on every rank, so micro-batch losses add up to the batch loss."""

    rows: int  # N over all ranks
    weight: float  # sum of w over all ranks (= number of groups)
    tokens: int  # completion tokens over all ranks
    world: int  # DDP ranks (gradients are averaged over them)


def micro_scale(mb: TrainBatch, totals: BatchTotals, agg: str) -> float:
    """Factor turning ``grip_loss`` of a micro-batch (normalised within it) into its share of the
    full batch's loss, times ``world`` because DDP averages gradients over ranks.

    seq-mean: batch loss ``-sum_i w_i s_i / W``; the micro loss is ``-sum_mb w s / W_mb``, so scale by
    ``W_mb / W``. token-mean: batch loss ``-sum_it u_i obj_it / tokens`` with ``u = N w / W``; the
    micro loss uses ``u_mb = N_mb w / W_mb`` and its own token count, so scale by
    ``(tokens_mb / tokens) * (N / W) / (N_mb / W_mb)``.
    """
    w_mb = float(mb.weights.sum())
    if agg == "seq-mean":
        share = w_mb / totals.weight
    else:
        share = (mb.num_tokens / max(totals.tokens, 1)) * (totals.rows / totals.weight) / (mb.num_rows / max(w_mb, 1e-30))
    return share * totals.world


def micro_loss(model: nn.Module, mb: TrainBatch, totals: BatchTotals, *, eps: float, beta: float, agg: str,
               temperature: float, group_size: int | None = None,
               share_prompts: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """The micro-batch's share of the batch loss (see ``micro_scale``) and grip_loss's metrics.
    Pass ``group_size=G`` only when micro-batches hold whole groups (``micro_batch % G == 0``)."""
    logp = completion_logprobs(model, mb, temperature, share_prompts)  # (n, T) with grad
    loss, metrics = grip_loss(logp, mb.old_logp, mb.ref_logp if beta else None, mb.advantages, mb.weights,
                              mb.completion_mask, eps=eps, beta=beta, agg=agg,
                              group_size=group_size)
    return loss * micro_scale(mb, totals, agg), metrics


def with_logprobs(batch: TrainBatch, old: torch.Tensor, ref: torch.Tensor | None) -> TrainBatch:
    """The batch with its old and reference log-probs filled in."""
    return replace(batch, old_logp=old, ref_logp=ref)
