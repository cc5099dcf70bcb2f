"""Time one GRIP step, split into generation, reward, reference log-probs and the update.

The shape is the one TRL's GRPOTrainer is measured on in ``benchmarks/grip_step_trl.py`` (run that
one in the scratch venv that has trl; this script never imports it): a random Qwen2 with hidden
256, 4 layers, 4 query / 2 key-value heads, SwiGLU 1024, vocab 2048, tied embeddings; one prompt of
64 tokens; one group of 16 completions forced to 128 tokens (no eos); k = 1, mu = 1, beta 0.04
(reference = a frozen copy, full fine-tuning, as TRL does without PEFT), AdamW lr 1e-6, one
micro-batch of 16. Completion tokens per second count the 16 x 128 sampled tokens over the whole
step, update included. The step is train_grip.py's own pieces in its order (``policy_update`` is
the update it runs), on one rank.

On a shared machine pass ``--threads 1`` (and run TRL the same way): two threads contending with
other processes make both runs several times slower and the numbers meaningless.

    python benchmarks/grip_step.py                  # the TRL-comparable step, then GRIP's k=3, mu=2
    python benchmarks/grip_step.py --steps 8 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train_grip import policy_update  # noqa: E402
from timer1.train.run import Run  # noqa: E402
from timer1.util.dist import DistInfo  # noqa: E402
from timer1.core.grip import LossConfig  # noqa: E402
from timer1.core.policy import Policy  # noqa: E402
from timer1.train.config import GRIPConfig, group_of, OptimConfig  # noqa: E402
from timer1.core.grip import loss_totals, make_groups  # noqa: E402
from timer1.core.model import Qwen2, Qwen2Config  # noqa: E402
from timer1.core.reference import Reference  # noqa: E402
from timer1.core.rollout import build_batch, completion_logprobs, sample_rollout, score_rollout  # noqa: E402

SHAPE = {"model_type": "qwen2", "vocab_size": 2048, "hidden_size": 256, "intermediate_size": 1024,
         "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
         "tie_word_embeddings": True, "rope_theta": 1e6}


class NumberTokenizer:
    """Token i decodes to " i": completions read as numbers, so the reward's parser has work to do.
    No eos: every completion runs to max_new_tokens."""

    eos_ids = ()
    pad_id = 0

    def decode(self, ids, skip_special_tokens=False):
        return "".join(f" {i}" for i in ids)


def random_model(seed: int = 0) -> Qwen2:
    torch.manual_seed(seed)
    model = Qwen2(Qwen2Config.from_dict(SHAPE))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.02)  # HF initializer_range
    return model


def grip_step(model, reference, optimizer, prompt, target, cfg: GRIPConfig, seed: int) -> dict:
    """One step as train_grip.py runs it on one rank; returns seconds per phase."""
    t0 = time.perf_counter()
    with torch.no_grad():
        rollout = sample_rollout(model, NumberTokenizer(), [prompt], K=cfg.k * cfg.G,
                                 max_new_tokens=cfg.max_completion, seed=seed)
    t1 = time.perf_counter()
    rewards, _ = score_rollout(rollout, [target])
    groups = make_groups(rewards, cfg.G, selection=cfg.selection, weighting=cfg.weights,
                         generator=torch.Generator().manual_seed(seed))
    batch = build_batch(rollout, groups, 0)
    micro_batches = [(mb, True) for mb in batch.micro_batches(cfg.micro_batch)]
    t2 = time.perf_counter()
    with torch.no_grad(), reference.active(model) as ref_model:
        ref = [completion_logprobs(ref_model, mb) for mb, _ in micro_batches]
    t3 = time.perf_counter()
    one_process = Run(cfg, DistInfo(0, 0, 1, next(model.parameters()).device, True), Path("."), Policy(model, None, "bench"),
                      optimizer, log=None, ddp=model)
    policy_update(one_process, micro_batches, ref, loss_totals(batch.weights, batch.completion_mask),
                  group_of(cfg, LossConfig))
    t4 = time.perf_counter()
    return {"generation": t1 - t0, "reward": t2 - t1, "logprobs": t3 - t2, "update": t4 - t3,
            "tokens": rollout.num_tokens}


def measure(G, k, mu, steps, max_new, prompt_len):
    model = random_model().eval()
    reference = Reference("model", model=copy.deepcopy(model).requires_grad_(False))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    cfg = GRIPConfig(G=G, k=k, mu=mu, micro_batch=G, max_completion=max_new, optim=OptimConfig(lr=1e-6),
                     selection="cluster" if k > 1 else "uniform", weights="softmax" if k > 1 else "uniform")
    prompt = torch.randint(3, SHAPE["vocab_size"], (prompt_len,), generator=torch.Generator().manual_seed(0)).tolist()
    target = np.sin(np.arange(24) / 3.0) * 100 + 500
    grip_step(model, reference, optimizer, prompt, target, cfg, seed=0)  # warm-up
    runs = [grip_step(model, reference, optimizer, prompt, target, cfg, seed=s + 1) for s in range(steps)]
    mean = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    mean["total"] = sum(mean[p] for p in ("generation", "reward", "logprobs", "update"))
    return mean


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="measured steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--max-new", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, shape {SHAPE}")
    print("| setting | generation s | reward s | reference log-probs s | update s | step s | completion tok/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    settings = (("TRL-comparable: G=16, k=1, mu=1", 16, 1, 1), ("GRIP paper: G=16, k=3, mu=2", 16, 3, 2))
    for label, G, k, mu in settings:
        m = measure(G, k, mu, args.steps, args.max_new, args.prompt_len)
        print(f"| {label} | {m['generation']:.3f} | {m['reward']:.3f} | {m['logprobs']:.3f} | {m['update']:.3f} "
              f"| {m['total']:.3f} | {m['tokens'] / m['total']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
