"""Batched, KV-cached sampling from a :class:`timer1.core.model.Qwen2` (gpt-fast / nanochat style).

``generate`` prefills every prompt once (the prompts left-padded into one batch), copies each
prompt's cache to its ``num_samples`` rows (the GRIP group), then decodes all rows together, one
token per step, into a static preallocated :class:`~timer1.core.model.KVCache`. Rows stop on their own
at any eos id; finished rows keep being fed a token (their outputs are ignored) so the batch stays
rectangular, and their recorded tokens never change.

Each decode step is ``model.prepare`` (Python bookkeeping of the cache), ``model.core`` (the tensor
work) and ``cache.advance``. ``compile=True`` runs ``core`` through ``torch.compile(dynamic=True)``
(the cache length is a symbolic int: one graph for every step), which removes eager PyTorch's per-op
overhead that dominates the decode step of small models. The compile itself costs seconds, so the
default is a ski-rental rule: decode eagerly until this model has run :data:`AUTO_COMPILE_STEPS`
decode steps in this process, then compile.

The sampling functions are tiny and pure and stay eager in both modes, so a seeded run draws the same
random numbers whether or not the model step is compiled.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import torch

from timer1.core.model import KVCache, Qwen2
from timer1.util.dist import unwrap

__all__ = ["Generation", "Sampling", "generate", "sampling_logprobs", "top_k_mask", "top_p_mask",
           "sample_token", "AUTO_COMPILE_STEPS"]

AUTO_COMPILE_STEPS = 20_000
"""About what the compile costs over what it saves per step (benchmarks/sampler.py), so the auto
rule pays at most twice the best-in-hindsight cost (ski rental)."""

_eager_steps: "weakref.WeakKeyDictionary[Qwen2, int]" = weakref.WeakKeyDictionary()


@dataclass
class Generation:
    """What :func:`generate` returns; sample ``i`` continues prompt ``i // num_samples``."""

    tokens: list[list[int]] = field(default_factory=list)     # new tokens, a hit eos kept last
    logprobs: list[list[float]] = field(default_factory=list)  # under the (masked) distribution drawn from; 0 greedy
    finished: list[bool] = field(default_factory=list)        # stopped on an eos id


@dataclass(frozen=True)
class Sampling:
    """How each token is drawn: ``temperature=0`` is greedy; ``top_k=0`` and ``top_p=1`` switch those
    filters off (gpt-fast's and HF ``generate``'s names)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


# ----------------------------------------------------------------------------------------------
# Pure sampling functions


def top_k_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to -inf (ties with the k-th are kept).
    ``k <= 0`` or ``k >= V`` keeps everything. ``logits`` is ``(B, V)``."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_mask(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of highest-probability tokens whose mass reaches ``p``
    (the top token always stays), set the rest to -inf. ``p >= 1`` keeps everything."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # (B, V) mass of strictly better tokens
    drop_sorted = mass_before >= p  # a token is needed only while the mass before it is < p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampling_logprobs(logits: torch.Tensor, temperature: float, top_k: int = 0,
                      top_p: float = 1.0) -> torch.Tensor:
    """The fp32 log-distribution tokens are drawn from: ``log_softmax(mask(logits / temperature))``
    with top-k then top-p applied to the tempered logits (Hugging Face's order). ``(B, V)`` in and
    out; masked entries are -inf."""
    scaled = logits.float() if temperature == 1.0 else logits.float() / temperature  # (B, V)
    return torch.log_softmax(top_p_mask(top_k_mask(scaled, top_k), top_p), dim=-1)


def sample_token(logprobs: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """Draw one token per row from ``exp(logprobs)`` ``(B, V)`` -> ``(B,)`` by inverting the fp64 CDF.
    A list of P generators draws rows in P equal blocks, one per prompt.

    One random number per row, where ``torch.multinomial`` and gpt-fast's exponential race draw
    ``B * V`` (slow over a large vocabulary on CPU)."""
    cdf = logprobs.exp().cumsum(dim=-1, dtype=torch.float64)  # (B, V)
    u = _uniforms(cdf.shape[0], generator, cdf.device)  # (B, 1)
    token = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0]  # (B,)
    return token.clamp_(max=cdf.shape[1] - 1)


def _uniforms(rows: int, generator, device) -> torch.Tensor:
    """``(rows, 1)`` fp64 U[0, 1) draws from one generator, or block by block from a list of them."""
    if not isinstance(generator, (list, tuple)):
        return torch.rand(rows, 1, dtype=torch.float64, device=device, generator=generator)
    per_block = rows // len(generator)
    return torch.cat([torch.rand(per_block, 1, dtype=torch.float64, device=device, generator=g)
                      for g in generator])


# ----------------------------------------------------------------------------------------------
# generate


def left_pad(prompts: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, L)`` token ids and 0/1 mask, prompts right-aligned (left padding with id 0)."""
    L = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), L, dtype=torch.long)
    mask = torch.zeros(len(prompts), L, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        ids[row, L - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, L - len(prompt):] = True
    return ids.to(device), mask.to(device)


def _check_args(prompts, max_new_tokens, num_samples, sampling: Sampling, vocab_size):
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty token-id lists")
    for p in prompts:
        bad = [t for t in p if not 0 <= int(t) < vocab_size]
        if bad:
            raise ValueError(f"prompt token id {bad[0]} outside the vocabulary [0, {vocab_size})")
    if max_new_tokens < 0 or num_samples < 1:
        raise ValueError(f"need max_new_tokens >= 0 and num_samples >= 1, "
                         f"got {max_new_tokens} and {num_samples}")
    s = sampling
    if s.temperature < 0 or s.top_k < 0 or not 0 < s.top_p <= 1:
        raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; "
                         f"got {s.temperature}, {s.top_k}, {s.top_p}")


