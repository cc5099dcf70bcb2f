"""Decode throughput of timer1.sampler.generate against the pure-matmul floor (and, optionally,
Hugging Face ``generate`` on the same weights). A script printing a markdown table, not a test.

    python benchmarks/sampler.py                                   # timer1 only
    /work/scratch/venv/bin/python benchmarks/sampler.py --hf       # side by side with transformers

Configs (random weights, fp32 on cpu, bf16 on cuda):

* ``tiny``: hidden 256, 4 layers, 4 heads / 2 kv heads (head_dim 64), intermediate 1024, vocab 2048,
  untied.
* ``vocab152k``: Qwen2.5-0.5B's widths with 2 layers: hidden 896, 14 heads / 2 kv heads,
  intermediate 4864, a tied 151,936-row vocabulary (the lm_head is most of the work).

Each case decodes ``--new`` tokens after a 256-token prompt at temperature 1 (no top-k/top-p, no
eos). Decode time is ``t(new tokens) - t(1 token)`` so the prefill cancels; tok/s counts every sample
row. The floor is one decode step's weight matmuls alone (``x @ W.T`` for every weight matrix, lm_head
included, on ``(samples, in)`` inputs), timed in the same process: ``samples / t_step`` tok/s.
``--repeats`` interleaved rounds (timer1, HF, floor, timer1, ...): tok/s columns are the best round,
"of floor" and "vs HF" the median of the per-round ratios, so a noisy shared CPU hits every
contender alike. Memory comes from a separate fresh process per implementation (Linux /proc, or
CUDA's allocator stats): the peak RSS of one generate call with the model resident (the high-water
mark is reset after building the model) and how much the call added to the RSS it started from.
``torch.set_num_threads(--threads)`` (default 1) is applied in every process.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timer1.model import Qwen2, Qwen2Config  # noqa: E402
from timer1.sampler import generate  # noqa: E402

CONFIGS = {
    "tiny": dict(vocab_size=2048, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
    "vocab152k": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=2,
                      num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
}
PROMPT_LEN = 256


def build(name: str, device, dtype) -> Qwen2:
    torch.manual_seed(0)
    model = Qwen2(Qwen2Config(rope_theta=1e6, **CONFIGS[name]))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.to(device=device, dtype=dtype).eval()


def floor_step(model: Qwen2, samples: int):
    """One decode step's weight matmuls alone: ``x @ W.T`` once for every weight matrix."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(samples, w.shape[1], dtype=w.dtype, device=w.device) for w in weights]

    @torch.inference_mode()
    def step():
        for x, w in zip(inputs, weights):
            torch.matmul(x, w.t())
    return step


def ours(model, prompt, samples):
    return lambda n: generate(model, [prompt], max_new_tokens=n, num_samples=samples,
                              temperature=1.0, seed=0)


def huggingface(model, prompt, samples):
    from transformers import Qwen2ForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        hf = Qwen2ForCausalLM.from_pretrained(tmp, dtype=model.lm_head.weight.dtype)
    hf = hf.to(model.lm_head.weight.device).eval()
    ids = torch.tensor([prompt], device=hf.device)

    @torch.inference_mode()
    def run(n):
        hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                    top_k=0, top_p=1.0, max_new_tokens=n, min_new_tokens=n,
                    num_return_sequences=samples, eos_token_id=None, pad_token_id=0)
    return run


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def setup(args):
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = build(args.config, device, dtype)
    prompt = torch.randint(0, CONFIGS[args.config]["vocab_size"], (PROMPT_LEN,),
                           generator=torch.Generator().manual_seed(1)).tolist()
    return model, prompt, device


