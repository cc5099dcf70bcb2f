"""What a person with one GPU runs (under 10 minutes) to check timer1 on it; prints one table.

    python benchmarks/gpu_check.py                          # on a CUDA machine
    python benchmarks/gpu_check.py --quick --device cpu     # a smoke run of this script (small shapes)

Rows, all on random weights (no download):

1. parity: per-token log-probs of a random Qwen2 (Qwen2.5-0.5B widths, 2 layers) under the device's
   bf16 autocast against the fp32 CPU path: max and mean |d logp|, and how often the top-1 token agrees;
2. decode tokens/s at the Qwen2.5-0.5B, 1.5B and 7B shapes (bf16 weights) with 1 and 16 samples after
   a 256-token prompt, against Hugging Face ``generate()`` on the same weights when transformers is
   importable (this project never needs it);
3. one GRIP update at the 1.5B shape with LoRA (r 16, every projection) and gradient checkpointing:
   the reference pass and ``mu = 2`` inner updates of one group of 16 x (512 prompt + 1024 completion
   tokens), through ``train_grip.policy_update``: seconds and peak memory;
4. which SDPA kernel (flash, memory-efficient, math) accepts each kind of attention call timer1 makes:
   the mask-free causal forward of training and prefill, a left-padded prefill, and a decode step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train_grip import policy_update  # noqa: E402
from timer1.config import GRIPConfig  # noqa: E402
from timer1.grip import loss_totals  # noqa: E402
from timer1.lora import apply_lora  # noqa: E402
from timer1.model import Qwen2, Qwen2Config  # noqa: E402
from timer1.rollout import Reference, TrainBatch, completion_logprobs  # noqa: E402
from timer1.sampler import generate  # noqa: E402

SHAPES = {  # Qwen2.5 config.json values
    "0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def random_model(shape: dict, layers: int | None, device, dtype) -> Qwen2:
    """A random Qwen2 of ``shape``; ``layers`` (the --quick smoke run) also shrinks the vocabulary to 8192."""
    small = {"num_hidden_layers": layers, "vocab_size": 8192} if layers else {}
    config = Qwen2Config.from_dict({"model_type": "qwen2", "rope_theta": 1e6, **shape, **small})
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2(config).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def parity(device, layers: int | None) -> list[str]:
    model = random_model(SHAPES["0.5B"], layers or 2, "cpu", torch.float32)
    ids = torch.randint(0, 8192, (2, 128), generator=torch.Generator().manual_seed(0))
    reference = completion_logprobs(model, _batch(ids[:, :1], ids[:, 1:]))  # (2, 127) fp32 on cpu
    moved = model.to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        got = completion_logprobs(moved, _batch(ids[:, :1].to(device), ids[:, 1:].to(device))).cpu()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        top_dev = moved(ids.to(device)).argmax(-1).cpu()
    top_cpu = model.cpu()(ids).argmax(-1)
    diff = (got - reference).abs()
    return [f"| parity: {device.type} bf16 autocast vs cpu fp32 (0.5B widths, 2 layers) | max abs d logp "
            f"{diff.max():.4f}, mean {diff.mean():.5f}; top-1 agreement {(top_dev == top_cpu).float().mean():.1%} |"]


def _batch(prompts: torch.Tensor, completions: torch.Tensor) -> TrainBatch:
    """``prompts`` ``(P, Lp)`` and ``completions`` ``(N, T)``, every token real; the rows split evenly
    over the prompts (row i continues prompt ``i * P // N``)."""
    (P, Lp), (N, T) = prompts.shape, completions.shape
    device = completions.device
    ones = torch.ones(N, device=device)
    return TrainBatch(prompts, torch.ones(P, Lp, dtype=torch.bool, device=device),
                      torch.arange(N, device=device) * P // N, completions,
                      torch.ones(N, T, dtype=torch.bool, device=device), ones, ones / N, ones)


def decode_speed(name: str, layers: int | None, device, new_tokens: int) -> list[str]:
    model = random_model(SHAPES[name], layers, device, torch.bfloat16)
    prompt = torch.randint(0, 8192, (256,), generator=torch.Generator().manual_seed(1)).tolist()
    hf = _hf_twin(model)
    rows = []
    for samples in (1, 16):
        ours = _tokens_per_s(lambda: generate(model, [prompt], max_new_tokens=new_tokens, num_samples=samples,
                                              seed=0), samples * new_tokens, device)
        theirs = "n/a (no transformers)"
        if hf is not None:
            ids = torch.tensor([prompt] * samples, device=device)
            rate = _tokens_per_s(lambda: hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                     do_sample=True, top_k=0, pad_token_id=0),
                                 samples * new_tokens, device)
            theirs = f"HF generate {rate:,.0f} tok/s ({ours / rate:.2f}x)"
        rows.append(f"| decode {name}{f' ({layers} layers)' if layers else ''}, {samples} sample(s), bf16 | "
                    f"timer1 {ours:,.0f} tok/s; {theirs} |")
    return rows


