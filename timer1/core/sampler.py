"""Batched, KV-cached sampling from a :class:`timer1.core.model.Qwen2` (gpt-fast / nanochat style).

``generate`` prefills every prompt once (the prompts left-padded into one batch), copies each
prompt's cache to its ``num_samples`` rows (the GRIP group), then decodes all rows together, one
token per step, into a static :class:`~timer1.core.model.KVCache` allocated once for the call's rows
and length. Rows stop on their own at any eos id; finished rows keep being fed a token (their outputs
are ignored) so the batch stays rectangular, and their recorded tokens never change.

The decode step, :func:`decode_step`, has the same shapes at every step (gpt-fast's static cache):
the slot it writes and the rotary positions live in device tensors that the step itself moves on,
and attention runs over a fixed window of the cache (:data:`ATTEND_BLOCK` slots at a time) under its
validity mask. So on CUDA the step is captured as a CUDA graph once a window and replayed (one launch
instead of ~30 a layer: eager decode of small models is launch-bound), and the host reads the stop
flags only every few tokens (:data:`STOP_CHECK_EVERY`), never once per token. The CPU runs the same
step function, called directly. ``compile=True`` runs the step through ``torch.compile(fullgraph=True)`` (inductor's fused
kernels, then graph-captured on CUDA like the eager step). The compile itself costs seconds, so the
default is a ski-rental rule: eager until this model has run :data:`AUTO_COMPILE_STEPS` decode steps
in this process, then compile.

The sampling functions are tiny and pure and stay eager, outside the graph, so a seeded run draws
the same random numbers whether or not the model step is compiled or captured.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import torch

from timer1.core.model import KVCache, Qwen2
from timer1.util.dist import unwrap

__all__ = ["Generation", "Sampling", "generate", "decode_step", "sampling_logprobs", "top_k_mask", "top_p_mask",
           "sample_token", "AUTO_COMPILE_STEPS", "ATTEND_BLOCK", "STOP_CHECK_EVERY"]

AUTO_COMPILE_STEPS = 20_000
"""About what the compile costs over what it saves per step (benchmarks/sampler.py, CPU), so the auto
rule pays at most twice the best-in-hindsight cost (ski rental)."""

ATTEND_BLOCK = {"cuda": 256}
"""By device type (32 where absent): a decode step attends over the cache's slots up to the next
multiple of this past the slot it writes, not over the whole cache. Within a block every step has the
same shapes (one CUDA graph a block), and a long generation reads on average half a block more than
its filled slots, not the whole cache (whose reads would double a long rollout's KV traffic). A
capture costs about two steps, so CUDA's blocks are long; a CPU has no capture to pay, and blocks of
32 slots decode as fast as attending over the filled slots alone (measured: timer1-tiny, a 256-token
prompt, 768 new tokens, one thread; attending over the whole cache was 5-20% slower)."""

STOP_CHECK_EVERY = {"cuda": 16}
"""Decode steps between two host reads of the stop flags, by device type (1 where absent). On a GPU
each read waits for the device to drain its queue, so it is done every 16 steps, running at most 15
steps past the moment every row has stopped; on a CPU the flags are computed by the time they are
read, so every step is checked and no step is wasted."""

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
    check_every = STOP_CHECK_EVERY.get(device.type, 1)
    step_fn = _step_runner(model, cache, ids.shape[1], compile, max_new_tokens)
    for step in range(max_new_tokens):
        token, logprob = _draw(logits, draw, generator)  # (N,), (N,)
        out_tokens[:, step] = torch.where(done, 0, token)
        out_logprobs[:, step] = torch.where(done, 0.0, logprob)
        if len(eos):
            hit = ~done & torch.isin(token, eos)
            lengths.masked_fill_(hit, step + 1)
            done |= hit
            if (step + 1) % check_every == 0 and bool(done.all()):  # the only host sync of the loop
                break
        if step + 1 < max_new_tokens:
            logits = step_fn(token)  # (N, V)

    tokens, logprobs, lengths = out_tokens.tolist(), out_logprobs.tolist(), lengths.tolist()
    return Generation(
        tokens=[row[:n] for row, n in zip(tokens, lengths)],
        logprobs=[row[:n] for row, n in zip(logprobs, lengths)],
        finished=done.tolist(),
    )


def decode_step(model: Qwen2, tokens: torch.Tensor, cache: KVCache, slot: torch.Tensor) -> torch.Tensor:
    """One fixed-shape decode step: ``(N, 1)`` ids -> ``(N, V)`` logits, writing cache slot ``slot``
    ``(1,)`` and moving ``slot`` and the rows' rotary positions on, all in device memory (gpt-fast's
    static-cache ``decode_one_token``). Every call has the same shapes and no host sync, so it can be
    compiled with ``fullgraph=True`` and captured as a CUDA graph."""
    cache.valid.index_fill_(1, slot, True)  # the slot being written is real for every row
    positions = cache.next_pos[:, None]  # (N, 1)
    mask = cache.valid[:, None, None, :]  # (N, 1, 1, S): hides pads and the slots not written yet
    logits = model.core(tokens, positions, mask, False, cache, slot, False, True)  # (N, 1, V)
    cache.next_pos.add_(1)
    slot.add_(1)
    return logits[:, -1]


def _step_runner(model: Qwen2, cache: KVCache, first_slot: int, compile: bool | None, max_new_tokens: int):
    """``token (N,) -> logits (N, V)``, one decode step a call, writing slots ``first_slot`` on:
    :func:`decode_step`, eager or compiled as ``compile`` (or the auto rule) says, on a window of the
    cache that grows by :data:`ATTEND_BLOCK` slots at a time, called directly on a CPU and, on CUDA,
    replayed as a CUDA graph captured once a window. An eager call adds the decode steps it asks for
    (``max_new_tokens - 1``) to the model's count."""
    if compile is None:
        compile = _eager_steps.get(model, 0) >= AUTO_COMPILE_STEPS
    if compile:
        step = _compiled_step()
    else:
        step = decode_step
        _eager_steps[model] = _eager_steps.get(model, 0) + max_new_tokens - 1
    slot = torch.full((1,), first_slot, dtype=torch.long, device=cache.valid.device)  # the next slot written
    position, limit, run = first_slot, 0, None  # the host's copy of slot: it moves by one a call
    block = ATTEND_BLOCK.get(slot.device.type, 32)

    def direct(window: KVCache):
        return lambda token: step(model, token[:, None], window, slot)

    def step_fn(token: torch.Tensor) -> torch.Tensor:
        nonlocal position, limit, run
        if position >= limit:
            limit = min((position // block + 1) * block, cache.max_len)
            window = cache.window(limit)
            run = _cuda_graph(step, model, window, slot) if slot.device.type == "cuda" else direct(window)
        position += 1
        return run(token)
    return step_fn


@functools.cache
def _compiled_step():
    """:func:`decode_step` compiled once per process (one graph, no break); dynamo guards on the
    model's structure and recompiles for another one (within its recompile limit)."""
    return torch.compile(decode_step, fullgraph=True)


def _cuda_graph(step, model: Qwen2, cache: KVCache, slot: torch.Tensor):
    """``step`` captured as a CUDA graph over this call's cache, on a side stream as PyTorch's capture
    recipe has it: a warm-up step first (lazy inits, compiling), then the capture. ``capture_begin``
    is called directly because ``torch.cuda.graph`` also empties the allocator's cache, which each
    sampler call would then pay again in ``cudaMalloc``s. The warm-up really runs, so the cache state
    it moved on is put back; the key and value it wrote to ``slot`` are rewritten by the first replay."""
    device = slot.device
    tokens = torch.zeros(cache.batch_size, 1, dtype=torch.long, device=device)  # (N, 1) the graph's input
    state = (cache.valid, cache.next_pos, slot)
    saved = [t.clone() for t in state]
    graph, side = torch.cuda.CUDAGraph(), torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        step(model, tokens, cache, slot)
        for t, old in zip(state, saved):
            t.copy_(old)
        graph.capture_begin()
        try:  # recorded, not run
            logits = step(model, tokens, cache, slot)  # (N, V) the graph's output, rewritten by each replay
        finally:
            graph.capture_end()
    torch.cuda.current_stream(device).wait_stream(side)

    def replay(token: torch.Tensor) -> torch.Tensor:
        tokens.copy_(token[:, None])
        graph.replay()
        return logits
    return replay


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
