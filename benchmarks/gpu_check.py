"""What a person with one GPU runs (under 5 minutes) to check timer1 on it; one table, rows printed as made.

    python benchmarks/gpu_check.py                          # on a CUDA machine
    python benchmarks/gpu_check.py --quick --device cpu     # a smoke run of this script (small shapes)

The rows compute in bf16 where the device multiplies it natively (every recent GPU; CPUs with AVX512-BF16,
AMX or Arm BF16), else in fp32 (``--dtype`` forces one): emulated bf16 made the CPU smoke run 16x slower
on a CPU without it, and measured nothing the fp32 run does not (timer1.util.precision).

Rows, all on random weights (no download):

0. the machine's own ceilings, measured first: memory bandwidth (a device-to-device copy, bytes read
   plus written) and bf16 matmul FLOP/s (8192^3 products on a GPU); the fractions below are of these;
1. parity: per-token log-probs of a random Qwen2 (Qwen2.5-0.5B widths, 2 layers) under the device's
   bf16 autocast against the fp32 CPU path: max and mean |d logp|, and how often the top-1 token agrees;
2. decode tokens/s at the Qwen2.5-0.5B, 1.5B and 7B shapes (bf16 weights) with 1, 16 and 64 samples
   after a 256-token prompt, through ``generate``'s default path (its fixed-shape step replayed as a
   CUDA graph; ``--compile``: the step through ``torch.compile`` first, the compile inside the
   warm-up), as a fraction of the memory-bandwidth floor (a decode step reads every
   weight once for all rows, plus each row's KV cache), against Hugging Face ``generate()`` on the
   same weights, built on the same device, when transformers is importable (timer1 never needs it);
3. one GRIP update at the 1.5B and 7B shapes with LoRA (r 16, every projection) and gradient
   checkpointing: the reference pass and ``mu = 2`` inner updates of one group of 16 x (512 prompt +
   1024 completion tokens) in micro-batches of 4 rows (the 7B preset's) through
   ``train_grip.policy_update``, timed after one warm-up update, as a fraction of peak: model FLOPs =
   2 x (linear weights) x tokens per forward (the prompt counted once a micro-batch), the reference pass one
   forward, each inner update three (forward, the checkpointed forward again, input gradients through
   the frozen weights); attention's FLOPs are left out, so the fraction is a lower bound;
4. the 7B preset's GRIP step (configs/grip_qwen2.5_7b.toml on 4 GPUs) projected from rows 0, 2 and 3:
   each GPU samples its prompts' k*G rows for the full completion budget (the worst case), as many
   prompts a sampler call as ``timer1.core.rollout`` fits in half the memory the bf16 weights leave
   (``rollout_prompts = 0``); a decode step's time is the line through the 16- and 64-row decode rows
   at the call's rows, plus reading the longer KV cache at the measured copy bandwidth: a step attends
   over the filled slots rounded up to the sampler's CUDA block (``ATTEND_BLOCK``), on average
   prompt + budget / 2 + half a block, where row 2's steps read all 256 + new slots of their cache
   (one block); then the update of its G rows a prompt, the
   update's time scaled by tokens from row 3 (a prompt is encoded once a micro-batch: the preset's
   groups of 16 rows in micro-batches of 4 encode it 4 times);
5. which SDPA kernel (flash, memory-efficient, math) accepts each kind of attention call timer1 makes.
Every timing follows a warm-up run of the same call.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import tomllib
from pathlib import Path
from typing import Iterator

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from train_grip import policy_update  # noqa: E402
from timer1.train.run import Run  # noqa: E402
from timer1.util.dist import DistInfo  # noqa: E402
from timer1.core.grip import LossConfig  # noqa: E402
from timer1.core.policy import Policy  # noqa: E402
from timer1.train.config import GRIPConfig, group_of  # noqa: E402
from timer1.core.grip import loss_totals  # noqa: E402
from timer1.core.lora import apply_lora  # noqa: E402
from timer1.core.model import Qwen2, Qwen2Config  # noqa: E402
from timer1.core.reference import Reference  # noqa: E402
from timer1.core.rollout import (KV_SHARE_OF_FREE, TrainBatch, completion_logprobs,  # noqa: E402
                                  fitting_prompts, kv_budget, kv_bytes_per_row)
from timer1.core.sampler import ATTEND_BLOCK, generate  # noqa: E402
from timer1.util.precision import native_bf16  # noqa: E402

SHAPES = {  # Qwen2.5 config.json values
    "0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PRESET = REPO / "configs" / "grip_qwen2.5_7b.toml"
PRESET_GPUS = 4
PROMPT_TOKENS = 256     # decode rows' prompt; the update rows' prompt and completion follow
SAMPLE_COUNTS = (1, 16, 64)
TOKENS_PER_TABLE_ROW = 20   # the paper prompt's "2016-07-01 00:00:00 12.345" rows: Qwen2.5 writes each digit as a token


class Sizes:
    """What one run measures: the full shapes on a GPU, small ones (2 layers, vocabulary 8192) with --quick."""

    def __init__(self, quick: bool, compile: bool, dtype: torch.dtype):
        self.compile = compile                                      # generate(compile=...) in the decode rows
        self.dtype = dtype                                          # the rows' weights and compute
        self.dtype_name = {torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
        self.layers = 2 if quick else None
        self.decode_shapes = ("0.5B", "1.5B") if quick else ("0.5B", "1.5B", "7B")
        self.new_tokens = 16 if quick else 128
        self.update = (64, 64) if quick else (512, 1024)           # prompt, completion tokens of a row
        self.matmul = 1024 if quick else 8192
        self.copy_bytes = 1 << 26 if quick else 1 << 30


@contextlib.contextmanager
def building(device, dtype) -> Iterator[None]:
    """Parameters created inside are allocated on ``device`` in ``dtype`` directly (a 7B model built in
    fp32 on the CPU first took minutes)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def random_model(shape: dict, layers: int | None, device, dtype) -> Qwen2:
    """A random Qwen2 of ``shape``; ``layers`` (the --quick smoke run) also shrinks the vocabulary to 8192."""
    small = {"num_hidden_layers": layers, "vocab_size": 8192} if layers else {}
    config = Qwen2Config.from_dict({"model_type": "qwen2", "rope_theta": 1e6, **shape, **small})
    torch.manual_seed(0)
    with building(device, dtype):
        model = Qwen2(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


def linear_weights(model: torch.nn.Module) -> int:
    """Parameters of the matmuls a token goes through: every Linear's weight, the (tied) lm_head once,
    LoRA's small factors left out. The embedding lookup reads one row and does no arithmetic."""
    seen = {id(m.weight): m.weight.numel() for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and "lora_" not in name}
    return sum(seen.values())


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(run, device, repeats: int = 1) -> float:
    """Seconds per call of ``run``, after one warm-up call."""
    run()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    sync(device)
    return (time.perf_counter() - start) / repeats


# ----------------------------------------------------------------------------------------------
# 0. the machine's ceilings


def computing(device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype``, or nothing for fp32 (CPU autocast takes only half dtypes)."""
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def ceilings(device, sizes: Sizes) -> tuple[float, float]:
    """(bytes/s of a device-to-device copy, read plus written; matmul FLOP/s in the rows' dtype)."""
    source = torch.empty(sizes.copy_bytes // 2, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    bandwidth = 2 * sizes.copy_bytes / timed(lambda: target.copy_(source), device, repeats=10)
    n = sizes.matmul
    a, b = (torch.randn(n, n, device=device, dtype=sizes.dtype) for _ in range(2))
    flops = 2 * n ** 3 / timed(lambda: a @ b, device, repeats=10)
    return bandwidth, flops


# ----------------------------------------------------------------------------------------------
# 1. parity


def parity(device, sizes: Sizes) -> str:
    model = random_model(SHAPES["0.5B"], sizes.layers or 2, "cpu", torch.float32)
    ids = torch.randint(0, 8192, (2, 128), generator=torch.Generator().manual_seed(0))
    reference = completion_logprobs(model, _batch(ids[:, :1], ids[:, 1:]))  # (2, 127) fp32 on cpu
    top_cpu = model(ids).argmax(-1)
    moved = model.to(device)
    with torch.no_grad(), computing(device, sizes.dtype):
        got = completion_logprobs(moved, _batch(ids[:, :1].to(device), ids[:, 1:].to(device))).cpu()
        top_dev = moved(ids.to(device)).argmax(-1).cpu()
    diff = (got - reference).abs()
    how = f"{sizes.dtype_name} autocast" if sizes.dtype != torch.float32 else "fp32"
    return (f"| parity: {device.type} {how} vs cpu fp32 (0.5B widths, 2 layers) | max abs d logp "
            f"{diff.max():.4f}, mean {diff.mean():.5f}; top-1 agreement {(top_dev == top_cpu).float().mean():.1%} |")


def _batch(prompts: torch.Tensor, completions: torch.Tensor) -> TrainBatch:
    """``prompts`` ``(P, Lp)`` and ``completions`` ``(N, T)``, every token real; the rows split evenly
    over the prompts (row i continues prompt ``i * P // N``)."""
    (P, Lp), (N, T) = prompts.shape, completions.shape
    device = completions.device
    ones = torch.ones(N, device=device)
    return TrainBatch(prompts, torch.ones(P, Lp, dtype=torch.bool, device=device),
                      torch.arange(N, device=device) * P // N, completions,
                      torch.ones(N, T, dtype=torch.bool, device=device), ones, ones / N, ones)


# ----------------------------------------------------------------------------------------------
# 2. decode


def decode_floor(model: Qwen2, rows: int, new_tokens: int, bandwidth: float) -> float:
    """Tokens/s if a decode step only read memory at ``bandwidth``: every weight once (bf16) for all
    rows, plus each row's K and V at the mean cache length of the call."""
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    cached = PROMPT_TOKENS + new_tokens / 2
    kv_bytes = rows * config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * cached * 2
    step_bytes = 2 * linear_weights(model) + kv_bytes
    return rows * bandwidth / step_bytes


def decode_rows(name: str, sizes: Sizes, device, bandwidth: float) -> Iterator[tuple[str, int, float]]:
    """(row text, samples, timer1 tokens/s) for each sample count at the ``name`` shape."""
    model = random_model(SHAPES[name], sizes.layers, device, sizes.dtype)
    hf = _hf_twin(model, device)
    prompt = torch.randint(0, 8192, (PROMPT_TOKENS,), generator=torch.Generator().manual_seed(1)).tolist()
    new = sizes.new_tokens
    for samples in SAMPLE_COUNTS:
        tokens = samples * new
        ours = tokens / timed(lambda: generate(model, [prompt], max_new_tokens=new, num_samples=samples, seed=0,
                                               compile=sizes.compile), device)
        theirs = "HF generate n/a (no transformers)"
        if hf is not None:
            ids = torch.tensor([prompt] * samples, device=device)
            rate = tokens / timed(lambda: hf.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=True,
                                                      top_k=0, pad_token_id=0), device)
            theirs = f"HF generate {rate:,.0f} tok/s: timer1 {ours / rate:.2f}x"
        floor = decode_floor(model, samples, new, bandwidth)
        path = ("compiled" if sizes.compile else "eager") + (", CUDA graph" if device.type == "cuda" else "")
        label = f"decode {name}{f' ({sizes.layers} layers)' if sizes.layers else ''}, {samples} sample(s), {sizes.dtype_name}, {path}"
        yield (f"| {label} | timer1 {ours:,.0f} tok/s = {ours / floor:.1%} of the bandwidth floor "
               f"({floor:,.0f}); {theirs} |", samples, ours)


def _hf_twin(model: Qwen2, device):
    """The same weights in transformers' Qwen2ForCausalLM on ``device`` (bf16), or None without
    transformers."""
    try:
        from transformers import Qwen2Config as HFConfig, Qwen2ForCausalLM
    except ImportError:
        return None
    with building(device, next(model.parameters()).dtype):
        hf = Qwen2ForCausalLM(HFConfig(**model.config.to_dict()))
    hf.load_state_dict(model.state_dict(), strict=False)
    return hf.eval()


# ----------------------------------------------------------------------------------------------
# 3. the GRIP update


def encoded_tokens(micro_batches: list[TrainBatch]) -> int:
    """Tokens an update's forward runs: ``completion_logprobs`` encodes each micro-batch's prompts once,
    then every row's completion on top."""
    return sum(int(mb.prompt_mask.sum()) + int(mb.completion_mask.sum()) for mb in micro_batches)


def update_flops(model: Qwen2, tokens: int, mu: int) -> float:
    """Model FLOPs of one update as the module docstring counts them: (1 + 3 mu) forwards' worth."""
    return 2 * linear_weights(model) * tokens * (1 + 3 * mu)


def grip_update(name: str, sizes: Sizes, device, peak: float) -> tuple[str, float, int]:
    """(row text, seconds, tokens) of one warm GRIP update (reference pass + mu 2) at the ``name`` shape."""
    prompt_len, completion_len = sizes.update
    model = random_model(SHAPES[name], sizes.layers, device, sizes.dtype)
    apply_lora(model, ALL_PROJECTIONS, r=16, alpha=32)
    model.to(device).eval()
    model.gradient_checkpointing = True
    prompt = torch.randint(0, 8192, (1, prompt_len), device=device)  # one group: 16 rows of one prompt
    batch = _batch(prompt, torch.randint(0, 8192, (16, completion_len), device=device))
    batch.advantages = torch.randn(16, device=device)
    cfg = GRIPConfig(mu=2, micro_batch=4, max_completion=completion_len)   # the 7B preset's micro-batch
    micro_batches = [(mb, True) for mb in batch.micro_batches(cfg.micro_batch)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    one_process = Run(cfg, DistInfo(0, 0, 1, device, True), Path("."), Policy(model, None, "gpu_check"), optimizer,
                      log=None, wrapped=model)

    def update() -> None:
        with torch.no_grad(), computing(device, sizes.dtype), Reference("base").active(model) as ref:
            reference = [completion_logprobs(ref, mb) for mb, _ in micro_batches]
        with computing(device, sizes.dtype):
            policy_update(one_process, micro_batches, reference, loss_totals(batch.weights, batch.completion_mask),
                          group_of(cfg, LossConfig))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(update, device)
    tokens = encoded_tokens([mb for mb, _ in micro_batches])
    rate = update_flops(model, tokens, cfg.mu) / seconds
    peak_memory = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else "n/a on cpu"
    row = (f"| GRIP update {name}{f' ({sizes.layers} layers)' if sizes.layers else ''}, LoRA r16, checkpointing, "
           f"16 x ({prompt_len}+{completion_len}), reference + mu 2, warm | {seconds:.2f} s, "
           f"{rate / 1e12:.1f} TFLOP/s = {rate / peak:.1%} of peak, memory peak {peak_memory} |")
    return row, seconds, tokens


# ----------------------------------------------------------------------------------------------
# 4. the 7B preset's step, projected


def projected_step(decode: dict[int, float], update: tuple[float, int], config: Qwen2Config, bandwidth: float,
                   device, sizes: Sizes) -> str:
    """One GRIP step of the 7B preset on PRESET_GPUS GPUs from measured rows (module docstring, row 4);
    ``decode`` maps rows -> tokens/s at the shape of ``config`` (the last decode shape) and ``update``
    is row 3's (seconds, tokens)."""
    preset = tomllib.loads(PRESET.read_text())
    prompts = preset["batch"] // PRESET_GPUS                        # prompts per GPU per step
    K, budget = preset["k"] * preset["G"], preset["max_completion"]
    prompt = preset["data"]["lookback"] * TOKENS_PER_TABLE_ROW
    dtype = torch.bfloat16
    with torch.device("meta"):
        weights = sum(p.numel() for p in Qwen2(config).parameters()) * dtype.itemsize
    memory = (torch.cuda.get_device_properties(device).total_memory - weights) * KV_SHARE_OF_FREE \
        if device.type == "cuda" else kv_budget(device)
    per_call = min(prompts, fitting_prompts(config, K, prompt + budget, dtype, int(memory)))
    calls, rows = -(-prompts // per_call), per_call * K
    (r0, t0), (r1, t1) = (16, 16 / decode[16]), (64, 64 / decode[64])   # seconds per decode step
    slots_read = prompt + budget // 2 + ATTEND_BLOCK["cuda"] // 2 - (PROMPT_TOKENS + sizes.new_tokens)
    longer_cache = rows * kv_bytes_per_row(config, slots_read, dtype) / bandwidth
    step = t0 + (t1 - t0) * (rows - r0) / (r1 - r0) + longer_cache
    rollout = calls * budget * step
    encodings = -(-preset["G"] // preset["micro_batch"])          # micro-batches a group is split into
    tokens = prompts * (encodings * prompt + preset["G"] * budget)  # each encodes the prompt, then its rows
    update_seconds = update[0] * tokens / update[1]
    label = f"{sizes.decode_shapes[-1]}{f' ({sizes.layers} layers)' if sizes.layers else ''}"
    return (f"| projected {label} step: {preset['batch']} prompts on {PRESET_GPUS} GPUs, k*G = {K} rows of up "
            f"to {budget} tokens, mu {preset['mu']} | rollouts {rollout / 60:.1f} min + update "
            f"{update_seconds / 60:.1f} min = {(rollout + update_seconds) / 60:.1f} min per step ({calls} call(s) of "
            f"{rows} rows x {budget} decode steps of {step * 1e3:.1f} ms, {longer_cache * 1e3:.1f} ms of it the "
            f"longer KV cache; update scaled by tokens, {tokens:,} per GPU) |")


# ----------------------------------------------------------------------------------------------
# 5. SDPA kernels


def sdpa_kernels(device, sizes: Sizes) -> Iterator[str]:
    """Each attention call timer1 makes, run under one SDPA backend at a time."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    model = random_model(SHAPES["0.5B"], 1, device, sizes.dtype)
    ids = torch.randint(0, 1000, (2, 64), device=device)
    left_pad = torch.ones(2, 64, dtype=torch.long, device=device)
    left_pad[0, :5] = 0
    calls = {"prompt prefill (mask-free causal)": lambda: model(ids),
             "training rows on a cached prompt (lower-right causal bias)":
                 lambda: completion_logprobs(model, _batch(ids[:1, :32], ids[:, 32:])),
             "left-padded prefill (explicit mask)": lambda: model(ids, attention_mask=left_pad),
             "decode step (sampler)": lambda: generate(model, [[1, 2, 3], [4, 5]], max_new_tokens=2)}
    for label, call in calls.items():
        accepted = []
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
            try:
                with torch.no_grad(), sdpa_kernel([backend]):
                    call()
                accepted.append(backend.name.lower())
            except RuntimeError:
                pass
        yield f"| SDPA: {label} | runs on: {', '.join(accepted) or 'none'} |"


# ----------------------------------------------------------------------------------------------


def rows(device, sizes: Sizes) -> Iterator[str]:
    """The table's rows in order, each made just before it is yielded."""
    bandwidth, peak = ceilings(device, sizes)
    yield (f"| ceilings, measured | copy {bandwidth / 1e12:.2f} TB/s (read + written); {sizes.dtype_name} matmul "
           f"{sizes.matmul}^3 {peak / 1e12:.1f} TFLOP/s |")
    yield parity(device, sizes)
    decode_7b: dict[int, float] = {}
    for name in sizes.decode_shapes:
        for row, samples, rate in decode_rows(name, sizes, device, bandwidth):
            yield row
            if name == sizes.decode_shapes[-1]:
                decode_7b[samples] = rate
    update = None
    for name in dict.fromkeys(("1.5B", sizes.decode_shapes[-1])):
        row, seconds, tokens = grip_update(name, sizes, device, peak)
        yield row
        update = (seconds, tokens)
    shape = random_model(SHAPES[sizes.decode_shapes[-1]], sizes.layers, "meta", torch.bfloat16).config
    yield projected_step(decode_7b, update, shape, bandwidth, device, sizes)
    yield from sdpa_kernels(device, sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="2 layers per shape, no 7B, short sequences")
    parser.add_argument("--compile", action="store_true", help="decode rows: generate(compile=True)")
    parser.add_argument("--dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                        help="the rows' dtype (auto: bf16 where the device computes it natively, else fp32)")
    args = parser.parse_args()
    device = torch.device(args.device)
    native = native_bf16(device)
    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else torch.bfloat16 if native else torch.float32
    started = time.perf_counter()
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", rows in {'bf16' if dtype == torch.bfloat16 else 'fp32'}"
          + ("" if native else " (this device emulates bf16)"), flush=True)
    print("| check | result |\n|---|---|", flush=True)
    for row in rows(device, Sizes(args.quick, args.compile, dtype)):
        print(row, flush=True)
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