def measure_speed(args) -> dict:
    """Round-robin over the implementations and the floor for ``--repeats`` rounds.

    Each round times every contender back to back (``new`` tokens, then 1 token, for each
    implementation; ``new`` matmul-only steps for the floor), so they see the same load on a shared
    CPU. Reported: best tok/s of each, and the median over rounds of the per-round ratios (timer1 /
    floor, timer1 / HF), which is what survives a noisy machine."""
    model, prompt, _ = setup(args)
    runs = {"timer1": ours(model, prompt, args.samples)}
    if args.hf:
        runs["hf"] = huggingface(model, prompt, args.samples)
    floor = floor_step(model, args.samples)
    for run in runs.values():
        run(2)  # warm up
    floor()
    rounds = []
    for _ in range(args.repeats):
        tok_s = {}
        for name, run in runs.items():
            t_new, t_one = timed(lambda: run(args.new)), timed(lambda: run(1))
            tok_s[name] = args.samples * (args.new - 1) / max(t_new - t_one, 1e-9)
        tok_s["floor"] = args.samples * args.new / timed(lambda: [floor() for _ in range(args.new)])
        rounds.append(tok_s)
    out = {name: max(r[name] for r in rounds) for name in rounds[0]}
    for name in runs:
        out[f"{name}_of_floor"] = statistics.median(r[name] / r["floor"] for r in rounds)
        if args.hf:
            out[f"{name}_vs_hf"] = statistics.median(r[name] / r["hf"] for r in rounds)
    return out


def _rss_mb(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process in MB, from /proc (Linux)."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1]) / 1024


def measure_memory(args) -> dict:
    """Peak memory (MB) of one generate call with the model resident, in a fresh process, and how
    much of it the call added. The peak is reset after the model is built (Linux
    ``/proc/self/clear_refs``), so the HF run does not count the timer1 model it was converted from."""
    model, prompt, device = setup(args)
    impl = huggingface if args.impl == "hf" else ours
    run = impl(model, prompt, args.samples)
    if args.impl == "hf":
        del model
    gc.collect()
    if device.type == "cuda":
        before = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        run(args.new)
        peak = torch.cuda.max_memory_allocated() / 2**20
        return {"peak_mb": peak, "added_mb": peak - before}
    before = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    run(args.new)
    peak = _rss_mb("VmHWM")
    return {"peak_mb": peak, "added_mb": peak - before}


def child(args, mode: str, impl: str = "timer1") -> dict:
    cmd = [sys.executable, __file__, "--child", mode, args.config, impl, "--samples", str(args.samples),
           "--new", str(args.new), "--threads", str(args.threads), "--repeats", str(args.repeats)]
    cmd += ["--hf"] if args.hf else []
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hf", action="store_true", help="also time transformers' generate")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", default="tiny,vocab152k")
    parser.add_argument("--samples", default="1,16")
    parser.add_argument("--new", type=int, default=0, help="new tokens (default 64 tiny, 24 vocab152k)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CONFIG", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measurement in a fresh process, JSON on stdout
        mode, args.config, args.impl = args.child
        args.samples = int(args.samples)
        print(json.dumps(measure_speed(args) if mode == "speed" else measure_memory(args)))
        return

    print(f"torch {torch.__version__}, {args.threads} thread(s), prompt {PROMPT_LEN}, temperature 1, "
          f"{args.repeats} interleaved rounds (tok/s: best round; ratios: median of per-round ratios)\n")
    print("| config | samples | impl | decode tok/s | matmul floor tok/s | of floor | vs HF "
          "| peak RSS MB | added by generate MB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    impls = ["timer1", "hf"] if args.hf else ["timer1"]
    samples_list = list(map(int, args.samples.split(",")))
    requested_new = args.new
    for config in args.configs.split(","):
        for samples in samples_list:
            args.config, args.samples = config, samples
            args.new = requested_new or (64 if config == "tiny" else 24)
            speed = child(args, "speed")
            for impl in impls:
                memory = child(args, "memory", impl)
                tok_s = speed[impl]
                vs_hf = f"{speed[impl + '_vs_hf']:.2f}x" if args.hf else "-"
                print(f"| {config} | {samples} | {impl} | {tok_s:,.0f} | {speed['floor']:,.0f} "
                      f"| {speed[impl + '_of_floor']:.2f} | {vs_hf} | {memory['peak_mb']:,.0f} "
                      f"| {memory['added_mb']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
