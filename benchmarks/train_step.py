"""SFT training-step throughput and peak memory on this machine. A script printing a markdown table,
not a test.

    python benchmarks/train_step.py                       # every config in fp32 and bf16, 3 timed steps each
    python benchmarks/train_step.py --configs tiny --steps 10 --threads 2

Configs (random weights, one sequence per step), each in every ``--dtypes`` entry under the training
scripts' precision rule (``timer1.train.setup.autocast``, frozen weights in the run dtype, trainable ones fp32):

* ``tiny``: the ``configs/demo_sft.toml`` model (hidden 128, 4 layers, 4/2 heads, intermediate 384,
  vocab 1024), full fine-tuning, sequence 256 (about one compact-prompt SFT sample).
* ``smollm2-lora``: SmolLM2-135M-Instruct's shape (Llama: hidden 576, 30 layers, 9 heads / 3 kv
  heads, intermediate 1536, tied 49,152-row vocabulary, no biases) with ``configs/smol_sft.toml``'s
  LoRA (r=16 on all seven projections), sequence ``--seq_len``.
* ``0.5b-lora``: Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 kv heads, intermediate
  4864, tied 151,936-row vocabulary), LoRA r=8 on all seven projections, sequence ``--seq_len``
  (512), with and without gradient checkpointing.

One step is exactly what train_sft.py does per micro-batch: ``weighted_nll`` (token_logprobs with the
chunked fp32 lm_head) on a sequence whose second half is the completion, backward, clip, AdamW
step. One untimed warm-up step, then ``--steps`` timed ones; tokens/s counts every token of the
sequence. Each config runs in a fresh process; memory is Linux's VmHWM (peak RSS): "resident" after
the model and optimizer are built, "peak" during the timed steps (the high-water mark is reset after
building), so "peak - resident" is what training adds (activations, gradients, Adam state).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {
    "tiny": dict(dims=dict(vocab_size=1024, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
                 lora=0, seq_len=256, checkpointing=False),
    "smollm2-lora": dict(dims=dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                   num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                   tie_word_embeddings=True, rope_theta=1e5, rms_norm_eps=1e-5),
                         lora=16, seq_len=None, checkpointing=False),
    "0.5b-lora": dict(dims=dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
                      lora=8, seq_len=None, checkpointing=False),
    "0.5b-lora-ckpt": dict(dims=None, lora=8, seq_len=None, checkpointing=True),
}
CONFIGS["0.5b-lora-ckpt"]["dims"] = CONFIGS["0.5b-lora"]["dims"]


def memory_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def run_one(name: str, steps: int, seq_len: int, threads: int, dtype: str) -> dict:
    from timer1.train.config import OptimConfig
    from timer1.core.lora import apply_lora
    from timer1.core.model import Qwen2, Qwen2Config
    from timer1.core.policy import resolve_device
    from timer1.train.setup import autocast, build_optimizer, trainable_parameters
    from train_sft import weighted_nll

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = CONFIGS[name]
    device, dtype = resolve_device(None, dtype)
    config = Qwen2Config.from_dict({"model_type": "qwen2", **spec["dims"]})  # smollm2-lora: model_type llama
    with torch.device(device):
        model = Qwen2(config)                              # PyTorch's default init: fine for timing
    model.gradient_checkpointing = spec["checkpointing"]
    if spec["lora"]:                                       # timer1.train.setup.build_policy's storage rule:
        model.to(dtype)                                    # a frozen base in the run dtype, fp32 LoRA
        apply_lora(model, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                   r=spec["lora"], alpha=2 * spec["lora"])
    model.train()
    optimizer = build_optimizer(model, OptimConfig(lr=1e-5))
    params = trainable_parameters(model)
    T = spec["seq_len"] or seq_len
    ids = torch.randint(0, config.vocab_size, (1, T), device=device)
    weights = torch.zeros(1, T - 1, device=device)
    weights[:, T // 2:] = 1.0                              # the second half is the "completion"

    def step() -> float:
        with autocast(device, dtype):
            loss = weighted_nll(model, ids, weights) / weights.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step()                                                 # warm-up (allocates Adam state)
    resident = memory_mb("VmRSS")
    reset_peak()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else memory_mb("VmHWM")
    return {"config": name, "device": str(device), "dtype": str(dtype).removeprefix("torch."), "seq_len": T,
            "threads": threads,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "trainable_m": sum(p.numel() for p in params) / 1e6,
            "s_per_step": seconds, "tok_per_s": T / seconds, "resident_mb": resident, "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,smollm2-lora,0.5b-lora,0.5b-lora-ckpt")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seq_len", type=int, default=512, help="sequence length of the smollm2 and 0.5b configs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="run dtypes to compare (timer1.train.setup.autocast; auto = bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)   # internal: run one config and dtype, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.steps, args.seq_len, args.threads, args.one[1])))
        return
    rows = []
    for name in args.configs.split(","):
        if name not in CONFIGS:
            raise SystemExit(f"error: unknown config {name!r}; choose from {', '.join(CONFIGS)}")
        for dtype in args.dtypes.split(","):
            done = subprocess.run([sys.executable, __file__, "--one", name, dtype, "--steps", str(args.steps),
                                   "--seq_len", str(args.seq_len), "--threads", str(args.threads)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"error: {name} {dtype} failed: {done.stderr.strip().splitlines()[-1:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| config | dtype | params (M) | trainable (M) | seq | s/step | tokens/s | resident MB | peak MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['dtype']} | {r['params_m']:.1f} | {r['trainable_m']:.2f} | {r['seq_len']} | "
              f"{r['s_per_step']:.3f} | {r['tok_per_s']:.0f} | {r['resident_mb']:.0f} | {r['peak_mb']:.0f} |")
    print(f"\n{rows[0]['device']}, {args.threads} thread(s), {args.steps} timed steps after 1 warm-up, batch 1")


if __name__ == "__main__":
    main()
