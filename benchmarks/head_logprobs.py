"""Time the log-probs head of an update: ``head_logprobs`` forward + backward against its matmuls alone.

In a GRIP update every completion position goes through the vocabulary head three times (forward,
the checkpointed recompute, the input gradient). The matmuls are the work; every pass over the
``(n, V)`` fp32 logits beyond them is overhead, memory-bound on a GPU. This prints both and their
difference at the Qwen2.5-1.5B head (hidden 1536, vocabulary 151,936) by default.

    python benchmarks/head_logprobs.py --threads 1
    python benchmarks/head_logprobs.py --rows 2048 --temperature 0.7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timer1.core.model import head_logprobs  # noqa: E402


def seconds(run, repeats: int) -> float:
    """Best of ``repeats`` timed calls after one warm-up."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512, help="completion positions")
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    head = torch.nn.Linear(args.hidden, args.vocab, bias=False).requires_grad_(False)
    hidden = torch.randn(1, args.rows, args.hidden, requires_grad=True)  # (1, n, D)
    targets = torch.randint(0, args.vocab, (1, args.rows))  # (1, n)

    def logprobs() -> None:
        head_logprobs(head, hidden, targets, args.temperature).sum().backward()

    def matmuls() -> None:  # what the head must do: forward, recompute, input gradient
        with torch.no_grad():
            head(hidden)
            logits = head(hidden)  # (1, n, V)
            logits @ head.weight  # (1, n, D)

    full, floor = seconds(logprobs, args.repeats), seconds(matmuls, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rows} positions, "
          f"hidden {args.hidden}, vocabulary {args.vocab:,}, temperature {args.temperature}")
    print("| head_logprobs forward + backward s | its three matmuls alone s | beyond the matmuls s |")
    print("|---:|---:|---:|")
    print(f"| {full:.2f} | {floor:.2f} | {full - floor:.2f} ({(full - floor) / full:.0%}) |")


if __name__ == "__main__":
    main()
