"""Seconds for a 96-step forecast with 8 slow-thinking samples, cold and warm. A script, not a test.

    python benchmarks/forecast.py                        # random tiny checkpoint, compact and paper prompts
    python benchmarks/forecast.py --model DIR --styles paper --threads 2

Cold = a fresh ``python forecast.py series.csv ...`` process: interpreter, torch import, checkpoint
load and the first forecast (wall time of the subprocess). Warm = ``slow_think`` again in a process
that already loaded the model and forecast once (best of ``--repeats``). Load and first-forecast
times inside that process are shown too. On a CPU shared with other jobs, ``--threads 1`` avoids
torch's thread pool waiting for descheduled threads (decode steps went from ~10 ms to ~800 ms with
2 threads on a 2-core machine running other jobs).

Without ``--model`` a random checkpoint is built in a temp dir: hidden 256, 4 layers, 4 heads /
2 kv heads, intermediate 1024, a 2048-token tokenizer trained on task text (timer1.core.policy). A random
model never writes a usable answer, so every draft runs to ``max_new_tokens`` (the budget
``default_max_new_tokens`` gives: 256 + 4 per value for compact prompts, 256 + 16 per value for
date/value tables) and is then dropped: the numbers are the worst case of one draft round
(``--rounds 1``). The series is 400 hourly rows with a daily cycle.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from timer1.data.repair import forecast_window
from timer1.data.csv_io import read_csv  # noqa: E402
from timer1.core.policy import load_policy, save_policy  # noqa: E402
from timer1.train.random_init import random_policy  # noqa: E402
from timer1.core.slow_think import SlowThinkConfig, default_max_new_tokens, slow_think  # noqa: E402
from timer1.core.codec import PromptFormat  # noqa: E402

TINY = dict(vocab_size=2048, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2)


def write_series(path: Path, rows: int = 400) -> Path:
    t = np.arange(rows)
    values = 20 + 5 * np.sin(2 * np.pi * t / 24) + 0.01 * t + np.random.default_rng(0).normal(0, 0.3, rows)
    dates = np.datetime64("2024-01-01T00:00:00") + t.astype("timedelta64[h]")
    lines = ["date,load"] + [f"{str(d).replace('T', ' ')},{v:.3f}" for d, v in zip(dates, values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def cold_seconds(model: Path, csv: Path, args, max_new: int) -> float:
    command = [sys.executable, str(REPO / "forecast.py"), str(csv), "--model", str(model), "--horizon", "96",
               "--lookback", "96", "--samples", str(args.samples), "--rounds", "1",
               "--max-new-tokens", str(max_new), "--device", args.device]
    if args.threads:
        command += ["--threads", str(args.threads)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"forecast.py failed: {done.stderr.strip()}")
    return time.perf_counter() - started


def warm_run(model: Path, csv: Path, args) -> dict:
    started = time.perf_counter()
    policy = load_policy(model, device=args.device)
    load = time.perf_counter() - started
    window, _ = forecast_window(read_csv(csv), "load", 96, 96)
    max_new = default_max_new_tokens(policy.prompt_format, 96)
    config = SlowThinkConfig(samples=args.samples, rounds=1, max_new_tokens=max_new, seed=0)
    started = time.perf_counter()
    slow_think(policy, window, config, period=24)
    first = time.perf_counter() - started
    times = []
    for k in range(args.repeats):
        started = time.perf_counter()
        slow_think(policy, window, dataclasses.replace(config, seed=k + 1), period=24)
        times.append(time.perf_counter() - started)
    return {"load": load, "first": first, "warm": min(times), "warm_median": statistics.median(times),
            "max_new": max_new, "device": str(policy.device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a checkpoint (default: a random tiny one)")
    parser.add_argument("--styles", nargs="+", default=["compact", "paper"], choices=["compact", "paper", "official"],
                        help="prompt styles of the random checkpoint (ignored with --model)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.samples} samples, "
          f"96 -> 96 steps, one draft round", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        csv = write_series(Path(tmp) / "series.csv")
        models = [(args.model.name, args.model)] if args.model else []
        for style in ([] if args.model else args.styles):
            path = Path(tmp) / f"tiny-{style}"
            save_policy(random_policy(TINY, seed=0, prompt_format=PromptFormat(style)), path)
            models.append((f"tiny random, {style} prompt", path))
        for name, path in models:
            warm = warm_run(path, csv, args)
            cold = cold_seconds(path, csv, args, warm["max_new"])
            tokens = args.samples * warm["max_new"]
            rows.append(f"| {name} | {warm['device']} | {warm['max_new']} | {cold:.1f} | {warm['load']:.2f} | "
                        f"{warm['first']:.2f} | {warm['warm']:.2f} | {tokens / warm['warm']:.0f} |")
    print("| checkpoint | device | new tokens / sample | cold s (fresh process) | load s | first forecast s "
          "| warm forecast s | tok/s (all samples) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