def _tokens_per_s(run, tokens: int, device) -> float:
    run()  # warm-up
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return tokens / (time.perf_counter() - start)


def _hf_twin(model: Qwen2):
    """The same weights in transformers' Qwen2ForCausalLM, or None when transformers is not installed."""
    try:
        from transformers import Qwen2Config as HFConfig, Qwen2ForCausalLM
    except ImportError:
        return None
    hf = Qwen2ForCausalLM(HFConfig(**model.config.to_dict())).to(model.lm_head.weight.device, torch.bfloat16)
    hf.load_state_dict(model.state_dict(), strict=False)
    return hf.eval()


def grip_update(device, layers: int | None, prompt_len: int, completion_len: int) -> list[str]:
    model = random_model(SHAPES["1.5B"], layers, device, torch.bfloat16)
    apply_lora(model, ALL_PROJECTIONS, r=16, alpha=32)
    model.to(device).eval()
    model.gradient_checkpointing = True
    prompt = torch.randint(0, 8192, (1, prompt_len), device=device)  # one group: 16 rows of one prompt
    batch = _batch(prompt, torch.randint(0, 8192, (16, completion_len), device=device))
    batch.advantages = torch.randn(16, device=device)
    micro_batches = [(mb, True) for mb in batch.micro_batches(4)]
    cfg = GRIPConfig(mu=2, micro_batch=4, max_completion=completion_len)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16), Reference("base").active(model) as ref:
        reference = [completion_logprobs(ref, mb) for mb, _ in micro_batches]
    with torch.autocast(device.type, dtype=torch.bfloat16):
        policy_update(model, optimizer, micro_batches, reference, loss_totals(batch.weights, batch.completion_mask),
                      cfg, 1)
    sync(device)
    seconds = time.perf_counter() - start
    peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else "n/a on cpu"
    return [f"| GRIP update 1.5B{f' ({layers} layers)' if layers else ''}, LoRA r16, checkpointing, 16 x "
            f"({prompt_len}+{completion_len}), reference + mu 2 | {seconds:.1f} s, peak {peak} |"]


def sdpa_kernels(device) -> list[str]:
    """Each attention call timer1 makes, run under one SDPA backend at a time."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    model = random_model(SHAPES["0.5B"], 1, device, torch.bfloat16)
    ids = torch.randint(0, 1000, (2, 64), device=device)
    left_pad = torch.ones(2, 64, dtype=torch.long, device=device)
    left_pad[0, :5] = 0
    calls = {"prompt prefill (mask-free causal)": lambda: model(ids),
             "training rows on a cached prompt (offset causal mask)":
                 lambda: completion_logprobs(model, _batch(ids[:1, :32], ids[:, 32:])),
             "left-padded prefill (explicit mask)": lambda: model(ids, attention_mask=left_pad),
             "decode step (sampler)": lambda: generate(model, [[1, 2, 3], [4, 5]], max_new_tokens=2)}
    rows = []
    for label, call in calls.items():
        accepted = []
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
            try:
                with torch.no_grad(), sdpa_kernel([backend]):
                    call()
                accepted.append(backend.name.lower())
            except RuntimeError:
                pass
        rows.append(f"| SDPA: {label} | runs on: {', '.join(accepted) or 'none'} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="2 layers per shape, no 7B, short sequences")
    args = parser.parse_args()
    device = torch.device(args.device)
    layers = 2 if args.quick else None
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print("| check | result |\n|---|---|", flush=True)
    rows = parity(device, layers)
    for name in ("0.5B", "1.5B") if args.quick else ("0.5B", "1.5B", "7B"):
        rows += decode_speed(name, layers, device, new_tokens=16 if args.quick else 128)
    rows += grip_update(device, layers, *((64, 64) if args.quick else (512, 1024)))
    rows += sdpa_kernels(device)
    for row in rows:
        print(row, flush=True)


if __name__ == "__main__":
    main()