@torch.inference_mode()
def generate(model: Qwen2, prompts: list[list[int]], *, max_new_tokens: int, num_samples: int = 1,
             eos_ids: Sequence[int] = (), seed: int | Sequence[int] | None = None,
             compile: bool | None = None, **sampling) -> Generation:
    """Sample ``num_samples`` continuations of each prompt, all rows decoded together.

    ``sampling`` holds the fields of :class:`Sampling` (``temperature=0`` greedy, ``top_k``,
    ``top_p``). A list of seeds, one per prompt, makes a prompt's samples independent of the prompts
    sharing its batch. Logits are cast to fp32 before log-softmax and sampling, whatever the model's
    dtype. ``compile``: run the decode step through ``torch.compile`` (None = the auto rule above).
    """
    model = unwrap(model)
    config = model.config
    draw = Sampling(**sampling)
    _check_args(prompts, max_new_tokens, num_samples, draw, config.vocab_size)
    param = model.lm_head.weight
    device, dtype = param.device, param.dtype
    generator = _generators(seed, len(prompts), device)
    n_rows = len(prompts) * num_samples
    if max_new_tokens == 0:
        return Generation([[] for _ in range(n_rows)], [[] for _ in range(n_rows)], [False] * n_rows)

    # Prefill each prompt once, then give every sample its own copy of the prompt's cache.
    ids, mask = left_pad(prompts, device)  # (P, L)
    prefill = KVCache(config, len(prompts), ids.shape[1], device, dtype)
    logits = model(ids, attention_mask=mask, cache=prefill, last_only=True)[:, -1]  # (P, V)
    rows = torch.arange(len(prompts), device=device).repeat_interleave(num_samples)  # (N,) prompt of each row
    cache = prefill.select_rows(rows, ids.shape[1] + max_new_tokens)
    del prefill
    logits = logits.repeat_interleave(num_samples, dim=0)  # (N, V)

    eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device)
    out_tokens = torch.zeros(n_rows, max_new_tokens, dtype=torch.long, device=device)  # (N, M)
    out_logprobs = torch.zeros(n_rows, max_new_tokens, dtype=torch.float32, device=device)
    done = torch.zeros(n_rows, dtype=torch.bool, device=device)  # (N,) hit eos before this step
    lengths = torch.full((n_rows,), max_new_tokens, dtype=torch.long, device=device)
    step_fn = _step_function(model, compile, max_new_tokens)
    for step in range(max_new_tokens):
        token, logprob = _draw(logits, draw, generator)  # (N,), (N,)
        out_tokens[:, step] = torch.where(done, 0, token)
        out_logprobs[:, step] = torch.where(done, 0.0, logprob)
        if len(eos):
            hit = ~done & torch.isin(token, eos)
            lengths = torch.where(hit, step + 1, lengths)
            done = done | hit
            if bool(done.all()):
                break
        if step + 1 < max_new_tokens:
            logits = _decode(model, step_fn, token[:, None], cache)  # (N, V)

    tokens, logprobs, lengths = out_tokens.tolist(), out_logprobs.tolist(), lengths.tolist()
    return Generation(
        tokens=[row[:n] for row, n in zip(tokens, lengths)],
        logprobs=[row[:n] for row, n in zip(logprobs, lengths)],
        finished=done.tolist(),
    )


def _step_function(model: Qwen2, compile: bool | None, max_new_tokens: int):
    """``Qwen2.core`` or its compiled twin, as ``compile`` (or the auto rule) says; an eager call adds
    the decode steps it asks for (``max_new_tokens - 1``) to the model's count."""
    if compile is None:
        compile = _eager_steps.get(model, 0) >= AUTO_COMPILE_STEPS
    if compile:
        return _compiled_core()
    _eager_steps[model] = _eager_steps.get(model, 0) + max_new_tokens - 1
    return Qwen2.core


@functools.cache
def _compiled_core():
    """``Qwen2.core`` compiled once per process; dynamo guards on the model's structure and recompiles
    for another one (within its recompile limit)."""
    return torch.compile(Qwen2.core, dynamic=True)


def _decode(model: Qwen2, step_fn, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """One decode step ``(N, 1)`` ids -> ``(N, V)`` logits: the cache bookkeeping in Python around
    ``step_fn`` (``Qwen2.core``, eager or compiled), exactly what ``model(tokens, cache=cache)`` does."""
    start, positions, mask, is_causal = model.prepare(tokens, cache=cache)
    logits = step_fn(model, tokens, positions, mask, is_causal, cache, start, False, True)  # (N, 1, V)
    cache.advance(1)
    return logits[:, -1]


def _generators(seed, n_prompts: int, device):
    """None (global RNG), one private generator, or one per prompt for a list of seeds."""
    if seed is None:
        return None
    if isinstance(seed, (list, tuple)):
        if len(seed) != n_prompts:
            raise ValueError(f"got {len(seed)} seeds for {n_prompts} prompts; give one per prompt")
        return [torch.Generator(device=device).manual_seed(int(s)) for s in seed]
    return torch.Generator(device=device).manual_seed(seed)


def _draw(logits, sampling: Sampling, generator):
    """One token per row and its log-prob under the distribution it was drawn from."""
    if sampling.temperature == 0:
        token = torch.argmax(logits, dim=-1)  # greedy: a point mass, log-prob 0
        return token, torch.zeros(token.shape, dtype=torch.float32, device=token.device)
    logprobs = sampling_logprobs(logits, sampling.temperature, sampling.top_k, sampling.top_p)  # (N, V) fp32
    token = sample_token(logprobs, generator)  # (N,)
    return token, logprobs.gather(1, token[:, None]).squeeze(1)
